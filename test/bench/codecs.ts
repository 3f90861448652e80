/**
 * The cost of converting codecs with ffmpeg (gateway/transcode/), per camera:
 *   aac_opus_cpu_pct_per_camera      — one AAC-LC camera (16 kHz mono, RTP MPEG4-GENERIC) to Opus
 *   aac_opus_delay_ms                — the delay its sound (and picture) is paced at: two AAC frames and an Opus frame plus the margin,
 *                                      raised when sound keeps going out late
 *   aac_opus_late_pct                — the share of its sound dropped for leaving more than 80 ms after its time
 *   h265_transcode_cores_per_1080p   — one 1080p 25 fps H.265 camera to H.264 (libx264 veryfast, 4 Mbit/s),
 *                                      in cores for 25 output frames a second (CPU per output frame × 25:
 *                                      on a saturated machine ffmpeg falls behind; `h265_transcode_fps_out`
 *                                      and `h265_transcode_cores_measured` give what was seen)
 * CPU is the ffmpeg child's own (utime + stime from /proc), over a measured window after a warm-up,
 * median of the trials. The camera is simulated in process: clips made once with ffmpeg are
 * packetized to RTP (RFC 3640, RFC 7798) and paced in real time into the same converter classes the
 * gateway uses, so the recorder's own encoding cost stays out of the figure.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { silentLogger } from "../../config/log.ts";
import { cameraTranscode } from "../../config/sections/transcode.ts";
import { parseAacFmtp } from "../../gateway/transcode/aac.ts";
import { AacToOpus } from "../../gateway/transcode/aac-opus.ts";
import { H265ToH264 } from "../../gateway/transcode/h265-h264.ts";
import { h265Type } from "../../sfu/h265/nal.ts";
import { packetizeH265 } from "../../sfu/h265/packetizer.ts";
import { writeRtpHeader } from "../../sfu/rtp/packet.ts";
import { cpuSeconds } from "./lib/proc.ts";

const SUPERVISOR = { restartMinMs: 500, restartMaxMs: 5000, stableMs: 10_000, stderrLines: 20 };

export interface CodecsBenchOptions {
  quick?: boolean;
  log?: (msg: string) => void;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1]! : Number.NaN;
}

function rtp(pt: number, seq: number, ts: number, marker: boolean, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(12 + payload.length);
  writeRtpHeader(b, { marker, payloadType: pt, sequenceNumber: seq, timestamp: ts, ssrc: 0x1234 });
  payload.copy(b, 12);
  return b;
}

/** ADTS frames of a file → raw AUs. */
function adtsFrames(file: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p + 7 <= file.length) {
    const len = ((file[p + 3]! & 3) << 11) | (file[p + 4]! << 3) | (file[p + 5]! >> 5);
    const hdr = file[p + 1]! & 1 ? 7 : 9;
    if (len < hdr || p + len > file.length) break;
    out.push(file.subarray(p + hdr, p + len));
    p += len;
  }
  return out;
}

/** Annex-B → access units, split at access unit delimiters (the clip is made with aud=1). */
function annexBAccessUnits(file: Buffer): Buffer[][] {
  const nals: Buffer[] = [];
  let start = -1;
  for (let i = 0; i + 3 <= file.length; i++) {
    if (file[i] === 0 && file[i + 1] === 0 && file[i + 2] === 1) {
      if (start >= 0) nals.push(file.subarray(start, i > 0 && file[i - 1] === 0 ? i - 1 : i));
      start = i + 3;
      i += 2;
    }
  }
  if (start >= 0) nals.push(file.subarray(start));
  const aus: Buffer[][] = [];
  for (const n of nals) {
    if (n.length < 2) continue;
    if (h265Type(n[0]!) === 35 || aus.length === 0) aus.push([]);
    if (h265Type(n[0]!) !== 35) aus.at(-1)!.push(n);
  }
  return aus.filter((a) => a.length > 0);
}

/** Feeds `packetsOf(i)` every `periodMs` (catching up after stalls) until stopped. */
function pace(periodMs: number, tick: (i: number) => void): () => void {
  const t0 = performance.now();
  let i = 0;
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - t0) / periodMs);
    while (i <= due) tick(i++);
  }, Math.max(1, Math.floor(periodMs / 2)));
  return () => clearInterval(timer);
}

async function measure(pid: () => number | undefined, warmupMs: number, windowMs: number): Promise<{ cpu: number; wall: number }> {
  await new Promise((r) => setTimeout(r, warmupMs));
  const p = pid();
  if (p === undefined) throw new Error("ffmpeg is not running");
  const c0 = cpuSeconds(p);
  const w0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  return { cpu: cpuSeconds(p) - c0, wall: (performance.now() - w0) / 1000 };
}

