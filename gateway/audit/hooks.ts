/**
 * Where the audit trail listens. Each hook subscribes to a component's own typed events or
 * sits beside a route, so the components themselves only know an `AuditSink` (and most not
 * even that):
 *
 * - sign-in: the auth observer's `signedIn`, `signInFailed`, `sessionEnded`;
 * - live view: WHEP's `audit.viewerStarted(req, viewer)` (the end follows the viewer's `closed`),
 *   and refused WHEP offers from the response status; a multi-camera session's slot bindings
 *   (`gridAudit`: each binding's start and its end, refused binds from the response status);
 * - intercom: the SIP side's `ring` and `ended` events; answers, rejections, hang-ups, calls
 *   and door openings from the browser routes' responses (who, from where, and the outcome);
 * - administrators: ending sessions, from the admin routes' responses; config reloads (reload.ts).
 */
import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { ViewerHandle } from "../../sfu/sfu.ts";
import type { AuthObserver, SignInFailure } from "../auth/index.ts";
import { sessionRef } from "../auth/index.ts";
import type { CallRecord, Intercom } from "../sip/index.ts";
import type { AuditSink } from "./log.ts";
import type { PlaybackEntry } from "../playback/service.ts";
import type { AuditAction, AuditEntry, AuditOutcome } from "./record.ts";

/** Who and from where, as the audit trail names a request's caller. */
export function callerOf(req: Request): Pick<AuditEntry, "subject" | "name" | "session" | "source"> {
  const u = req.user;
  return {
    subject: u?.sub,
    name: u?.name,
    session: u?.sessionId ? sessionRef(u.sessionId) : undefined,
    source: req.ip ?? req.socket.remoteAddress,
  };
}

const FAILURE_OUTCOME: Record<SignInFailure, AuditOutcome> = {
  rate_limited: "denied",
  unknown_attempt: "denied",
  rejected: "denied",
  provider_unavailable: "failure",
};

/** Names last seen per session reference, for the records of sessions ending (the event carries no name). */
const MAX_REMEMBERED = 100_000;

/** Sign-in, sign-out, failures and refusals, and every other end of a session. */
export function auditAuth(audit: AuditSink, observer: AuthObserver): () => void {
  const seen = new Map<string, { name: string | undefined; source: string }>();
  const offs = [
    observer.on("signedIn", (e) => {
      seen.set(e.ref, { name: e.name, source: e.source });
      if (seen.size > MAX_REMEMBERED) seen.delete(seen.keys().next().value!);
      audit.record({ action: "sign_in", outcome: "success", subject: e.sub, name: e.name, session: e.ref, source: e.source, time: e.at });
    }),
    observer.on("signInFailed", (e) => {
      audit.record({ action: "sign_in", outcome: FAILURE_OUTCOME[e.reason], source: e.source, detail: e.reason, time: e.at });
    }),
    observer.on("sessionEnded", (e) => {
      const s = seen.get(e.ref);
      seen.delete(e.ref);
      audit.record({
        action: e.reason === "logout" ? "sign_out" : "session_ended",
        outcome: "success",
        subject: e.sub,
        name: s?.name,
        session: e.ref,
        source: e.reason === "logout" ? s?.source : undefined,
        detail: e.reason,
        time: e.at,
      });
    }),
  ];
  return () => offs.forEach((off) => off());
}

/** What WHEP is given: one call when a viewer exists. */
export interface WhepAudit {
  viewerStarted(req: Request, viewer: ViewerHandle): void;
}

/** Live view start, and its end (with how long and why) when the viewer closes. */
export function whepAudit(audit: AuditSink, clock: () => number = Date.now): WhepAudit {
  return {
    viewerStarted(req, viewer) {
      const who = callerOf(req);
      const started = clock();
      audit.record({ action: "live_view_start", outcome: "success", ...who, camera: viewer.cameraId, detail: JSON.stringify({ viewer: viewer.id }), time: started });
      viewer.on("closed", (reason: string) => {
        audit.record({
          action: "live_view_end",
          outcome: "success",
          ...who,
          camera: viewer.cameraId,
          detail: JSON.stringify({ viewer: viewer.id, reason, seconds: Math.round((clock() - started) / 100) / 10 }),
        });
      });
    },
  };
}

/**
 * Playback records: `playback_start` when one opens (and, with its HTTP status, when an
 * attempt is refused), `playback_end` with the stretches of recording watched.
 */
