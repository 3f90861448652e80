/**
 * Fan-out: one ~2 Mbit/s H.264 camera to N lightweight WebRTC receivers, N stepped up
 * until loss appears or the gateway runs out of CPU. Three processes besides this one:
 *
 *   recorder  (procs/recorder.ts)   the demo RTSP recorder looping a busy 2 Mbit/s clip
 *   gateway   (procs/gateway.ts)    startGateway(), pulling the recorder (always on, TCP)
 *   receivers (procs/receivers.ts)  N light viewers (werift ICE+DTLS, SRTP counted, not decrypted)
 *
 * At each level: connect the extra receivers, let them settle, then over a steady
 * window read the gateway's CPU (utime+stime from /proc, all threads), the packets its
 * viewers sent, the packets the receivers counted and their sequence gaps, the
 * gateway's own drops, RSS, and event-loop delay in both processes.
 *
 *   fanout_pps_per_core   packets forwarded per second ÷ gateway CPU (cores), at the highest loss-free level
 *   fanout_viewers        that level
 *   rss_kb_per_viewer     (RSS at that level − RSS with 0 viewers) ÷ viewers
 *   forward_latency_ms_*  the SFU's own histogram (Sfu.stats().forwardLatencyMs) over the window at `latencyAt` viewers
 *
 *   node test/bench/fanout.ts [--quick] [--levels 10,50,100]
 */
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { benchClip, DEFAULT_CLIP, type ClipSpec } from "./lib/clip.ts";
import { forkChild, type Child } from "./lib/child.ts";
import { CpuWindow, machineCpu, rssKb, udpSocketDrops } from "./lib/proc.ts";
import { round } from "./lib/stats.ts";

const PROCS = new URL("./procs/", import.meta.url);
const proc = (name: string) => fileURLToPath(new URL(name, PROCS));

export type Log = (msg: string) => void;

export interface GatewayStats {
  packetsIn: number;
  bytesIn: number;
  sourceDropped: number;
  upstreamLost: number;
  viewers: number;
  connected: number;
  packetsOut: number;
  bytesOut: number;
  retransmits: number;
  queued: number;
  drops: Record<string, number>;
  /** The SFU's forwarding latency since the last reset, ms; null when the SFU has none. */
  forwardLatencyMs: { count: number; p50: number; p99: number; max: number; mean: number } | null;
  /** The SFU's event-loop delay (worst media thread), ms. */
  mediaLoopDelayMs: { p99: number; max: number } | null;
  /** Longest ingest slice or pacer pass of any media worker, ms (null without workers). */
  mediaSliceMaxMs: number | null;
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  rssKb: number;
}

export interface ReceiverWindow {
  viewers: number;
  packets: number;
  bytes: number;
  expected: number;
  lost: number;
  duplicates: number;
  silent: number;
  lossFraction: number;
  worstViewerLoss: number;
  perViewerMin: number;
  perViewerMax: number;
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
}

export interface AddResult {
  total: number;
  added: number;
  /** Receivers that did not connect after every attempt. */
  failed: number;
  /** Connection attempts that failed and were retried. */
  retried: number;
  /** Receivers not attempted: the level's connection time budget ran out. */
  skipped: number;
  errors: string[];
  wallMs: number;
  connectMsP50: number;
  firstPacketMsP50: number;
}

export type ReceiverTarget = { kind: "whep"; url: string } | { kind: "janus"; api: string; mountpoint: number };

/** The processes of one fan-out setup. */
export interface Rig {
  recorder: Child<{ url: string; pid: number }>;
  gateway: Child<{ url: string; pid: number; workers: number | null }>;
  receivers: Child<{ pid: number }>;
  whep: ReceiverTarget;
  clip: { path: string; bytes: number; kbps: number; spec: ClipSpec };
  close(): Promise<void>;
}

export interface RigOptions {
  /** `media.workers` for the gateway; undefined = config default. */
  workers?: number;
  /** false: the gateway runs without the native fast path (GATEHOUSE_NATIVE=0). */
  native?: boolean;
  clip?: ClipSpec;
  log?: Log;
}

