/**
 * The demo recorder's RTSP session handling, driven over a raw TCP socket (and a UDP
 * socket for UDP transport) with an injected clock and timers: pacing, loops, timeouts
 * and reports are exercised without sleeping.
 */
import { afterEach, describe, expect, it } from "vitest";
import dgram from "node:dgram";
import { once } from "node:events";
import { createLogger } from "../../config/log.ts";
import { parseTransport, type DemoRecorder, type DemoRecorderOptions } from "../../gateway/demo/recorder.ts";
import type { RtspResponse } from "../../gateway/rtsp/message.ts";
import { digestResponse, parseChallenges } from "../../gateway/digest/client.ts";
import { parseRtpHeader } from "../../sfu/rtp/packet.ts";
import { parseRtcp, type RtcpItem } from "../../sfu/rtp/rtcp.ts";
import { seqDiff } from "../../sfu/rtp/seq.ts";
import { H264Depacketizer, type AccessUnit } from "../../sfu/h264/depacketizer.ts";
import { h264PayloadIsKeyframeStart, parseSps, parseSpropParameterSets } from "../../sfu/h264/nal.ts";
import { ntpToUnixMs } from "../../sfu/rtp/ntp.ts";
import { RawClient, WALL0, start } from "./demo-rtsp-helpers.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(extra: Partial<DemoRecorderOptions> = {}) {
  const s = await start(extra);
  cleanups.push(() => s.rec.close());
  const client = new RawClient(s.rec.port);
  cleanups.push(() => client.close());
  await client.ready();
  return { ...s, client };
}

function sessionOf(r: RtspResponse): string {
  return r.headers.get("session")!.split(";")[0]!;
}

/** SETUP both tracks over TCP and PLAY; returns the session id and the PLAY response. */
async function playTcp(client: RawClient, rec: DemoRecorder) {
  const s1 = await client.request("SETUP", `${rec.url}/trackID=0`, { Transport: "RTP/AVP/TCP;unicast;interleaved=0-1" });
  expect(s1.status).toBe(200);
  const session = sessionOf(s1);
  const s2 = await client.request("SETUP", `${rec.url}/trackID=1`, { Transport: "RTP/AVP/TCP;unicast;interleaved=2-3", Session: session });
  expect(s2.status).toBe(200);
  const play = await client.request("PLAY", rec.url, { Session: session, Range: "npt=0.000-" });
  expect(play.status).toBe(200);
  return { session, play, setups: [s1, s2] };
}

function rtpInfo(play: RtspResponse): { url: string; seq: number; rtptime: number }[] {
  return play.headers
    .get("rtp-info")!
    .split(",")
    .map((part) => {
      const kv = Object.fromEntries(part.split(";").map((p) => p.trim().split("=", 2) as [string, string]));
      return { url: part.split(";")[0]!.slice(4), seq: Number(kv.seq), rtptime: Number(kv.rtptime) };
    });
}

