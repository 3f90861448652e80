/**
 * One source track's output timeline: upstream RTP (whose SSRC, sequence and timestamp
 * restart on every recorder reconnect) mapped onto one continuous timestamp space that
 * outlives upstream sessions, so viewers never need renegotiation.
 *
 * Pure: (ssrc, seq, ts, now) in, a verdict plus fields out; no allocation per packet.
 * Output sequence numbers are assigned later (after H.264 normalisation changes the
 * packet count); this only reports how many upstream packets were lost before this one,
 * so the gap can be kept (a viewer's NACK then asks for what we never had, instead of
 * decoding a frame with a hole it cannot see).
 */
import { seqDiff, tsDiff } from "./rtp/seq.ts";

/** What `map` decided for one packet. */
export const Verdict = {
  /** Forward it; `outTs`, `lost`, `newSession` are set. */
  FORWARD: 0,
  /** Same sequence number as the previous packet (RFC 3550 §A.1 duplicate). */
  DUPLICATE: 1,
  /** Older than the newest packet: reordered or late. Dropped (the H.264 path needs order). */
  LATE: 2,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** A sequence jump beyond this (either way) is a restart of the sender, not loss (cf. RFC 3550 §A.1 MAX_DROPOUT). */
export const MAX_SEQ_JUMP = 3000;
/** A timestamp jump beyond this many seconds inside one SSRC is an encoder restart: rebase. */
export const MAX_TS_JUMP_SECONDS = 10;

export class TrackTimeline {
  /** RTP clock rate, Hz. */
  readonly clockRate: number;

  /** Output timestamp of the last forwarded packet. */
  outTs = 0;
  /** Upstream packets lost just before the last forwarded one (0 normally). */
  lost = 0;
  /** The last forwarded packet started a new upstream session (SSRC change, restart, or first packet). */
  newSession = false;
  /** Upstream sessions seen (first one included). */
  sessions = 0;
  /** Rebases caused by jumps inside one SSRC. */
  jumps = 0;

  private started = false;
  private pendingSession = true;
  private ssrc = -1;
  private lastSeq = 0;
  private lastInTs = 0;
  private tsOffset = 0;
  private lastOutWallMs = 0;

  constructor(clockRate: number) {
    this.clockRate = clockRate;
  }

  /** The upstream session ended: the next packet rebases whatever its SSRC. */
  endSession(): void {
    this.pendingSession = true;
  }

  /**
   * Maps one upstream packet. On FORWARD, `outTs`, `lost` and `newSession` describe it.
   * `nowMs` is the arrival time (ms, any monotonic origin).
   */
  map(ssrc: number, seq: number, ts: number, nowMs: number): Verdict {
    let rebase = this.pendingSession || ssrc !== this.ssrc;
    let lost = 0;
    if (!rebase) {
      const d = seqDiff(seq, this.lastSeq);
      if (d === 0) return Verdict.DUPLICATE;
      if (d > MAX_SEQ_JUMP || d < -MAX_SEQ_JUMP) {
        rebase = true;
        this.jumps++;
      } else if (d < 0) {
        return Verdict.LATE;
      } else {
        lost = d - 1;
        const dt = tsDiff(ts, this.lastInTs);
        if (dt > MAX_TS_JUMP_SECONDS * this.clockRate || dt < -MAX_TS_JUMP_SECONDS * this.clockRate) {
          // Encoder restart under the same SSRC: keep the sequence, rebase the clock.
          this.rebaseTs(ts, nowMs);
          this.jumps++;
        }
      }
    }
    this.newSession = rebase;
    if (rebase) {
      if (this.pendingSession || ssrc !== this.ssrc) this.sessions++;
      this.pendingSession = false;
      this.ssrc = ssrc;
      this.rebaseTs(ts, nowMs);
      lost = 0;
    }
    this.lastSeq = seq;
    const outTs = (ts + this.tsOffset) >>> 0;
    if (outTs !== this.outTs || !this.started) this.lastOutWallMs = nowMs;
    this.lastInTs = ts;
    this.outTs = outTs;
    this.lost = lost;
    this.started = true;
    return Verdict.FORWARD;
  }

  /**
   * Continue from the last output timestamp plus the wall-clock time elapsed since it
   * (at least one tick), so the next frame lands where a receiver expects it.
   */
  private rebaseTs(ts: number, nowMs: number): void {
    if (!this.started) {
      this.tsOffset = 0;
      return;
    }
    const elapsed = Math.max(0, nowMs - this.lastOutWallMs);
    const step = Math.max(1, Math.round((elapsed * this.clockRate) / 1000));
    const target = (this.outTs + step) >>> 0;
    this.tsOffset = (target - ts) >>> 0;
  }
}
