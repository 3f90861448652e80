/**
 * The demo recorder against real RTSP clients: ffprobe/ffmpeg and GStreamer's rtspsrc,
 * over TCP interleaved and UDP, decoding frames across the clip's loop point.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { createLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a child to completion (killed after `timeoutMs`). */
function run(cmd: string, args: string[], timeoutMs = 25_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("error", reject);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Decodes `seconds` of both streams with ffmpeg; returns frames per stream from framemd5 and the error log. */
async function ffmpegDecode(url: string, transport: "tcp" | "udp", seconds: number) {
  const r = await run("ffmpeg", ["-hide_banner", "-nostdin", "-loglevel", "error", "-xerror", "-rtsp_transport", transport, "-i", url, "-t", String(seconds), "-map", "0", "-f", "framemd5", "-"]);
  const lines = r.stdout.split("\n").filter((l) => /^\d+,/.test(l));
  return { code: r.code, video: lines.filter((l) => l.startsWith("0,")).length, audio: lines.filter((l) => l.startsWith("1,")).length, errors: r.stderr.trim() };
}

/** Decodes `frames` video frames (openh264) and `audioBuffers` PCMU buffers with gst-launch. */
function gstDecode(url: string, protocol: "tcp" | "udp", frames: number, audioBuffers: number): Promise<Run> {
  const pipeline =
    `rtspsrc location=${url} protocols=${protocol} latency=100 name=src ` +
    `src. ! application/x-rtp,media=video ! rtph264depay ! h264parse ! openh264dec ! identity eos-after=${frames} ! fakesink ` +
    `src. ! application/x-rtp,media=audio ! rtppcmudepay ! mulawdec ! identity eos-after=${audioBuffers} ! fakesink`;
  // Not -q: gst-launch prints "Got EOS from element" once every sink has its buffers.
  return run("gst-launch-1.0", pipeline.split(" "), 15_000);
}

/**
 * rtspsrc (GStreamer 1.22) sometimes races its own shutdown PAUSE against the TEARDOWN
 * it sends after EOS: it then exits 1 with "Received end-of-file", or hangs until killed,
 * and may never send the TEARDOWN. Seen with the recorder's debug log showing it answered
 * everything and kept the connection open. Only that shutdown error text is accepted.
 */
const RTSPSRC_SHUTDOWN_RACE =
  /^(?:ERROR: from element \/GstPipeline:pipeline0\/GstRTSPSrc:src: Could not write to resource\.\nAdditional debug info:\n\S+gstrtspsrc\.c\(\d+\): gst_rtspsrc_(?:try_send|pause) \(\): \/GstPipeline:pipeline0\/GstRTSPSrc:src:\nCould not send message\. \(Received end-of-file\)\n)*$/;

let rec: DemoRecorder;
let authed: DemoRecorder;
const ended: (() => void)[] = [];
/** Sessions by id as the recorder logged them: transport, and why they ended. */
const sessions = new Map<string, { transport: string; reason?: string }>();

beforeAll(async () => {
  // Session ends are logged; tests wait on them instead of sleeping.
  const log = createLogger({
    level: "debug",
    write: (line) => {
      if (line.includes('"demo session created"')) {
        const e = JSON.parse(line) as { session: string; transport: string };
        sessions.set(e.session, { transport: e.transport });
      } else if (line.includes('"demo session ended"')) {
        const e = JSON.parse(line) as { session: string; reason: string };
        const known = sessions.get(e.session);
        if (known) known.reason = e.reason;
        ended.splice(0).forEach((f) => f());
      }
    },
  });
  rec = await startDemoRecorder({ host: "127.0.0.1", port: 0, log });
  authed = await startDemoRecorder({ host: "127.0.0.1", port: 0, log, auth: { username: "viewer", password: "s3cret" } });
});

afterAll(async () => {
  await rec?.close();
  await authed?.close();
});

describe("demo recorder as a recorder (ONVIF replay) with GStreamer", () => {
  it("rtspsrc in ONVIF mode plays the recording from its start and openh264 decodes it", async () => {
    const before = rec.stats().replays;
    // onvif-mode: PLAY with Range: clock=19000101T000000Z- (before the recording: it starts at its beginning).
    const pipeline =
      `rtspsrc location=${rec.url} onvif-mode=true protocols=tcp latency=100 name=src ` +
      `src. ! application/x-rtp,media=video ! rtponvifparse ! rtph264depay ! h264parse ! openh264dec ! identity eos-after=60 ! fakesink`;
    const r = await run("gst-launch-1.0", pipeline.split(" "), 20_000);
    expect(r.stdout).toContain("Got EOS from element");
    expect(rec.stats().replays).toBeGreaterThan(before);
  });
});

describe("demo recorder with ffprobe/ffmpeg", () => {
  it("ffprobe over TCP sees H.264 constrained baseline 640x360 and PCMU", async () => {
    const r = await run("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", rec.url]);
    expect(r.code).toBe(0);
    const streams = (JSON.parse(r.stdout) as { streams: Record<string, unknown>[] }).streams;
    expect(streams.map((s) => s.codec_name)).toEqual(["h264", "pcm_mulaw"]);
    expect(streams[0]).toMatchObject({ width: 640, height: 360, profile: "Constrained Baseline", r_frame_rate: "25/1" });
    expect(streams[1]).toMatchObject({ sample_rate: "8000", channels: 1 });
  });

  it("ffmpeg decodes across the loop point over TCP and, at the same time, over UDP without errors", async () => {
    const [tcp, udp] = await Promise.all([ffmpegDecode(rec.url, "tcp", 6), ffmpegDecode(rec.url, "udp", 3)]);
    expect(tcp).toMatchObject({ code: 0, errors: "" });
    expect(udp).toMatchObject({ code: 0, errors: "" });
    // 6 s at 25 fps crosses the 5 s loop: timestamps must stay continuous for ffmpeg to take every frame.
    expect(tcp.video).toBeGreaterThanOrEqual(148);
    expect(tcp.audio).toBeGreaterThan(0);
    expect(udp.video).toBeGreaterThanOrEqual(73);
    expect(udp.audio).toBeGreaterThan(0);
  });

  it("ffmpeg authenticates with Digest, and fails with a wrong password", async () => {
    const good = authed.url.replace("rtsp://", "rtsp://viewer:s3cret@");
    const ok = await ffmpegDecode(good, "tcp", 1);
    expect(ok).toMatchObject({ code: 0, errors: "" });
    expect(ok.video).toBeGreaterThanOrEqual(23);
    const bad = await run("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", authed.url.replace("rtsp://", "rtsp://viewer:nope@")]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/401|Unauthorized/);
  });
});

