/**
 * A recorder that is not ours, for playback tests: GStreamer's ONVIF RTSP server with
 * replay support (test/peers/gst-onvif-recorder.py) serving a synthetic recording whose
 * frames show their own recorded time as pixel blocks.
 *
 *   await using rec = await startOnvifRecorder({ baseMs, durationS: 7200, gaps: [[a, b]] });
 *   rec.url          // rtsp://127.0.0.1:<port>/recording
 *   decodeFrameIndex(lumaOfBlocks) → frame index → baseMs + index * 40
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

const SCRIPT = new URL("./gst-onvif-recorder.py", import.meta.url).pathname;

/** Bits of the frame index drawn along the top of each frame; blocks of BLOCK_W × BAND_H pixels. */
export const FRAME_BITS = 20;
export const BLOCK_W = 16;
export const BAND_H = 32;

export interface OnvifRecorderOptions {
  /** Start of the recording, Unix ms. */
  baseMs: number;
  /** Length of the recording, s. Default 7200. */
  durationS?: number;
  fps?: number;
  gop?: number;
  /** Stretches with no recording, [from, to) Unix ms. */
  gaps?: ReadonlyArray<readonly [number, number]>;
  readyTimeoutMs?: number;
}

export interface OnvifRecorderEvent {
  event: string;
  method?: string;
  range?: string | null;
  scale?: string | null;
  url?: string;
  port?: number;
}

export interface OnvifRecorder extends AsyncDisposable {
  readonly url: string;
  readonly fps: number;
  readonly baseMs: number;
  readonly events: readonly OnvifRecorderEvent[];
  /** Recorded time of frame `index`, Unix ms. */
  timeOf(index: number): number;
  close(): Promise<void>;
}

export async function startOnvifRecorder(o: OnvifRecorderOptions): Promise<OnvifRecorder> {
  const fps = o.fps ?? 25;
  const args = [SCRIPT, "--base-ms", String(Math.round(o.baseMs)), "--duration-s", String(o.durationS ?? 7200), "--fps", String(fps), "--gop", String(o.gop ?? 25)];
  for (const [a, b] of o.gaps ?? []) args.push("--gap", `${Math.round(a)}:${Math.round(b)}`);
  const child: ChildProcess = spawn("/usr/bin/python3", args, { stdio: ["pipe", "pipe", "pipe"] });
  const events: OnvifRecorderEvent[] = [];
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const ready = new Promise<OnvifRecorderEvent>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ONVIF recorder not ready: ${stderr}`)), o.readyTimeoutMs ?? 15_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let e: OnvifRecorderEvent;
      try {
        e = JSON.parse(line) as OnvifRecorderEvent;
      } catch {
        return;
      }
      events.push(e);
      if (e.event === "ready") {
        clearTimeout(timer);
        resolve(e);
      } else if (e.event === "error") {
        clearTimeout(timer);
        reject(new Error(`ONVIF recorder: ${JSON.stringify(e)}`));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`ONVIF recorder exited (${code}): ${stderr}`));
    });
  });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    child.stdin?.end();
    child.kill("SIGTERM");
    await exited;
  };
  try {
    const r = await ready;
    return { url: r.url!, fps, baseMs: o.baseMs, events, timeOf: (i) => o.baseMs + (i * 1000) / fps, close, [Symbol.asyncDispose]: close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The frame index from the mean luma of each block along the top (most significant bit first). */
export function decodeFrameIndex(blockLuma: readonly number[]): number {
  let i = 0;
  for (const l of blockLuma.slice(0, FRAME_BITS)) i = i * 2 + (l > 128 ? 1 : 0);
  return i;
}

/**
 * In-page code (a string, for page.evaluate) that reads the frame index drawn on `selector`'s
 * current frame: samples the middle of each block; null when no recorder frame is painted.
 */
export const READ_FRAME_INDEX = (selector: string) => `(() => {
  const v = document.querySelector(${JSON.stringify(selector)});
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas"); c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext("2d", { willReadFrequently: true }); x.drawImage(v, 0, 0);
  // A recorder's frame is mid-gray below the band; anything else (no frame painted yet, a
  // black picture) is no frame, not frame 0.
  const g = x.getImageData(0, ${BAND_H} + 8, c.width, 8).data;
  let gsum = 0; for (let i = 0; i < g.length; i += 4) gsum += g[i];
  const gray = gsum / (g.length / 4);
  if (gray < 60 || gray > 130) return null;
  let idx = 0;
  for (let b = 0; b < ${FRAME_BITS}; b++) {
    const d = x.getImageData(b * ${BLOCK_W} + 4, 8, ${BLOCK_W} - 8, ${BAND_H} - 16).data;
    let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i];
    idx = idx * 2 + (sum / (d.length / 4) > 128 ? 1 : 0);
  }
  return idx;
})()`;
