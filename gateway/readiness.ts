/**
 * What `/metrics` reports and what `/readyz` checks, gathered from the parts a gateway started:
 * the collectors of each part, a readiness check per component, and the supervisor's health
 * checks of the parts that have no restart of their own to report (TURN, SIP, the audit store,
 * the identity provider). Reads the parts; never starts or stops them.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "../config/log.ts";
import type { Config } from "../config/schema.ts";
import type { Sfu } from "../sfu/sfu.ts";
import type { TurnServer } from "../turn/index.ts";
import type { AuditLog } from "./audit/index.ts";
import type { Auth } from "./auth/index.ts";
import { providerFetch } from "./auth/fetch.ts";
import type { CameraRegistry } from "./cameras.ts";
import { forwardingCollector } from "./cluster/forward-metrics.ts";
import type { Cluster } from "./cluster/index.ts";
import type { FrontDoor } from "./frontdoor/index.ts";
import type { ReadinessCheck } from "./http/health.ts";
import { gridCollector, type GridCounters } from "./http/grid.ts";
import { processRegistry, type Collector } from "./http/metrics.ts";
import type { ViewerAdmission } from "./http/viewer-admission.ts";
import { admissionCollector, auditCollector, cameraCollector, frontDoorCollector, sfuCollector, sipCollector, SfuMetricsWindow, turnCollector } from "./metrics.ts";
import type { SipServer } from "./sip/index.ts";
import { discoveryProbe, localTarget, sipOptionsProbe, stunProbe } from "./supervision/probes.ts";
import type { Supervisor } from "./supervision/supervisor.ts";
import type { Webhook } from "./supervision/webhook.ts";
import { componentReadiness, supervisionCollector, supervisionReadiness, watchHealth, type HealthCheck, type SipSupervision, type TurnSupervision } from "./supervision/wiring.ts";

export interface ReadinessParts {
  readonly config: Readonly<Config>;
  readonly supervisor: Supervisor;
  readonly webhook: Webhook | undefined;
  readonly sfu: Sfu;
  readonly registry: CameraRegistry;
  readonly admission: ViewerAdmission;
  readonly door: Pick<FrontDoor, "stats" | "connections">;
  readonly turn: TurnServer | undefined;
  /** TURN's restarts: a failed STUN check rebinds its first UDP listener. */
  readonly turnRestart?: Pick<TurnSupervision, "probeFailed"> | undefined;
  /** Restarts SIP's UDP socket when its OPTIONS check fails. */
  readonly sipRestart?: Pick<SipSupervision, "probeFailed"> | undefined;
  readonly sip: SipServer | undefined;
  readonly audit: AuditLog | undefined;
  readonly auth: Auth;
  readonly cluster: Cluster | undefined;
  /** Grid binds made and refused (the grid routes count them). */
  readonly gridCounters: GridCounters;
  /** RTP forwarding between the cluster's nodes (its figures in /metrics). */
  readonly forwarding?: Parameters<typeof forwardingCollector>[0] | undefined;
  /** True once the gateway began closing: every component then reports not ready. */
  readonly closing: () => boolean;
  /** Registers a cleanup; cleanups run in reverse order of registration. */
  readonly onClose: (fn: () => Promise<void> | void) => void;
  readonly log: Logger;
}

export interface GatewayReadiness {
  readonly checks: readonly ReadinessCheck[];
  readonly collectors: readonly Collector[];
}

