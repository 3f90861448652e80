/**
 * HTTP side of the demo door, mounted at /api/intercom/demo-door behind the app's global
 * `requireUser` + `csrf`. `GET` says which door it is and whether this user may ring it;
 * `POST /ring` makes the door call in (an administrator of its camera only), answering 202
 * once the gateway rings its users. Errors go through the app's error handler (409 busy,
 * 502 when the gateway refused the door's call).
 */
import { Router, type Request } from "express";
import { AuthError } from "../../config/errors.ts";
import type { DemoDoor } from "./door.ts";

export interface DemoDoorRouterDeps {
  door: DemoDoor;
  /** The door's device id in the intercom (as in `GET /api/intercom` devices). */
  deviceId: string;
  /** May this request's user ring the door? (admin on the door's camera) */
  mayRing(req: Request): boolean;
}

export function demoDoorRouter(deps: DemoDoorRouterDeps): Router {
  const r = Router();
  r.use((_req, res, next) => {
    res.set("Cache-Control", "no-store");
    next();
  });
  r.get("/", (req, res) => {
    res.json({ device: deps.deviceId, state: deps.door.state, canRing: deps.mayRing(req) });
  });
  r.post("/ring", async (req, res) => {
    if (!deps.mayRing(req)) throw new AuthError("FORBIDDEN", "only an administrator of the door's camera may ring the demo door");
    await deps.door.ring();
    res.status(202).json({ device: deps.deviceId, state: deps.door.state });
  });
  return r;
}
