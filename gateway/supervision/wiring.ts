/**
 * The supervisor joined to the gateway's components: thin adapters, each turning what a
 * component reports into `failed` / `recovered` / `health`, and the supervisor's
 * verdicts back into actions (disable a camera, leave a media worker's slot empty,
 * enable them again).
 */
import type { Logger } from "../../config/log.ts";
import type { Sfu, WorkerRestartPolicy } from "../../sfu/sfu.ts";
import type { CameraRegistry } from "../cameras.ts";
import type { Collector, Sample } from "../http/metrics.ts";
import type { ReadinessCheck } from "../http/health.ts";
import type { TurnServer } from "../../turn/server.ts";
import type { SipServer } from "../sip/index.ts";
import type { Timers } from "../rtsp/timers.ts";
import type { ProbeResult } from "./probes.ts";
import { RestartDriver } from "./restartable.ts";
import type { ComponentKind, Supervisor } from "./supervisor.ts";
import type { Webhook } from "./webhook.ts";

export const cameraComponent = (id: string): string => `camera:${id}`;
export const workerComponent = (index: number): string => `media-worker:${index}`;

/**
 * Cameras: a session that was live and is lost counts as a failure (the ingest reconnects
 * with its own backoff); live again is a recovery. A recorder that is simply down is not a
 * loop (the ingest backs off) and does not count; one that keeps coming up and dying does.
 * Too many in the window: the camera stops pulling and shows "disabled: <reason>".
 */
export function superviseCameras(sup: Supervisor, registry: CameraRegistry): () => void {
  for (const c of registry.configs())
    sup.register(cameraComponent(c.id), "camera", c.name ?? c.id, {
      disable: (reason) => registry.disable(c.id, reason),
      enable: () => registry.enable(c.id),
    });
  const last = new Map<string, string>();
  for (const c of registry.configs()) last.set(c.id, registry.view(c.id)?.status ?? "idle");
  return registry.events.on("camera", (v) => {
    const prev = last.get(v.id);
    last.set(v.id, v.status);
    if (prev === v.status) return;
    if (prev === "live" && v.status === "reconnecting") sup.failed(cameraComponent(v.id), v.statusReason ?? "the session was lost");
    else if (v.status === "live") sup.recovered(cameraComponent(v.id), "live again");
  });
}

/** Media workers: the pool asks the supervisor whether (and when) to replace a worker that died. */
export function mediaWorkerPolicy(sup: Supervisor): WorkerRestartPolicy {
  return {
    exited: (index, code, error) => {
      const id = workerComponent(index);
      if (!sup.status(id)) sup.register(id, "media-worker", `Media worker ${index}`);
      const v = sup.failed(id, error ? `the thread failed: ${error.message}` : `the thread exited (code ${code})`);
      return v.action === "restart" ? { restart: true, delayMs: v.delayMs } : { restart: false, reason: "too many failures in the window" };
    },
    started: (index) => sup.recovered(workerComponent(index), "a fresh thread runs"),
  };
}

/** Registers each media worker, so that enabling one starts a fresh thread in its slot. */
export function superviseMediaWorkers(sup: Supervisor, sfu: Sfu): void {
  for (const slot of sfu.workerSlots())
    sup.register(workerComponent(slot.index), "media-worker", `Media worker ${slot.index}`, {
      enable: () => void sfu.restartWorker(slot.index),
    });
}

export interface HealthCheck {
  id: string;
  kind: ComponentKind;
  name: string;
  probe(): Promise<ProbeResult> | ProbeResult;
  /** A failed check of a component that can be restarted: restart it (else it is only shown as down). */
  onFailure?(reason: string): void;
}

/** TURN under supervision: what its adapter reports, and the probe's failures. */
export interface TurnSupervision {
  /** A UDP listener failed or closed under the server (`onUdpListenerLost`). */
  lost(index: number, reason: string): void;
  /** The STUN check of the first listener failed: rebind it. */
  probeFailed(reason: string): void;
  close(): void;
}

/**
 * TURN's UDP listeners restarted in place: a listener lost (or one that stops answering the
 * STUN check) is rebound on its port after the policy's backoff; past the budget TURN is shown
 * disabled (relays over TCP and TLS on the front door still work) until an administrator
 * enables it or the window has passed, which rebinds once more.
 */
export function superviseTurn(sup: Supervisor, turn: Pick<TurnServer, "rebindUdp" | "udp">, timers: Timers, log: Logger): TurnSupervision {
  const lostIndexes = new Set<number>();
  const driver = new RestartDriver(
    sup,
    {
      id: "turn",
      kind: "turn",
      name: "TURN",
      restart: async () => {
        // What was reported lost, else (a failed check) the first listener.
        const todo = lostIndexes.size > 0 ? [...lostIndexes] : turn.udp.length > 0 ? [0] : [];
        for (const i of todo) {
          await turn.rebindUdp(i);
          lostIndexes.delete(i);
        }
      },
    },
    timers,
    log,
  );
  return {
    lost: (index, reason) => {
      lostIndexes.add(index);
      driver.failed(`UDP listener ${turn.udp[index]?.port ?? index}: ${reason}`);
    },
    probeFailed: (reason) => void driver.failed(reason),
    close: () => driver.close(),
  };
}

