/**
 * A 16-camera grid page in real Chromium: time from navigation to the LAST tile's first
 * presented frame, the product's live view as it opens by default, over one peer connection (`grid16_ttff_ms_*`) and,
 * side by side in the same run, the older page with one WHEP peer connection per tile
 * (`?grid=0`, `grid16_whep_ttff_ms_*`). Sixteen cameras, each its own RTSP session of the
 * built-in demo recorder, pulled continuously (warm sources, keyframe caches filled).
 *
 * Each trial opens a fresh page; the figure is the time (navigation start = 0) at which the
 * last of the 16 tiles' video elements presented its first frame, by the compositor's clock
 * (requestVideoFrameCallback's `presentationTime`). Pages alternate between the two clients.
 *
 * Where the one-connection page's time goes (`grid16_phases_ms_p50`, medians, ms after navigation):
 * `scripts` the page's scripts run (DOMContentLoaded); `cameras` the camera list answered; `created`
 * the session's offer made (started with the page, while the list loads); `discovered` its ICE
 * servers known (asked for meanwhile); `gathered` its candidates gathered; `offer` the offer POSTed
 * with the first tiles' binds; `answer` its answer applied; `connected` ICE and DTLS connected;
 * `first` / `last` the first and last tile's first presented frame; `received` when the last of those
 * frames had reached the browser (requestVideoFrameCallback's `receiveTime`: the rest of the way to
 * `last` is the browser's decoding and drawing).
 *
 *   node test/bench/grid.ts [--trials 5]
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway } from "../../gateway/gateway.ts";
import { launchChromium } from "../peers/chromium.ts";
import { percentile } from "./ttff.ts";

const CAMERAS = 16;

export interface GridBenchResult {
  grid16_ttff_ms_p50: number;
  grid16_ttff_ms_p95: number;
  grid16_whep_ttff_ms_p50: number;
  grid16_whep_ttff_ms_p95: number;
  grid16_trials: number;
  grid16_failed: number;
  grid16_phases_ms_p50: Record<string, number>;
}

/** What one page reports: when its last (and first) tile presented its first frame, and the one-connection page's milestones. */
interface PageTiming {
  last: number;
  first: number;
  marks: Record<string, number>;
}

export async function benchGrid(opts: { trials?: number } = {}): Promise<GridBenchResult> {
  const trials = opts.trials ?? 5;
  const recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const cams = Array.from({ length: CAMERAS }, (_, i) => `cam${String(i + 1).padStart(2, "0")}`);
  const config = parseConfig(
    {
      server: { port: 0 },
      auth: { mode: "none" },
      log: { level: "error" },
      demo: { enabled: false },
      cameras: cams.map((id) => ({ id, url: recorder.url, transport: "tcp", alwaysOn: true })),
    },
    {},
  );
  const gateway = await startGateway({ config, log: silentLogger });
  const chromium = await launchChromium();
  const grid: number[] = [];
  const whep: number[] = [];
  const phases: Record<string, number>[] = [];
  let failed = 0;
  try {
    // Every camera pulled and its keyframe cached before the first page.
    const t0 = Date.now();
    while (Date.now() - t0 < 30_000 && !cams.every((c) => gateway.sfu.findSource(c as never)?.stats().hasKeyframe)) await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < trials * 2; i++) {
      const oneConnection = i % 2 === 0;
      const page = await chromium.newPage();
      try {
        // Each video element's first presented frame, by the compositor's clock
        // (requestVideoFrameCallback's presentationTime): a busy main thread delays the callback
        // but not the time it reports. getStats, polled instead until now, took up to 1.5 s per
        // call on a 32-transceiver connection while the page started, which hid when frames came.
        await page.evaluateOnNewDocument(() => {
          const w = window as unknown as { __first: Map<HTMLVideoElement, number>; __received: Map<HTMLVideoElement, number> };
          w.__first = new Map();
          w.__received = new Map();
          const hook = (v: HTMLVideoElement) => {
            if ((v as unknown as { __hooked?: boolean }).__hooked) return;
            (v as unknown as { __hooked?: boolean }).__hooked = true;
            const cb = (_now: number, md: { presentationTime: number; receiveTime?: number }) => {
              if (w.__first.has(v)) return;
              w.__first.set(v, md.presentationTime);
              // When the frame's last packet reached the browser (WebRTC sources only).
              if (typeof md.receiveTime === "number") w.__received.set(v, md.receiveTime);
            };
            v.requestVideoFrameCallback(cb);
          };
          new MutationObserver(() => document.querySelectorAll("video").forEach(hook)).observe(document, { subtree: true, childList: true });
        });
        await page.goto(`${gateway.url}/${oneConnection ? "" : "?grid=0"}`, { waitUntil: "domcontentloaded" });
        const t = (await page.evaluate(
          `(async (n) => {
            const end = performance.now() + 20000;
            while (performance.now() < end) {
              const times = [...window.__first.values()];
              if (times.length >= n) {
                const last = Math.max(...times);
                const first = Math.min(...times);
                const marks = {};
                const received = [...window.__received.values()];
                if (received.length >= n) marks.received = Math.max(...received);
                const fetches = performance.getEntriesByType("resource").filter((e) => e.initiatorType === "fetch");
                const cams = fetches.find((e) => new URL(e.name).pathname.endsWith("/api/cameras"));
                if (cams) marks.cameras = cams.responseEnd;
                const nav = performance.getEntriesByType("navigation")[0];
                if (nav) marks.scripts = nav.domContentLoadedEventEnd;
                const g = window.gatehouse.grid && window.gatehouse.grid();
                if (g) {
                  for (const k of ["created", "discovered", "gathered", "connected"]) if (g.timings[k]) marks[k] = g.timings[k];
                  if (g.timings.offered) marks.offer = g.timings.offered;
                  if (g.timings.answered) marks.answer = g.timings.answered;
                }
                return { last, first, marks };
              }
              await new Promise((r) => setTimeout(r, 10));
            }
            return null;
          })(${CAMERAS})`,
        )) as PageTiming | null;
        if (!t) failed++;
        else {
          (oneConnection ? grid : whep).push(Math.round(t.last));
          if (oneConnection) phases.push({ ...t.marks, first: t.first, last: t.last });
        }
      } finally {
        await page.close();
      }
      // The page's sessions end with it; the next page starts from a quiet gateway.
      const t1 = Date.now();
      while (Date.now() - t1 < 15_000 && (gateway.sfu.viewerList().length > 0 || gateway.sfu.sessionList().length > 0)) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await chromium.close();
    await gateway.close("bench done");
    await recorder.close();
  }
  return {
    grid16_ttff_ms_p50: percentile(grid, 50),
    grid16_ttff_ms_p95: percentile(grid, 95),
    grid16_whep_ttff_ms_p50: percentile(whep, 50),
    grid16_whep_ttff_ms_p95: percentile(whep, 95),
    grid16_trials: trials,
    grid16_failed: failed,
    grid16_phases_ms_p50: Object.fromEntries(
      ["scripts", "cameras", "created", "discovered", "gathered", "offer", "answer", "connected", "first", "received", "last"].map((k) => [k, Math.round(percentile(phases.flatMap((p) => (p[k] === undefined ? [] : [p[k]])), 50))]),
    ),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { trials: { type: "string" } } });
  const r = await benchGrid({ trials: values.trials ? Number(values.trials) : 5 });
  process.stdout.write(`${JSON.stringify(r)}\n`);
  setTimeout(() => process.exit(0), 200).unref();
}
