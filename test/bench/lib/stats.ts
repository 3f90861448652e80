/**
 * Small statistics for the benchmark: nearest-rank percentiles, medians, and a
 * fixed-bucket latency histogram that records without allocating (for hot paths).
 * Pure: numbers in, numbers out.
 */

/** Nearest-rank percentile (p in 0–100) of an unsorted list; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return percentileSorted(sorted, p);
}

/** Nearest-rank percentile of an ascending list; NaN when empty. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0–100, got ${p}`);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Median: the middle value, or the mean of the two middle values of an even-sized list. NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Rounds to `digits` decimals (for JSON output); passes NaN/Infinity through as null-able values. */
export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * A histogram of durations in milliseconds with fixed buckets: 1 µs wide below 1 ms,
 * 10 µs below 10 ms, 100 µs below 100 ms, 1 ms below 1 s, one overflow bucket above.
 * `record` is allocation-free. Percentiles report a bucket's upper edge (a value is
 * never under-reported by more than one bucket width).
 */
export class LatencyHistogram {
  /** [0,1) ms by 1 µs, [1,10) by 10 µs, [10,100) by 100 µs, [100,1000) by 1 ms, overflow. */
  private readonly counts = new Float64Array(1000 + 900 + 900 + 900 + 1);
  count = 0;
  max = 0;
  min = Infinity;
  sum = 0;

  record(ms: number): void {
    if (!(ms >= 0)) ms = 0; // clock steps or NaN count as zero rather than corrupting a bucket
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
    this.counts[LatencyHistogram.bucketOf(ms)]!++;
  }

  /** Index of the bucket holding `ms` (exported for tests). */
  static bucketOf(ms: number): number {
    if (ms < 1) return Math.floor(ms * 1000);
    if (ms < 10) return 1000 + Math.floor((ms - 1) * 100);
    if (ms < 100) return 1900 + Math.floor((ms - 10) * 10);
    if (ms < 1000) return 2800 + Math.floor(ms - 100);
    return 3700;
  }

  /** Upper edge of bucket `i`, ms (overflow: Infinity). */
  static upperEdge(i: number): number {
    if (i < 1000) return (i + 1) / 1000;
    if (i < 1900) return 1 + (i - 1000 + 1) / 100;
    if (i < 2800) return 10 + (i - 1900 + 1) / 10;
    if (i < 3700) return 100 + (i - 2800 + 1);
    return Infinity;
  }

  /** Nearest-rank percentile as the upper edge of its bucket (capped at the largest value seen); NaN when empty. */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(LatencyHistogram.upperEdge(i), this.max);
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? Number.NaN : this.sum / this.count;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
    this.min = Infinity;
    this.sum = 0;
  }
}
