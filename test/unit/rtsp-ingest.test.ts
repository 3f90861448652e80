import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { AuthError, UpstreamError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import { silentLogger } from "../../config/log.ts";
import { parseConfig } from "../../config/load.ts";
import type { CameraConfig } from "../../config/schema.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import { backoffDelay } from "../../gateway/ingest/backoff.ts";
import { CameraIngest, type IngestClient } from "../../gateway/ingest/camera-ingest.ts";
import { UdpPortPool } from "../../gateway/ingest/udp-ports.ts";
import type { PlaySession, ProbeResult, RtspClientEvents, RtspClientOptions, RtspClientStats } from "../../gateway/rtsp/client.ts";
import { UpstreamLostError } from "../../gateway/rtsp/status.ts";
import { FakeTimers } from "../fixtures/rtsp/fake-timers.ts";

const H264: TrackSpec = { kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: 96, fmtp: "packetization-mode=1" };

/** A client whose outcome the test decides. */
class FakeClient implements IngestClient {
  readonly events = new SafeEmitter<RtspClientEvents>();
  readonly opts: RtspClientOptions;
  closedWith: string | undefined;
  packetsIn = 0;
  private settle!: { resolve(s: PlaySession): void; reject(e: unknown): void };
  constructor(opts: RtspClientOptions) {
    this.opts = opts;
  }
  start(): Promise<PlaySession> {
    return new Promise((resolve, reject) => (this.settle = { resolve, reject }));
  }
  probed = false;
  probe(): Promise<ProbeResult> {
    this.probed = true;
    return new Promise((resolve, reject) => (this.settleProbe = { resolve, reject }));
  }
  settleProbe!: { resolve(r: ProbeResult): void; reject(e: unknown): void };
  close(reason?: string): Promise<void> {
    this.closedWith ??= reason ?? "closed";
    return Promise.resolve();
  }
  stats(): RtspClientStats {
    const drops = { unknownChannel: 0, badRtp: 0, badRtcp: 0, foreign: 0, queueOverflow: 0, sinkError: 0 };
    return { packetsIn: this.packetsIn, bytesIn: this.packetsIn * 100, rtcpIn: 0, malformed: 1, drops, unmatchedResponses: 0, keepAlives: 0, rtcpOut: 0 };
  }
  play(transport: "tcp" | "udp" = "tcp", specs: TrackSpec[] = [H264]): void {
    const s: PlaySession = {
      tracks: [], specs, unsupported: [{ mediaIndex: 1, type: "audio", reason: "AAC" }], sessionId: "s", timeoutSec: 60,
      transport, url: this.opts.url, keepAlive: "OPTIONS", auth: undefined,
    };
    this.opts.onPlay?.(s);
    this.settle.resolve(s);
  }
  fail(err: unknown): void {
    this.settle.reject(err);
  }
  end(err = new UpstreamError("no media for 5000 ms")): void {
    this.events.emit("ended", err);
  }
}

class RecordingSink implements MediaSink {
  calls: string[] = [];
  setTracks(t: readonly TrackSpec[]): void {
    this.calls.push(`setTracks:${t.map((x) => x.codec).join(",")}`);
  }
  pushRtp(): void {}
  pushRtcp(): void {}
  upstreamDown(reason: string): void {
    this.calls.push(`down:${reason}`);
  }
}

function setup(camera: Partial<CameraConfig> = {}, rtsp: Record<string, number> = {}) {
  const cfg = parseConfig({
    cameras: [{ id: "cam", url: "rtsp://u:p@127.0.0.1:554/x", ...camera }],
    // Checks of idle cameras and the watched retry cap are off unless a test turns them on.
    rtsp: { reconnectMinMs: 500, reconnectMaxMs: 8000, idleStopSeconds: 30, checkIntervalSeconds: 0, watchedRetryMaxMs: 60_000, ...rtsp },
  });
  const timers = new FakeTimers();
  const sink = new RecordingSink();
  const clients: FakeClient[] = [];
  const states: string[] = [];
  const ingest = new CameraIngest({
    camera: cfg.cameras[0]!, rtsp: cfg.rtsp, sink, log: silentLogger, ports: new UdpPortPool(cfg.rtsp.clientPortRange),
    timers, random: () => 0.5, stableMs: 10_000,
    createClient: (o) => {
      const c = new FakeClient(o);
      clients.push(c);
      return c;
    },
  });
  ingest.on("state", (s) => states.push(s.state));
  const last = () => clients.at(-1)!;
  return { ingest, timers, sink, clients, states, last };
}

const flush = () => new Promise<void>((r) => setImmediate(r));

describe("CameraIngest on demand", () => {
  it("starts with the first viewer and stops idleStopSeconds after the last", async () => {
    const { ingest, timers, sink, clients, last } = setup();
    expect(ingest.status().state).toBe("idle");
    expect(clients).toHaveLength(0);
    ingest.setDemand(2);
    expect(ingest.status().state).toBe("connecting");
    last().play();
    expect(ingest.status()).toMatchObject({ state: "playing", tracks: [H264], recorderSessions: 1, transport: "tcp" });
    expect(ingest.status().unsupported).toEqual([{ type: "audio", reason: "AAC" }]);
    expect(sink.calls).toEqual(["setTracks:H264"]);
    ingest.setDemand(1);
    ingest.setDemand(0);
    timers.advance(29_999);
    expect(ingest.status().state).toBe("playing");
    timers.advance(1);
    await flush();
    expect(ingest.status()).toMatchObject({ state: "idle", reason: "idle: no viewers for 30 s", recorderSessions: 0 });
    expect(last().closedWith).toBe("idle: no viewers for 30 s");
    expect(sink.calls).toEqual(["setTracks:H264", "down:idle: no viewers for 30 s"]);
    expect(timers.armed).toBe(0);
  });

  it("a viewer returning before the idle stop keeps the same session", () => {
    const { ingest, timers, clients, last } = setup();
    ingest.setDemand(1);
    last().play();
    ingest.setDemand(0);
    timers.advance(20_000);
    ingest.setDemand(1);
    timers.advance(60_000);
    expect(ingest.status().state).toBe("playing");
    expect(clients).toHaveLength(1);
    expect(last().closedWith).toBeUndefined();
  });

  it("alwaysOn pulls without viewers and ignores demand dropping to zero", () => {
    const { ingest, timers, clients, last } = setup({ alwaysOn: true });
    expect(clients).toHaveLength(1);
    last().play();
    ingest.setDemand(3);
    ingest.setDemand(0);
    timers.advance(3_600_000);
    expect(ingest.status().state).toBe("playing");
  });
});

describe("CameraIngest reconnects", () => {
  it("backs off exponentially with jitter up to the cap, counting reconnects", async () => {
    const { ingest, timers, clients, last } = setup();
    ingest.setDemand(1);
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      last().fail(new UpstreamError("connection to recorder failed: ECONNREFUSED"));
      await flush();
      const st = ingest.status();
      expect(st.state).toBe("backoff");
      expect(st.reason).toBe("connection to recorder failed: ECONNREFUSED");
      delays.push(st.retryInMs!);
      timers.advance(st.retryInMs! - 1);
      expect(clients).toHaveLength(i + 1);
      timers.advance(1);
      expect(clients).toHaveLength(i + 2);
    }
    // random = 0.5 → factor 0.75 of min(max, min·2^n), never below min
    expect(delays).toEqual([500, 750, 1500, 3000, 6000, 6000, 6000]);
    expect(ingest.status().reconnects).toBe(7);
  });

  it("resets the backoff after a session played stably, not after a short one", async () => {
    const { ingest, timers, sink, last } = setup();
    ingest.setDemand(1);
    for (let i = 0; i < 3; i++) {
      last().fail(new UpstreamError("refused"));
      await flush();
      timers.advance(ingest.status().retryInMs!);
    }
    last().play();
    timers.advance(5_000); // not yet stable
    last().end();
    expect(ingest.status().retryInMs).toBe(3000); // attempt 3 → 500·8·0.75
    timers.advance(3000);
    last().play("tcp");
    timers.advance(10_000); // stable
    last().end(new UpstreamError("recorder closed the connection"));
    expect(ingest.status()).toMatchObject({ state: "backoff", retryInMs: 500, reason: "recorder closed the connection" });
    expect(sink.calls.filter((c) => c.startsWith("setTracks"))).toHaveLength(2);
    expect(sink.calls.filter((c) => c.startsWith("down:"))).toEqual([
      "down:no media for 5000 ms",
      "down:recorder closed the connection",
    ]);
    timers.advance(500);
    last().play();
    expect(sink.calls.at(-1)).toBe("setTracks:H264");
  });

  it("waits the longest delay after bad credentials (state failed)", async () => {
    const { ingest, last } = setup();
    ingest.setDemand(1);
    last().fail(new AuthError("UNAUTHORIZED", "DESCRIBE: recorder rejected the credentials (401 Unauthorized)"));
    await flush();
    expect(ingest.status()).toMatchObject({ state: "failed", retryInMs: 8000, lastError: expect.stringMatching(/401/) });
  });

  it("stops retrying when demand ends during backoff", async () => {
    const { ingest, timers, clients, last } = setup({}, { idleStopSeconds: 1 });
    ingest.setDemand(1);
    last().fail(new UpstreamError("refused"));
    await flush();
    ingest.setDemand(0);
    timers.advance(500); // the retry still runs while the idle stop is pending
    expect(clients).toHaveLength(2);
    timers.advance(500);
    await flush();
    expect(ingest.status().state).toBe("idle");
    expect(clients[1]!.closedWith).toBe("idle: no viewers for 1 s");
    timers.advance(100_000);
    expect(clients).toHaveLength(2);
    expect(timers.armed).toBe(0);
  });

  it("switches auto transport to TCP when UDP delivered nothing", async () => {
    const { ingest, timers, clients, last } = setup({ transport: "auto" });
    ingest.setDemand(1);
    expect(last().opts.transport).toBe("auto");
    last().play("udp");
    last().end(); // no packets
    timers.advance(ingest.status().retryInMs!);
    expect(clients).toHaveLength(2);
    expect(last().opts.transport).toBe("tcp");
  });

  it("ignores a late outcome of an attempt that close() abandoned", async () => {
    const { ingest, sink, last } = setup();
    ingest.setDemand(1);
    const c = last();
    await ingest.close("gateway closing");
    expect(c.closedWith).toBe("gateway closing");
    c.play();
    expect(sink.calls).toEqual([]);
    expect(ingest.status().state).toBe("idle");
    ingest.setDemand(1); // closed: no new attempt
    expect(ingest.status().state).toBe("idle");
    await ingest.close(); // idempotent
  });

  it("sums packets across sessions and survives a throwing state listener", async () => {
    const { ingest, timers, last } = setup();
    ingest.on("state", () => {
      throw new Error("listener bug");
    });
    ingest.setDemand(1);
    last().packetsIn = 10;
    last().play();
    last().end();
    timers.advance(ingest.status().retryInMs!);
    last().packetsIn = 5;
    last().play();
    expect(ingest.status()).toMatchObject({ packetsIn: 15, bytesIn: 1500, malformed: 2, state: "playing" });
  });

  it("passes camera settings to the client", () => {
    const { ingest, last } = setup({ transport: "udp", username: "admin", password: "pw", tlsInsecure: true }, { requestTimeoutMs: 1234, mediaTimeoutMs: 4321 });
    ingest.setDemand(1);
    expect(last().opts).toMatchObject({
      url: "rtsp://u:p@127.0.0.1:554/x", username: "admin", password: "pw", transport: "udp", tlsInsecure: true,
      requestTimeoutMs: 1234, mediaTimeoutMs: 4321,
    });
  });
});

