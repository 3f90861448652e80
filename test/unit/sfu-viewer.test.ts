/**
 * Source + Viewer + Pacer together, on a recording transport and a manual clock:
 * every forwarding rule checked packet by packet, without sockets or sleeps.
 */
import { describe, expect, it } from "vitest";
import { cameraId, viewerId } from "../../config/ids.ts";
import { silentLogger } from "../../config/log.ts";
import { ViewerCloseReasons } from "../../sfu/api.ts";
import { h264PayloadIsKeyframeStart } from "../../sfu/h264/nal.ts";
import { Pacer } from "../../sfu/pacer.ts";
import { ntpFromUnixMs, ntpMiddle32 } from "../../sfu/rtp/ntp.ts";
import {
  compound,
  parseRtcp,
  serializeFir,
  serializeNack,
  serializePli,
  serializeRr,
  serializeSr,
  seqsToNackItems,
  type SenderReport,
} from "../../sfu/rtp/rtcp.ts";
import { Source } from "../../sfu/source.ts";
import type { ViewerTransport } from "../../sfu/transport.ts";
import type { CodecName } from "../../sfu/types.ts";
import { Viewer, type ViewerOptions } from "../../sfu/viewer.ts";
import { FakeRecorder, FRAME_TICKS } from "../integration/sfu-upstream.ts";

/** setImmediate/setTimeout on a clock that only moves when told. */
class ManualTimers {
  nowMs = 1_700_000_000_000;
  private immediates: (() => void)[] = [];
  private timeouts = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  now = (): number => this.nowMs;
  setImmediate = (fn: () => void): unknown => {
    this.immediates.push(fn);
    return undefined;
  };
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.nextId++;
    this.timeouts.set(id, { at: this.nowMs + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.timeouts.delete(h as number);
  };
  /** Runs immediates (and what they schedule) until none is left. */
  flush(): void {
    for (let guard = 0; this.immediates.length > 0; guard++) {
      if (guard > 100_000) throw new Error("immediates never settle");
      const run = this.immediates;
      this.immediates = [];
      for (const fn of run) fn();
    }
  }
  /** Moves the clock, firing due timeouts in order, flushing immediates in between. */
  advance(ms: number): void {
    const end = this.nowMs + ms;
    this.flush();
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timeouts) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timeouts.delete(next[0]);
      this.nowMs = Math.max(this.nowMs, next[1].at);
      next[1].fn();
      this.flush();
    }
    this.nowMs = end;
  }
}

interface Sent {
  seq: number;
  ts: number;
  ssrc: number;
  pt: number;
  marker: boolean;
  payload: Buffer;
}

class RecordingTransport implements ViewerTransport {
  inFlight = 0;
  connected = true;
  closed = 0;
  readonly rtp: Sent[] = [];
  readonly rtcp: Buffer[] = [];
  sendRtp(h: { marker: boolean; payloadType: number; sequenceNumber: number; timestamp: number; ssrc: number }, payload: Buffer): boolean {
    if (!this.connected) return false;
    this.rtp.push({ seq: h.sequenceNumber, ts: h.timestamp, ssrc: h.ssrc, pt: h.payloadType, marker: h.marker, payload: Buffer.from(payload) });
    return true;
  }
  sendRtcp(b: Buffer): boolean {
    this.rtcp.push(Buffer.from(b));
    return true;
  }
  async close(): Promise<void> {
    this.closed++;
  }
  video(ssrc: number): Sent[] {
    return this.rtp.filter((p) => p.ssrc === ssrc);
  }
}

const VSSRC = 0x11111111;
const ASSRC = 0x22222222;

