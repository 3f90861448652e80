/**
 * `/metrics` in the Prometheus text format (version 0.0.4).
 *
 * Process figures (CPU seconds, resident memory, heap, GC durations, open descriptors)
 * come from prom-client's default collectors, in one registry per process; the rooms
 * contribute collectors returning samples at scrape time, rendered here. Every figure is
 * a counter, a gauge of a current state, or a cumulative histogram: nothing is reset by a
 * scrape, so any number of scrapers see the same series and instances can be summed.
 * Label values are escaped, and nothing secret (URLs, credentials, tokens) is ever a label.
 */
import { timingSafeEqual, createHash } from "node:crypto";
import http from "node:http";
import { monitorEventLoopDelay, type ELDHistogram } from "node:perf_hooks";
import express, { Router, type Request, type RequestHandler } from "express";
import client from "prom-client";
import { AuthError } from "../../config/errors.ts";
import { sendError } from "./errors.ts";
import { healthzHandler, readyzHandler, type ReadinessCheck } from "./health.ts";

export type MetricType = "counter" | "gauge";

export interface ScalarSample {
  name: string;
  help: string;
  type: MetricType;
  value: number;
  labels?: Record<string, string>;
}

/** A cumulative histogram: `buckets[i].count` values were ≤ `buckets[i].le` (ascending, without +Inf). */
export interface HistogramSample {
  name: string;
  help: string;
  type: "histogram";
  buckets: ReadonlyArray<{ le: number; count: number }>;
  /** Values in all (the +Inf bucket and `_count`). */
  count: number;
  sum: number;
  labels?: Record<string, string>;
}

export type Sample = ScalarSample | HistogramSample;

/** Something that reports its figures at scrape time. */
export type Collector = () => Sample[];

export function renderMetrics(samples: readonly Sample[]): string {
  const byName = new Map<string, Sample[]>();
  for (const s of samples) {
    let list = byName.get(s.name);
    if (!list) byName.set(s.name, (list = []));
    list.push(s);
  }
  let out = "";
  for (const [name, list] of byName) {
    out += `# HELP ${name} ${list[0]!.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}\n# TYPE ${name} ${list[0]!.type}\n`;
    for (const s of list) {
      if (s.type === "histogram") {
        for (const b of s.buckets) out += `${name}_bucket${renderLabels({ ...s.labels, le: formatNumber(b.le) })} ${num(b.count)}\n`;
        out += `${name}_bucket${renderLabels({ ...s.labels, le: "+Inf" })} ${num(s.count)}\n`;
        out += `${name}_sum${renderLabels(s.labels)} ${num(s.sum)}\n`;
        out += `${name}_count${renderLabels(s.labels)} ${num(s.count)}\n`;
      } else out += `${name}${renderLabels(s.labels)} ${num(s.value)}\n`;
    }
  }
  return out;
}

const num = (v: number) => (Number.isFinite(v) ? v : 0);
const formatNumber = (v: number) => String(v);

function renderLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`,
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

/**
 * A histogram that takes in whole windows of counts (from a component that measures
 * in buckets of its own) and keeps the running totals Prometheus expects.
 */
export class CumulativeHistogram {
  readonly bounds: readonly number[];
  private readonly below: number[];
  private total = 0;
  private sum = 0;

  /** `bounds`: ascending upper bounds, in the unit exported (seconds). */
  constructor(bounds: readonly number[]) {
    this.bounds = Object.freeze([...bounds]);
    this.below = bounds.map(() => 0);
  }

  /** Adds one window: `countsBelow[i]` values ≤ bounds[i], `count` in all, their `sum`. */
  add(countsBelow: readonly number[], count: number, sum: number): void {
    for (let i = 0; i < this.below.length; i++) this.below[i]! += countsBelow[i] ?? count;
    this.total += count;
    this.sum += sum;
  }

  sample(name: string, help: string, labels?: Record<string, string>): HistogramSample {
    return {
      name,
      help,
      type: "histogram",
      buckets: this.bounds.map((le, i) => ({ le, count: this.below[i]! })),
      count: this.total,
      sum: this.sum,
      ...(labels ? { labels } : {}),
    };
  }
}

/** Upper bounds of event-loop delay buckets, seconds. */
export const LOOP_DELAY_BOUNDS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];

/** Sampling interval of the event-loop monitor, milliseconds. */
const LOOP_RESOLUTION_MS = 10;

/**
 * Folds an event-loop delay monitor's samples since the last fold into `into`, then resets
 * it. Node's monitor reports each timer interval including the resolution, so that is taken
 * off. It keeps percentiles, not buckets: the share of samples ≤ a bound is the highest
 * percentile Node reports whose value is ≤ it (coarse between those points, never decreasing).
 */
export function foldLoopDelay(h: ELDHistogram, into: CumulativeHistogram, resolutionMs = LOOP_RESOLUTION_MS): void {
  const count = h.count;
  if (count > 0) {
    const offsetNs = resolutionMs * 1e6;
    const points = [...h.percentiles.entries()].sort((a, b) => a[0] - b[0]);
    const below = into.bounds.map((boundS) => {
      const limit = boundS * 1e9 + offsetNs;
      if (h.max <= limit) return count;
      let share = 0;
      for (const [p, ns] of points) if (ns <= limit) share = p;
      return Math.round((share / 100) * count);
    });
    into.add(below, count, (Math.max(0, h.mean - offsetNs) / 1e9) * count);
  }
  h.reset();
}

/**
 * prom-client defaults left out: gauges named "_total" that are no counters (Prometheus
 * rejects them), event-loop gauges reset by every scrape, and CPU counters that start at
 * the registry's creation (ours below are the process's own totals).
 */
const NOT_EXPORTED = /^nodejs_active_(handles|requests|resources)_total$|^nodejs_eventloop_lag_|^process_cpu_/;

export interface ProcessMetrics {
  registry: client.Registry;
  loop: ELDHistogram;
  loopHist: CumulativeHistogram;
}
let processMetrics: ProcessMetrics | undefined;

/**
 * The process's own figures, once per process (several gateways in one test process share
 * them): prom-client's defaults (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
 * `nodejs_gc_duration_seconds`, heap, descriptors) and `gatehouse_event_loop_delay_seconds`
 * as a cumulative histogram. prom-client's event-loop gauges are left out: they reset on
 * every scrape, which splits the data between two scrapers.
 */
export function processRegistry(): ProcessMetrics {
  if (processMetrics) return processMetrics;
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  for (const m of registry.getMetricsAsArray()) {
    const name = (m as unknown as { name: string }).name;
    if (NOT_EXPORTED.test(name)) registry.removeSingleMetric(name);
  }
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loop.enable();
  processMetrics = { registry, loop, loopHist: new CumulativeHistogram(LOOP_DELAY_BOUNDS) };
  return processMetrics;
}

/** Process-level figures as a collector: CPU since the process started, and the event loop's delay histogram (the packet loops share this loop). */
function processCollector(pm: ProcessMetrics): Collector {
  return () => {
    foldLoopDelay(pm.loop, pm.loopHist);
    const cpu = process.cpuUsage();
    return [
      { name: "process_cpu_user_seconds_total", help: "Total user CPU time spent in seconds.", type: "counter", value: cpu.user / 1e6 },
      { name: "process_cpu_system_seconds_total", help: "Total system CPU time spent in seconds.", type: "counter", value: cpu.system / 1e6 },
      { name: "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.", type: "counter", value: (cpu.user + cpu.system) / 1e6 },
      pm.loopHist.sample("gatehouse_event_loop_delay_seconds", "Event-loop delay of the gateway's main thread (signaling and ingest)."),
    ];
  };
}

/** Everything /metrics renders: the process registry, then the rooms' collectors. */
export async function scrape(collectors: readonly Collector[]): Promise<string> {
  const pm = processRegistry();
  const samples = [processCollector(pm), ...collectors].flatMap((c) => c());
  const processText = await pm.registry.metrics();
  return processText.replace(/\n*$/, "\n") + renderMetrics(samples);
}

/** True when the request carries `Authorization: Bearer <token>` for this token (compared in constant time). */
export function hasScrapeToken(req: Request, token: string | undefined): boolean {
  if (!token) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  if (!m) return false;
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}

export interface MetricsDeps {
  collectors: () => readonly Collector[];
  /** Throws AuthError unless the caller may read operational figures. */
  authorize(req: Request): void;
}

/** Serves the text to whoever `authorize` lets through. */
export function metricsHandler(deps: MetricsDeps): RequestHandler {
  return (req, res) => {
    try {
      deps.authorize(req);
    } catch (err) {
      if ((err as { code?: string }).code === "UNAUTHORIZED") res.set("WWW-Authenticate", 'Bearer realm="gatehouse metrics"');
      return sendError(res, err instanceof AuthError || (err as { code?: string }).code ? err : new AuthError("FORBIDDEN", "not allowed"));
    }
    scrape(deps.collectors()).then(
      (text) => res.set("Cache-Control", "no-store").type(client.Registry.PROMETHEUS_CONTENT_TYPE).send(text),
      (err: unknown) => sendError(res, err),
    );
  };
}

export function metricsRouter(deps: MetricsDeps): Router {
  const r = Router();
  r.get("/", metricsHandler(deps));
  return r;
}

export interface MetricsListenerOptions {
  readonly host: string;
  readonly port: number;
  /** With a token a scraper must send it; without one the listener is loopback-only (config/sections/metrics.ts). */
  readonly token: string | undefined;
  readonly collectors: () => readonly Collector[];
  readonly checks: () => readonly ReadinessCheck[];
}

export interface MetricsListener {
  /** Base URL, e.g. http://127.0.0.1:9464 */
  readonly url: string;
  close(): Promise<void>;
}

/** Metrics on a listener of their own: /metrics, /healthz and /readyz only. */
export async function startMetricsListener(o: MetricsListenerOptions): Promise<MetricsListener> {
  const app = express();
  app.disable("x-powered-by");
  app.get("/healthz", healthzHandler);
  app.get("/readyz", readyzHandler(o.checks));
  app.get(
    "/metrics",
    metricsHandler({
      collectors: o.collectors,
      authorize: (req) => {
        if (o.token && !hasScrapeToken(req, o.token)) throw new AuthError("UNAUTHORIZED", "the metrics token is required");
      },
    }),
  );
  app.use((_req, res) => void res.status(404).json({ error: "not_found" }));
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const a = server.address() as { address: string; port: number };
  let closed: Promise<void> | undefined;
  return {
    url: `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}`,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })),
  };
}