/** Gateway config (raw input) pulling `rtspUrl` as camera `bench`, always on, over TCP. */
export function gatewayConfig(rtspUrl: string, o: { workers?: number | undefined; cameras?: Array<{ id: string; url: string }> } = {}) {
  const base = 41000 + 2000 * Math.floor(Math.random() * 4);
  return {
    server: { host: "127.0.0.1", port: 0 },
    auth: { mode: "none" },
    log: { level: "silent" },
    demo: { enabled: false },
    cameras: (o.cameras ?? [{ id: "bench", url: rtspUrl }]).map((c) => ({ ...c, transport: "tcp", alwaysOn: true })),
    // One anonymous user opens every bench viewer: lift the per-user bound above the largest level.
    media: { icePortRange: [base, base + 1999], viewers: { perSession: 1000, perUser: 1000 }, ...(o.workers !== undefined ? { workers: o.workers } : {}) },
  };
}

export async function startRig(o: RigOptions = {}): Promise<Rig> {
  const log = o.log ?? (() => {});
  const spec = o.clip ?? DEFAULT_CLIP;
  const clip = { ...(await benchClip(spec)), spec };
  log(`clip ${clip.path} (${clip.kbps} kbit/s)`);
  const started: Array<{ close(): Promise<void> }> = [];
  try {
    const recorder = await forkChild<{ url: string; pid: number }>(proc("recorder.ts"), [
      "--h264", clip.path, "--fps", String(spec.fps), "--max-payload", "1200",
    ]);
    started.push(recorder);
    const gateway = await forkChild<{ url: string; pid: number; workers: number | null }>(
      proc("gateway.ts"),
      ["--config", JSON.stringify(gatewayConfig(recorder.ready.url, { workers: o.workers }))],
      // GATEHOUSE_BENCH_GATEWAY_ARGS: extra Node flags for the gateway (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
      {
        execArgv: ["--expose-gc", ...(process.env.GATEHOUSE_BENCH_GATEWAY_ARGS?.split(" ").filter(Boolean) ?? [])],
        env: o.native === false ? { ...process.env, GATEHOUSE_NATIVE: "0" } : process.env,
      },
    );
    started.push(gateway);
    const receivers = await forkChild<{ pid: number }>(proc("receivers.ts"));
    started.push(receivers);
    // Always-on camera: wait until media flows through the gateway.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const s = await gateway.call<GatewayStats>("stats");
      if (s.packetsIn > 200) break;
      if (Date.now() > deadline) throw new Error(`gateway pulled no media from ${recorder.ready.url} (packetsIn ${s.packetsIn})`);
      await sleep(200);
    }
    return {
      recorder,
      gateway,
      receivers,
      clip,
      whep: { kind: "whep", url: `${gateway.ready.url}/whep/bench` },
      close: async () => {
        for (const c of started.reverse()) await c.close().catch(() => {});
      },
    };
  } catch (err) {
    for (const c of started.reverse()) await c.close().catch(() => {});
    throw err;
  }
}

/** One measured window for a server process (ours or Janus) and the receivers. */
export interface WindowResult {
  viewers: number;
  wallS: number;
  /** Server CPU over the window, in cores (1 = one core busy). */
  serverCores: number;
  receiverCores: number;
  recorderCores: number;
  /** Packets per second the receivers counted. */
  deliveredPps: number;
  /** Server CPU per delivered packet, µs. */
  cpuUsPerDelivered: number;
  lossFraction: number;
  worstViewerLoss: number;
  silentViewers: number;
  serverRssKb: number;
  receiverLoopDelayMaxMs: number;
  /** Datagrams the kernel dropped on the receiver process's sockets (its receive buffers overflowed). */
  receiverSocketDrops: number;
  /** Same on the server's sockets (its ingest and RTCP). */
  serverSocketDrops: number;
  /** Whole-machine CPU busy fraction over the window (other tenants included). */
  machineBusy: number;
  receiver: ReceiverWindow;
}

/** Brings the receiver count to `n` (adds only; call closeAll first to start over). */
export async function ensureReceivers(
  receivers: Rig["receivers"],
  target: ReceiverTarget,
  have: number,
  n: number,
  budgetMs = 60_000,
): Promise<AddResult | undefined> {
  if (n <= have) return undefined;
  const r = await receivers.call<AddResult>("add", { n: n - have, target, budgetMs }, budgetMs + 60_000);
  if (r.failed > 0 && r.added === 0) throw new Error(`no receiver connected: ${r.errors.join("; ")}`);
  return r;
}

