/**
 * `npm run bench`: every benchmark of the media plane (and the TURN and SIP ones when
 * they exist), progress on stderr, ONE JSON object as the last line of stdout.
 *
 *   npm run bench                          # everything (≈ 6–9 min on 2 cores)
 *   npm run bench -- --quick               # fewer levels, trials and rounds (smoke run)
 *   npm run bench -- --only fanout,ttff    # a subset
 *
 * Sub-benchmarks: fanout, latency_floor (the forward latency a forwarder with no
 * per-packet work of its own gets on this machine, beside ours), janus (CPU per packet vs Janus), workers (fan-out scaling
 * with media worker threads), ttff (demo recorder), ttff_gop2s (GStreamer recorder
 * with a 2 s GOP that never answers keyframe requests), janus_ttff (same recorder),
 * outage (a watched recorder SIGKILLed and restarted: how fast the page leaves LIVE,
 * and how fast new frames are decoded once it listens again), turn, sip, audit (records/s into
 * SQLite and PostgreSQL, and what it adds to a WHEP POST's p99), codecs (the ffmpeg child's CPU
 * converting one AAC camera to Opus and one 1080p25 H.265 camera to H.264), ingest (32 cameras at
 * 2 Mbit/s with one viewer each: our CPU per camera beside Janus pulling the same 32). One that fails or whose module does not exist yet is reported as
 * `"<name>_error": "…"` and the run goes on.
 *
 * Method notes (the machine is shared and noisy): every server runs in a process of its
 * own and its CPU is read from /proc; ours and Janus are measured in the same run, in
 * rotating order, and compared by medians.
 */
import { existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { launchChromium, type Chromium } from "../peers/chromium.ts";
import { startGstRtspServer, type GstRtspServer } from "../peers/gst.ts";
import { benchFanout, gatewayConfig, startRig, type Rig } from "./fanout.ts";
import { benchJanusCpu, benchJanusTtff } from "./janus.ts";
import { forkChild, type Child } from "./lib/child.ts";
import { machineCpu } from "./lib/proc.ts";
import { benchLatencyFloor, type FloorResult } from "./floor.ts";
import { benchOutage } from "./outage.ts";
import { benchTtff } from "./ttff.ts";
import { benchAudit } from "./audit.ts";
import { benchPlayback } from "./playback.ts";
import { benchCodecs } from "./codecs.ts";
import { benchCluster } from "./cluster.ts";
import { benchGrid } from "./grid.ts";
import { benchStreams } from "./streams.ts";
import { benchIngest } from "./ingest.ts";

const ALL = ["fanout", "latency_floor", "janus", "workers", "ttff", "ttff_gop2s", "janus_ttff", "outage", "turn", "sip", "audit", "playback", "codecs", "cluster", "grid", "streams", "ingest"] as const;
type Name = (typeof ALL)[number];

const { values } = parseArgs({
  options: { only: { type: "string" }, quick: { type: "boolean", default: false } },
});
const quick = values.quick === true;
const only = new Set<string>(values.only ? values.only.split(",").map((s) => s.trim()) : ALL);
for (const n of only) if (!(ALL as readonly string[]).includes(n)) throw new Error(`unknown sub-benchmark "${n}" (known: ${ALL.join(", ")})`);
const wanted = (n: Name) => only.has(n);

const t0 = performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);
const cpu0 = machineCpu();

const out: Record<string, unknown> = {
  cores: os.availableParallelism(),
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  cpu_model: os.cpus()[0]?.model ?? "unknown",
  loadavg_1m_at_start: Math.round(os.loadavg()[0]! * 100) / 100,
  quick,
  started_at: new Date().toISOString(),
};

/**
 * Runs one sub-benchmark; its figures go into `out`, a failure becomes `<name>_error`.
 * Past `limitMs` the step is abandoned: its signal aborts and `onTimeout` tears down
 * what it uses, so it cannot keep running underneath the next step.
 */
