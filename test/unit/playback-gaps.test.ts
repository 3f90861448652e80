/** What a replay stream teaches the timeline (gateway/playback/gaps.ts), on synthetic frame times. */
import { describe, expect, it } from "vitest";
import { GapLearner, type Learned } from "../../gateway/playback/gaps.ts";

const T = 1_800_000_000_000;
const gap = (start: number, end: number): Learned => ({ range: { start, end }, present: false });
const present = (start: number, end: number): Learned => ({ range: { start, end }, present: true });

/** Frames every 40 ms from `from` (inclusive) to `to` (exclusive); returns what they taught. */
function play(g: GapLearner, from: number, to: number, step = 40, dAt?: number): Learned[] {
  const out: Learned[] = [];
  for (let t = from; t < to; t += step) out.push(...g.frame(t, t === dAt), ...g.frame(t, false));
  return out;
}

describe("GapLearner", () => {
  it("learns nothing from an unbroken stream but the stretch it delivered", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    expect(g.restart(T, 1, false)).toEqual([]);
    expect(play(g, T - 400, T + 4000)).toEqual([]);
    expect(g.flush()).toEqual([present(T - 400, T + 4000)]);
    expect(g.flush()).toEqual([]);
  });

  it("a jump between consecutive frames is a gap, with or without the D bit", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    g.restart(T, 1, false);
    expect(play(g, T, T + 2000)).toEqual([]);
    expect(g.frame(T + 22_000, false)).toEqual([present(T, T + 2000), gap(T + 2000, T + 22_000)]);
    expect(play(g, T + 22_040, T + 23_000)).toEqual([]);
    // Shorter than minGapMs: dropped frames, not a gap.
    expect(g.frame(T + 23_800, true)).toEqual([]);
    expect(g.restart(T + 50_000, 1, false)).toEqual([present(T + 22_000, T + 23_840)]);
  });

  it("with key frames only, only a marked jump is a gap", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    g.restart(T, 16, true);
    // One key frame a second: unmarked jumps of 2 s teach nothing.
    expect(play(g, T + 500, T + 10_500, 2000)).toEqual([]);
    expect(g.frame(T + 40_500, true)).toEqual([present(T + 500, T + 8540), gap(T + 8540, T + 40_500)]);
  });

  it("a first frame later than asked (forward) is a gap; earlier (the key frame before) is not", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    g.restart(T, 1, false);
    expect(g.frame(T + 45_000, true)).toEqual([gap(T, T + 45_000)]);
    g.restart(T + 100_000, 4, false);
    expect(g.frame(T + 99_200, true)).toEqual([]);
    // At key frames only the recorder may start at the next key frame: no conclusion.
    g.restart(T + 200_000, 16, true);
    expect(g.frame(T + 203_000, true)).toEqual([]);
  });

  it("a PLAY answer's later Range start is a gap, learned once", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    g.restart(T, 1, false);
    expect(g.answered(T + 30_000)).toEqual([gap(T, T + 30_000)]);
    expect(g.frame(T + 30_000, true)).toEqual([]);
    expect(g.answered(T + 90_000)).toEqual([]);
  });

  it("a refused open range is a gap up to now, unless too short", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    expect(g.refused(T, T + 3_600_000)).toEqual([gap(T, T + 3_600_000)]);
    expect(g.refused(T, T + 500)).toEqual([]);
  });

  it("reverse play: later times come first, a backward jump is a gap", () => {
    const g = new GapLearner({ minGapMs: 1000 });
    g.restart(T + 60_000, -1, false);
    const out: Learned[] = [];
    for (let t = T + 60_000; t > T + 50_000; t -= 40) out.push(...g.frame(t, false));
    expect(out).toEqual([]);
    expect(g.frame(T + 20_000, true)).toEqual([present(T + 50_040, T + 60_040), gap(T + 20_040, T + 50_040)]);
  });
});
