/**
 * Pacing converted output (gateway/transcode/pacer.ts) on a fake clock: each packet leaves a
 * steady delay after its input time, in order, late ones at once; a changed target is reached
 * gradually (quicker up than down when asked), from an initial delay without a jump; reset and
 * close drop what is held. The delay (LagWatch) stays put through lag spikes and quiet spells,
 * and is raised only when sound keeps going out late.
 */
import { describe, expect, it } from "vitest";
import { FollowDelay, LagWatch, Pacer } from "../../gateway/transcode/pacer.ts";
import type { TimerHandle, Timers } from "../../gateway/rtsp/timers.ts";

/** Timers on a clock moved by hand. */
class FakeTimers implements Timers {
  t = 1000;
  private list: { at: number; fn: () => void; h: TimerHandle }[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const h = {} as TimerHandle;
    this.list.push({ at: this.t + Math.max(0, ms), fn, h });
    return h;
  }
  clearTimeout(h: TimerHandle | undefined): void {
    this.list = this.list.filter((x) => x.h !== h);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.list.sort((a, b) => a.at - b.at);
      const next = this.list[0];
      if (!next || next.at > end) break;
      this.list.shift();
      this.t = Math.max(this.t, next.at); // a held-up loop runs its timers late
      next.fn();
    }
    this.t = end;
  }
}

describe("FollowDelay", () => {
  it("sends at input time + delay, never before now nor before the previous packet", () => {
    const d = new FollowDelay(() => 250, { riseSlew: 1 });
    expect(d.sendAt(1000, 1000)).toBe(1250);
    expect(d.sendAt(1020, 1100)).toBe(1270);
    expect(d.sendAt(900, 1300)).toBe(1300); // later than its delay: at once
    expect(d.sendAt(1040, 1300)).toBe(1300); // not before the one before it
  });

  it("moves to a new target by at most the slew of the time passed", () => {
    let target = 50;
    const d = new FollowDelay(() => target, { riseSlew: 0.1 });
    expect(d.sendAt(0, 0)).toBe(50); // the first packet takes the target as it is
    target = 0;
    d.sendAt(0, 0);
    target = 200;
    expect(d.sendAt(1000, 1000)).toBe(1150); // 1000 ms passed: 100 ms more, from 50
    expect(d.delayMs).toBe(150);
    expect(d.sendAt(3000, 3000)).toBe(3200);
    target = 0;
    d.sendAt(3500, 3500);
    expect(d.delayMs).toBe(150);
  });

  it("starts from its initial delay without a jump, and rises and falls at their own slews", () => {
    let target = 300;
    const d = new FollowDelay(() => target, { riseSlew: 0.05, fallSlew: 0.01, initialMs: 170 });
    expect(d.sendAt(0, 0)).toBe(170); // the first packet does not jump to the target
    expect(d.sendAt(1000, 1000)).toBe(1220); // 1 s at 5 %: 50 ms up
    target = 0;
    d.sendAt(2000, 2000);
    expect(d.delayMs).toBe(210); // 1 s at 1 %: 10 ms down
  });
});

describe("LagWatch", () => {
  const opts = { windowMs: 1000, marginMs: 40, maxMs: 400, initialMs: 170, lateShare: 0.05 };

  it("keeps its first delay through lag spikes and quiet spells: a change would move both tracks' arrival", () => {
    const w = new LagWatch(opts);
    expect(w.delayMs()).toBe(170);
    // 1 s of lags on a quiet machine, then one stall (3 of 100 late), then a quiet window.
    for (let i = 0; i < 100; i++) w.note(i === 50 ? 300 : 60 + (i % 4) * 15, i * 10);
    for (let i = 0; i < 3; i++) w.note(250, 1000 + i);
    for (let i = 3; i < 100; i++) w.note(80, 1000 + i * 10);
    for (let i = 0; i < 100; i++) w.note(20, 2000 + i * 10);
    w.note(20, 3000);
    expect(w.delayMs()).toBe(170);
  });

  it("is raised to the window's 95th-percentile lag plus the margin when sound keeps going out late, at most maxMs, and never lowered", () => {
    const w = new LagWatch(opts);
    // A busy second: a tenth of the lags past the delay.
    for (let i = 0; i < 100; i++) w.note(i % 10 === 0 ? 200 : 150, i * 10);
    expect(w.delayMs()).toBe(170); // judged when the window ends
    w.note(60, 1000);
    expect(w.delayMs()).toBe(240);
    for (let i = 1; i < 100; i++) w.note(60, 1000 + i * 10);
    w.note(60, 2000); // quiet again: it stays
    expect(w.delayMs()).toBe(240);
    for (let i = 0; i < 100; i++) w.note(900, 2000 + i * 10);
    w.note(900, 3000);
    expect(w.delayMs()).toBe(400);
    w.reset(); // a new ffmpeg: the delay stays
    expect(w.delayMs()).toBe(400);
  });
});

