/**
 * A viewer whose media lives in a worker thread, as the main thread sees it: its state
 * and events mirror what the worker reports; closing asks the worker.
 */
import { SafeEmitter } from "../../config/events.ts";
import type { CameraId, ViewerId } from "../../config/ids.ts";
import type { SwitchInfo, ViewerDropReason, ViewerEvents, ViewerHandle, ViewerQuality, ViewerState, ViewerStats } from "../api.ts";
import { ViewerCloseReasons, type ViewerCloseReason } from "../api.ts";
import type { SourceProxy } from "./source-proxy.ts";

/** What a viewer proxy needs of the pool and its worker: these callbacks, nothing else. */
export interface ViewerChannel {
  /** This viewer's latest stats from its worker (undefined before the first snapshot). */
  stats(): ViewerStats | undefined;
  /** Sets the pacing rate in the worker, bits/s. */
  setPacing(bps: number): void;
  /** Asks the worker to close the viewer; resolves when it has (or when the worker is gone). */
  closeRemote(reason: string): Promise<void>;
  /** The viewer is closed on this side: it no longer counts as load (its sources are released by the proxy). */
  forget(): void;
  /** Another camera's source, for a switch (undefined when there is none). */
  findSource(id: CameraId): SourceProxy | undefined;
  /** Asks the worker to switch the viewer to `cam` (at its next keyframe). */
  switchTo(cam: CameraId, reason: string): void;
  /** Tells the worker the viewer's streams and whether it adapts (Viewer.setStreams). */
  setStreams(ladder: readonly CameraId[], auto: boolean): void;
}

const NO_VIEWER_DROPS: Record<ViewerDropReason, number> = {
  queueFull: 0,
  awaitingKeyframe: 0,
  expired: 0,
  codecNotNegotiated: 0,
  notConnected: 0,
  steppedDown: 0,
  queueDelay: 0,
};

export class ViewerProxy implements ViewerHandle {
  readonly id: ViewerId;
  readonly cameraId: CameraId;
  readonly user: string | undefined;
  /** The source media comes from, and the one a pending switch goes to: both count this viewer as demand. */
  private source: SourceProxy;
  private pending: SourceProxy | undefined;
  private readonly channel: ViewerChannel;
  private readonly events: SafeEmitter<ViewerEvents>;
  private readonly createdAt = Date.now();
  private _state: ViewerState = "connecting";
  private closedReason: ViewerCloseReason | undefined;
  private closing: Promise<void> | undefined;
  private closedEmitted = false;
  private resolveClosed: () => void = () => {};

  /** @param camera the camera the viewer asked for, when it differs from the source (a camera's other stream) */
  constructor(id: ViewerId, source: SourceProxy, user: string | undefined, channel: ViewerChannel, camera?: CameraId) {
    this.id = id;
    this.cameraId = camera ?? source.id;
    this.source = source;
    this.user = user;
    this.channel = channel;
    this.events = new SafeEmitter<ViewerEvents>(() => {});
  }

  get state(): ViewerState {
    return this._state;
  }

  get reason(): ViewerCloseReason | undefined {
    return this.closedReason;
  }

  on<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  once<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): () => void {
    return this.events.once(event, fn);
  }

  off<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): void {
    this.events.off(event, fn);
  }

  stats(): ViewerStats {
    const s = this.channel.stats();
    if (s) return { ...s, state: this._state };
    return {
      id: this.id,
      cameraId: this.cameraId,
      user: this.user,
      state: this._state,
      createdAt: this.createdAt,
      connectMs: undefined,
      packetsOut: 0,
      bytesOut: 0,
      nacks: 0,
      nackedPackets: 0,
      retransmits: 0,
      retransmitBytes: 0,
      nackMisses: 0,
      plis: 0,
      firs: 0,
      keyframesFromCache: 0,
      drops: { ...NO_VIEWER_DROPS },
      queued: 0,
      rttMs: undefined,
      fractionLost: undefined,
      jitterMs: undefined,
      rembBps: undefined,
      malformedRtcp: 0,
      tracks: [],
      transport: undefined,
      quality: "full",
      stepDowns: 0,
      sourceId: this.source.id,
      estimateBps: undefined,
      adaptive: false,
    };
  }

  setPacingRate(bitsPerSecond: number): void {
    if (bitsPerSecond > 0 && this._state !== "closed") this.channel.setPacing(bitsPerSecond);
  }

  get sourceId(): CameraId {
    return this.source.id;
  }

  setStreams(ladder: readonly CameraId[], auto: boolean): void {
    if (this._state !== "closed") this.channel.setStreams(ladder, auto);
  }

  /** See ViewerHandle.switchSource: demand moves here, the switch itself is made in the worker. */
  switchSource(id: CameraId, reason = "switch"): void {
    if (this._state === "closed" || id === this.pending?.id) return;
    const target = id === this.source.id ? this.source : this.channel.findSource(id);
    if (!target) {
      this.events.emit("switched", { from: this.source.id, to: id, ok: false, reason: "no such source" });
      return;
    }
    // A pending target given up (superseded or cancelled) stops counting now; the worker reports it.
    this.pending?.removeViewer();
    this.pending = undefined;
    if (target !== this.source) {
      target.addViewer();
      this.pending = target;
    }
    this.channel.switchTo(id, reason);
  }

  remoteSwitched(info: SwitchInfo): void {
    if (this._state === "closed") return;
    if (info.ok && this.pending?.id === info.to) {
      const left = this.source;
      this.source = this.pending;
      this.pending = undefined;
      left.removeViewer();
    } else if (!info.ok && this.pending?.id === info.to) {
      this.pending.removeViewer();
      this.pending = undefined;
    }
    this.events.emit("switched", info);
  }

  /** The viewer ends: it no longer counts as demand anywhere. */
  releaseSources(): void {
    this.source.removeViewer();
    this.pending?.removeViewer();
    this.pending = undefined;
  }

  close(reason: ViewerCloseReason = ViewerCloseReasons.closed): Promise<void> {
    if (this.closing) return this.closing;
    this.localClosing(reason);
    return this.closing!;
  }

  /** Starts closing from this side: state "closed" at once, "closed" event when the worker is done. */
  localClosing(reason: ViewerCloseReason): void {
    if (this.closing) return;
    this.closedReason = reason;
    this.setState("closed");
    this.channel.forget();
    const done = new Promise<void>((r) => (this.resolveClosed = r));
    void this.channel.closeRemote(reason).then(() => this.remoteClosed(reason));
    this.closing = done;
  }

  remoteQuality(q: ViewerQuality, reason: string): void {
    if (this._state !== "closed") this.events.emit("quality", q, reason);
  }

  remoteState(s: ViewerState): void {
    if (s === "closed") return; // "closed" follows with its reason
    this.setState(s);
  }

  /** The worker closed it (timeout, failure, our request) or is gone. */
  remoteClosed(reason: ViewerCloseReason): void {
    if (!this.closing) {
      this.closedReason = reason;
      this.setState("closed");
      this.channel.forget();
      this.closing = Promise.resolve();
    }
    if (this.closedEmitted) return;
    this.closedEmitted = true;
    this.events.emit("closed", this.closedReason ?? reason);
    this.events.removeAllListeners();
    this.resolveClosed();
  }

  private setState(s: ViewerState): void {
    if (this._state === s || this._state === "closed") return;
    this._state = s;
    this.events.emit("state", s);
  }
}
