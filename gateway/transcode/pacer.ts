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
 * The delay is not fixed: ffmpeg's own lag (from a unit's arrival to the sound made from it
 * coming back) is measured on every packet, and the delay is the largest lag of the last few
 * seconds plus a margin (`LagWatch`), so sound is not sent late when the machine gets busy
 * and not held longer than needed when it is quiet.
 *
 * `FollowDelay` and `LagWatch` are pure (times in, a send time or a delay out); `Pacer` holds
 * the packets and one timer.
 */
import type { TimerHandle, Timers } from "../rtsp/timers.ts";

/** Decides a packet's send time from when its content reached us and now (ms); never before now. */
export interface SendPlan {
  sendAt(inputAt: number, now: number): number;
  reset(): void;
}

/**
 * A delay of `target()` ms after each packet's input time, moving towards a new target by
 * at most `slew` of the time passed (0.1: 100 ms per second), so a picture neither jumps
 * nor stalls visibly when it changes (the first packet takes the target as it is).
 * Packets never leave before now nor before the previous one.
 */
export class FollowDelay implements SendPlan {
  delayMs = 0;
  private last = Number.NaN;
  private lastSendAt = Number.NEGATIVE_INFINITY;
  private readonly target: () => number;
  private readonly slew: number;

  constructor(target: () => number, slew = 0.1) {
    this.target = target;
    this.slew = slew;
  }

  sendAt(inputAt: number, now: number): number {
    const want = this.target();
    // The first packet takes the target as it is: nothing was shown before it.
    const step = Number.isNaN(this.last) ? Infinity : Math.max(0, now - this.last) * this.slew;
    this.last = now;
    this.delayMs = want > this.delayMs ? Math.min(want, this.delayMs + step) : Math.max(want, this.delayMs - step);
    const at = Math.max(now, inputAt + this.delayMs, this.lastSendAt);
    this.lastSendAt = at;
    return at;
  }

  reset(): void {
    this.lastSendAt = Number.NEGATIVE_INFINITY;
  }
}

/**
 * The delay converted output needs, ms: the largest lag seen over the current and the previous
 * window plus `marginMs`, within [`minMs`, `maxMs`]; `maxMs` until a lag was seen. It rises at
 * once with a larger lag and falls only after a whole window without it.
 */
export class LagWatch {
  private readonly o: { windowMs: number; marginMs: number; minMs: number; maxMs: number };
  private cur = Number.NEGATIVE_INFINITY;
  private prev = Number.NEGATIVE_INFINITY;
  private windowStart = Number.NaN;

  constructor(o: { windowMs: number; marginMs: number; minMs: number; maxMs: number }) {
    this.o = o;
  }

  /** A packet came back `lagMs` after its input reached us, at `now` (ms). */
  note(lagMs: number, now: number): void {
    if (Number.isNaN(this.windowStart)) this.windowStart = now;
    if (now - this.windowStart >= this.o.windowMs) {
      // A window with nothing in it (no output) leaves nothing to remember either.
      this.prev = now - this.windowStart >= 2 * this.o.windowMs ? Number.NEGATIVE_INFINITY : this.cur;
      this.cur = Number.NEGATIVE_INFINITY;
      this.windowStart = now;
    }
    if (lagMs > this.cur) this.cur = lagMs;
  }

  /** The delay to pace at, ms. */
  delayMs(): number {
    const lag = Math.max(this.cur, this.prev);
    if (lag === Number.NEGATIVE_INFINITY) return this.o.maxMs;
    return Math.min(this.o.maxMs, Math.max(this.o.minMs, Math.round(lag + this.o.marginMs)));
  }

  /** Forget what was seen (a new ffmpeg). */
  reset(): void {
    this.cur = this.prev = Number.NEGATIVE_INFINITY;
    this.windowStart = Number.NaN;
  }
}

export interface PacerOptions {
  plan: SendPlan;
  timers: Timers;
  /** Receives each packet at its time (valid during the call). */
  send: (packet: Buffer) => void;
  /** Packets held at most; past it the oldest is sent at once. */
  maxQueue: number;
}

/** Holds packets (copies) until their send time. close() drops what is held. */
export class Pacer {
  private readonly o: PacerOptions;
  private readonly queue: { at: number; packet: Buffer }[] = [];
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
    if (this.queue.length === 0 && at <= now) {
      this.o.send(packet);
      return;
    }
    this.queue.push({ at, packet: Buffer.from(packet) });
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

  private flush(): void {
    if (this.timer !== undefined) return;
    const now = this.o.timers.now();
    // Within a millisecond counts as due: timers fire on whole milliseconds.
    while (this.queue.length > 0 && this.queue[0]!.at <= now + 1) this.o.send(this.queue.shift()!.packet);
    if (this.queue.length === 0) return;
    this.timer = this.o.timers.setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) this.flush();
    }, this.queue[0]!.at - now);
  }
}
