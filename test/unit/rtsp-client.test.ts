/**
 * RtspClient against a scripted recorder on loopback: auth, redirects, transports,
 * keep-alive, timeouts, TLS. Real sockets; virtual time where timers matter.
 */
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { generate } from "selfsigned";
import { AuthError, ClosedError, UpstreamError } from "../../config/errors.ts";
import { silentLogger } from "../../config/log.ts";
import { RtspClient, type PlaySession, type RtspClientOptions } from "../../gateway/rtsp/client.ts";
import { digestResponse } from "../../gateway/digest/client.ts";
import { parseCredentials } from "../../gateway/digest/server.ts";
import { isPermanent, RecorderPolicyError, UnplayableError } from "../../gateway/rtsp/status.ts";
import { parseRtspUrl, redirectAllowed } from "../../gateway/rtsp/url.ts";
import { UdpPortPool } from "../../gateway/ingest/udp-ports.ts";
import { parseRtcp, type ReceiverReport, type SourceDescription } from "../../sfu/rtp/rtcp.ts";
import { cameraSdp, rtpPacket, startFakeRecorder, wellBehaved, type FakeRecorder, type Handler } from "../fixtures/rtsp/fake-recorder.ts";
import { FakeTimers } from "../fixtures/rtsp/fake-timers.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function recorder(h: Handler, opts?: Parameters<typeof startFakeRecorder>[1]): Promise<FakeRecorder> {
  const r = await startFakeRecorder(h, opts);
  cleanups.push(() => r.close());
  return r;
}

function client(url: string, extra: Partial<RtspClientOptions> = {}) {
  const got: string[] = [];
  const c = new RtspClient({
    url,
    transport: "tcp",
    requestTimeoutMs: 2000,
    mediaTimeoutMs: 5000,
    log: silentLogger,
    sink: {
      pushRtp: (t, p) => void got.push(`rtp${t}:${p.readUInt16BE(2)}`),
      pushRtcp: (t) => void got.push(`rtcp${t}`),
    },
    onPlay: (s) => void got.push(`play:${s.specs.map((x) => x.codec).join(",")}`),
    ...extra,
  });
  cleanups.push(() => c.close("test end"));
  return { c, got };
}

function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - t0 > timeoutMs) reject(new Error("condition not met in time"));
      else setImmediate(tick);
    };
    tick();
  });
}

/** Wraps a handler behind Digest auth (realm "cam"); `stale` makes the first authorized SETUP answer stale=true. */
function digestGuard(inner: Handler, user: string, pass: string, opts: { stale?: boolean; algorithm?: string } = {}): Handler {
  let nonce = "n0";
  let staleSent = false;
  const alg = opts.algorithm ? `, algorithm=${opts.algorithm}, qop="auth"` : "";
  return (req, conn) => {
    const creds = parseCredentials(req.headers.get("Authorization") ?? "");
    const p = creds?.params;
    const algorithm = (p?.get("algorithm") ?? "MD5") as "MD5" | "SHA-256";
    const ok =
      creds?.scheme.toLowerCase() === "digest" &&
      p?.get("nonce") === nonce &&
      p.get("response") ===
        digestResponse({
          algorithm, sess: false, username: user, password: pass, realm: "cam", nonce, method: req.method, uri: p.get("uri")!,
          qop: p.get("qop") as "auth" | undefined, nc: p.get("nc"), cnonce: p.get("cnonce"),
        }) &&
      p.get("uri") === req.uri;
    if (ok && opts.stale && req.method === "SETUP" && !staleSent) {
      staleSent = true;
      nonce = "n1";
      return { status: 401, headers: { "WWW-Authenticate": `Digest realm="cam", nonce="${nonce}", stale=true${alg}` } };
    }
    if (!ok) return { status: 401, headers: { "WWW-Authenticate": `Digest realm="cam", nonce="${nonce}"${alg}` } };
    return inner(req, conn);
  };
}

