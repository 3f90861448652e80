/**
 * The restart driver on an injected clock: a failure is restarted after the policy's backoff;
 * a restart that fails counts as the next failure; past the budget the component is disabled
 * and nothing is scheduled any more (no loop); failures while a restart is pending are the same
 * one; enabling (an administrator, or the window passing) restarts it once more.
 */
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import type { TimerHandle, Timers } from "../../gateway/rtsp/timers.ts";
import { RestartDriver } from "../../gateway/supervision/restartable.ts";
import { Supervisor } from "../../gateway/supervision/supervisor.ts";
import { superviseSip } from "../../gateway/supervision/wiring.ts";

class FakeClock implements Timers {
  t = 1_000_000;
  private next = 1;
  private readonly due = new Map<number, { at: number; fn: () => void }>();
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): TimerHandle => {
    const id = this.next++;
    this.due.set(id, { at: this.t + ms, fn });
    return { id };
  };
  clearTimeout = (h: TimerHandle | undefined): void => {
    if (h) this.due.delete((h as { id: number }).id);
  };
  /** Runs what is due up to `ms` from now, letting each restart's promise settle. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const [id, first] = [...this.due].sort((a, b) => a[1].at - b[1].at)[0] ?? [];
      if (id === undefined || first!.at > end) break;
      this.due.delete(id);
      this.t = first!.at;
      first!.fn();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.t = end;
  }
  get pending(): number {
    return this.due.size;
  }
}

function setup(restart: () => Promise<void>) {
  const clock = new FakeClock();
  const sup = new Supervisor({ policy: { maxRestarts: 2, windowMs: 60_000, backoffMinMs: 100, backoffMaxMs: 1000 }, log: silentLogger, timers: clock });
  const driver = new RestartDriver(sup, { id: "turn", kind: "turn", name: "TURN", restart }, clock, silentLogger);
  return { clock, sup, driver };
}

describe("RestartDriver", () => {
  it("restarts after the backoff and reports the recovery; a second report while pending is the same failure", async () => {
    let restarts = 0;
    const { clock, sup, driver } = setup(async () => void restarts++);
    expect(driver.failed("listener closed")).toBe("restart");
    expect(driver.failed("listener closed again")).toBe("ignored");
    expect(sup.status("turn")).toMatchObject({ state: "restarting", failures: 1 });
    await clock.advance(99);
    expect(restarts).toBe(0);
    await clock.advance(1);
    expect(restarts).toBe(1);
    expect(sup.status("turn")).toMatchObject({ state: "ok", restarts: 1 });
    expect(sup.recent().map((e) => e.type)).toEqual(["failed", "restarting", "recovered"]);
  });

  it("counts a failed restart as the next failure, backs off, and disables after N restarts with nothing left scheduled", async () => {
    let tries = 0;
    const { clock, sup, driver } = setup(async () => {
      tries++;
      throw Object.assign(new Error("bind EADDRINUSE 127.0.0.1:3478"), { code: "EADDRINUSE" });
    });
    driver.failed("listener closed");
    await clock.advance(100); // restart 1 fails → failure 2, next in 200 ms
    expect(sup.status("turn")).toMatchObject({ state: "restarting", failures: 2 });
    await clock.advance(199);
    expect(tries).toBe(1);
    await clock.advance(1); // restart 2 fails → failure 3 > 2: disabled
    expect(tries).toBe(2);
    const st = sup.status("turn")!;
    expect(st).toMatchObject({ state: "disabled", restarts: 2, canEnable: true });
    expect(st.reason).toBe("3 failures in 1 min: restart failed: bind EADDRINUSE 127.0.0.1:3478");
    // Only the supervisor's end-of-window timer is left: no restart loop.
    expect(driver.busy).toBe(false);
    expect(clock.pending).toBe(1);
    expect(driver.failed("listener closed")).toBe("disable");
    await clock.advance(30_000);
    expect(tries).toBe(2);
    // The window passes: enabled, restarted once more (still failing: counted from zero again).
    await clock.advance(30_000);
    expect(tries).toBe(3);
    expect(sup.status("turn")).toMatchObject({ state: "restarting", failures: 1 });
    driver.close();
    await clock.advance(10_000);
    expect(tries).toBe(3);
  });

  it("an administrator's enable restarts it at once", async () => {
    let fail = true;
    let tries = 0;
    const { clock, sup, driver } = setup(async () => {
      tries++;
      if (fail) throw new Error("no");
    });
    driver.failed("x");
    await clock.advance(100);
    await clock.advance(200);
    expect(sup.status("turn")!.state).toBe("disabled");
    fail = false;
    sup.enable("turn", "admin");
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(tries).toBe(3);
    expect(sup.status("turn")).toMatchObject({ state: "ok" });
  });
});

describe("superviseSip", () => {
  it("a failed OPTIONS check and a lost socket each rebind SIP's UDP socket after the backoff; detached on close", async () => {
    const clock = new FakeClock();
    const sup = new Supervisor({ policy: { maxRestarts: 2, windowMs: 60_000, backoffMinMs: 100, backoffMaxMs: 1000 }, log: silentLogger, timers: clock });
    let rebinds = 0;
    const sip: { ports: { udp?: number }; onUdpLost: ((reason: string) => void) | undefined; rebindUdp(): Promise<void> } = {
      ports: { udp: 5060 },
      onUdpLost: undefined,
      rebindUdp: async () => void rebinds++,
    };
    const s = superviseSip(sup, sip, clock, silentLogger);
    s.probeFailed("no answer to OPTIONS within 2000 ms");
    expect(sup.status("sip")).toMatchObject({ state: "restarting", failures: 1, reason: "no answer to OPTIONS within 2000 ms" });
    await clock.advance(100);
    expect(rebinds).toBe(1);
    expect(sup.status("sip")).toMatchObject({ state: "ok", restarts: 1 });
    sip.onUdpLost!("socket error: EBADF");
    expect(sup.recent().at(-1)).toMatchObject({ type: "restarting" });
    expect(sup.recent().filter((e) => e.type === "failed").at(-1)).toMatchObject({ reason: "UDP socket 5060: socket error: EBADF" });
    await clock.advance(1000);
    expect(rebinds).toBe(2);
    s.close();
    expect(sip.onUdpLost).toBeUndefined();
  });
});
