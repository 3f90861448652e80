/**
 * 16-bit RTP sequence-number and 32-bit timestamp arithmetic with wraparound
 * (RFC 3550 §A.1 "serial number" comparison: the shorter way round the circle wins).
 */

/** Signed distance a − b in sequence space, in −32768..32767. */
export function seqDiff(a: number, b: number): number {
  return ((((a - b) & 0xffff) + 0x8000) & 0xffff) - 0x8000;
}

/** True when sequence number `a` comes after `b` (modulo 2^16). */
export function seqNewer(a: number, b: number): boolean {
  return seqDiff(a, b) > 0;
}

/** True when sequence number `a` comes before `b` (modulo 2^16). */
export function seqOlder(a: number, b: number): boolean {
  return seqDiff(a, b) < 0;
}

/** (seq + n) modulo 2^16. */
export function seqAdd(seq: number, n: number): number {
  return (seq + n) & 0xffff;
}

/** Signed distance a − b between two 32-bit RTP timestamps. */
export function tsDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/**
 * The extended (cycle-counting) sequence number for `seq` that lies nearest to the
 * extended reference `refExtended`. Stateless; never negative.
 */
export function unwrapSeq(seq: number, refExtended: number): number {
  const ext = refExtended + seqDiff(seq, refExtended & 0xffff);
  return ext < 0 ? ext + 0x10000 : ext;
}

/**
 * Tracks the highest extended sequence number of one stream (RFC 3550 §A.1 without
 * probation): `push` returns the extended number of each arriving packet, counting
 * cycles on wraparound and placing late/reordered packets in the right cycle.
 */
export class SeqUnwrapper {
  /** Highest extended sequence number seen, or −1 before the first packet. */
  highest = -1;
  /** Packets seen. */
  received = 0;

  /** The extended sequence number of `seq` (16-bit); updates the highest seen. */
  push(seq: number): number {
    this.received++;
    if (this.highest < 0) {
      this.highest = seq & 0xffff;
      return this.highest;
    }
    const ext = unwrapSeq(seq, this.highest);
    if (ext > this.highest) this.highest = ext;
    return ext;
  }

  /** Forget the stream (new SSRC). */
  reset(): void {
    this.highest = -1;
    this.received = 0;
  }
}