export async function benchCodecs(o: CodecsBenchOptions = {}): Promise<Record<string, unknown>> {
  const log = o.log ?? (() => {});
  const trials = o.quick ? 1 : 3;
  const windowMs = o.quick ? 4000 : 10_000;
  const dir = mkdtempSync(path.join(os.tmpdir(), "gatehouse-codecs-bench-"));
  try {
    log("codecs: making clips (AAC 16 kHz mono, H.265 1080p25)");
    const aacFile = path.join(dir, "a.aac");
    execFileSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", "10", "-c:a", "aac", "-b:a", "32k", "-f", "adts", aacFile]);
    const hevcFile = path.join(dir, "v.h265");
    execFileSync("ffmpeg", [
      "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25", "-t", o.quick ? "2" : "4",
      "-c:v", "libx265", "-preset", "ultrafast", "-b:v", "4M", "-x265-params", "aud=1:keyint=50:bframes=0:repeat-headers=1:log-level=error", "-f", "hevc", hevcFile,
    ]);

    // ---- AAC → Opus ----
    const aus = adtsFrames(readFileSync(aacFile));
    const stream = parseAacFmtp("MPEG4-GENERIC", 16000, "streamtype=5;mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;indexdeltalength=3");
    if (typeof stream === "string") throw new Error(stream);
    const aacPct: number[] = [];
    const aacDelay: number[] = [];
    const aacLate: number[] = [];
    let opusOut = 0;
    for (let t = 0; t < trials; t++) {
      const conv = new AacToOpus({ stream, ffmpeg: "ffmpeg", opusBitrateKbps: 48, out: () => void opusOut++, log: silentLogger, supervisor: SUPERVISOR, maxPendingBytes: 4 << 20, delayMs: 400, delayMarginMs: 40 });
      conv.setWanted(true);
      const stop = pace(64, (i) => {
        const au = aus[i % aus.length]!;
        const hdr = Buffer.from([0, 16, (au.length >> 5) & 0xff, (au.length << 3) & 0xff]);
        conv.push(rtp(97, i & 0xffff, (i * 1024) >>> 0, true, Buffer.concat([hdr, au])));
      });
      try {
        const m = await measure(() => conv.status().pid, 2000, windowMs);
        aacPct.push((100 * m.cpu) / m.wall);
        aacDelay.push(conv.paceDelayMs());
        aacLate.push((100 * conv.counters.late) / Math.max(1, conv.counters.packetsOut));
        log(`codecs: AAC→Opus trial ${t + 1}: ${((100 * m.cpu) / m.wall).toFixed(2)} % of a core`);
      } finally {
        stop();
        await conv.close();
      }
    }

    // ---- H.265 → H.264, 1080p25 ----
    const frames = annexBAccessUnits(readFileSync(hevcFile));
    const hevcCores: number[] = [];
    const hevcRaw: number[] = [];
    const outFps: number[] = [];
    for (let t = 0; t < trials; t++) {
      let outFrames = 0;
      let lastTs = -1;
      const conv = new H265ToH264({
        fmtp: "",
        ffmpeg: "ffmpeg",
        settings: cameraTranscode.parse({ h265: "h264", bitrateKbps: 4000 }),
        out: (p) => {
          const ts = p.readUInt32BE(4);
          if (ts !== lastTs) {
            outFrames++;
            lastTs = ts;
          }
        },
        log: silentLogger,
        supervisor: SUPERVISOR,
        maxPendingBytes: 64 << 20,
      });
      conv.setWanted(true);
      let seq = 0;
      const stop = pace(40, (i) => {
        const payloads = packetizeH265(frames[i % frames.length]!, 1200);
        payloads.forEach((p, k) => conv.push(rtp(96, seq++ & 0xffff, (i * 3600) >>> 0, k === payloads.length - 1, p)));
      });
      try {
        const f0 = () => outFrames;
        await new Promise((r) => setTimeout(r, 3000));
        const before = f0();
        const m = await measure(() => conv.status().pid, 0, windowMs);
        const fps = (f0() - before) / m.wall;
        // On a saturated machine ffmpeg falls behind 25 fps; its CPU per output frame stays the
        // measure of cost, so the figure is the CPU that 25 frames a second take.
        hevcCores.push(fps > 0 ? ((m.cpu / m.wall) * 25) / fps : Number.NaN);
        hevcRaw.push(m.cpu / m.wall);
        outFps.push(fps);
        log(`codecs: H.265→H.264 1080p trial ${t + 1}: ${(m.cpu / m.wall).toFixed(2)} cores, ${((f0() - before) / m.wall).toFixed(1)} frames/s out`);
      } finally {
        stop();
        await conv.close();
      }
    }
    return {
      aac_opus_cpu_pct_per_camera: Math.round(median(aacPct) * 100) / 100,
      aac_opus_trials: aacPct.map((x) => Math.round(x * 100) / 100),
      aac_opus_delay_ms: Math.round(median(aacDelay)),
      aac_opus_late_pct: Number(median(aacLate).toFixed(2)),
      aac_opus_packets_out: opusOut,
      h265_transcode_cores_per_1080p: Math.round(median(hevcCores) * 100) / 100,
      h265_transcode_trials: hevcCores.map((x) => Math.round(x * 100) / 100),
      h265_transcode_cores_measured: hevcRaw.map((x) => Math.round(x * 100) / 100),
      h265_transcode_fps_out: Math.round(median(outFps) * 10) / 10,
      codecs_method: "ffmpeg child CPU from /proc over a window after warm-up; simulated 16 kHz mono AAC-LC camera and 1080p25 H.265 camera (4 Mbit/s) paced in real time; libx264 veryfast 4 Mbit/s out",
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
