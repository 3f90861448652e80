/**
 * One scheduler for every viewer's send queue. Packets are queued as ingest hands them
 * over; viewers with queued packets are woken, and a drain pass runs on the next turn of
 * the event loop, round-robin, with a per-viewer quantum and a global budget per pass,
 * so one slow or bursting viewer never starves the others and neither a keyframe burst
 * nor a cache replay blocks the loop for long.
 *
 * Optionally (`directBudgetMs` > 0) a live packet for a viewer with an empty queue goes
 * out at once from the ingest callback, within a time budget per turn. Measured at 100
 * viewers it gains nothing: a burst (a frame from one TCP read) costs the same CPU in
 * total whichever order it goes out in, so its last packet leaves no sooner; sending
 * packet by packet to every viewer (instead of a viewer's packets back to back) costs
 * the kernel a little more per datagram and keeps the loop busy longer. Off by default.
 */

import { threadCpuMs } from "./latency.ts";

/** What the pacer asks of a viewer. */
export interface Drainable {
  /** Sends up to `max` packets now; returns how many it sent, and sets `retryInMs`. */
  drain(max: number, nowMs: number): number;
  /**
   * After `drain`: when it can continue: 0 = at once, n > 0 = after n ms (pacing
   * tokens, socket backpressure), −1 = nothing left.
   */
  readonly retryInMs: number;
}

/** setImmediate/setTimeout and a clock, injectable for tests. */
export interface PacerTimers {
  setImmediate(fn: () => void): unknown;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export class Pacer {
  private readonly active = new Set<Drainable>();
  private readonly timers: PacerTimers;
  private readonly quantum: number;
  private readonly budget: number;
  private immediate = false;
  private timer: unknown;
  private timerAt = Infinity;
  private closed = false;
  private readonly directBudgetMs: number;
  private readonly cpuNow: () => number;
  /** Direct sends refused until the next turn (this turn's budget is spent). */
  private directSpent = false;
  private directRefill = false;
  private directCount = 0;
  private turnStart = 0;
  private readonly refillBound = (): void => {
    this.directRefill = false;
    this.directSpent = false;
  };
  private readonly runBound = (): void => this.run();
  private readonly timerBound = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.run();
  };
  /** Drain passes run (diagnostics). */
  passes = 0;
  /** Longest drain pass since `resetMeasurements()` in this thread's CPU time, ms, the batch writes it queued included. */
  passMaxMs = 0;
  private passStart = 0;
  private readonly measure = (): void => {
    const ms = this.cpuNow() - this.passStart;
    if (ms > this.passMaxMs) this.passMaxMs = ms;
  };

  /**
   * `quantum`: packets one viewer may send per pass (fairness). `budget`: packets all
   * viewers together may send per pass before yielding to I/O. `directBudgetMs`: time
   * that direct sends from ingest callbacks may take per turn of the event loop, ms.
   */
  constructor(timers: PacerTimers, quantum = 64, budget = 1024, directBudgetMs = 0, cpuNow: () => number = threadCpuMs) {
    this.timers = timers;
    this.cpuNow = cpuNow;
    this.quantum = quantum;
    this.budget = budget;
    this.directBudgetMs = directBudgetMs;
  }

  /**
   * May one packet be sent directly now? The first call of a turn starts its clock;
   * once this turn's direct sends have taken `directBudgetMs` (checked every 32 calls)
   * the answer is no until the next turn (the check phase, after this I/O callback).
   */
  takeDirect(): boolean {
    if (this.closed || this.directSpent) return false;
    if (!this.directRefill) {
      this.directRefill = true;
      this.directCount = 0;
      this.turnStart = this.timers.now();
      this.timers.setImmediate(this.refillBound);
      if (this.directBudgetMs <= 0) {
        this.directSpent = true;
        return false;
      }
    } else if ((++this.directCount & 31) === 0 && this.timers.now() - this.turnStart >= this.directBudgetMs) {
      this.directSpent = true;
      return false;
    }
    return true;
  }

  /** A viewer has packets queued. Cheap when already scheduled. */
  wake(v: Drainable): void {
    if (this.closed) return;
    this.active.add(v);
    if (!this.immediate) {
      this.immediate = true;
      this.timers.setImmediate(this.runBound);
    }
  }

  /** Stop draining a viewer (it closed). */
  remove(v: Drainable): void {
    this.active.delete(v);
  }

  close(): void {
    this.closed = true;
    this.active.clear();
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  resetMeasurements(): void {
    this.passMaxMs = 0;
  }

  private run(): void {
    this.immediate = false;
    if (this.closed) return;
    this.passes++;
    let budget = this.budget;
    let soonest = Infinity;
    let again = false;
    const now = this.timers.now();
    this.passStart = this.cpuNow();
    queueMicrotask(this.measure); // after the writes the pass queues (SendBatch flushes in a microtask)
    // A snapshot, so viewers moved to the back below are not visited twice in one pass.
    for (const v of [...this.active]) {
      if (budget <= 0) {
        again = true;
        break;
      }
      const share = Math.min(this.quantum, budget);
      budget -= v.drain(share, now);
      const retryInMs = v.retryInMs;
      if (retryInMs < 0) {
        this.active.delete(v);
        continue;
      }
      // Round robin: a viewer that had its full quantum goes to the back of the line; one cut
      // short by the pass budget keeps its place and goes first next pass.
      if (share === this.quantum) {
        this.active.delete(v);
        this.active.add(v);
      }
      if (retryInMs === 0) again = true;
      else soonest = Math.min(soonest, retryInMs);
    }
    if (again) {
      this.immediate = true;
      this.timers.setImmediate(this.runBound);
    } else if (soonest !== Infinity) {
      const at = now + soonest;
      if (at < this.timerAt) {
        if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
        this.timerAt = at;
        this.timer = this.timers.setTimeout(this.timerBound, Math.max(1, Math.ceil(soonest)));
      }
    }
  }
}