/** SIP under supervision: its UDP socket lost, or its OPTIONS check failed. */
export interface SipSupervision {
  probeFailed(reason: string): void;
  close(): void;
}

/**
 * The SIP server's UDP socket restarted in place, like TURN's listeners: a socket error or
 * close under the server, or a failed OPTIONS check, rebinds it on its port (the doors'
 * registrar address stays right) after the policy's backoff; past the budget SIP is shown
 * disabled (SIP over TCP and TLS still works) until an administrator enables it or the
 * window has passed, which rebinds once more.
 */
export function superviseSip(sup: Supervisor, sip: Pick<SipServer, "rebindUdp" | "onUdpLost" | "ports">, timers: Timers, log: Logger): SipSupervision {
  const driver = new RestartDriver(sup, { id: "sip", kind: "sip", name: "SIP", restart: () => sip.rebindUdp() }, timers, log);
  sip.onUdpLost = (reason) => void driver.failed(`UDP socket ${sip.ports.udp ?? ""}: ${reason}`);
  return {
    probeFailed: (reason) => void driver.failed(reason),
    close: () => {
      sip.onUdpLost = undefined;
      driver.close();
    },
  };
}

/**
 * Runs every health check now and every `intervalMs` (never two of one at once), and
 * reports each result. Returns the stop function.
 */
export function watchHealth(sup: Supervisor, checks: readonly HealthCheck[], intervalMs: number, log: Logger): () => void {
  const running = new Set<string>();
  let stopped = false;
  // A component registered already (with its restart hooks) keeps them.
  for (const c of checks) if (!sup.status(c.id)) sup.register(c.id, c.kind, c.name);
  const run = (): void => {
    for (const c of checks) {
      if (running.has(c.id)) continue;
      running.add(c.id);
      void (async () => {
        let r: ProbeResult;
        try {
          r = await c.probe();
        } catch (err) {
          r = { ok: false, reason: `check failed: ${(err as Error).message}` };
        }
        running.delete(c.id);
        if (stopped) return;
        if (!r.ok && c.onFailure) c.onFailure(r.reason);
        else sup.health(c.id, r.ok, r.reason);
      })().catch((err: unknown) => log.warn("health check failed", { component: c.id, err }));
    }
  };
  const first = setTimeout(run, 0);
  const timer = setInterval(run, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearTimeout(first);
    clearInterval(timer);
  };
}

const STATES = ["ok", "restarting", "down", "disabled"] as const;

/** The supervisor's figures for /metrics: component states, events by kind and type, webhook deliveries. */
export function supervisionCollector(sup: Supervisor, webhook: Webhook | undefined): Collector {
  return () => {
    const out: Sample[] = [];
    for (const c of sup.list()) {
      for (const s of STATES)
        out.push({
          name: "gatehouse_supervised_component_state",
          help: "State of a supervised component (1 for the current state).",
          type: "gauge",
          value: c.state === s ? 1 : 0,
          labels: { component: c.id, kind: c.kind, state: s },
        });
      out.push({ name: "gatehouse_supervised_component_restarts_total", help: "Restarts of a supervised component.", type: "counter", value: c.restarts, labels: { component: c.id, kind: c.kind } });
    }
    for (const e of sup.eventCounts())
      out.push({ name: "gatehouse_supervision_events_total", help: "Supervision events, by component kind and type.", type: "counter", value: e.count, labels: { kind: e.kind, type: e.type } });
    if (webhook) {
      const w = webhook.stats();
      out.push(
        { name: "gatehouse_supervision_webhook_sent_total", help: "Supervision events delivered to the webhook.", type: "counter", value: w.sent },
        { name: "gatehouse_supervision_webhook_failed_total", help: "Webhook deliveries that failed (error, timeout or non-2xx).", type: "counter", value: w.failed },
        { name: "gatehouse_supervision_webhook_dropped_total", help: "Supervision events dropped because the webhook queue was full or closing.", type: "counter", value: w.dropped },
        { name: "gatehouse_supervision_webhook_queued", help: "Supervision events waiting for delivery.", type: "gauge", value: w.queued },
      );
    }
    return out;
  };
}

/** `/readyz`: the supervised components, not required (a disabled camera does not take the gateway out of service). */
export function supervisionReadiness(sup: Supervisor): ReadinessCheck {
  return {
    name: "supervision",
    required: false,
    check: () => {
      const bad = sup.list().filter((c) => c.state !== "ok");
      if (bad.length === 0) return { ready: true, detail: `${sup.list().length} components ok` };
      return { ready: false, detail: bad.map((c) => `${c.id} ${c.state}`).join(", ") };
    },
  };
}

/** One health-checked component's readiness, from the supervisor's last check. */
export function componentReadiness(sup: Supervisor, id: string, name: string, required = true): ReadinessCheck {
  return {
    name,
    required,
    check: () => {
      const c = sup.status(id);
      if (!c || c.state === "ok") return { ready: true, detail: "ok" };
      return { ready: false, detail: c.reason ?? c.state };
    },
  };
}