describe("demo recorder: RTSP methods", () => {
  it("answers OPTIONS and DESCRIBE with an SDP a recorder would send", async () => {
    const { rec, client } = await setup();
    expect(rec.url).toMatch(/^rtsp:\/\/127\.0\.0\.1:\d+\/demo$/);
    const o = await client.request("OPTIONS", rec.url);
    expect(o.status).toBe(200);
    expect(o.headers.get("cseq")).toBe("1");
    expect(o.headers.get("public")).toContain("DESCRIBE");

    const d = await client.request("DESCRIBE", rec.url, { Accept: "application/sdp" });
    expect(d.status).toBe(200);
    expect(d.headers.get("content-type")).toBe("application/sdp");
    expect(d.headers.get("content-base")).toBe(rec.url + "/");
    const sdp = d.body.toString();
    expect(sdp).toMatch(/^v=0\r\n/);
    expect(sdp).toContain("m=video 0 RTP/AVP 96\r\n");
    expect(sdp).toContain("a=rtpmap:96 H264/90000\r\n");
    expect(sdp).toContain("a=control:trackID=0\r\n");
    expect(sdp).toContain("m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:trackID=1\r\n");
    const fmtp = /a=fmtp:96 (.*)\r\n/.exec(sdp)![1]!;
    expect(fmtp).toContain("packetization-mode=1");
    expect(fmtp).toContain("profile-level-id=42c01e");
    const sets = parseSpropParameterSets(fmtp);
    expect(parseSps(sets.sps[0]!)).toMatchObject({ width: 640, height: 360, profile: "Constrained Baseline" });
    expect(sets.pps).toHaveLength(1);

    expect((await client.request("DESCRIBE", rec.url.replace("/demo", "/nope"))).status).toBe(404);
  });

  it("answers errors with the right status codes and keeps serving", async () => {
    const { rec, client } = await setup({ maxSessions: 1 });
    const track0 = `${rec.url}/trackID=0`;
    expect((await client.request("SETUP", rec.url, { Transport: "RTP/AVP/TCP;unicast;interleaved=0-1" })).status).toBe(459);
    expect((await client.request("SETUP", `${rec.url}/trackID=7`, { Transport: "RTP/AVP/TCP;interleaved=0-1" })).status).toBe(404);
    expect((await client.request("SETUP", track0, { Transport: "RTP/AVP;multicast;port=5000-5001" })).status).toBe(461);
    expect((await client.request("SETUP", track0, { Transport: "RTP/SAVP;unicast;client_port=5000-5001" })).status).toBe(461);
    expect((await client.request("SETUP", track0, { Transport: "RTP/AVP;unicast" })).status).toBe(461); // UDP needs client_port
    expect((await client.request("SETUP", track0, {})).status).toBe(461);
    expect((await client.request("SETUP", track0, { Transport: "RTP/AVP/TCP;interleaved=0-1", Session: "feedbeef" })).status).toBe(454);
    expect((await client.request("PLAY", rec.url)).status).toBe(454);
    expect((await client.request("TEARDOWN", rec.url, { Session: "nope" })).status).toBe(454);
    expect((await client.request("RECORD", rec.url)).status).toBe(405);
    expect((await client.request("FROBNICATE", rec.url)).status).toBe(501);
    expect((await client.request("OPTIONS", rec.url, { Require: "implicit-play" })).headers.get("unsupported")).toBe("implicit-play");
    expect((await client.request("GET_PARAMETER", rec.url, { "Content-Type": "text/parameters" }, "position\r\n")).status).toBe(451);

    const { session } = await playTcp(client, rec);
    // SETUP on a playing session: 455. A second session beyond maxSessions: 453.
    expect((await client.request("SETUP", `${rec.url}/trackID=1`, { Transport: "RTP/AVP/TCP;interleaved=4-5", Session: session })).status).toBe(455);
    expect((await client.request("SETUP", track0, { Transport: "RTP/AVP/TCP;interleaved=6-7" })).status).toBe(453);

    // Malformed bytes: 400, and the connection keeps working if the framing survived.
    const bad = await client.raw("DESCRIBE this is not rtsp\r\n\r\n");
    expect(bad.status).toBe(400);
    expect((await client.raw("OPTIONS * RTSP/1.0\r\n\r\n")).status).toBe(400); // no CSeq
    expect((await client.request("DESCRIBE", "rtsp://[broken")).status).toBe(400);
    expect((await client.request("OPTIONS", "*")).status).toBe(200);
    expect(rec.stats().badRequests).toBeGreaterThanOrEqual(3);

    // Unrecoverable framing: 400, then the server closes the connection; the recorder lives on.
    const closed = once(client.sock, "close");
    expect((await client.raw(Buffer.from([0x01, 0x02, 0x03, 0x0d, 0x0a]))).status).toBe(400);
    await closed;
    expect(rec.sessions()).toBe(0); // its interleaved session died with it
    const again = new RawClient(rec.port);
    cleanups.push(() => again.close());
    await again.ready();
    expect((await again.request("OPTIONS", rec.url)).status).toBe(200);
  });
});

