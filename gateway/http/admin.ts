/**
 * Sessions, for administrators: who is signed in, and ending a session or every session of a
 * user at once (a lost laptop, a dismissed employee) with their streams and TURN allocations,
 * without waiting for the session to lapse or for the identity provider.
 *
 *   GET    /api/admin/sessions               → { sessions: SessionView[] }
 *   DELETE /api/admin/sessions/:ref          → 204, or 404 when no such session
 *   DELETE /api/admin/users/:sub/sessions    → { ended: n }
 *
 * Mounted behind sign-in and CSRF; `authorize` decides who is an administrator.
 */
import { Router, type Request, type RequestHandler } from "express";
import { NotFoundError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { Auth } from "../auth/index.ts";
import { sendError } from "./errors.ts";

export interface AdminDeps {
  auth: Pick<Auth, "listSessions" | "revokeSessionRef" | "revokeUser">;
  /** Throws AuthError FORBIDDEN unless the caller administers the whole gateway. */
  authorize(req: Request): void;
  /** A user's sessions were ended: close what outlives sessions (their TURN allocations). */
  onUserRevoked(sub: string): void;
  log: Logger;
}

/**
 * Middleware for the administrators' routes: nothing is cached, and a caller `authorize`
 * refuses gets its error mapped (401/403) before any route runs.
 */
export function administratorsOnly(authorize: (req: Request) => void): RequestHandler {
  return (req, res, next) => {
    res.set("Cache-Control", "no-store");
    try {
      authorize(req);
      next();
    } catch (err) {
      sendError(res, err);
    }
  };
}

export function adminRouter(deps: AdminDeps): Router {
  const r = Router();
  r.use(administratorsOnly(deps.authorize));
  r.get("/sessions", (req, res) => {
    res.json({ sessions: deps.auth.listSessions(req.user?.sessionId) });
  });
  r.delete("/sessions/:ref", (req, res) => {
    const ref = String(req.params.ref);
    const target = deps.auth.listSessions().find((s) => s.ref === ref);
    if (!target || !deps.auth.revokeSessionRef(ref)) return sendError(res, new NotFoundError("no such session"));
    deps.log.info("session revoked by an administrator", { by: req.user!.sub, sub: target.sub, session: ref });
    res.status(204).end();
  });
  r.delete("/users/:sub/sessions", (req, res) => {
    const sub = String(req.params.sub);
    const ended = deps.auth.revokeUser(sub);
    deps.onUserRevoked(sub);
    deps.log.info("user's sessions revoked by an administrator", { by: req.user!.sub, sub, sessions: ended });
    res.json({ ended });
  });
  return r;
}
