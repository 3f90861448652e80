/**
 * ONVIF replay headers, clock ranges, the 0xABAC RTP header extension and playback URL
 * templates (gateway/playback/onvif.ts); and RtspClient's replay hooks (Require on every
 * request, replay PLAY headers, PLAY/PAUSE on a playing session, a paused watchdog)
 * against a scripted recorder.
 */
import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { BadInputError } from "../../config/errors.ts";
import { silentLogger } from "../../config/log.ts";
import { RtspClient } from "../../gateway/rtsp/client.ts";
import { checkUrlTemplate, expandUrlTemplate } from "../../config/url-template.ts";
import {
  formatClockTime,
  nptPlayHeaders,
  parseClockRangeStart,
  parseClockTime,
  readOnvifExtension,
  replayPlayHeaders,
} from "../../gateway/playback/onvif.ts";
import { ntpFromUnixMs } from "../../sfu/rtp/ntp.ts";
import { rtpPacket, startFakeRecorder, wellBehaved } from "../fixtures/rtsp/fake-recorder.ts";
import { FakeTimers } from "../fixtures/rtsp/fake-timers.ts";

const T = Date.UTC(2026, 11, 6, 10, 15, 0, 250);

/** An RTP packet with the ONVIF extension (as rtponviftimestamp writes it). */
export function onvifPacket(seq: number, timeMs: number, flags: { c?: boolean; e?: boolean; d?: boolean; t?: boolean } = {}, cseq = 0): Buffer {
  const base = rtpPacket(seq);
  const ext = Buffer.alloc(16);
  ext.writeUInt16BE(0xabac, 0);
  ext.writeUInt16BE(3, 2);
  const ntp = ntpFromUnixMs(timeMs);
  ext.writeUInt32BE(ntp.seconds, 4);
  ext.writeUInt32BE(ntp.fraction, 8);
  ext[12] = (flags.c ? 0x80 : 0) | (flags.e ? 0x40 : 0) | (flags.d ? 0x20 : 0) | (flags.t ? 0x10 : 0);
  ext[13] = cseq;
  const out = Buffer.concat([base.subarray(0, 12), ext, base.subarray(12)]);
  out[0] = out[0]! | 0x10;
  return out;
}

describe("ONVIF replay headers", () => {
  it("formats and parses clock times (UTC, milliseconds)", () => {
    expect(formatClockTime(T)).toBe("20261206T101500.250Z");
    expect(parseClockTime("20261206T101500.250Z")).toBe(T);
    expect(parseClockTime("20261206T101500Z")).toBe(T - 250);
    expect(parseClockTime("2026-12-06T10:15:00Z")).toBeUndefined();
    expect(parseClockRangeStart("clock=20261206T101500.250Z-")).toBe(T);
    expect(parseClockRangeStart("npt=0-")).toBeUndefined();
    fc.assert(fc.property(fc.integer({ min: 0, max: 4_000_000_000_000 }), (t) => parseClockTime(formatClockTime(t)) === t));
  });

  it("writes a replay PLAY: Require, clock range, Scale, Rate-Control, Frames, Immediate", () => {
    expect(replayPlayHeaders({ start: T, rate: 1, clientPaces: false, intraOnly: false, immediate: false })).toEqual({
      Require: "onvif-replay",
      Range: "clock=20261206T101500.250Z-",
    });
    expect(replayPlayHeaders({ start: T, rate: 16, clientPaces: true, intraOnly: true, immediate: true })).toEqual({
      Require: "onvif-replay",
      Range: "clock=20261206T101500.250Z-",
      Scale: "16",
      "Rate-Control": "no",
      Frames: "intra",
      Immediate: "yes",
    });
    expect(replayPlayHeaders({ start: T, rate: -0.125, clientPaces: false, intraOnly: false, immediate: false }).Scale).toBe("-0.125");
    expect(nptPlayHeaders(12.5, 1)).toEqual({ Range: "npt=12.500-" });
    expect(nptPlayHeaders(0, 2)).toEqual({ Range: "npt=0.000-", Scale: "2" });
  });

  it("refuses rates outside 1/8…32 and bad offsets", () => {
    for (const rate of [0, 0.1, 33, -64, Number.NaN])
      expect(() => replayPlayHeaders({ start: T, rate, clientPaces: false, intraOnly: false, immediate: false })).toThrow(BadInputError);
    expect(() => nptPlayHeaders(-1, 1)).toThrow(BadInputError);
  });
});

describe("ONVIF RTP header extension", () => {
  it("reads time, flags and CSeq", () => {
    const info = readOnvifExtension(onvifPacket(7, T, { c: true, d: true }, 42))!;
    expect(Math.abs(info.time - T)).toBeLessThan(0.001);
    expect(info).toMatchObject({ cleanPoint: true, end: false, discontinuity: true, terminal: false, cseq: 42 });
    expect(readOnvifExtension(onvifPacket(7, T, { e: true, t: true }))).toMatchObject({ end: true, terminal: true, cleanPoint: false });
  });

  it("ignores packets without it, with another profile, or truncated", () => {
    expect(readOnvifExtension(rtpPacket(1))).toBeUndefined();
    const other = onvifPacket(1, T);
    other.writeUInt16BE(0xbede, 12);
    expect(readOnvifExtension(other)).toBeUndefined();
    expect(readOnvifExtension(onvifPacket(1, T).subarray(0, 20))).toBeUndefined();
    const short = onvifPacket(1, T);
    short.writeUInt16BE(2, 14);
    expect(readOnvifExtension(short)).toBeUndefined();
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => (readOnvifExtension(b), true)));
  });
});

