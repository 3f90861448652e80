/**
 * Side by side with Janus 1.1.2 (Debian `janus`, streaming plugin pulling the same
 * RTSP recorder), in the same run:
 *
 *   benchJanusCpu   CPU per delivered packet, ours vs Janus with `event_loops = 2` and
 *                   vs Janus as packaged (one loop per handle), at the same viewer levels,
 *                   the three servers measured in rotating order with the same receivers
 *                   process (light viewers; Janus offers, they answer). Ratio of medians.
 *   benchJanusTtff  Janus's first frame in Chromium (keyframe buffer `videobufferkf` on):
 *                   the page drives the Janus HTTP API itself (create, attach, watch → offer,
 *                   answer + trickle, start) and polls getStats for the first decoded frame.
 *
 * Janus cannot gather loopback candidates (libnice skips `lo`), so its ICE runs on the
 * machine's own non-loopback address; those packets still never leave the kernel.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Page } from "puppeteer-core";
import type { Chromium } from "../peers/chromium.ts";
import { startJanus, type Janus } from "../peers/janus.ts";
import { ensureReceivers, measureWindow, type Log, type Rig, type WindowResult } from "./fanout.ts";
import { median, percentile, round } from "./lib/stats.ts";

export interface JanusCpuOptions {
  rig: Rig;
  /** Viewer levels compared. Default [50, 100]. */
  levels?: number[];
  /** Rounds per level (each round measures the three servers once, in rotating order). Default 2. */
  rounds?: number;
  settleMs?: number;
  windowMs?: number;
  lossThreshold?: number;
  /** Stop between windows when aborted (the run's time limit). */
  signal?: AbortSignal;
  log?: Log;
}

export interface JanusCpuLevel {
  viewers: number;
  /** Median CPU per delivered packet over the rounds (mean of the middle two for an even count), µs. */
  ours_us: number;
  janus_el2_us: number;
  janus_packaged_us: number;
  ratio_el2: number;
  ratio_packaged: number;
  /** Median loss over the rounds, per server. */
  ours_loss: number;
  janus_el2_loss: number;
  janus_packaged_loss: number;
  ours_cores: number;
  janus_el2_cores: number;
  janus_packaged_cores: number;
  /** Every round's CPU per delivered packet, µs, in measurement order. */
  rounds_us: Record<Sys, number[]>;
}

export interface JanusCpuResult {
  /** Our CPU per delivered packet ÷ Janus (`event_loops = 2`), at the highest level all three delivered loss-free. */
  janus_cpu_ratio: number | null;
  /** Same against Janus as packaged. */
  janus_cpu_ratio_packaged: number | null;
  janus_cpu_ratio_viewers: number | null;
  janus_cpu_us_per_packet_el2: number | null;
  janus_cpu_us_per_packet_packaged: number | null;
  ours_cpu_us_per_delivered: number | null;
  janus_levels: JanusCpuLevel[];
  janus_version: string;
}

type Sys = "ours" | "janus_el2" | "janus_packaged";

