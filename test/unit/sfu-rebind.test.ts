/**
 * Re-binding a viewer to another source (a camera's substream, or another camera): the
 * pure switch core, then Source + Viewer on a recording transport and a manual clock.
 */
import { describe, expect, it } from "vitest";
import { cameraId, viewerId } from "../../config/ids.ts";
import { silentLogger } from "../../config/log.ts";
import { h264PayloadIsKeyframeStart } from "../../sfu/h264/nal.ts";
import { Pacer } from "../../sfu/pacer.ts";
import { SourceSwitch, spliceOffset } from "../../sfu/rebind.ts";
import { Source } from "../../sfu/source.ts";
import type { ViewerTransport } from "../../sfu/transport.ts";
import type { CodecName } from "../../sfu/types.ts";
import type { SwitchInfo } from "../../sfu/api.ts";
import { Viewer } from "../../sfu/viewer.ts";
import { serializeNack, serializeRr } from "../../sfu/rtp/rtcp.ts";
import { FakeRecorder, FRAME_TICKS } from "../integration/sfu-upstream.ts";

describe("spliceOffset", () => {
  it("continues from the last timestamp sent by the time elapsed", () => {
    const off = spliceOffset({ lastTs: 1000, lastAt: 5000, sentAny: true, tsOffset: 7 }, 0xfffffff0, 5040, 90000);
    expect((0xfffffff0 + off) >>> 0).toBe(1000 + 40 * 90);
  });
  it("never maps a new frame onto the last frame's time, and wraps modulo 2^32", () => {
    const off = spliceOffset({ lastTs: 0xffffffff, lastAt: 5000, sentAny: true, tsOffset: 0 }, 123, 4990, 8000);
    expect((123 + off) >>> 0).toBe(0);
  });
  it("keeps the current mapping before anything was sent", () => {
    expect(spliceOffset({ lastTs: 0, lastAt: 0, sentAny: false, tsOffset: 42 }, 999, 100, 90000)).toBe(42);
  });
});

describe("SourceSwitch", () => {
  it("commits at the target's keyframe only, and says what it left", () => {
    const sw = new SourceSwitch("main", { timeoutMs: 8000 });
    expect(sw.request("sub", 0)).toBe("pending");
    expect(sw.onKeyframe("main")).toBe(false);
    expect(sw.current).toBe("main");
    expect(sw.onKeyframe("sub")).toBe(true);
    expect([sw.current, sw.left, sw.target]).toEqual(["sub", "main", undefined]);
  });
  it("a new request supersedes the pending one; asking for the current source cancels it", () => {
    const sw = new SourceSwitch("main", { timeoutMs: 8000 });
    sw.request("sub", 0);
    expect(sw.request("other", 10)).toBe("pending");
    expect(sw.abandoned).toBe("sub");
    expect(sw.request("main", 20)).toBe("same");
    expect(sw.abandoned).toBe("other");
    expect(sw.target).toBeUndefined();
    expect(sw.onKeyframe("other")).toBe(false);
  });
  it("gives up a target without a keyframe after the timeout (injected clock)", () => {
    const sw = new SourceSwitch("main", { timeoutMs: 8000 });
    sw.request("sub", 1000);
    expect(sw.expired(8999)).toBeUndefined();
    expect(sw.expired(9000)).toBe("sub");
    expect(sw.target).toBeUndefined();
    expect(sw.current).toBe("main");
  });
});

/** setImmediate/setTimeout on a clock that only moves when told. */
class ManualTimers {
  nowMs = 1_700_000_000_000;
  private immediates: (() => void)[] = [];
  now = (): number => this.nowMs;
  setImmediate = (fn: () => void): unknown => {
    this.immediates.push(fn);
    return undefined;
  };
  setTimeout = (_fn: () => void, _ms: number): unknown => 1;
  clearTimeout = (_h: unknown): void => {};
  flush(): void {
    while (this.immediates.length > 0) {
      const run = this.immediates;
      this.immediates = [];
      for (const fn of run) fn();
    }
  }
}