describe("backoffDelay", () => {
  it("stays within [min, max] and never shrinks by more than the jitter", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 50, max: 5000 }), fc.integer({ min: 1, max: 200 }), fc.double({ min: 0, max: 1, noNaN: true }), (n, min, factor, r) => {
        const max = min * factor;
        const d = backoffDelay(n, { minMs: min, maxMs: max, random: () => r });
        expect(d).toBeGreaterThanOrEqual(min);
        expect(d).toBeLessThanOrEqual(max);
        expect(d).toBeGreaterThanOrEqual(Math.min(max, min * 2 ** Math.min(n, 30)) / 2 - 1);
      }),
    );
  });
});

describe("UdpPortPool", () => {
  it("hands out even/odd pairs, rotates, and reuses released pairs last", () => {
    const pool = new UdpPortPool([3557, 3564]); // odd start: first pair is 3558/3559
    expect(pool.size).toBe(3);
    const a = pool.acquire()!;
    const b = pool.acquire()!;
    const c = pool.acquire()!;
    expect([a.rtp, a.rtcp, b.rtp, c.rtp]).toEqual([3558, 3559, 3560, 3562]);
    expect(pool.acquire()).toBeUndefined();
    b.release();
    b.release(); // idempotent
    expect(pool.leased).toBe(2);
    expect(pool.acquire()!.rtp).toBe(3560);
    a.release();
    c.release();
    expect(pool.acquire()!.rtp).toBe(3562); // cursor moved past 3560: rotation, not lowest-first
  });

  it("never leases the same pair twice at once (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { maxLength: 200 }), (ops) => {
        const pool = new UdpPortPool([10000, 10019]);
        const held: { rtp: number; release(): void }[] = [];
        for (const acquire of ops) {
          if (acquire) {
            const l = pool.acquire();
            if (l) held.push(l);
            else expect(held).toHaveLength(10);
          } else held.shift()?.release();
          expect(new Set(held.map((h) => h.rtp)).size).toBe(held.length);
          for (const h of held) expect(h.rtp % 2).toBe(0);
        }
      }),
    );
  });
});

