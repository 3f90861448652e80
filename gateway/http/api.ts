/**
 * The JSON API the web client uses: the camera list (only what the caller may see),
 * one camera's status, and the page's one event stream of camera states. Never exposes
 * recorder URLs or credentials.
 *
 *   GET /api/cameras             → [CameraView + `actions`: what the caller may do with it (live, playback, talk…)]
 *   GET /api/cameras/events      → text/event-stream: `cameras` (the whole list, first), then
 *                                  `camera` (one camera's view) each time what a person sees changes,
 *                                  `viewer` (ViewerLostNotice: one of this session's viewers lost its
 *                                  media worker: offer again now), `gateway` ({ state: "restarting",
 *                                  message, retryMs }) as the last event when the gateway shuts down, and
 *                                  `instance` ({ id }) first: this gateway process (a new id each start), so
 *                                  a page whose stream drops and comes back from another process (another
 *                                  node behind the same address) knows that its sessions' node is gone
 *   GET /api/cameras/:id/status  → CameraView (its state and the reason in plain words, for anyone who
 *                                  sees the camera) + `ingest`, the recorder side's technical status,
 *                                  only for the camera's administrators (`admin` action)
 */
import { randomUUID } from "node:crypto";
import { Router, type Request } from "express";
import { AuthError, NotFoundError } from "../../config/errors.ts";
import type { CameraRegistry, CameraView } from "../cameras.ts";
import { sendError } from "./errors.ts";
import { sessionEnded, SseStream, StreamEndReasons } from "./sse.ts";
import type { WatchReason } from "../auth/types.ts";
import type { SafeEmitter } from "../../config/events.ts";
import type { ViewerLostNotice } from "../supervision/viewer-notices.ts";

/** The last event of every camera stream when the gateway shuts down: the page says so and reconnects. */
export interface GatewayNotice {
  state: "restarting";
  /** Plain words for the page. */
  message: string;
  /** How soon the page should try again, ms. */
  retryMs: number;
}

/** Reconnection delay the pages are told, ms. */
const RETRY_MS = 1000;

export interface ApiDeps {
  cameras: CameraRegistry;
  /** May this request see this camera? Unknown and invisible cameras answer alike (404). */
  canSee(req: Request, cameraId: string): boolean;
  /**
   * What the caller may do with a camera it sees (the page shows the timeline only with `playback`).
   * Without it nobody gets the administrators' technical details.
   */
  actionsOf?(req: Request, cameraId: string): readonly string[];
  /** Origin of the web client (event streams are same-origin only); undefined: not checked. */
  publicOrigin?: string | undefined;
  /** Ends the event stream when the caller's session ends or is revoked; returns the unsubscribe. */
  watch?(req: Request, end: (reason: WatchReason) => void): () => void;
  /** Event stream heartbeat, ms. Default 25000. */
  heartbeatMs?: number;
  /** The gateway's `closing`: every stream ends with a `gateway` notice. */
  lifecycle?: Pick<SafeEmitter<{ closing: [reason: string] }>, "on">;
  /** Tells this request's session when one of its viewers lost its media worker; returns the unsubscribe. */
  viewerLost?(req: Request, send: (notice: ViewerLostNotice) => void): () => void;
}

/** A slow page may leave this much unread before its stream is dropped (it reconnects and gets the list again), bytes. */
const MAX_BUFFERED = 256 * 1024;

export function apiRouter(deps: ApiDeps): Router {
  /** This gateway process, as its event streams name it (the `instance` event). */
  const instance = randomUUID();
  const r = Router();
  const streams = new Set<SseStream>();
  deps.cameras.events.on("closed", () => {
    for (const s of [...streams]) s.close(StreamEndReasons.closing);
  });
  let closing = false;
  deps.lifecycle?.on("closing", () => {
    closing = true;
    const notice: GatewayNotice = { state: "restarting", message: "The gateway is restarting. This page reconnects by itself.", retryMs: RETRY_MS };
    for (const s of [...streams]) s.close(StreamEndReasons.closing, { event: "gateway", data: notice });
  });

  const withActions = (req: Request, view: CameraView): CameraView & { actions?: readonly string[] } =>
    deps.actionsOf ? { ...view, actions: deps.actionsOf(req, view.id) } : view;
  const visible = (req: Request): CameraView[] =>
    deps.cameras
      .configs()
      .filter((c) => deps.canSee(req, c.id))
      .map((c) => withActions(req, deps.cameras.view(c.id)!));

  r.get("/cameras", (req, res) => {
    res.set("Cache-Control", "no-store").json(visible(req));
  });

  r.get("/cameras/events", (req, res) => {
    try {
      // Cross-site reads are blocked by the same-origin policy anyway; refuse them outright.
      const origin = req.get("origin");
      if (origin !== undefined && deps.publicOrigin !== undefined && origin !== deps.publicOrigin)
        throw new AuthError("FORBIDDEN", "cross-origin event stream");
      if (req.get("sec-fetch-site") === "cross-site") throw new AuthError("FORBIDDEN", "cross-site event stream");
    } catch (err) {
      return sendError(res, err);
    }
    // A page reconnecting over a connection still open while the gateway shuts down: try later.
    if (closing) return void res.status(503).set("Retry-After", "1").set("Cache-Control", "no-store").json({ error: "restarting", message: "The gateway is restarting." });
    let off = (): void => {};
    let unwatch = (): void => {};
    let offLost = (): void => {};
    const stream = new SseStream(res, {
      heartbeatMs: deps.heartbeatMs ?? 25_000,
      retryMs: RETRY_MS,
      maxBufferedBytes: MAX_BUFFERED,
      onClose: () => {
        streams.delete(stream);
        off();
        unwatch();
        offLost();
      },
    });
    streams.add(stream);
    stream.send("instance", { id: instance });
    stream.send("cameras", visible(req));
    off = deps.cameras.events.on("camera", (view) => {
      if (deps.canSee(req, view.id)) stream.send("camera", withActions(req, view));
    });
    offLost = deps.viewerLost?.(req, (n) => stream.send("viewer", n)) ?? offLost;
    // The page is told why (a `bye` with the reason) before the stream ends.
    unwatch = deps.watch?.(req, (reason) => stream.close(sessionEnded(reason), { event: "bye", data: { reason } })) ?? unwatch;
    if (stream.closed) {
      off();
      unwatch();
      offLost();
    }
  });

  r.get("/cameras/:id/status", (req, res) => {
    const id = req.params.id;
    if (!deps.cameras.has(id) || !deps.canSee(req, id)) return sendError(res, new NotFoundError("no such camera"));
    const view = withActions(req, deps.cameras.view(id)!);
    // The recorder's transport, tracks, counters and last failure are for its administrators;
    // everyone else gets what the tile shows (state and reason in plain words).
    const admin = view.actions?.includes("admin") ?? false;
    res.set("Cache-Control", "no-store").json(admin ? { ...view, ingest: deps.cameras.status(id)! } : view);
  });
  return r;
}