export async function benchJanusCpu(o: JanusCpuOptions): Promise<JanusCpuResult> {
  const log = o.log ?? (() => {});
  const levels = o.levels ?? [50, 100];
  const rounds = o.rounds ?? 2;
  const settleMs = o.settleMs ?? 1500;
  const windowMs = o.windowMs ?? 4000;
  const threshold = o.lossThreshold ?? 0.001;
  const rtspUrl = o.rig.recorder.ready.url;
  const januses: Janus[] = [];
  try {
    const el2 = await startJanus({ rtspUrl, eventLoops: 2 });
    januses.push(el2);
    const packaged = await startJanus({ rtspUrl });
    januses.push(packaged);
    log(`janus: two instances pulling ${rtspUrl} (event_loops = 2: pid ${el2.pid}; as packaged: pid ${packaged.pid})`);
    const servers: Record<Sys, { pid: number; target: Parameters<typeof ensureReceivers>[1] }> = {
      ours: { pid: o.rig.gateway.ready.pid, target: o.rig.whep },
      janus_el2: { pid: el2.pid, target: { kind: "janus", api: el2.api, mountpoint: el2.mountpoint } },
      janus_packaged: { pid: packaged.pid, target: { kind: "janus", api: packaged.api, mountpoint: packaged.mountpoint } },
    };
    const order: Sys[] = ["ours", "janus_el2", "janus_packaged"];
    const out: JanusCpuLevel[] = [];
    for (const n of levels) {
      const samples: Record<Sys, WindowResult[]> = { ours: [], janus_el2: [], janus_packaged: [] };
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < order.length; i++) {
          if (o.signal?.aborted) throw new Error("out of time");
          const sys = order[(i + r) % order.length]!;
          await o.rig.receivers.call("closeAll", undefined, 120_000);
          await ensureReceivers(o.rig.receivers, servers[sys].target, 0, n);
          await sleep(settleMs);
          const w = await measureWindow({ serverPid: servers[sys].pid, receivers: o.rig.receivers }, windowMs);
          samples[sys].push(w);
          log(
            `janus compare ${n} viewers, ${sys}: ${w.cpuUsPerDelivered} µs/delivered packet, ${w.serverCores} cores, ` +
              `${w.deliveredPps} pps, loss ${(w.lossFraction * 100).toFixed(3)} %, receivers ${w.receiverCores} cores`,
          );
        }
      }
      const med = (s: Sys) => median(samples[s].map((w) => w.cpuUsPerDelivered));
      // Median over the rounds: one noisy window (the machine is shared) does not disqualify a level.
      const worst = (s: Sys) => median(samples[s].map((w) => (w.silentViewers > 0 ? 1 : w.lossFraction)));
      const cores = (s: Sys) => median(samples[s].map((w) => w.serverCores));
      out.push({
        viewers: n,
        ours_us: round(med("ours"), 2),
        janus_el2_us: round(med("janus_el2"), 2),
        janus_packaged_us: round(med("janus_packaged"), 2),
        ratio_el2: round(med("ours") / med("janus_el2"), 3),
        ratio_packaged: round(med("ours") / med("janus_packaged"), 3),
        ours_loss: worst("ours"),
        janus_el2_loss: worst("janus_el2"),
        janus_packaged_loss: worst("janus_packaged"),
        ours_cores: cores("ours"),
        janus_el2_cores: cores("janus_el2"),
        janus_packaged_cores: cores("janus_packaged"),
        rounds_us: {
          ours: samples.ours.map((w) => w.cpuUsPerDelivered),
          janus_el2: samples.janus_el2.map((w) => w.cpuUsPerDelivered),
          janus_packaged: samples.janus_packaged.map((w) => w.cpuUsPerDelivered),
        },
      });
    }
    await o.rig.receivers.call("closeAll", undefined, 120_000);
    const ok = [...out].reverse().find((l) => l.ours_loss <= threshold && l.janus_el2_loss <= threshold && l.janus_packaged_loss <= threshold);
    const pick = ok ?? out[out.length - 1];
    return {
      janus_cpu_ratio: pick ? pick.ratio_el2 : null,
      janus_cpu_ratio_packaged: pick ? pick.ratio_packaged : null,
      janus_cpu_ratio_viewers: pick ? pick.viewers : null,
      janus_cpu_us_per_packet_el2: pick ? pick.janus_el2_us : null,
      janus_cpu_us_per_packet_packaged: pick ? pick.janus_packaged_us : null,
      ours_cpu_us_per_delivered: pick ? pick.ours_us : null,
      janus_levels: out,
      janus_version: "1.1.2 (Debian)",
    };
  } finally {
    await o.rig.receivers.call("closeAll", undefined, 120_000).catch(() => {});
    for (const j of januses) await j.close().catch(() => {});
  }
}

export interface JanusTtffOptions {
  /** RTSP URL Janus pulls (the same recorder our ttff variant uses). */
  rtspUrl: string;
  chromium: Chromium;
  trials?: number;
  trialTimeoutMs?: number;
  /** `event_loops`; default 2. */
  eventLoops?: number;
  log?: Log;
}

export interface JanusTtffResult {
  janus_ttff_ms_p50: number;
  janus_ttff_ms_p95: number;
  janus_ttff_ms_min: number;
  janus_ttff_ms_max: number;
  /** watch request → offer received, median ms. */
  janus_ttff_offer_ms_p50: number;
  /** watch request → ICE+DTLS connected, median ms. */
  janus_ttff_connected_ms_p50: number;
  janus_ttff_trials: number;
  janus_ttff_method: string;
}

/**
 * One trial in the page: session + streaming handle first (signalling set-up, like our
 * client's offer and gathering before its POST), then timed from the `watch` request
 * to the first decoded frame: offer by long poll, answer, trickle, `start`.
 */
