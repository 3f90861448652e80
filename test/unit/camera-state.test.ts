/**
 * The camera's user-facing state machine on an injected clock: what a person is told
 * the moment a signal says the recorder is gone, and what the ingest does with it.
 */
import { describe, expect, it } from "vitest";
import { AuthError, UpstreamError } from "../../config/errors.ts";
import { CameraStateMachine, describeFailure } from "../../gateway/ingest/camera-state.ts";
import { RecorderPolicyError, RtspStatusError, UnplayableError, UpstreamLostError } from "../../gateway/rtsp/status.ts";

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const refused = () =>
  new UpstreamError("connection to 127.0.0.1:554 failed: ECONNREFUSED", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });

describe("CameraStateMachine", () => {
  it("goes idle → connecting → live → reconnecting → offline → live, with times from the clock", () => {
    const c = clock();
    const m = new CameraStateMachine(c.now);
    const t0 = c.now();
    expect(m.status()).toEqual({ state: "idle", reachability: "unknown", since: t0, failures: 0 });
    c.advance(10);
    expect(m.attempt()).toBe(true);
    expect(m.status()).toMatchObject({ state: "connecting", since: t0 + 10 });
    c.advance(90);
    m.live();
    expect(m.status()).toEqual({ state: "live", reachability: "reachable", since: t0 + 100, lastLiveAt: t0 + 100, failures: 0 });
    c.advance(60_000);
    const lostAt = c.now();
    m.lost(new UpstreamLostError("connection-closed", "recorder closed the connection"));
    expect(m.status()).toEqual({
      state: "reconnecting",
      reachability: "unreachable",
      reason: "the recorder closed the connection",
      detail: "recorder closed the connection",
      lostBy: "connection-closed",
      since: lostAt,
      downSince: lostAt,
      lastLiveAt: lostAt,
      failures: 0,
    });
    // Retrying does not hide anything: still reconnecting until an attempt fails or plays.
    expect(m.attempt()).toBe(false);
    c.advance(5);
    m.failed(refused());
    expect(m.status()).toMatchObject({
      state: "offline",
      reachability: "unreachable",
      reason: "the recorder does not answer (connection refused)",
      since: lostAt + 5,
      downSince: lostAt,
      lastLiveAt: lostAt,
      failures: 1,
    });
    c.advance(500);
    m.failed(refused());
    expect(m.status()).toMatchObject({ state: "offline", since: lostAt + 5, failures: 2 });
    c.advance(500);
    m.live();
    const back = m.status();
    expect(back).toMatchObject({ state: "live", reachability: "reachable", failures: 0, lastLiveAt: c.now(), since: c.now() });
    expect(back.reason).toBeUndefined();
    expect(back.downSince).toBeUndefined();
  });

  it("says which signal ended the session, and whether the recorder still answers", () => {
    const cases = [
      [new UpstreamLostError("rtcp-bye", "bye"), "rtcp-bye", "failing", "the recorder ended the stream"],
      [new UpstreamLostError("no-media", "no media for 5000 ms"), "no-media", "unreachable", "the recorder stopped sending video"],
      [new UpstreamLostError("session-error", "454"), "session-error", "failing", "the recorder dropped the session"],
      [
        new UpstreamLostError("connection-reset", "connection to recorder failed: ECONNRESET", { cause: Object.assign(new Error("x"), { code: "ECONNRESET" }) }),
        "connection-reset",
        "unreachable",
        "the connection to the recorder was lost (connection reset)",
      ],
    ] as const;
    for (const [err, signal, reachability, reason] of cases) {
      const m = new CameraStateMachine(clock().now);
      m.attempt();
      m.live();
      m.lost(err);
      expect(m.status()).toMatchObject({ state: "reconnecting", lostBy: signal, reachability, reason });
    }
  });

  it("a first attempt that fails is offline at once (no spinner), and a permanent failure is failed", () => {
    const c = clock();
    const m = new CameraStateMachine(c.now);
    m.attempt();
    c.advance(20);
    m.failed(refused());
    expect(m.status()).toMatchObject({ state: "offline", downSince: c.now(), failures: 1 });
    const p = new CameraStateMachine(c.now);
    p.attempt();
    p.failed(new AuthError("UNAUTHORIZED", "DESCRIBE: recorder rejected the credentials (401 Unauthorized)"));
    expect(p.status()).toMatchObject({ state: "failed", reachability: "failing", reason: "the recorder refused the user name or password" });
  });

  it("lost() outside live changes nothing; idle keeps what was learnt", () => {
    const c = clock();
    const m = new CameraStateMachine(c.now);
    expect(m.lost(new UpstreamLostError("no-media", "x"))).toBe(false);
    m.attempt();
    m.failed(refused());
    c.advance(1000);
    m.idle();
    expect(m.status()).toMatchObject({ state: "idle", reachability: "unreachable", since: c.now(), failures: 0 });
    expect(m.status().reason).toBeUndefined();
  });

  it("light checks of an idle camera set reachability and reason, and only record the time otherwise", () => {
    const c = clock();
    const m = new CameraStateMachine(c.now);
    expect(m.checked(refused())).toBe(true);
    expect(m.status()).toMatchObject({ state: "idle", reachability: "unreachable", reason: "the recorder does not answer (connection refused)", checkedAt: c.now() });
    c.advance(60_000);
    expect(m.checked(undefined)).toBe(true);
    expect(m.status()).toMatchObject({ state: "idle", reachability: "reachable", checkedAt: c.now() });
    expect(m.status().reason).toBeUndefined();
    c.advance(60_000);
    expect(m.checked(undefined)).toBe(false); // nothing a listener would see changed but the time
    m.checked(new UnplayableError("no playable track: H.265 cannot be played by browsers"));
    expect(m.status()).toMatchObject({ reachability: "failing", reason: "nothing a browser can play: H.265 cannot be played by browsers" });
    m.attempt();
    m.live();
    c.advance(5);
    expect(m.checked(refused())).toBe(false);
    expect(m.status()).toMatchObject({ state: "live", reachability: "reachable", checkedAt: c.now() });
  });
});

describe("describeFailure", () => {
  it("puts recorder failures in plain words, keeping the technical message", () => {
    expect(describeFailure(new RtspStatusError("DESCRIBE", 404, "Not Found"))).toEqual({
      kind: "permanent",
      reason: "the recorder does not know this stream (404 Not Found)",
      detail: "DESCRIBE: recorder answered 404 Not Found",
    });
    expect(describeFailure(new RtspStatusError("SETUP", 503, "Service Unavailable"))).toMatchObject({
      kind: "failing",
      reason: "the recorder answered 503 Service Unavailable",
    });
    const timeout = new UpstreamError("connection to 10.0.0.9:554 failed: ETIMEDOUT", { cause: Object.assign(new Error("t"), { code: "ETIMEDOUT" }) });
    expect(describeFailure(timeout)).toMatchObject({ kind: "unreachable", reason: "the recorder does not answer (timed out)" });
    const tls = new UpstreamError("TLS connection failed: DEPTH_ZERO_SELF_SIGNED_CERT", { cause: Object.assign(new Error("c"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }) });
    expect(describeFailure(tls)).toMatchObject({ kind: "failing" });
    const policy = new RecorderPolicyError("redirect_host", "redirect to another host (10.0.0.7) refused; list it in the camera's redirectHosts to allow it");
    expect(describeFailure(policy)).toEqual({ kind: "permanent", reason: policy.message, detail: policy.message });
  });
});