describe("authentication", () => {
  const basicOnly = (): Handler => (req, conn) => {
    if (req.headers.get("Authorization") !== "Basic " + Buffer.from("adm in:pa:ss").toString("base64"))
      return { status: 401, headers: { "WWW-Authenticate": 'Basic realm="cam"' } };
    return wellBehaved()(req, conn);
  };

  it("answers Basic over plain rtsp:// only when the camera opts in, and keeps sending it", async () => {
    const rec = await recorder(basicOnly());
    const { c } = client(rec.url.replace("rtsp://", "rtsp://adm%20in:pa%3Ass@"), { basicOverPlainRtsp: true });
    const s = await c.start();
    expect(s.auth).toBe("basic");
    const afterAuth = rec.requests.slice(2).map((r) => r.req.headers.has("Authorization"));
    expect(afterAuth.every(Boolean)).toBe(true);
  });

  // A recorder asking for Basic over plain rtsp:// got the password in clear.
  it("regression: refuses Basic over plain rtsp:// unless the camera opts in; the password is never sent", async () => {
    const rec = await recorder(basicOnly());
    const err = await client(rec.url, { username: "adm in", password: "pa:ss" }).c.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecorderPolicyError);
    expect((err as RecorderPolicyError).policy).toBe("basic_over_plain_rtsp");
    expect(isPermanent(err as RecorderPolicyError)).toBe(true);
    expect((err as Error).message).toBe(
      "OPTIONS: the recorder asks for Basic authentication over plain rtsp://, which would send the password in clear; refused " +
        "(use rtsps://, turn on Digest at the recorder, or set basicOverPlainRtsp for this camera)",
    );
    expect(rec.requests.map((r) => r.req.headers.has("Authorization"))).toEqual([false]);
    // Digest offered beside Basic: the stronger scheme is used, no opt-in needed.
    const digest = digestGuard(wellBehaved(), "u", "p");
    rec.setHandler(async (req, conn) => {
      const r = await digest(req, conn);
      return r?.status === 401 ? { status: 401, headers: { "WWW-Authenticate": ['Basic realm="cam"', r.headers!["WWW-Authenticate"]!].join(", ") } } : r;
    });
    expect((await client(rec.url, { username: "u", password: "p" }).c.start()).auth).toBe("digest MD5");
  });

  it("answers Basic over rtsps:// without an opt-in (TLS keeps the password private)", async () => {
    const pems = await generate([{ name: "commonName", value: "localhost" }], { keyType: "ec", algorithm: "sha256" });
    const rec = await recorder(basicOnly(), { tls: { cert: pems.cert, key: pems.private } });
    const s = await client(rec.url, { username: "adm in", password: "pa:ss", tlsInsecure: true }).c.start();
    expect(s.auth).toBe("basic");
  });

  it("retries with the new nonce on stale=true instead of failing", async () => {
    const rec = await recorder(digestGuard(wellBehaved(), "u", "p", { stale: true, algorithm: "SHA-256" }));
    const { c } = client(rec.url, { username: "u", password: "p" });
    const s = await c.start();
    expect(s.auth).toBe("digest SHA-256 qop=auth");
    const setups = rec.requests.filter((r) => r.req.method === "SETUP");
    expect(setups).toHaveLength(2);
    expect(parseCredentials(setups[1]!.req.headers.get("Authorization")!)!.params.get("nonce")).toBe("n1");
  });

  it("reports a wrong password clearly, as AuthError", async () => {
    const rec = await recorder(digestGuard(wellBehaved(), "u", "right"));
    const { c } = client(rec.url, { username: "u", password: "wrong" });
    const err = await c.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).code).toBe("UNAUTHORIZED");
    // this recorder guards OPTIONS too, so the first request already tells
    expect((err as Error).message).toBe("OPTIONS: recorder rejected the credentials (401 Unauthorized): wrong user name or password");
    expect(rec.requests).toHaveLength(2); // one try, one retry: no hammering
  });

  it("says when credentials are missing or the scheme is unsupported", async () => {
    const rec = await recorder(digestGuard(wellBehaved(), "u", "p"));
    await expect(client(rec.url).c.start()).rejects.toThrow("OPTIONS: recorder requires credentials and none are configured");
    rec.setHandler(() => ({ status: 401, headers: { "WWW-Authenticate": "Negotiate, NTLM" } }));
    await expect(client(rec.url, { username: "u", password: "p" }).c.start()).rejects.toThrow(
      "OPTIONS: no supported authentication scheme offered (negotiate, ntlm)",
    );
  });
});