export function playbackAudit(audit: AuditSink, clock: () => number = Date.now): {
  started(req: Request, e: PlaybackEntry): void;
  ended(e: PlaybackEntry, reason: string): void;
  /** Refused or failed playback offers. Mount at /whep. */
  refusals: RequestHandler;
} {
  const who = new WeakMap<PlaybackEntry, { caller: ReturnType<typeof callerOf>; began: number }>();
  const iso = (t: number) => new Date(t).toISOString();
  return {
    started(req, e) {
      const caller = callerOf(req);
      who.set(e, { caller, began: clock() });
      audit.record({ action: "playback_start", outcome: "success", ...caller, camera: e.cameraId, detail: JSON.stringify({ playback: e.id, from: iso(e.start) }) });
    },
    ended(e, reason) {
      const w = who.get(e);
      const seconds = w ? Math.round((clock() - w.began) / 100) / 10 : 0;
      const ranges = e.watched().map(([a, b]) => [iso(a), iso(b)]);
      let detail = JSON.stringify({ playback: e.id, reason, seconds, ranges });
      if (detail.length > 2000) detail = JSON.stringify({ playback: e.id, reason, seconds, ranges: ranges.slice(0, 20), more: ranges.length - 20 });
      audit.record({ action: "playback_end", outcome: "success", ...(w?.caller ?? { subject: e.owner.user || undefined }), camera: e.cameraId, detail });
    },
    refusals: (req, res, next) => {
      if (req.method === "POST" && /^\/[^/]+\/playback\/?$/.test(req.path)) {
        const camera = decodeURIComponent(req.path.split("/")[1]!);
        res.on("finish", () => {
          if (res.statusCode < 400) return;
          audit.record({ action: "playback_start", outcome: outcomeOf(res.statusCode), ...callerOf(req), camera, detail: JSON.stringify({ status: res.statusCode, start: String(req.query.start ?? "").slice(0, 64) }) });
        });
      }
      next();
    },
  };
}

const outcomeOf = (status: number): AuditOutcome => (status < 400 ? "success" : status === 401 || status === 403 || status === 404 || status === 409 || status === 429 ? "denied" : "failure");

/** Refused or failed WHEP offers (successful ones are recorded by `whepAudit` with their viewer). Mount at /whep. */
export function auditWhepRefusals(audit: AuditSink): RequestHandler {
  return (req, res, next) => {
    if (req.method === "POST" && /^\/[^/]+\/?$/.test(req.path)) {
      const camera = decodeURIComponent(req.path.split("/")[1]!);
      res.on("finish", () => {
        if (res.statusCode < 400) return;
        audit.record({ action: "live_view_start", outcome: outcomeOf(res.statusCode), ...callerOf(req), camera, detail: JSON.stringify({ status: res.statusCode }) });
      });
    }
    next();
  };
}

/** One slot of a multi-camera session showing one camera, as the grid routes report it. */
export interface GridBinding {
  /** The multi-camera session's id. */
  session: string;
  /** The slot (the browser's m-section). */
  mid: string;
  camera: string;
  /** The camera's stream the slot shows (`sub`, `main`, …). */
  stream: string;
}

/** What the grid routes are given: one call per binding, returning that binding's end. */
export interface GridAudit {
  /** A slot now shows a camera (a `live_view_start`); the returned function records its end, once. */
  bindingStarted(req: Request, b: GridBinding): (reason: string) => void;
  /** One slot of a bind of several slots at once was refused (`status`); a lone refused PUT is recorded by `refusals`. */
  bindingRefused(req: Request, b: { session: string; mid: string; camera: string | undefined; stream: string | undefined; status: number }): void;
}

/**
 * A camera watched through a slot of a multi-camera session is a live view like a WHEP
 * viewer's: `live_view_start` when the slot is bound to it, `live_view_end` (why, how long)
 * when that binding ends for any reason, and refused binds with their outcome.
 */
export function gridAudit(audit: AuditSink, clock: () => number = Date.now): GridAudit & {
  /** Refused or failed binds (successful ones are recorded by `bindingStarted`). Mount at /grid. */
  refusals: RequestHandler;
} {
  return {
    bindingStarted(req, b) {
      const who = callerOf(req);
      const started = clock();
      const where = { grid: b.session, mid: b.mid, stream: b.stream };
      audit.record({ action: "live_view_start", outcome: "success", ...who, camera: b.camera, detail: JSON.stringify(where), time: started });
      let ended = false;
      return (reason) => {
        if (ended) return;
        ended = true;
        audit.record({
          action: "live_view_end",
          outcome: "success",
          ...who,
          camera: b.camera,
          detail: JSON.stringify({ ...where, reason, seconds: Math.round((clock() - started) / 100) / 10 }),
        });
      };
    },
    bindingRefused(req, b) {
      const where = { grid: b.session.slice(0, 64), mid: b.mid.slice(0, 64), ...(b.stream ? { stream: b.stream.slice(0, 64) } : {}), status: b.status };
      audit.record({ action: "live_view_start", outcome: outcomeOf(b.status), ...callerOf(req), camera: b.camera, detail: JSON.stringify(where) });
    },
    refusals: (req, res, next) => {
      const m = req.method === "PUT" ? /^\/([^/]+)\/slots\/([^/]+)\/?$/.exec(req.path) : null;
      if (m) {
        const grid = decodeURIComponent(m[1]!).slice(0, 64);
        const mid = decodeURIComponent(m[2]!).slice(0, 64);
        res.on("finish", () => {
          if (res.statusCode < 400) return;
          // The body as the route parsed it (absent when it was not JSON).
          const body = (req.body ?? {}) as { camera?: unknown; stream?: unknown };
          const camera = typeof body.camera === "string" && body.camera !== "" ? body.camera : undefined;
          const stream = typeof body.stream === "string" ? body.stream.slice(0, 64) : undefined;
          audit.record({ action: "live_view_start", outcome: outcomeOf(res.statusCode), ...callerOf(req), camera, detail: JSON.stringify({ grid, mid, ...(stream ? { stream } : {}), status: res.statusCode }) });
        });
      }
      next();
    },
  };
}

