/**
 * Recorder playback in real Chromium against GStreamer's ONVIF replay server (whose frames
 * show their recorded time as pixel blocks, test/peers/gst-onvif.ts):
 *
 * - `playback_seek_ms_p50` / `_p95`: seek request (just before the control POST, in the
 *   page) → first frame on screen at the new position (canvas polled every 5 ms), while
 *   playing at 1×.
 * - `playback_frame_time_error_ms`: median |recorded time of that first frame − time asked|.
 * - `playback_speed_error_4x` / `_16x`: |measured rate ÷ rate − 1|, the measured rate being the
 *   least-squares slope of the recorded time of the frame on screen (its frame code, read in the
 *   page every 20 ms) over the page's clock; median of three 2.5 s windows.
 *
 *   node test/bench/playback.ts [--trials 20]
 *
 * Prints one JSON object as the last line.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../config/load.ts";
import { silentLogger, type Logger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";
import { launchChromium } from "../peers/chromium.ts";
import { READ_FRAME_INDEX, startOnvifRecorder } from "../peers/gst-onvif.ts";
import { median, percentile, round } from "./lib/stats.ts";

export interface PlaybackBenchResult {
  playback_seek_ms_p50: number;
  playback_seek_ms_p95: number;
  playback_frame_time_error_ms: number;
  playback_speed_error_4x: number;
  playback_speed_error_16x: number;
  playback_seek_trials: number;
}

const HOUR = 3_600_000;

export async function benchPlayback(opts: { trials?: number; quick?: boolean; log?: Logger } = {}): Promise<PlaybackBenchResult> {
  const trials = opts.trials ?? (opts.quick ? 5 : 20);
  const log = opts.log ?? silentLogger;
  const base = Math.floor(Date.now() / 1000) * 1000 - 2 * HOUR;
  await using rec = await startOnvifRecorder({ baseMs: base, durationS: 7200 });
  const config = parseConfig(
    { server: { port: 0 }, auth: { mode: "none" }, log: { level: "warn" }, cameras: [{ id: "rec", url: rec.url, playback: {} }] },
    { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR },
  );
  const gw = await startGateway({ config, log: silentLogger });
  const chromium = await launchChromium();
  try {
    const page = await chromium.newPage(`${gw.url}/playback-client.js`);
    await page.evaluate(`(async () => {
      document.body.innerHTML = '<video id="v" autoplay muted playsinline></video>';
      (await navigator.mediaDevices.getUserMedia({ video: true })).getTracks().forEach((t) => t.stop());
      window.PB = await import("/playback-client.js");
      window.readIdx = () => ${READ_FRAME_INDEX("#v")};
      window.pb = new PB.PlaybackClient({ camera: "rec", start: ${base + 5 * 60_000}, video: document.getElementById("v") });
      await window.pb.open();
    })()`);
    await page.waitForFunction(`window.readIdx() !== null`, { timeout: 15_000, polling: 50 });
    const frameMs = 1000 / rec.fps;
    const seekMs: number[] = [];
    const errors: number[] = [];
    for (let i = 0; i < trials + 1; i++) {
      // Targets spread over the recording, on no particular frame boundary.
      const target = base + 10 * 60_000 + Math.floor(((i * 7919) % 100) * 60_000) + ((i * 13) % 40);
      const r = (await page.evaluate(`(async () => {
        const t0 = performance.now();
        await window.pb.seek(${target});
        for (;;) {
          const idx = window.readIdx();
          if (idx !== null) {
            const t = ${base} + idx * ${frameMs};
            if (t >= ${target} - 5000 && t <= ${target} + 5000) return { ms: performance.now() - t0, t };
          }
          if (performance.now() - t0 > 10000) return null;
          await new Promise((r) => setTimeout(r, 5));
        }
      })()`)) as { ms: number; t: number } | null;
      if (!r) throw new Error(`seek ${i}: no frame at the new position within 10 s`);
      if (i === 0) continue; // warm-up
      seekMs.push(r.ms);
      errors.push(Math.abs(r.t - target));
      log.debug("seek", { ms: round(r.ms), errorMs: r.t - target });
    }
    /**
     * The speed error at `rate`, from frame times read in the page: the page reads the frame code on
     * screen every 20 ms with its own clock (no round trip to the bench in between) for `windowMs`,
     * and the measured rate is the least-squares slope of recorded time over page time. Median of
     * three windows.
     */
    const speedError = async (rate: number, windowMs = 2500): Promise<number> => {
      await page.evaluate(`window.pb.speed(${rate})`);
      // The new stream (a speed change is a new PLAY) has played half a second on screen.
      const advanced = await page.evaluate(`(async () => {
        const t0 = performance.now();
        let i0 = null;
        while (performance.now() - t0 < 15000) {
          const i = window.readIdx();
          if (i !== null && i0 === null) i0 = i;
          if (i !== null && i > i0 + ${(rate * 500) / frameMs}) return true;
          await new Promise((r) => setTimeout(r, 20));
        }
        return false;
      })()`);
      if (!advanced) throw new Error(`speed ${rate}: the picture did not advance within 15 s`);
      const errs: number[] = [];
      for (let w = 0; w < 3; w++) {
        const points = (await page.evaluate(`(async () => {
          const points = [];
          const t0 = performance.now();
          while (performance.now() - t0 < ${windowMs}) {
            const idx = window.readIdx();
            if (idx !== null) points.push([performance.now(), idx * ${frameMs}]);
            await new Promise((r) => setTimeout(r, 20));
          }
          return points;
        })()`)) as [number, number][];
        if (points.length < windowMs / 100) throw new Error(`speed ${rate}: only ${points.length} frames read in ${windowMs} ms`);
        errs.push(Math.abs(slope(points) / rate - 1));
      }
      return median(errs);
    };
    // Wait for the picture at the new position: the last seek above may have been later in the
    // recording, and a speed measured from a frame of before the seek never "advances" past it.
    const speedFrom = base + 20 * 60_000;
    await page.evaluate(`window.pb.seek(${speedFrom})`);
    await page.waitForFunction(`(() => { const i = window.readIdx(); return i !== null && Math.abs(${base} + i * ${frameMs} - ${speedFrom}) < 5000; })()`, { timeout: 15_000, polling: 20 });
    const e4 = await speedError(4);
    const e16 = await speedError(16);
    await page.evaluate(`window.pb.close()`);
    return {
      playback_seek_ms_p50: round(median(seekMs)),
      playback_seek_ms_p95: round(percentile(seekMs, 95)),
      playback_frame_time_error_ms: round(median(errors)),
      playback_speed_error_4x: round(e4, 3),
      playback_speed_error_16x: round(e16, 3),
      playback_seek_trials: seekMs.length,
    };
  } finally {
    await chromium.close();
    await gw.close("bench done");
  }
}

/** Least-squares slope of y over x. */
function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return num / den;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { trials: { type: "string" } } });
  const r = await benchPlayback({ trials: values.trials ? Number(values.trials) : 20 });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