describe("Pacer", () => {
  it("releases bursts at their input times plus the delay, in order, copying what it holds", () => {
    const timers = new FakeTimers();
    const sent: { at: number; b: number }[] = [];
    const p = new Pacer({ plan: new FollowDelay(() => 100, { riseSlew: 1 }), timers, maxQueue: 16, send: (b) => sent.push({ at: timers.now(), b: b[0]! }) });
    // Three 20 ms packets whose input arrived at 1000, 1020, 1040, given back together at 1060.
    timers.advance(60);
    const buf = Buffer.from([1]);
    p.push(buf, 1000);
    buf[0] = 2; // the caller reuses its buffer
    p.push(buf, 1020);
    buf[0] = 3;
    p.push(buf, 1040);
    expect(sent).toEqual([]);
    expect(p.held).toBe(3);
    timers.advance(200);
    expect(sent).toEqual([
      { at: 1100, b: 1 },
      { at: 1120, b: 2 },
      { at: 1140, b: 3 },
    ]);
  });

  it("sends at once what is already late, and past maxQueue the oldest", () => {
    const timers = new FakeTimers();
    const sent: number[] = [];
    const p = new Pacer({ plan: new FollowDelay(() => 100, { riseSlew: 1 }), timers, maxQueue: 2, send: (b) => sent.push(b[0]!) });
    timers.advance(500);
    p.push(Buffer.from([9]), 1000); // 500 ms late
    expect(sent).toEqual([9]);
    p.push(Buffer.from([1]), 1500);
    p.push(Buffer.from([2]), 1500);
    p.push(Buffer.from([3]), 1500);
    expect(sent).toEqual([9, 1]);
  });

  it("drops what it holds on reset and close, and sends nothing after close", () => {
    const timers = new FakeTimers();
    const sent: number[] = [];
    const p = new Pacer({ plan: new FollowDelay(() => 100, { riseSlew: 1 }), timers, maxQueue: 16, send: (b) => sent.push(b[0]!) });
    p.push(Buffer.from([1]), 1000);
    p.reset();
    timers.advance(500);
    expect(sent).toEqual([]);
    p.push(Buffer.from([2]), 1500);
    p.close();
    p.close();
    p.push(Buffer.from([3]), 1500);
    timers.advance(500);
    expect(sent).toEqual([]);
  });

  it("drops a packet that would leave more than dropLateMs after it was due (held up input or event loop), and counts it", () => {
    const timers = new FakeTimers();
    const sent: number[] = [];
    let late = 0;
    const p = new Pacer({ plan: new FollowDelay(() => 100, { riseSlew: 1 }), timers, maxQueue: 16, dropLateMs: 80, onLate: () => late++, send: (b) => sent.push(b[0]!) });
    const t = timers.t;
    p.push(Buffer.from([2]), t - 150); // came 150 ms late: due 50 ms ago, sent at once
    p.push(Buffer.from([3]), t - 200); // due 100 ms ago: dropped
    expect(sent).toEqual([2]);
    expect(late).toBe(1);
    p.push(Buffer.from([1]), t); // due at +100
    p.push(Buffer.from([4]), t + 20); // due at +120
    // The event loop is held up for 200 ms: at +200, packet 1 is 100 ms late (dropped), packet 4 80 ms (sent).
    timers.t = t + 200;
    timers.advance(0);
    expect(sent).toEqual([2, 4]);
    expect(late).toBe(2);
  });
});
