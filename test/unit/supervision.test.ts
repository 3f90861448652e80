/**
 * The supervisor's pure core on an injected clock: restart backoff, the sliding window,
 * disabling after too many failures (never a restart loop), enabling by an administrator
 * or when the window has passed, health transitions, and the bounded event log.
 */
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { EventLog } from "../../gateway/supervision/event-log.ts";
import { RestartBudget } from "../../gateway/supervision/policy.ts";
import { Supervisor } from "../../gateway/supervision/supervisor.ts";
import type { TimerHandle, Timers } from "../../gateway/rtsp/timers.ts";

class FakeClock implements Timers {
  t = 1_000_000;
  private next = 1;
  private readonly due = new Map<number, { at: number; fn: () => void }>();
  now = (): number => this.t;
  /** The next timer fires this many ms early by `now()` (as Node's may, by the wall clock), once. */
  early = 0;
  setTimeout = (fn: () => void, ms: number): TimerHandle => {
    const id = this.next++;
    this.due.set(id, { at: this.t + ms, fn });
    return { id };
  };
  clearTimeout = (h: TimerHandle | undefined): void => {
    if (h) this.due.delete((h as { id: number }).id);
  };
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const [id, first] = [...this.due].sort((a, b) => a[1].at - b[1].at)[0] ?? [];
      if (id === undefined || first!.at > end) break;
      this.due.delete(id);
      this.t = Math.max(this.t, first!.at - this.early);
      this.early = 0;
      first!.fn();
    }
    this.t = end;
  }
  get pending(): number {
    return this.due.size;
  }
}

const POLICY = { maxRestarts: 3, windowMs: 60_000, backoffMinMs: 1000, backoffMaxMs: 5000 };

describe("RestartBudget", () => {
  it("backs off exponentially, capped, and disables on the failure after the last one allowed", () => {
    const clock = new FakeClock();
    const b = new RestartBudget(POLICY, clock.now);
    expect(b.failed()).toEqual({ action: "restart", delayMs: 1000, failures: 1 });
    expect(b.failed()).toEqual({ action: "restart", delayMs: 2000, failures: 2 });
    expect(b.failed()).toEqual({ action: "restart", delayMs: 4000, failures: 3 });
    expect(b.failed()).toEqual({ action: "disable", until: clock.t + 60_000, failures: 4 });
    // Failing while disabled changes nothing (no loop, no longer wait).
    clock.advance(10_000);
    expect(b.failed()).toEqual({ action: "disable", until: clock.t + 50_000, failures: 4 });
    expect(b.due()).toBe(false);
    clock.advance(50_000);
    expect(b.due()).toBe(true);
    b.enable();
    expect(b.disabledUntil).toBeUndefined();
    expect(b.failed()).toEqual({ action: "restart", delayMs: 1000, failures: 1 });
  });

  it("forgets failures older than the window (a sliding window, not a lifetime count)", () => {
    const clock = new FakeClock();
    const b = new RestartBudget({ ...POLICY, backoffMaxMs: 2000 }, clock.now);
    for (let i = 0; i < 3; i++) {
      expect(b.failed().action).toBe("restart");
      clock.advance(25_000);
    }
    // The first failure is now 75 s old: two remain in the window, this is the third.
    expect(b.failures()).toBe(2);
    expect(b.failed()).toEqual({ action: "restart", delayMs: 2000, failures: 3 });
    clock.advance(61_000);
    expect(b.failures()).toBe(0);
  });
});