describe("redirects", () => {
  it("follows a redirect to the same recorder keeping credentials", async () => {
    const guarded = digestGuard(wellBehaved(), "u", "p");
    const rec = await recorder((req, conn) =>
      req.uri.endsWith("/old") ? { status: 301, headers: { Location: "/new" } } : guarded(req, conn),
    );
    const { c } = client(rec.url.replace("/stream", "/old"), { username: "u", password: "p" });
    const s = await c.start();
    expect(s.url).toBe(`rtsp://127.0.0.1:${rec.port}/new`);
    expect(rec.connections()).toBe(2);
  });

  it("does not send credentials to another host, and bounds redirect loops", async () => {
    const other = await recorder(digestGuard(wellBehaved(), "u", "p"));
    const rec = await recorder(() => ({ status: 302, headers: { Location: other.url } }));
    await expect(client(rec.url, { username: "u", password: "p" }).c.start()).rejects.toThrow(/none are configured/);
    expect(other.requests.some((r) => r.req.headers.has("Authorization"))).toBe(false);
    rec.setHandler((req) => ({ status: 302, headers: { Location: req.uri + "x" } }));
    await expect(client(rec.url, { maxRedirects: 2 }).c.start()).rejects.toThrow("too many redirects (more than 2)");
  });

  // A recorder's redirect led the gateway to any host and port.
  it("regression: follows a redirect to another host only when the camera lists it in redirectHosts", async () => {
    const other = await recorder(wellBehaved(), { host: "127.0.0.2" });
    const rec = await recorder(() => ({ status: 302, headers: { Location: other.url } }));
    const err = await client(rec.url).c.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecorderPolicyError);
    expect((err as RecorderPolicyError).policy).toBe("redirect_host");
    expect((err as Error).message).toBe("redirect to another host (127.0.0.2) refused; list it in the camera's redirectHosts to allow it");
    expect(other.connections()).toBe(0);
    // Listed (an equivalent spelling of the address): followed.
    const s = await client(rec.url, { redirectHosts: ["127.0.0.2"] }).c.start();
    expect(s.url).toBe(other.url);
    expect(other.connections()).toBe(1);
  });

  it("redirect hosts compare as written: IP literals canonically, names case-insensitively, never resolved", () => {
    const to = (u: string) => parseRtspUrl(u);
    expect(redirectAllowed("cam.example", to("rtsp://CAM.example.:8554/x"))).toBe(true);
    expect(redirectAllowed("10.0.0.5", to("rtsp://10.0.0.6/x"))).toBe(false);
    expect(redirectAllowed("10.0.0.5", to("rtsp://10.0.0.6/x"), ["10.0.0.6"])).toBe(true);
    expect(redirectAllowed("fd00::1", to("rtsp://[fd00:0:0::1]:554/x"))).toBe(true);
    expect(redirectAllowed("fd00::1", to("rtsp://[fd00::2]/x"), ["[FD00:0::2]"])).toBe(true);
    // A name is not its address: the gateway does not look names up to decide.
    expect(redirectAllowed("localhost", to("rtsp://127.0.0.1/x"))).toBe(false);
  });
});

