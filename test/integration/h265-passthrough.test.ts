/**
 * H.265 passthrough (RFC 7798, on by default) against a real GStreamer H.265 recorder: a WebRTC peer that
 * offers H.265 is answered H.265 and receives the camera's own NAL units (compared byte for
 * byte with the same stream pulled by ffmpeg beside the gateway), parameter sets before its
 * first IRAP picture, every packet within the path MTU; a peer that offers no H.265 keeps
 * today's fallback (the camera's H.264 substream). A stream change by PATCH takes the peer's
 * H.265 into account: back to `main` is the H.265 main stream for a peer that receives H.265,
 * the H.264 substream for one that does not. A peer without H.265 that comes before the gateway
 * has read an H.265-only camera's stream description is refused in words all the same.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";
import { DEFAULT_MAX_PAYLOAD } from "../../sfu/h264/packetizer.ts";
import { H265Depacketizer } from "../../sfu/h265/depacketizer.ts";
import { H265Type, h265Type, isIrap, isParameterSet } from "../../sfu/h265/nal.ts";
import { startGstRtspServer } from "../peers/gst.ts";
import { WeriftViewer, WhepHttpError, h265VideoCodecs, type ReceivedPacket } from "../peers/werift-viewer.ts";

const hash = (b: Buffer): string => createHash("sha1").update(b).digest("hex");

/** Splits an Annex-B byte stream into NAL units (start codes 00 00 01 / 00 00 00 01); the last may be incomplete. */
function annexBNals(buf: Buffer): Buffer[] {
  const starts: number[] = [];
  for (let i = 0; i + 2 < buf.length; i++) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1) {
      starts.push(i + 3);
      i += 2;
    }
  }
  const out: Buffer[] = [];
  for (let k = 0; k + 1 < starts.length; k++) {
    let end = starts[k + 1]! - 3;
    while (end > starts[k]! && buf[end - 1] === 0) end--; // a four-byte start code's leading zero
    out.push(buf.subarray(starts[k]!, end));
  }
  return out;
}

/**
 * The camera's stream as ffmpeg receives it over RTSP (its own session), in Annex B. GStreamer's
 * RTSP server answers 503 to a DESCRIBE while its shared media is being prepared or torn down
 * for another client (the gateway reads the stream description as it starts): ffmpeg asks again,
 * up to five times, as a recorder's client would.
 */
function ffmpegPull(url: string): { bytes: () => Buffer; started: Promise<void>; stop: () => Promise<void> } {
  const chunks: Buffer[] = [];
  let child: ReturnType<typeof spawn> | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stopped = false;
  const started = new Promise<void>((resolve, reject) => {
    const attempt = (left: number) => {
      const c = spawn("ffmpeg", ["-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-map", "0:v", "-c", "copy", "-f", "hevc", "pipe:1"], { stdio: ["ignore", "pipe", "pipe"] });
      child = c;
      exited = new Promise<void>((r) => c.once("exit", () => r()));
      let err = "";
      let output = false;
      c.stderr!.on("data", (b: Buffer) => (err += b.toString()));
      c.stdout!.on("data", (b: Buffer) => {
        chunks.push(b);
        output = true;
        resolve();
      });
      c.on("exit", (code) => {
        if (output || stopped) return;
        if (/503 Service Unavailable/.test(err) && left > 0) setTimeout(() => attempt(left - 1), 250);
        else reject(new Error(`ffmpeg ended (${code}) before any output: ${err}`));
      });
    };
    attempt(5);
  });
  return {
    bytes: () => Buffer.concat(chunks),
    started,
    stop: async () => {
      stopped = true;
      child?.kill("SIGTERM");
      await exited;
    },
  };
}

/** The NAL units a viewer received, depacketized in sequence order from its first packet. */
function viewerNals(packets: readonly ReceivedPacket[]): { nals: Buffer[]; firstAu: Buffer[] } {
  const d = new H265Depacketizer();
  const nals: Buffer[] = [];
  let firstAu: Buffer[] = [];
  let prev = -1;
  for (const p of packets) {
    const lost = prev >= 0 && ((p.sequenceNumber - prev) & 0xffff) !== 1;
    prev = p.sequenceNumber;
    for (const au of d.push(p.payload, p.timestamp, p.marker, lost)) {
      if (nals.length === 0) firstAu = au.nals;
      nals.push(...au.nals);
    }
  }
  expect(d.drops).toEqual({ malformed: 0, fragmentLost: 0, tooLarge: 0, unsupported: 0 });
  return { nals, firstAu };
}