describe("Supervisor", () => {
  function make() {
    const clock = new FakeClock();
    const sup = new Supervisor({ policy: POLICY, eventsKept: 100, log: silentLogger, timers: clock });
    const calls: string[] = [];
    sup.register("camera:lobby", "camera", "Lobby", { disable: (r) => calls.push(`disable ${r}`), enable: () => calls.push("enable") });
    return { clock, sup, calls };
  }

  it("disables a camera after too many failures in the window and enables it when the window has passed", () => {
    const { clock, sup, calls } = make();
    for (let i = 0; i < 3; i++) {
      expect(sup.failed("camera:lobby", "the recorder closed the connection").action).toBe("restart");
      sup.recovered("camera:lobby", "live again");
      clock.advance(1000);
    }
    expect(sup.status("camera:lobby")).toMatchObject({ state: "ok", failures: 3, restarts: 3 });
    const v = sup.failed("camera:lobby", "the recorder closed the connection");
    expect(v).toEqual({ action: "disable", until: clock.t + 60_000, failures: 4 });
    expect(calls).toEqual(["disable 4 failures in 1 min: the recorder closed the connection"]);
    expect(sup.status("camera:lobby")).toMatchObject({
      state: "disabled",
      reason: "4 failures in 1 min: the recorder closed the connection",
      disabledUntil: clock.t + 60_000,
      canEnable: true,
    });
    // A recovery report while disabled does not bring it back; only enable does.
    sup.recovered("camera:lobby");
    expect(sup.status("camera:lobby")!.state).toBe("disabled");
    clock.advance(59_999);
    expect(calls).toHaveLength(1);
    clock.advance(1);
    expect(calls).toEqual([calls[0], "enable"]);
    expect(sup.status("camera:lobby")).toMatchObject({ state: "ok", failures: 0, canEnable: false });
    expect(sup.recent().map((e) => e.type)).toEqual([
      "failed", "restarting", "recovered",
      "failed", "restarting", "recovered",
      "failed", "restarting", "recovered",
      "failed", "disabled", "enabled",
    ]);
    expect(sup.recent().at(-1)).toMatchObject({ component: "camera:lobby", kind: "camera", reason: "the window passed" });
    expect(clock.pending).toBe(0);
  });

  it("enables when the window's timer fires a millisecond early by the wall clock (it waits out the rest)", () => {
    const { clock, sup, calls } = make();
    for (let i = 0; i < 4; i++) sup.failed("camera:lobby", "the recorder closed the connection");
    expect(sup.status("camera:lobby")!.state).toBe("disabled");
    clock.early = 1;
    clock.advance(60_000);
    expect(calls).toEqual([calls[0], "enable"]);
    expect(sup.status("camera:lobby")).toMatchObject({ state: "ok", canEnable: false });
    expect(clock.pending).toBe(0);
  });

  it("lets an administrator enable a disabled component at once, and refuses one that is not disabled", () => {
    const { sup, calls, clock } = make();
    expect(() => sup.enable("camera:lobby", "alice")).toThrow(/not disabled/);
    expect(() => sup.enable("camera:nowhere", "alice")).toThrow(/no supervised component/);
    for (let i = 0; i < 4; i++) sup.failed("camera:lobby", "boom");
    expect(sup.status("camera:lobby")!.state).toBe("disabled");
    expect(sup.enable("camera:lobby", "alice")).toMatchObject({ state: "ok", failures: 0 });
    expect(calls.at(-1)).toBe("enable");
    expect(sup.recent().at(-1)).toMatchObject({ type: "enabled", by: "alice", reason: "enabled by an administrator" });
    // Its auto-enable timer is gone: nothing fires later.
    expect(clock.pending).toBe(0);
  });

  it("reports health transitions once each (down with its reason, recovered), with no restarts", () => {
    const { sup } = make();
    sup.register("turn", "turn", "TURN");
    const seen: string[] = [];
    sup.events.on("event", (e) => seen.push(`${e.component} ${e.type} ${e.reason}`));
    sup.health("turn", true, "answers");
    sup.health("turn", false, "no answer to a STUN binding request");
    sup.health("turn", false, "no answer to a STUN binding request");
    expect(sup.status("turn")).toMatchObject({ state: "down", reason: "no answer to a STUN binding request", restarts: 0 });
    sup.health("turn", true, "answers");
    expect(seen).toEqual(["turn failed no answer to a STUN binding request", "turn recovered answers"]);
    expect(sup.eventCounts()).toEqual([
      { kind: "turn", type: "failed", count: 1 },
      { kind: "turn", type: "recovered", count: 1 },
    ]);
  });

  it("survives a hook or a listener that throws", () => {
    const clock = new FakeClock();
    const sup = new Supervisor({ policy: { ...POLICY, maxRestarts: 0 }, log: silentLogger, timers: clock });
    sup.register("media-worker:0", "media-worker", "Media worker 0", {
      disable: () => {
        throw new Error("hook broke");
      },
    });
    sup.events.on("event", () => {
      throw new Error("listener broke");
    });
    expect(sup.failed("media-worker:0", "exit code 1").action).toBe("disable");
    expect(sup.status("media-worker:0")!.state).toBe("disabled");
    sup.close();
    sup.close();
    expect(clock.pending).toBe(0);
  });
});

describe("EventLog", () => {
  it("keeps the last N events, numbered, and lists those after a given one", () => {
    const log = new EventLog(100);
    for (let i = 0; i < 130; i++) log.add({ time: i, component: "sip", kind: "sip", type: "failed", reason: `r${i}` });
    const all = log.list();
    expect(all).toHaveLength(100);
    expect(all[0]!.seq).toBe(31);
    expect(all.at(-1)!.seq).toBe(130);
    expect(log.total).toBe(130);
    expect(log.list(128).map((e) => e.reason)).toEqual(["r128", "r129"]);
  });
});
