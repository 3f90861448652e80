/**
 * RTSP ingest against a real recorder: GStreamer's RTSP server (H.264 + PCMU), over TCP
 * interleaved and UDP, behind Digest auth; SPS/PPS only in the SDP; crash and restart.
 */
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { parseConfig } from "../../config/load.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { CameraIngest, type IngestStatus } from "../../gateway/ingest/camera-ingest.ts";
import { UdpPortPool } from "../../gateway/ingest/udp-ports.ts";
import { startGstRtspServer, type GstRtspServer, type GstServerOptions } from "../peers/gst.ts";
import { TestSink } from "../fixtures/rtsp/test-sink.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// Each test file gets its own slice of client ports so parallel files rarely collide (binding skips busy pairs anyway).
const ports = new UdpPortPool([46000 + (process.pid % 50) * 20, 46000 + (process.pid % 50) * 20 + 19]);

async function gst(opts: GstServerOptions): Promise<GstRtspServer> {
  const g = await startGstRtspServer({ width: 160, height: 120, fps: 25, gop: 10, bitrate: 200, ...opts });
  cleanups.push(() => g.close());
  return g;
}

function ingest(camera: Partial<CameraConfig> & { url: string }, rtsp: Record<string, number> = {}) {
  const cfg = parseConfig({
    cameras: [{ id: "cam", ...camera }],
    rtsp: { requestTimeoutMs: 5000, mediaTimeoutMs: 5000, reconnectMinMs: 100, reconnectMaxMs: 1000, idleStopSeconds: 0, ...rtsp },
  });
  const sink = new TestSink();
  const ing = new CameraIngest({ camera: cfg.cameras[0]!, rtsp: cfg.rtsp, sink, log: silentLogger, ports });
  const states: IngestStatus[] = [];
  ing.on("state", (s) => void states.push(s));
  cleanups.push(() => ing.close("test end"));
  return { ing, sink, states };
}

/** Sequence numbers of `track` increase by one (mod 2^16) within each SSRC. */
function expectContiguous(sink: TestSink, track: number): void {
  const bySsrc = new Map<number, number[]>();
  for (const p of sink.packets) if (p.track === track) (bySsrc.get(p.ssrc) ?? bySsrc.set(p.ssrc, []).get(p.ssrc)!).push(p.seq);
  for (const seqs of bySsrc.values())
    for (let i = 1; i < seqs.length; i++) expect((seqs[i]! - seqs[i - 1]! + 0x10000) & 0xffff).toBe(1);
}

describe.each(["tcp", "udp"] as const)("GStreamer over %s with Digest auth", (transport) => {
  it("pulls H.264 and PCMU on demand and tears the session down when idle", async () => {
    const cam = await gst({ user: "viewer", password: "s3cr:et pw" });
    const { ing, sink } = ingest({ url: cam.url, username: "viewer", password: "s3cr:et pw", transport });
    ing.setDemand(1);
    await sink.until(() => sink.count(0) >= 30 && sink.count(1) >= 10, 15_000, "video and audio packets");

    expect(sink.trackSets).toHaveLength(1);
    expect(sink.trackSets[0]!.map((t) => [t.codec, t.payloadType, t.clockRate])).toEqual([
      ["H264", 96, 90000],
      ["PCMU", 0, 8000],
    ]);
    expect(sink.packets.filter((p) => p.track === 0).every((p) => p.payloadType === 96)).toBe(true);
    expect(sink.packets.filter((p) => p.track === 1).every((p) => p.payloadType === 0)).toBe(true);
    expectContiguous(sink, 0);
    expectContiguous(sink, 1);
    expect(ing.status()).toMatchObject({ state: "playing", transport, recorderSessions: 1, malformed: 0 });
    expect(cam.sessions()).toBe(1);

    ing.setDemand(0); // idleStopSeconds 0: stop now, TEARDOWN frees the recorder's session
    await cam.waitFor((e) => e.event === "teardown", { since: 0 });
    await cam.waitFor((e) => e.event === "session-removed", { since: 0 });
    expect(ing.status()).toMatchObject({ state: "idle", recorderSessions: 0 });
    expect(sink.downs).toEqual(["idle: no viewers for 0 s"]);
  });
});

