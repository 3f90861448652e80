/**
 * The gateway under test, alone in its own process so its CPU and memory can be read
 * from /proc without anything else mixed in. Started by the benchmark with
 * `forkChild("test/bench/procs/gateway.ts", ["--config", json])` (raw config input,
 * validated by parseConfig; silent logs). Ready payload: `{ url, pid, workers }`.
 *
 * Commands (IPC, see lib/child.ts):
 *   stats            → media counters summed over sources and viewers, event-loop delay
 *   loopReset        → restart the event-loop delay histogram (start of a window)
 *   gc               → full garbage collection (needs --expose-gc)
 *   latency {on}     → install/remove the forwarding-latency probe (below)
 *   latencyReport    → { count, p50, p99, p999, max, mean } in ms since `latency {on:true}`
 *   close
 *
 * Forwarding latency probe. The SFU has no latency instrument of its own yet, so for a
 * measured window we wrap, on live objects (nothing on disk changes): the video
 * source's `pushRtp` (stamp performance.now() when ingest hands over a packet) and its
 * ring's `put` (file that stamp under the packet's extended sequence number), and each
 * viewer's transport `sendRtp` together with the ring's `payload` lookup that precedes
 * it (`Viewer.sendHead`), to record now − stamp when the packet leaves through SRTP
 * and the socket. So the figure is "ingest callback → SRTP protect + UDP send returned"
 * inside the gateway, per packet per viewer. Only viewers connected when the probe is
 * installed are measured (their join-time cache replay is over), and it is off during
 * CPU windows so it never costs the throughput figures anything.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { parseConfig } from "../../../config/load.ts";
import { silentLogger } from "../../../config/log.ts";
import { startGateway, type Gateway } from "../../../gateway/gateway.ts";
import { LatencyHistogram, round } from "../lib/stats.ts";
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

/** Media worker threads, if the SFU reports them (issue 6); null while it has none. */
function workerCount(): number | null {
  const sfu = gw.sfu as unknown as { workerCount?: unknown; workers?: unknown };
  if (typeof sfu.workerCount === "number") return sfu.workerCount;
  if (Array.isArray(sfu.workers)) return sfu.workers.length;
  if (typeof sfu.workers === "number") return sfu.workers;
  return null;
}

function stats() {
  let packetsIn = 0;
  let bytesIn = 0;
  let sourceDropped = 0;
  let upstreamLost = 0;
  for (const s of gw.sfu.sourceList()) {
    const st = s.stats();
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
  const viewers = gw.sfu.viewerList();
  for (const v of viewers) {
    const st = v.stats();
    if (st.state === "connected") connected++;
    packetsOut += st.packetsOut;
    bytesOut += st.bytesOut;
    retransmits += st.retransmits;
    queued += st.queued;
    for (const [k, n] of Object.entries(st.drops)) drops[k] = (drops[k] ?? 0) + n;
  }
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
    loopDelayMaxMs: round(loop.max / 1e6, 2),
    loopDelayP99Ms: round(loop.percentile(99) / 1e6, 2),
    rssKb: Math.round(process.memoryUsage().rss / 1024),
    heapUsedKb: Math.round(process.memoryUsage().heapUsed / 1024),
  };
}

// ---- forwarding-latency probe (see the file comment) --------------------------

interface RingLike {
  put(ext: number, ts: number, flags: number, payload: Uint8Array): boolean;
  payload(ext: number): Buffer;
}
interface TransportLike {
  sendRtp(h: unknown, payload: Buffer): boolean;
}

const MASK = 0xffff;
const stamps = new Float64Array(MASK + 1).fill(Number.NaN);
const hist = new LatencyHistogram();
let undo: Array<() => void> = [];

/** Replaces `obj[key]` for the probe's lifetime; the original comes back on `latency {on:false}`. */
function swap<T extends object, K extends keyof T>(obj: T, key: K, make: (orig: T[K]) => T[K]): void {
  const own = Object.prototype.hasOwnProperty.call(obj, key);
  const before = obj[key];
  obj[key] = make(before);
  undo.push(() => {
    if (own) obj[key] = before;
    else delete obj[key];
  });
}

function probeOn(): { sources: number; viewers: number } {
  probeOff();
  stamps.fill(Number.NaN);
  hist.reset();
  let inAt = 0;
  let pendingExt = -1;
  let sources = 0;
  let viewers = 0;
  const rings = new Set<RingLike>();
  for (const src of gw.sfu.sourceList()) {
    const track = src.trackIndexOf("video");
    const ring = track >= 0 ? (src.ring(track) as unknown as RingLike | undefined) : undefined;
    if (!ring) continue;
    sources++;
    rings.add(ring);
    const s = src as unknown as { pushRtp(track: number, packet: Buffer): void };
    swap(s, "pushRtp", (orig) => {
      const f = orig.bind(src);
      return (t: number, p: Buffer) => {
        inAt = performance.now();
        f(t, p);
      };
    });
    swap(ring, "put", (orig) => {
      const f = orig.bind(ring);
      return (ext: number, ts: number, flags: number, payload: Uint8Array) => {
        stamps[ext & MASK] = inAt;
        return f(ext, ts, flags, payload);
      };
    });
    swap(ring, "payload", (orig) => {
      const f = orig.bind(ring);
      return (ext: number) => {
        pendingExt = ext;
        return f(ext);
      };
    });
  }
  for (const v of gw.sfu.viewerList()) {
    if (v.state !== "connected") continue;
    const tr = (v as unknown as { transport?: TransportLike }).transport;
    if (!tr || typeof tr.sendRtp !== "function") continue;
    viewers++;
    swap(tr, "sendRtp", (orig) => {
      const f = orig.bind(tr);
      return (h: unknown, payload: Buffer) => {
        const ext = pendingExt;
        pendingExt = -1;
        const ok = f(h, payload);
        if (ok && ext >= 0) {
          const at = stamps[ext & MASK]!;
          if (at === at) hist.record(performance.now() - at); // NaN: enqueued before the probe
        }
        return ok;
      };
    });
  }
  if (sources === 0 || viewers === 0) {
    probeOff();
    throw new Error(`latency probe found ${sources} video sources and ${viewers} connected viewers with a transport`);
  }
  return { sources, viewers };
}

function probeOff(): void {
  for (const fn of undo.reverse()) fn();
  undo = [];
}

serve(
  {
    stats: () => stats(),
    loopReset: () => loop.reset(),
    /** Full GC when started with --expose-gc (a steadier RSS baseline). */
    gc: () => (globalThis as { gc?: () => void }).gc?.(),
    latency: (arg) => ((arg as { on?: boolean } | undefined)?.on ? probeOn() : (probeOff(), null)),
    latencyReport: () => ({
      count: hist.count,
      p50: round(hist.percentile(50), 3),
      p99: round(hist.percentile(99), 3),
      p999: round(hist.percentile(99.9), 3),
      max: round(hist.max, 3),
      mean: round(hist.mean(), 3),
    }),
    close: async () => {
      probeOff();
      await gw.close("bench done");
    },
  },
  { url: gw.url, pid: process.pid, workers: workerCount() },
);