describe("demo recorder: media over TCP", () => {
  it("paces RTP by timestamp from RTP-Info, with keyframe, SPS/PPS and sender reports", async () => {
    const { rec, client, advance } = await setup();
    const { session, play, setups } = await playTcp(client, rec);
    expect(setups[0]!.headers.get("transport")).toMatch(/^RTP\/AVP\/TCP;unicast;interleaved=0-1;ssrc=[0-9A-F]{8};mode="PLAY"$/);
    expect(setups[0]!.headers.get("session")).toBe(`${session};timeout=60`);
    const info = rtpInfo(play);
    expect(info.map((i) => i.url)).toEqual([`${rec.url}/trackID=0`, `${rec.url}/trackID=1`]);
    expect(rec.sessions()).toBe(1);

    advance(1000);
    await client.sync();
    const video = client.frames.filter((f) => f.channel === 0).map((f) => parseRtpHeader(f.data)!);
    const audio = client.frames.filter((f) => f.channel === 2).map((f) => parseRtpHeader(f.data)!);
    // ~1 s: 25 or 26 frames of video (the frame at t=0 is due immediately), 50–51 audio packets of 20 ms.
    const frames = new Set(video.map((h) => h.timestamp)).size;
    expect(frames).toBeGreaterThanOrEqual(25);
    expect(frames).toBeLessThanOrEqual(26);
    expect(audio.length).toBeGreaterThanOrEqual(50);
    expect(audio.length).toBeLessThanOrEqual(51);
    expect(video[0]!.sequenceNumber).toBe(info[0]!.seq);
    expect(video[0]!.timestamp).toBe(info[0]!.rtptime);
    expect(audio[0]!.sequenceNumber).toBe(info[1]!.seq);
    expect(audio[0]!.timestamp).toBe(info[1]!.rtptime);
    expect(video.every((h) => h.payloadType === 96 && h.ssrc === video[0]!.ssrc)).toBe(true);
    expect(audio.every((h) => h.payloadType === 0 && h.payloadLength === 160)).toBe(true);
    expect(video[0]!.ssrc.toString(16).toUpperCase().padStart(8, "0")).toBe(/ssrc=([0-9A-F]+)/.exec(setups[0]!.headers.get("transport")!)![1]);
    for (let i = 1; i < video.length; i++) expect(seqDiff(video[i]!.sequenceNumber, video[i - 1]!.sequenceNumber)).toBe(1);

    // The first access unit is an IDR with SPS and PPS in band; payloads respect the 1400-byte default.
    const d = new H264Depacketizer();
    const aus: AccessUnit[] = [];
    for (const f of client.frames.filter((x) => x.channel === 0)) {
      const h = parseRtpHeader(f.data)!;
      expect(h.payloadLength).toBeLessThanOrEqual(1400);
      aus.push(...d.push(f.data.subarray(h.payloadOffset), h.sequenceNumber, h.timestamp, h.marker));
    }
    expect(aus[0]!.keyframe).toBe(true);
    expect(aus[0]!.nals.map((n) => n[0]! & 0x1f)).toEqual([7, 8, 5]);
    expect(aus.every((a) => a.complete)).toBe(true);
    expect(aus[1]!.timestamp - aus[0]!.timestamp).toBe(3600);

    // Sender reports on the RTCP channels map wall clock to the RTP clock (RFC 3550 §6.4.1).
    const srs = client.frames
      .filter((f) => f.channel === 1)
      .flatMap((f) => parseRtcp(f.data))
      .filter((i): i is Extract<RtcpItem, { type: "sr" }> => i.type === "sr");
    expect(srs.length).toBeGreaterThanOrEqual(1);
    const sr = srs[srs.length - 1]!;
    expect(sr.ssrc).toBe(video[0]!.ssrc);
    const srWall = ntpToUnixMs(sr.ntpSeconds, sr.ntpFraction);
    const elapsedMs = srWall - (WALL0 + 1000); // play started at clock 1000
    expect(Math.abs(((sr.rtpTimestamp - info[0]!.rtptime) >>> 0) - elapsedMs * 90)).toBeLessThanOrEqual(90);
    expect(client.frames.some((f) => f.channel === 3 && parseRtcp(f.data).some((i) => i.type === "sdes"))).toBe(true);

    expect((await client.request("TEARDOWN", rec.url, { Session: session })).status).toBe(200);
    expect(rec.sessions()).toBe(0);
    const n = client.frames.length;
    advance(500);
    await client.sync();
    expect(client.frames.length).toBe(n);
  });

  it("loops with continuous sequence numbers and timestamps, and resumes after PAUSE", async () => {
    const { rec, client, advance } = await setup({ paths: { ulaw: null } });
    const s1 = await client.request("SETUP", `${rec.url}/trackID=0`, { Transport: "RTP/AVP/TCP;unicast" });
    expect(s1.headers.get("transport")).toContain("interleaved=0-1"); // assigned when the client names none
    const session = sessionOf(s1);
    expect((await client.request("SETUP", `${rec.url}/trackID=1`, { Transport: "RTP/AVP/TCP", Session: session })).status).toBe(404); // no audio track
    await client.request("PLAY", rec.url, { Session: session });
    advance(6000); // the clip is 5 s
    await client.sync();
    expect((await client.request("PAUSE", rec.url, { Session: session })).status).toBe(200);
    const before = client.frames.length;
    advance(2000);
    await client.sync();
    expect(client.frames.length).toBe(before); // nothing while paused
    const resumed = await client.request("PLAY", rec.url, { Session: session });
    advance(500);
    await client.sync();

    const video = client.frames.filter((f) => f.channel === 0).map((f) => parseRtpHeader(f.data)!);
    for (let i = 1; i < video.length; i++) expect(seqDiff(video[i]!.sequenceNumber, video[i - 1]!.sequenceNumber)).toBe(1);
    const ts = [...new Set(video.map((h) => h.timestamp))];
    for (let i = 1; i < ts.length; i++) expect((ts[i]! - ts[i - 1]!) >>> 0).toBe(3600); // 25 fps across the loop and the pause
    expect(ts.length).toBeGreaterThanOrEqual(6.5 * 25);
    // Keyframes (SPS/PPS first) every 2 s within the loop and at each loop start: 0, 2, 4, 5, 7 … s.
    const videoFrames = client.frames.filter((f) => f.channel === 0);
    const keyTs = video.filter((h, i) => h264PayloadIsKeyframeStart(videoFrames[i]!.data.subarray(h.payloadOffset))).map((h) => ((h.timestamp - ts[0]!) >>> 0) / 90000);
    expect([...new Set(keyTs)]).toEqual([0, 2, 4, 5]); // 6.5 s of play time
    const ri = rtpInfo(resumed)[0]!;
    const firstAfter = video[before - client.frames.slice(0, before).filter((f) => f.channel !== 0).length]!;
    expect(firstAfter.sequenceNumber).toBe(ri.seq);
    expect(firstAfter.timestamp).toBe(ri.rtptime);
  });

  it("skips to the next keyframe instead of queueing when the connection backs up", async () => {
    const { rec, client, advance } = await setup({ tcpHighWaterBytes: 1, paths: { ulaw: null } });
    const s1 = await client.request("SETUP", `${rec.url}/trackID=0`, { Transport: "RTP/AVP/TCP;interleaved=0-1" });
    await client.request("PLAY", rec.url, { Session: sessionOf(s1) });
    advance(3000);
    await client.sync();
    expect(rec.stats().packetsSkipped).toBeGreaterThan(0);
    // Whatever got through is whole frames starting at keyframes: the depacketizer sees no broken NAL.
    const d = new H264Depacketizer();
    for (const f of client.frames.filter((x) => x.channel === 0)) {
      const h = parseRtpHeader(f.data)!;
      d.push(f.data.subarray(h.payloadOffset), h.sequenceNumber, h.timestamp, h.marker);
    }
    expect(d.stats.fuDropped).toBe(0);
    expect(d.stats.lost).toBe(0); // skipped packets consume no sequence numbers
  });
});

