/**
 * A media worker's death told at once to the pages of the viewers it served, on the page's
 * own event stream (`GET /api/cameras/events`, event `viewer`). Without it a page notices
 * only when ICE gives up on the dead connection (several seconds of frozen picture); with it
 * the page offers again at once and is placed on a running worker.
 *
 * In a cluster the same event says that the camera moves to another gateway node: a viewer
 * answered through a node that died (the page offers again at once, `reoffer`), or a viewer served
 * here from a relay whose owner fell silent (the connection stays; the page says what happens
 * until the picture comes back).
 *
 * Only the session that created a viewer hears of it (its resource is that session's alone).
 */
import { ViewerCloseReasons, type ViewerCloseReason } from "../../sfu/api.ts";
import type { ViewerOwner } from "../http/viewer-admission.ts";

/** The `viewer` event of the page's event stream: about a WHEP viewer, or about a grid session (or one of its slots). */
export type ViewerLostNotice = WhepLostNotice | GridLostNotice;

/** About one WHEP viewer. */
export interface WhepLostNotice {
  /** The camera the viewer showed. */
  camera: string;
  /** The viewer's id: the last segment of its WHEP resource (`Location`). */
  viewer: string;
  /** Why, as a stable word: the media worker serving it died, or the node pulling the camera is gone. */
  reason: "media-worker-failed" | "camera-moving";
  /** In plain words. */
  message: string;
  /** Whether the page should offer again now (the viewer is gone), or keep its connection and wait. */
  reoffer: boolean;
}

/**
 * About the page's multi-camera session (the grid over one peer connection, `/grid`): the whole
 * session (its media worker died: the page offers again), or one slot (its camera moves to
 * another node: the slot keeps its place and the tile says why until the picture is back).
 */
export interface GridLostNotice {
  /** The session's id: the last segment of its resource (`Location`). */
  grid: string;
  /** The same id, for pages that match notices by `viewer` alone (no WHEP session of theirs has it). */
  viewer: string;
  /** The slot (mid) and the camera it shows, for a notice about one slot; absent for the whole session. */
  mid?: string;
  camera?: string;
  reason: WhepLostNotice["reason"];
  message: string;
  reoffer: boolean;
}

const WORKER_FAILED_MESSAGE = "The gateway's media worker for this view stopped; reconnecting.";

/** One slot's camera moves to another node while the session's connection stays (served from a relay that finds the new owner). */
export function slotMovingNotice(grid: string, mid: string, camera: string): GridLostNotice {
  return { grid, viewer: grid, mid, camera, reason: "camera-moving", message: "Camera moving to another gateway…", reoffer: false };
}

/** The camera's pulling node is gone: the notice for one viewer (`reoffer`: the viewer went with that node). */
export function cameraMovingNotice(camera: string, viewer: string, reoffer: boolean): WhepLostNotice {
  return {
    camera,
    viewer,
    reason: "camera-moving",
    message: reoffer ? "Camera moving to another gateway… reconnecting" : "Camera moving to another gateway…",
    reoffer,
  };
}

/** What a watched multi-camera session must offer: its id and its end. */
export interface WatchedSession {
  readonly id: string;
  once(event: "closed", fn: (reason: ViewerCloseReason) => void): unknown;
}

/** What a watched viewer must offer: its ids and its end. */
export interface WatchedViewer {
  readonly id: string;
  readonly cameraId: string;
  once(event: "closed", fn: (reason: ViewerCloseReason) => void): unknown;
}

const ownerKey = (o: ViewerOwner): string => `${o.user.length}:${o.user}:${o.session}`;

export class ViewerLostNotices {
  private readonly listeners = new Map<string, Set<(n: ViewerLostNotice) => void>>();
  /** Live viewers' owners, by viewer id (for notices about a viewer that lives on). */
  private readonly owners = new Map<string, ViewerOwner>();
  /** Live multi-camera sessions' owners, by session id. */
  private readonly sessionOwners = new Map<string, ViewerOwner>();
  private readonly onListenerError: (err: unknown) => void;

  constructor(onListenerError: (err: unknown) => void = () => {}) {
    this.onListenerError = onListenerError;
  }

  /** Watches one viewer of `owner`: when its media worker dies, that session's streams hear it. */
  watch(owner: ViewerOwner, viewer: WatchedViewer): void {
    this.owners.set(viewer.id, owner);
    viewer.once("closed", (reason) => {
      this.owners.delete(viewer.id);
      if (reason !== ViewerCloseReasons.workerFailed) return;
      this.notify(owner, {
        camera: viewer.cameraId,
        viewer: viewer.id,
        reason: "media-worker-failed",
        message: WORKER_FAILED_MESSAGE,
        reoffer: true,
      });
    });
  }

  /**
   * Watches one multi-camera session of `owner`: when its media worker dies (every slot with it),
   * that session's streams hear it (`grid`, no `mid`: offer the whole session again).
   */
  watchSession(owner: ViewerOwner, session: WatchedSession): void {
    this.sessionOwners.set(session.id, owner);
    session.once("closed", (reason) => {
      this.sessionOwners.delete(session.id);
      if (reason !== ViewerCloseReasons.workerFailed) return;
      this.notify(owner, { grid: session.id, viewer: session.id, reason: "media-worker-failed", message: WORKER_FAILED_MESSAGE, reoffer: true });
    });
  }

  /** Tells the pages of a live multi-camera session made here (watched); false when it is not known. */
  notifySession(sessionId: string, notice: GridLostNotice): boolean {
    const owner = this.sessionOwners.get(sessionId);
    if (!owner) return false;
    this.notify(owner, notice);
    return true;
  }

  /** Tells `owner`'s pages (their event streams on this node). */
  notify(owner: ViewerOwner, notice: ViewerLostNotice): void {
    const set = this.listeners.get(ownerKey(owner));
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(notice);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }

  /** Tells the pages of a live viewer made here (watched); false when it is not known. */
  notifyViewer(viewerId: string, notice: ViewerLostNotice): boolean {
    const owner = this.owners.get(viewerId);
    if (!owner) return false;
    this.notify(owner, notice);
    return true;
  }

  /** Listens for `owner`'s viewers; returns the unsubscribe. */
  listen(owner: ViewerOwner, fn: (n: ViewerLostNotice) => void): () => void {
    const key = ownerKey(owner);
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.listeners.get(key) === set) this.listeners.delete(key);
    };
  }
}

/** The owner of what a signed-in request creates, as the WHEP routes count it (a bearer token's user is one session). */
export function ownerOfUser(user: { sub: string; via: string; sessionId?: string | undefined } | undefined): ViewerOwner {
  const sub = user?.sub ?? "";
  return { user: sub, session: user ? (user.sessionId ?? `${user.via}:${user.sub}`) : sub };
}
