/**
 * The JSON API the web client uses: the camera list (only what the caller may see)
 * and one camera's status. Never exposes recorder URLs or credentials.
 */
import { Router, type Request } from "express";
import { NotFoundError } from "../../config/errors.ts";
import type { CameraRegistry } from "../cameras.ts";
import { sendError } from "./errors.ts";

export interface ApiDeps {
  cameras: CameraRegistry;
  /** May this request see this camera? Unknown and invisible cameras answer alike (404). */
  canSee(req: Request, cameraId: string): boolean;
}

export function apiRouter(deps: ApiDeps): Router {
  const r = Router();
  r.get("/cameras", (req, res) => {
    const list = deps.cameras
      .configs()
      .filter((c) => deps.canSee(req, c.id))
      .map((c) => deps.cameras.view(c.id));
    res.set("Cache-Control", "no-store").json(list);
  });
  r.get("/cameras/:id/status", (req, res) => {
    const id = req.params.id;
    if (!deps.cameras.has(id) || !deps.canSee(req, id)) return sendError(res, new NotFoundError("no such camera"));
    const st = deps.cameras.status(id)!;
    res.set("Cache-Control", "no-store").json({ ...deps.cameras.view(id), ingest: st });
  });
  return r;
}