describe("playback URL templates", () => {
  it("fills start and end in the recorder families' formats", () => {
    const end = T + 3_600_000;
    expect(expandUrlTemplate("rtsp://nvr/Streaming/tracks/101?starttime={start:%Y%m%dT%H%M%SZ}&endtime={end:%Y%m%dT%H%M%SZ}", T, end)).toBe(
      "rtsp://nvr/Streaming/tracks/101?starttime=20261206T101500Z&endtime=20261206T111500Z",
    );
    expect(expandUrlTemplate("rtsp://dvr/cam/playback?channel=1&starttime={start:%Y_%m_%d_%H_%M_%S}", T)).toBe(
      "rtsp://dvr/cam/playback?channel=1&starttime=2026_12_06_10_15_00",
    );
    expect(expandUrlTemplate("rtsp://x/rec?t={start:%s}", T)).toBe("rtsp://x/rec?t=1796552100");
    expect(expandUrlTemplate("rtsp://x/rec?t={start}", T)).toBe("rtsp://x/rec?t=20261206T101500Z");
    expect(expandUrlTemplate("rtsp://x/rec?t={start:%Y-%m-%dT%H:%M:%S}", T)).toBe("rtsp://x/rec?t=2026-12-06T10:15:00");
  });

  it("names typos at once", () => {
    expect(() => checkUrlTemplate("rtsp://x/?t={begin}")).toThrow(/unknown field \{begin\}/);
    expect(() => checkUrlTemplate("rtsp://x/?t={start:%Q}")).toThrow(/unknown directive %Q/);
  });
});

describe("RtspClient replay hooks", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("sends Require on DESCRIBE, SETUP and PLAY, the replay PLAY headers, then PLAY/PAUSE controls", async () => {
    const rec = await startFakeRecorder(
      wellBehaved({ onPlay: (conn) => conn.frame(0, onvifPacket(1, T, { c: true })) }),
    );
    cleanups.push(() => rec.close());
    const got: number[] = [];
    const c = new RtspClient({
      url: rec.url,
      transport: "tcp",
      requestTimeoutMs: 2000,
      mediaTimeoutMs: 5000,
      log: silentLogger,
      require: "onvif-replay",
      playHeaders: replayPlayHeaders({ start: T, rate: 4, clientPaces: false, intraOnly: false, immediate: false }),
      sink: { pushRtp: (_t, p) => void got.push(readOnvifExtension(p)!.time), pushRtcp: () => {} },
    });
    cleanups.push(() => c.close("test end"));
    const session = await c.start();
    expect(session.playAnswer?.get("Range")).toBe("npt=0.000-");
    await rec.waitForRequest((r) => r.method === "PLAY");
    for (const m of ["DESCRIBE", "SETUP", "PLAY"]) {
      const req = rec.requests.find((r) => r.req.method === m)!.req;
      expect(req.headers.get("Require"), m).toBe("onvif-replay");
    }
    const play = rec.requests.find((r) => r.req.method === "PLAY")!.req;
    expect(play.headers.get("Range")).toBe("clock=20261206T101500.250Z-");
    expect(play.headers.get("Scale")).toBe("4");
    expect(rec.requests.find((r) => r.req.method === "OPTIONS")!.req.headers.get("Require")).toBeUndefined();

    const paused = await c.control("PAUSE");
    expect(paused.status).toBe(200);
    const seek = await c.control("PLAY", replayPlayHeaders({ start: T + 5000, rate: 1, clientPaces: true, intraOnly: false, immediate: true }));
    expect(seek.status).toBe(200);
    const last = rec.requests.filter((r) => r.req.method === "PLAY").at(-1)!.req;
    expect(last.headers.get("Immediate")).toBe("yes");
    expect(last.headers.get("Rate-Control")).toBe("no");
    expect(last.headers.get("Session")).toBe("ABCDEF");
    expect(rec.requests.find((r) => r.req.method === "PAUSE")!.req.headers.get("Require")).toBe("onvif-replay");
    await expect.poll(() => got.length).toBeGreaterThanOrEqual(1);
    expect(Math.abs(got[0]! - T)).toBeLessThan(1);
  });

  it("does not end a paused session for silence, and does once media is expected again", async () => {
    const timers = new FakeTimers();
    const rec = await startFakeRecorder(wellBehaved({ onPlay: (conn) => conn.frame(0, rtpPacket(1)) }));
    cleanups.push(() => rec.close());
    const c = new RtspClient({
      url: rec.url,
      transport: "tcp",
      requestTimeoutMs: 2000,
      mediaTimeoutMs: 1000,
      rtcpIntervalMs: 0,
      log: silentLogger,
      timers,
      sink: { pushRtp: () => {}, pushRtcp: () => {} },
    });
    cleanups.push(() => c.close("test end"));
    let ended = 0;
    c.events.on("ended", () => ended++);
    await c.start();
    c.expectMedia(false);
    for (let i = 0; i < 20; i++) timers.advance(250);
    expect(ended).toBe(0);
    c.expectMedia(true);
    for (let i = 0; i < 8; i++) timers.advance(250);
    expect(ended).toBe(1);
  });
});