/** Admin actions on sessions, from the admin routes' answers. Mount at /api/admin. */
export function auditAdmin(audit: AuditSink): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method === "DELETE") {
      let m: RegExpExecArray | null;
      let action: AuditAction | undefined;
      let target: Record<string, string> = {};
      if ((m = /^\/sessions\/([^/]+)$/.exec(req.path))) {
        action = "admin_session_end";
        target = { session: decodeURIComponent(m[1]!) };
      } else if ((m = /^\/users\/([^/]+)\/sessions$/.exec(req.path))) {
        action = "admin_user_sessions_end";
        target = { subject: decodeURIComponent(m[1]!) };
      }
      if (action) {
        const a = action;
        res.on("finish", () => audit.record({ action: a, outcome: outcomeOf(res.statusCode), ...callerOf(req), detail: JSON.stringify({ ...target, status: res.statusCode }) }));
      }
    }
    next();
  };
}

/** Door and camera of the calls seen lately, for records of browser actions named by call id. */
const MAX_CALLS = 10_000;

export interface IntercomAuditHook {
  /** Mount at /api/intercom (before its router). */
  routes: RequestHandler;
  close(): void;
}

/** Rings and finished calls from the SIP side; answers, rejections, hang-ups, calls and door openings from the browser routes. */
export function auditIntercom(audit: AuditSink, intercom: Pick<Intercom, "events" | "devices">): IntercomAuditHook {
  const calls = new Map<string, { door: string; camera: string | undefined }>();
  const cameraOf = (door: string) => intercom.devices().find((d) => d.id === door)?.camera;
  const remember = (callId: string, door: string, camera: string | undefined) => {
    calls.set(callId, { door, camera });
    if (calls.size > MAX_CALLS) calls.delete(calls.keys().next().value!);
  };
  const offs = [
    intercom.events.on("ring", (r) => {
      remember(r.callId, r.deviceId, r.camera);
      audit.record({ action: "intercom_ring", outcome: "success", door: r.deviceId, camera: r.camera, detail: JSON.stringify({ callId: r.callId, from: r.from }), time: r.at });
    }),
    intercom.events.on("ended", (rec: CallRecord) => {
      const known = calls.get(rec.callId);
      audit.record({
        action: "intercom_call_end",
        outcome: "success",
        subject: rec.answeredBy,
        door: rec.deviceId,
        camera: known?.camera ?? cameraOf(rec.deviceId),
        detail: JSON.stringify(rec),
        time: rec.endedAt,
      });
    }),
  ];
  const ACTIONS: Record<string, AuditAction> = { answer: "intercom_answer", reject: "intercom_reject", hangup: "intercom_hangup", "open-door": "door_open" };
  const routes: RequestHandler = (req, res, next) => {
    if (req.method === "POST") {
      let m: RegExpExecArray | null;
      if ((m = /^\/calls\/([^/]+)\/(answer|reject|hangup|open-door)$/.exec(req.path))) {
        const callId = decodeURIComponent(m[1]!);
        const action = ACTIONS[m[2]!]!;
        res.on("finish", () => {
          const c = calls.get(callId);
          // A route may add fields of its own to the detail (res.locals.auditDetail).
          const extra = (res.locals as { auditDetail?: Record<string, unknown> }).auditDetail ?? {};
          audit.record({ action, outcome: outcomeOf(res.statusCode), ...callerOf(req), door: c?.door, camera: c?.camera, detail: JSON.stringify({ callId, status: res.statusCode, ...extra }) });
        });
      } else if ((m = /^\/devices\/([^/]+)\/call$/.exec(req.path))) {
        const door = decodeURIComponent(m[1]!);
        res.on("finish", () => {
          const callId = res.getHeader("x-call-id");
          const camera = cameraOf(door);
          if (typeof callId === "string") remember(callId, door, camera);
          audit.record({ action: "intercom_call", outcome: outcomeOf(res.statusCode), ...callerOf(req), door, camera, detail: JSON.stringify({ callId: callId ?? null, status: res.statusCode }) });
        });
      }
    }
    next();
  };
  return { routes, close: () => offs.forEach((off) => off()) };
}