describe("session setup", () => {
  it("uses the channels the server assigns and drops frames on others", async () => {
    const rec = await recorder(
      wellBehaved({
        transportReply: () => "RTP/AVP/TCP;unicast;interleaved=6-7;ssrc=00001234",
        onPlay: (conn) => {
          conn.frame(6, rtpPacket(10));
          conn.frame(0, rtpPacket(11));
          conn.frame(7, Buffer.from("80c8000100001234", "hex"));
        },
      }),
    );
    const { c, got } = client(rec.url);
    await c.start();
    await until(() => got.length >= 3);
    expect(got).toEqual(["play:H264", "rtp0:10", "rtcp0"]);
    expect(c.stats().drops.unknownChannel).toBe(1);
  });

  it("delivers media sent before and with the PLAY answer only after onPlay, in order", async () => {
    const rec = await recorder((req, conn) => {
      if (req.method !== "PLAY") return wellBehaved()(req, conn);
      conn.frame(0, rtpPacket(1)); // servers may start sending before they answer
      conn.respond(req, 200, { Session: "ABCDEF" });
      conn.frame(0, rtpPacket(2));
      return undefined;
    });
    const { c, got } = client(rec.url);
    await c.start();
    await until(() => got.length >= 3);
    expect(got).toEqual(["play:H264", "rtp0:1", "rtp0:2"]);
  });

  it("tries TCP first in auto mode and falls back to UDP on 461, and plays per track on 459", async () => {
    const rec = await recorder((req, conn) => {
      if (req.method === "SETUP" && /TCP/.test(req.headers.get("Transport")!)) return { status: 461 };
      if (req.method === "PLAY" && req.uri.endsWith("/stream/")) return { status: 459 };
      return wellBehaved({ sdp: cameraSdp({ audio: true }) })(req, conn);
    });
    const { c } = client(rec.url, { transport: "auto", ports: new UdpPortPool([41000, 41099]) });
    const s = await c.start();
    expect(s.transport).toBe("udp");
    expect(s.specs.map((t) => t.codec)).toEqual(["H264", "PCMU"]);
    const transports = rec.requests.filter((r) => r.req.method === "SETUP").map((r) => r.req.headers.get("Transport"));
    expect(transports[0]).toBe("RTP/AVP/TCP;unicast;interleaved=0-1");
    expect(transports.slice(1)).toHaveLength(2);
    for (const t of transports.slice(1)) expect(t).toMatch(/^RTP\/AVP;unicast;client_port=410\d\d-410\d\d$/);
    const plays = rec.requests.filter((r) => r.req.method === "PLAY").map((r) => r.req.uri);
    expect(plays).toEqual([`${rec.url}/`, `${rec.url}/track1`, `${rec.url}/track2`]);
    await c.close();
  });

  it("plays TCP interleaved in auto mode when the recorder accepts it", async () => {
    const rec = await recorder(wellBehaved());
    const { c } = client(rec.url, { transport: "auto", ports: new UdpPortPool([41100, 41199]) });
    const s = await c.start();
    expect(s.transport).toBe("tcp");
    expect(rec.requests.filter((r) => r.req.method === "SETUP").map((r) => r.req.headers.get("Transport"))).toEqual([
      "RTP/AVP/TCP;unicast;interleaved=0-1",
    ]);
    await c.close();
  });

  it("refuses non-SDP answers and recorders with nothing playable", async () => {
    const rec = await recorder((req, conn) =>
      req.method === "DESCRIBE" ? { status: 200, headers: { "Content-Type": "text/html" }, body: "<html>" } : wellBehaved()(req, conn),
    );
    await expect(client(rec.url).c.start()).rejects.toThrow("DESCRIBE answer is text/html, not application/sdp");
    rec.setHandler(wellBehaved({ sdp: cameraSdp().replace("H264/90000", "H265/90000") }));
    const err = await client(rec.url).c.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnplayableError);
    expect((err as Error).message).toMatch(/^no playable track: H\.265 video cannot be played by this browser/);
  });

  it("times out a request the recorder never answers", async () => {
    const rec = await recorder((req) => (req.method === "DESCRIBE" ? undefined : { status: 200 }));
    const t0 = Date.now();
    await expect(client(rec.url, { requestTimeoutMs: 300 }).c.start()).rejects.toThrow("DESCRIBE: no answer within 300 ms");
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("matches answers by CSeq, ignoring a stale one, and answers the server's own requests", async () => {
    const rec = await recorder((req, conn) => {
      if (req.method === "DESCRIBE") {
        conn.write("RTSP/1.0 200 OK\r\nCSeq: 999\r\n\r\n");
        conn.write("OPTIONS * RTSP/1.0\r\nCSeq: 77\r\n\r\n");
      }
      return wellBehaved()(req, conn);
    });
    const { c } = client(rec.url);
    await c.start();
    expect(c.stats().unmatchedResponses).toBe(1);
  });
});

describe("while playing", () => {
  async function playing(h: Handler, extra: Partial<RtspClientOptions> = {}) {
    const rec = await recorder(h);
    const timers = new FakeTimers();
    const ended: string[] = [];
    const { c, got } = client(rec.url, { timers, ...extra });
    c.events.on("ended", (e) => void ended.push(e.message));
    const s: PlaySession = await c.start();
    return { rec, timers, c, got, s, ended };
  }

  it("keeps the session alive with GET_PARAMETER at timeout/2 and TEARDOWNs on close", async () => {
    const { rec, timers, c, s } = await playing(wellBehaved({ session: "S1;timeout=20" }), { mediaTimeoutMs: 60_000 });
    expect(s).toMatchObject({ sessionId: "S1", timeoutSec: 20, keepAlive: "GET_PARAMETER" });
    timers.advance(9_999);
    expect(rec.requests.some((r) => r.req.method === "GET_PARAMETER")).toBe(false);
    timers.advance(1);
    const ka = await rec.waitForRequest((r) => r.method === "GET_PARAMETER");
    expect(ka.headers.get("Session")).toBe("S1");
    expect(ka.uri).toBe(`${rec.url}/`);
    await until(() => c.stats().keepAlives === 1);
    await c.close("bye");
    const td = await rec.waitForRequest((r) => r.method === "TEARDOWN");
    expect(td.headers.get("Session")).toBe("S1");
  });

  it("uses OPTIONS when GET_PARAMETER is not public, and ends on 454", async () => {
    let expire = false;
    const base = wellBehaved({ noGetParameter: true });
    const { rec, timers, ended } = await playing((req, conn) => (expire && req.method === "OPTIONS" ? { status: 454 } : base(req, conn)), {
      mediaTimeoutMs: 600_000,
    });
    expire = true;
    timers.advance(30_000);
    await rec.waitForRequest((r) => r.method === "OPTIONS" && r.headers.get("Session") === "ABCDEF");
    await until(() => ended.length === 1);
    expect(ended).toEqual(["session expired on the recorder (454 Session Not Found)"]);
  });

  it("reports reception to the recorder over the track's interleaved RTCP channel (RR + SDES CNAME)", async () => {
    // RTP 1–5 without 3, then an SR from the same source.
    const sr = Buffer.from("80c80006" + "00001234" + "dead0001" + "80000000" + "00000000" + "00000000" + "00000000", "hex");
    const { rec, timers, c, got } = await playing(
      wellBehaved({
        onPlay: (conn) => {
          for (const seq of [1, 2, 4, 5]) conn.frame(0, rtpPacket(seq));
          conn.frame(1, sr);
        },
      }),
      { mediaTimeoutMs: 600_000, rtcpIntervalMs: 5000 },
    );
    await until(() => got.includes("rtcp0"));
    timers.advance(7500); // the first report is due within 0.5–1.5 intervals
    const f = await rec.waitForFrame((x) => x.channel === 1);
    const items = parseRtcp(f.data);
    expect(items.map((i) => i.type)).toEqual(["rr", "sdes"]);
    const rr = items[0] as ReceiverReport;
    expect(rr.reports).toEqual([
      expect.objectContaining({ ssrc: 0x1234, highestSeq: 5, cumulativeLost: 1, fractionLost: 51, lsr: 0x00018000 }),
    ]);
    const sdes = items[1] as SourceDescription;
    expect(sdes.chunks[0]!.ssrc).toBe(rr.ssrc);
    expect(sdes.chunks[0]!.items[0]!.value).toMatch(/^gatehouse-[0-9a-f]{12}$/);
    // And again each interval while playing (each within 0.5–1.5 of it, so 7.5 s may hold two).
    await until(() => c.stats().rtcpOut === rec.frames.length);
    const before = rec.frames.length;
    expect(before).toBeGreaterThanOrEqual(1);
    timers.advance(7500);
    await until(() => rec.frames.length > before);
  });

  it("reports reception over UDP from the track's RTCP socket to the recorder's RTCP port", async () => {
    const serverRtcp = dgram.createSocket("udp4");
    await new Promise<void>((r) => serverRtcp.bind(0, "127.0.0.1", () => r()));
    cleanups.push(() => new Promise<void>((r) => serverRtcp.close(() => r())));
    const rtcpPort = serverRtcp.address().port;
    // The first datagrams are the empty RRs that open a NAT's return path (punch); the report carries SDES too.
    const report = new Promise<{ data: Buffer; port: number }>((r) => serverRtcp.on("message", (data, from) => data.length > 8 && r({ data, port: from.port })));
    const { timers, c } = await playing(wellBehaved({ transportReply: (t) => `${t};server_port=${rtcpPort - 1}-${rtcpPort}` }), {
      transport: "udp",
      ports: new UdpPortPool([42100, 42199]),
      mediaTimeoutMs: 600_000,
    });
    timers.advance(7500);
    const { data, port } = await report;
    expect(parseRtcp(data).map((i) => i.type)).toEqual(["rr", "sdes"]);
    // No RTP yet: an RR with no report block, still a sign of life.
    expect((parseRtcp(data)[0] as ReceiverReport).reports).toEqual([]);
    expect(port % 2).toBe(1); // from our RTCP port (client_port's odd half)
    expect(c.stats().rtcpOut).toBeGreaterThanOrEqual(1);
  });

  it("ends the session when media stops for mediaTimeoutMs", async () => {
    const { timers, ended, rec } = await playing(wellBehaved({ onPlay: (conn) => conn.frame(0, rtpPacket(1)) }), { mediaTimeoutMs: 4000 });
    await until(() => true);
    timers.advance(3999);
    expect(ended).toEqual([]);
    timers.advance(2000);
    expect(ended).toEqual(["no media for 4000 ms"]);
    await rec.waitForRequest((r) => r.method === "TEARDOWN");
  });

  it("ends when the recorder drops the connection; close() afterwards is harmless", async () => {
    let conn0: { destroy(): void } | undefined;
    const { c, ended } = await playing(wellBehaved({ onPlay: (conn) => (conn0 = conn) }));
    conn0!.destroy();
    await until(() => ended.length === 1);
    expect(ended[0]).toBe("recorder closed the connection");
    await c.close();
    await c.close();
  });

  it("rejects start() with ClosedError when closed mid-setup", async () => {
    const rec = await recorder((req, conn) => (req.method === "SETUP" ? undefined : wellBehaved()(req, conn)));
    const { c } = client(rec.url);
    const p = c.start();
    await rec.waitForRequest((r) => r.method === "SETUP");
    await c.close("shutting down");
    await expect(p).rejects.toBeInstanceOf(ClosedError);
  });
});

describe("rtsps://", () => {
  it("fails closed on an untrusted certificate and plays with tlsInsecure", async () => {
    const pems = await generate([{ name: "commonName", value: "localhost" }], { keyType: "ec", algorithm: "sha256" });
    const rec = await recorder(wellBehaved(), { tls: { cert: pems.cert, key: pems.private } });
    const err = await client(rec.url).c.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/^TLS connection to 127\.0\.0\.1:\d+ failed: .*(SELF_SIGNED|CERT)/);
    const { c } = client(rec.url, { tlsInsecure: true });
    expect((await c.start()).url).toBe(rec.url);
  });
});
