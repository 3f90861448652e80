/**
 * Time to first frame: WHEP POST → first decoded video frame, in real Chromium,
 * with the camera already being pulled (warm source, keyframe cache filled).
 *
 * Each trial runs inside the page with the product's own WHEP client (`/whep.js`):
 * `performance.now()` just before the POST (the client's `timings.post`), then
 * `getStats()` polled every 5 ms until `framesDecoded ≥ 1`. Chromium caches a
 * connection's stats report for about 50 ms, so this figure carries up to 50 ms
 * of sampling delay; `ttff_video_ms_*` (the `<video>` element's first frame, via its
 * `resize`/`loadeddata` events) is reported alongside as a finer cross-check.
 *
 *   node test/bench/ttff.ts [--trials 20] [--url http://127.0.0.1:8080] [--camera demo]
 *
 * Without --url it starts its own gateway with the built-in demo recorder.
 * Prints one JSON object as the last line.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import type { Logger } from "../../config/log.ts";
import { silentLogger } from "../../config/log.ts";
import { launchChromium, type Chromium } from "../peers/chromium.ts";

export interface TtffOptions {
  /** Measured trials. Default 20. */
  trials?: number;
  /** Base URL of a running gateway. Default: start one with the demo recorder. */
  url?: string;
  /** Camera id. Default "demo". */
  camera?: string;
  /** Per-trial limit, ms. Default 10000. */
  trialTimeoutMs?: number;
  /** Reuse a browser (else one is launched and closed). */
  chromium?: Chromium;
  log?: Logger;
}

export interface TtffResult {
  /** WHEP POST → first decoded frame (getStats), median over trials, ms. */
  ttff_ms_p50: number;
  /** Same, 95th percentile (nearest rank), ms. */
  ttff_ms_p95: number;
  ttff_ms_min: number;
  ttff_ms_max: number;
  /** WHEP POST → first frame reported by the `<video>` element, ms. */
  ttff_video_ms_p50: number;
  ttff_video_ms_p95: number;
  /** Session start → POST (ICE server discovery, offer, candidate gathering), median ms. */
  ttff_setup_ms_p50: number;
  /** POST → answer applied, median ms. */
  ttff_answer_ms_p50: number;
  /** POST → ICE+DTLS connected, median ms. */
  ttff_connected_ms_p50: number;
  ttff_trials: number;
}

interface Trial {
  ttff: number;
  video: number | null;
  setup: number;
  answer: number;
  connected: number;
  attempts: number;
}

/**
 * One trial in the page: a fresh WhepSession, timed from just before its POST to the
 * first decoded frame. Kept as a string so no test-runner transform touches `import()`.
 */
const TRIAL = `async (endpoint, timeoutMs) => {
  const { WhepSession } = await import("/whep.js");
  const session = new WhepSession(endpoint, {});
  const video = document.createElement("video");
  video.muted = true; video.playsInline = true; video.autoplay = true;
  document.body.append(video);
  let videoAt = 0;
  const onFrame = () => { if (!videoAt && video.videoWidth > 0) videoAt = performance.now(); };
  video.addEventListener("resize", onFrame);
  video.addEventListener("loadeddata", onFrame);
  session.addEventListener("stream", () => { video.srcObject = session.stream; video.play().catch(() => {}); });
  session.start();
  const deadline = performance.now() + timeoutMs;
  let first = 0;
  try {
    while (!first && performance.now() < deadline) {
      const pc = session.pc;
      if (pc && session.timings.post) {
        const report = await pc.getStats();
        for (const s of report.values()) {
          if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded >= 1) { first = performance.now(); break; }
        }
      }
      if (!first) await new Promise((r) => setTimeout(r, 5));
    }
    if (!first) throw new Error("no decoded frame within " + timeoutMs + " ms (state " + session.state + ")");
    const until = performance.now() + 1000;
    while (!videoAt && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
    const t = session.timings;
    return { ttff: first - t.post, video: videoAt ? videoAt - t.post : null, setup: t.post - t.start,
      answer: t.answered - t.post, connected: (t.connected ?? first) - t.post, attempts: session.attempts };
  } finally {
    session.close("bench");
    video.remove();
  }
}`;

