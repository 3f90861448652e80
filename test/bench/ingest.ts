/**
 * The cost of many cameras: 32 cameras at 2 Mbit/s, one viewer each, on our gateway and on
 * Janus 1.1.2 side by side, in the same run and over the same windows.
 *
 *   cameras   (procs/cameras.ts)         32 demo RTSP recorders in one process, the same
 *                                        1280x720 25 fps H.264 clip (ffmpeg, encoded once,
 *                                        cached), pre-packetized to RTP payloads ≤ 1200 bytes
 *   gateway   (procs/gateway.ts)         startGateway() with 32 cameras, always on, RTSP over UDP
 *   janus     (test/peers/janus.ts)      32 `rtsp` mountpoints (streaming plugin), RTSP over UDP
 *                                        (the only way its RTSP client pulls), event_loops = 2
 *   viewers   (procs/camera-viewers.ts)  one light WebRTC viewer per camera on each side, one
 *                                        process per side (a starved process of 64 peers
 *                                        overflowed its sockets), ICE+DTLS real, SRTP counted
 *                                        from headers
 *
 * Both servers pull the same 32 RTSP URLs the same way (DESCRIBE/SETUP/PLAY, RTP/AVP over
 * UDP), and forward each camera to one WebRTC viewer. Our viewers ask for `stream=main` (the
 * camera's stream as it comes, like Janus; no network adaptation: on this shared machine a
 * starved receiver process looks like a slow link). Overload protection stays on. Both run all along; each window reads
 * utime+stime from /proc for the gateway's process tree and for the Janus process over the
 * same wall-clock span, and counts, per viewer, the packets and frames (RTP marker bits)
 * received. The contention of a shared machine falls on both alike.
 *
 *   ingest_cpu_pct_per_camera        median over windows of the gateway's CPU (% of one core) ÷ cameras
 *   janus_ingest_cpu_pct_per_camera  same for Janus
 *   janus_ingest_ratio               ours ÷ Janus (ratio of the medians)
 *
 * Delivery is checked, or the figures mean nothing: in every window every viewer on both
 * sides must receive at least `minDelivery` (80 %) of the clip's frame rate, else the bench
 * fails with the cameras that fell short.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { startJanus, type Janus } from "../peers/janus.ts";
import { gatewayConfig, type GatewayStats, type Log } from "./fanout.ts";
import { forkChild } from "./lib/child.ts";
import { benchClip, DEFAULT_CLIP, type ClipSpec } from "./lib/clip.ts";
import { CpuWindow, machineCpu, udpSocketDrops } from "./lib/proc.ts";
import { median, round } from "./lib/stats.ts";
import type { ViewerWindow } from "./procs/camera-viewers.ts";

const proc = (name: string) => fileURLToPath(new URL(`./procs/${name}`, import.meta.url));

export interface IngestOptions {
  /** Cameras (and viewers per side). Default 32. */
  cameras?: number;
  /** Measured windows. Default 5. */
  windows?: number;
  /** Length of one window, ms. Default 8000. */
  windowMs?: number;
  /** Wait after every viewer is connected, before the first window, ms. Default 4000. */
  settleMs?: number;
  /** Least fraction of the clip's frame rate each viewer must receive in every window. Default 0.8. */
  minDelivery?: number;
  /** Janus `event_loops`. Default 2 (as in the per-packet comparison). */
  janusEventLoops?: number;
  /** The gateway's `media.workers`; default the config default (one per core). */
  gatewayWorkers?: number;
  clip?: ClipSpec;
  signal?: AbortSignal;
  log?: Log;
}

/** One measured window. */
export interface IngestWindow {
  wallS: number;
  /** CPU over the window in cores (1 = one core busy). */
  oursCores: number;
  janusCores: number;
  camerasCores: number;
  viewersCores: number;
  /** Whole-machine busy fraction (other tenants included). */
  machineBusy: number;
  /** Frames per second received by the slowest viewer, per side. */
  oursMinFps: number;
  janusMinFps: number;
  /** Median frames per second per viewer, per side. */
  oursFps: number;
  janusFps: number;
  /** Packets per second delivered to all viewers, per side. */
  oursPps: number;
  janusPps: number;
  /** Sequence-gap loss over all viewers, per side. */
  oursLoss: number;
  janusLoss: number;
  /** Packets lost between the cameras and our gateway (RTP sequence gaps), and dropped by its sources. */
  oursUpstreamLost: number;
  oursSourceDropped: number;
  /** Datagrams the kernel dropped on each server's sockets (full receive buffers), and on the viewers'. */
  oursSocketDrops: number;
  janusSocketDrops: number;
  viewersSocketDrops: number;
  /** Viewers our gateway counted as connected at the end of the window. */
  oursConnected: number;
  /** Packets our gateway dropped for its viewers over the window, by reason (only reasons that occurred). */
  oursViewerDrops: Record<string, number>;
}

