/**
 * A fixed-size latency histogram: recording is an index computation and an increment
 * (no allocation, no sorting), so it can sit on the forwarding path of every packet.
 * Buckets are 10 µs wide up to 2 ms, 100 µs to 20 ms, 1 ms to 200 ms, 10 ms to 2 s;
 * percentiles report the upper edge of their bucket.
 */

/** A summary of recorded values, milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

const BUCKETS = 741;

/** Bucket index of a value in microseconds. */
function bucketOf(us: number): number {
  if (us < 2_000) return Math.floor(us / 10);
  if (us < 20_000) return 200 + Math.floor((us - 2_000) / 100);
  if (us < 200_000) return 380 + Math.floor((us - 20_000) / 1_000);
  if (us < 2_000_000) return 560 + Math.floor((us - 200_000) / 10_000);
  return BUCKETS - 1;
}

/** Upper edge of a bucket, microseconds (the overflow bucket reports the maximum seen). */
function edgeOf(i: number): number {
  if (i < 200) return (i + 1) * 10;
  if (i < 380) return 2_000 + (i - 199) * 100;
  if (i < 560) return 20_000 + (i - 379) * 1_000;
  if (i < 740) return 200_000 + (i - 559) * 10_000;
  return Infinity;
}

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private n = 0;
  private sumUs = 0;
  private maxUs = 0;

  /** Records one value, milliseconds (negative values count as 0). */
  record(ms: number): void {
    const us = ms > 0 ? ms * 1000 : 0;
    this.counts[bucketOf(us)]!++;
    this.n++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  get count(): number {
    return this.n;
  }

  /** The p-th percentile (0–100), milliseconds; 0 when empty. */
  percentile(p: number): number {
    if (this.n === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(edgeOf(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  summary(): LatencySummary {
    const r3 = (v: number) => Math.round(v * 1000) / 1000;
    return {
      count: this.n,
      p50: r3(this.percentile(50)),
      p99: r3(this.percentile(99)),
      max: r3(this.maxUs / 1000),
      mean: this.n ? r3(this.sumUs / this.n / 1000) : 0,
    };
  }

  /** Sum of the recorded values, milliseconds. */
  get sumMs(): number {
    return this.sumUs / 1000;
  }

  /**
   * How many values were below each bound (milliseconds, ascending), exactly when a bound
   * is a bucket edge (0.01 ms steps to 2 ms, 0.1 to 20, 1 to 200, 10 to 2000): Prometheus
   * `le` buckets. Values at 2 s and beyond fall in no bound.
   */
  countsBelow(boundsMs: readonly number[]): number[] {
    const out = new Array<number>(boundsMs.length).fill(0);
    let seen = 0;
    let b = 0;
    for (let i = 0; i < BUCKETS - 1 && b < boundsMs.length; i++) {
      while (b < boundsMs.length && edgeOf(i) > boundsMs[b]! * 1000 + 1e-6) out[b++] = seen;
      seen += this.counts[i]!;
    }
    while (b < boundsMs.length) out[b++] = seen;
    return out;
  }

  /** Adds another histogram's counts (per-worker histograms into one). */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.n += other.n;
    this.sumUs += other.sumUs;
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs;
  }

  /** The raw state, for sending across threads. */
  toJSON(): { counts: number[]; n: number; sumUs: number; maxUs: number } {
    return { counts: Array.from(this.counts), n: this.n, sumUs: this.sumUs, maxUs: this.maxUs };
  }

  static fromJSON(j: { counts: number[]; n: number; sumUs: number; maxUs: number }): LatencyHistogram {
    const h = new LatencyHistogram();
    h.counts.set(j.counts.slice(0, BUCKETS));
    h.n = j.n;
    h.sumUs = j.sumUs;
    h.maxUs = j.maxUs;
    return h;
  }

  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.sumUs = 0;
    this.maxUs = 0;
  }
}

/** This thread's CPU time (user + system), ms: how long our own code held a loop, scheduling aside. */
export function threadCpuMs(): number {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
}