/** Keeps the source warm: a session that stays open during the trials. */
const WARM = `async (endpoint, timeoutMs) => {
  const { WhepSession } = await import("/whep.js");
  const session = new WhepSession(endpoint, {});
  window.__warm = session;
  session.start();
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const pc = session.pc;
    if (pc) {
      const report = await pc.getStats();
      for (const s of report.values()) if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded >= 1) return true;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("warm-up session decoded nothing within " + timeoutMs + " ms (state " + session.state + ")");
}`;

export async function benchTtff(opts: TtffOptions = {}): Promise<TtffResult> {
  const trials = opts.trials ?? 20;
  const camera = opts.camera ?? "demo";
  const timeoutMs = opts.trialTimeoutMs ?? 10_000;
  const log = opts.log ?? silentLogger;
  const disposers: Array<() => Promise<void>> = [];
  try {
    let base = opts.url;
    if (!base) {
      const { startGateway } = await import("../../gateway/gateway.ts");
      const { parseConfig } = await import("../../config/load.ts");
      const config = parseConfig({ server: { port: 0 }, auth: { mode: "none" }, log: { level: "warn" }, audit: { enabled: false } }, {});
      const gw = await startGateway({ config, log: silentLogger });
      disposers.push(() => gw.close("bench done"));
      base = gw.url;
    }
    const origin = new URL(base);
    let chromium = opts.chromium;
    if (!chromium) {
      chromium = await launchChromium({ log });
      disposers.push(() => chromium!.close());
    }
    // Any same-origin document will do: the trial imports the client from the gateway.
    // (Not the live-view page itself, whose own tiles would compete with the trials.)
    const page = await chromium.newPage();
    disposers.push(() => page.close());
    await page.setBypassCSP(true); // error pages may carry `default-src 'none'`
    await page.goto(new URL("healthz", origin).href);
    const endpoint = new URL(`whep/${encodeURIComponent(camera)}`, origin).pathname;

    await page.evaluate(`(${WARM})(${JSON.stringify(endpoint)}, 20000)`);
    log.info("ttff: source warm", { camera });
    const results: Trial[] = [];
    for (let i = 0; i < trials; i++) {
      const r = (await page.evaluate(`(${TRIAL})(${JSON.stringify(endpoint)}, ${timeoutMs})`)) as Trial;
      if (r.attempts !== 1) throw new Error(`trial ${i}: the session needed ${r.attempts} attempts`);
      results.push(r);
      log.debug("ttff trial", { i, ...r });
    }
    await page.evaluate(`window.__warm && window.__warm.close("bench done")`);

    const ttff = results.map((r) => r.ttff);
    const video = results.map((r) => r.video).filter((v): v is number => v !== null);
    return {
      ttff_ms_p50: round(percentile(ttff, 50)),
      ttff_ms_p95: round(percentile(ttff, 95)),
      ttff_ms_min: round(Math.min(...ttff)),
      ttff_ms_max: round(Math.max(...ttff)),
      ttff_video_ms_p50: round(percentile(video, 50)),
      ttff_video_ms_p95: round(percentile(video, 95)),
      ttff_setup_ms_p50: round(percentile(results.map((r) => r.setup), 50)),
      ttff_answer_ms_p50: round(percentile(results.map((r) => r.answer), 50)),
      ttff_connected_ms_p50: round(percentile(results.map((r) => r.connected), 50)),
      ttff_trials: results.length,
    };
  } finally {
    for (const dispose of disposers.reverse()) {
      try {
        await dispose();
      } catch {
        // best effort: the remaining resources still get closed
      }
    }
  }
}

/** Nearest-rank percentile; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? Number.NaN;
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: { trials: { type: "string" }, url: { type: "string" }, camera: { type: "string" } },
  });
  const result = await benchTtff({
    ...(values.trials ? { trials: Number(values.trials) } : {}),
    ...(values.url ? { url: values.url } : {}),
    ...(values.camera ? { camera: values.camera } : {}),
  });
  console.log(JSON.stringify(result));
}
