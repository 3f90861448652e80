/**
 * What a replay stream teaches about the recording, without I/O: the timeline's gaps and the
 * stretches the recorder did deliver, read from the recorder's own answers.
 *
 * - The first frame of a stream (a start, seek, jump, speed change) lands later than the time
 *   asked for (forward play), or the PLAY answer's `Range` starts later: nothing was recorded
 *   between the two.
 * - A frame jumps in recorded time, marked with the ONVIF discontinuity bit (D), or, in a stream
 *   of every frame, unmarked (many encoders lose the mark): nothing was recorded in between.
 * - The recorder refuses an open range (`clock=T-`) with 457 Invalid Range or 404: it holds
 *   nothing from T to now.
 * - The frames of one unbroken stretch were recorded (learned "present" when the stretch ends).
 *
 *   const g = new GapLearner({ minGapMs: 1000 });
 *   g.restart(asked, rate, intraOnly);          // before each new stream
 *   for (const l of g.frame(recordedMs, dBit)) index.learn(camera, l.range, l.present);
 *   for (const l of g.flush()) …                // the stream ended (pause, close, new PLAY)
 *
 * Jumps shorter than `minGapMs` are not gaps: recorders start a stream at a key frame near the
 * time asked, and at high speed (`Frames: intra`) frames are a GOP apart.
 */
import type { TimeRange } from "./recordings.ts";

export interface Learned {
  range: TimeRange;
  /** true: the recorder delivered media covering `range`; false: it had nothing there. */
  present: boolean;
}

export interface GapLearnerOptions {
  /** The shortest jump in recorded time learned as a gap, ms. */
  minGapMs: number;
}

/** A frame interval is taken as at most this (a slower recording still covers its frames' spans). */
const MAX_FRAME_MS = 1000;
/** The frame interval assumed until a stream shows its own. */
const DEFAULT_FRAME_MS = 40;

export class GapLearner {
  private readonly minGapMs: number;
  private asked: number | undefined;
  private rate = 1;
  private intraOnly = false;
  /** The unbroken stretch delivered so far: its first and last frame times. */
  private first: number | undefined;
  private last: number | undefined;
  /** The usual step between two frames of this stream, ms (absolute). */
  private step = DEFAULT_FRAME_MS;
  private measured = false;

  constructor(o: GapLearnerOptions) {
    this.minGapMs = o.minGapMs;
  }

  /** A new stream from `asked` at `rate` replaces the current one; returns what the old one taught. */
  restart(asked: number, rate: number, intraOnly: boolean): Learned[] {
    const out = this.flush();
    this.asked = asked;
    this.rate = rate;
    this.intraOnly = intraOnly;
    this.step = DEFAULT_FRAME_MS;
    this.measured = false;
    return out;
  }

  /** The PLAY answer's `Range` starts at `at` (forward play). */
  answered(at: number): Learned[] {
    if (this.asked === undefined || this.rate <= 0 || this.first !== undefined) return [];
    const out: Learned[] = [];
    if (at - this.asked >= this.minGapMs) out.push({ range: { start: this.asked, end: at }, present: false });
    this.asked = Math.max(this.asked, at);
    return out;
  }

  /** The recorder refused to play from `at` on (457/404 to an open range) at wall time `now`. */
  refused(at: number, now: number): Learned[] {
    return now - at >= this.minGapMs ? [{ range: { start: at, end: now }, present: false }] : [];
  }

  /** A video packet of recorded time `time` (repeated for each packet of a frame), D bit `discontinuity`. */
  frame(time: number, discontinuity: boolean): Learned[] {
    const last = this.last;
    if (last === undefined) {
      this.first = time;
      this.last = time;
      const asked = this.asked;
      this.asked = undefined;
      // Forward play starts at or before the time asked (the key frame before it); later means a gap.
      // With key frames only, the recorder may start at the next key frame: no conclusion then.
      if (asked !== undefined && this.rate > 0 && !this.intraOnly && time - asked >= this.minGapMs) return [{ range: { start: asked, end: time }, present: false }];
      if (asked !== undefined && this.rate < 0 && !this.intraOnly && asked - time >= this.minGapMs) return [{ range: { start: time + this.step, end: asked }, present: false }];
      return [];
    }
    if (time === last) return [];
    const jump = time - last;
    const forward = this.rate > 0;
    // A jump between consecutive frames is a gap: marked by the recorder (D), or plainly too long for
    // a stream of every frame (not so with key frames only, which are a GOP apart).
    if ((discontinuity || !this.intraOnly) && (forward ? jump : -jump) >= this.minGapMs + this.step) {
      const out = this.flush();
      const gap = forward ? { start: last + this.step, end: time } : { start: time + this.step, end: last };
      out.push({ range: gap, present: false });
      this.first = time;
      this.last = time;
      return out;
    }
    // The frame interval: the shortest step of this stream (dropped frames make longer ones).
    if ((forward ? jump : -jump) > 0 && !this.intraOnly) this.step = Math.min(Math.abs(jump), this.measured ? this.step : MAX_FRAME_MS);
    this.measured = true;
    this.last = time;
    return [];
  }

  /** The stretch delivered since the last break, learned present; the stream is over. */
  flush(): Learned[] {
    const { first, last } = this;
    this.first = undefined;
    this.last = undefined;
    this.asked = undefined;
    if (first === undefined || last === undefined) return [];
    const start = Math.min(first, last);
    const end = Math.max(first, last) + this.step;
    return [{ range: { start, end }, present: true }];
  }
}
