/**
 * A viewer's bounded send queue: references into the source's packet rings (track,
 * extended sequence number) with the timestamp already mapped for this viewer.
 * Fixed capacity, typed arrays, no allocation per packet.
 */
export class SendQueue {
  readonly capacity: number;
  private readonly trackOf: Uint8Array;
  private readonly extOf: Float64Array;
  private readonly tsOf: Uint32Array;
  private readonly flagsOf: Uint8Array;
  private head = 0;
  private count = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("queue capacity must be a positive integer");
    this.capacity = capacity;
    this.trackOf = new Uint8Array(capacity);
    this.extOf = new Float64Array(capacity);
    this.tsOf = new Uint32Array(capacity);
    this.flagsOf = new Uint8Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  get full(): boolean {
    return this.count === this.capacity;
  }

  /** Appends; returns false when full (nothing changed). `flags` is the caller's own bit field. */
  push(track: number, extSeq: number, viewerTs: number, flags = 0): boolean {
    if (this.count === this.capacity) return false;
    const i = (this.head + this.count) % this.capacity;
    this.trackOf[i] = track;
    this.extOf[i] = extSeq;
    this.tsOf[i] = viewerTs;
    this.flagsOf[i] = flags;
    this.count++;
    return true;
  }

  /** Track of the head entry (undefined behaviour when empty: check `length`). */
  peekTrack(): number {
    return this.trackOf[this.head]!;
  }

  peekExt(): number {
    return this.extOf[this.head]!;
  }

  peekTs(): number {
    return this.tsOf[this.head]!;
  }

  peekFlags(): number {
    return this.flagsOf[this.head]!;
  }

  shift(): void {
    if (this.count === 0) return;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
  }

  /** Removes every entry of `track` (keeps the others in order). Returns how many were removed. */
  removeTrack(track: number): number {
    let kept = 0;
    let removed = 0;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) % this.capacity;
      if (this.trackOf[i] === track) {
        removed++;
        continue;
      }
      const j = (this.head + kept) % this.capacity;
      this.trackOf[j] = this.trackOf[i]!;
      this.extOf[j] = this.extOf[i]!;
      this.tsOf[j] = this.tsOf[i]!;
      this.flagsOf[j] = this.flagsOf[i]!;
      kept++;
    }
    this.count = kept;
    return removed;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
  }
}
