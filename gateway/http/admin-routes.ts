/**
 * The signed-in routes about the deployment rather than one camera: metrics for an
 * administrator, the audit trail, the connectivity test's facts, the firewall table, supervision
 * and other users' sessions. Figures that cover every camera need the admin right on all of them.
 */
import type express from "express";
import type { Logger } from "../../config/log.ts";
import { AuthError } from "../../config/errors.ts";
import type { Config } from "../../config/schema.ts";
import type { TurnServer } from "../../turn/index.ts";
import { auditAdmin, auditRouter, callerOf, type AuditLog } from "../audit/index.ts";
import type { Auth } from "../auth/index.ts";
import type { CameraRegistry } from "../cameras.ts";
import { clusterAdminHandler, type Cluster } from "../cluster/index.ts";
import { portMap } from "../port-map.ts";
import type { RelayAccess } from "../relay-access.ts";
import type { SipServer } from "../sip/index.ts";
import { cameraEnableRouter, supervisionRouter } from "../supervision/routes.ts";
import type { Supervisor } from "../supervision/supervisor.ts";
import type { Webhook } from "../supervision/webhook.ts";
import { adminRouter } from "./admin.ts";

export interface AdminRoutesParts {
  readonly config: Readonly<Config>;
  readonly registry: CameraRegistry;
  readonly auth: Auth;
  readonly audit: AuditLog | undefined;
  readonly supervisor: Supervisor;
  readonly webhook: Webhook | undefined;
  readonly turn: TurnServer | undefined;
  readonly sip: SipServer | undefined;
  readonly cluster: Cluster | undefined;
  readonly relay: RelayAccess;
  /** Where browsers reach the gateway, and the front door's bound port. */
  readonly publicHost: string;
  readonly publicPort: number;
  readonly httpPort: number;
  readonly tls: boolean;
  /** Base URL of the metrics-only listener, once it listens. */
  readonly metricsUrl: () => string | undefined;
  /** The /metrics handler, given who may read it. */
  readonly metrics: (authorize: (req: express.Request) => void) => express.RequestHandler;
  readonly log: Logger;
}

export function mountAdminRoutes(app: express.Express, p: AdminRoutesParts): void {
  const { auth, registry, audit, turn, sip, config } = p;
  // Operational figures and other users' sessions cover every camera: only an administrator of all of them.
  const requireGlobalAdmin = (req: express.Request, what: string) => {
    if (!registry.configs().every((c) => auth.can(req.user!, c.id, "admin"))) throw new AuthError("FORBIDDEN", `${what} need the admin right on every camera`);
  };
  app.get("/metrics", p.metrics((req) => requireGlobalAdmin(req, "metrics")));
  if (audit) {
    app.use("/api/admin/audit", auditRouter({ audit, authorize: (req) => requireGlobalAdmin(req, "the audit trail"), exportMaxRows: config.audit.exportMaxRows }));
    app.use("/api/admin", auditAdmin(audit));
  }
  // Each node's internal URL and what it pulls: for administrators only (the public document omits them).
  const cluster = p.cluster;
  if (cluster) app.get("/api/admin/cluster", clusterAdminHandler(cluster, (req) => requireGlobalAdmin(req, "the cluster's nodes")));
  // What the connectivity test page needs: this user's ICE servers (relay credentials) and the
  // addresses to name in its advice. Nothing here is beyond what a live view's answer reveals.
  app.get("/api/connectivity", (req, res) => {
    res.set("Cache-Control", "no-store").json({
      host: p.publicHost,
      httpsPort: p.publicPort,
      tls: p.tls,
      media: { ports: config.media.icePortRange },
      turn: turn ? { udpPort: turn.udp[0]?.port ?? null, sharesHttpsPort: config.turn.shareHttpsPort } : null,
      iceServers: p.relay.iceServersFor(req.user),
    });
  });
  // The firewall table of this deployment, with the ports actually bound.
  app.get("/api/admin/ports", (req, res) => {
    requireGlobalAdmin(req, "the port map");
    const metricsUrl = p.metricsUrl();
    const rows = portMap(config, {
      http: p.httpPort,
      ...(turn ? { turnUdp: turn.udp.map((a) => a.port) } : {}),
      ...(sip ? { sip: sip.ports } : {}),
      ...(metricsUrl ? { metrics: Number(new URL(metricsUrl).port) } : {}),
    });
    res.set("Cache-Control", "no-store").json({ rows });
  });
  // Enabling a disabled camera or media worker is an administrator's action: audited.
  const enabled = audit
    ? {
        onEnabled: (req: express.Request, component: string) =>
          audit.record({
            action: "admin_component_enable",
            outcome: "success",
            ...callerOf(req),
            ...(component.startsWith("camera:") ? { camera: component.slice("camera:".length) } : {}),
            detail: JSON.stringify({ component }),
          }),
      }
    : {};
  app.use(
    "/api/admin/supervision",
    supervisionRouter({ supervisor: p.supervisor, webhook: p.webhook, authorize: (req) => requireGlobalAdmin(req, "supervision"), ...enabled, log: p.log.child({ component: "admin" }) }),
  );
  // The Enable button of a disabled camera's tile: an administrator of that camera.
  app.use(
    "/api",
    cameraEnableRouter({ supervisor: p.supervisor, authorize: (req, id) => auth.authorizeCamera(req.user!, id, "admin"), ...enabled, log: p.log.child({ component: "admin" }) }),
  );
  app.use(
    "/api/admin",
    adminRouter({
      auth,
      authorize: (req) => requireGlobalAdmin(req, "sessions"),
      onUserRevoked: (sub) => turn?.closeSubject(sub),
      log: p.log.child({ component: "admin" }),
    }),
  );
}
