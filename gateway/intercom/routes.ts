/**
 * HTTP shape of the browser intercom, mounted at /api/intercom behind the app's global
 * `requireUser` + `csrf`. Category errors become statuses in gateway/http/errors.ts (the one
 * place); the only HTTP-level decisions here are 415 for a non-SDP body and the extra fields
 * of a 409 "someone else answered".
 */
import express, { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { AuthError, BadInputError, NotFoundError, isGatehouseError } from "../../config/errors.ts";
import type { User } from "../auth/index.ts";
import { httpStatusOf, sendError } from "../http/errors.ts";
import { CallAlreadyAnsweredError } from "../sip/index.ts";
import { MAX_TALK_OFFER_CHARS } from "./sdp.ts";
import { MAX_SNAPSHOT_BYTES, type IntercomService } from "./service.ts";
import type { WhepIceServer } from "../http/whep.ts";
import type { Logger } from "../../config/log.ts";

const SDP = "application/sdp";

export interface IntercomRouterDeps {
  service: IntercomService;
  /** The gateway's public origin: an event stream requested from another origin is refused. */
  publicOrigin: string;
  /** ICE servers for this browser (our TURN, time-limited credentials). Default none. */
  iceServers?: (req: Request) => WhepIceServer[];
  log: Logger;
}

export function intercomRouter(deps: IntercomRouterDeps): Router {
  const { service } = deps;
  const r = Router();
  const sdpBody = express.text({ type: SDP, limit: MAX_TALK_OFFER_CHARS });
  const jsonBody = express.json({ limit: "2kb" });
  r.use((_req, res, next) => {
    res.set("Cache-Control", "no-store");
    next();
  });

  const userOf = (req: Request): User => {
    if (!req.user) throw new AuthError("UNAUTHORIZED", "not signed in");
    return req.user;
  };
  /** An SDP body or 415 (RFC 9725 §4.2 habit, as WHEP). */
  const requireSdp: RequestHandler = (req, res, next) => {
    if (!req.is(SDP)) {
      res.status(415).set("Accept-Post", SDP).json({ error: "unsupported_media_type", reason: `Content-Type must be ${SDP}` });
      return;
    }
    sdpBody(req, res, next);
  };
  const offerOf = (req: Request): string => {
    if (typeof req.body !== "string" || req.body.length === 0) throw new BadInputError("empty SDP offer");
    return req.body;
  };
  const fail = (res: Response, err: unknown) => {
    if (!isGatehouseError(err)) deps.log.error("intercom request failed", { method: res.req.method, path: res.req.originalUrl, err });
    if (err instanceof CallAlreadyAnsweredError) {
      const by = err.answeredBy;
      res
        .status(httpStatusOf(err))
        .json({ error: "wrong_state", reason: "answered by someone else", answeredBy: by, answeredByName: service.displayName(by) });
      return;
    }
    sendError(res, err);
  };
  const sendAnswer = (req: Request, res: Response, out: { answerSdp: string; call: { callId: string } }) => {
    res.status(201);
    res.set("Content-Type", SDP);
    res.set("Location", `${req.baseUrl}/calls/${encodeURIComponent(out.call.callId)}`);
    res.set("X-Call-Id", out.call.callId);
    res.send(out.answerSdp);
  };

  /** Doors this user may answer or talk to, who they are, and the ICE servers for talk connections. */
  r.get("/", (req, res) => {
    try {
      const user = userOf(req);
      res.json({
        user: { sub: user.sub, name: user.name ?? user.sub },
        iceServers: (deps.iceServers?.(req) ?? []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential })),
        devices: service.deviceViews(user),
      });
    } catch (err) {
      fail(res, err);
    }
  });

  /** The ring stream (text/event-stream): ready, ring, answered, ended, dtmf, device, bye. */
  r.get("/events", (req, res) => {
    try {
      const user = userOf(req);
      // Cross-site reads are blocked by the same-origin policy anyway; refuse them outright.
      const origin = req.get("origin");
      if (origin !== undefined && origin !== deps.publicOrigin) throw new AuthError("FORBIDDEN", "cross-origin event stream");
      if (req.get("sec-fetch-site") === "cross-site") throw new AuthError("FORBIDDEN", "cross-site event stream");
      service.openStream(user, res);
    } catch (err) {
      fail(res, err);
    }
  });

  r.get("/calls", (req, res) => {
    try {
      res.json(service.callsFor(userOf(req)));
    } catch (err) {
      fail(res, err);
    }
  });

  /** The call log: `?missed=1` for missed calls only, `?limit=n`. */
  r.get("/history", (req, res) => {
    try {
      const limit = Number(req.query.limit ?? 50);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new BadInputError("limit: an integer from 1 to 500");
      res.json({ calls: service.history(userOf(req), { missedOnly: req.query.missed === "1", limit }) });
    } catch (err) {
      fail(res, err);
    }
  });

  /** A picture of the door camera taken while the call rang (PNG or JPEG body), kept for the call log. */
  const imageBody = express.raw({ type: ["image/png", "image/jpeg"], limit: MAX_SNAPSHOT_BYTES });
  r.post("/calls/:callId/snapshot", imageBody, (req, res) => {
    try {
      if (!Buffer.isBuffer(req.body) || req.body.length === 0) throw new BadInputError("body must be a PNG or JPEG image");
      service.attachSnapshot(userOf(req), String(req.params.callId), req.body);
      res.status(204).end();
    } catch (err) {
      fail(res, err);
    }
  });

  r.get("/calls/:callId/snapshot", (req, res) => {
    try {
      const snap = service.snapshotOf(userOf(req), String(req.params.callId));
      res.set("Cache-Control", "private, max-age=3600").type(snap.type).send(snap.bytes);
    } catch (err) {
      fail(res, err);
    }
  });

  r.get("/calls/:callId", (req, res) => {
    try {
      const user = userOf(req);
      const { active } = service.callsFor(user);
      const call = active.find((c) => c.callId === req.params.callId);
      if (!call) throw new NotFoundError("no such call");
      res.json({ ...call, talk: service.talkStats(user, call.callId) ?? null });
    } catch (err) {
      fail(res, err);
    }
  });

  r.post("/calls/:callId/answer", requireSdp, async (req, res) => {
    try {
      sendAnswer(req, res, await service.answer(userOf(req), String(req.params.callId), offerOf(req)));
    } catch (err) {
      fail(res, err);
    }
  });

  r.post("/calls/:callId/reject", (req, res) => {
    try {
      service.reject(userOf(req), String(req.params.callId));
      res.status(204).end();
    } catch (err) {
      fail(res, err);
    }
  });

  r.post("/calls/:callId/hangup", (req, res) => {
    try {
      service.hangup(userOf(req), String(req.params.callId));
      res.status(204).end();
    } catch (err) {
      fail(res, err);
    }
  });

  r.post("/calls/:callId/open-door", async (req, res) => {
    try {
      const out = await service.openDoor(userOf(req), String(req.params.callId));
      // For the audit record (gateway/audit/hooks.ts): whether the gateway answered the ring itself.
      res.locals.auditDetail = { answeredByGateway: out.answeredByGateway };
      res.status(204).end();
    } catch (err) {
      fail(res, err);
    }
  });

  r.post("/calls/:callId/dtmf", jsonBody, async (req, res) => {
    try {
      const digits = (req.body as { digits?: unknown } | undefined)?.digits;
      if (typeof digits !== "string") throw new BadInputError("body must be JSON {\"digits\": \"…\"}");
      await service.dtmf(userOf(req), String(req.params.callId), digits);
      res.status(204).end();
    } catch (err) {
      fail(res, err);
    }
  });

  r.post("/devices/:deviceId/call", requireSdp, async (req, res) => {
    // The request stays open until the door answers; a browser that gives up (closes the
    // request) cancels the call while the door rings, or hangs up if it has just answered.
    const gone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const out = await service.call(userOf(req), String(req.params.deviceId), offerOf(req), gone.signal);
      sendAnswer(req, res, out);
    } catch (err) {
      fail(res, err);
    }
  });

  // Body parser failures (413 too large, 400 bad JSON) keep their status.
  r.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const status = (err as { status?: number }).status;
    if (!isGatehouseError(err) && typeof status === "number" && status >= 400 && status < 500) {
      res.status(status).json({ error: "bad_input", reason: (err as Error).message });
      return;
    }
    next(err);
  });
  return r;
}