function setup(opts: { audio?: boolean; viewer?: Partial<ViewerOptions>; queue?: number } = {}) {
  const timers = new ManualTimers();
  const source = new Source({
    id: cameraId("cam1"),
    log: silentLogger,
    now: timers.now,
    nackHistory: 512,
    gopCachePackets: 768,
    gopCacheBytes: 4 << 20,
    maxPayload: 1200,
  });
  // Direct sends on here (the SFU's default is to queue everything): the integration tests cover the queued path.
  const pacer = new Pacer(timers, 64, 1024, 30);
  const rec = new FakeRecorder(source, { audio: opts.audio ?? false });
  let n = 0;
  const makeViewer = (vo: Partial<ViewerOptions> = {}, audioPts?: Map<CodecName, number>) => {
    const transport = new RecordingTransport();
    const v = new Viewer({
      id: viewerId(`v${++n}`),
      source,
      log: silentLogger,
      pacer,
      timers,
      queuePackets: opts.queue ?? 1024,
      nackHistory: 512,
      pacingBps: 30_000_000,
      pacingBurstBytes: 256 * 1024,
      connectTimeoutMs: 20_000,
      disconnectTimeoutMs: 10_000,
      rtcpTimeoutMs: 15_000,
      keyframeResendMinMs: 500,
      replayFrameSpacingMs: 1,
      ...opts.viewer,
      ...vo,
    });
    source.addViewer(v);
    const vssrc = VSSRC + n;
    const assrc = ASSRC + n;
    v.bindTransport(transport, {
      cname: "test",
      video: { ssrc: vssrc, payloadType: 108 },
      audio: { ssrc: assrc, payloadTypes: audioPts ?? new Map<CodecName, number>([["PCMU", 0]]) },
    });
    return { v, transport, vssrc, assrc, connect: () => v.onTransportState("connected") };
  };
  return { timers, source, pacer, rec, makeViewer };
}

function expectContiguous(seqs: number[]): void {
  for (let i = 1; i < seqs.length; i++) expect((seqs[i]! - seqs[i - 1]!) & 0xffff, `at ${i}`).toBe(1);
}