describe("demo recorder: UDP, keep-alive and timeout", () => {
  it("sends RTP to client_port, answers server_port, and reaps the session after 60 s of silence", async () => {
    // The recorder logs each receiver report at debug level: the test waits on that line, not on time.
    let onReport: () => void = () => {};
    const log = createLogger({ level: "debug", write: (line) => line.includes('"receiver report"') && onReport() });
    const { rec, client, advance } = await setup({ log });
    const rtp = dgram.createSocket("udp4");
    const rtcp = dgram.createSocket("udp4");
    cleanups.push(() => new Promise<void>((r) => rtp.close(() => r())), () => new Promise<void>((r) => rtcp.close(() => r())));
    await new Promise<void>((r) => rtp.bind(0, "127.0.0.1", () => r()));
    await new Promise<void>((r) => rtcp.bind(0, "127.0.0.1", () => r()));
    const got: Buffer[] = [];
    let onPacket: () => void = () => {};
    rtp.on("message", (m) => {
      got.push(m);
      onPacket();
    });
    const srs: RtcpItem[] = [];
    rtcp.on("message", (m) => srs.push(...parseRtcp(m)));

    const s1 = await client.request("SETUP", `${rec.url}/trackID=0`, {
      Transport: `RTP/AVP;unicast;client_port=${rtp.address().port}-${rtcp.address().port};destination=10.9.9.9`,
    });
    expect(s1.status).toBe(200);
    const tr = s1.headers.get("transport")!;
    const sp = /server_port=(\d+)-(\d+)/.exec(tr)!;
    expect(Number(sp[1]) % 2).toBe(0);
    expect(Number(sp[2])).toBe(Number(sp[1]) + 1);
    expect(tr).toContain(`client_port=${rtp.address().port}-${rtcp.address().port}`);
    const session = sessionOf(s1);
    await client.request("PLAY", rec.url, { Session: session });
    const enough = new Promise<void>((r) => (onPacket = () => got.length >= 30 && r()));
    advance(1200);
    await enough;
    const hs = got.map((g) => parseRtpHeader(g)!);
    expect(hs[0]!.payloadType).toBe(96);
    expect(got[0]![12]! & 0x1f).toBe(24); // STAP-A(SPS, PPS) first
    expect(h264PayloadIsKeyframeStart(got[0]!.subarray(12))).toBe(true);

    // The client's receiver reports (from its RTCP port, to server_port+1) keep the session alive.
    const rr = Buffer.from("80c90001" + "12345678", "hex");
    client.close(); // UDP sessions outlive the control connection
    for (let i = 0; i < 7; i++) {
      const seen = new Promise<void>((r) => (onReport = r));
      rtcp.send(rr, Number(sp[2]), "127.0.0.1");
      await seen;
      advance(10_000);
    }
    expect(rec.stats().rtcpReceived).toBe(7);
    expect(rec.sessions()).toBe(1);
    expect(srs.some((i) => i.type === "sr")).toBe(true);

    advance(61_000);
    expect(rec.sessions()).toBe(0);
    expect(rec.stats().sessionsTimedOut).toBe(1);
  });

  it("counts any request naming the session as a keep-alive (GET_PARAMETER, OPTIONS)", async () => {
    const { rec, client, advance } = await setup();
    const s1 = await client.request("SETUP", `${rec.url}/trackID=1`, { Transport: "RTP/AVP;unicast;client_port=40000-40001" });
    const session = sessionOf(s1);
    expect(rec.sessions()).toBe(1);
    advance(50_000);
    expect((await client.request("GET_PARAMETER", rec.url, { Session: session })).status).toBe(200);
    advance(50_000);
    expect((await client.request("OPTIONS", rec.url, { Session: session })).headers.get("session")).toBe(`${session};timeout=60`);
    advance(50_000);
    expect(rec.sessions()).toBe(1);
    const closed = once(client.sock, "close");
    advance(12_000);
    expect(rec.sessions()).toBe(0);
    await closed; // an idle connection without sessions is closed too
    const again = new RawClient(rec.port);
    cleanups.push(() => again.close());
    await again.ready();
    expect((await again.request("PLAY", rec.url, { Session: session })).status).toBe(454);
  });
});

