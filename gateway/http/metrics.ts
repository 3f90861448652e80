/**
 * `/metrics` in the Prometheus text format (version 0.0.4). Each room contributes a
 * collector returning samples; this file only renders them. Label values are escaped,
 * and nothing secret (URLs, credentials, tokens) is ever a label.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Router, type Request } from "express";
import { AuthError } from "../../config/errors.ts";
import { sendError } from "./errors.ts";

export type MetricType = "counter" | "gauge";

export interface Sample {
  name: string;
  help: string;
  type: MetricType;
  value: number;
  labels?: Record<string, string>;
}

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
    for (const s of list) out += `${name}${renderLabels(s.labels)} ${Number.isFinite(s.value) ? s.value : 0}\n`;
  }
  return out;
}

function renderLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`,
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** Process-level figures: memory and event-loop delay (the packet loops share this loop). */
export function processCollector(): { collect: Collector; close(): void } {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  return {
    collect: () => {
      const mem = process.memoryUsage();
      const samples: Sample[] = [
        { name: "gatehouse_process_resident_bytes", help: "Resident set size.", type: "gauge", value: mem.rss },
        { name: "gatehouse_process_heap_used_bytes", help: "V8 heap in use.", type: "gauge", value: mem.heapUsed },
        { name: "gatehouse_event_loop_delay_p99_seconds", help: "Event-loop delay, 99th percentile since the last scrape.", type: "gauge", value: loop.percentile(99) / 1e9 },
        { name: "gatehouse_event_loop_delay_max_seconds", help: "Longest event-loop delay since the last scrape.", type: "gauge", value: loop.max / 1e9 },
      ];
      loop.reset();
      return samples;
    },
    close: () => loop.disable(),
  };
}

export interface MetricsDeps {
  collectors: () => readonly Collector[];
  /** Throws AuthError unless the caller may read operational figures. */
  authorize(req: Request): void;
}

export function metricsRouter(deps: MetricsDeps): Router {
  const r = Router();
  r.get("/", (req, res) => {
    try {
      deps.authorize(req);
      const samples = deps.collectors().flatMap((c) => c());
      res.set("Cache-Control", "no-store").type("text/plain; version=0.0.4; charset=utf-8").send(renderMetrics(samples));
    } catch (err) {
      sendError(res, err instanceof AuthError || (err as { code?: string }).code ? err : new AuthError("FORBIDDEN", "not allowed"));
    }
  });
  return r;
}
