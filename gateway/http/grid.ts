/**
 * Multi-camera sessions over HTTP: a whole grid of cameras in ONE peer connection (one
 * ICE/DTLS handshake, one ICE port, one set of TURN allocations), cameras bound to the
 * connection's slots by mid. Per-camera WHEP (gateway/http/whep.ts) stays for other clients.
 *
 *   OPTIONS /grid                          → 204, Link ice-server headers, Gatehouse-Grid-Slots (most video slots)
 *   POST    /grid                          → 201 answer SDP, Location /grid/:session, Link headers.
 *                                            The offer: one recvonly video section per slot, at most one audio section.
 *   POST    /grid (application/json)       → 201 {answer, slots: [as PUT /slots answers]}, Location, Link headers;
 *                                            body {"offer": "<sdp>", "slots": [{"mid", "camera", "stream"?}, …]}:
 *                                            the session made and its first slots bound in ONE request, before
 *                                            ICE and DTLS complete, so each slot's cached keyframe goes out the
 *                                            moment the connection is up (no bind round trip after the answer).
 *                                            Each slot is bound as PUT /slots would bind it; a refused slot
 *                                            leaves the session as it is.
 *   GET     /grid/:session                 → 200 {id, state, slots: [{mid, kind, camera}]}
 *   PUT     /grid/:session/slots/:mid      → 200 {mid, kind, camera, stream}; body {"camera": "<id>", "stream"?: "sub"}
 *                                            (default `sub`, the camera's smallest stream). Rights are checked
 *                                            on every bind: 403 {error, reason} leaves the slot as it was and the
 *                                            session untouched; 404 for a camera the caller cannot see or a slot
 *                                            that does not exist.
 *   PUT     /grid/:session/slots           → 200 {slots: [{mid, kind, camera, stream} | {mid, status, error, reason, retryAfterSeconds?}]};
 *                                            body {"slots": [{"mid", "camera", "stream"?}, …]}: several slots
 *                                            bound at once (a page opening or turning), each as its own PUT
 *                                            would be (a refusal leaves only that slot as it was). One
 *                                            request instead of one per tile: a browser sends at most six
 *                                            at a time to one origin, the page's event stream holding one.
 *   DELETE  /grid/:session/slots/:mid      → 204, the slot shows nothing
 *   DELETE  /grid/:session                 → 200, the session ends
 *
 * No renegotiation: a page offers as many slots as its layout can show at once (at most
 * `media.grid.slotsPerSession`), and re-binds them as it pages.
 *
 * A session belongs to the sign-in session that created it (anyone else gets 404). It holds
 * one place of the caller's live-viewer limits (it holds one media port), and a user holds
 * at most `media.grid.sessionsPerUser` of them (429 beyond). Each binding is watched like
 * a live viewer: when the right to that camera is withdrawn, that binding ends; when the
 * sign-in session ends, the whole session does (the gateway's `onSession`/`onBinding`).
 * Each binding is also a live view on the audit trail (`audit`): its start, and its end —
 * exactly once, whatever ends it (re-bind, unbind, right withdrawn, session closed).
 *
 * `/metrics` (`gridCollector`): open sessions, bound video slots, binds made, and binds refused
 * by reason (`BIND_REFUSALS`).
 */