describe("CameraIngest tells the truth about the camera", () => {
  const refused = () =>
    new UpstreamError("connection to 127.0.0.1:554 failed: ECONNREFUSED", { cause: Object.assign(new Error("x"), { code: "ECONNREFUSED" }) });

  it("the SFU hears the upstream is down before anyone is told, then reconnecting → offline → live", async () => {
    const { ingest, sink, last } = setup();
    const seen: string[] = [];
    ingest.on("state", (s) => seen.push(`${s.camera.state}|${sink.calls.at(-1)}`));
    ingest.setDemand(1);
    last().play();
    last().end(new UpstreamLostError("rtcp-bye", "the recorder ended the stream (RTCP BYE on track 0)"));
    expect(ingest.status().camera).toMatchObject({ state: "reconnecting", lostBy: "rtcp-bye", reason: "the recorder ended the stream" });
    expect(seen.at(-1)).toBe("reconnecting|down:the recorder ended the stream (RTCP BYE on track 0)");
  });

  it("retries every watchedRetryMaxMs while watched, backs off when nobody watches", async () => {
    const watched = setup({}, { watchedRetryMaxMs: 400, reconnectMinMs: 500, reconnectMaxMs: 8000 });
    watched.ingest.setDemand(1);
    watched.last().play();
    watched.last().end(new UpstreamLostError("connection-closed", "recorder closed the connection"));
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      delays.push(watched.ingest.status().retryInMs!);
      watched.timers.advance(watched.ingest.status().retryInMs!);
      watched.last().fail(refused());
      await flush();
      expect(watched.ingest.status().camera).toMatchObject({ state: "offline", reachability: "unreachable", failures: i + 1 });
    }
    expect(delays).toEqual([400, 400, 400, 400, 400, 400]);

    const unwatched = setup({ alwaysOn: true }, { watchedRetryMaxMs: 400, reconnectMinMs: 500, reconnectMaxMs: 8000 });
    const back: number[] = [];
    for (let i = 0; i < 5; i++) {
      unwatched.last().fail(refused());
      await flush();
      back.push(unwatched.ingest.status().retryInMs!);
      unwatched.timers.advance(unwatched.ingest.status().retryInMs!);
    }
    expect(back).toEqual([500, 750, 1500, 3000, 6000]);
  });

  it("a viewer coming back to a camera in a long backoff makes the next attempt come soon", async () => {
    const { ingest, timers, clients, last } = setup({}, { watchedRetryMaxMs: 400 });
    ingest.setDemand(1);
    for (let i = 0; i < 4; i++) {
      last().fail(refused());
      await flush();
      timers.advance(ingest.status().retryInMs!);
    }
    ingest.setDemand(0); // the idle stop is pending: retries go on, at the backoff
    last().fail(refused());
    await flush();
    expect(ingest.status().retryInMs).toBe(6000);
    timers.advance(100);
    ingest.setDemand(1);
    expect(ingest.status().retryInMs).toBe(400);
    timers.advance(400);
    expect(clients).toHaveLength(6);
  });

  it("checks idle cameras lightly every checkIntervalSeconds, never alwaysOn ones", async () => {
    const { ingest, timers, clients } = setup({}, { checkIntervalSeconds: 60 });
    timers.advance(1000); // the first check within a second of start
    expect(clients).toHaveLength(1);
    expect(clients[0]!.probed).toBe(true);
    expect(clients[0]!.opts.sink).not.toBeUndefined();
    clients[0]!.settleProbe.reject(refused());
    await flush();
    expect(ingest.status()).toMatchObject({ state: "idle", camera: { state: "idle", reachability: "unreachable", reason: "the recorder does not answer (connection refused)" } });
    timers.advance(59_999);
    expect(clients).toHaveLength(1);
    timers.advance(1);
    expect(clients).toHaveLength(2);
    clients[1]!.settleProbe.resolve({ specs: [], unsupported: [{ mediaIndex: 0, type: "video", reason: "H.265 cannot be played by browsers" }], url: "rtsp://x" });
    await flush();
    expect(ingest.status().camera).toMatchObject({ reachability: "failing", reason: "nothing a browser can play: H.265 cannot be played by browsers" });
    expect(ingest.status().unsupported).toEqual([{ type: "video", reason: "H.265 cannot be played by browsers" }]);
    timers.advance(60_000);
    clients[2]!.settleProbe.resolve({ specs: [H264], unsupported: [], url: "rtsp://x" });
    await flush();
    expect(ingest.status().camera).toMatchObject({ state: "idle", reachability: "reachable" });
    await ingest.close();
    expect(timers.armed).toBe(0);

    const always = setup({ alwaysOn: true }, { checkIntervalSeconds: 60 });
    always.last().play();
    always.timers.advance(600_000);
    expect(always.clients).toHaveLength(1);
    expect(always.clients[0]!.probed).toBe(false);
  });
});