export function wireReadiness(p: ReadinessParts): GatewayReadiness {
  const { config, supervisor, sfu, registry } = p;
  // The process's own figures start now.
  processRegistry();
  const sfuWindow = new SfuMetricsWindow(sfu, config.metrics.windowSeconds);
  p.onClose(() => sfuWindow.close());
  const collectors: Collector[] = [cameraCollector(registry), sfuCollector(sfu, sfuWindow), admissionCollector(p.admission, sfu), frontDoorCollector(p.door), supervisionCollector(supervisor, p.webhook)];
  if (p.turn) collectors.push(turnCollector(p.turn));
  if (p.sip) collectors.push(sipCollector(p.sip));
  collectors.push(gridCollector(sfu, p.gridCounters));
  if (p.forwarding) collectors.push(forwardingCollector(p.forwarding));

  const up = (what: string) => () => (p.closing() ? { ready: false, detail: "closing" } : { ready: true, detail: what });
  const checks: ReadinessCheck[] = [
    { name: "http", check: up("listening") },
    {
      name: "sfu",
      check: () => {
        if (p.closing()) return { ready: false, detail: "closing" };
        const slots = sfu.workerSlots();
        const running = slots.filter((w) => w.state === "running").length;
        if (slots.length > 0 && running === 0) return { ready: false, detail: "no media worker running" };
        return { ready: true, detail: slots.length > 0 ? `${running} of ${slots.length} media workers running` : "media on the main thread" };
      },
    },
    supervisionReadiness(supervisor),
    { name: "auth", check: up(config.auth.mode) },
    {
      name: "cameras",
      required: false,
      check: () => {
        const failed = registry.configs().filter((c) => registry.status(c.id)?.state === "failed").length;
        return { ready: failed === 0, detail: `${registry.configs().length} configured, ${failed} failed` };
      },
    },
  ];
  const audit = p.audit;
  if (audit) {
    checks.push({ name: "audit", check: () => (audit.healthy ? { ready: true, detail: audit.store.kind } : { ready: false, detail: `${audit.store.kind} store failing; ${audit.stats.queued} records waiting` }) });
    collectors.push(auditCollector(audit));
  }

  // Health checks of what has no restart of its own to report: TURN, SIP, the audit store, the identity provider.
  const timeoutMs = config.supervision.checkTimeoutMs;
  const health: HealthCheck[] = [];
  const turnUdp = p.turn?.udp[0];
  const turnRestart = p.turnRestart;
  if (turnUdp)
    health.push({
      id: "turn",
      kind: "turn",
      name: "TURN",
      probe: () => stunProbe(localTarget(turnUdp.address), turnUdp.port, timeoutMs),
      ...(turnRestart ? { onFailure: (reason: string) => turnRestart.probeFailed(reason) } : {}),
    });
  const sipUdp = p.sip?.ports.udp;
  const sipRestart = p.sipRestart;
  if (sipUdp)
    health.push({
      id: "sip",
      kind: "sip",
      name: "SIP",
      probe: () => sipOptionsProbe(localTarget(config.sip.bindAddress), sipUdp, timeoutMs),
      ...(sipRestart ? { onFailure: (reason: string) => sipRestart.probeFailed(reason) } : {}),
    });
  if (audit)
    health.push({
      id: "audit",
      kind: "audit",
      name: "Audit store",
      probe: () => (audit.healthy ? { ok: true, reason: `${audit.store.kind} store writes` } : { ok: false, reason: `${audit.store.kind} store failing; ${audit.stats.queued} records waiting` }),
    });
  const issuer = p.auth.issuer;
  if (issuer && config.auth.mode !== "none") {
    const idpFetch = providerFetch({ ca: config.auth.issuerCaFile ? readFileSync(config.auth.issuerCaFile, "utf8") : undefined, timeoutMs });
    p.onClose(() => idpFetch.close());
    health.push({ id: "identity-provider", kind: "identity-provider", name: "Identity provider", probe: () => discoveryProbe(issuer, idpFetch, timeoutMs) });
    // Signed-in users keep working while the provider is away; new sign-ins fail.
    checks.push(componentReadiness(supervisor, "identity-provider", "identity-provider", false));
  }
  p.onClose(watchHealth(supervisor, health, config.supervision.checkIntervalSeconds * 1000, p.log.child({ component: "supervisor" })));
  if (p.turn) checks.push(turnUdp ? componentReadiness(supervisor, "turn", "turn") : { name: "turn", check: up("listening") });
  if (p.sip) checks.push(sipUdp ? componentReadiness(supervisor, "sip", "sip") : { name: "sip", check: up("listening") });
  const cluster = p.cluster;
  if (cluster)
    // Not required: without Redis a node still serves what it serves (a balancer keeps it).
    checks.push({
      name: "cluster",
      required: false,
      check: () => (cluster.link.available ? { ready: true, detail: `${cluster.nodes.nodes.length} nodes` } : { ready: false, detail: "Redis unreachable: serving what this node serves" }),
    });
  return { checks, collectors };
}
