import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { descendantsOf, parseProcStat, parseUdpSnmp, parseUdpSocketDrops, parseVmRssKb } from "../bench/lib/proc.ts";
import { LatencyHistogram, median, percentile, percentileSorted, round } from "../bench/lib/stats.ts";

describe("bench percentiles (nearest rank)", () => {
  it("picks an element of the list by nearest rank", () => {
    const v = [15, 20, 35, 40, 50];
    expect(percentile(v, 5)).toBe(15);
    expect(percentile(v, 30)).toBe(20);
    expect(percentile(v, 40)).toBe(20);
    expect(percentile(v, 50)).toBe(35);
    expect(percentile(v, 100)).toBe(50);
    expect(percentile(v, 0)).toBe(15);
  });

  it("p95 of 20 trials is the 19th smallest", () => {
    const v = Array.from({ length: 20 }, (_, i) => 20 - i); // unsorted input
    expect(percentile(v, 95)).toBe(19);
    expect(percentile(v, 50)).toBe(10);
  });

  it("median: the middle value, or the mean of the middle two (two rounds of a comparison)", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([21.45, 19.15])).toBeCloseTo(20.3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it("is NaN for an empty list and rejects p outside 0–100", () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentileSorted([1], 101)).toThrow(RangeError);
  });

  it("does not reorder its input", () => {
    const v = [3, 1, 2];
    percentile(v, 50);
    expect(v).toEqual([3, 1, 2]);
  });

  it("property: the percentile is an element, monotone in p", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ noNaN: true, min: -1e6, max: 1e6 }), { minLength: 1, maxLength: 100 }), (v) => {
        const ps = [0, 10, 50, 90, 99, 100].map((p) => percentile(v, p));
        return ps.every((x) => v.includes(x)) && ps.every((x, i) => i === 0 || x >= ps[i - 1]!);
      }),
    );
  });

  it("rounds to the given decimals", () => {
    expect(round(1.23456, 2)).toBe(1.23);
    expect(round(1.25)).toBe(1.3);
  });
});

describe("bench LatencyHistogram", () => {
  it("places values in 1 µs / 10 µs / 100 µs / 1 ms buckets and an overflow", () => {
    expect(LatencyHistogram.bucketOf(0)).toBe(0);
    expect(LatencyHistogram.bucketOf(0.0015)).toBe(1);
    expect(LatencyHistogram.bucketOf(0.999)).toBe(999);
    expect(LatencyHistogram.bucketOf(1)).toBe(1000);
    expect(LatencyHistogram.bucketOf(9.999)).toBe(1899);
    expect(LatencyHistogram.bucketOf(10)).toBe(1900);
    expect(LatencyHistogram.bucketOf(100)).toBe(2800);
    expect(LatencyHistogram.bucketOf(999.5)).toBe(3699);
    expect(LatencyHistogram.bucketOf(5000)).toBe(3700);
    expect(LatencyHistogram.upperEdge(0)).toBeCloseTo(0.001);
    expect(LatencyHistogram.upperEdge(1000)).toBeCloseTo(1.01);
    expect(LatencyHistogram.upperEdge(3700)).toBe(Infinity);
  });

  it("percentiles never under-report and are within one bucket of the exact value", () => {
    const h = new LatencyHistogram();
    const values: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const v = i < 990 ? 0.2 + (i % 50) / 100 : 40 + i / 100; // 1 % slow tail
      values.push(v);
      h.record(v);
    }
    const exact99 = percentile(values, 99);
    expect(h.percentile(99)).toBeGreaterThanOrEqual(exact99);
    expect(h.percentile(99) - exact99).toBeLessThanOrEqual(0.1);
    expect(h.percentile(100)).toBe(h.max);
    expect(h.count).toBe(1000);
    expect(h.mean()).toBeCloseTo(values.reduce((a, b) => a + b, 0) / 1000, 6);
  });

  it("is empty after reset; negative or NaN samples count as zero", () => {
    const h = new LatencyHistogram();
    h.record(-3);
    h.record(Number.NaN);
    expect(h.count).toBe(2);
    expect(h.percentile(50)).toBe(0);
    h.reset();
    expect(h.count).toBe(0);
    expect(h.percentile(50)).toBeNaN();
  });

  it("property: histogram percentile ≥ exact and ≤ exact + one bucket (below 1 s)", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 999, noNaN: true }), { minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 100 }), (v, p) => {
        const h = new LatencyHistogram();
        for (const x of v) h.record(x);
        const exact = percentile(v, p);
        const got = h.percentile(p);
        const width = exact < 1 ? 0.001 : exact < 10 ? 0.01 : exact < 100 ? 0.1 : 1;
        return got >= exact - 1e-9 && got <= exact + width + 1e-9;
      }),
    );
  });
});

describe("bench /proc parsers", () => {
  it("reads utime, stime, threads and RSS from /proc/<pid>/stat, even with ') ' in the name", () => {
    const line =
      "4242 (node (bench) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 11 0 100 900000000 23456 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    expect(parseProcStat(line)).toEqual({ ppid: 1, utime: 1234, stime: 567, numThreads: 11, rssPages: 23456 });
    expect(() => parseProcStat("garbage")).toThrow();
  });

  it("finds a process tree from parent links: the root first, grandchildren too, nothing else", () => {
    // 10 → 11, 12; 12 → 13; 20 is unrelated; 1 is its own parent (init) and must not loop.
    const parents = new Map([
      [1, 1],
      [10, 1],
      [11, 10],
      [12, 10],
      [13, 12],
      [20, 1],
    ]);
    expect(descendantsOf(10, parents)).toEqual([10, 11, 12, 13]);
    expect(descendantsOf(13, parents)).toEqual([13]);
    expect(descendantsOf(99, parents)).toEqual([99]);
    expect(descendantsOf(1, parents).sort((a, b) => a - b)).toEqual([1, 10, 11, 12, 13, 20]);
  });

  it("reads VmRSS in kB", () => {
    expect(parseVmRssKb("Name:\tnode\nVmPeak:\t 1000 kB\nVmRSS:\t  154212 kB\nThreads:\t11\n")).toBe(154212);
    expect(parseVmRssKb("Name:\tkthreadd\n")).toBeNaN();
  });

  it("reads the Udp counters of /proc/net/snmp", () => {
    const snmp =
      "Tcp: RtoAlgorithm RtoMin\nTcp: 1 200\n" +
      "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 2 3 40 3 0\n" +
      "UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
    expect(parseUdpSnmp(snmp)).toEqual({ InDatagrams: 10, NoPorts: 2, InErrors: 3, OutDatagrams: 40, RcvbufErrors: 3, SndbufErrors: 0 });
    expect(parseUdpSnmp("")).toEqual({});
  });

  it("reads per-socket drops (last column) by inode from /proc/net/udp", () => {
    const table =
      "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
      " 4383: 0100007F:D76A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 964306 2 000000001040648b 0\n" +
      " 4384: 0100007F:D76B 0100007F:1F90 01 00000000:00034000 00:00000000 00000000     0        0 964307 2 00000000e1637174 1234\n";
    expect([...parseUdpSocketDrops(table)]).toEqual([
      [964306, 0],
      [964307, 1234],
    ]);
    expect(parseUdpSocketDrops("").size).toBe(0);
  });
});
