/**
 * The supervisor for administrators of every camera:
 *
 *   GET  /api/admin/supervision                          → { components, events, webhook? }
 *   POST /api/admin/supervision/components/:id/enable    → the component's status (409 when not disabled)
 *   POST /api/cameras/:id/enable                         → the same for one camera, by an administrator of it
 *
 * Mounted behind sign-in and CSRF; `authorize` decides who is an administrator.
 */
import { Router, type Request } from "express";
import type { Logger } from "../../config/log.ts";
import { administratorsOnly } from "../http/admin.ts";
import { sendError } from "../http/errors.ts";
import type { Supervisor } from "./supervisor.ts";
import type { Webhook } from "./webhook.ts";
import { cameraComponent } from "./wiring.ts";

export interface SupervisionRouteDeps {
  supervisor: Supervisor;
  webhook?: Webhook | undefined;
  authorize(req: Request): void;
  /** An administrator enabled a component (for the audit trail). */
  onEnabled?(req: Request, component: string): void;
  log: Logger;
}

export function supervisionRouter(deps: SupervisionRouteDeps): Router {
  const r = Router();
  r.use(administratorsOnly(deps.authorize));
  r.get("/", (req, res) => {
    const after = Number(req.query.after ?? 0);
    res.json({
      components: deps.supervisor.list(),
      // Newest first, as the page shows them.
      events: deps.supervisor.recent(Number.isSafeInteger(after) && after > 0 ? after : 0).reverse(),
      ...(deps.webhook ? { webhook: deps.webhook.stats() } : {}),
    });
  });
  r.post("/components/:id/enable", (req, res) => {
    try {
      const id = String(req.params.id);
      const status = deps.supervisor.enable(id, req.user!.sub);
      deps.log.info("component enabled by an administrator", { component: id, by: req.user!.sub });
      deps.onEnabled?.(req, id);
      res.json(status);
    } catch (err) {
      sendError(res, err);
    }
  });
  return r;
}

export interface CameraEnableDeps {
  supervisor: Supervisor;
  /** Throws unless the caller administers this camera (NotFoundError when it may not see it). */
  authorize(req: Request, cameraId: string): void;
  /** An administrator enabled the camera (for the audit trail). */
  onEnabled?(req: Request, component: string): void;
  log: Logger;
}

/**
 * `POST /cameras/:id/enable` → the camera's supervision status (409 when it is not disabled):
 * the Enable button of a disabled camera's tile, for an administrator of that camera.
 */
export function cameraEnableRouter(deps: CameraEnableDeps): Router {
  const r = Router();
  r.post("/cameras/:id/enable", (req, res) => {
    try {
      const camera = String(req.params.id);
      deps.authorize(req, camera);
      const id = cameraComponent(camera);
      const status = deps.supervisor.enable(id, req.user!.sub);
      deps.log.info("camera enabled by an administrator", { component: id, by: req.user!.sub });
      deps.onEnabled?.(req, id);
      res.json(status);
    } catch (err) {
      sendError(res, err);
    }
  });
  return r;
}