interface Sent {
  /** When it was sent (the manual clock), ms. */
  at: number;
  seq: number;
  ts: number;
  ssrc: number;
  payload: Buffer;
}

class RecordingTransport implements ViewerTransport {
  inFlight = 0;
  readonly rtp: Sent[] = [];
  private readonly now: () => number;
  constructor(now: () => number = () => 0) {
    this.now = now;
  }
  sendRtp(h: { sequenceNumber: number; timestamp: number; ssrc: number }, payload: Buffer): boolean {
    this.rtp.push({ at: this.now(), seq: h.sequenceNumber, ts: h.timestamp, ssrc: h.ssrc, payload: Buffer.from(payload) });
    return true;
  }
  sendRtcp(): boolean {
    return true;
  }
  async close(): Promise<void> {}
  of(ssrc: number): Sent[] {
    return this.rtp.filter((p) => p.ssrc === ssrc);
  }
}

function setup() {
  const timers = new ManualTimers();
  const mk = (id: string) =>
    new Source({ id: cameraId(id), log: silentLogger, now: timers.now, nackHistory: 512, gopCachePackets: 768, gopCacheBytes: 4 << 20, maxPayload: 1200 });
  const main = mk("cam");
  const sub = mk("cam:sub");
  const sources = new Map([
    [main.id, main],
    [sub.id, sub],
  ]);
  const pacer = new Pacer(timers, 64, 1024, 30);
  const recMain = new FakeRecorder(main, { audio: true });
  const recSub = new FakeRecorder(sub, { audio: true });
  const transport = new RecordingTransport(timers.now);
  const v = new Viewer({
    id: viewerId("v1"),
    source: main,
    cameraId: cameraId("cam"),
    findSource: (id) => sources.get(id),
    log: silentLogger,
    pacer,
    timers,
    queuePackets: 1024,
    nackHistory: 512,
    pacingBps: 30_000_000,
    pacingBurstBytes: 256 * 1024,
    connectTimeoutMs: 20_000,
    disconnectTimeoutMs: 10_000,
    rtcpTimeoutMs: 15_000,
    keyframeResendMinMs: 500,
    replayFrameSpacingMs: 1,
  });
  main.addViewer(v);
  v.bindTransport(transport, {
    cname: "t",
    video: { ssrc: 0x1111, payloadType: 108 },
    audio: { ssrc: 0x2222, payloadTypes: new Map<CodecName, number>([["PCMU", 0]]) },
  });
  const switched: SwitchInfo[] = [];
  v.on("switched", (i) => switched.push(i));
  /** Both recorders push `n` frames, 40 ms apart. */
  const run = (n: number, which: "both" | "main" | "sub" = "both") => {
    for (let i = 0; i < n; i++) {
      if (which !== "sub") recMain.pushFrames(1);
      if (which !== "main") recSub.pushFrames(1);
      timers.nowMs += 40;
      timers.flush();
      v.tick(timers.nowMs);
    }
  };
  return { timers, main, sub, recMain, recSub, transport, v, switched, run };
}

function expectContiguous(seqs: number[]): void {
  for (let i = 1; i < seqs.length; i++) expect((seqs[i]! - seqs[i - 1]!) & 0xffff, `at ${i}`).toBe(1);
}

