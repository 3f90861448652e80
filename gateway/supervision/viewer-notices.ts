/**
 * A media worker's death told at once to the pages of the viewers it served, on the page's
 * own event stream (`GET /api/cameras/events`, event `viewer`). Without it a page notices
 * only when ICE gives up on the dead connection (several seconds of frozen picture); with it
 * the page offers again at once and is placed on a running worker.
 *
 * Only the session that created a viewer hears of it (its resource is that session's alone).
 */
import { ViewerCloseReasons, type ViewerCloseReason } from "../../sfu/api.ts";
import type { ViewerOwner } from "../http/viewer-admission.ts";

/** The `viewer` event of the page's event stream. */
export interface ViewerLostNotice {
  /** The camera the viewer showed. */
  camera: string;
  /** The viewer's id: the last segment of its WHEP resource (`Location`). */
  viewer: string;
  /** Why, as a stable word: the media worker serving it died. */
  reason: "media-worker-failed";
  /** In plain words. */
  message: string;
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
  private readonly onListenerError: (err: unknown) => void;

  constructor(onListenerError: (err: unknown) => void = () => {}) {
    this.onListenerError = onListenerError;
  }

  /** Watches one viewer of `owner`: when its media worker dies, that session's streams hear it. */
  watch(owner: ViewerOwner, viewer: WatchedViewer): void {
    viewer.once("closed", (reason) => {
      if (reason !== ViewerCloseReasons.workerFailed) return;
      const set = this.listeners.get(ownerKey(owner));
      if (!set) return;
      const notice: ViewerLostNotice = {
        camera: viewer.cameraId,
        viewer: viewer.id,
        reason: "media-worker-failed",
        message: "The gateway's media worker for this view stopped; reconnecting.",
      };
      for (const fn of [...set]) {
        try {
          fn(notice);
        } catch (err) {
          this.onListenerError(err);
        }
      }
    });
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