describe("failureKey (which failures count as the same one again in the log)", () => {
  it("compares failures by their type and typed details, not by their text", async () => {
    const { RtspStatusError, UpstreamLostError } = await import("../../gateway/rtsp/status.ts");
    const { failureKey } = await import("../../gateway/ingest/camera-ingest.ts");
    const reset = (msg: string) => new UpstreamError(msg, { cause: Object.assign(new Error("x"), { code: "ECONNRESET" }) });
    expect(failureKey(reset("connection to 10.0.0.9:554 reset"))).toBe(failureKey(reset("connection to 10.0.0.9:554 reset (again, other words)")));
    expect(failureKey(reset("a"))).not.toBe(failureKey(new UpstreamError("a", { cause: Object.assign(new Error("x"), { code: "ECONNREFUSED" }) })));
    expect(failureKey(new RtspStatusError("DESCRIBE", 404, "Not Found"))).not.toBe(failureKey(new RtspStatusError("DESCRIBE", 503, "")));
    expect(failureKey(new UpstreamLostError("no-media", "x"))).not.toBe(failureKey(new UpstreamLostError("rtcp-bye", "x")));
    expect(failureKey(new AuthError("UNAUTHORIZED", "a"))).not.toBe(failureKey(new AuthError("FORBIDDEN", "a")));
  });
});
