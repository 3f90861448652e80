/**
 * The timeline's view of a recorder: `GET /api/cameras/:id/recordings?from=&to=` →
 * `{ ranges: [{start, end}], source, retention: {from, to} }` (times ISO 8601 UTC; `from`/`to`
 * ISO 8601 with a zone or epoch ms, default the whole retention window, at most 32 days).
 *
 * Needs the `playback` right on the camera: a camera the caller cannot see is 404 like an unknown
 * one, a visible camera without the right is 403, a camera without recordings is 404.
 */
import { Router, type Request } from "express";
import type { RecordingsAnswer } from "../playback/recordings.ts";
import { sendError } from "./errors.ts";

export interface RecordingsRouteDeps {
  recordings: { answer(cameraId: string, query: { from?: unknown; to?: unknown }): RecordingsAnswer | Promise<RecordingsAnswer> };
  /** Throws NotFoundError (invisible or unknown camera) or AuthError FORBIDDEN (no `playback` right). */
  authorize(req: Request, cameraId: string): void;
}

export function recordingsRouter(deps: RecordingsRouteDeps): Router {
  const r = Router();
  r.get("/cameras/:id/recordings", async (req, res) => {
    try {
      deps.authorize(req, req.params.id);
      const q = req.query;
      res.set("Cache-Control", "no-store").json(await deps.recordings.answer(req.params.id, { from: q["from"], to: q["to"] }));
    } catch (err) {
      sendError(res, err);
    }
  });
  return r;
}