async function step(
  name: Name,
  fn: (signal: AbortSignal) => Promise<Record<string, unknown>>,
  limitMs = 300_000,
  onTimeout?: () => Promise<void>,
): Promise<void> {
  if (!wanted(name)) return;
  const started = performance.now();
  log(`${name}: start`);
  let timer: NodeJS.Timeout | undefined;
  const abort = new AbortController();
  try {
    const r = await Promise.race([
      fn(abort.signal),
      new Promise<never>(
        (_, reject) =>
          (timer = setTimeout(() => {
            abort.abort();
            reject(new Error(`timed out after ${limitMs / 1000} s`));
          }, limitMs)),
      ),
    ]);
    Object.assign(out, r);
    log(`${name}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    out[`${name}_error`] = msg.split("\n").slice(0, 6).join(" | ").slice(0, 600);
    log(`${name}: FAILED: ${msg.split("\n")[0]}`);
    if (abort.signal.aborted) await onTimeout?.().catch(() => {});
  } finally {
    clearTimeout(timer);
  }
}

/** Imports an optional sub-benchmark module someone else owns; a clear error if it is not there yet. */
async function optional(file: string, fn: string, arg: Record<string, unknown>): Promise<Record<string, unknown>> {
  const url = new URL(file, import.meta.url);
  if (!existsSync(fileURLToPath(url))) throw new Error(`test/bench/${file} does not exist yet`);
  const mod = (await import(url.href)) as Record<string, unknown>;
  const f = mod[fn];
  if (typeof f !== "function") throw new Error(`test/bench/${file} exports no ${fn}()`);
  return (await (f as (o: Record<string, unknown>) => Promise<Record<string, unknown>>)(arg)) ?? {};
}

// ---- fan-out, Janus CPU comparison (one rig: recorder, gateway, receivers) -----------

let rig: Rig | undefined;
const getRig = async () => (rig ??= await startRig({ log }));
/** A timed-out step's rig is killed (its processes with it) and the next step starts a fresh one. */
const dropRig = async () => {
  const r = rig;
  rig = undefined;
  await r?.close();
};
try {
  await step(
    "fanout",
    async (signal) => {
      const r = await benchFanout({
        rig: await getRig(),
        log,
        signal,
        ...(quick ? { levels: [10, 50, 100], windowMs: 3000, settleMs: 1000, connectBudgetMs: 30_000 } : {}),
      });
      const c = rig!.clip;
      return {
        ...r,
        recorder:
          `Gatehouse demo RTSP recorder in its own process, looping ${c.spec.width}x${c.spec.height} ${c.spec.fps} fps ` +
          `H.264 baseline, GOP ${c.spec.gop}, ${c.kbps} kbit/s (ffmpeg testsrc2 + temporal noise), RTP payloads ≤ 1200 bytes; ` +
          "gateway pulls it over RTSP/TCP, always on",
        receivers: "one process of light WebRTC receivers: werift ICE+DTLS, SRTP counted from clear RTP headers, not decrypted",
      };
    },
    240_000,
    dropRig,
  );
  await step("latency_floor", async () => {
    // Three short runs, the median p99 reported: the floor is as noisy as the machine.
    const viewers = typeof out["forward_latency_viewers"] === "number" ? out["forward_latency_viewers"] : 100;
    const workers = typeof out["fanout_gateway_workers"] === "number" ? out["fanout_gateway_workers"] : os.availableParallelism();
    const runs: FloorResult[] = [];
    for (let i = 0; i < (quick ? 1 : 3); i++) runs.push(await benchLatencyFloor({ viewers, workers, durationMs: quick ? 4000 : 8000, log }));
    runs.sort((a, b) => a.forward_latency_floor_ms_p99 - b.forward_latency_floor_ms_p99);
    const mid = runs[Math.floor(runs.length / 2)]!;
    const ours = out["forward_latency_ms_p99"];
    return {
      ...mid,
      forward_latency_floor_ms_p99_runs: runs.map((r) => r.forward_latency_floor_ms_p99),
      forward_latency_p99_over_floor: typeof ours === "number" && mid.forward_latency_floor_ms_p99 > 0 ? Math.round((ours / mid.forward_latency_floor_ms_p99) * 100) / 100 : null,
    };
  });
  await step(
    "janus",
    async (signal) => ({
      ...(await benchJanusCpu({
        rig: await getRig(),
        log,
        signal,
        ...(quick ? { levels: [50], rounds: 1, windowMs: 3000, settleMs: 1000 } : {}),
      })),
    }),
    200_000,
    dropRig,
  );
} finally {
  await rig?.close();
  rig = undefined;
}

// ---- media worker threads ----------------------------------------------------------

/**
 * Fan-out with 1 then 2 media worker threads: aggregate loss-free throughput and CPU per
 * packet. Measured on the JavaScript path (GATEHOUSE_NATIVE=0): with the native fast path
 * one worker needs ~0.55 cores at 600 viewers while the receiver process, on the same two
 * cores, already drops packets, so this machine cannot load even one native worker to
 * saturation; the JavaScript path saturates a worker at ~300 viewers, which is what a
 * scaling figure needs.
 */
async function workerScaling(signal: AbortSignal): Promise<Record<string, unknown>> {
  // Steps of 50 near the top: each sweep stops at its first lossy level, and with steps of 100
  // one worker (≈ 350 viewers) and two (≈ 450, the receivers taking the rest of the machine)
  // often round to the same level.
  const levels = [100, 200, 300, 350, 400, 450, 500, 600];
  const sweep = async (workers: number) => {
    workerRig = await startRig({ workers, log, native: false });
    try {
      const got = workerRig.gateway.ready.workers;
      if (got !== workers) return { unsupported: got };
      if (quick) return { skipped: true as const };
      const r = await benchFanout({ rig: workerRig, log, signal, levels, windowMs: 3000, settleMs: 1500, latencyAt: 0 });
      const best = Math.max(0, ...r.fanout_levels.filter((l) => l.lossFraction <= 0.001).map((l) => l.forwardedPps));
      return { best, usPerPacket: r.fanout_cpu_us_per_packet };
    } finally {
      await workerRig.close();
      workerRig = undefined;
    }
  };
  // Does the gateway run media in worker threads at all? Ask for one and see what the SFU reports.
  const w1 = await sweep(1);
  if ("unsupported" in w1) {
    return {
      fanout_scaling_2_workers: null,
      fanout_scaling_reason:
        w1.unsupported === null
          ? "the SFU reports no media worker threads (no Sfu.workerCount)"
          : `config media.workers = 1 gave Sfu.workerCount = ${w1.unsupported}: the gateway does not pass media.workers to the SFU yet`,
    };
  }
  if ("skipped" in w1) return { fanout_scaling_2_workers: null, fanout_scaling_reason: "skipped in --quick" };
  const w2 = await sweep(2);
  if ("unsupported" in w2) return { fanout_scaling_2_workers: null, fanout_scaling_reason: `2 workers requested, SFU reports ${w2.unsupported}` };
  if ("skipped" in w2) return { fanout_scaling_2_workers: null, fanout_scaling_reason: "skipped" };
  return {
    fanout_scaling_2_workers: w1.best > 0 ? Math.round((w2.best / w1.best) * 100) / 100 : null,
    fanout_scaling_pps_1_worker: w1.best,
    fanout_scaling_pps_2_workers: w2.best,
    fanout_scaling_cpu_us_per_packet: [w1.usPerPacket, w2.usPerPacket],
    fanout_scaling_path: "javascript (GATEHOUSE_NATIVE=0)",
    fanout_scaling_note:
      "measured without the native fast path, which no load this machine can generate saturates; receivers, recorder and gateway share the 2 cores",
  };
}

let workerRig: Rig | undefined;
await step("workers", workerScaling, 240_000, async () => {
  await workerRig?.close();
  workerRig = undefined;
});

// ---- time to first frame (Chromium) ------------------------------------------------

const ttffTrials = quick ? 5 : 20;
let chromium: Chromium | undefined;
let gst: GstRtspServer | undefined;
let ttffGw: Child<{ url: string; pid: number }> | undefined;
try {
  if (wanted("ttff") || wanted("ttff_gop2s") || wanted("janus_ttff")) {
    try {
      chromium = await launchChromium();
      // A recorder that ignores keyframe requests (RTSP has no way to ask anyway) and sends one every 2 s.
      gst = await startGstRtspServer({ gop: 50, fps: 25, noAudio: true, protocols: ["tcp", "udp"] });
      const config = { ...gatewayConfig(gst.url, { cameras: [{ id: "gop2s", url: gst.url }] }), demo: { enabled: true } };
      ttffGw = await forkChild<{ url: string; pid: number }>(fileURLToPath(new URL("./procs/gateway.ts", import.meta.url)), [
        "--config",
        JSON.stringify(config),
      ]);
    } catch (err) {
      const msg = `set-up failed: ${err instanceof Error ? err.message : String(err)}`;
      for (const n of ["ttff", "ttff_gop2s", "janus_ttff"] as const) if (wanted(n)) out[`${n}_error`] = msg.slice(0, 600);
      log(msg);
    }
  }
  if (chromium && gst && ttffGw) {
    const url = ttffGw.ready.url;
    await step("ttff", async () => ({
      ...(await benchTtff({ url, camera: "demo", chromium, trials: ttffTrials })),
      ttff_recorder: "built-in demo recorder (committed 640x360 clip), warm source",
    }));
    await step("ttff_gop2s", async () => {
      const r = await benchTtff({ url, camera: "gop2s", chromium, trials: ttffTrials });
      return {
        ...Object.fromEntries(Object.entries(r).map(([k, v]) => [k.replace(/^ttff_/, "ttff_gop2s_"), v])),
        ttff_gop2s_recorder: "GStreamer RTSP server (test/peers/gst.ts), 320x240 25 fps, GOP 50 (2 s), keyframe requests never reach it",
      };
    });
    await step("janus_ttff", async () => ({
      ...(await benchJanusTtff({ rtspUrl: gst!.url, chromium: chromium!, trials: ttffTrials, log })),
      janus_ttff_recorder: "same GStreamer recorder as ttff_gop2s (GOP 50), Janus event_loops = 2, videobufferkf = true",
    }));
  }
} finally {
  await ttffGw?.close();
  await gst?.close();
  await chromium?.close();
}

// ---- a recorder that dies and comes back (Chromium) -------------------------------

await step("outage", async (signal) => ({ ...(await benchOutage({ cycles: quick ? 2 : 7, log, signal })) }), 240_000);

// ---- other rooms' benchmarks -------------------------------------------------------

// Three rounds (not its default five) keep the whole run near ten minutes; medians still hold.
await step("turn", () => optional("turn.ts", "benchTurn", quick ? { quick: true, rounds: 2 } : { rounds: 3 }));
await step("sip", () => optional("sip.ts", "benchSip", quick ? { quick: true } : {}));
await step("audit", () => benchAudit({ quick, log }), 180_000);
await step("playback", async () => ({ ...(await benchPlayback({ quick })) }), 180_000);
await step("codecs", () => benchCodecs({ quick, log }), 240_000);
await step("cluster", (signal) => benchCluster({ cycles: quick ? 2 : 5, log, signal }), 600_000);
await step("grid", async () => ({ ...(await benchGrid({ trials: quick ? 2 : 5 })) }), 300_000);
await step("streams", () => benchStreams({ rounds: quick ? 1 : 3, log }), 720_000);
await step("ingest", async (signal) => ({ ...(await benchIngest({ log, signal, ...(quick ? { windows: 3, windowMs: 4000 } : {}) })) }), 300_000);

const cpu1 = machineCpu();
out["machine_cpu_busy_fraction"] = Math.round(((cpu1.busy - cpu0.busy) / Math.max(1, cpu1.total - cpu0.total)) * 1000) / 1000;
out["duration_s"] = Math.round((performance.now() - t0) / 1000);
log(`all done in ${out["duration_s"]} s`);
process.stdout.write(`${JSON.stringify(out)}\n`);
// Anything a failed step left behind must not keep the process alive.
setTimeout(() => process.exit(0), 200).unref();