describe("demo recorder with GStreamer rtspsrc", () => {
  it("decodes 75 frames and 125 audio buffers over TCP and over UDP at once, then tears down", async () => {
    const before = rec.stats().packetsSent;
    sessions.clear();
    const [tcp, udp] = await Promise.all([gstDecode(rec.url, "tcp", 75, 125), gstDecode(rec.url, "udp", 75, 125)]);
    // Both reached EOS: every sink had its 75 frames / 125 audio buffers.
    expect(tcp.stdout, tcp.stderr).toContain("Got EOS from element");
    expect(udp.stdout, udp.stderr).toContain("Got EOS from element");
    expect(rec.stats().packetsSent - before).toBeGreaterThan(2 * (75 + 125));
    // Every client that shut down cleanly tore its session down; any other exit is only
    // rtspsrc's own shutdown race (see RTSPSRC_SHUTDOWN_RACE), nothing else.
    for (const [transport, r] of [["tcp", tcp], ["udp", udp]] as const) {
      const session = [...sessions.values()].find((x) => x.transport === transport);
      expect(session, `no ${transport} session`).toBeDefined();
      if (r.code === 0) {
        while (session!.reason === undefined) await new Promise<void>((resolve) => ended.push(resolve));
        expect(session!.reason).toBe("teardown");
      } else expect(r.stderr, r.stderr).toMatch(RTSPSRC_SHUTDOWN_RACE);
    }
  });
});
