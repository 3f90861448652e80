/**
 * Hostile recorders: malformed status lines, absurd Content-Length, truncated frames,
 * garbage RTP, silence, connections closed mid-answer. Each camera's ingest must log,
 * count, and reconnect with backoff; the process must not crash; and a healthy camera
 * (a real GStreamer recorder) must keep streaming the whole time.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../config/log.ts";
import { parseConfig } from "../../config/load.ts";
import { CameraIngest, type IngestStatus } from "../../gateway/ingest/camera-ingest.ts";
import { UdpPortPool } from "../../gateway/ingest/udp-ports.ts";
import { startGstRtspServer } from "../peers/gst.ts";
import { rtpPacket, startFakeRecorder, wellBehaved, type FakeConn, type Handler } from "../fixtures/rtsp/fake-recorder.ts";
import { TestSink } from "../fixtures/rtsp/test-sink.ts";

interface Scenario {
  /** What the recorder does on the first request of each connection. */
  act: Handler;
  /** The reason the ingest must report. */
  reason: RegExp;
  /** Whether dropped malformed input must be counted. */
  malformed?: boolean;
}

const cseq = (req: { headers: { get(n: string): string | undefined } }) => req.headers.get("CSeq") ?? "0";

/** Sends `make()` every 20 ms until the connection closes. */
function every(conn: FakeConn, make: (i: number) => void): void {
  let i = 0;
  const t = setInterval(() => make(i++), 20);
  conn.socket.once("close", () => clearInterval(t));
}

const scenarios: Record<string, Scenario> = {
  "bad-status": {
    act: (req, conn) => void conn.write(`RTSP/1.0 2OO Okay\r\nCSeq: ${cseq(req)}\r\n\r\n`),
    reason: /^OPTIONS: malformed answer: malformed RTSP start line "RTSP\/1\.0 2OO Okay"$/,
  },
  "http-status": {
    act: (req, conn) => void conn.write(`HTTP/1.1 200 OK\r\nCSeq: ${cseq(req)}\r\n\r\n`),
    reason: /^OPTIONS: malformed answer: malformed RTSP start line/,
  },
  "absurd-length": {
    act: (req, conn) => void conn.write(`RTSP/1.0 200 OK\r\nCSeq: ${cseq(req)}\r\nContent-Length: 99999999999\r\n\r\n`),
    reason: /^RTSP protocol error from recorder: Content-Length 99999999999 exceeds the limit/,
  },
  "endless-header": {
    act: (req, conn) => void conn.write(`RTSP/1.0 200 OK\r\nCSeq: ${cseq(req)}\r\n` + "X-Pad: aaaaaaaaaaaaaaaa\r\n".repeat(3000)),
    reason: /^RTSP protocol error from recorder: RTSP header block exceeds 32768 bytes/,
  },
  "binary-garbage": {
    act: (_req, conn) => void conn.write(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x80, 0x60])),
    reason: /^RTSP protocol error from recorder: unexpected byte 0x00/,
  },
  silent: { act: () => undefined, reason: /^OPTIONS: no answer within 300 ms$/ },
  "close-mid-answer": {
    act: (req, conn) => {
      conn.write(`RTSP/1.0 200 OK\r\nCSeq: ${cseq(req)}\r\nContent-Le`);
      setTimeout(() => conn.destroy(), 5);
      return undefined;
    },
    reason: /^recorder closed the connection$/,
  },
  "truncated-frame": {
    act: wellBehaved({
      onPlay: (conn) => {
        conn.frame(0, rtpPacket(1));
        conn.write(Buffer.concat([Buffer.from([0x24, 0, 0xff, 0xff]), Buffer.alloc(100, 0x80)])); // then nothing
      },
    }),
    reason: /^no media for 600 ms$/,
  },
  "garbage-rtp": {
    act: wellBehaved({
      onPlay: (conn) =>
        every(conn, (i) => {
          conn.frame(0, Buffer.from([0x00, 96, 0, i & 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1])); // version 0
          conn.frame(0, Buffer.from([0x80, 96, 0])); // shorter than a header
          conn.frame(9, rtpPacket(i)); // a channel nobody set up
          conn.frame(1, Buffer.from([1, 2, 3])); // not RTCP
        }),
    }),
    reason: /^no media for 600 ms$/,
    malformed: true,
  },
};

