/**
 * Recorder playback in real Chromium against GStreamer's ONVIF replay server (whose frames
 * show their recorded time as pixel blocks, test/peers/gst-onvif.ts):
 *
 * - `playback_seek_ms_p50` / `_p95`: seek request (just before the control POST, in the
 *   page) → first frame on screen at the new position (canvas polled every 5 ms), while
 *   playing at 1×.
 * - `playback_frame_time_error_ms`: median |recorded time of that first frame − time asked|.
 * - `playback_speed_error_4x` / `_16x`: |recorded-time advance ÷ wall time ÷ rate − 1| over 3 s.
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
    const speedError = async (rate: number): Promise<number> => {
      await page.evaluate(`window.pb.speed(${rate})`);
      await new Promise((r) => setTimeout(r, 1500));
      const a = (await page.evaluate(`[window.readIdx(), performance.now()]`)) as [number, number];
      await new Promise((r) => setTimeout(r, 3000));
      const b = (await page.evaluate(`[window.readIdx(), performance.now()]`)) as [number, number];
      const measured = ((b[0] - a[0]) * frameMs) / (b[1] - a[1]);
      return Math.abs(measured / rate - 1);
    };
    await page.evaluate(`window.pb.seek(${base + 20 * 60_000})`);
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

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { trials: { type: "string" } } });
  const r = await benchPlayback({ trials: values.trials ? Number(values.trials) : 20 });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
