/**
 * Injected time for the SIP stack: every retransmission, expiry and ring timer goes
 * through a `SipClock`, so tests drive RFC 3261 §17 timers without sleeping.
 */

export interface TimerHandle {
  cancel(): void;
}

export interface SipClock {
  /** Milliseconds since an arbitrary epoch (monotonic for the real clock). */
  now(): number;
  /** Wall-clock milliseconds since 1970 (Date headers, nonces). */
  wallNow(): number;
  /** Run `fn` once after `ms` milliseconds. */
  setTimer(ms: number, fn: () => void): TimerHandle;
}

/** The real clock: performance.now() and setTimeout (unref'd so timers never hold the process). */
export const realClock: SipClock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A manual clock for tests: `advance(ms)` fires due timers in order. */
export class ManualClock implements SipClock {
  private t = 0;
  private seq = 0;
  private readonly wallBase: number;
  private pending: Pending[] = [];

  constructor(wallBase = 1_700_000_000_000) {
    this.wallBase = wallBase;
  }

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.wallBase + this.t;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.pending.push(p);
    return {
      cancel: () => {
        p.cancelled = true;
      },
    };
  }

  /** Move time forward by `ms`, firing every timer that falls due (including ones they schedule). */
  advance(ms: number): void {
    const target = this.t + ms;
    for (;;) {
      this.pending = this.pending.filter((p) => !p.cancelled);
      let next: Pending | undefined;
      for (const p of this.pending) if (p.at <= target && (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      if (!next) break;
      this.t = next.at;
      next.cancelled = true;
      next.fn();
    }
    this.t = target;
  }

  /** Number of live timers (leak checks in tests). */
  get timers(): number {
    return this.pending.filter((p) => !p.cancelled).length;
  }
}
