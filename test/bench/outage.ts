/**
 * A recorder that dies and comes back, as a viewer sees it in Chromium (the product's
 * own page, watching one camera):
 *
 * - `outage_detect_ms`: the recorder process SIGKILLed → the tile's badge leaves LIVE.
 * - `recover_ms`: the restarted recorder listening again on the same port → the first
 *   new frame decoded by the same page, on the same WHEP session.
 *
 * Each cycle: LIVE with frames advancing; kill; stay down `downMs` (the gateway has
 * failed at least one reconnect by then, as in a real outage); restart; first new frame.
 * The gateway runs in its own process with the default reconnect settings (someone
 * watches, so `rtsp.watchedRetryMaxMs` applies). Times are taken in the page with
 * `Date.now()` (same clock as the harness) from a badge observer and a 10 ms getStats
 * poll; Chromium caches stats for up to ~50 ms, so `recover_ms` may carry that much.
 */
import { fileURLToPath } from "node:url";
import type { Page } from "puppeteer-core";
import { launchChromium, type Chromium } from "../peers/chromium.ts";
import { startGstRtspServer, type GstRtspServer } from "../peers/gst.ts";
import { forkChild, type Child } from "./lib/child.ts";
import { median, percentile, round } from "./lib/stats.ts";

export interface OutageOptions {
  /** Kill/restart cycles. Default 7. */
  cycles?: number;
  /** How long the recorder stays down, ms. Default 1500. */
  downMs?: number;
  chromium?: Chromium;
  log?: (msg: string) => void;
  signal?: AbortSignal;
}

export interface OutageResult {
  outage_detect_ms_p50: number;
  outage_detect_ms_max: number;
  recover_ms_p50: number;
  recover_ms_p95: number;
  recover_ms_max: number;
  /** Frames decoded by the page while the recorder was down (must be 0 in every cycle). */
  outage_frames_decoded_max: number;
  outage_cycles: number;
  outage_recorder: string;
}

const CAMERA = "outage";
const SEL = `[data-camera="${CAMERA}"]`;

/** In-page probes: the time the badge last changed to each label, and frames decoded over time. */
const INSTALL = `(() => {
  const w = window;
  w.__outage = { labelAt: {}, label: "", frames: 0, framesAt: 0 };
  const badge = () => document.querySelector(${JSON.stringify(`${SEL} .badge-text`)});
  const note = () => {
    const t = badge()?.textContent ?? "";
    if (t !== w.__outage.label) { w.__outage.label = t; w.__outage.labelAt[t] = Date.now(); }
  };
  new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
  note();
  setInterval(async () => {
    const pc = w.gatehouse?.sessions.get(${JSON.stringify(CAMERA)})?.pc;
    if (!pc) return;
    let frames = 0;
    (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames = Math.max(frames, s.framesDecoded ?? 0); });
    if (frames !== w.__outage.frames) { w.__outage.frames = frames; w.__outage.framesAt = Date.now(); }
  }, 10);
})()`;

interface Probe {
  labelAt: Record<string, number>;
  label: string;
  frames: number;
  framesAt: number;
}

const probe = (page: Page) => page.evaluate(() => (window as unknown as { __outage: Probe }).__outage);

export async function benchOutage(o: OutageOptions = {}): Promise<OutageResult> {
  const log = o.log ?? (() => {});
  const cycles = o.cycles ?? 7;
  const downMs = o.downMs ?? 1500;
  const ownChromium = !o.chromium;
  const chromium = o.chromium ?? (await launchChromium());
  let recorder: GstRtspServer | undefined;
  let gateway: Child<{ url: string; pid: number }> | undefined;
  let page: Page | undefined;
  try {
    recorder = await startGstRtspServer({ width: 640, height: 360, fps: 25, gop: 25, bitrate: 800, noAudio: true });
    const base = 43000 + 1000 * Math.floor(Math.random() * 4);
    const config = {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "none" },
      log: { level: "silent" },
      demo: { enabled: false },
      media: { icePortRange: [base, base + 999] },
      cameras: [{ id: CAMERA, url: recorder.url }],
    };
    gateway = await forkChild<{ url: string; pid: number }>(fileURLToPath(new URL("./procs/gateway.ts", import.meta.url)), [
      "--config",
      JSON.stringify(config),
    ]);
    page = await chromium.newPage(`${gateway.ready.url}/#camera=${CAMERA}`);
    await page.evaluate(INSTALL);

    const detect: number[] = [];
    const recover: number[] = [];
    const framesDuringOutage: number[] = [];
    for (let i = 0; i < cycles; i++) {
      if (o.signal?.aborted) throw new Error("aborted");
      // LIVE, with frames advancing.
      await page.waitForFunction(
        () => {
          const p = (window as unknown as { __outage: Probe }).__outage;
          return p.label === "Live" && Date.now() - p.framesAt < 200;
        },
        { polling: 20, timeout: 20_000 },
      );
      const killedAt = Date.now();
      await recorder.kill("SIGKILL");
      await page.waitForFunction(() => (window as unknown as { __outage: Probe }).__outage.label !== "Live", { polling: 10, timeout: 10_000 });
      const down = await probe(page);
      const leftLiveAt = Math.max(...Object.entries(down.labelAt).filter(([l]) => l !== "Live").map(([, t]) => t));
      detect.push(leftLiveAt - killedAt);
      const framesAtDown = down.frames;
      await new Promise((r) => setTimeout(r, downMs));
      await recorder.restart();
      const listeningAt = Date.now();
      const framesAtRestart = (await probe(page)).frames;
      framesDuringOutage.push(framesAtRestart - framesAtDown);
      const h = await page.waitForFunction(
        (n) => {
          const p = (window as unknown as { __outage: Probe }).__outage;
          return p.frames > n ? p.framesAt : false;
        },
        { polling: 10, timeout: 20_000 },
        framesAtRestart,
      );
      recover.push(((await h.jsonValue()) as number) - listeningAt);
      log(`outage cycle ${i + 1}/${cycles}: detected ${detect.at(-1)} ms, recovered ${recover.at(-1)} ms`);
    }
    return {
      outage_detect_ms_p50: round(median(detect)),
      outage_detect_ms_max: Math.max(...detect),
      recover_ms_p50: round(median(recover)),
      recover_ms_p95: percentile(recover, 95),
      recover_ms_max: Math.max(...recover),
      outage_frames_decoded_max: Math.max(...framesDuringOutage),
      outage_cycles: cycles,
      outage_recorder: `GStreamer RTSP server (test/peers/gst.ts) 640x360 25 fps GOP 25, SIGKILLed and restarted on the same port after ${downMs} ms; gateway defaults (transport auto, watchedRetryMaxMs 250)`,
    };
  } finally {
    await page?.close().catch(() => {});
    await gateway?.close();
    await recorder?.close();
    if (ownChromium) await chromium.close();
  }
}
