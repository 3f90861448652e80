/**
 * Playback over WHEP (draft-ietf-wish-whep with a start time), mounted at /whep before the
 * live WHEP routes:
 *
 *   POST   /whep/:camera/playback?start=<ISO 8601>   SDP offer → 201 SDP answer, Location
 *   DELETE /whep/:camera/playback/:session           → 200, playback and viewer end
 *   POST   /whep/:camera/playback/:session/control   JSON {action, …} → 200 {position, paused, rate, ended}
 *   GET    /whep/:camera/playback/:session/events    Server-Sent Events: `segment` (send time → recorded
 *                                                    time), `state`, `end`
 *
 * Needs the `playback` right on the camera (403 otherwise). A session belongs to the
 * sign-in session that created it: anyone else gets 404. Times in answers are ISO 8601;
 * `position` is the recorded time of the frame last sent.
 */
import express, { Router, type Request, type Response } from "express";
import { BadInputError, isGatehouseError, NotFoundError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { MAX_OFFER_CHARS } from "../../sfu/offer.ts";
import { errorHandler, sendError } from "../http/errors.ts";
import { SseStream, StreamEndReasons } from "../http/sse.ts";
import type { PlaybackControl, PlaybackState } from "./session.ts";
import type { PlaybackEntry, PlaybackOwner, PlaybackService } from "./service.ts";
import type { Segment } from "./retimer.ts";

export interface PlaybackRoutesDeps {
  service: PlaybackService;
  /** The camera's configuration, undefined for an unknown camera (404). */
  camera(id: string): CameraConfig | undefined;
  /** Throws AuthError (401/403) unless the caller has the `playback` right on the camera. */
  authorize(req: Request, cameraId: string): void;
  ownerOf(req: Request): PlaybackOwner;
  /** Told of each playback once it exists (to end it when the caller's session ends). */
  onStarted?(req: Request, entry: PlaybackEntry): void;
  /** Link ice-server headers, as live WHEP sends them. */
  setIceLinks?(req: Request, res: Response): void;
  log: Logger;
}

const SDP = "application/sdp";

export function playbackRouter(deps: PlaybackRoutesDeps): Router {
  const r = Router();
  const sdpBody = express.text({ type: SDP, limit: MAX_OFFER_CHARS });
  const jsonBody = express.json({ limit: 4096 });

  const camera = (req: Request): CameraConfig => {
    const id = String(req.params.camera ?? "");
    const c = deps.camera(id);
    if (!c) throw new NotFoundError("no such camera");
    deps.authorize(req, id);
    if (!c.playback) throw new NotFoundError("this camera has no recorder playback configured");
    return c;
  };
  const entryOf = (req: Request): PlaybackEntry => {
    const c = camera(req);
    return deps.service.get(String(req.params.session ?? ""), c.id, deps.ownerOf(req));
  };

  r.post("/:camera/playback", (req, res, next) => {
    try {
      camera(req);
    } catch (err) {
      return sendError(res, err);
    }
    if (!req.is(SDP)) {
      res.status(415).set("Accept-Post", SDP).json({ error: "unsupported_media_type", reason: `Content-Type must be ${SDP}` });
      return;
    }
    sdpBody(req, res, next);
  });
  r.post("/:camera/playback", async (req, res) => {
    try {
      const c = camera(req);
      const start = parseTime(req.query.start, "start");
      const retentionMs = (c.playback?.retentionDays ?? 30) * 86_400_000;
      const now = Date.now();
      if (start > now + 60_000) throw new BadInputError("start is in the future");
      if (start < now - retentionMs) throw new BadInputError(`start is before the recorder's retention (${c.playback?.retentionDays} days)`);
      if (typeof req.body !== "string" || req.body.length === 0) throw new BadInputError("empty SDP offer");
      const { entry, answerSdp } = await deps.service.start(c, start, req.body, deps.ownerOf(req));
      try {
        deps.onStarted?.(req, entry);
      } catch (err) {
        await deps.service.end(entry, "rejected by gateway");
        throw err;
      }
      res.status(201);
      res.set("Content-Type", SDP);
      res.set("Location", `${req.baseUrl}/${encodeURIComponent(c.id)}/playback/${entry.id}`);
      res.set("Cache-Control", "no-store");
      deps.setIceLinks?.(req, res);
      res.send(answerSdp);
    } catch (err) {
      if (!isGatehouseError(err)) deps.log.error("playback offer failed", { camera: req.params.camera, err });
      sendError(res, err);
    }
  });

  r.delete("/:camera/playback/:session", async (req, res) => {
    try {
      await deps.service.end(entryOf(req), "client delete");
      res.status(200).end();
    } catch (err) {
      sendError(res, err);
    }
  });

  r.post("/:camera/playback/:session/control", jsonBody, async (req, res) => {
    try {
      const e = entryOf(req);
      const state = await deps.service.control(e, parseControl(req.body));
      res.set("Cache-Control", "no-store").json(stateJson(state));
    } catch (err) {
      if (!isGatehouseError(err)) deps.log.error("playback control failed", { err });
      sendError(res, err);
    }
  });

  r.get("/:camera/playback/:session/events", (req, res) => {
    let e: PlaybackEntry;
    try {
      e = entryOf(req);
    } catch (err) {
      return sendError(res, err);
    }
    const offs: (() => void)[] = [];
    const sse = new SseStream(res, { heartbeatMs: 15_000, retryMs: 2000, maxBufferedBytes: 256 * 1024, onClose: () => offs.forEach((f) => f()) });
    // The server's clock with every message, so the page can map send times to its own clock.
    sse.send("hello", { serverTime: Date.now(), state: stateJson(e.session.state()), segments: e.segments.map(segmentJson) });
    offs.push(e.session.events.on("segment", (s) => sse.send("segment", segmentJson(s))));
    offs.push(e.session.events.on("state", (s) => sse.send("state", { ...stateJson(s), serverTime: Date.now() })));
    offs.push(e.session.events.on("closed", (reason) => sse.close(StreamEndReasons.ended, { event: "end", data: { reason } })));
  });

  r.all("/:camera/playback", (_req, res) => {
    res.status(405).set("Allow", "POST").json({ error: "method_not_allowed", reason: "use POST" });
  });
  r.all("/:camera/playback/:session", (_req, res) => {
    res.status(405).set("Allow", "DELETE").json({ error: "method_not_allowed", reason: "use DELETE" });
  });
  r.use("/:camera/playback", errorHandler(deps.log));
  return r;
}

function parseTime(v: unknown, what: string): number {
  if (typeof v !== "string" || v.length === 0 || v.length > 64) throw new BadInputError(`${what}: an ISO 8601 time is required`);
  // ISO 8601 with a zone (Z or ±hh:mm); a local time would mean different moments to browser and gateway.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/.test(v)) throw new BadInputError(`${what}: not an ISO 8601 time with a zone`);
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new BadInputError(`${what}: not a valid time`);
  return t;
}

/** Reads a control body; throws BadInputError for anything else. */
export function parseControl(body: unknown): PlaybackControl {
  if (!body || typeof body !== "object") throw new BadInputError("a JSON object with an action is required");
  const b = body as Record<string, unknown>;
  switch (b.action) {
    case "seek":
      return { action: "seek", time: typeof b.time === "number" ? b.time : parseTime(b.time, "time") };
    case "pause":
    case "resume":
    case "step":
      return { action: b.action };
    case "speed":
      if (typeof b.rate !== "number") throw new BadInputError("speed needs a numeric rate");
      return { action: "speed", rate: b.rate };
    case "jump":
      if (typeof b.seconds !== "number") throw new BadInputError("jump needs numeric seconds");
      return { action: "jump", seconds: b.seconds };
    default:
      throw new BadInputError("action must be seek, pause, resume, speed, step or jump");
  }
}

function stateJson(s: PlaybackState) {
  return { position: new Date(s.position).toISOString(), positionMs: s.position, paused: s.paused, rate: s.rate, ended: s.ended };
}

function segmentJson(s: Segment) {
  return { wall: s.wall, recorded: s.recorded, rate: s.rate, rtpTimestamp: s.rtpTimestamp };
}