describe("GStreamer failures and variants", () => {
  it("reports a wrong password as an auth failure and keeps retrying slowly", async () => {
    const cam = await gst({ user: "viewer", password: "right", noAudio: true });
    const { ing, sink, states } = ingest({ url: cam.url.replace("rtsp://", "rtsp://viewer:wrong@") });
    ing.setDemand(1);
    await sink.until(() => states.some((s) => s.state === "failed"), 10_000, "failed state");
    const st = ing.status();
    expect(st.state).toBe("failed");
    expect(st.reason).toBe("DESCRIBE: recorder rejected the credentials (401 Unauthorized): wrong user name or password");
    expect(st.retryInMs).toBe(1000); // the longest backoff: no hammering a recorder that may lock the account
    expect(sink.trackSets).toHaveLength(0);
    expect(cam.sessions()).toBe(0);
  });

  // A recorder asking for Basic over plain rtsp:// got the password in clear.
  it("regression: refuses a recorder's Basic challenge over plain rtsp:// with a clear reason, plays when the camera opts in", async () => {
    const cam = await gst({ user: "viewer", password: "s3cret", auth: "basic", noAudio: true });
    const refused = ingest({ url: cam.url, username: "viewer", password: "s3cret" });
    refused.ing.setDemand(1);
    await refused.sink.until(() => refused.states.some((s) => s.state === "failed"), 10_000, "failed state");
    expect(refused.ing.status()).toMatchObject({
      state: "failed",
      reason:
        "DESCRIBE: the recorder asks for Basic authentication over plain rtsp://, which would send the password in clear; refused " +
        "(use rtsps://, turn on Digest at the recorder, or set basicOverPlainRtsp for this camera)",
      retryInMs: 1000, // the longest backoff: asking again will not change the answer
    });
    // What the page shows: failed (not "reconnecting"), with the same reason.
    expect(refused.ing.status().camera).toMatchObject({ state: "failed", reason: refused.ing.status().reason });
    expect(cam.sessions()).toBe(0);
    await refused.ing.close("test: next camera");

    const allowed = ingest({ url: cam.url, username: "viewer", password: "s3cret", basicOverPlainRtsp: true });
    allowed.ing.setDemand(1);
    await allowed.sink.until(() => allowed.sink.count(0) >= 10, 15_000, "video packets");
    expect(allowed.ing.status()).toMatchObject({ state: "playing" });
  });

  it("plays a camera that sends SPS/PPS only in the SDP (sprop-parameter-sets)", async () => {
    const cam = await gst({ spropOnly: true, noAudio: true });
    const { ing, sink } = ingest({ url: cam.url });
    ing.setDemand(1);
    const idrStarts = () =>
      sink.packets.filter((p) => (p.nal & 0x1f) === 5 || ((p.nal & 0x1f) === 28 && (p.nal2 & 0x1f) === 5 && p.nal2 & 0x80)).length;
    await sink.until(() => idrStarts() >= 2, 15_000, "two keyframes");
    expect(sink.trackSets[0]![0]!.fmtp).toMatch(/sprop-parameter-sets=[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]+/);
    // The point of this variant: nothing in band carries SPS (7) or PPS (8).
    const inBand = sink.packets.filter((p) => [7, 8].includes(p.nal & 0x1f) || p.stapTypes.some((t) => t === 7 || t === 8));
    expect(inBand).toEqual([]);
  });

  it("reconnects after the recorder is killed and restarted on the same port", async () => {
    const cam = await gst({ noAudio: true });
    const { ing, sink } = ingest({ url: cam.url, alwaysOn: true });
    await sink.until(() => sink.count(0) >= 20, 15_000, "first packets");
    const firstSsrc = sink.packets[0]!.ssrc;

    await cam.kill("SIGKILL");
    await sink.until(() => sink.downs.length === 1, 10_000, "upstreamDown");
    expect(sink.downs[0]).toBe("recorder closed the connection");
    const before = sink.packets.length;

    await cam.restart();
    await sink.until(() => sink.trackSets.length === 2 && sink.packets.length >= before + 20, 20_000, "packets after restart");
    const st = ing.status();
    expect(st.state).toBe("playing");
    expect(st.reconnects).toBeGreaterThanOrEqual(1);
    expect(sink.trackSets[1]).toEqual(sink.trackSets[0]);
    expect(sink.packets.at(-1)!.ssrc).not.toBe(firstSsrc); // a new upstream session: new SSRC, per MediaSink's contract
    expect(cam.sessions()).toBe(1);
  });

  // Without keep-alives this server removes the session ~2.2 s after PLAY (checked by disabling them).
  it("keeps a session alive past the recorder's session timeout", async () => {
    const cam = await gst({ noAudio: true, sessionTimeout: 2 });
    const { ing, sink } = ingest({ url: cam.url, transport: "udp" });
    ing.setDemand(1);
    await sink.until(() => sink.count(0) > 0, 15_000, "first packets");
    const keepAlives = () => cam.events.filter((e) => e.event === "request" && e.method === "GET_PARAMETER").length;
    await sink.until(() => keepAlives() >= 3, 10_000, "three keep-alives");
    expect(cam.events.some((e) => e.event === "session-removed")).toBe(false);
    const n = sink.count(0);
    await sink.until(() => sink.count(0) > n + 10, 5000, "media still flowing");
    expect(ing.status()).toMatchObject({ state: "playing", reconnects: 0 });
  });
});
