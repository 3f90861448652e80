/**
 * Brute-force protection: a source address that fails authentication `maxFailures` times
 * within `windowMs` is locked out for `lockMs` (every request from it is refused, and
 * counted). Pure, on an injected clock; the table is bounded.
 */

export interface LockoutPolicy {
  /** Failed attempts that lock a source out. */
  maxFailures: number;
  /** Window in which failures are counted, ms. */
  windowMs: number;
  /** Lockout duration, ms. */
  lockMs: number;
}

interface Entry {
  failures: number[];
  lockedUntil: number;
}

export class Lockout {
  private readonly policy: LockoutPolicy;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  /** Lockouts started since creation. */
  lockouts = 0;
  /** Requests refused because their source was locked out. */
  refused = 0;

  constructor(policy: LockoutPolicy, now: () => number, maxEntries = 10_000) {
    this.policy = policy;
    this.now = now;
    this.maxEntries = maxEntries;
  }

  /** True while `source` is locked out (counts the refusal). */
  isLocked(source: string): boolean {
    const e = this.entries.get(source);
    if (!e || e.lockedUntil <= this.now()) return false;
    this.refused++;
    return true;
  }

  /** Remaining lock time, ms (0 when not locked). */
  lockRemaining(source: string): number {
    const e = this.entries.get(source);
    return e ? Math.max(0, e.lockedUntil - this.now()) : 0;
  }

  /** Record a failed attempt; returns true when this failure starts a lockout. */
  fail(source: string): boolean {
    const now = this.now();
    let e = this.entries.get(source);
    if (!e) {
      if (this.entries.size >= this.maxEntries) this.prune(now);
      e = { failures: [], lockedUntil: 0 };
      this.entries.set(source, e);
    }
    const since = now - this.policy.windowMs;
    e.failures = e.failures.filter((t) => t > since);
    e.failures.push(now);
    if (e.failures.length >= this.policy.maxFailures && e.lockedUntil <= now) {
      e.lockedUntil = now + this.policy.lockMs;
      e.failures = [];
      this.lockouts++;
      return true;
    }
    return false;
  }

  /** A success clears the failure history of `source`. */
  succeed(source: string): void {
    const e = this.entries.get(source);
    if (e && e.lockedUntil <= this.now()) this.entries.delete(source);
  }

  /** Sources currently locked (ops). */
  locked(): string[] {
    const now = this.now();
    return [...this.entries].filter(([, e]) => e.lockedUntil > now).map(([k]) => k);
  }

  private prune(now: number): void {
    const since = now - this.policy.windowMs;
    for (const [k, e] of this.entries) if (e.lockedUntil <= now && e.failures.every((t) => t <= since)) this.entries.delete(k);
    // Still full (a flood of distinct sources): drop the oldest unlocked entries.
    for (const [k, e] of this.entries) {
      if (this.entries.size < this.maxEntries) break;
      if (e.lockedUntil <= now) this.entries.delete(k);
    }
  }
}
