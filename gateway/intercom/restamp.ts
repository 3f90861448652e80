/**
 * Maps the door's RTP sequence numbers and timestamps into one continuous stream for the
 * browser (RFC 3550 §5.1): the door may change SSRC (re-INVITE, a new call leg after a
 * transfer on the device) or restart its counters, and the browser's jitter buffer must
 * see one source whose timeline never jumps backwards. Pure: packet fields and time in,
 * output fields (or "drop") out; no allocation per packet.
 */

/** Sequence jumps beyond this are a restart of the upstream, not loss (then re-anchored). */
const MAX_FORWARD_GAP = 1000;
/** Packets this far behind the newest one are still forwarded (reordering); older ones are dropped. */
const MAX_REORDER = 50;

export interface RestampOut {
  sequenceNumber: number;
  timestamp: number;
  /** First packet after a discontinuity (a new talkspurt for the receiver, RFC 3551 §4.1). */
  marker: boolean;
}

export interface RestamperOptions {
  /** First output sequence number (random in production, RFC 3550 §5.1). */
  initialSeq: number;
  /** First output timestamp (random in production). */
  initialTs: number;
  /** RTP clock rate, Hz. Default 8000 (G.711). */
  clockRate?: number;
  /** Samples in a packet, used as the minimum timestamp step across a discontinuity. Default 160 (20 ms of G.711). */
  packetSamples?: number;
}

export interface RestamperStats {
  forwarded: number;
  duplicates: number;
  tooLate: number;
  /** Times the mapping was re-anchored (new SSRC, restart, upstream reconnect). */
  resyncs: number;
}

export class RtpRestamper {
  readonly stats: RestamperStats = { forwarded: 0, duplicates: 0, tooLate: 0, resyncs: 0 };
  private readonly clockRate: number;
  private readonly packetSamples: number;
  private anchored = false;
  private pendingResync = true;
  private inSsrc = -1;
  /** Highest input sequence number seen since the anchor. */
  private inMaxSeq = 0;
  private seqOffset = 0;
  private tsOffset = 0;
  /** Highest output sequence number / timestamp so far, and when that timestamp went out (ms). */
  private outSeq: number;
  private outTs: number;
  private outAt = 0;

  constructor(opts: RestamperOptions) {
    this.clockRate = opts.clockRate ?? 8000;
    this.packetSamples = opts.packetSamples ?? 160;
    this.outSeq = (opts.initialSeq - 1) & 0xffff;
    this.outTs = opts.initialTs >>> 0;
  }

  /** The next packet starts a new mapping (upstream reconnected, tracks changed). */
  resync(): void {
    this.pendingResync = true;
  }

  /**
   * Output fields for one input packet, written into `out`; false = drop (duplicate, or too
   * old to be useful). `nowMs` is a monotonic clock, used to keep the timeline moving in
   * step with real time across a discontinuity.
   */
  map(seq: number, ts: number, ssrc: number, nowMs: number, out: RestampOut): boolean {
    let marker = false;
    if (this.pendingResync || !this.anchored || ssrc !== this.inSsrc) {
      this.anchor(seq, ts, ssrc, nowMs);
      marker = true;
    } else {
      const d = ((seq - this.inMaxSeq + 0x8000) & 0xffff) - 0x8000; // signed 16-bit distance
      if (d === 0) {
        this.stats.duplicates++;
        return false;
      }
      if (d > MAX_FORWARD_GAP || d < -MAX_FORWARD_GAP) {
        // Counters restarted on the same SSRC (some devices do on re-INVITE).
        this.anchor(seq, ts, ssrc, nowMs);
        marker = true;
      } else if (d < 0) {
        if (d < -MAX_REORDER) {
          this.stats.tooLate++;
          return false;
        }
        // Reordered: same mapping, lower sequence number; the receiver's jitter buffer sorts it.
        out.sequenceNumber = (seq + this.seqOffset) & 0xffff;
        out.timestamp = (ts + this.tsOffset) >>> 0;
        out.marker = false;
        this.stats.forwarded++;
        return true;
      } else {
        this.inMaxSeq = seq;
      }
    }
    out.sequenceNumber = (seq + this.seqOffset) & 0xffff;
    out.timestamp = (ts + this.tsOffset) >>> 0;
    out.marker = marker;
    this.outSeq = out.sequenceNumber;
    this.outTs = out.timestamp;
    this.outAt = nowMs;
    this.stats.forwarded++;
    return true;
  }

  private anchor(seq: number, ts: number, ssrc: number, nowMs: number): void {
    // Continue one packet after the last output, or as far as real time moved meanwhile.
    const elapsed = this.anchored ? Math.round(((nowMs - this.outAt) * this.clockRate) / 1000) : 0;
    const nextTs = this.anchored ? (this.outTs + Math.max(this.packetSamples, elapsed)) >>> 0 : this.outTs;
    const nextSeq = (this.outSeq + 1) & 0xffff;
    this.seqOffset = (nextSeq - seq) & 0xffff;
    this.tsOffset = (nextTs - ts) >>> 0;
    this.inSsrc = ssrc;
    this.inMaxSeq = seq;
    if (this.anchored) this.stats.resyncs++;
    this.anchored = true;
    this.pendingResync = false;
  }
}
