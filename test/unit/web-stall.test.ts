/**
 * When the live page calls a tile's picture stalled (web/stall.js): quickly for a camera with a
 * frame rate, only once a statistics sample found no frame decoded since the last one, and never
 * sooner than four frame intervals.
 */
import { describe, expect, it } from "vitest";

// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const STALL_JS: string = "../../web/stall.js";
interface FrameClock {
  now: number;
  lastFrameAt: number;
  sampledAt: number;
  fps: number;
}
const { stallAfterMs, stalled, confirmNow, STALL_MS, QUICK_STALL_MS } = (await import(STALL_JS)) as {
  stallAfterMs: (fps: number) => number;
  stalled: (c: FrameClock) => boolean;
  confirmNow: (c: FrameClock) => boolean;
  STALL_MS: number;
  QUICK_STALL_MS: number;
};

describe("web stall rule", () => {
  it("waits four frame intervals, at least 1 s and at most 3 s (3 s when the rate is not known)", () => {
    expect([STALL_MS, QUICK_STALL_MS]).toEqual([3000, 1000]);
    expect(stallAfterMs(25)).toBe(1000);
    expect(stallAfterMs(2)).toBe(2000);
    expect(stallAfterMs(1)).toBe(3000);
    expect(stallAfterMs(0)).toBe(3000);
    expect(stallAfterMs(Number.NaN)).toBe(3000);
  });

  it("a 25 fps picture: suspected 1 s after its last frame, stalled once a sample taken then found nothing decoded", () => {
    const last = 10_000;
    // Frames presented up to `last`; the last sample (which saw frames) was before it.
    const at = (now: number, sampledAt = 9_600) => ({ now, lastFrameAt: last, sampledAt, fps: 25 });
    expect(stalled(at(10_900))).toBe(false);
    expect(confirmNow(at(10_900))).toBe(false);
    expect(confirmNow(at(11_000))).toBe(true);
    // Suspected, not yet confirmed: still playing as far as the badge goes.
    expect(stalled(at(11_100))).toBe(false);
    // The sample taken at 11 000 found the count unchanged (a sample that sees it grow moves lastFrameAt).
    expect(stalled(at(11_050, 11_000))).toBe(true);
    expect(confirmNow(at(11_050, 11_000))).toBe(false);
  });

  it("a picture decoded but not drawn (no frame presented) is not stalled: each sample moves the last frame", () => {
    // Samples once a second, each seeing the count grow: lastFrameAt is the sample's time.
    for (let t = 1000; t < 10_000; t += 1000) {
      expect(stalled({ now: t + 999, lastFrameAt: t, sampledAt: t, fps: 25 })).toBe(false);
    }
  });

  it("without statistics samples, 3 s without a frame is a stall whatever the rate", () => {
    expect(stalled({ now: 12_999, lastFrameAt: 10_000, sampledAt: 0, fps: 1 })).toBe(false);
    expect(stalled({ now: 13_000, lastFrameAt: 10_000, sampledAt: 0, fps: 1 })).toBe(true);
    expect(stalled({ now: 13_000, lastFrameAt: 10_000, sampledAt: 0, fps: 0 })).toBe(true);
  });

  it("nothing is stalled before the first frame (that is 'starting'), nor sampled for it", () => {
    expect(stalled({ now: 50_000, lastFrameAt: 0, sampledAt: 40_000, fps: 25 })).toBe(false);
    expect(confirmNow({ now: 50_000, lastFrameAt: 0, sampledAt: 0, fps: 25 })).toBe(false);
  });

  it("a 1 fps substream is judged on 3 s, not on the quick rule", () => {
    expect(stalled({ now: 12_500, lastFrameAt: 10_000, sampledAt: 12_400, fps: 1 })).toBe(false);
    expect(confirmNow({ now: 12_500, lastFrameAt: 10_000, sampledAt: 10_000, fps: 1 })).toBe(false);
    expect(confirmNow({ now: 13_000, lastFrameAt: 10_000, sampledAt: 10_000, fps: 1 })).toBe(true);
  });
});
