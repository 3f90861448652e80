/**
 * The playback re-timer (gateway/playback/retimer.ts): continuous sequence numbers and
 * timestamps that run with the send time, pacing at any rate, key frame first after a
 * reset, gaps closed, audio at 1× only, one frame per step.
 */
import { describe, expect, it } from "vitest";
import { Retimer, type Segment, type TimedPacket } from "../../gateway/playback/retimer.ts";

const IDR = Buffer.from([0x65, 0x88]);
const P = Buffer.from([0x41, 0x9a]);

function rtp(seq: number, ts: number, payload: Buffer, marker = true): Buffer {
  const b = Buffer.alloc(12 + payload.length);
  b[0] = 0x80;
  b[1] = 96 | (marker ? 0x80 : 0);
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(0xabcdef, 8);
  payload.copy(b, 12);
  return b;
}

function make(opts: Partial<ConstructorParameters<typeof Retimer>[0]> = {}) {
  const segments: Segment[] = [];
  const r = new Retimer({
    tracks: [{ kind: "video", clockRate: 90000 }, { kind: "audio", clockRate: 8000 }],
    startDelayMs: 100,
    maxPackets: 1000,
    initial: [{ seq: 65530, ts: 0xfffff000 }, { seq: 10, ts: 0 }],
    ...opts,
  });
  r.onSegment((s) => segments.push(s));
  return { r, segments };
}

const R0 = Date.UTC(2026, 11, 6, 10, 0, 0);
const seqOf = (p: TimedPacket) => p.data.readUInt16BE(2);
const tsOf = (p: TimedPacket) => p.data.readUInt32BE(4);