describe("viewer source switch", () => {
  it("moves at the target's next keyframe with SSRC, sequence and timestamps continuing; demand follows", () => {
    const { main, sub, recMain, recSub, transport, v, switched, run } = setup();
    recMain.announce();
    recSub.announce();
    recSub.frameIndex = 5; // the substream is mid-GOP: its next keyframe is 20 frames away
    v.onTransportState("connected");
    run(10);
    const before = transport.of(0x1111).length;
    expect(before).toBeGreaterThan(0);
    v.switchSource(cameraId("cam:sub"), "grid tile");
    expect(sub.viewerCount).toBe(1); // subscribed: the substream's pull starts now
    expect(main.viewerCount).toBe(1);
    run(10);
    expect(v.sourceId).toBe("cam"); // still on main: no keyframe from sub yet
    const lastMain = transport.of(0x1111).at(-1)!;
    run(15);
    expect(v.sourceId).toBe("cam:sub");
    expect(switched).toEqual([{ from: "cam", to: "cam:sub", ok: true, reason: "grid tile" }]);
    expect(main.viewerCount).toBe(0);
    expect(sub.viewerCount).toBe(1);
    const video = transport.of(0x1111);
    expectContiguous(video.map((p) => p.seq));
    // The first packet after the last main frame is the substream's keyframe, one frame time later.
    const firstSub = video.findIndex((p) => ((p.ts - lastMain.ts) | 0) > 0 && h264PayloadIsKeyframeStart(p.payload) && p !== video[0]);
    expect(firstSub).toBeGreaterThan(0);
    const gap = (video[firstSub]!.ts - video[firstSub - 1]!.ts) >>> 0;
    expect(gap).toBeGreaterThan(0);
    expect(gap).toBeLessThanOrEqual(2 * FRAME_TICKS);
    for (let i = 1; i < video.length; i++) expect((video[i]!.ts - video[i - 1]!.ts) | 0).toBeGreaterThanOrEqual(0);
    // Audio moved with it, without a sequence gap or a step back in time.
    const audio = transport.of(0x2222);
    expectContiguous(audio.map((p) => p.seq));
    for (let i = 1; i < audio.length; i++) expect((audio[i]!.ts - audio[i - 1]!.ts) | 0).toBeGreaterThan(0);
    // Main frames no longer reach this viewer.
    const n = video.length;
    run(3, "main");
    expect(transport.of(0x1111).length).toBe(n);
  });

  it("switches at once from the target's cached keyframe when the current source sends nothing", () => {
    const { timers, sub, recSub, recMain, transport, v, switched, run } = setup();
    recMain.announce();
    recSub.announce();
    v.onTransportState("connected");
    run(5, "sub"); // main is silent; sub has a cached GOP
    v.switchSource(cameraId("cam:sub"));
    timers.flush();
    expect(v.sourceId).toBe("cam:sub");
    expect(switched[0]?.ok).toBe(true);
    expect(sub.viewerCount).toBe(1);
    const video = transport.of(0x1111);
    expect(video.length).toBeGreaterThan(0);
    expect(h264PayloadIsKeyframeStart(video[0]!.payload)).toBe(true);
  });

  it("sends the keyframe it switches at twice (the copies after its last packet), and no longer resends packets of the stream it left", () => {
    const { timers, recSub, recMain, transport, v, run } = setup();
    recMain.announce();
    recSub.announce();
    v.onTransportState("connected");
    run(10); // main plays
    const fromMain = transport.of(0x1111).at(-1)!;
    run(30, "sub"); // main goes silent for over a second
    const before = transport.of(0x1111).length;
    v.switchSource(cameraId("cam:sub"));
    timers.flush();
    expect(v.sourceId).toBe("cam:sub");
    const sent = transport.of(0x1111).slice(before);
    // The keyframe's packets, then a copy of each (same sequence numbers, same order) once its
    // last is out, before anything else: the first copy complete decodes at once; the rest once.
    const keyTs = sent[0]!.ts;
    const key = sent.filter((p) => p.ts === keyTs);
    expect(key.length % 2).toBe(0);
    const half = key.length / 2;
    expect(sent.slice(0, key.length)).toEqual(key);
    expect(new Set(key.slice(0, half).map((p) => p.seq)).size).toBe(half);
    for (let i = 0; i < half; i++) expect([key[i]!.seq, key[i]!.payload]).toEqual([key[half + i]!.seq, key[half + i]!.payload]);
    const rest = sent.filter((p) => p.ts !== keyTs);
    expect(rest.length).toBeGreaterThan(0);
    expect(new Set(rest.map((p) => p.seq)).size).toBe(rest.length);
    // A NACK for the last main packet is not answered; one for a substream packet is.
    const fromSub = rest.at(-1)!;
    const n = transport.rtp.length;
    v.onRtcp(serializeNack({ senderSsrc: 0x9999, mediaSsrc: 0x1111, items: [{ pid: fromMain.seq, blp: 0 }] }));
    expect(transport.rtp.length).toBe(n);
    v.onRtcp(serializeNack({ senderSsrc: 0x9999, mediaSsrc: 0x1111, items: [{ pid: fromSub.seq, blp: 0 }] }));
    expect(transport.rtp.slice(n).map((p) => p.seq)).toEqual([fromSub.seq]);
  });

  it("an Auto step down on a queueing link switches at once from the substream's cached GOP", () => {
    const { timers, main, recSub, recMain, transport, v, switched } = setup();
    recMain.announce();
    recSub.announce();
    v.setStreams([main.id, cameraId("cam:sub")], true);
    v.onTransportState("connected");
    const report = (lagMs: number) => {
      // The receiver has everything sent `lagMs` ago: a queue of that much on the path.
      const got = transport.of(0x1111).filter((p) => p.at <= timers.nowMs - lagMs).at(-1);
      if (got) v.onRtcp(serializeRr({ ssrc: 0x9999, reports: [{ ssrc: 0x1111, fractionLost: 0, cumulativeLost: 0, highestSeq: got.seq, jitter: 0, lsr: 0, dlsr: 0 }] }));
    };
    // Main every 40 ms, the substream at half its rate; a report every 80 ms.
    let lag = 0;
    for (let i = 0; i < 150 && v.sourceId === "cam"; i++) {
      recMain.pushFrames(1);
      if (i % 2 === 0) recSub.pushFrames(1);
      timers.nowMs += 40;
      timers.flush();
      if (i >= 50) lag += 30; // from 2 s on the link carries less than it is sent: the queue grows
      if (i % 2 === 0) report(lag);
      v.tick(timers.nowMs);
    }
    expect(v.sourceId).toBe("cam:sub");
    expect(switched).toEqual([{ from: "cam", to: "cam:sub", ok: true, reason: "network: less bandwidth" }]);
    // Made in the tick that decided it, from the substream's cached keyframe: it goes out now,
    // though the substream's next keyframe is frames away.
    expect(recSub.gopPosition).not.toBe(0);
    const n = transport.of(0x1111).length;
    timers.flush();
    const now = transport.of(0x1111).slice(n);
    expect(now.length).toBeGreaterThan(0);
    expect(h264PayloadIsKeyframeStart(now[0]!.payload)).toBe(true);
  });

  it("gives up when the target sends no keyframe in time, staying on its source", () => {
    const { main, sub, recMain, recSub, v, switched, run } = setup();
    recMain.announce();
    v.onTransportState("connected");
    run(5);
    recSub.announce(); // announced, but nothing comes
    v.switchSource(cameraId("cam:sub"));
    run(8000 / 40 + 2, "main");
    expect(switched).toEqual([{ from: "cam", to: "cam:sub", ok: false, reason: "no keyframe in time" }]);
    expect(v.sourceId).toBe("cam");
    expect(sub.viewerCount).toBe(0);
    expect(main.viewerCount).toBe(1);
  });

  it("an unknown source fails the switch; a superseded one is released", () => {
    const { sub, recMain, recSub, v, switched, run } = setup();
    recMain.announce();
    recSub.announce();
    v.onTransportState("connected");
    run(3);
    v.switchSource(cameraId("nope"));
    expect(switched.at(-1)).toMatchObject({ to: "nope", ok: false, reason: "no such source" });
    v.switchSource(cameraId("cam:sub"));
    expect(sub.viewerCount).toBe(1);
    v.switchSource(cameraId("cam")); // changed its mind: stay on main
    expect(switched.at(-1)).toMatchObject({ to: "cam:sub", ok: false, reason: "superseded" });
    expect(sub.viewerCount).toBe(0);
    run(30);
    expect(v.sourceId).toBe("cam");
  });

  it("closing the viewer releases the pending target too", async () => {
    const { main, sub, recMain, recSub, v, run } = setup();
    recMain.announce();
    recSub.announce();
    v.onTransportState("connected");
    run(3);
    v.switchSource(cameraId("cam:sub"));
    await v.close("client delete");
    expect([main.viewerCount, sub.viewerCount]).toEqual([0, 0]);
  });
});
