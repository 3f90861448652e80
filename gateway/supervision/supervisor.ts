/**
 * One supervisor for every component of the gateway: each camera's ingest, each media
 * worker, TURN, SIP, the audit store and the identity provider's reachability.
 *
 * Components report what happens to them (a failure, a recovery, a health check's
 * result); the supervisor applies each one's restart policy (policy.ts), keeps its
 * state for administrators, `/readyz` and `/metrics`, records the last events
 * (event-log.ts) and tells its observers (the webhook). A component that fails too
 * often is disabled: its `disable` callback puts it in its error-tolerant state, and
 * its `enable` callback brings it back when an administrator acts or the window has
 * passed. Timers and clock are injected; the wiring to each component lives in
 * wiring.ts.
 */
import { NotFoundError, WrongStateError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { TimerHandle, Timers } from "../rtsp/timers.ts";
import { EventLog, type ComponentKind, type SupervisionEvent, type SupervisionEventType } from "./event-log.ts";
import { RestartBudget, type RestartPolicyOptions, type Verdict } from "./policy.ts";

export type { ComponentKind, SupervisionEvent, SupervisionEventType } from "./event-log.ts";
export type { RestartPolicyOptions, Verdict } from "./policy.ts";

/**
 * ok; restarting (failed, being restarted); down (a health check fails, nothing to
 * restart); disabled (too many failures in the window: error-tolerant state).
 */
export type ComponentState = "ok" | "restarting" | "down" | "disabled";

export interface ComponentStatus {
  /** `camera:<id>`, `media-worker:<n>`, `turn`, `sip`, `audit`, `identity-provider`. */
  id: string;
  kind: ComponentKind;
  name: string;
  state: ComponentState;
  /** Why it is not ok, in plain words. */
  reason?: string;
  /** When `state` was entered, epoch ms. */
  since: number;
  /** Failures within the policy window. */
  failures: number;
  /** Restarts since the gateway started. */
  restarts: number;
  /** While disabled: when it is enabled again by itself, epoch ms. */
  disabledUntil?: number;
  /** Whether an administrator can enable it now. */
  canEnable: boolean;
}

/** How the supervisor acts on a component. */
export interface ComponentHooks {
  /** Puts it in its error-tolerant state (too many failures). */
  disable?(reason: string): void;
  /** Brings it back (an administrator, or the window passed). */
  enable?(): void;
}

export interface SupervisorOptions {
  policy: RestartPolicyOptions;
  /** Events kept for administrators. Default 100. */
  eventsKept?: number;
  log: Logger;
  timers: Timers;
}

export type SupervisorEvents = {
  /** Every event, as it is recorded. */
  event: [SupervisionEvent];
};

interface Component {
  id: string;
  kind: ComponentKind;
  name: string;
  state: ComponentState;
  reason: string | undefined;
  since: number;
  restarts: number;
  budget: RestartBudget;
  hooks: ComponentHooks;
  timer: TimerHandle | undefined;
}

export class Supervisor {
  readonly events: SafeEmitter<SupervisorEvents>;
  private readonly o: SupervisorOptions;
  private readonly log: Logger;
  private readonly timers: Timers;
  private readonly components = new Map<string, Component>();
  private readonly log100: EventLog;
  /** Events recorded since start, by kind and type (for /metrics). */
  private readonly counts = new Map<string, number>();
  private closed = false;

  constructor(o: SupervisorOptions) {
    this.o = o;
    this.log = o.log;
    this.timers = o.timers;
    this.log100 = new EventLog(o.eventsKept ?? 100);
    this.events = new SafeEmitter<SupervisorEvents>((event, err) => this.log.error("supervision listener failed", { event, err }));
  }

  /** Adds a component (ok); registering an id again replaces its hooks and keeps its history. */
  register(id: string, kind: ComponentKind, name: string, hooks: ComponentHooks = {}): void {
    const c = this.components.get(id);
    if (c) {
      c.hooks = hooks;
      return;
    }
    this.components.set(id, {
      id,
      kind,
      name,
      state: "ok",
      reason: undefined,
      since: this.timers.now(),
      restarts: 0,
      budget: new RestartBudget(this.o.policy, () => this.timers.now()),
      hooks,
      timer: undefined,
    });
  }

  /**
   * A component failed. Returns the verdict: restart after the delay (the caller
   * restarts; cameras use their own reconnect backoff), or disabled (the supervisor has
   * called its `disable` hook and will call `enable` when the window has passed).
   */
  failed(id: string, reason: string): Verdict {
    const c = this.get(id);
    if (c.state === "disabled") return { action: "disable", until: c.budget.disabledUntil ?? this.timers.now(), failures: c.budget.failures() };
    const v = c.budget.failed();
    this.record(c, "failed", reason);
    if (v.action === "restart") {
      c.restarts++;
      this.set(c, "restarting", reason);
      this.record(c, "restarting", `attempt ${v.failures} of ${this.o.policy.maxRestarts} in ${windowWords(this.o.policy.windowMs)}${v.delayMs > 0 ? `, in ${v.delayMs} ms` : ""}`);
      return v;
    }
    const why = `${v.failures} failures in ${windowWords(this.o.policy.windowMs)}: ${reason}`;
    this.set(c, "disabled", why);
    this.record(c, "disabled", why);
    this.log.error("component disabled after repeated failures", { component: id, reason: why, until: new Date(v.until).toISOString() });
    this.call(c, "disable", why);
    const wake = (): void => {
      c.timer = undefined;
      if (c.state !== "disabled") return;
      // A timer may fire a millisecond early by the wall clock: wait out the rest, never stay disabled.
      if (!c.budget.due()) c.timer = this.timers.setTimeout(wake, Math.max(1, (c.budget.disabledUntil ?? 0) - this.timers.now()));
      else this.doEnable(c, "the window passed", undefined);
    };
    c.timer = this.timers.setTimeout(wake, Math.max(0, v.until - this.timers.now()));
    return v;
  }

  /** A component works again (a restart succeeded, a check passes). */
  recovered(id: string, detail = "working again"): void {
    const c = this.get(id);
    if (c.state === "ok" || c.state === "disabled") return;
    this.set(c, "ok", undefined);
    this.record(c, "recovered", detail);
  }

  /** A health check's result, for components without restarts (TURN, SIP, audit store, identity provider). */
  health(id: string, ok: boolean, reason: string): void {
    const c = this.get(id);
    if (ok) return this.recovered(id, reason);
    if (c.state === "down" && c.reason === reason) return;
    this.set(c, "down", reason);
    this.record(c, "failed", reason);
  }

  /**
   * An administrator enables a disabled component now.
   * @throws NotFoundError for an unknown component, WrongStateError when it is not disabled
   */
  enable(id: string, by: string): ComponentStatus {
    const c = this.get(id);
    if (c.state !== "disabled") throw new WrongStateError(`${c.name} is not disabled`);
    this.doEnable(c, "enabled by an administrator", by);
    return this.statusOf(c);
  }

  status(id: string): ComponentStatus | undefined {
    const c = this.components.get(id);
    return c ? this.statusOf(c) : undefined;
  }

  list(): ComponentStatus[] {
    return [...this.components.values()].map((c) => this.statusOf(c));
  }

  /** The kept events, oldest first (`after`: only newer than that seq). */
  recent(after = 0): SupervisionEvent[] {
    return this.log100.list(after);
  }

  /** Events recorded since start by kind and type: `[{ kind, type, count }]`. */
  eventCounts(): { kind: ComponentKind; type: SupervisionEventType; count: number }[] {
    return [...this.counts].map(([k, count]) => {
      const [kind, type] = k.split("|") as [ComponentKind, SupervisionEventType];
      return { kind, type, count };
    });
  }

  /** Stops the timers; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.components.values()) this.timers.clearTimeout(c.timer);
    this.events.removeAllListeners();
  }

  private doEnable(c: Component, reason: string, by: string | undefined): void {
    this.timers.clearTimeout(c.timer);
    c.timer = undefined;
    c.budget.enable();
    this.set(c, "ok", undefined);
    this.record(c, "enabled", reason, by);
    this.log.info("component enabled", { component: c.id, reason, ...(by ? { by } : {}) });
    this.call(c, "enable");
  }

  private call(c: Component, hook: "disable" | "enable", reason = ""): void {
    if (this.closed) return;
    try {
      if (hook === "disable") c.hooks.disable?.(reason);
      else c.hooks.enable?.();
    } catch (err) {
      this.log.error(`supervised component's ${hook} failed`, { component: c.id, err });
    }
  }

  private get(id: string): Component {
    const c = this.components.get(id);
    if (!c) throw new NotFoundError(`no supervised component ${id}`);
    return c;
  }

  private set(c: Component, state: ComponentState, reason: string | undefined): void {
    if (c.state !== state) c.since = this.timers.now();
    c.state = state;
    c.reason = reason;
  }

  private record(c: Component, type: SupervisionEventType, reason: string, by?: string): void {
    const e = this.log100.add({ time: this.timers.now(), component: c.id, kind: c.kind, type, reason, ...(by ? { by } : {}) });
    const key = `${c.kind}|${type}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (!this.closed) this.events.emit("event", e);
  }

  private statusOf(c: Component): ComponentStatus {
    const s: ComponentStatus = {
      id: c.id,
      kind: c.kind,
      name: c.name,
      state: c.state,
      since: c.since,
      failures: c.budget.failures(),
      restarts: c.restarts,
      canEnable: c.state === "disabled",
    };
    if (c.reason !== undefined) s.reason = c.reason;
    if (c.state === "disabled" && c.budget.disabledUntil !== undefined) s.disabledUntil = c.budget.disabledUntil;
    return s;
  }
}

/** "10 min", "45 s", "2 h" */
export function windowWords(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 1000)} s`;
}