describe("Retimer", () => {
  it("paces 1× as recorded, with continuous sequence numbers and send-time timestamps across the wrap", () => {
    const { r, segments } = make();
    for (let i = 0; i < 10; i++) expect(r.push(0, rtp(100 + i, i * 3600, i % 5 === 0 ? IDR : P), R0 + i * 40, i % 5 === 0, 1000 + i * 40)).toBe("queued");
    const out = r.due(1e9);
    expect(out.map((p) => p.sendAt)).toEqual(out.map((_p, i) => 1100 + i * 40));
    expect(out.map(seqOf)).toEqual([65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3]);
    for (let i = 1; i < out.length; i++) expect((tsOf(out[i]!) - tsOf(out[i - 1]!)) >>> 0).toBe(3600);
    expect(segments).toEqual([{ wall: 1100, recorded: R0, rate: 1, rtpTimestamp: 0xfffff000 }]);
  });

  it("plays 4× and 16× at the frame rate it sends: recorded 40 ms apart → 10 / 2.5 ms apart", () => {
    for (const rate of [4, 16]) {
      const { r } = make();
      r.reset(rate);
      // Rate-Control: no: everything arrives at once; the re-timer paces.
      for (let i = 0; i < 50; i++) r.push(0, rtp(i, i * 3600, i === 0 ? IDR : P), R0 + i * 40, i === 0, 0);
      const early = r.due(120);
      expect(early.length).toBeLessThan(50);
      const all = [...early, ...r.due(1e9)];
      expect(all).toHaveLength(50);
      // Sent at start + recorded / rate, timestamps at the send time (90 kHz).
      expect(all.map((p) => p.sendAt)).toEqual(all.map((_p, i) => 100 + (i * 40) / rate));
      for (let i = 1; i < all.length; i++) expect((tsOf(all[i]!) - tsOf(all[i - 1]!)) >>> 0).toBe((40 / rate) * 90);
      expect(r.size).toBe(0);
    }
  });

  it("holds what is not due, and releases it when it is", () => {
    const { r } = make();
    r.reset(2);
    for (let i = 0; i < 10; i++) r.push(0, rtp(i, 0, i === 0 ? IDR : P), R0 + i * 40, i === 0, 0);
    expect(r.due(99)).toHaveLength(0);
    expect(r.due(100)).toHaveLength(1);
    expect(r.due(140).map((p) => p.sendAt)).toEqual([120, 140]);
    expect(r.nextDue()).toBe(160);
  });

  it("after a reset waits for a key frame and keeps sequence and timestamps going", () => {
    const { r, segments } = make();
    r.push(0, rtp(1, 0, IDR), R0, true, 0);
    r.push(0, rtp(2, 3600, P), R0 + 40, false, 40);
    const before = r.due(1e9);
    r.reset(1, R0 + 600_000);
    expect(r.push(0, rtp(900, 5, P), R0 + 599_960, false, 500)).toBe("awaitingKeyframe");
    expect(r.push(1, rtp(1, 0, Buffer.from([1])), R0 + 600_000, false, 500)).toBe("awaitingKeyframe");
    expect(r.push(0, rtp(901, 9, IDR), R0 + 600_000, true, 500)).toBe("queued");
    expect(r.push(0, rtp(902, 3609, P), R0 + 600_040, false, 510)).toBe("queued");
    const after = r.due(1e9);
    expect(seqOf(after[0]!)).toBe((seqOf(before[1]!) + 1) & 0xffff);
    expect((tsOf(after[0]!) - tsOf(before[1]!)) >>> 0).toBeGreaterThan(0);
    expect(after[0]!.sendAt).toBe(600);
    expect(after[1]!.sendAt).toBe(640);
    expect(segments.at(-1)).toMatchObject({ wall: 600, recorded: R0 + 600_000, rate: 1 });
  });

  it("closes a gap in the recording: the frame after it follows the previous one", () => {
    const { r, segments } = make();
    r.push(0, rtp(1, 0, IDR), R0, true, 0);
    r.push(0, rtp(2, 3600, P), R0 + 40, false, 40);
    r.push(0, rtp(3, 7200, IDR), R0 + 60_040, true, 80);
    const out = r.due(1e9);
    expect(out.map((p) => p.sendAt)).toEqual([100, 140, 140]);
    expect(r.stats.gaps).toBe(1);
    expect(segments.at(-1)).toMatchObject({ wall: 140, recorded: R0 + 60_040 });
  });

  it("re-anchors when the recorder falls behind instead of bursting", () => {
    const { r } = make();
    r.push(0, rtp(1, 0, IDR), R0, true, 0);
    r.push(0, rtp(2, 3600, P), R0 + 40, false, 2000);
    expect(r.due(1e9).map((p) => p.sendAt)).toEqual([100, 2000]);
    expect(r.stats.late).toBe(1);
  });

  it("sends audio at 1× only, and after the video has started", () => {
    const { r } = make();
    const a = rtp(1, 0, Buffer.from([0xff]));
    expect(r.push(1, a, R0, false, 0)).toBe("awaitingKeyframe");
    r.push(0, rtp(1, 0, IDR), R0, true, 0);
    expect(r.push(1, a, R0, false, 0)).toBe("queued");
    r.reset(4);
    r.push(0, rtp(1, 0, IDR), R0, true, 0);
    expect(r.push(1, a, R0, false, 0)).toBe("audioMuted");
  });

  it("steps exactly one frame, all its packets", () => {
    const { r, segments } = make();
    r.push(0, rtp(1, 0, IDR, false), R0, true, 0);
    r.push(0, rtp(2, 0, P, true), R0, false, 0);
    r.push(0, rtp(3, 3600, P), R0 + 40, false, 0);
    r.push(0, rtp(4, 7200, P), R0 + 80, false, 0);
    const one = r.nextFrame(5000);
    expect(one.map((p) => p.recorded)).toEqual([R0, R0]);
    expect(one.every((p) => p.sendAt === 5000)).toBe(true);
    const two = r.nextFrame(5000);
    expect(two.map((p) => p.recorded)).toEqual([R0 + 40]);
    expect(two[0]!.sendAt).toBe(5001);
    expect(segments.at(-1)).toMatchObject({ wall: 5001, recorded: R0 + 40, rate: 0 });
    expect(r.size).toBe(1);
  });

  it("says full past its bound and drops malformed input", () => {
    const { r } = make({ maxPackets: 2 });
    r.push(0, rtp(1, 0, IDR), R0, true, 0);
    r.push(0, rtp(2, 0, P), R0 + 40, false, 0);
    expect(r.push(0, rtp(3, 0, P), R0 + 80, false, 0)).toBe("full");
    expect(r.push(5, rtp(3, 0, P), R0, false, 0)).toBe("malformed");
    expect(r.push(0, Buffer.alloc(4), R0, false, 0)).toBe("malformed");
    expect(r.push(0, rtp(3, 0, P), Number.NaN, false, 0)).toBe("malformed");
  });

  it("a new stream after a reset starts after what was sent, not after what was queued and dropped", () => {
    const { r } = make();
    // Rate-Control: no: the recorder ran 4 s ahead of the picture.
    for (let i = 0; i < 100; i++) r.push(0, rtp(i, i * 3600, i % 25 === 0 ? IDR : P), R0 + i * 40, i % 25 === 0, 0);
    const sent = r.due(300);
    expect(sent.length).toBeGreaterThan(0);
    const lastTs = tsOf(sent[sent.length - 1]!);
    r.reset(4, R0 + 60_000);
    expect(r.push(0, rtp(500, 0, IDR), R0 + 60_000, true, 300)).toBe("queued");
    const first = r.due(1e9)[0]!;
    expect(first.sendAt).toBe(400);
    expect((tsOf(first) - lastTs) | 0).toBeGreaterThan(0);
  });

  it("resuming after a pause plays what is queued from now, not from the end of the queue", () => {
    const { r } = make();
    for (let i = 0; i < 100; i++) r.push(0, rtp(i, i * 3600, i % 25 === 0 ? IDR : P), R0 + i * 40, i % 25 === 0, 0);
    const sent = r.due(300);
    r.thaw(1000);
    const next = r.due(1e9);
    expect(next[0]!.sendAt).toBe(1000);
    expect(next[0]!.recorded).toBe(sent[sent.length - 1]!.recorded + 40);
    expect(next[1]!.sendAt).toBe(1040);
  });
});
