import { describe, expect, it } from "vitest";
import { Pacer, type Drainable } from "../../sfu/pacer.ts";

/** Immediates and timeouts on a clock that moves only when told. */
function fakeTimers() {
  let now = 0;
  let immediates: (() => void)[] = [];
  const timeouts: { at: number; fn: () => void; id: number }[] = [];
  let id = 0;
  return {
    t: {
      now: () => now,
      setImmediate: (fn: () => void) => void immediates.push(fn),
      setTimeout: (fn: () => void, ms: number) => {
        timeouts.push({ at: now + ms, fn, id: ++id });
        return id;
      },
      clearTimeout: (h: unknown) => {
        const i = timeouts.findIndex((x) => x.id === h);
        if (i >= 0) timeouts.splice(i, 1);
      },
    },
    /** Runs one round of pending immediates; returns how many ran. */
    step(): number {
      const run = immediates;
      immediates = [];
      for (const fn of run) fn();
      return run.length;
    },
    advance(ms: number) {
      now += ms;
      for (const x of timeouts.splice(0).filter((x) => x.at <= now)) x.fn();
    },
    pendingTimeouts: () => timeouts.length,
  };
}

/** A queue of `n` packets; with `rateLimitEvery` it asks to wait 5 ms after that many. */
class FakeViewer implements Drainable {
  retryInMs = -1;
  sent = 0;
  left: number;
  private readonly rateLimitEvery: number;
  constructor(left: number, rateLimitEvery = Infinity) {
    this.left = left;
    this.rateLimitEvery = rateLimitEvery;
  }
  drain(max: number): number {
    let n = 0;
    while (this.left > 0 && n < max) {
      if (this.sent > 0 && this.sent % this.rateLimitEvery === 0 && n > 0) {
        this.retryInMs = 5;
        return n;
      }
      this.left--;
      this.sent++;
      n++;
    }
    this.retryInMs = this.left > 0 ? (this.sent % this.rateLimitEvery === 0 ? 5 : 0) : -1;
    return n;
  }
}

describe("Pacer", () => {
  it("never writes from the caller's stack, and shares each pass round-robin", () => {
    const f = fakeTimers();
    const p = new Pacer(f.t, 10, 25);
    const a = new FakeViewer(100);
    const b = new FakeViewer(100);
    const c = new FakeViewer(100);
    p.wake(a);
    p.wake(b);
    p.wake(c);
    expect(a.sent + b.sent + c.sent).toBe(0); // nothing until the event loop turns
    f.step();
    expect([a.sent, b.sent, c.sent]).toEqual([10, 10, 5]);
    f.step();
    // The budget cut c short last time: it keeps its place and is served first now; b is cut short.
    expect([a.sent, b.sent, c.sent]).toEqual([20, 15, 15]);
    f.step();
    expect([a.sent, b.sent, c.sent]).toEqual([25, 25, 25]);
    while (f.step() > 0);
    expect([a.sent, b.sent, c.sent]).toEqual([100, 100, 100]);
    expect(p.passes).toBe(12);
  });

  it("waits on a timer, not a busy loop, when every viewer is rate-limited", () => {
    const f = fakeTimers();
    const p = new Pacer(f.t, 64, 1024);
    const a = new FakeViewer(30, 10);
    p.wake(a);
    f.step();
    expect(a.sent).toBe(10);
    expect(f.step()).toBe(0);
    expect(f.pendingTimeouts()).toBe(1);
    f.advance(5);
    expect(a.sent).toBe(20);
    f.advance(5);
    expect(a.sent).toBe(30);
    p.close();
    p.wake(new FakeViewer(5));
    expect(f.step()).toBe(0);
  });

  it("lets direct sends take at most its time budget per turn, then refills on the next turn", () => {
    const f = fakeTimers();
    const p = new Pacer(f.t, 64, 1024, 20);
    let granted = 0;
    for (let i = 0; i < 100; i++) if (p.takeDirect()) granted++;
    expect(granted).toBe(100); // the clock did not move: within budget
    f.advance(25); // this turn's direct work took 25 ms
    while (p.takeDirect()) granted++;
    expect(granted).toBeLessThan(100 + 32); // noticed within 32 calls
    expect(p.takeDirect()).toBe(false);
    f.step(); // next turn
    expect(p.takeDirect()).toBe(true);
    const off = new Pacer(f.t, 64, 1024, 0);
    expect(off.takeDirect()).toBe(false);
    p.close();
    f.step();
    expect(p.takeDirect()).toBe(false);
  });
});
