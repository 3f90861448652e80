/** The web client's buffer requests for a heard tile (web/lip-sync.js), on stand-in receivers and stats. */
import { describe, expect, it } from "vitest";

// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const LIP_SYNC_JS: string = "../../web/lip-sync.js";
interface Receiver {
  track: { id: string; kind: string } | null;
  jitterBufferTarget?: number | null;
}
interface Pc {
  getReceivers(): Receiver[];
}
type Report = Map<string, Record<string, unknown>>;
const { holdInStep, followSound, AUDIBLE_BUFFER_MS } = (await import(LIP_SYNC_JS)) as {
  holdInStep: (pc: Pc | null, stream: unknown, audible: boolean) => void;
  followSound: (pc: Pc | null, stream: unknown, report: Report, audible: boolean) => void;
  AUDIBLE_BUFFER_MS: number;
};

function streamOf(...tracks: { id: string; kind: string }[]) {
  return { getTracks: () => tracks, getAudioTracks: () => tracks.filter((t) => t.kind === "audio") };
}

/** The sound's inbound stats after one more second: its buffer's mean delay and target over it, ms. */
function soundStats(acc: { delay: number; target: number; emitted: number }, delayMs: number, targetMs: number, emitted = 48_000): Report {
  acc.delay += (delayMs / 1000) * emitted;
  acc.target += (targetMs / 1000) * emitted;
  acc.emitted += emitted;
  return new Map([["IA", { type: "inbound-rtp", kind: "audio", trackIdentifier: "a1", jitterBufferDelay: acc.delay, jitterBufferTargetDelay: acc.target, jitterBufferEmittedCount: acc.emitted }]]);
}

describe("lip sync requests", () => {
  const a = { id: "a1", kind: "audio" };
  const v = { id: "v1", kind: "video" };
  const other = { id: "v2", kind: "video" };

  it("asks a heard tile's sound and picture for the same buffer and gives it back when muted; other tiles untouched", () => {
    const rs: Receiver[] = [
      { track: a, jitterBufferTarget: null },
      { track: v, jitterBufferTarget: null },
      { track: other, jitterBufferTarget: null },
    ];
    const pc = { getReceivers: () => rs };
    holdInStep(pc, streamOf(a, v), true);
    expect(rs.map((r) => r.jitterBufferTarget)).toEqual([AUDIBLE_BUFFER_MS, AUDIBLE_BUFFER_MS, null]);
    expect(AUDIBLE_BUFFER_MS).toBe(200);
    holdInStep(pc, streamOf(a, v), false);
    expect(rs.map((r) => r.jitterBufferTarget)).toEqual([null, null, null]);
  });

  it("moves the picture's request after the sound's grown buffer (its target, or its delay less 20 ms), and back to the floor", () => {
    const rs: Receiver[] = [{ track: a, jitterBufferTarget: null }, { track: v, jitterBufferTarget: null }, { track: other, jitterBufferTarget: 150 }];
    const pc = { getReceivers: () => rs };
    const stream = streamOf(a, v);
    holdInStep(pc, stream, true);
    const acc = { delay: 0, target: 0, emitted: 0 };
    followSound(pc, stream, soundStats(acc, 500, 500), true); // the first look: nothing to compare with
    expect(rs[1]!.jitterBufferTarget).toBe(200);
    followSound(pc, stream, soundStats(acc, 215, 200), true); // level: nothing moves
    expect(rs[1]!.jitterBufferTarget).toBe(200);
    followSound(pc, stream, soundStats(acc, 300, 480), true); // a hiccup: the browser set its sound's target to 480 ms
    expect(rs.map((r) => r.jitterBufferTarget)).toEqual([200, 480, 150]); // the sound's own request and other tiles untouched
    followSound(pc, stream, soundStats(acc, 505, 400), true); // it holds 505 ms: the picture 485 (under 10 ms of change: left at 480)
    expect(rs[1]!.jitterBufferTarget).toBe(480);
    followSound(pc, stream, soundStats(acc, 380, 300), true);
    expect(rs[1]!.jitterBufferTarget).toBe(360);
    followSound(pc, stream, soundStats(acc, 150, 120), true); // drained below the floor
    expect(rs[1]!.jitterBufferTarget).toBe(200);
  });

  it("asks nothing for a muted tile, a tile without sound, a browser without the setting, or before a connection", () => {
    const rs: Receiver[] = [{ track: v, jitterBufferTarget: null }, { track: a }];
    const pc = { getReceivers: () => rs };
    holdInStep(pc, streamOf(v), true);
    expect(rs[0]!.jitterBufferTarget).toBeNull();
    const acc = { delay: 0, target: 0, emitted: 0 };
    followSound(pc, streamOf(a, v), soundStats(acc, 200, 200), true);
    followSound(pc, streamOf(a, v), soundStats(acc, 500, 500), true);
    expect(rs[0]!.jitterBufferTarget).toBeNull(); // never asked (muted or no sound): not followed
    followSound(pc, streamOf(a, v), soundStats(acc, 500, 500), false);
    expect(rs[0]!.jitterBufferTarget).toBeNull();
    holdInStep(pc, streamOf(a), true);
    expect("jitterBufferTarget" in rs[1]!).toBe(false);
    expect(() => holdInStep(null, streamOf(a), true)).not.toThrow();
    expect(() => followSound(null, streamOf(a), new Map(), true)).not.toThrow();
  });
});