export interface IngestResult {
  ingest_cpu_pct_per_camera: number;
  janus_ingest_cpu_pct_per_camera: number;
  janus_ingest_ratio: number;
  ingest_cameras: number;
  ingest_camera_kbps: number;
  ingest_cores_p50: number;
  janus_ingest_cores_p50: number;
  /** The same with no viewer at all (pull only), one window before the viewers connect. */
  ingest_pull_only_cpu_pct_per_camera: number;
  janus_ingest_pull_only_cpu_pct_per_camera: number;
  /** Lowest fraction of the clip's frame rate any viewer received in any window, per side. */
  ingest_delivery_min: number;
  janus_ingest_delivery_min: number;
  ingest_windows: IngestWindow[];
  ingest_cameras_cores_p50: number;
  ingest_viewers_cores_p50: number;
  ingest_machine_busy_p50: number;
  /** Datagrams the kernel dropped on each server's sockets over all windows. */
  ingest_socket_drops: number;
  janus_ingest_socket_drops: number;
  ingest_method: string;
}

/** Frames per second of the slowest viewer, and the viewers below `min` fps (1-based camera numbers). */
export function deliveryOf(viewers: readonly ViewerWindow[], wallS: number, min: number): { minFps: number; medianFps: number; short: number[] } {
  const fps = viewers.map((v) => v.frames / wallS);
  return {
    minFps: fps.length ? Math.min(...fps) : 0,
    medianFps: median(fps),
    short: fps.flatMap((f, i) => (f < min ? [i + 1] : [])),
  };
}

