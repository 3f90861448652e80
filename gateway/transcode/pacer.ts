/**
 * Pacing a camera's tracks after a conversion, so they leave the gateway in step.
 *
 * ffmpeg hands converted sound back in bursts (every Opus packet of an AAC frame at once,
 * one to two frames late, later still when the machine is busy). Sent as they come, the
 * browser's jitter buffer takes that burstiness for network jitter and holds sound back by
 * a couple of hundred milliseconds, and its lip sync then has to delay the picture to
 * match, a few tens of milliseconds a second, chasing every change. Paced, each sound
 * packet leaves a steady delay after its content reached us from the camera, and the
 * camera's picture, which needs no conversion, is held by the same delay: both reach the
 * browser with the camera's own cadence and in step. (Measured in Chromium with a busy
 * machine: unpaced, sound started 1.6 s behind and had not settled within 40 s; paced by
 * 250 ms, within 100 ms in a few seconds.)
 *
 * The delay stays put. For the browser a change of it is a change of the network's delay,
 * and Chromium's buffers and lip sync follow one badly. Measured in Chromium, with the delay
 * following ffmpeg's lag (the largest of the last 10–20 s): falling 100 ms within a second
 * (ffmpeg's start-up lag leaving the window) left its video jitter buffer 160 ms above its
 * target for 5 s and its picture 175 ms behind the sound, until it reset and dropped frames;
 * rising 230 ms over 12 s (one stall) raised its video target from 11 to 323 ms and its sound
 * buffer to 290 ms for tens of seconds. Held at one delay, both tracks' buffers settled
 * within 10 ms of each other and the lip sync within a few ms. So the delay starts from what
 * ffmpeg's lag is on a quiet machine, and is raised (`LagWatch`) only when sound goes out late
 * again and again, never lowered; sound later than it is sent at once.
 *
 * `FollowDelay` and `LagWatch` are pure (times in, a send time or a delay out); `Pacer` holds
 * the packets and one timer.
 */
import type { TimerHandle, Timers } from "../rtsp/timers.ts";

/** Decides a packet's send time from when its content reached us and now (ms); never before now. */
export interface SendPlan {
  sendAt(inputAt: number, now: number): number;
  /** The delay the last `sendAt` planned with, ms: a packet is due at its input time plus this. */
  readonly delayMs: number;
  reset(): void;
}

/** How `FollowDelay` moves towards a new target. */
export interface FollowDelayOptions {
  /** Rise per ms of time passed (0.1: 100 ms a second). Default 0.1. */
  riseSlew?: number;
  /** Fall per ms of time passed. Default: riseSlew. */
  fallSlew?: number;
  /** The delay before the first packet, ms; without it the first packet takes the target as it is. */
  initialMs?: number;
}

/**
 * A delay of `target()` ms after each packet's input time, moving towards a new target by
 * at most a slew of the time passed, so a picture neither jumps nor stalls visibly when it
 * changes. Packets never leave before now nor before the previous one.
 */
export class FollowDelay implements SendPlan {
  delayMs: number;
  private last = Number.NaN;
  private lastSendAt = Number.NEGATIVE_INFINITY;
  private readonly target: () => number;
  private readonly rise: number;
  private readonly fall: number;
  private readonly jumpFirst: boolean;

  constructor(target: () => number, o: FollowDelayOptions = {}) {
    this.target = target;
    this.rise = o.riseSlew ?? 0.1;
    this.fall = o.fallSlew ?? this.rise;
    this.delayMs = o.initialMs ?? 0;
    this.jumpFirst = o.initialMs === undefined;
  }

  sendAt(inputAt: number, now: number): number {
    const want = this.target();
    const first = Number.isNaN(this.last);
    const passed = first ? 0 : Math.max(0, now - this.last);
    this.last = now;
    // Without an initial delay the first packet takes the target as it is: nothing was shown before it.
    if (first && this.jumpFirst) this.delayMs = want;
    else if (want > this.delayMs) this.delayMs = Math.min(want, this.delayMs + passed * this.rise);
    else this.delayMs = Math.max(want, this.delayMs - passed * this.fall);
    const at = Math.max(now, inputAt + this.delayMs, this.lastSendAt);
    this.lastSendAt = at;
    return at;
  }

  reset(): void {
    this.lastSendAt = Number.NEGATIVE_INFINITY;
  }
}