/** Measures one window of `windowMs` for server `serverPid` with the receivers as they are. */
export async function measureWindow(
  o: { serverPid: number; receivers: Rig["receivers"]; recorderPid?: number | undefined },
  windowMs: number,
): Promise<WindowResult> {
  const rDrops0 = udpSocketDrops(o.receivers.pid);
  const sDrops0 = udpSocketDrops(o.serverPid);
  const m0 = machineCpu();
  await o.receivers.call("mark");
  const cpu = new CpuWindow({
    server: o.serverPid,
    receivers: o.receivers.pid,
    ...(o.recorderPid ? { recorder: o.recorderPid } : {}),
  });
  await sleep(windowMs);
  const c = cpu.end();
  const r = await o.receivers.call<ReceiverWindow>("read");
  const m1 = machineCpu();
  const deliveredPps = r.packets / c.wallS;
  return {
    viewers: r.viewers,
    wallS: round(c.wallS, 3),
    serverCores: round(c.cores["server"]!, 3),
    receiverCores: round(c.cores["receivers"]!, 3),
    recorderCores: round(c.cores["recorder"] ?? Number.NaN, 3),
    deliveredPps: Math.round(deliveredPps),
    cpuUsPerDelivered: r.packets > 0 ? round((c.cpuS["server"]! / r.packets) * 1e6, 2) : Number.NaN,
    lossFraction: r.lossFraction,
    worstViewerLoss: r.worstViewerLoss,
    silentViewers: r.silent,
    serverRssKb: safeRss(o.serverPid),
    receiverLoopDelayMaxMs: r.loopDelayMaxMs,
    receiverSocketDrops: udpSocketDrops(o.receivers.pid) - rDrops0,
    serverSocketDrops: udpSocketDrops(o.serverPid) - sDrops0,
    machineBusy: round((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total), 3),
    receiver: r,
  };
}

function safeRss(pid: number): number {
  try {
    return rssKb(pid);
  } catch {
    return Number.NaN;
  }
}

export interface FanoutLevel {
  viewers: number;
  /** Packets the gateway's viewers sent per second (SRTP protected and handed to the socket). */
  forwardedPps: number;
  deliveredPps: number;
  /** Upstream packets per second into the gateway (the camera stream). */
  inPps: number;
  inKbps: number;
  gatewayCores: number;
  ppsPerCore: number;
  cpuUsPerPacket: number;
  /** Receiver-side loss (sequence gaps) plus packets the gateway dropped for these viewers, over the window. */
  lossFraction: number;
  receiverLoss: number;
  gatewayDrops: number;
  silentViewers: number;
  /** Gateway RSS after a full GC, kB. */
  rssKb: number;
  /** Forwarding latency over the window (the SFU's histogram), ms. */
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  latencyMaxMs: number | null;
  latencySamples: number;
  /** Event-loop delay, max over the window: gateway main thread, and the SFU's media thread(s). */
  loopDelayMaxMs: number;
  mediaLoopDelayMaxMs: number | null;
  /** Longest stretch our own fan-out (ingest slice or pacer pass) held a media worker's loop, ms. */
  mediaSliceMaxMs: number | null;
  receiverCores: number;
  receiverLoopDelayMaxMs: number;
  recorderCores: number;
  receiverSocketDrops: number;
  gatewaySocketDrops: number;
  /** Whole-machine CPU busy fraction over the window (other tenants included). */
  machineBusy: number;
  /** A lossy window is measured once more before the level counts as lossy; the first one's loss. */
  firstWindowLoss?: number;
  connectMsP50?: number;
  connectFailed?: number;
  connectRetried?: number;
  connectSkipped?: number;
}