describe("H.265 passthrough", () => {
  it("sends the camera's H.265 NAL units to a peer that offers H.265, within the MTU; a peer without H.265 gets the H.264 substream", async () => {
    await using main = await startGstRtspServer({ width: 640, height: 360, bitrate: 1200, gop: 25, codec: "h265", noAudio: true });
    await using sub = await startGstRtspServer({ width: 256, height: 144, gop: 25, noAudio: true });
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "none" },
      demo: { enabled: false },
      rtsp: { idleStopSeconds: 0 },
      cameras: [{ id: "hevc", url: main.url, transport: "tcp", streams: [{ id: "sub", url: sub.url }] }],
    });
    await using gw = await startGateway({ config, log: silentLogger });

    // ffmpeg pulls the same (shared) recorder stream first: the reference the viewer's NALs must match.
    const ref = ffmpegPull(main.url);
    try {
      await ref.started;
      const viewer = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/hevc?stream=main`, audio: false, videoCodecs: h265VideoCodecs() });
      try {
        await viewer.connected;
        const frames = (n: number) => viewer.video.waitFor(() => viewer.video.packets.filter((p) => p.marker).length >= n, `${n} frames`, 20_000);
        await frames(90);
        await ref.stop();
        const packets = viewer.video.packets.slice();
        expect(new Set(packets.map((p) => p.payloadType))).toEqual(new Set([49]));
        const sizes = packets.map((p) => p.payload.length).sort((a, b) => a - b);
        expect(sizes.at(-1)).toBeLessThanOrEqual(DEFAULT_MAX_PAYLOAD);
        // The recorder's packets are up to 1400 bytes: some NAL units were re-fragmented (FU, type 49).
        expect(packets.some((p) => h265Type(p.payload[0]!) === H265Type.FU)).toBe(true);

        const got = viewerNals(packets);
        // Parameter sets first, before the first IRAP picture of the first access unit.
        const types = got.firstAu.map((n) => h265Type(n[0]!));
        const irapAt = types.findIndex(isIrap);
        expect(irapAt).toBeGreaterThan(0);
        for (const t of [H265Type.VPS, H265Type.SPS, H265Type.PPS]) expect(types.slice(0, irapAt)).toContain(t);

        const camera = annexBNals(ref.bytes());
        // The camera's parameter sets are the ones delivered.
        const cameraSets = new Set(camera.filter((n) => isParameterSet(h265Type(n[0]!))).map(hash));
        for (const n of got.firstAu.slice(0, irapAt)) if (isParameterSet(h265Type(n[0]!))) expect(cameraSets.has(hash(n))).toBe(true);
        // Every other NAL unit, byte for byte and in order: each of the viewer's GOPs is a run of
        // the camera's, the GOPs in the camera's order (ffmpeg may repeat its first GOP after probing).
        const gops = (l: Buffer[]): string[][] => {
          const out: string[][] = [];
          let open: string[] = [];
          let lead: string[] = [];
          for (const x of l) {
            const t = h265Type(x[0]!);
            if (isParameterSet(t)) continue;
            if (t >= 32) lead.push(hash(x));
            else {
              if (isIrap(t) && open.length > 0) {
                out.push(open);
                open = [];
              }
              open.push(...lead, hash(x));
              lead = [];
            }
          }
          if (open.length > 0) out.push(open);
          return out;
        };
        const mine = gops(got.nals);
        const theirs = gops(camera).map((g) => g.join());
        expect(mine.length).toBeGreaterThanOrEqual(4);
        let from = 0;
        let equal = 0;
        for (const [i, g] of mine.slice(0, -1).entries()) {
          // The last GOP may be cut by the end of the capture; every other one must match whole.
          const at = theirs.indexOf(g.join(), from);
          expect(at, `viewer GOP ${i} (${g.length} NAL units) is one of the camera's, after the previous`).toBeGreaterThanOrEqual(0);
          from = at + 1;
          equal += g.length;
        }
        const n = equal;
        console.info(`H.265 passthrough: ${n} NAL units equal to the camera's, ${packets.length} packets, largest payload ${sizes.at(-1)} B, median ${sizes[sizes.length >> 1]} B`);
      } finally {
        await viewer.close();
      }
    } finally {
      await ref.stop();
    }

    // A peer offering no H.265 (Chromium here): H.264 from the substream, as before.
    const plain = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/hevc`, audio: false });
    try {
      await plain.connected;
      const p = await plain.video.waitForCount(10);
      expect(p.payloadType).toBe(108); // H.264 constrained baseline, packetization-mode 1
      expect(sub.sessions()).toBe(1);
    } finally {
      await plain.close();
    }
  }, 60_000);

  it("moves a peer that receives H.265 back to the H.265 main stream by PATCH; a peer without H.265 stays on the H.264 substream", async () => {
    await using main = await startGstRtspServer({ width: 320, height: 240, gop: 25, codec: "h265", noAudio: true });
    await using sub = await startGstRtspServer({ width: 256, height: 144, gop: 25, noAudio: true });
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "none" },
      demo: { enabled: false },
      cameras: [{ id: "hevc", url: main.url, transport: "tcp", streams: [{ id: "sub", url: sub.url }] }],
    });
    await using gw = await startGateway({ config, log: silentLogger });
    const patch = async (v: WeriftViewer, stream: string): Promise<{ stream: string; source: string }> => {
      const res = await fetch(v.resource, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ stream }) });
      expect(res.status).toBe(202);
      return (await res.json()) as { stream: string; source: string };
    };
    /** The first packet of payload type `pt` received from now on. */
    const next = (v: WeriftViewer, pt: number, what: string) => {
      const from = v.video.packets.length;
      return v.video.waitFor((p) => p.payloadType === pt && v.video.packets.indexOf(p) >= from, what, 20_000);
    };

    const viewer = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/hevc?stream=main`, audio: false, videoCodecs: h265VideoCodecs() });
    try {
      await viewer.connected;
      await viewer.video.waitFor((p) => p.payloadType === 49, "H.265 from the main stream", 20_000);
      const toSub = next(viewer, 108, "H.264 from the substream");
      expect(await patch(viewer, "sub")).toEqual({ stream: "sub", source: "sub" });
      await toSub;
      for (const asked of ["main", "auto"]) {
        const back = next(viewer, 49, `H.265 after asking for ${asked}`);
        expect(await patch(viewer, asked)).toEqual({ stream: asked, source: "main" });
        await back;
        if (asked === "main") {
          const away = next(viewer, 108, "H.264 from the substream again");
          await patch(viewer, "sub");
          await away;
        }
      }
    } finally {
      await viewer.close();
    }

    // Without H.265, `main` is the camera's H.264 stream, by PATCH as on POST.
    const plain = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/hevc?stream=sub`, audio: false });
    try {
      await plain.connected;
      await plain.video.waitForCount(10);
      expect(await patch(plain, "main")).toEqual({ stream: "main", source: "sub" });
      // Its picture goes on (a move to the H.265 stream would leave it without video).
      await plain.video.waitForCount(plain.video.count + 50);
      expect(new Set(plain.video.packets.map((p) => p.payloadType))).toEqual(new Set([108]));
    } finally {
      await plain.close();
    }
  }, 60_000);

  it("refuses in words a peer without H.265 that asks for an H.265-only camera before the gateway has read its description", async () => {
    await using hevc = await startGstRtspServer({ width: 320, height: 240, gop: 25, codec: "h265", noAudio: true });
    // No light checks: nothing reads the camera's description before the viewer comes.
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "none" },
      demo: { enabled: false },
      rtsp: { checkIntervalSeconds: 0 },
      cameras: [
        { id: "hevc", url: hevc.url, transport: "tcp" },
        // Nothing listens there: the check fails at once, and the viewer is answered without waiting it out.
        { id: "gone", url: "rtsp://127.0.0.1:1/none", transport: "tcp" },
      ],
    });
    await using gw = await startGateway({ config, log: silentLogger });
    expect(gw.cameras.view("hevc")!.unplayable).toEqual([]);
    const words = "H.265 video plays only in browsers that decode H.265: configure an H.264 stream on the camera, or set its transcode.h265 to h264 (converts with ffmpeg)";
    const err = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/hevc`, audio: false }).then(
      (v) => v.close().then(() => null),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WhepHttpError);
    expect((err as WhepHttpError).status).toBe(400);
    expect(JSON.parse((err as WhepHttpError).body)).toMatchObject({ reason: words });
    // Read by a light check, not pulled: the recorder holds no session for it afterwards.
    expect(gw.cameras.view("hevc")!.unplayable).toEqual([{ type: "video", reason: words, passthrough: "H265" }]);
    await hevc.waitFor((e) => e.event === "client-closed", { since: 0, timeoutMs: 5_000 });
    expect(hevc.sessions()).toBe(0);

    // A peer with H.265 needs no description first: it is answered and gets the camera's H.265.
    const viewer = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/hevc`, audio: false, videoCodecs: h265VideoCodecs() });
    try {
      await viewer.video.waitFor((p) => p.payloadType === 49, "H.265 from the camera", 20_000);
    } finally {
      await viewer.close();
    }

    // A camera that cannot be reached has no description to wait for: answered well within rtsp.describeWaitMs.
    const t0 = performance.now();
    const away = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gone`, audio: false });
    await away.close();
    expect(performance.now() - t0).toBeLessThan(config.rtsp.describeWaitMs);
  }, 60_000);
});
