/**
 * The gateway under test, alone in its own process so its CPU and memory can be read
 * from /proc without anything else mixed in. Started by the benchmark with
 * `forkChild("test/bench/procs/gateway.ts", ["--config", json])` (raw config input,
 * validated by parseConfig; silent logs). Ready payload: `{ url, pid, workers }`
 * (`workers`: the SFU's media worker threads, null when the SFU cannot say).
 *
 * Commands (IPC, see lib/child.ts):
 *   stats       → media counters summed over sources and viewers, the SFU's forwarding
 *                 latency and event-loop delay, this (main) thread's event-loop delay
 *   reset       → start a measurement window (Sfu.resetMeasurements + our loop monitor)
 *   gc          → full garbage collection (needs --expose-gc)
 *   close
 *
 * Forwarding latency comes from the SFU itself (`Sfu.stats().forwardLatencyMs`: live
 * packets from MediaSink.pushRtp to the socket, per packet per viewer); when the SFU
 * has no such instrument the figure is reported as missing, never guessed.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { parseConfig } from "../../../config/load.ts";
import { silentLogger } from "../../../config/log.ts";
import { startGateway, type Gateway } from "../../../gateway/gateway.ts";
import { round } from "../lib/stats.ts";
import { failStart, serve } from "../lib/child.ts";

const { values } = parseArgs({ options: { config: { type: "string" } } });

let gw: Gateway;
try {
  gw = await startGateway({ config: parseConfig(JSON.parse(values.config ?? "{}"), {}, "bench"), log: silentLogger });
} catch (err) {
  failStart(err);
}

const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();

interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

interface SourceLike {
  packetsIn: number;
  bytesIn: number;
  dropped: Record<string, number>;
  tracks: Array<{ lost: number }>;
}
interface ViewerLike {
  state: string;
  packetsOut: number;
  bytesOut: number;
  retransmits: number;
  queued: number;
  drops: Record<string, number>;
}
/** The SFU surface this process reads; optional members differ between SFU versions. */
interface SfuLike {
  workerCount?: number;
  stats?: () => { sources: SourceLike[]; viewers: ViewerLike[]; forwardLatencyMs?: Summary; eventLoopDelayMs?: { p99: number; max: number }; workers?: Array<{ ingest: { sliceMaxMs: number; pacerPassMaxMs: number } }> };
  refreshStats?: () => Promise<void>;
  resetMeasurements?: () => void;
  sourceList(): Array<{ stats(): SourceLike }>;
  viewerList(): Array<{ stats(): ViewerLike }>;
}
const sfu = gw.sfu as unknown as SfuLike;

async function stats() {
  await sfu.refreshStats?.();
  const all = sfu.stats?.();
  const sources = all?.sources ?? sfu.sourceList().map((s) => s.stats());
  const viewers = all?.viewers ?? sfu.viewerList().map((v) => v.stats());
  let packetsIn = 0;
  let bytesIn = 0;
  let sourceDropped = 0;
  let upstreamLost = 0;
  for (const st of sources) {
    packetsIn += st.packetsIn;
    bytesIn += st.bytesIn;
    for (const n of Object.values(st.dropped)) sourceDropped += n;
    for (const t of st.tracks) upstreamLost += t.lost;
  }
  let packetsOut = 0;
  let bytesOut = 0;
  let retransmits = 0;
  let connected = 0;
  let queued = 0;
  const drops: Record<string, number> = {};
  for (const st of viewers) {
    if (st.state === "connected") connected++;
    packetsOut += st.packetsOut;
    bytesOut += st.bytesOut;
    retransmits += st.retransmits;
    queued += st.queued;
    for (const [k, n] of Object.entries(st.drops)) drops[k] = (drops[k] ?? 0) + n;
  }
  const mem = process.memoryUsage();
  return {
    packetsIn,
    bytesIn,
    sourceDropped,
    upstreamLost,
    viewers: viewers.length,
    connected,
    packetsOut,
    bytesOut,
    retransmits,
    queued,
    drops,
    /** The SFU's forwarding latency since the last reset, ms; null when the SFU has no histogram. */
    forwardLatencyMs: all?.forwardLatencyMs ?? null,
    /** The SFU's event-loop delay (its worst media thread), ms. */
    mediaLoopDelayMs: all?.eventLoopDelayMs ?? null,
    /** Longest ingest slice or pacer pass of any media worker, ms: what our own code held a media loop for. */
    mediaSliceMaxMs: all?.workers ? Math.max(0, ...all.workers.map((w) => Math.max(w.ingest.sliceMaxMs, w.ingest.pacerPassMaxMs))) : null,
    /** This process's main thread (signaling, ingest, and media without workers). */
    loopDelayMaxMs: round(loop.max / 1e6, 2),
    loopDelayP99Ms: round(loop.percentile(99) / 1e6, 2),
    rssKb: Math.round(mem.rss / 1024),
    heapUsedKb: Math.round(mem.heapUsed / 1024),
  };
}

serve(
  {
    stats: () => stats(),
    reset: () => {
      sfu.resetMeasurements?.();
      loop.reset();
    },
    gc: () => (globalThis as { gc?: () => void }).gc?.(),
    close: () => gw.close("bench done"),
  },
  { url: gw.url, pid: process.pid, workers: typeof sfu.workerCount === "number" ? sfu.workerCount : null },
);