export interface FanoutOptions {
  /** Viewer levels, ascending. */
  levels?: number[];
  /** Settling time after the receivers of a level connected, ms. Default 2000. */
  settleMs?: number;
  /** Measured window per level, ms. Default 6000. */
  windowMs?: number;
  /** Loss fraction above which a level is not loss-free. Default 0.001 (0.1 %). */
  lossThreshold?: number;
  /** Viewers at which forwarding latency is reported (or the largest level below it). Default 100. */
  latencyAt?: number;
  /** Longest time to connect one level's new receivers, ms. Default 60000. */
  connectBudgetMs?: number;
  /** Stop between levels when aborted (the run's time limit). */
  signal?: AbortSignal;
  /** Stop stepping up when the gateway uses more than this many cores. Default 0.97 × workers (or 0.97). */
  maxCores?: number;
  /** Reuse an existing rig (receivers are closed at the end, the rig stays). */
  rig?: Rig;
  workers?: number;
  log?: Log;
}

export interface FanoutResult {
  fanout_viewers: number;
  fanout_pps_per_core: number;
  fanout_cpu_us_per_packet: number;
  forward_latency_ms_p50: number | null;
  forward_latency_ms_p99: number | null;
  forward_latency_ms_max: number | null;
  forward_latency_viewers: number | null;
  forward_latency_samples: number;
  forward_latency_method: string;
  rss_kb_per_viewer: number;
  stream_kbps: number;
  stream_pps: number;
  fanout_stop_reason: string;
  fanout_bottleneck: string;
  fanout_gateway_workers: number | null;
  fanout_levels: FanoutLevel[];
}

const LATENCY_METHOD =
  "the SFU's own histogram (Sfu.stats().forwardLatencyMs): live packets from MediaSink.pushRtp (ingest hands the packet " +
  "over) to SRTP-protected and written to the viewer's socket, per packet per viewer, over the level's measured window; " +
  "cache replays and retransmissions excluded";