import express, { Router, type Request, type Response } from "express";
import { BadInputError, isGatehouseError, NotFoundError } from "../../config/errors.ts";
import { cameraId as toCameraId, gridSessionId, type CameraId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import { MAX_OFFER_CHARS } from "../../sfu/offer.ts";
import { ViewerCloseReasons, type AuthCloseReason } from "../../sfu/api.ts";
import { pulledSource } from "../cluster/forward-receiver.ts";
import type { GridSessionHandle, Sfu } from "../../sfu/sfu.ts";
import { describeError, errorHandler, sendError } from "./errors.ts";
import type { GridAudit } from "../audit/hooks.ts";
import type { Collector } from "./metrics.ts";
import { ViewerAdmission, type ViewerOwner } from "./viewer-admission.ts";
import { iceServerLinks, type WhepIceServer } from "./whep.ts";

export interface GridLimits {
  /** Most video slots one session may offer. */
  slotsPerSession: number;
  /** Most sessions one user may hold at once. */
  sessionsPerUser: number;
}

export interface GridDeps {
  sfu: Sfu;
  limits: GridLimits;
  /** Is this a configured camera? Unknown cameras answer 404. */
  cameraExists(id: string): boolean;
  /**
   * The SFU source of a camera's stream (`main`, `sub`, `auto` or a stream id) on this node, or
   * undefined for a stream it does not have. Default: the camera's own source, `main`/`sub`/`auto`
   * alike. In a cluster it may wait for a relay of another node's pull, and throw (OverloadError)
   * when none can be had.
   */
  streamSource?(camera: string, stream: string): { stream: string; source: string } | undefined | Promise<{ stream: string; source: string } | undefined>;
  /** Throws (NotFoundError, AuthError FORBIDDEN) when the request may not watch this camera live. */
  authorize?(req: Request, cameraId: string): void;
  /** ICE servers for this client (Link headers). */
  iceServers(req: Request): WhepIceServer[];
  userOf?(req: Request): string | undefined;
  /** The sign-in session (or token) asking: it owns the sessions it creates. Default: the user. */
  sessionOf?(req: Request): string | undefined;
  /** Live-viewer limits: a session holds one place. Default: none. */
  admission?: ViewerAdmission;
  /** A session exists (e.g. to end it when the caller's sign-in session ends); `offer` is its SDP offer. */
  onSession?(req: Request, session: GridSessionHandle, offer: string): void;
  /**
   * A slot now shows `camera` for this caller; returns what to do when that binding ends (e.g.
   * stop watching the right). `end(reason)` ends this binding (the slot shows nothing) if the
   * slot still shows it.
   */
  onBinding?(req: Request, session: GridSessionHandle, mid: string, camera: CameraId, end: (reason: AuthCloseReason) => void): (reason: string) => void;
  /** The audit trail: a binding started (returns the record of its end); a slot of a several-slot bind was refused. */
  audit?: Pick<GridAudit, "bindingStarted" | "bindingRefused">;
  /** Binds made and refused (`/metrics`). */
  counters?: GridCounters;
  log: Logger;
}

/** Why a bind was refused: the `reason` label of `gatehouse_grid_binds_refused_total`. */
export const BIND_REFUSALS = ["forbidden", "unknown_camera", "unknown_stream", "no_slot", "no_session", "bad_request", "unavailable", "failed"] as const;
export type BindRefusal = (typeof BIND_REFUSALS)[number];

/** What the grid routes count since start. */
export class GridCounters {
  /** Slots bound to a camera (re-binds included; the same camera again not). */
  binds = 0;
  readonly refused: Record<BindRefusal, number> = Object.fromEntries(BIND_REFUSALS.map((r) => [r, 0])) as Record<BindRefusal, number>;
}

/** `/metrics`: open multi-camera sessions, their bound video slots, binds made and refused by reason. */
export function gridCollector(sfu: Pick<Sfu, "sessionList">, counters: GridCounters): Collector {
  return () => {
    const sessions = sfu.sessionList();
    let bound = 0;
    for (const s of sessions) for (const slot of s.slots()) if (slot.kind === "video" && slot.camera !== undefined) bound++;
    return [
      { name: "gatehouse_grid_sessions", help: "Open multi-camera sessions (a whole grid over one peer connection).", type: "gauge", value: sessions.length },
      { name: "gatehouse_grid_slots_bound", help: "Video slots of open multi-camera sessions that show a camera now.", type: "gauge", value: bound },
      { name: "gatehouse_grid_binds_total", help: "Slots bound to a camera since start (re-binds included).", type: "counter", value: counters.binds },
      ...BIND_REFUSALS.map((reason) => ({
        name: "gatehouse_grid_binds_refused_total",
        help: "Slot binds refused since start, by reason (the slot and the session stay as they were).",
        type: "counter" as const,
        value: counters.refused[reason],
        labels: { reason },
      })),
    ];
  };
}

/** Which refusal an error at a step of a bind is (by the error's code, never its message). */
function refusalOf(step: "session" | "body" | "slot" | "camera" | "stream" | "bind", err: unknown): BindRefusal {
  const code = isGatehouseError(err) ? err.code : undefined;
  switch (code) {
    case "FORBIDDEN":
    case "UNAUTHORIZED":
      return "forbidden";
    case "NOT_FOUND":
      return step === "session" ? "no_session" : step === "slot" ? "no_slot" : "unknown_camera";
    case "BAD_INPUT":
      return step === "stream" ? "unknown_stream" : "bad_request";
    case "OVERLOAD":
    case "UPSTREAM":
    case "CLOSED":
    case "WRONG_STATE":
      return "unavailable";
    default:
      return "failed";
  }
}

const SDP = "application/sdp";
/** `error` of the 429 refusing a session beyond `media.grid.sessionsPerUser`. */
export const GRID_SESSION_LIMIT = "grid_session_limit";

/** `/grid` when `media.grid.enabled` is off: 404 with the reason, whatever the method (the page plays each tile over WHEP). */
export function gridDisabledRouter(): Router {
  const r = Router();
  r.all(/.*/, (_req, res) => {
    res.status(404).set("Cache-Control", "no-store").json({ error: "not_found", reason: "multi-camera sessions are turned off on this gateway" });
  });
  return r;
}
/** Response header of OPTIONS and POST: the most video slots a session may offer. */
export const SLOTS_HEADER = "Gatehouse-Grid-Slots";

/** One entry of a several-slot bind: the slot and what to bind there (`{camera, stream?}`). */
interface SlotEntry {
  mid: string;
  body: Record<string, unknown>;
}

interface Owned {
  session: GridSessionHandle;
  owner: ViewerOwner;
  /** Per slot: ends the current binding (its watch, its audit record), given why; called once. */
  ends: Map<string, { end: (reason: string) => void }>;
  /** Per slot: the camera asked for and the SFU source of its stream that the slot shows. */
  bound: Map<string, { camera: string; stream: string; source: string }>;
}

export function gridRouter(deps: GridDeps): Router {
  const r = Router();
  const admission = deps.admission ?? ViewerAdmission.unlimited();
  const owned = new Map<string, Owned>();
  const perUser = new Map<string, number>();
  const ownerOf = (req: Request): ViewerOwner => {
    const user = deps.userOf?.(req) ?? "";
    return { user, session: deps.sessionOf?.(req) ?? user };
  };
  const sdpBody = express.text({ type: SDP, limit: MAX_OFFER_CHARS });
  const jsonBody = express.json({ limit: 1024, strict: true });
  const batchBody = express.json({ limit: 16 * 1024, strict: true });
  // An offer with its first binds: the SDP as a JSON string (its line ends escaped) and a page of slots.
  const offerBody = express.json({ limit: 2 * MAX_OFFER_CHARS + 16 * 1024, strict: true });

  const headers = (req: Request, res: Response) => {
    for (const l of iceServerLinks(deps.iceServers(req))) res.append("Link", l);
    res.set(SLOTS_HEADER, String(deps.limits.slotsPerSession));
    res.set("Cache-Control", "no-store");
  };

  r.options("/", (req, res) => {
    headers(req, res);
    res.set("Accept-Post", `${SDP}, application/json`);
    res.set("Allow", "OPTIONS, POST");
    res.status(204).end();
  });

  r.post("/", (req, res, next) => {
    if (req.is(SDP)) return sdpBody(req, res, next);
    if (req.is("application/json")) return offerBody(req, res, next);
    res.status(415).set("Accept-Post", `${SDP}, application/json`).json({ error: "unsupported_media_type", reason: `Content-Type must be ${SDP} or application/json` });
  });
  r.post("/", async (req, res) => {
    try {
      // application/json: the offer and the slots to bind at once; application/sdp: the offer alone.
      const withSlots = typeof req.body === "object" && req.body !== null;
      const offer: unknown = withSlots ? (req.body as { offer?: unknown }).offer : req.body;
      if (typeof offer !== "string" || offer.length === 0) throw new BadInputError(withSlots ? 'body must be {"offer": "<sdp>", "slots": [{"mid", "camera"}, …]}' : "empty SDP offer");
      if (offer.length > MAX_OFFER_CHARS) throw new BadInputError(`offer larger than ${MAX_OFFER_CHARS} characters`);
      const binds = withSlots ? slotList((req.body as { slots?: unknown }).slots, deps.limits.slotsPerSession * 2, true) : [];
      const owner = ownerOf(req);
      if ((perUser.get(owner.user) ?? 0) >= deps.limits.sessionsPerUser) {
        // Its own code (a generic 429 says nothing of why): a page refused this plays its tiles over
        // WHEP sessions of their own instead of waiting for another page of the user's to close.
        res.status(429).set("Retry-After", "10").set("Cache-Control", "no-store");
        res.json({ error: GRID_SESSION_LIMIT, reason: `at most ${deps.limits.sessionsPerUser} multi-camera sessions per user` });
        return;
      }
      const ticket = admission.admit(owner);
      let session: GridSessionHandle;
      let answerSdp: string;
      try {
        ({ session, answerSdp } = await deps.sfu.createSession(offer, {
          user: deps.userOf?.(req),
          maxSlots: deps.limits.slotsPerSession,
          // Our TURN for the SFU's own gathering is not needed: the gateway is the reachable side.
        }));
        ticket.bind(session);
      } catch (err) {
        ticket.release();
        throw err;
      }
      const entry: Owned = { session, owner, ends: new Map(), bound: new Map() };
      owned.set(session.id, entry);
      perUser.set(owner.user, (perUser.get(owner.user) ?? 0) + 1);
      session.on("slotEnded", (mid, _camera, reason) => endBinding(entry, mid, reason));
      session.once("closed", (reason) => {
        for (const mid of [...entry.ends.keys()]) endBinding(entry, mid, `session closed: ${reason}`);
        owned.delete(session.id);
        const n = (perUser.get(owner.user) ?? 1) - 1;
        if (n <= 0) perUser.delete(owner.user);
        else perUser.set(owner.user, n);
      });
      try {
        deps.onSession?.(req, session, offer);
      } catch (err) {
        await session.close(ViewerCloseReasons.rejectedByGateway);
        throw err;
      }
      // Bound now, while ICE and DTLS are still to come: each slot starts the moment they are up.
      const slots = binds.length > 0 ? await bindEach(req, entry, binds) : [];
      res.status(201);
      headers(req, res);
      res.set("Location", `${req.baseUrl}/${session.id}`);
      if (withSlots) res.json({ answer: answerSdp, slots });
      else res.set("Content-Type", SDP).send(answerSdp);
    } catch (err) {
      if (!isGatehouseError(err)) deps.log.error("multi-camera session offer failed", { err });
      sendError(res, err);
    }
  });

  r.get("/:session", (req, res) => {
    try {
      const entry = ownedBy(req);
      const slots = entry.session.slots().map((s) => {
        const b = entry.bound.get(s.mid);
        // What the caller bound, while the slot still shows it (a binding the gateway ended shows none);
        // a cluster may have moved it between a relay of the camera's stream and this node's own pull.
        return b && s.camera !== undefined && pulledSource(s.camera) === pulledSource(b.source) ? { mid: s.mid, kind: s.kind, camera: b.camera, stream: b.stream } : { mid: s.mid, kind: s.kind, camera: null };
      });
      res.set("Cache-Control", "no-store").json({ id: entry.session.id, state: entry.session.state, slots });
    } catch (err) {
      sendError(res, err);
    }
  });

  r.delete("/:session", async (req, res) => {
    try {
      const { session } = ownedBy(req);
      await session.close(ViewerCloseReasons.clientDelete);
      res.status(200).end();
    } catch (err) {
      sendError(res, err);
    }
  });

  r.put("/:session/slots/:mid", jsonBody, async (req, res) => {
    const entry = ownedOrRefused(req, res);
    if (!entry) return;
    try {
      const bound = await bindSlot(req, entry, String(req.params.mid ?? ""), req.body);
      res.set("Cache-Control", "no-store").json(bound);
    } catch (err) {
      if (!isGatehouseError(err)) deps.log.error("slot bind failed", { err });
      sendError(res, err);
    }
  });

  // Several slots at once: each bound as its own PUT would bind it, all at the same time.
  r.put("/:session/slots", batchBody, async (req, res) => {
    const entry = ownedOrRefused(req, res);
    if (!entry) return;
    let binds: SlotEntry[];
    try {
      binds = slotList((req.body as { slots?: unknown } | undefined)?.slots, entry.session.slots().length, false);
    } catch (err) {
      return sendError(res, err);
    }
    res.set("Cache-Control", "no-store").json({ slots: await bindEach(req, entry, binds) });
  });

  r.delete("/:session/slots/:mid", async (req, res) => {
    try {
      const entry = ownedBy(req);
      const mid = String(req.params.mid ?? "");
      await entry.session.unbind(mid);
      endBinding(entry, mid, "client unbind");
      entry.bound.delete(mid);
      res.status(204).end();
    } catch (err) {
      sendError(res, err);
    }
  });

  r.all("/:session/slots", (_req, res) => {
    res.status(405).set("Allow", "PUT").json({ error: "method_not_allowed", reason: "use PUT" });
  });
  r.all("/:session/slots/:mid", (_req, res) => {
    res.status(405).set("Allow", "PUT, DELETE").json({ error: "method_not_allowed", reason: "use PUT or DELETE" });
  });
  r.all("/:session", (_req, res) => {
    res.status(405).set("Allow", "GET, DELETE").json({ error: "method_not_allowed", reason: "use GET or DELETE" });
  });
  r.all("/", (_req, res) => {
    res.status(405).set("Allow", "OPTIONS, POST").json({ error: "method_not_allowed", reason: "use POST" });
  });

  r.use(errorHandler(deps.log));

  /**
   * The entries of a several-slot bind (`{"slots": [...]}`), at most `max`, each naming a
   * different slot; throws BadInputError (a refusal counted) otherwise. `empty`: none is allowed.
   */
  function slotList(list: unknown, max: number, empty: boolean): SlotEntry[] {
    if (!Array.isArray(list) || (!empty && list.length === 0) || list.length > max) {
      if (deps.counters) deps.counters.refused.bad_request++;
      throw new BadInputError('slots must be [{"mid": "<mid>", "camera": "<id>", "stream"?: "sub"}, …], at most one entry per slot');
    }
    const entries = list.map((x: unknown) => {
      const o = x && typeof x === "object" ? (x as Record<string, unknown>) : {};
      return { mid: typeof o.mid === "string" ? o.mid : "", body: o };
    });
    if (entries.some((e) => e.mid === "") || new Set(entries.map((e) => e.mid)).size !== entries.length) {
      if (deps.counters) deps.counters.refused.bad_request++;
      throw new BadInputError("each entry names a different slot (mid)");
    }
    return entries;
  }

  /** Binds every entry at the same time, each as its own PUT would be: its answer, or its refusal (audited). */
  function bindEach(req: Request, entry: Owned, entries: SlotEntry[]): Promise<Array<Awaited<ReturnType<typeof bindSlot>> | { mid: string; status: number; error: string; reason: string; retryAfterSeconds?: number }>> {
    return Promise.all(
      entries.map(async ({ mid, body: x }) => {
        try {
          return await bindSlot(req, entry, mid, x);
        } catch (err) {
          if (!isGatehouseError(err)) deps.log.error("slot bind failed", { err });
          const f = describeError(err);
          const camera = typeof x.camera === "string" && x.camera !== "" ? x.camera.slice(0, 128) : undefined;
          deps.audit?.bindingRefused(req, { session: entry.session.id, mid, camera, stream: typeof x.stream === "string" ? x.stream : undefined, status: f.status });
          // A refusal that may pass (503: no relay of the camera yet) says when to ask again, as a PUT's Retry-After would.
          return { mid, status: f.status, error: f.error, reason: f.reason, ...(f.retryAfterSeconds !== undefined ? { retryAfterSeconds: Math.max(1, Math.ceil(f.retryAfterSeconds)) } : {}) };
        }
      }),
    );
  }

  /**
   * Binds slot `mid` of the session to the camera `body` names (`{camera, stream?}`): the answer
   * of a PUT. Throws (a refusal, counted by reason), leaving the slot as it was.
   */
  async function bindSlot(req: Request, entry: Owned, mid: string, body: unknown): Promise<{ mid: string; kind: string; camera: CameraId; stream: string }> {
    let step: Parameters<typeof refusalOf>[0] = "body";
    try {
      const b = body as { camera?: unknown; stream?: unknown } | undefined;
      if (!b || typeof b.camera !== "string" || b.camera === "") throw new BadInputError('body must be {"camera": "<id>", "stream"?: "sub"}');
      const camera = b.camera;
      const asked = b.stream ?? "sub";
      if (typeof asked !== "string" || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(asked)) throw new BadInputError("stream must be main, sub, auto or a stream id");
      step = "slot";
      const slot = entry.session.slots().find((s) => s.mid === mid);
      if (!slot) throw new NotFoundError("no such slot");
      step = "camera";
      if (!deps.cameraExists(camera)) throw new NotFoundError("no such camera");
      // Rights on every bind: a refusal leaves the slot as it was, the session untouched.
      deps.authorize?.(req, camera);
      step = "stream";
      // Grid tiles default to the camera's smallest stream (its substream).
      const found = deps.streamSource ? await deps.streamSource(camera, asked) : ["main", "sub", "auto"].includes(asked) ? { stream: asked, source: camera } : undefined;
      if (!found) throw new BadInputError(`camera has no stream '${asked}'`);
      step = "bind";
      const id = toCameraId(camera);
      const source = toCameraId(found.source);
      if (slot.camera !== source) {
        await entry.session.bind(mid, source);
        if (deps.counters) deps.counters.binds++;
        endBinding(entry, mid, "slot re-bound");
        entry.bound.set(mid, { camera, stream: found.stream, source });
        startBinding(req, entry, mid, id, { camera, stream: found.stream });
      }
      return { mid, kind: slot.kind, camera: id, stream: found.stream };
    } catch (err) {
      if (deps.counters) deps.counters.refused[refusalOf(step, err)]++;
      throw err;
    }
  }

  /** The session of this resource if the caller owns it; else answers 404 (a refusal counted) and returns undefined. */
  function ownedOrRefused(req: Request, res: Response): Owned | undefined {
    try {
      return ownedBy(req);
    } catch (err) {
      if (deps.counters) deps.counters.refused.no_session++;
      sendError(res, err);
      return undefined;
    }
  }

  function startBinding(req: Request, entry: Owned, mid: string, id: CameraId, b: { camera: string; stream: string }): void {
    const finishers: Array<(reason: string) => void> = [];
    const binding = { end: (reason: string) => finishers.forEach((f) => f(reason)) };
    entry.ends.set(mid, binding);
    const recorded = deps.audit?.bindingStarted(req, { session: entry.session.id, mid, ...b });
    if (recorded) finishers.push(recorded);
    const stop = deps.onBinding?.(req, entry.session, mid, id, (reason) => {
      if (entry.ends.get(mid) !== binding) return;
      endBinding(entry, mid, reason);
      void entry.session.unbind(mid, reason).catch(() => {});
    });
    if (stop) finishers.unshift(stop);
    // The session closed while the slot was being bound: this binding ends with it.
    if (entry.session.state === "closed") endBinding(entry, mid, `session closed: ${entry.session.reason ?? "closed"}`);
  }

  function endBinding(entry: Owned, mid: string, reason: string): void {
    const binding = entry.ends.get(mid);
    if (!binding) return;
    entry.ends.delete(mid);
    binding.end(reason);
  }

  /** The session of this resource if the caller's sign-in session created it; else 404. */
  function ownedBy(req: Request): Owned {
    const entry = owned.get(gridSessionId(String(req.params.session ?? "")));
    const o = ownerOf(req);
    if (!entry || entry.owner.user !== o.user || entry.owner.session !== o.session || entry.session.state === "closed") {
      throw new NotFoundError("no such session");
    }
    return entry;
  }

  return r;
}

