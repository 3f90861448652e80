/**
 * A multi-camera session as the main thread sees it when media runs in worker threads
 * (sfu/worker-pool.ts): the session itself (sfu/grid-session.ts) lives in one media worker.
 *
 * Placement: a session goes to a worker like a one-camera viewer (the least loaded one) and
 * stays there. It can bind any camera in place because every worker holds a replica of
 * every camera's source, fed the same ingest (see worker-pool.ts): no packet crosses a
 * thread after ingest, whichever cameras the slots show, and re-binding is a message to
 * one worker. (Placing sessions by camera would not work: a grid's cameras are many, and
 * a camera's other viewers are spread over every worker anyway.)
 *
 * Demand: each bound slot counts as one viewer of its camera's source here, on the main
 * thread, where on-demand pulling is decided; the count follows binds, re-binds, slot
 * ends and the session's close.
 */
import { ClosedError, NotFoundError } from "../config/errors.ts";
import { SafeEmitter } from "../config/events.ts";
import type { CameraId, GridSessionId } from "../config/ids.ts";
import { toCloseReason, ViewerCloseReasons, type GridSessionEvents, type GridSessionHandle, type GridSessionStats, type GridSlot, type ViewerCloseReason, type ViewerState } from "./api.ts";
import type { ToWorker } from "./worker-protocol.ts";

/** What a session proxy needs of the pool: its worker's request channel, and demand on sources. */
export interface SessionChannel {
  call<T>(m: ToWorker & { req: number }): Promise<T>;
  /** The latest stats the worker reported for this session. */
  stats(id: GridSessionId): GridSessionStats | undefined;
  /** Counts one more (or one fewer) viewer of a camera; false when the camera has no source. */
  addDemand(camera: CameraId): boolean;
  removeDemand(camera: CameraId): void;
  /** The proxy is closed: the pool forgets it. */
  forget(session: GridSessionProxy): void;
}

export class GridSessionProxy implements GridSessionHandle {
  readonly id: GridSessionId;
  readonly user: string | undefined;
  private readonly ch: SessionChannel;
  private readonly events = new SafeEmitter<GridSessionEvents>(() => {});
  private readonly slotList: GridSlot[] = [];
  private readonly createdAt = Date.now();
  private _state: ViewerState = "connecting";
  private closedReason: ViewerCloseReason | undefined;
  private closing: Promise<void> | undefined;
  private closedEmitted = false;
  private resolveClosed: () => void = () => {};

  constructor(id: GridSessionId, user: string | undefined, ch: SessionChannel) {
    this.id = id;
    this.user = user;
    this.ch = ch;
  }

  /** The worker created the session with these slots. */
  setSlots(slots: readonly GridSlot[]): void {
    this.slotList.length = 0;
    for (const s of slots) this.slotList.push({ mid: s.mid, kind: s.kind, camera: undefined });
  }

  get state(): ViewerState {
    return this._state;
  }

  get reason(): ViewerCloseReason | undefined {
    return this.closedReason;
  }

  on<K extends keyof GridSessionEvents>(event: K, fn: (...args: GridSessionEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  once<K extends keyof GridSessionEvents>(event: K, fn: (...args: GridSessionEvents[K]) => void): () => void {
    return this.events.once(event, fn);
  }

  off<K extends keyof GridSessionEvents>(event: K, fn: (...args: GridSessionEvents[K]) => void): void {
    this.events.off(event, fn);
  }

  slots(): GridSlot[] {
    return this.slotList.map((s) => ({ ...s }));
  }

  async bind(mid: string, camera: CameraId): Promise<void> {
    if (this.closing) throw new ClosedError("session closed");
    const slot = this.slotList.find((s) => s.mid === mid);
    if (!slot) throw new NotFoundError("no such slot");
    if (slot.camera === camera) return;
    // Demand first: an on-demand camera starts pulling while the worker binds.
    if (!this.ch.addDemand(camera)) throw new NotFoundError(`no source for camera ${camera}`);
    // The worker answers binds in the order asked, so the last answer is what the slot shows.
    try {
      await this.ch.call({ t: "bindSlot", req: 0, id: this.id, mid, cam: camera });
    } catch (err) {
      this.ch.removeDemand(camera);
      throw err;
    }
    if (this.closing) {
      this.ch.removeDemand(camera);
      throw new ClosedError("session closed");
    }
    if (slot.camera !== undefined) this.ch.removeDemand(slot.camera);
    slot.camera = camera;
  }

  async unbind(mid: string, reason: ViewerCloseReason = "slot unbound"): Promise<void> {
    if (this.closing) return;
    const slot = this.slotList.find((s) => s.mid === mid);
    if (!slot) throw new NotFoundError("no such slot");
    if (slot.camera === undefined) return;
    await this.ch.call({ t: "unbindSlot", req: 0, id: this.id, mid, reason });
    if (slot.camera !== undefined) {
      this.ch.removeDemand(slot.camera);
      slot.camera = undefined;
    }
  }

  stats(): GridSessionStats {
    const s = this.ch.stats(this.id);
    if (s) return { ...s, state: this._state };
    return {
      id: this.id,
      user: this.user,
      state: this._state,
      createdAt: this.createdAt,
      connectMs: undefined,
      slots: this.slotList.map((x) => ({ ...x, ssrc: 0, packetsOut: 0, bytesOut: 0, plis: 0, keyframesFromCache: 0, quality: "full" as const })),
      transport: undefined,
    };
  }

  close(reason: ViewerCloseReason = ViewerCloseReasons.closed): Promise<void> {
    if (this.closing) return this.closing;
    const done = new Promise<void>((r) => (this.resolveClosed = r));
    this.closing = done;
    this.startClosing(reason);
    void this.ch
      .call({ t: "closeSession", req: 0, id: this.id, reason })
      .catch(() => {})
      .then(() => this.remoteClosed(reason));
    return done;
  }

  // ---- from the worker ----

  remoteState(s: ViewerState): void {
    if (s === "closed") return; // "closed" follows with its reason
    this.setState(s);
  }

  remoteSlotEnded(mid: string, camera: CameraId, reason: string): void {
    const slot = this.slotList.find((s) => s.mid === mid);
    if (!slot || slot.camera !== camera) return;
    this.ch.removeDemand(camera);
    slot.camera = undefined;
    this.events.emit("slotEnded", mid, camera, toCloseReason(reason));
  }

  /** The worker closed it (timeout, failure, our request) or is gone; `text` as the worker wrote it. */
  remoteClosed(text: string): void {
    const reason = toCloseReason(text);
    if (!this.closing) {
      this.closing = Promise.resolve();
      this.startClosing(reason);
    }
    if (this.closedEmitted) return;
    this.closedEmitted = true;
    this.events.emit("closed", this.closedReason ?? reason);
    this.events.removeAllListeners();
    this.resolveClosed();
  }

  private startClosing(reason: ViewerCloseReason): void {
    this.closedReason = reason;
    this.setState("closed");
    for (const s of this.slotList) {
      if (s.camera !== undefined) this.ch.removeDemand(s.camera);
      s.camera = undefined;
    }
    this.ch.forget(this);
  }

  private setState(s: ViewerState): void {
    if (this._state === s || this._state === "closed") return;
    this._state = s;
    this.events.emit("state", s);
  }
}