export async function benchFanout(o: FanoutOptions = {}): Promise<FanoutResult> {
  const log = o.log ?? (() => {});
  const levels = o.levels ?? [10, 50, 100, 150, 200, 300, 400, 500];
  const settleMs = o.settleMs ?? 2000;
  const windowMs = o.windowMs ?? 6000;
  const threshold = o.lossThreshold ?? 0.001;
  const latencyAt = o.latencyAt ?? 100;
  // Latency is reported at latencyAt or the largest level below it.
  const latencyLevel = Math.max(0, ...levels.filter((l) => l <= latencyAt));
  const rig = o.rig ?? (await startRig({ log, ...(o.workers !== undefined ? { workers: o.workers } : {}) }));
  const gwPid = rig.gateway.ready.pid;
  const workers = rig.gateway.ready.workers;
  const maxCores = o.maxCores ?? 0.97 * Math.max(1, workers ?? 1);
  try {
    // Baseline: ingest only, no viewers.
    await rig.gateway.call("gc");
    await sleep(500);
    const rss0 = safeRss(gwPid);
    const g0 = await rig.gateway.call<GatewayStats>("stats");
    const c0 = new CpuWindow({ gw: gwPid });
    await sleep(2000);
    const idle = c0.end();
    const g0b = await rig.gateway.call<GatewayStats>("stats");
    const streamPps = (g0b.packetsIn - g0.packetsIn) / idle.wallS;
    const streamKbps = ((g0b.bytesIn - g0.bytesIn) * 8) / idle.wallS / 1000;
    log(`fanout: stream ${Math.round(streamKbps)} kbit/s, ${Math.round(streamPps)} packets/s; idle gateway ${round(idle.cores["gw"]!, 3)} cores, RSS ${rss0} kB`);

    /** One measured window at the current receiver count. */
    const measureLevel = async (): Promise<FanoutLevel> => {
      await rig.gateway.call("reset");
      const gA = await rig.gateway.call<GatewayStats>("stats");
      const w = await measureWindow({ serverPid: gwPid, receivers: rig.receivers, recorderPid: rig.recorder.ready.pid }, windowMs);
      const gB = await rig.gateway.call<GatewayStats>("stats");
      // RSS after a full GC (outside the CPU window): retained memory, not garbage not yet collected.
      await rig.gateway.call("gc");
      await sleep(300);
      const rssAfterGc = safeRss(gwPid);
      const drops = sumDrops(gB.drops) - sumDrops(gA.drops);
      const forwarded = gB.packetsOut - gA.packetsOut;
      const expected = w.receiver.expected + drops;
      const lost = w.receiver.lost + drops;
      return {
        viewers: w.viewers,
        forwardedPps: Math.round(forwarded / w.wallS),
        deliveredPps: w.deliveredPps,
        inPps: Math.round((gB.packetsIn - gA.packetsIn) / w.wallS),
        inKbps: Math.round(((gB.bytesIn - gA.bytesIn) * 8) / w.wallS / 1000),
        gatewayCores: w.serverCores,
        ppsPerCore: w.serverCores > 0 ? Math.round(forwarded / w.wallS / w.serverCores) : 0,
        cpuUsPerPacket: forwarded > 0 ? round(((w.serverCores * w.wallS) / forwarded) * 1e6, 2) : Number.NaN,
        lossFraction: expected > 0 ? lost / expected : 0,
        receiverLoss: w.lossFraction,
        gatewayDrops: drops,
        silentViewers: w.silentViewers,
        rssKb: rssAfterGc,
        latencyP50Ms: gB.forwardLatencyMs?.p50 ?? null,
        latencyP99Ms: gB.forwardLatencyMs?.p99 ?? null,
        latencyMaxMs: gB.forwardLatencyMs?.max ?? null,
        latencySamples: gB.forwardLatencyMs?.count ?? 0,
        loopDelayMaxMs: gB.loopDelayMaxMs,
        mediaLoopDelayMaxMs: gB.mediaLoopDelayMs?.max ?? null,
        mediaSliceMaxMs: gB.mediaSliceMaxMs,
        receiverCores: w.receiverCores,
        receiverLoopDelayMaxMs: w.receiverLoopDelayMaxMs,
        recorderCores: w.recorderCores,
        receiverSocketDrops: w.receiverSocketDrops,
        gatewaySocketDrops: w.serverSocketDrops,
        machineBusy: w.machineBusy,
      };
    };

    const results: FanoutLevel[] = [];
    let have = 0;
    let stop = "all levels loss-free";
    let latency: { viewers: number; count: number; p50: number; p99: number; max: number } | undefined;
    let latencyMissing = false;
    for (const n of levels) {
      if (o.signal?.aborted) {
        stop = "out of time";
        break;
      }
      const added = await ensureReceivers(rig.receivers, rig.whep, have, n, o.connectBudgetMs ?? 60_000);
      have = added?.total ?? have;
      await sleep(settleMs);
      let level = await measureLevel();
      if (level.lossFraction > threshold || level.silentViewers > 0) {
        // One noisy window on a shared machine should not end the sweep: measure once more.
        log(`fanout ${level.viewers} viewers: loss ${(level.lossFraction * 100).toFixed(3)} %, measuring the level once more`);
        const again = await measureLevel();
        level = { ...again, firstWindowLoss: level.lossFraction };
      }
      if (added) {
        Object.assign(level, {
          connectMsP50: added.connectMsP50,
          connectFailed: added.failed,
          connectRetried: added.retried,
          connectSkipped: added.skipped,
        });
      }
      results.push(level);
      log(
        `fanout ${level.viewers} viewers: ${level.forwardedPps} pps out, gateway ${level.gatewayCores} cores → ` +
          `${level.ppsPerCore} pps/core (${level.cpuUsPerPacket} µs/pkt), loss ${(level.lossFraction * 100).toFixed(3)} %, ` +
          `latency p50/p99 ${level.latencyP50Ms}/${level.latencyP99Ms} ms, loop max ${level.loopDelayMaxMs} ms (media ${level.mediaLoopDelayMaxMs} ms, longest own task ${level.mediaSliceMaxMs} ms), ` +
          `receivers ${level.receiverCores} cores (loop max ${level.receiverLoopDelayMaxMs} ms)`,
      );
      const lossFree = level.lossFraction <= threshold && level.silentViewers === 0;
      if (n === latencyLevel) {
        if (level.latencyP99Ms !== null && level.latencyP50Ms !== null && level.latencyMaxMs !== null) {
          latency = { viewers: level.viewers, count: level.latencySamples, p50: level.latencyP50Ms, p99: level.latencyP99Ms, max: level.latencyMaxMs };
        } else latencyMissing = true;
      }
      if (!lossFree) {
        stop = `loss ${(level.lossFraction * 100).toFixed(3)} % (${level.silentViewers} silent viewers) at ${level.viewers} viewers`;
        break;
      }
      if (level.gatewayCores >= maxCores) {
        stop = `gateway CPU saturated (${level.gatewayCores} cores) at ${level.viewers} viewers`;
        break;
      }
      const missing = added ? added.failed + added.skipped : 0;
      if (added && missing > Math.max(2, 0.1 * (n - (results[results.length - 2]?.viewers ?? 0)))) {
        // Viewers that cannot even join are a capacity limit too (measured above with those that did).
        stop = `${added.failed} receivers failed to connect and ${added.skipped} were not tried in time at ${n}: ${added.errors.join("; ")}`;
        break;
      }
    }
    const best = [...results].reverse().find((l) => l.lossFraction <= threshold && l.silentViewers === 0);
    const top = results[results.length - 1];
    return {
      fanout_viewers: best?.viewers ?? 0,
      fanout_pps_per_core: best?.ppsPerCore ?? 0,
      fanout_cpu_us_per_packet: best?.cpuUsPerPacket ?? Number.NaN,
      forward_latency_ms_p50: latency?.p50 ?? null,
      forward_latency_ms_p99: latency?.p99 ?? null,
      forward_latency_ms_max: latency?.max ?? null,
      forward_latency_viewers: latency?.viewers ?? null,
      forward_latency_samples: latency?.count ?? 0,
      forward_latency_method: latencyMissing ? "the SFU exposes no forwarding-latency histogram (Sfu.stats().forwardLatencyMs)" : LATENCY_METHOD,
      rss_kb_per_viewer: best ? Math.round((best.rssKb - rss0) / best.viewers) : Number.NaN,
      stream_kbps: Math.round(streamKbps),
      stream_pps: Math.round(streamPps),
      fanout_stop_reason: stop,
      fanout_bottleneck: top ? bottleneck(top, maxCores) : "none",
      fanout_gateway_workers: workers,
      fanout_levels: results,
    };
  } finally {
    await rig.receivers.call("closeAll", undefined, 120_000).catch(() => {});
    if (!o.rig) await rig.close();
  }
}

