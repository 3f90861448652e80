/**
 * Failure counting for sign-in (per source address, per account): a fixed window per key, with a
 * bounded number of keys so a flood of distinct addresses cannot grow memory without limit.
 * Pure apart from the injected clock.
 */

export interface RateLimiterOptions {
  /** Events allowed per key per window. */
  max: number;
  /** Window length, milliseconds. */
  windowMs: number;
  /** Keys tracked at most; the least recently touched are forgotten first. Default 50000. */
  maxKeys?: number;
  /** Milliseconds since the epoch. */
  clock: () => number;
}

interface Bucket {
  start: number;
  count: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly opts: Required<RateLimiterOptions>;

  constructor(opts: RateLimiterOptions) {
    this.opts = { maxKeys: 50000, ...opts };
  }

  /** Record one event for `key`. */
  hit(key: string): void {
    const now = this.opts.clock();
    let b = this.buckets.get(key);
    if (!b || now - b.start >= this.opts.windowMs) b = { start: now, count: 0 };
    b.count++;
    // Re-insert so Map order is least-recently-touched first.
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > this.opts.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (!oldest.done) this.buckets.delete(oldest.value);
    }
  }

  /** Milliseconds until `key` may try again, or 0 when it is not limited. */
  blockedFor(key: string): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    const left = b.start + this.opts.windowMs - this.opts.clock();
    if (left <= 0) {
      this.buckets.delete(key);
      return 0;
    }
    return b.count >= this.opts.max ? left : 0;
  }

  /** Forget `key` (e.g. after a successful sign-in of that account). */
  reset(key: string): void {
    this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }
}
