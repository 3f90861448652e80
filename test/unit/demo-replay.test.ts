/**
 * ONVIF replay in the demo recorder: the header parsers, the RTP header extension, the demo
 * recording's clock, and whole replay sessions over a raw RTSP connection on a hand-cranked clock
 * (seek, speed, reverse, Rate-Control: no, ranges with an end, the live edge).
 */
import { afterEach, describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import type { DemoRecorderOptions } from "../../gateway/demo/recorder.ts";
import {
  DemoRecording,
  MAX_SCALE,
  ONVIF_EXTENSION_BYTES,
  formatClockTime,
  parseClockTime,
  parseFrames,
  parseRangeClock,
  parseReplayRequest,
  parseScale,
  requiresReplay,
  unsupportedOptions,
  writeOnvifExtension,
} from "../../gateway/demo/replay.ts";
import { RtspHeaders, type RtspResponse } from "../../gateway/rtsp/message.ts";
import { readOnvifExtension } from "../../gateway/playback/onvif.ts";
import { parseRtpHeader } from "../../sfu/rtp/packet.ts";
import { ntpToUnixMs } from "../../sfu/rtp/ntp.ts";
import { RawClient, WALL0, start, type Frame } from "./demo-rtsp-helpers.ts";

describe("replay header parsing", () => {
  it("reads clock= times (ISO 8601 basic, UTC) and writes them back", () => {
    expect(parseClockTime("20261206T101500Z")).toBe(Date.UTC(2026, 11, 6, 10, 15, 0));
    expect(parseClockTime("20261206T101500.44Z")).toBe(Date.UTC(2026, 11, 6, 10, 15, 0, 440));
    expect(parseClockTime("20261206T101500.123456Z")).toBe(Date.UTC(2026, 11, 6, 10, 15, 0, 123));
    for (const bad of ["", "2026-12-06T10:15:00Z", "20261206T101500", "20261206T101500.Z", "x20261206T101500Z"])
      expect(parseClockTime(bad), bad).toBeUndefined();
    const t = Date.UTC(2026, 11, 6, 10, 15, 0, 40);
    expect(formatClockTime(t)).toBe("20261206T101500.040Z");
    expect(parseClockTime(formatClockTime(t))).toBe(t);
  });

  it("reads Range: clock=start-[end], accepts a bare npt resume, refuses the rest with BadInputError", () => {
    expect(parseRangeClock("clock=20261206T101500Z-")).toEqual({ start: Date.UTC(2026, 11, 6, 10, 15) });
    expect(parseRangeClock("clock=20261206T101500Z-20261206T101600Z")).toEqual({ start: Date.UTC(2026, 11, 6, 10, 15), end: Date.UTC(2026, 11, 6, 10, 16) });
    expect(parseRangeClock("clock=-20261206T101600Z")).toEqual({ end: Date.UTC(2026, 11, 6, 10, 16) });
    expect(parseRangeClock("npt=now-")).toEqual({});
    expect(parseRangeClock("npt=0.000-")).toEqual({});
    for (const bad of ["clock=20261206T101500Z", "clock=yesterday-", "npt=12.5-", "smpte=0:10:00-", "clock=20261206T101500Z-tomorrow"])
      expect(() => parseRangeClock(bad), bad).toThrow(BadInputError);
  });

  it("reads Scale, Frames, Rate-Control, Immediate and Require", () => {
    expect(parseScale(undefined)).toBe(1);
    expect(parseScale("4.0")).toBe(4);
    expect(parseScale("-0.125")).toBe(-0.125);
    for (const bad of ["0", "fast", "1e3", String(MAX_SCALE * 2), "-", "NaN"]) expect(() => parseScale(bad), bad).toThrow(BadInputError);
    expect(parseFrames(undefined)).toEqual({ frames: "all" });
    expect(parseFrames("intra")).toEqual({ frames: "intra" });
    expect(parseFrames("Intra/1000")).toEqual({ frames: "intra", intraIntervalMs: 1000 });
    expect(parseFrames("predicted")).toEqual({ frames: "predicted" });
    expect(() => parseFrames("some")).toThrow(BadInputError);
    const h = new RtspHeaders({ Range: "clock=20261206T101500Z-", Scale: "-2", "Rate-Control": "no", Immediate: "yes", Frames: "intra" });
    expect(parseReplayRequest(h)).toEqual({ start: Date.UTC(2026, 11, 6, 10, 15), scale: -2, rateControl: false, immediate: true, frames: "intra" });
    expect(parseReplayRequest(new RtspHeaders({}))).toEqual({ scale: 1, rateControl: true, immediate: false, frames: "all" });
    expect(requiresReplay("onvif-replay")).toBe(true);
    expect(requiresReplay("funky, ONVIF-Replay")).toBe(true);
    expect(requiresReplay("implicit-play")).toBe(false);
    expect(unsupportedOptions("onvif-replay, implicit-play")).toEqual(["implicit-play"]);
  });
});

describe("ONVIF RTP header extension", () => {
  it("writes 0xABAC, length 3, the NTP time, C/E/D/T flags and the CSeq byte", () => {
    const buf = Buffer.alloc(12 + ONVIF_EXTENSION_BYTES, 0xee);
    const t = Date.UTC(2026, 11, 6, 10, 15, 0, 500);
    expect(writeOnvifExtension(buf, 12, { time: t, cleanPoint: true, end: false, discontinuity: true, terminal: false, cseq: 0x1234 })).toBe(16);
    expect(buf.readUInt16BE(12)).toBe(0xabac);
    expect(buf.readUInt16BE(14)).toBe(3);
    expect(ntpToUnixMs(buf.readUInt32BE(16), buf.readUInt32BE(20))).toBeCloseTo(t, 0);
    expect(buf.readUInt32BE(20)).toBe(0x80000000); // half a second
    expect(buf[24]).toBe(0b1010_0000); // C and D
    expect(buf[25]).toBe(0x34);
    expect(buf.readUInt16BE(26)).toBe(0);
    expect(buf.subarray(0, 12).every((b) => b === 0xee)).toBe(true); // nothing written before the offset
    writeOnvifExtension(buf, 12, { time: t, cleanPoint: false, end: true, discontinuity: false, terminal: true, cseq: 7 });
    expect(buf[24]).toBe(0b0101_0000);
    // The playback client's reader takes what the demo writes.
    buf[0] = 0x90;
    expect(readOnvifExtension(buf)).toEqual({ time: t, cleanPoint: false, end: true, discontinuity: false, terminal: true, cseq: 7 });
  });
});

describe("the demo recording's clock", () => {
  const keyFrames = Array.from({ length: 1500 }, (_, i) => i % 25 === 0);
  const rec = new DemoRecording({ frames: 1500, fps: 25, keyFrames, windowMs: 24 * 3600_000 });

  it("maps a time to its frame: the clip loops every minute against the epoch, key frames each second", () => {
    const t = Date.UTC(2026, 11, 6, 10, 15, 17, 480); // 17.48 s into the minute: clip frame 17·25 + 12
    const n = rec.frameNumber(t);
    expect(rec.clipIndex(n)).toBe(437);
    expect(rec.timeOf(n)).toBe(t);
    expect(rec.isKey(n)).toBe(false);
    expect(rec.timeOf(rec.keyAtOrBefore(n))).toBe(Date.UTC(2026, 11, 6, 10, 15, 17));
    expect(rec.timeOf(rec.keyAfter(n))).toBe(Date.UTC(2026, 11, 6, 10, 15, 18));
    expect(rec.frameNumber(t + 39)).toBe(n);
    expect(rec.frameNumber(t + 40)).toBe(n + 1);
    expect(rec.window(t)).toEqual({ from: t - 24 * 3600_000, to: t });
  });

  it("refuses a clip that does not start with a key frame", () => {
    expect(() => new DemoRecording({ frames: 2, fps: 25, keyFrames: [false, true], windowMs: 1000 })).toThrow(BadInputError);
  });
});

// ------------------------------------------------------------------------------------
// Whole replay sessions

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

const REPLAY = { Require: "onvif-replay" };

interface ReplayFrame {
  /** Recorded time from the extension, epoch ms. */
  time: number;
  rtpTs: number;
  flags: number;
  cseq: number;
  packets: number;
  seqs: number[];
}

/** Groups the video packets (channel 0) into frames by their extension time, in arrival order. */
function framesOf(frames: Frame[]): ReplayFrame[] {
  const out: ReplayFrame[] = [];
  for (const f of frames) {
    if (f.channel !== 0) continue;
    const h = parseRtpHeader(f.data)!;
    expect(h.extension).toBe(true);
    expect(f.data.readUInt16BE(12)).toBe(0xabac);
    expect(f.data.readUInt16BE(14)).toBe(3);
    const time = Math.round(ntpToUnixMs(f.data.readUInt32BE(16), f.data.readUInt32BE(20)));
    expect(Math.round(readOnvifExtension(f.data)!.time)).toBe(time);
    const last = out[out.length - 1];
    if (last && last.time === time && last.rtpTs === h.timestamp) {
      last.packets++;
      last.flags |= f.data[24]!;
      last.seqs.push(h.sequenceNumber);
    } else out.push({ time, rtpTs: h.timestamp, flags: f.data[24]!, cseq: f.data[25]!, packets: 1, seqs: [h.sequenceNumber] });
  }
  return out;
}

const C = 0x80;
const E = 0x40;
const D = 0x20;
const T = 0x10;

/** DESCRIBE, SETUP the video track over TCP with Require: onvif-replay; returns the session id. */
async function replaySession(client: RawClient, url: string): Promise<string> {
  const d = await client.request("DESCRIBE", url, REPLAY);
  expect(d.status).toBe(200);
  const s = await client.request("SETUP", `${url}/trackID=0`, { ...REPLAY, Transport: "RTP/AVP/TCP;unicast;interleaved=0-1" });
  expect(s.status).toBe(200);
  return s.headers.get("session")!.split(";")[0]!;
}

const headerOf = (r: RtspResponse, name: string) => r.headers.get(name) ?? "";

describe("demo recorder: ONVIF replay", () => {
  it("describes the recording (video only, its clock range) and seeks to the key frame before the asked time", async () => {
    const { rec, client, advance, now } = await setup();
    const d = await client.request("DESCRIBE", rec.url, REPLAY);
    const sdp = d.body.toString();
    expect(sdp).toContain("m=video 0 RTP/AVP 96\r\n");
    expect(sdp).not.toContain("m=audio");
    const wall = WALL0 + now();
    expect(sdp).toContain(`a=range:clock=${formatClockTime(wall - 24 * 3600_000)}-${formatClockTime(wall)}\r\n`);
    expect(rec.recordingWindow()).toEqual({ from: wall - 24 * 3600_000, to: wall });

    const session = await replaySession(client, rec.url);
    const asked = WALL0 - 3600_000 + 17_480; // an hour ago, 17.48 s into a minute
    const key = asked - 480;
    const play = await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Range: `clock=${formatClockTime(asked)}-` });
    expect(play.status).toBe(200);
    expect(headerOf(play, "range")).toBe(`clock=${formatClockTime(key)}-`);
    expect(headerOf(play, "scale")).toBe("1");
    const info = /seq=(\d+);rtptime=(\d+)/.exec(headerOf(play, "rtp-info"))!;

    advance(1000);
    await client.sync();
    const frames = framesOf(client.frames);
    // One second at 1×: 25 frames (26 counting the one due at the end), 40 ms apart in recorded time.
    expect(frames.length).toBeGreaterThanOrEqual(25);
    expect(frames.length).toBeLessThanOrEqual(26);
    expect(frames[0]!.time).toBe(key);
    expect(frames[0]!.flags & (C | D)).toBe(C | D);
    expect(frames[0]!.seqs[0]).toBe(Number(info[1]));
    expect(frames[0]!.rtpTs).toBe(Number(info[2]));
    expect(frames[0]!.cseq).toBe(Number(play.headers.get("cseq")) & 0xff);
    for (let i = 1; i < frames.length; i++) {
      expect(frames[i]!.time - frames[i - 1]!.time).toBe(40);
      expect((frames[i]!.rtpTs - frames[i - 1]!.rtpTs) >>> 0).toBe(3600);
      expect(frames[i]!.flags & D).toBe(0);
      expect(Boolean(frames[i]!.flags & C)).toBe(i % 25 === 0);
    }
    // Sequence numbers run on without a gap across frames.
    const seqs = frames.flatMap((f) => f.seqs);
    seqs.forEach((s, i) => i > 0 && expect(s).toBe((seqs[i - 1]! + 1) & 0xffff));
  });

  it("plays 4× forward (every frame, four times as fast) and 2× in reverse (key frames, going back)", async () => {
    const { rec, client, advance } = await setup();
    const session = await replaySession(client, rec.url);
    const at = WALL0 - 7200_000 + 30_000;
    expect((await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Range: `clock=${formatClockTime(at)}-`, Scale: "4" })).status).toBe(200);
    advance(1000);
    await client.sync();
    let frames = framesOf(client.frames);
    expect(frames.length).toBeGreaterThanOrEqual(100);
    expect(frames.length).toBeLessThanOrEqual(101);
    expect(frames[frames.length - 1]!.time - frames[0]!.time).toBeGreaterThanOrEqual(3960);

    // Reverse from where it is (no Range): key frames only, one recorded second apart, every 500 ms.
    client.frames.length = 0;
    const rev = await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Scale: "-2" });
    expect(rev.status).toBe(200);
    advance(2000);
    await client.sync();
    frames = framesOf(client.frames);
    expect(frames.length).toBeGreaterThanOrEqual(4);
    expect(frames.length).toBeLessThanOrEqual(5);
    expect(frames[0]!.flags & D).toBe(D);
    for (const f of frames) expect(f.flags & C).toBe(C);
    for (let i = 1; i < frames.length; i++) expect(frames[i - 1]!.time - frames[i]!.time).toBe(1000);
    expect(frames[0]!.time).toBeLessThanOrEqual(at + 4000);
  });

  it("with Rate-Control: no sends ahead at once; a range with an end stops with T on its last frame", async () => {
    const { rec, client, advance } = await setup();
    const session = await replaySession(client, rec.url);
    const from = WALL0 - 600_000;
    const to = from + 2000;
    const play = await client.request("PLAY", rec.url, {
      ...REPLAY,
      Session: session,
      Range: `clock=${formatClockTime(from)}-${formatClockTime(to)}`,
      "Rate-Control": "no",
    });
    expect(headerOf(play, "rate-control")).toBe("no");
    expect(headerOf(play, "range")).toBe(`clock=${formatClockTime(from)}-${formatClockTime(to)}`);
    advance(10); // one tick
    await client.sync();
    expect(framesOf(client.frames).length).toBe(50); // as much as one tick sends
    advance(30);
    await client.sync();
    const frames = framesOf(client.frames);
    expect(frames.length).toBe(51); // 2 s at 25 fps, both ends included
    expect(frames[frames.length - 1]!.time).toBe(to);
    expect(frames[frames.length - 1]!.flags & (T | E)).toBe(T | E);
    expect(frames.slice(0, -1).every((f) => (f.flags & T) === 0)).toBe(true);
    advance(1000);
    await client.sync();
    expect(framesOf(client.frames).length).toBe(51); // nothing after the terminal frame
  });

  it("clamps to the recording: before it starts at its first key frame, after it waits at the live edge", async () => {
    const { rec, client, advance, now } = await setup();
    const session = await replaySession(client, rec.url);
    const tooOld = WALL0 - 48 * 3600_000;
    const play = await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Range: `clock=${formatClockTime(tooOld)}-` });
    const started = parseClockTime(headerOf(play, "range").slice(6, -1))!;
    const from = WALL0 + now() - 24 * 3600_000;
    expect(started).toBeGreaterThanOrEqual(from);
    expect(started - from).toBeLessThan(1000);

    client.frames.length = 0;
    const future = WALL0 + now() + 3600_000;
    const live = await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Range: `clock=${formatClockTime(future)}-`, Scale: "8" });
    const liveStart = parseClockTime(headerOf(live, "range").slice(6, -1))!;
    expect(liveStart).toBeLessThanOrEqual(WALL0 + now());
    advance(1000);
    await client.sync();
    const frames = framesOf(client.frames);
    // At 8× from the live edge it can only follow the clock: never a frame from the future.
    expect(frames.length).toBeGreaterThan(0);
    for (const f of frames) expect(f.time).toBeLessThanOrEqual(WALL0 + now());
    expect(frames.length).toBeLessThanOrEqual(2 + 25 + 25);
  });

  it("takes a PLAY with a clock= range and no Require as replay (GStreamer's rtspsrc in ONVIF mode sends none)", async () => {
    const { rec, client, advance } = await setup();
    const s = await client.request("SETUP", `${rec.url}/trackID=0`, { Transport: "RTP/AVP/TCP;unicast;interleaved=0-1" });
    const session = s.headers.get("session")!.split(";")[0]!;
    const at = WALL0 - 3600_000;
    const play = await client.request("PLAY", rec.url, { Session: session, Range: `clock=${formatClockTime(at)}-`, "Rate-Control": "yes" });
    expect(headerOf(play, "range")).toBe(`clock=${formatClockTime(at)}-`);
    advance(200);
    await client.sync();
    expect(framesOf(client.frames)[0]!.time).toBe(at);
    expect(rec.stats().replays).toBe(1);
  });

  it("refuses what it cannot do: unknown options 551, bad Range or Scale 400, no recording 551", async () => {
    const { rec, client } = await setup();
    const session = await replaySession(client, rec.url);
    const other = await client.request("PLAY", rec.url, { Require: "onvif-replay, x-frobnicate", Session: session });
    expect(other.status).toBe(551);
    expect(headerOf(other, "unsupported")).toBe("x-frobnicate");
    expect((await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Range: "clock=soon-" })).status).toBe(400);
    expect((await client.request("PLAY", rec.url, { ...REPLAY, Session: session, Scale: "0" })).status).toBe(400);
    expect((await client.request("PLAY", rec.url, { ...REPLAY, Session: session })).status).toBe(200); // still serving

    const plain = await setup({ recording: false });
    const r = await plain.client.request("DESCRIBE", plain.rec.url, REPLAY);
    expect(r.status).toBe(551);
    expect(headerOf(r, "unsupported")).toBe("onvif-replay");
    expect(plain.rec.recordingWindow()).toBeNull();
  });
});
