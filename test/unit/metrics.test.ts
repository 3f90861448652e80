import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Request } from "express";
import { describe, expect, it } from "vitest";
import { parseConfig, ConfigError } from "../../config/load.ts";
import { readiness } from "../../gateway/http/health.ts";
import { CumulativeHistogram, foldLoopDelay, hasScrapeToken, renderMetrics } from "../../gateway/http/metrics.ts";
import { FORWARD_LATENCY_BOUNDS, SfuMetricsWindow } from "../../gateway/metrics.ts";
import { LatencyHistogram } from "../../sfu/latency.ts";
import type { Sfu, SfuStats } from "../../sfu/sfu.ts";

describe("Prometheus rendering", () => {
  it("groups samples under one HELP/TYPE and escapes label values", () => {
    const text = renderMetrics([
      { name: "x_total", help: "Things.", type: "counter", value: 3, labels: { camera: 'a"b\\c\nd' } },
      { name: "x_total", help: "Things.", type: "counter", value: 4, labels: { camera: "e" } },
      { name: "y", help: "Y.", type: "gauge", value: Number.NaN },
    ]);
    expect(text).toBe(
      [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{camera="a\\"b\\\\c\\nd"} 3',
        'x_total{camera="e"} 4',
        "# HELP y Y.",
        "# TYPE y gauge",
        "y 0",
        "",
      ].join("\n"),
    );
  });

  it("renders a histogram as cumulative _bucket lines with +Inf, _sum and _count", () => {
    const h = new CumulativeHistogram([0.001, 0.01]);
    h.add([1, 3], 4, 0.5);
    expect(renderMetrics([h.sample("lat_seconds", "Latency.", { camera: "c" })])).toBe(
      [
        "# HELP lat_seconds Latency.",
        "# TYPE lat_seconds histogram",
        'lat_seconds_bucket{camera="c",le="0.001"} 1',
        'lat_seconds_bucket{camera="c",le="0.01"} 3',
        'lat_seconds_bucket{camera="c",le="+Inf"} 4',
        'lat_seconds_sum{camera="c"} 0.5',
        'lat_seconds_count{camera="c"} 4',
        "",
      ].join("\n"),
    );
  });

  it("keeps running totals across windows", () => {
    const h = new CumulativeHistogram([1, 2]);
    h.add([1, 2], 2, 3);
    h.add([0, 1], 3, 10);
    const s = h.sample("x", "X.");
    expect(s.buckets.map((b) => b.count)).toEqual([1, 3]);
    expect(s.count).toBe(5);
    expect(s.sum).toBe(13);
  });
});

describe("forwarding latency buckets", () => {
  it("counts values below each bound exactly at the SFU's bucket edges", () => {
    const h = new LatencyHistogram();
    for (const ms of [0.4, 0.6, 1.5, 3, 2500]) h.record(ms);
    expect(h.countsBelow([0.5, 1, 2, 5, 2000])).toEqual([1, 2, 3, 4, 4]);
    expect(h.sumMs).toBeCloseTo(2505.5, 6);
    // A value exactly at an edge is not below it (buckets are [lower, upper)), the next bound has it.
    const e = new LatencyHistogram();
    e.record(1);
    expect(e.countsBelow([0.99, 1, 1.01])).toEqual([0, 0, 1]);
  });

  it("adds each window of the SFU to the histogram and resets the SFU, whoever scrapes", async () => {
    const window1 = new LatencyHistogram();
    for (const ms of [0.3, 0.7, 4]) window1.record(ms);
    let current = window1;
    let resets = 0;
    const fake = {
      refreshStats: async () => {},
      stats: (): SfuStats => ({
        sources: [],
        viewers: [],
        forwardLatencyMs: current.summary(),
        forwardLatency: current,
        eventLoopDelayMs: { p99: 0, max: 0 },
        workers: [{ index: 0, viewers: 0, eventLoopDelayMs: { p99: 3, max: 7 }, ingest: { sliceMaxMs: 2, pacerPassMaxMs: 5, yields: 0, backlogBytes: 0 }, heapUsedKb: 0, heapTotalKb: 0, externalKb: 0 }],
      }),
      resetMeasurements: () => {
        resets++;
        current = new LatencyHistogram();
      },
    } as unknown as Sfu;
    const w = new SfuMetricsWindow(fake, 3600);
    await w.fold();
    const first = w.forwardLatency.sample("x", "X.");
    expect(first.count).toBe(3);
    expect(first.buckets.find((b) => b.le === 0.0005)!.count).toBe(1);
    expect(first.buckets.find((b) => b.le === 0.005)!.count).toBe(3);
    expect(w.lastWindow.get(0)).toEqual({ loopDelayMax: 0.007, taskMax: 0.005 });
    current.record(0.1);
    await w.fold();
    const second = w.forwardLatency.sample("x", "X.");
    expect(second.count).toBe(4);
    second.buckets.forEach((b, i) => expect(b.count).toBeGreaterThanOrEqual(first.buckets[i]!.count));
    expect(resets).toBe(2);
    expect(first.buckets.map((b) => b.le)).toEqual(FORWARD_LATENCY_BOUNDS);
    w.close();
  });
});

describe("event-loop delay histogram", () => {
  it("takes the monitor's samples, without its resolution, and resets it", async () => {
    const mon = monitorEventLoopDelay({ resolution: 10 });
    mon.enable();
    // Let it record a few intervals, one of them held ~60 ms by busy work.
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    while (performance.now() - t0 < 60);
    await new Promise((r) => setTimeout(r, 50));
    const h = new CumulativeHistogram([0.001, 0.005, 0.02, 0.1, 1]);
    const n = mon.count;
    expect(n).toBeGreaterThan(2);
    foldLoopDelay(mon, h);
    const s = h.sample("d", "D.");
    expect(s.count).toBeGreaterThanOrEqual(n);
    expect(mon.count).toBe(0); // reset
    expect(s.buckets.at(-1)!.count).toBe(s.count); // nothing reached 1 s
    expect(s.buckets.find((b) => b.le === 0.02)!.count).toBeLessThan(s.count); // the held interval is above 20 ms
    expect(s.sum).toBeGreaterThan(0.03);
    for (let i = 1; i < s.buckets.length; i++) expect(s.buckets[i]!.count).toBeGreaterThanOrEqual(s.buckets[i - 1]!.count);
    mon.disable();
  });
});

describe("scrape credential and config", () => {
  const req = (authorization?: string) => ({ headers: authorization ? { authorization } : {} }) as Request;
  it("accepts only the configured bearer token", () => {
    const token = "0123456789abcdef-token";
    expect(hasScrapeToken(req(`Bearer ${token}`), token)).toBe(true);
    expect(hasScrapeToken(req(`bearer ${token}`), token)).toBe(true);
    expect(hasScrapeToken(req(`Bearer ${token}x`), token)).toBe(false);
    expect(hasScrapeToken(req(`Basic ${token}`), token)).toBe(false);
    expect(hasScrapeToken(req(), token)).toBe(false);
    expect(hasScrapeToken(req(`Bearer ${token}`), undefined)).toBe(false);
  });

  it("takes the token from the environment, and refuses a short one", () => {
    const cfg = parseConfig({}, { GATEHOUSE_METRICS_TOKEN: "from-the-environment-0123" });
    expect(cfg.metrics.token).toBe("from-the-environment-0123");
    expect(() => parseConfig({}, { GATEHOUSE_METRICS_TOKEN: "short" })).toThrow(/GATEHOUSE_METRICS_TOKEN: must be at least 16/);
    expect(parseConfig({ metrics: { token: "from-the-file-0123456" } }, { GATEHOUSE_METRICS_TOKEN: "from-the-environment-0123" }).metrics.token).toBe("from-the-file-0123456");
  });

  it("refuses a metrics listener beyond loopback without a token", () => {
    let err: unknown;
    try {
      parseConfig({ metrics: { listen: { host: "0.0.0.0", port: 9464 } } }, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual(["metrics.listen.host: a metrics listener beyond loopback needs metrics.token (or $GATEHOUSE_METRICS_TOKEN)"]);
    expect(parseConfig({ metrics: { listen: { host: "::1", port: 0 } } }, {}).metrics.listen).toEqual({ host: "::1", port: 0 });
    expect(parseConfig({ metrics: { listen: { host: "0.0.0.0", port: 0 }, token: "a-long-enough-token-0" } }, {}).metrics.listen?.host).toBe("0.0.0.0");
  });
});

describe("readiness", () => {
  it("is ready when every required component is; optional ones are only reported", () => {
    expect(
      readiness([
        { name: "http", check: () => ({ ready: true }) },
        { name: "cameras", required: false, check: () => ({ ready: false, detail: "1 failed" }) },
      ]),
    ).toEqual({ ready: true, components: { http: { ready: true, required: true }, cameras: { ready: false, detail: "1 failed", required: false } } });
    const r = readiness([
      { name: "sip", check: () => ({ ready: false, detail: "closing" }) },
      { name: "broken", check: () => { throw new Error("boom"); } },
    ]);
    expect(r.ready).toBe(false);
    expect(r.components.broken).toEqual({ ready: false, detail: "check failed", required: true });
  });
});
