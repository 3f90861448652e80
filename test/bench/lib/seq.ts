/**
 * Loss accounting for one RTP stream from its sequence numbers alone (RFC 3550 §A.1,
 * §A.3): 16-bit numbers are extended across wraparound, expected = highest − first + 1,
 * lost = expected − received. Duplicates and reordering are counted, so `lost` can be
 * checked against them. Allocation-free per packet.
 */

/** A reading of a stream's counters; subtract two to get a window. */
export interface SeqSnapshot {
  /** Packets counted (duplicates included, as in RFC 3550). */
  received: number;
  /** Extended highest − extended first + 1; 0 before the first packet. */
  expected: number;
  duplicates: number;
  /** Packets older than the highest seen (reordered or late). */
  reordered: number;
}

/** Differences of two snapshots: the packets of a window. */
export function windowOf(before: SeqSnapshot, after: SeqSnapshot): SeqSnapshot & { lost: number } {
  const received = after.received - before.received;
  const expected = after.expected - before.expected;
  return {
    received,
    expected,
    duplicates: after.duplicates - before.duplicates,
    reordered: after.reordered - before.reordered,
    lost: Math.max(0, expected - received),
  };
}

/** Fraction lost (0–1) of a window; 0 when nothing was expected. */
export function lossFraction(w: { expected: number; lost: number }): number {
  return w.expected > 0 ? w.lost / w.expected : 0;
}

/** A jump larger than this (either way) is a new run of the sender, not loss (RFC 3550 §A.1 MAX_DROPOUT). */
const MAX_DROPOUT = 3000;

export class SeqCounter {
  received = 0;
  duplicates = 0;
  reordered = 0;
  /** Sequence restarts (jumps beyond MAX_DROPOUT): counted, not taken as loss. */
  restarts = 0;
  private firstExt = -1;
  private maxExt = -1;
  /** Expected packets of runs before the last restart. */
  private expectedBefore = 0;
  /** Bitmap of the last 1024 extended sequence numbers, for duplicate detection. */
  private readonly seen = new Uint32Array(32);

  /** Counts one packet with this 16-bit sequence number. */
  push(seq: number): void {
    seq &= 0xffff;
    this.received++;
    if (this.maxExt < 0) {
      this.firstExt = this.maxExt = seq;
      this.mark(seq);
      return;
    }
    // Signed distance from the highest 16-bit number seen, in (−32768, 32768].
    let delta = (seq - (this.maxExt & 0xffff)) & 0xffff;
    if (delta > 0x8000) delta -= 0x10000;
    if (delta > MAX_DROPOUT || delta < -MAX_DROPOUT) {
      // A new run (sender restarted its numbering): close the old one without loss.
      this.restarts++;
      this.expectedBefore += this.maxExt - this.firstExt + 1;
      this.firstExt = this.maxExt = seq;
      this.seen.fill(0);
      this.mark(seq);
      return;
    }
    const ext = this.maxExt + delta;
    if (delta > 0) {
      // Clear the bitmap bits the window slides over.
      for (let e = this.maxExt + 1; e < ext && e - this.maxExt <= 1024; e++) this.clear(e);
      this.maxExt = ext;
      this.mark(ext);
      return;
    }
    if (delta === 0 || (this.maxExt - ext < 1024 && this.isMarked(ext))) {
      this.duplicates++;
      return;
    }
    this.reordered++;
    if (ext < this.firstExt) this.firstExt = ext; // an older packet widens the run
    this.mark(ext);
  }

  /** Expected packets so far (all runs). */
  get expected(): number {
    return this.maxExt < 0 ? 0 : this.expectedBefore + this.maxExt - this.firstExt + 1;
  }

  /** Lost so far: expected − received, never negative. */
  get lost(): number {
    return Math.max(0, this.expected - this.received);
  }

  /** Extended highest sequence number (RFC 3550 receiver report field), −1 before the first packet. */
  get highestExt(): number {
    return this.maxExt;
  }

  snapshot(): SeqSnapshot {
    return { received: this.received, expected: this.expected, duplicates: this.duplicates, reordered: this.reordered };
  }

  private mark(ext: number): void {
    const i = ext & 1023;
    this.seen[i >>> 5]! |= 1 << (i & 31);
  }

  private clear(ext: number): void {
    const i = ext & 1023;
    this.seen[i >>> 5]! &= ~(1 << (i & 31));
  }

  private isMarked(ext: number): boolean {
    const i = ext & 1023;
    return (this.seen[i >>> 5]! & (1 << (i & 31))) !== 0;
  }
}
