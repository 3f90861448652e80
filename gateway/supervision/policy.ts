/**
 * The restart policy of one supervised component, pure (the clock is injected): restart
 * what fails after a capped exponential backoff, and never loop. At most `maxRestarts`
 * failures are tolerated within a sliding `windowMs`; the next one disables the component
 * for `windowMs` (it is put in an error-tolerant state: a camera stops pulling, a media
 * worker's slot stays empty) until an administrator enables it or the time is up.
 *
 *   ok ──failure (≤ max in window)──▶ restart after backoff ──▶ ok
 *    └──failure (> max in window)───▶ disabled ──enable / window passed──▶ ok (counts cleared)
 */

export interface RestartPolicyOptions {
  /** Failures tolerated within the window; one more disables the component. */
  maxRestarts: number;
  /** The sliding window, and how long a disabled component stays disabled, ms. */
  windowMs: number;
  /** Delay before the first restart, ms; doubled for each failure in the window. */
  backoffMinMs: number;
  /** Cap of the delay, ms. */
  backoffMaxMs: number;
}

export type Verdict =
  /** Restart after `delayMs`; `failures` counts this one. */
  | { action: "restart"; delayMs: number; failures: number }
  /** Too many failures: disabled until `until` (epoch ms) unless enabled earlier. */
  | { action: "disable"; until: number; failures: number };

export class RestartBudget {
  private readonly o: RestartPolicyOptions;
  private readonly now: () => number;
  /** Times of the failures within the window, oldest first. */
  private recent: number[] = [];
  private until: number | undefined;

  /** @param now epoch ms (injected: tests drive it) */
  constructor(o: RestartPolicyOptions, now: () => number) {
    this.o = o;
    this.now = now;
  }

  /** A failure: what to do about it. A failure of a disabled component changes nothing. */
  failed(): Verdict {
    const t = this.now();
    if (this.until !== undefined) return { action: "disable", until: this.until, failures: this.recent.length };
    this.prune(t);
    this.recent.push(t);
    const failures = this.recent.length;
    if (failures > this.o.maxRestarts) {
      this.until = t + this.o.windowMs;
      return { action: "disable", until: this.until, failures };
    }
    const delayMs = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** Math.min(failures - 1, 30));
    return { action: "restart", delayMs, failures };
  }

  /** Failures within the window now. */
  failures(): number {
    this.prune(this.now());
    return this.recent.length;
  }

  /** Until when the component is disabled (epoch ms), or undefined. */
  get disabledUntil(): number | undefined {
    return this.until;
  }

  /** Disabled, and its time is up: the supervisor enables it. */
  due(): boolean {
    return this.until !== undefined && this.now() >= this.until;
  }

  /** Enabled again (an administrator, or the time is up): the count starts over. */
  enable(): void {
    this.until = undefined;
    this.recent = [];
  }

  private prune(t: number): void {
    const from = t - this.o.windowMs;
    let i = 0;
    while (i < this.recent.length && this.recent[i]! <= from) i++;
    if (i > 0) this.recent = this.recent.slice(i);
  }
}