const JANUS_TRIAL = `async (api, mountpoint, timeoutMs) => {
  let n = 0;
  const post = async (url, body) => {
    const r = await fetch(url, { method: "POST", body: JSON.stringify({ ...body, transaction: "t" + (++n) }) });
    const j = await r.json();
    if (j.janus === "error") throw new Error("janus " + body.janus + ": " + JSON.stringify(j.error));
    return j;
  };
  const s = await post(api, { janus: "create" });
  const surl = api + "/" + s.data.id;
  const h = await post(surl, { janus: "attach", plugin: "janus.plugin.streaming" });
  const hurl = surl + "/" + h.data.id;
  const pc = new RTCPeerConnection();
  let stop = false;
  let gotOffer;
  const offer = new Promise((r) => (gotOffer = r));
  (async () => {
    while (!stop) {
      try {
        const r = await fetch(surl + "?maxev=10&rid=" + Date.now());
        const b = await r.json();
        for (const e of [].concat(b)) if (e.jsep && e.jsep.type === "offer") gotOffer(e.jsep);
      } catch { await new Promise((r) => setTimeout(r, 20)); }
    }
  })();
  pc.onicecandidate = (e) => {
    const c = e.candidate ? { candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } : { completed: true };
    post(hurl, { janus: "trickle", candidate: c }).catch(() => {});
  };
  let connectedAt = 0;
  pc.addEventListener("connectionstatechange", () => { if (pc.connectionState === "connected" && !connectedAt) connectedAt = performance.now(); });
  const deadline = performance.now() + timeoutMs;
  try {
    const t0 = performance.now();
    await post(hurl, { janus: "message", body: { request: "watch", id: mountpoint } });
    const jsep = await Promise.race([offer, new Promise((_, rej) => setTimeout(() => rej(new Error("no offer")), timeoutMs))]);
    const offerAt = performance.now();
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    await post(hurl, { janus: "message", body: { request: "start" }, jsep: { type: "answer", sdp: pc.localDescription.sdp } });
    let first = 0;
    while (!first && performance.now() < deadline) {
      const report = await pc.getStats();
      for (const st of report.values()) {
        if (st.type === "inbound-rtp" && st.kind === "video" && st.framesDecoded >= 1) { first = performance.now(); break; }
      }
      if (!first) await new Promise((r) => setTimeout(r, 5));
    }
    if (!first) throw new Error("no decoded frame within " + timeoutMs + " ms (state " + pc.connectionState + ")");
    return { ttff: first - t0, offer: offerAt - t0, connected: (connectedAt || first) - t0 };
  } finally {
    stop = true;
    pc.close();
    await post(surl, { janus: "destroy" }).catch(() => {});
  }
}`;

export async function benchJanusTtff(o: JanusTtffOptions): Promise<JanusTtffResult> {
  const trials = o.trials ?? 20;
  const timeoutMs = o.trialTimeoutMs ?? 10_000;
  const janus = await startJanus({ rtspUrl: o.rtspUrl, eventLoops: o.eventLoops ?? 2, videoBufferKf: true });
  let page: Page | undefined;
  try {
    page = await o.chromium.newPage();
    // Same origin as the API, so the page's fetch() needs no CORS.
    await page.goto(`${janus.api}/info`);
    const run = async () =>
      (await page!.evaluate(`(${JANUS_TRIAL})(${JSON.stringify(janus.api)}, ${janus.mountpoint}, ${timeoutMs})`)) as {
        ttff: number;
        offer: number;
        connected: number;
      };
    await run(); // warm-up: the keyframe buffer filled, the page's code compiled
    const results: Array<{ ttff: number; offer: number; connected: number }> = [];
    for (let i = 0; i < trials; i++) results.push(await run());
    const ttff = results.map((r) => r.ttff);
    o.log?.(`janus ttff: p50 ${round(percentile(ttff, 50))} ms, p95 ${round(percentile(ttff, 95))} ms`);
    return {
      janus_ttff_ms_p50: round(percentile(ttff, 50)),
      janus_ttff_ms_p95: round(percentile(ttff, 95)),
      janus_ttff_ms_min: round(Math.min(...ttff)),
      janus_ttff_ms_max: round(Math.max(...ttff)),
      janus_ttff_offer_ms_p50: round(percentile(results.map((r) => r.offer), 50)),
      janus_ttff_connected_ms_p50: round(percentile(results.map((r) => r.connected), 50)),
      janus_ttff_trials: results.length,
      janus_ttff_method:
        "Chromium page on the Janus HTTP API origin; session+attach before the clock starts; timed from the watch " +
        "request to the first decoded frame (getStats polled every 5 ms): offer by long poll, answer, trickle, start",
    };
  } finally {
    await page?.close().catch(() => {});
    await janus.close();
  }
}
