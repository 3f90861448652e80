/**
 * Network adaptation: the receiver-report estimator and the ladder controller, on
 * synthetic reports and a simulated bottleneck (injected time, no sockets).
 */
import { describe, expect, it } from "vitest";
import { BandwidthEstimator, LadderController, type LinkReport } from "../../sfu/adapt.ts";

const PKT = 1000; // bytes per packet, headers included

/** A report for one second in which `sentBps` was sent and `arrivedBps` reached the receiver. */
function second(now: number, sentBps: number, arrivedBps: number, o: Partial<LinkReport> = {}): LinkReport {
  return {
    now,
    sent: Math.round(sentBps / 8 / PKT),
    arrived: Math.round(arrivedBps / 8 / PKT),
    lost: 0,
    bytesPerPacket: PKT - 50,
    fractionLost: 0,
    rttMs: 300,
    ...o,
  };
}

describe("BandwidthEstimator", () => {
  it("knows nothing until the link first saturates, then estimates 85 % of what got through", () => {
    const e = new BandwidthEstimator();
    e.onReport(second(0, 2e6, 2e6));
    expect(e.onReport(second(1000, 2e6, 2e6))).toBe("increase");
    expect(e.estimateBps).toBeUndefined();
    expect(e.onReport(second(2000, 2e6, 1e6, { rttMs: 900 }))).toBe("overuse");
    expect(e.estimateBps).toBeGreaterThan(0.8e6);
    expect(e.estimateBps).toBeLessThan(0.9e6);
  });

  it("takes random loss up to 10 % as a quiet link, more as overuse", () => {
    const e = new BandwidthEstimator();
    e.onReport(second(0, 1e6, 1e6));
    expect(e.onReport(second(1000, 1e6, 1e6, { lost: 6, fractionLost: 0.05 }))).toBe("increase");
    expect(e.onReport(second(2000, 1e6, 1e6, { lost: 25, fractionLost: 0.2 }))).toBe("overuse");
    expect(e.estimateBps).toBeLessThan(1e6);
  });

  it("counts a standing queue (round trip far above its minimum) as overuse, a small one as hold", () => {
    const e = new BandwidthEstimator();
    e.onReport(second(0, 1e6, 1e6, { rttMs: 300 }));
    expect(e.onReport(second(1000, 1e6, 1e6, { rttMs: 500 }))).toBe("hold");
    expect(e.onReport(second(2000, 1e6, 1e6, { rttMs: 1000 }))).toBe("overuse");
  });

  it("grows by about 8 % a second on a quiet link, and never above a receiver's REMB", () => {
    const e = new BandwidthEstimator();
    e.onReport(second(0, 2e6, 2e6));
    e.onReport(second(1000, 2e6, 1e6));
    const start = e.estimateBps!;
    for (let t = 2000; t <= 6000; t += 1000) e.onReport(second(t, 0.4e6, 0.4e6));
    expect(e.estimateBps! / start).toBeCloseTo(Math.pow(1.08, 5), 2);
    e.onRemb(0.5e6);
    expect(e.estimateBps).toBe(0.5e6);
  });
});

/**
 * A viewer on a bottleneck of `capacity(t)` bits/s whose levels send `rates`: one receiver
 * report a second, the controller asked every 250 ms. Returns the level over time.
 */
function simulate(capacity: (t: number) => number, rates: number[], seconds: number) {
  const est = new BandwidthEstimator();
  const ctl = new LadderController({ levels: rates.length });
  const kf = rates.at(-1)! * 0.2;
  let level = 0;
  let queue = 0; // bits waiting at the bottleneck
  const levels: { t: number; level: number }[] = [];
  for (let t = 0; t <= seconds * 1000; t += 250) {
    if (t % 1000 === 0) {
      const send = level < rates.length ? rates[level]! : kf;
      const c = capacity(t);
      queue = Math.max(0, queue + send - c);
      const through = Math.min(c, send + (queue > 0 ? c - Math.min(c, send) : 0));
      est.onReport(second(t, send, Math.min(send, through), { rttMs: 300 + (queue / c) * 1000 }));
    }
    const next = ctl.decide(t, level, est, rates);
    if (next !== level) levels.push({ t, level: next });
    level = next;
  }
  return { levels, ctl };
}

describe("LadderController", () => {
  const rates = [1.6e6, 0.4e6]; // main, sub (level 2: keyframes only)

  it("steps main → sub within seconds when the link falls to 1 Mbit/s, and back up within 20 s after", () => {
    const limitedFrom = 10_000;
    const limitedTo = 40_000;
    const { levels } = simulate((t) => (t >= limitedFrom && t < limitedTo ? 1e6 : 20e6), rates, 70);
    const down = levels.find((l) => l.t >= limitedFrom && l.level > 0)!;
    expect(down.level).toBe(1);
    expect(down.t - limitedFrom).toBeLessThanOrEqual(5000);
    const up = levels.find((l) => l.t >= limitedTo && l.level === 0)!;
    expect(up.t - limitedTo).toBeLessThanOrEqual(20_000);
    expect(levels.at(-1)!.level).toBe(0);
  });

  it("goes to keyframes only when even the substream does not fit", () => {
    const { levels } = simulate((t) => (t >= 5000 ? 0.25e6 : 20e6), rates, 30);
    expect(levels.some((l) => l.level === 2)).toBe(true);
    expect(levels.at(-1)!.level).toBe(2);
  });

  it("does not oscillate on a link that stays too slow: tries up less and less often", () => {
    const { ctl } = simulate((t) => (t >= 5000 ? 1e6 : 20e6), rates, 300);
    // Tries at most every 6, 12, 24, 48, 96, 120 s…: a handful in five minutes.
    expect(ctl.ups).toBeLessThanOrEqual(6);
    expect(ctl.downs).toBeLessThanOrEqual(ctl.ups + 2);
  });
});
