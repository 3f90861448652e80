/**
 * Packet history of one source track: the last `capacity` output packets, addressed by
 * their extended (never wrapping) output sequence number. Serves NACK retransmission,
 * the keyframe cache (the current GOP) and every viewer's send queue, which hold only
 * sequence numbers into it.
 *
 * Payloads are copied into one preallocated slab: pushing a packet allocates nothing.
 */

/** Flag bits per slot. */
export const SlotFlag = {
  MARKER: 1,
  /** First packet of a keyframe (SPS/PPS STAP-A or IDR start): a decoder can start here. */
  KEYFRAME_START: 2,
} as const;

export class PacketRing {
  /** Slots in the ring. */
  readonly capacity: number;
  /** Largest payload a slot holds, bytes. */
  readonly slotBytes: number;
  /** Extended sequence number of the newest packet; −1 when empty. */
  newest = -1;

  private readonly slab: Buffer;
  private readonly ext: Float64Array;
  private readonly ts: Uint32Array;
  private readonly len: Uint16Array;
  private readonly flag: Uint8Array;
  private readonly arrival: Float64Array;
  private readonly views: (Buffer | undefined)[];

  constructor(capacity: number, slotBytes: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("ring capacity must be a positive integer");
    if (!Number.isInteger(slotBytes) || slotBytes < 1 || slotBytes > 0xffff) throw new RangeError("bad slot size");
    this.capacity = capacity;
    this.slotBytes = slotBytes;
    this.slab = Buffer.alloc(capacity * slotBytes);
    this.ext = new Float64Array(capacity).fill(-1);
    this.ts = new Uint32Array(capacity);
    this.len = new Uint16Array(capacity);
    this.flag = new Uint8Array(capacity);
    this.arrival = new Float64Array(capacity);
    this.views = new Array<Buffer | undefined>(capacity);
  }

  /**
   * Stores a packet. Returns false (nothing stored) when the payload exceeds a slot.
   * `arrivalMs`: when ingest handed it over (performance.now()), for forwarding latency.
   */
  put(extSeq: number, timestamp: number, flags: number, payload: Uint8Array, arrivalMs = 0): boolean {
    const n = payload.length;
    if (n > this.slotBytes) return false;
    const i = extSeq % this.capacity;
    this.slab.set(payload, i * this.slotBytes);
    this.ext[i] = extSeq;
    this.ts[i] = timestamp;
    this.len[i] = n;
    this.flag[i] = flags;
    this.arrival[i] = arrivalMs;
    this.views[i] = undefined;
    if (extSeq > this.newest) this.newest = extSeq;
    return true;
  }

  /** Is packet `extSeq` still held? */
  has(extSeq: number): boolean {
    return extSeq >= 0 && this.ext[extSeq % this.capacity] === extSeq;
  }

  /** Oldest extended sequence number that may still be held (the ring may have gaps). */
  get oldest(): number {
    return this.newest < 0 ? -1 : Math.max(0, this.newest - this.capacity + 1);
  }

  timestamp(extSeq: number): number {
    return this.ts[extSeq % this.capacity]!;
  }

  flags(extSeq: number): number {
    return this.flag[extSeq % this.capacity]!;
  }

  /** When ingest handed the packet over (performance.now() ms; 0 when unknown). */
  arrivalOf(extSeq: number): number {
    return this.arrival[extSeq % this.capacity]!;
  }

  payloadLength(extSeq: number): number {
    return this.len[extSeq % this.capacity]!;
  }

  /** The payload of a held packet: a view into the slab, valid until that slot is reused. */
  payload(extSeq: number): Buffer {
    const i = extSeq % this.capacity;
    let v = this.views[i];
    if (!v) {
      const off = i * this.slotBytes;
      v = this.slab.subarray(off, off + this.len[i]!);
      this.views[i] = v; // each slot's view is made once per packet, whatever the viewer count
    }
    return v;
  }

  /** Forget everything (new upstream codec, source closed). */
  clear(): void {
    this.ext.fill(-1);
    this.views.fill(undefined);
    this.newest = -1;
  }
}
