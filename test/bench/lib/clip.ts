/**
 * The benchmark's camera stream: an H.264 clip busy enough that x264 really spends
 * its bitrate (testsrc2 plus temporal noise), made once with ffmpeg and cached in the
 * temp directory. Constrained baseline, no B-frames, fixed GOP, like a camera.
 */
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

export interface ClipSpec {
  width: number;
  height: number;
  fps: number;
  /** Keyframe interval, frames. */
  gop: number;
  /** Target bitrate, kbit/s. */
  kbps: number;
  seconds: number;
}

export const DEFAULT_CLIP: ClipSpec = { width: 1280, height: 720, fps: 25, gop: 25, kbps: 2000, seconds: 10 };

/** Path of the clip for `spec`, generated on first use. */
export async function benchClip(spec: ClipSpec = DEFAULT_CLIP): Promise<{ path: string; bytes: number; kbps: number }> {
  const dir = path.join(os.tmpdir(), "gatehouse-bench-clips");
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, `busy-${spec.width}x${spec.height}-${spec.fps}fps-g${spec.gop}-${spec.kbps}k-${spec.seconds}s.h264`);
  const have = await fs.stat(file).catch(() => undefined);
  if (!have || have.size === 0) {
    const tmp = `${file}.${process.pid}.tmp`;
    await promisify(execFile)("ffmpeg", [
      "-hide_banner", "-loglevel", "error", "-y",
      "-f", "lavfi", "-i", `testsrc2=size=${spec.width}x${spec.height}:rate=${spec.fps}`,
      // Temporal noise: every frame differs everywhere, so the encoder reaches its bitrate.
      "-vf", "noise=alls=12:allf=t+u",
      "-t", String(spec.seconds),
      "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "baseline", "-bf", "0",
      "-g", String(spec.gop), "-keyint_min", String(spec.gop), "-sc_threshold", "0",
      "-b:v", `${spec.kbps}k`, "-maxrate", `${spec.kbps}k`, "-bufsize", `${Math.round(spec.kbps / 2)}k`,
      "-f", "h264", tmp,
    ]);
    await fs.rename(tmp, file);
  }
  const bytes = (await fs.stat(file)).size;
  return { path: file, bytes, kbps: Math.round((bytes * 8) / spec.seconds / 1000) };
}
