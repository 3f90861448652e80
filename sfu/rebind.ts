/**
 * Re-binding an outgoing track to another source, without renegotiation: the viewer keeps
 * its SSRC, its sequence numbers run on without a gap and its timestamps continue from the
 * last frame sent by the wall-clock time elapsed since. Video moves over only at a
 * keyframe of the target (the decoder needs nothing from before it), so the old picture
 * keeps playing until the new one can be decoded: no visible gap.
 *
 * Pure: sources are opaque values, time is passed in. `Viewer` (sfu/viewer.ts) drives it
 * for a whole viewer (video and audio move together); a multi-camera session can drive
 * one per outgoing track the same way:
 *
 *   const sw = new SourceSwitch(current, { timeoutMs: 8000 });
 *   sw.request(target, now);                  // subscribe to target (demand), then…
 *   // for each packet: from the target, at a keyframe start →
 *   if (sw.onKeyframe(from, now)) { …rebind: left = sw.left; ts offset = spliceOffset(…) }
 *   sw.expired(now)                           // → the target given up on (no keyframe in time)
 */

/** What a track remembers of its last packet sent, for splicing the next source onto it. */
export interface SpliceState {
  /** Our RTP timestamp of the last packet sent. */
  lastTs: number;
  /** When that packet was mapped (ingest time, ms). */
  lastAt: number;
  /** Whether anything was sent yet (nothing to continue from otherwise). */
  sentAny: boolean;
  /** The current mapping: our ts = source ts + tsOffset (mod 2^32). */
  tsOffset: number;
}

/**
 * The timestamp offset (our ts = source ts + offset, mod 2^32) that puts the new source's
 * packet with timestamp `srcTs`, mapped at `now` (ms), after the last packet sent by the
 * time elapsed since (at least one tick: a new frame never shares the old frame's time).
 * Before anything was sent any mapping is right, so the current offset stays.
 */
export function spliceOffset(prev: SpliceState, srcTs: number, now: number, clockRate: number): number {
  if (!prev.sentAny) return prev.tsOffset >>> 0;
  const elapsed = Math.max(1, Math.round((Math.max(0, now - prev.lastAt) * clockRate) / 1000));
  return (prev.lastTs + elapsed - srcTs) >>> 0;
}

/** Outcome of `SourceSwitch.request`. */
export type SwitchRequest =
  /** Already bound there (a pending switch elsewhere, if any, was cancelled: see `abandoned`). */
  | "same"
  /** Subscribed: waiting for the target's next keyframe. */
  | "pending";

/**
 * One pending switch at a time: asking for another target replaces the pending one
 * (which is then `abandoned`), asking for the current source cancels it.
 */
export class SourceSwitch<S> {
  private cur: S;
  private tgt: S | undefined;
  private since = 0;
  private readonly timeoutMs: number;
  /** The source left behind by the last commit (release its subscription). */
  left: S | undefined;
  /** A target given up on by the last `request` (replaced or cancelled): release its subscription. */
  abandoned: S | undefined;

  constructor(current: S, o: { timeoutMs: number }) {
    this.cur = current;
    this.timeoutMs = o.timeoutMs;
  }

  get current(): S {
    return this.cur;
  }

  /** The source being switched to, while waiting for its keyframe. */
  get target(): S | undefined {
    return this.tgt;
  }

  /** Ask to move to `to` at `now` (ms). */
  request(to: S, now: number): SwitchRequest {
    this.abandoned = undefined;
    if (to === this.tgt) return "pending";
    if (this.tgt !== undefined) this.abandoned = this.tgt;
    this.tgt = undefined;
    if (to === this.cur) return "same";
    this.tgt = to;
    this.since = now;
    return "pending";
  }

  /**
   * A video keyframe starts on `from`: when it is the target, the switch commits (true;
   * `left` is the source left behind).
   */
  onKeyframe(from: S): boolean {
    if (this.tgt === undefined || from !== this.tgt) return false;
    return this.commit();
  }

  /** Moves to the target now (the current source is not sending anything worth keeping). */
  commit(): boolean {
    if (this.tgt === undefined) return false;
    this.left = this.cur;
    this.cur = this.tgt;
    this.tgt = undefined;
    return true;
  }

  /** The target, if it gave no keyframe within the timeout: the switch is given up (release it). */
  expired(now: number): S | undefined {
    if (this.tgt === undefined || now - this.since < this.timeoutMs) return undefined;
    const t = this.tgt;
    this.tgt = undefined;
    return t;
  }
}
