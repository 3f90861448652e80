/**
 * A component the supervisor restarts in place: TURN's UDP listeners (rebound on their
 * port), and whatever else can be started again without restarting the process.
 *
 * The component's adapter reports each failure (`failed`); the supervisor's policy says
 * whether to restart after a backoff or to give up. A restart that throws is one more
 * failure; one that succeeds is a recovery. Past the policy's budget the component is left
 * in its error-tolerant state (the supervisor shows why) until an administrator enables it
 * or the window has passed, and then it is restarted once more. Never two restarts at once,
 * and never a loop: every failure goes through the policy. Timers are injected.
 */
import type { Logger } from "../../config/log.ts";
import type { TimerHandle, Timers } from "../rtsp/timers.ts";
import type { ComponentKind, Supervisor } from "./supervisor.ts";

export interface RestartableComponent {
  id: string;
  kind: ComponentKind;
  name: string;
  /** Starts it again; a rejection counts as another failure (its message is the reason). */
  restart(): Promise<void>;
  /** Put in its error-tolerant state after too many failures (optional; the reason is shown). */
  disable?(reason: string): void;
}

export class RestartDriver {
  private readonly sup: Supervisor;
  private readonly c: RestartableComponent;
  private readonly timers: Timers;
  private readonly log: Logger;
  private timer: TimerHandle | undefined;
  private running = false;
  private closed = false;

  constructor(sup: Supervisor, c: RestartableComponent, timers: Timers, log: Logger) {
    this.sup = sup;
    this.c = c;
    this.timers = timers;
    this.log = log;
    sup.register(c.id, c.kind, c.name, {
      ...(c.disable ? { disable: (reason: string) => c.disable!(reason) } : {}),
      // Enabled by an administrator, or the window passed: one more try.
      enable: () => void this.run(),
    });
  }

  /** True while a restart is scheduled or running (further failures are the same one). */
  get busy(): boolean {
    return this.timer !== undefined || this.running;
  }

  /** The component failed: the policy decides. Returns what was done. */
  failed(reason: string): "restart" | "disable" | "ignored" {
    if (this.closed || this.busy) return "ignored";
    const v = this.sup.failed(this.c.id, reason);
    if (v.action !== "restart") return "disable";
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, v.delayMs);
    return "restart";
  }

  /** Stops pending restarts; idempotent. */
  close(): void {
    this.closed = true;
    this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async run(): Promise<void> {
    if (this.closed || this.running) return;
    this.running = true;
    let error: unknown;
    try {
      await this.c.restart();
    } catch (err) {
      error = err;
    }
    this.running = false;
    if (this.closed) return;
    if (error === undefined) {
      this.log.info("component restarted", { component: this.c.id });
      this.sup.recovered(this.c.id, "restarted");
      return;
    }
    this.log.warn("component restart failed", { component: this.c.id, err: error });
    this.failed(`restart failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