export async function benchIngest(o: IngestOptions = {}): Promise<IngestResult> {
  const log = o.log ?? (() => {});
  const n = o.cameras ?? 32;
  const windows = o.windows ?? 5;
  const windowMs = o.windowMs ?? 8000;
  const minDelivery = o.minDelivery ?? 0.8;
  const spec = o.clip ?? DEFAULT_CLIP;
  const clip = await benchClip(spec);
  const minFps = spec.fps * minDelivery;
  log(`ingest: clip ${clip.path} (${clip.kbps} kbit/s), ${n} cameras`);

  const started: Array<{ close(): Promise<void> }> = [];
  const stop = async () => {
    for (const c of started.reverse()) await c.close().catch(() => {});
  };
  try {
    const cameras = await forkChild<{ urls: string[]; pid: number }>(proc("cameras.ts"), [
      "--h264", clip.path, "--count", String(n), "--fps", String(spec.fps), "--max-payload", "1200",
    ]);
    started.push(cameras);
    const urls = cameras.ready.urls;
    const ids = urls.map((_, i) => `cam${i + 1}`);
    const base = gatewayConfig(urls[0]!, { cameras: ids.map((id, i) => ({ id, url: urls[i]! })), workers: o.gatewayWorkers });
    const config = { ...base, cameras: base.cameras.map((c) => ({ ...c, transport: "udp" })) };
    const gateway = await forkChild<{ url: string; pid: number }>(proc("gateway.ts"), ["--config", JSON.stringify(config)], {
      execArgv: process.env.GATEHOUSE_BENCH_GATEWAY_ARGS?.split(" ").filter(Boolean) ?? [],
    });
    started.push(gateway);
    const janus: Janus = await startJanus({
      rtspUrl: urls[0]!,
      rtspUrls: urls,
      eventLoops: o.janusEventLoops ?? 2,
      readyTimeoutMs: 60_000,
    });
    started.push(janus);
    const oursViewers = await forkChild<{ pid: number }>(proc("camera-viewers.ts"));
    started.push(oursViewers);
    const janusViewers = await forkChild<{ pid: number }>(proc("camera-viewers.ts"));
    started.push(janusViewers);
    const viewerPids = [oursViewers.pid, janusViewers.pid];
    log(`ingest: cameras pid ${cameras.pid}, gateway pid ${gateway.pid}, janus pid ${janus.pid}, viewers pids ${viewerPids.join(", ")}`);

    // Pull only: both servers hold all the cameras, nobody watches.
    const pullStart = performance.now();
    for (;;) {
      const s = await gateway.call<GatewayStats>("stats");
      if (s.packetsIn > n * 100) break;
      if (performance.now() - pullStart > 30_000) throw new Error(`the gateway pulled only ${s.packetsIn} packets from ${n} cameras in 30 s`);
      await sleep(250);
    }
    await sleep(1000);
    const pull = new CpuWindow({ ours: gateway.pid, janus: janus.pid }, { tree: true });
    await sleep(windowMs);
    const pullOnly = pull.end();
    log(`ingest: pull only, no viewers: ours ${round(pullOnly.cores["ours"]!, 3)} cores, janus ${round(pullOnly.cores["janus"]!, 3)} cores`);

    // `stream=main`: the camera's own stream, as Janus forwards it (no network adaptation, which would
    // read a starved receiver process as a slow link and step its viewers down to keyframes only).
    const whepUrls = ids.map((id) => `${gateway.ready.url}/whep/${id}?stream=main`);
    const ours = await oursViewers.call<{ wallMs: number; retried: number }>("whep", { side: "ours", urls: whepUrls }, 180_000);
    if (o.signal?.aborted) throw new Error("out of time");
    const theirs = await janusViewers.call<{ wallMs: number; retried: number }>("janus", { side: "janus", api: janus.api, mountpoints: [...janus.mountpoints] }, 180_000);
    log(`ingest: ${n} viewers on ours in ${ours.wallMs} ms (${ours.retried} retried), on Janus in ${theirs.wallMs} ms (${theirs.retried} retried)`);
    await sleep(o.settleMs ?? 4000);

    const results: IngestWindow[] = [];
    let oursDrops = 0;
    let janusDrops = 0;
    for (let w = 0; w < windows; w++) {
      if (o.signal?.aborted) throw new Error("out of time");
      const viewerDropsNow = () => viewerPids.reduce((a, pid) => a + udpSocketDrops(pid), 0);
      const d0 = { ours: udpSocketDrops(gateway.pid), janus: udpSocketDrops(janus.pid), viewers: viewerDropsNow() };
      const m0 = machineCpu();
      const g0 = await gateway.call<GatewayStats>("stats");
      await Promise.all([oursViewers.call("mark"), janusViewers.call("mark")]);
      // The gateway's whole process tree (a transcoder it spawned would count); Janus is one process.
      const cpu = new CpuWindow(
        { ours: gateway.pid, janus: janus.pid, cameras: cameras.pid, oursViewers: oursViewers.pid, janusViewers: janusViewers.pid },
        { tree: true },
      );
      await sleep(windowMs);
      const c = cpu.end();
      const got = {
        ...(await oursViewers.call<Record<string, ViewerWindow[]>>("read")),
        ...(await janusViewers.call<Record<string, ViewerWindow[]>>("read")),
      };
      const g1 = await gateway.call<GatewayStats>("stats");
      const m1 = machineCpu();
      const drops = {
        ours: udpSocketDrops(gateway.pid) - d0.ours,
        janus: udpSocketDrops(janus.pid) - d0.janus,
        viewers: viewerDropsNow() - d0.viewers,
      };
      const viewerDrops = Object.fromEntries(
        Object.entries(g1.drops)
          .map(([k, v]) => [k, v - (g0.drops[k] ?? 0)] as const)
          .filter(([, v]) => v > 0),
      );
      oursDrops += drops.ours;
      janusDrops += drops.janus;
      const side = (name: "ours" | "janus") => {
        const list = got[name] ?? [];
        if (list.length !== n) throw new Error(`${name}: ${list.length} of ${n} viewers still there`);
        const d = deliveryOf(list, c.wallS, minFps);
        const expected = list.reduce((a, v) => a + v.expected, 0);
        const lost = list.reduce((a, v) => a + v.lost, 0);
        const detail = d.short.map((i) => `#${i}: ${JSON.stringify(list[i - 1])}`).join(" ");
        return { ...d, detail, pps: list.reduce((a, v) => a + v.packets, 0) / c.wallS, loss: expected > 0 ? lost / expected : 0 };
      };
      const a = side("ours");
      const b = side("janus");
      const win: IngestWindow = {
        wallS: round(c.wallS, 3),
        oursCores: round(c.cores["ours"]!, 3),
        janusCores: round(c.cores["janus"]!, 3),
        camerasCores: round(c.cores["cameras"]!, 3),
        viewersCores: round(c.cores["oursViewers"]! + c.cores["janusViewers"]!, 3),
        machineBusy: round((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total), 3),
        oursMinFps: round(a.minFps, 1),
        janusMinFps: round(b.minFps, 1),
        oursFps: round(a.medianFps, 1),
        janusFps: round(b.medianFps, 1),
        oursPps: Math.round(a.pps),
        janusPps: Math.round(b.pps),
        oursLoss: round(a.loss, 4),
        janusLoss: round(b.loss, 4),
        oursUpstreamLost: g1.upstreamLost - g0.upstreamLost,
        oursSourceDropped: g1.sourceDropped - g0.sourceDropped,
        oursSocketDrops: drops.ours,
        janusSocketDrops: drops.janus,
        viewersSocketDrops: drops.viewers,
        oursConnected: g1.connected,
        oursViewerDrops: viewerDrops,
      };
      results.push(win);
      log(
        `ingest window ${w + 1}/${windows}: ours ${win.oursCores} cores, janus ${win.janusCores} cores; ` +
          `fps min/median ours ${win.oursMinFps}/${win.oursFps}, janus ${win.janusMinFps}/${win.janusFps}; ` +
          `cameras ${win.camerasCores}, viewers ${win.viewersCores}, machine ${win.machineBusy}; ` +
          `ours upstream lost ${win.oursUpstreamLost}, source drops ${win.oursSourceDropped}, socket drops ours ${win.oursSocketDrops} ` +
          `janus ${win.janusSocketDrops} viewers ${win.viewersSocketDrops}; viewer loss ours ${win.oursLoss} janus ${win.janusLoss}; ` +
          `our drops for viewers ${JSON.stringify(win.oursViewerDrops)}, our viewers connected ${win.oursConnected}`,
      );
      if (a.short.length > 0 || b.short.length > 0) {
        throw new Error(
          `delivery below ${minDelivery * 100} % of ${spec.fps} fps in window ${w + 1}: ` +
            `ours cameras [${a.short.join(", ")}] (slowest ${round(a.minFps, 1)} fps; ${a.detail}), ` +
            `janus cameras [${b.short.join(", ")}] (slowest ${round(b.minFps, 1)} fps); machine busy ${win.machineBusy}, ` +
            `our upstream lost ${win.oursUpstreamLost} and source drops ${win.oursSourceDropped}, socket drops ours ${win.oursSocketDrops} ` +
            `janus ${win.janusSocketDrops} viewers ${win.viewersSocketDrops}, viewer loss ours ${win.oursLoss} janus ${win.janusLoss}, ` +
            `our drops for viewers ${JSON.stringify(win.oursViewerDrops)}, our viewers connected ${win.oursConnected}`,
        );
      }
    }

    const oursCores = median(results.map((r) => r.oursCores));
    const janusCores = median(results.map((r) => r.janusCores));
    return {
      ingest_cpu_pct_per_camera: round((oursCores * 100) / n, 2),
      janus_ingest_cpu_pct_per_camera: round((janusCores * 100) / n, 2),
      janus_ingest_ratio: round(oursCores / janusCores, 3),
      ingest_cameras: n,
      ingest_camera_kbps: clip.kbps,
      ingest_cores_p50: round(oursCores, 3),
      janus_ingest_cores_p50: round(janusCores, 3),
      ingest_pull_only_cpu_pct_per_camera: round((pullOnly.cores["ours"]! * 100) / n, 2),
      janus_ingest_pull_only_cpu_pct_per_camera: round((pullOnly.cores["janus"]! * 100) / n, 2),
      ingest_delivery_min: round(Math.min(...results.map((r) => r.oursMinFps)) / spec.fps, 3),
      janus_ingest_delivery_min: round(Math.min(...results.map((r) => r.janusMinFps)) / spec.fps, 3),
      ingest_windows: results,
      ingest_cameras_cores_p50: round(median(results.map((r) => r.camerasCores)), 3),
      ingest_viewers_cores_p50: round(median(results.map((r) => r.viewersCores)), 3),
      ingest_machine_busy_p50: round(median(results.map((r) => r.machineBusy)), 3),
      ingest_socket_drops: oursDrops,
      janus_ingest_socket_drops: janusDrops,
      ingest_method:
        `${n} demo RTSP recorders in one process looping one ${spec.width}x${spec.height} ${spec.fps} fps H.264 clip ` +
        `(${clip.kbps} kbit/s, GOP ${spec.gop}, RTP payloads ≤ 1200 B); our gateway and Janus 1.1.2 ` +
        `(streaming plugin rtsp mountpoints, event_loops = ${o.janusEventLoops ?? 2}) both pull all ${n} over RTSP/UDP, ` +
        `one light WebRTC viewer per camera on each side, one process per side (ours with stream=main); both run side by side, ` +
        `${windows} windows of ${windowMs / 1000} s, /proc utime+stime of the gateway's process tree and of Janus ` +
        `over the same windows (after one ${windowMs / 1000} s window of pulling with no viewer); medians; every viewer ≥ ${minDelivery * 100} % of ${spec.fps} fps in every window`,
    };
  } finally {
    await stop();
  }
}
