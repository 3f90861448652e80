/**
 * The UDP client ports RTSP ingest may use (config `rtsp.clientPortRange`), handed out
 * as RTP/RTCP pairs: an even RTP port and the next odd one (RFC 3550 §11, RFC 2326 §12.39).
 *
 * Shared by every camera; the only mutable state cameras share. A rotating cursor avoids
 * handing a just-released pair straight back, so late packets of an old session do not
 * land in a new one.
 */
export interface PortPairLease {
  readonly rtp: number;
  readonly rtcp: number;
  /** Returns the pair to the pool; idempotent. */
  release(): void;
}

export class UdpPortPool {
  private readonly first: number;
  private readonly pairs: number;
  private readonly used: Uint8Array;
  private cursor = 0;
  private inUse = 0;

  /** `range` is inclusive [first, last]; pairs start on even ports. */
  constructor(range: readonly [number, number]) {
    this.first = range[0] % 2 === 0 ? range[0] : range[0] + 1;
    this.pairs = Math.max(0, Math.floor((range[1] - this.first + 1) / 2));
    this.used = new Uint8Array(this.pairs);
  }

  /** Pairs in the pool. */
  get size(): number {
    return this.pairs;
  }

  /** Pairs currently leased. */
  get leased(): number {
    return this.inUse;
  }

  /** Leases the next free pair, or undefined when all are in use. */
  acquire(): PortPairLease | undefined {
    for (let n = 0; n < this.pairs; n++) {
      const i = (this.cursor + n) % this.pairs;
      if (this.used[i]) continue;
      this.used[i] = 1;
      this.inUse++;
      this.cursor = (i + 1) % this.pairs;
      const rtp = this.first + 2 * i;
      let released = false;
      return {
        rtp,
        rtcp: rtp + 1,
        release: () => {
          if (released) return;
          released = true;
          this.used[i] = 0;
          this.inUse--;
        },
      };
    }
    return undefined;
  }
}