describe("hostile recorders next to a healthy one", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", write: (l) => void lines.push(l) });
  const crashes: unknown[] = [];
  const onCrash = (e: unknown): void => void crashes.push(e);
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(() => {
    process.on("uncaughtException", onCrash);
    process.on("unhandledRejection", onCrash);
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    process.off("uncaughtException", onCrash);
    process.off("unhandledRejection", onCrash);
  });

  it("logs, counts and reconnects each with backoff, while the healthy camera streams on", async () => {
    const gst = await startGstRtspServer({ noAudio: true, width: 160, height: 120, bitrate: 200, gop: 10 });
    cleanups.push(() => gst.close());
    // Which scenario a connection plays is decided by the path of its first request.
    const chosen = new Map<number, Handler>();
    const fake = await startFakeRecorder((req, conn) => {
      let h = chosen.get(conn.id);
      if (!h) {
        const name = new URL(req.uri).pathname.slice(1).split("/")[0]!;
        h = scenarios[name]?.act ?? (() => ({ status: 404 }));
        chosen.set(conn.id, h);
      }
      return h(req, conn);
    });
    cleanups.push(() => fake.close());

    const names = Object.keys(scenarios);
    const cfg = parseConfig({
      cameras: [
        { id: "healthy", url: gst.url, alwaysOn: true },
        ...names.map((n) => ({ id: n, url: `rtsp://127.0.0.1:${fake.port}/${n}`, alwaysOn: true })),
      ],
      rtsp: { requestTimeoutMs: 300, mediaTimeoutMs: 600, reconnectMinMs: 100, reconnectMaxMs: 400, idleStopSeconds: 0 },
    });
    // The healthy camera gets generous timeouts so a busy test machine cannot make it fail by itself.
    const healthyRtsp = { ...cfg.rtsp, requestTimeoutMs: 5000, mediaTimeoutMs: 5000 };
    const ports = new UdpPortPool([48000, 48019]);
    const sinks = new Map<string, TestSink>();
    const ingests = new Map<string, CameraIngest>();
    const healthyStates: IngestStatus["state"][] = [];
    for (const camera of cfg.cameras) {
      const sink = new TestSink();
      const rtsp = camera.id === "healthy" ? healthyRtsp : cfg.rtsp;
      const ing = new CameraIngest({ camera, rtsp, sink, log: log.child({ camera: camera.id }), ports });
      if (camera.id === "healthy") ing.on("state", (s) => void healthyStates.push(s.state));
      sinks.set(camera.id, sink);
      ingests.set(camera.id, ing);
      cleanups.push(() => ing.close("test end"));
    }
    const healthy = sinks.get("healthy")!;
    await healthy.until(() => healthy.count(0) >= 10, 15_000, "healthy camera media");

    // Every hostile camera must fail with its reason and come back for more, at least twice.
    const anySink = healthy;
    await anySink.until(
      () => names.every((n) => ingests.get(n)!.status().reconnects >= 2),
      20_000,
      "two reconnects of every hostile camera",
    );
    const packetsBefore = healthy.count(0);
    await healthy.until(() => healthy.count(0) >= packetsBefore + 10, 5000, "healthy media still flowing");

    for (const n of names) {
      const st = ingests.get(n)!.status();
      expect(st.lastError, n).toMatch(scenarios[n]!.reason);
      expect(["backoff", "connecting", "playing"], n).toContain(st.state);
      if (scenarios[n]!.malformed) expect(st.malformed, n).toBeGreaterThan(0);
      const warned = lines.some((l) => l.includes('"camera ingest failed; will retry"') && l.includes(`"camera":"${n}"`));
      expect(warned, `${n} logged its failure`).toBe(true);
    }
    // The healthy camera never left "playing" once it got there, and holds exactly one session.
    expect(healthyStates.slice(healthyStates.indexOf("playing"))).toEqual(["playing"]);
    expect(ingests.get("healthy")!.status()).toMatchObject({ state: "playing", reconnects: 0, malformed: 0 });
    expect(gst.sessions()).toBe(1);
    // Reconnects are spaced by the backoff, not a tight loop: bounded connection count.
    expect(fake.connections()).toBeLessThan(names.length * 20);
    expect(crashes).toEqual([]);
  });
});