describe("demo recorder: Digest auth (RFC 2617)", () => {
  it("challenges, accepts the right answer, rejects a wrong one, and flags stale nonces", async () => {
    const { rec, client, advance } = await setup({ auth: { username: "viewer", password: "s3cret" } });
    expect((await client.request("OPTIONS", rec.url)).status).toBe(200); // OPTIONS stays open
    const r1 = await client.request("DESCRIBE", rec.url);
    expect(r1.status).toBe(401);
    const ch = parseChallenges(r1.headers.getAll("www-authenticate"))[0]!;
    expect(ch.scheme).toBe("digest");
    const realm = ch.params.get("realm")!;
    const nonce = ch.params.get("nonce")!;
    const auth = (password: string, n = nonce, qop = false) => {
      const response = digestResponse({
        algorithm: "MD5",
        sess: false,
        username: "viewer",
        password,
        realm,
        nonce: n,
        method: "DESCRIBE",
        uri: rec.url,
        qop: qop ? "auth" : undefined,
        nc: "00000001",
        cnonce: "0a4f113b",
      });
      return `Digest username="viewer", realm="${realm}", nonce="${n}", uri="${rec.url}", response="${response}"${qop ? ', qop=auth, nc=00000001, cnonce="0a4f113b"' : ""}`;
    };
    expect((await client.request("DESCRIBE", rec.url, { Authorization: auth("s3cret") })).status).toBe(200);
    expect((await client.request("DESCRIBE", rec.url, { Authorization: auth("s3cret", nonce, true) })).status).toBe(200);
    expect((await client.request("DESCRIBE", rec.url, { Authorization: auth("wrong") })).status).toBe(401);
    expect((await client.request("DESCRIBE", rec.url, { Authorization: auth("s3cret", "0".repeat(44)) })).status).toBe(401);
    expect((await client.request("DESCRIBE", rec.url, { Authorization: "Basic dmlld2VyOnMzY3JldA==" })).status).toBe(401);
    advance(301_000); // the idle connection is closed meanwhile: come back on a new one
    const again = new RawClient(rec.port);
    cleanups.push(() => again.close());
    await again.ready();
    const stale = await again.request("DESCRIBE", rec.url, { Authorization: auth("s3cret") });
    expect(stale.status).toBe(401);
    expect(parseChallenges(stale.headers.getAll("www-authenticate"))[0]!.params.get("stale")?.toLowerCase()).toBe("true");
  });
});

describe("parseTransport", () => {
  it("picks the first acceptable alternative", () => {
    expect(parseTransport("RTP/AVP;multicast, RTP/AVP/TCP;unicast;interleaved=4-5")).toEqual({ kind: "tcp", interleaved: [4, 5] });
    expect(parseTransport("RTP/AVP/UDP;unicast;client_port=5000")).toEqual({ kind: "udp", clientPorts: [5000, 5001] });
    expect(parseTransport('RTP/AVP;unicast;client_port=5000-5001;mode="RECORD"')).toBeNull();
    expect(parseTransport("RTP/AVP/TCP;interleaved=300-301")).toBeNull();
    expect(parseTransport("RTP/AVP;client_port=0-1")).toBeNull();
    expect(parseTransport("")).toBeNull();
  });
});