/**
 * The delay converted output is paced at, ms: `initialMs` until ffmpeg's lag shows it is too
 * short, then raised, never lowered. At the end of each window of `windowMs`, if more than
 * `lateShare` of the lags noted in it exceeded the delay (that sound went out late), the delay
 * becomes the window's 95th-percentile lag plus `marginMs`, at most `maxMs`. One slow moment
 * (a lag spike) does not move it, and it does not fall back as the machine gets quiet: every
 * change of the delay is a change of arrival time that the browser's buffers must follow.
 */
export class LagWatch {
  private readonly o: { windowMs: number; marginMs: number; maxMs: number; initialMs: number; lateShare: number };
  private delay: number;
  private readonly lags: number[] = [];
  private windowStart = Number.NaN;

  constructor(o: { windowMs: number; marginMs: number; maxMs: number; initialMs: number; lateShare: number }) {
    this.o = o;
    this.delay = Math.min(o.maxMs, o.initialMs);
  }

  /** A packet came back `lagMs` after its input reached us, at `now` (ms). */
  note(lagMs: number, now: number): void {
    if (Number.isNaN(this.windowStart)) this.windowStart = now;
    if (now - this.windowStart >= this.o.windowMs) {
      this.endWindow();
      this.windowStart = now;
    }
    if (this.lags.length < 10_000) this.lags.push(lagMs);
  }

  /** The delay to pace at, ms. */
  delayMs(): number {
    return this.delay;
  }

  /** Forget the window under way (a new ffmpeg); the delay stays. */
  reset(): void {
    this.lags.length = 0;
    this.windowStart = Number.NaN;
  }

  private endWindow(): void {
    const lags = this.lags;
    let late = 0;
    for (const x of lags) if (x > this.delay) late++;
    if (lags.length > 0 && late > lags.length * this.o.lateShare) {
      lags.sort((x, y) => x - y);
      const p95 = lags[Math.min(lags.length - 1, Math.floor(lags.length * 0.95))]!;
      this.delay = Math.min(this.o.maxMs, Math.max(this.delay, Math.round(p95 + this.o.marginMs)));
    }
    lags.length = 0;
  }
}

export interface PacerOptions {
  plan: SendPlan;
  timers: Timers;
  /** Receives each packet at its time (valid during the call). */
  send: (packet: Buffer) => void;
  /** Packets held at most; past it the oldest is sent at once. */
  maxQueue: number;
  /**
   * A packet that would leave more than this long after it was due (its input time plus the
   * delay), ms, is dropped instead (`onLate`); undefined: sent however late.
   */
  dropLateMs?: number | undefined;
  onLate?: (() => void) | undefined;
}

/** Holds packets (copies) until their send time. close() drops what is held. */
export class Pacer {
  private readonly o: PacerOptions;
  private readonly queue: { at: number; due: number; packet: Buffer }[] = [];
  private timer: TimerHandle | undefined;
  private closed = false;

  constructor(o: PacerOptions) {
    this.o = o;
  }

  /** A packet (copied when held) whose content reached us at `inputAt` (the timers' clock, ms). */
  push(packet: Buffer, inputAt: number): void {
    if (this.closed) return;
    const now = this.o.timers.now();
    const at = this.o.plan.sendAt(inputAt, now);
    const due = inputAt + this.o.plan.delayMs;
    if (this.tooLate(due, now)) return;
    if (this.queue.length === 0 && at <= now) {
      this.o.send(packet);
      return;
    }
    this.queue.push({ at, due, packet: Buffer.from(packet) });
    while (this.queue.length > this.o.maxQueue) this.o.send(this.queue.shift()!.packet);
    this.flush();
  }

  /** Packets waiting. */
  get held(): number {
    return this.queue.length;
  }

  /** Drop what is held and start the plan again (a new ffmpeg, a new session). */
  reset(): void {
    this.queue.length = 0;
    this.o.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.o.plan.reset();
  }

  close(): void {
    this.closed = true;
    this.reset();
  }

  private tooLate(due: number, now: number): boolean {
    if (this.o.dropLateMs === undefined || now - due <= this.o.dropLateMs) return false;
    this.o.onLate?.();
    return true;
  }

  private flush(): void {
    if (this.timer !== undefined) return;
    const now = this.o.timers.now();
    // Within a millisecond counts as due: timers fire on whole milliseconds. Late only when
    // this loop was held up (a busy event loop): what is past the limit by then is dropped.
    while (this.queue.length > 0 && this.queue[0]!.at <= now + 1) {
      const q = this.queue.shift()!;
      if (!this.tooLate(q.due, now)) this.o.send(q.packet);
    }
    if (this.queue.length === 0) return;
    this.timer = this.o.timers.setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) this.flush();
    }, this.queue[0]!.at - now);
  }
}