describe("viewer forwarding", () => {
  it("joins mid-GOP with the cached GOP, timestamps compressed, then live at real spacing", () => {
    const { timers, source, rec, makeViewer } = setup();
    rec.announce();
    rec.pushFrames(10);
    const gop = source.stats().tracks[0]!.gopPackets;
    expect(gop).toBeGreaterThan(10);
    const { transport, vssrc, connect } = makeViewer();
    connect();
    timers.flush();
    const sent = transport.video(vssrc);
    expect(sent).toHaveLength(gop);
    expect(h264PayloadIsKeyframeStart(sent[0]!.payload)).toBe(true);
    expect(sent.every((p) => p.pt === 108)).toBe(true);
    expectContiguous(sent.map((p) => p.seq));
    // Ten frames, 1 ms (90 ticks) apart.
    const frameTs = [...new Set(sent.map((p) => p.ts))];
    expect(frameTs).toHaveLength(10);
    for (let i = 1; i < frameTs.length; i++) expect((frameTs[i]! - frameTs[i - 1]!) >>> 0).toBe(90);
    // Live frames follow the last replayed one at their real spacing.
    rec.pushFrames(2);
    timers.flush();
    const live = transport.video(vssrc).slice(gop);
    expect(live.length).toBeGreaterThan(0);
    expect((live[0]!.ts - frameTs[9]!) >>> 0).toBe(FRAME_TICKS);
    expectContiguous(transport.video(vssrc).map((p) => p.seq));
  });

  it("before any keyframe: the source holds video, the viewer's first packet is a keyframe start", () => {
    const { timers, source, rec, makeViewer } = setup();
    rec.announce();
    const { transport, vssrc, connect } = makeViewer();
    connect();
    rec.frameIndex = 5; // join a stream that is mid-GOP
    rec.pushFrames(30);
    timers.flush();
    expect(source.stats().dropped.awaitingKeyframe).toBeGreaterThan(0);
    const sent = transport.video(vssrc);
    expect(sent.length).toBeGreaterThan(0);
    expect(h264PayloadIsKeyframeStart(sent[0]!.payload)).toBe(true);
    expectContiguous(sent.map((p) => p.seq));
  });

  it("gives each viewer its own SSRC, sequence and timestamp space over identical payloads", () => {
    const { timers, rec, makeViewer } = setup();
    rec.announce();
    rec.pushFrames(3);
    const a = makeViewer();
    const b = makeViewer();
    a.connect();
    b.connect();
    rec.pushFrames(5);
    timers.flush();
    const pa = a.transport.video(a.vssrc);
    const pb = b.transport.video(b.vssrc);
    expect(pa.length).toBe(pb.length);
    expect(pa.map((p) => p.payload.toString("hex"))).toEqual(pb.map((p) => p.payload.toString("hex")));
    expect(a.vssrc).not.toBe(b.vssrc);
    expect(pa[0]!.ssrc).not.toBe(rec.ssrc);
    // Random, independent bases (a collision of both is a 1 in 2^48 event).
    expect([pa[0]!.seq, pa[0]!.ts]).not.toEqual([pb[0]!.seq, pb[0]!.ts]);
  });

  it("continues sequence and timestamps across an upstream reconnect without renegotiation", () => {
    const { timers, source, rec, makeViewer } = setup({ audio: true });
    rec.announce();
    const { transport, vssrc, assrc, connect } = makeViewer();
    connect();
    for (let i = 0; i < 30; i++) {
      rec.pushFrames(1);
      timers.advance(40);
    }
    const before = transport.video(vssrc).length;
    const lastTs = transport.video(vssrc).at(-1)!.ts;
    const lastAudioTs = transport.video(assrc).at(-1)!.ts;
    timers.advance(700); // the recorder is away for 700 ms (+40 since the last frame)
    rec.reconnect();
    for (let i = 0; i < 10; i++) {
      rec.pushFrames(1);
      timers.advance(40);
    }
    const video = transport.video(vssrc);
    expect(video.length).toBeGreaterThan(before);
    expectContiguous(video.map((p) => p.seq));
    expect((video[before]!.ts - lastTs) >>> 0).toBe(740 * 90);
    expect(h264PayloadIsKeyframeStart(video[before]!.payload)).toBe(true);
    for (let i = 1; i < video.length; i++) expect((video[i]!.ts - video[i - 1]!.ts) | 0).toBeGreaterThanOrEqual(0);
    const audio = transport.video(assrc);
    expectContiguous(audio.map((p) => p.seq));
    expect(audio.every((p) => p.pt === 0)).toBe(true);
    expect(audio.some((p) => ((p.ts - lastAudioTs) | 0) > 700 * 8)).toBe(true);
    expect(source.stats().sessions).toBe(2);
  });

  it("holds video after a mid-GOP SSRC change until the new session's keyframe, without a sequence gap", () => {
    const { timers, source, rec, makeViewer } = setup();
    rec.announce();
    const { transport, vssrc, connect } = makeViewer();
    connect();
    rec.pushFrames(10);
    timers.flush();
    const before = transport.video(vssrc).length;
    rec.switchSsrc();
    rec.frameIndex = 3; // the new stream starts mid-GOP
    const dropsBefore = source.stats().dropped.awaitingKeyframe;
    rec.pushFrames(30);
    timers.flush();
    expect(source.stats().dropped.awaitingKeyframe).toBeGreaterThan(dropsBefore);
    const video = transport.video(vssrc);
    expect(h264PayloadIsKeyframeStart(video[before]!.payload)).toBe(true);
    expectContiguous(video.map((p) => p.seq));
  });

  it("keeps upstream loss visible as a sequence gap", () => {
    const { timers, rec, makeViewer } = setup();
    rec.announce();
    const { transport, vssrc, connect } = makeViewer();
    connect();
    rec.pushFrames(2);
    rec.loseNext.add(rec.sent + 3);
    rec.pushFrames(2);
    timers.flush();
    const seqs = transport.video(vssrc).map((p) => p.seq);
    const steps = seqs.slice(1).map((s, i) => (s - seqs[i]!) & 0xffff);
    expect(steps.filter((d) => d !== 1)).toEqual([2]);
  });

  it("answers a NACK with the original packet restamped for this viewer, once per guard interval", () => {
    const { timers, rec, makeViewer } = setup();
    rec.announce();
    const { v, transport, vssrc, connect } = makeViewer();
    connect();
    rec.pushFrames(5);
    timers.flush();
    const target = transport.video(vssrc)[7]!;
    const count = transport.rtp.length;
    const nack = serializeNack({ senderSsrc: 9, mediaSsrc: vssrc, items: seqsToNackItems([target.seq, (target.seq + 5000) & 0xffff]) });
    v.onRtcp(nack);
    expect(transport.rtp.length).toBe(count + 1);
    const resent = transport.rtp.at(-1)!;
    expect({ ...resent, payload: resent.payload.toString("hex") }).toEqual({ ...target, payload: target.payload.toString("hex") });
    v.onRtcp(nack); // the same request again at once: a storm, ignored
    expect(transport.rtp.length).toBe(count + 1);
    timers.advance(50);
    v.onRtcp(nack);
    expect(transport.rtp.length).toBe(count + 2);
    const s = v.stats();
    expect([s.nacks, s.nackedPackets, s.retransmits, s.nackMisses]).toEqual([3, 6, 2, 3]);
  });

  it("once the recorder is gone, the cache answers neither a keyframe request nor a new viewer; its next keyframe plays", () => {
    const { timers, source, rec, makeViewer } = setup();
    rec.announce();
    const a = makeViewer();
    a.connect();
    rec.pushFrames(8);
    timers.flush();
    const before = a.transport.video(a.vssrc).length;
    expect(before).toBeGreaterThan(0);
    source.upstreamDown("recorder gone");
    // The watching page asks for a keyframe: nothing from before the outage comes back.
    a.v.onRtcp(serializePli({ senderSsrc: 1, mediaSsrc: a.vssrc }));
    timers.advance(1000);
    a.v.onRtcp(serializePli({ senderSsrc: 1, mediaSsrc: a.vssrc }));
    timers.flush();
    expect(a.transport.video(a.vssrc).length).toBe(before);
    expect(a.v.stats().keyframesFromCache).toBe(0);
    // A page that opens the camera now gets no video at all.
    const b = makeViewer();
    b.connect();
    timers.flush();
    expect(b.transport.video(b.vssrc)).toHaveLength(0);
    // The recorder comes back: both start at its new keyframe, the first one with no sequence gap.
    rec.announce();
    rec.frameIndex = 0;
    rec.pushFrames(3);
    timers.flush();
    const again = a.transport.video(a.vssrc).slice(before);
    expect(again.length).toBeGreaterThan(0);
    expect(h264PayloadIsKeyframeStart(again[0]!.payload)).toBe(true);
    expectContiguous(a.transport.video(a.vssrc).map((p) => p.seq));
    expect(h264PayloadIsKeyframeStart(b.transport.video(b.vssrc)[0]!.payload)).toBe(true);
    expect(b.v.stats().keyframesFromCache).toBe(0);
  });

  it("answers PLI and FIR from the cache to that viewer only, rate-limited", () => {
    const { timers, rec, makeViewer } = setup();
    rec.announce();
    const a = makeViewer();
    const b = makeViewer();
    a.connect();
    b.connect();
    rec.pushFrames(8);
    timers.flush();
    const aBefore = a.transport.video(a.vssrc).length;
    const bBefore = b.transport.video(b.vssrc).length;
    const lastTs = a.transport.video(a.vssrc).at(-1)!.ts;
    a.v.onRtcp(serializePli({ senderSsrc: 1, mediaSsrc: a.vssrc }));
    timers.flush();
    const replay = a.transport.video(a.vssrc).slice(aBefore);
    expect(replay.length).toBe(aBefore); // the whole GOP so far, again
    expect(h264PayloadIsKeyframeStart(replay[0]!.payload)).toBe(true);
    expect((replay[0]!.ts - lastTs) | 0).toBeGreaterThan(0);
    expectContiguous(a.transport.video(a.vssrc).map((p) => p.seq));
    expect(b.transport.video(b.vssrc).length).toBe(bBefore);
    // A second request within keyframeResendMinMs is answered by the replay already sent.
    a.v.onRtcp(serializePli({ senderSsrc: 1, mediaSsrc: a.vssrc }));
    timers.flush();
    expect(a.transport.video(a.vssrc).length).toBe(2 * aBefore);
    timers.advance(600);
    a.v.onRtcp(compound([serializeFir({ senderSsrc: 1, entries: [{ ssrc: a.vssrc, seqNr: 1 }] })]));
    timers.flush();
    expect(a.transport.video(a.vssrc).length).toBe(3 * aBefore);
    // Both joined before any keyframe (no replay then): the two replays are PLI's and FIR's.
    expect([a.v.stats().plis, a.v.stats().firs, a.v.stats().keyframesFromCache]).toEqual([2, 1, 2]);
    expect(b.v.stats().keyframesFromCache).toBe(0);
    // Live continues after the replay, later than anything replayed.
    rec.pushFrames(1);
    timers.flush();
    const all = a.transport.video(a.vssrc);
    expectContiguous(all.map((p) => p.seq));
    expect((all.at(-1)!.ts - all[3 * aBefore - 1]!.ts) >>> 0).toBe(FRAME_TICKS);
  });

  it("drops whole frames of a slow viewer until the next keyframe, leaving the others untouched", () => {
    const { timers, rec, makeViewer } = setup({ queue: 64 });
    rec.announce();
    const slow = makeViewer({ pacingBurstBytes: 4000 });
    const fast = makeViewer();
    slow.connect();
    fast.connect();
    slow.v.setPacingRate(64_000); // 8 kB/s against a stream of ~60 kB/s
    for (let i = 0; i < 120; i++) {
      rec.pushFrames(1);
      timers.advance(40);
    }
    const s = slow.v.stats();
    expect(s.drops.queueFull).toBeGreaterThan(0);
    expect(s.drops.awaitingKeyframe).toBeGreaterThan(0);
    const slowVideo = slow.transport.video(slow.vssrc);
    expectContiguous(slowVideo.map((p) => p.seq)); // dropped packets never leave a gap to NACK
    // After each drop the slow viewer resumes at a keyframe: every timestamp jump starts one.
    for (let i = 1; i < slowVideo.length; i++) {
      if (((slowVideo[i]!.ts - slowVideo[i - 1]!.ts) | 0) > FRAME_TICKS) {
        expect(h264PayloadIsKeyframeStart(slowVideo[i]!.payload)).toBe(true);
      }
    }
    const f = fast.v.stats();
    expect(Object.values(f.drops).every((n) => n === 0)).toBe(true);
    const fastVideo = fast.transport.video(fast.vssrc);
    expectContiguous(fastVideo.map((p) => p.seq));
    expect(fastVideo.length).toBeGreaterThan(slowVideo.length);
  });

  it("sends sender reports mapping the wall clock into the viewer's timestamp space", () => {
    const { timers, rec, makeViewer } = setup();
    rec.announce();
    const { v, transport, vssrc, connect } = makeViewer();
    connect();
    for (let i = 0; i < 100; i++) {
      rec.pushFrames(1);
      timers.advance(40);
      // No report while the recorder's own may still come (a receiver would sync to one, then jump).
      if (i === 30) {
        v.tick(timers.nowMs);
        expect(transport.rtcp.flatMap((b) => parseRtcp(b)).some((x) => x.type === "sr")).toBe(false);
      }
    }
    timers.advance(200);
    v.tick(timers.nowMs);
    const sr = transport.rtcp.flatMap((b) => parseRtcp(b)).find((i): i is SenderReport => i.type === "sr")!;
    expect(sr.ssrc).toBe(vssrc);
    const lastFrame = transport.video(vssrc).at(-1)!;
    // The last frame was pushed 240 ms before the report: the SR's RTP time is that much later.
    expect((sr.rtpTimestamp - lastFrame.ts) | 0).toBe(240 * 90);
    expect(sr.ntpSeconds).toBe(ntpFromUnixMs(timers.nowMs).seconds);
    expect(sr.packetCount).toBe(transport.video(vssrc).length);
    const sdes = transport.rtcp.flatMap((b) => parseRtcp(b)).find((i) => i.type === "sdes");
    expect(sdes).toMatchObject({ chunks: [{ ssrc: vssrc, items: [{ type: 1, value: "test" }] }] });
    // RR echoing that SR 30 ms later with 10 ms DLSR: RTT 20 ms.
    timers.advance(30);
    v.onRtcp(
      serializeRr({
        ssrc: 5,
        reports: [
          { ssrc: vssrc, fractionLost: 64, cumulativeLost: 3, highestSeq: 1, jitter: 900, lsr: ntpMiddle32(sr.ntpSeconds, sr.ntpFraction), dlsr: 655 },
        ],
      }),
    );
    const st = v.stats();
    expect(st.rttMs).toBeCloseTo(20, 0);
    expect(st.fractionLost).toBe(0.25);
    expect(st.jitterMs).toBe(10);
  });

  it("uses the recorder's clock for sender reports when every track sends SRs", () => {
    const { timers, source, rec, makeViewer } = setup();
    rec.announce();
    const { v, transport, vssrc, connect } = makeViewer();
    connect();
    rec.pushFrames(5);
    const cameraNtpMs = Date.UTC(2030, 0, 1);
    const ntp = ntpFromUnixMs(cameraNtpMs);
    const upstreamTs = 0x12345678;
    source.pushRtcp(
      0,
      serializeSr({ ssrc: rec.ssrc, ntpSeconds: ntp.seconds, ntpFraction: ntp.fraction, rtpTimestamp: upstreamTs, packetCount: 1, octetCount: 1 }),
    );
    expect(source.stats().tracks[0]!.upstreamSr).toBe(true);
    timers.advance(1000);
    v.tick(timers.nowMs);
    const sr = transport.rtcp.flatMap((b) => parseRtcp(b)).find((i): i is SenderReport => i.type === "sr")!;
    const expected = ntpFromUnixMs(cameraNtpMs + 1000);
    expect(sr.ntpSeconds).toBe(expected.seconds);
    // Upstream ts → viewer ts uses the same offsets as the media: compare against a sent packet.
    const p = transport.video(vssrc).at(-1)!;
    const srcTsOfP = (rec.frameIndex - 1) * FRAME_TICKS; // relative to the recorder's base
    const srcTsAtSr = upstreamTs - ((rec as unknown as { tsBase: number }).tsBase >>> 0);
    expect((sr.rtpTimestamp - p.ts) | 0).toBe(((srcTsAtSr - srcTsOfP) | 0) + 1000 * 90);
  });

  it("times out a viewer that never connects, and one that stays disconnected", async () => {
    const { timers, source, makeViewer } = setup();
    const a = makeViewer();
    const closed: string[] = [];
    a.v.on("closed", (r) => closed.push(r));
    timers.advance(20_000);
    await a.v.close(); // already closed: the same promise
    expect(closed).toEqual(["connect timeout"]);
    expect(a.transport.closed).toBe(1);
    const b = makeViewer();
    b.connect();
    b.v.onTransportState("disconnected");
    timers.advance(5_000);
    b.v.onTransportState("connected"); // recovered in time
    timers.advance(10_000);
    expect(b.v.state).toBe("connected");
    b.v.onTransportState("disconnected");
    timers.advance(10_000);
    expect(b.v.state).toBe("closed");
    expect(b.v.reason).toBe("ice disconnected");
    expect(source.viewerCount).toBe(0);
  });

  it("closes a connected viewer that stops sending RTCP", () => {
    const { timers, makeViewer } = setup();
    const a = makeViewer();
    a.connect();
    for (let i = 0; i < 20; i++) {
      timers.advance(1000);
      a.v.onRtcp(serializeRr({ ssrc: 5 })); // a browser reports every second
      a.v.tick(timers.nowMs);
    }
    expect(a.v.state).toBe("connected");
    timers.advance(15_001);
    a.v.tick(timers.nowMs);
    expect(a.v.reason).toBe("viewer silent (no RTCP)");
  });

  it("counts audio it cannot send when the recorder's codec was not negotiated", () => {
    const { timers, rec, makeViewer } = setup({ audio: true });
    rec.announce();
    const { v, transport, assrc, connect } = makeViewer({}, new Map<CodecName, number>([["OPUS", 111]]));
    connect();
    rec.pushFrames(3);
    timers.flush();
    expect(transport.video(assrc)).toHaveLength(0);
    expect(v.stats().drops.codecNotNegotiated).toBe(6);
  });

  it("emits viewer counts as demand and closes viewers with the source", async () => {
    const { source, makeViewer } = setup();
    const counts: number[] = [];
    source.on("viewers", (n) => counts.push(n));
    const a = makeViewer();
    makeViewer();
    const reasons: string[] = [];
    a.v.on("closed", (r) => reasons.push(r));
    await source.close();
    expect(counts).toEqual([1, 2, 1, 0]);
    expect(reasons).toEqual([ViewerCloseReasons.sourceClosed]);
  });

  it("steps a viewer that keeps overflowing down to whole keyframes, without sequence gaps, and back up at a keyframe", () => {
    const { timers, rec, makeViewer } = setup({ queue: 40, viewer: { rtcpTimeoutMs: 600_000 } });
    rec.announce();
    rec.pushFrames(1);
    const { v, transport, vssrc, connect } = makeViewer();
    const quality: string[] = [];
    v.on("quality", (q, why) => quality.push(`${q}:${why}`));
    connect();
    timers.flush();
    // The link stalls (socket backpressure): the queue overflows, drops to the next keyframe, and overflows again.
    transport.inFlight = 100_000;
    for (let i = 0; i < 80; i++) {
      rec.pushFrames(1);
      timers.advance(40);
    }
    expect(v.stats().drops.queueFull).toBeGreaterThan(0);
    v.tick(timers.now());
    expect(v.currentQuality).toBe("keyframes");
    expect(quality).toEqual(["keyframes:queue overflow"]);
    expect(v.canStepUp(timers.now())).toBe(false);

    // The link recovers; for two GOPs only whole keyframes go out.
    transport.inFlight = 0;
    const before = transport.video(vssrc).length;
    rec.pushToGopEnd();
    timers.flush();
    const from = transport.video(vssrc).length;
    for (let g = 0; g < 2; g++) {
      rec.pushFrames(1);
      rec.pushToGopEnd();
      timers.flush();
    }
    const down = transport.video(vssrc).slice(from);
    expect(down.length).toBeGreaterThan(0);
    const frames = new Set(down.map((p) => p.ts));
    expect(frames.size).toBe(2); // one keyframe per GOP
    expect(h264PayloadIsKeyframeStart(down[0]!.payload)).toBe(true);
    expect(v.stats().drops.steppedDown).toBeGreaterThan(0);
    expect(before).toBeGreaterThan(0);

    // After the hold time the SFU lets it back; it resumes at the next keyframe with every frame.
    rec.pushFrames(3); // this GOP's keyframe, then P-frames
    timers.advance(13_000);
    expect(v.canStepUp(timers.now())).toBe(true);
    v.requestStepUp();
    rec.pushToGopEnd(); // P-frames: still stepped down until the keyframe
    timers.flush();
    expect(v.currentQuality).toBe("keyframes");
    const upFrom = transport.video(vssrc).length;
    rec.pushFrames(4); // the keyframe and three P-frames
    timers.flush();
    expect(v.currentQuality).toBe("full");
    expect(quality).toEqual(["keyframes:queue overflow", "full:capacity back"]);
    const up = transport.video(vssrc).slice(upFrom);
    expect(h264PayloadIsKeyframeStart(up[0]!.payload)).toBe(true);
    expect(new Set(up.map((p) => p.ts)).size).toBe(4);
    expectContiguous(transport.video(vssrc).slice(from).map((p) => p.seq));
    expect(v.stats()).toMatchObject({ quality: "full", stepDowns: 1 });
  });

  it("drops queued live video that waited too long, up to the next keyframe, so delay stays bounded", () => {
    const { timers, rec, makeViewer } = setup({ viewer: { maxQueueDelayMs: 0 } });
    rec.announce();
    rec.pushFrames(1);
    const { v, transport, vssrc, connect } = makeViewer();
    connect();
    timers.flush();
    const before = transport.video(vssrc).length;
    transport.inFlight = 100_000; // the viewer's socket is backed up: live packets queue …
    rec.pushFrames(3);
    expect(v.stats().queued).toBeGreaterThan(0);
    timers.advance(5); // … and at the next pass the head has waited longer than 0 ms: the backlog goes
    expect(v.stats().drops.queueDelay).toBeGreaterThan(0);
    expect(v.stats().queued).toBe(0);
    transport.inFlight = 0;
    expect(transport.video(vssrc).length).toBe(before);
    rec.pushToGopEnd();
    rec.pushFrames(1);
    timers.flush();
    const next = transport.video(vssrc)[before];
    expect(next && h264PayloadIsKeyframeStart(next.payload)).toBe(true);
    expectContiguous(transport.video(vssrc).map((p) => p.seq));
  });
});
