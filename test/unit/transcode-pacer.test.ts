/**
 * Pacing converted output (gateway/transcode/pacer.ts) on a fake clock: each packet leaves a
 * steady delay after its input time, in order, late ones at once; a changed target is reached
 * gradually; reset and close drop what is held. The delay follows ffmpeg's measured lag
 * (LagWatch): up at once, down only after a window without the larger lag.
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
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

describe("FollowDelay", () => {
  it("sends at input time + delay, never before now nor before the previous packet", () => {
    const d = new FollowDelay(() => 250, 1);
    expect(d.sendAt(1000, 1000)).toBe(1250);
    expect(d.sendAt(1020, 1100)).toBe(1270);
    expect(d.sendAt(900, 1300)).toBe(1300); // later than its delay: at once
    expect(d.sendAt(1040, 1300)).toBe(1300); // not before the one before it
  });

  it("moves to a new target by at most the slew of the time passed", () => {
    let target = 50;
    const d = new FollowDelay(() => target, 0.1);
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
});

describe("LagWatch", () => {
  it("is the largest lag of this window and the last plus the margin, within its bounds; the most until a lag is seen", () => {
    const w = new LagWatch({ windowMs: 1000, marginMs: 40, minMs: 50, maxMs: 400 });
    expect(w.delayMs()).toBe(400);
    w.note(180, 0);
    expect(w.delayMs()).toBe(220);
    w.note(300, 500); // a busy moment: up at once
    expect(w.delayMs()).toBe(340);
    w.note(180, 1000); // a new window: the last one's 300 still counts
    expect(w.delayMs()).toBe(340);
    w.note(185, 2000); // a whole window without it: down
    expect(w.delayMs()).toBe(225);
    w.note(500, 2100);
    expect(w.delayMs()).toBe(400); // never past the most
    w.note(0, 5000); // two windows without output: only what came since counts
    expect(w.delayMs()).toBe(50); // never under the least
    w.reset();
    expect(w.delayMs()).toBe(400);
  });
});

describe("Pacer", () => {
  it("releases bursts at their input times plus the delay, in order, copying what it holds", () => {
    const timers = new FakeTimers();
    const sent: { at: number; b: number }[] = [];
    const p = new Pacer({ plan: new FollowDelay(() => 100, 1), timers, maxQueue: 16, send: (b) => sent.push({ at: timers.now(), b: b[0]! }) });
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
    const p = new Pacer({ plan: new FollowDelay(() => 100, 1), timers, maxQueue: 2, send: (b) => sent.push(b[0]!) });
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
    const p = new Pacer({ plan: new FollowDelay(() => 100, 1), timers, maxQueue: 16, send: (b) => sent.push(b[0]!) });
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
});