function sumDrops(d: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(d)) n += v;
  return n;
}

/** Which side ran out first at the last level measured. */
function bottleneck(l: FanoutLevel, maxCores: number): string {
  const parts: string[] = [];
  if (l.gatewayCores >= maxCores * 0.9) parts.push(`gateway CPU ${l.gatewayCores} cores`);
  if (l.receiverCores >= 0.9) parts.push(`receiver process CPU ${l.receiverCores} cores`);
  if (l.receiverLoopDelayMaxMs > 200) parts.push(`receiver event loop stalled ${l.receiverLoopDelayMaxMs} ms`);
  if (l.loopDelayMaxMs > 50) parts.push(`gateway main event loop stalled ${l.loopDelayMaxMs} ms`);
  if ((l.mediaLoopDelayMaxMs ?? 0) > 50) parts.push(`media event loop stalled ${l.mediaLoopDelayMaxMs} ms`);
  if (l.receiverSocketDrops > 0) parts.push(`${l.receiverSocketDrops} datagrams dropped on the receivers' sockets`);
  if (l.gatewaySocketDrops > 0) parts.push(`${l.gatewaySocketDrops} datagrams dropped on the gateway's sockets`);
  if (l.machineBusy > 0.95) parts.push(`machine CPU ${Math.round(l.machineBusy * 100)} % busy (other tenants included)`);
  return parts.length ? parts.join("; ") : "none observed";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { quick: { type: "boolean" }, levels: { type: "string" }, workers: { type: "string" } } });
  const levels = values.levels ? values.levels.split(",").map(Number) : values.quick ? [10, 50, 100] : undefined;
  const result = await benchFanout({
    ...(levels ? { levels } : {}),
    ...(values.quick ? { windowMs: 3000, settleMs: 1000 } : {}),
    ...(values.workers ? { workers: Number(values.workers) } : {}),
    log: (m) => process.stderr.write(`${m}\n`),
  });
  console.log(JSON.stringify(result));
}
