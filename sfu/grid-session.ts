/**
 * A multi-camera session on one media thread: one werift peer connection whose outgoing
 * m-sections ("slots") each carry one camera, bound and re-bound by mid.
 *
 * Each bound slot is an ordinary Viewer (send queue, pacing, NACK history, GOP replay,
 * sender reports, step-down) of the camera's source, given a SlotTransport that sends
 * through the session's one secure transport with the slot's own SSRC. So a grid tile
 * behaves exactly like a one-camera viewer, and the forwarding path has no second copy.
 * The browser's RTCP reaches every slot viewer; each keeps what names its own SSRC.
 *
 * Re-binding a slot ends its viewer and starts one on the new camera that continues the
 * slot's sequence numbers and timestamps (Viewer.continuation), starting at the new
 * camera's cached keyframe: the browser's track just shows another picture.
 *
 * Sound: the i-th audio section of the offer is paired with the i-th video slot and carries
 * the sound of the camera bound there, sent by the same viewer (one viewer per tile, its
 * sender reports tying the two together). A paired audio slot is never bound on its own.
 *
 * Start: slots bound before the connection is up (with the offer) start `startHoldMs` after our
 * side of DTLS completes. We are the DTLS server: our last flight leaves as we complete, and the
 * browser has its SRTP keys only once it has read it. Media sent before is dropped there, and a
 * page's worth of keyframe replays arriving with that flight delayed the browser's own
 * "connected" by 0.1–0.5 s (measured with 16 slots). The browser sends nothing we could wait
 * for instead (its first RTCP comes about 0.5 s later). Slots bound later start at once.
 *
 * Lifecycle: the session's state follows its transport (connect timeout, disconnect grace,
 * ICE/DTLS failure close it); closing it closes every slot viewer, then the transport.
 */
import { BadInputError, ClosedError, NotFoundError } from "../config/errors.ts";
import { SafeEmitter } from "../config/events.ts";
import type { CameraId, GridSessionId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import {
  isExpectedClose,
  toCloseReason,
  ViewerCloseReasons,
  type GridSessionEvents,
  type GridSessionHandle,
  type GridSessionStats,
  type GridSlot,
  type GridSlotStats,
  type ViewerCloseReason,
  type ViewerState,
} from "./api.ts";
import type { AnswerPlan } from "./offer.ts";
import type { Source } from "./source.ts";
import type { TransportInfo, TransportState, ViewerTransport } from "./transport.ts";
import type { CodecName } from "./types.ts";
import type { RtpHeaderFields } from "./rtp/packet.ts";
import type { Viewer, ViewerTimers } from "./viewer.ts";

/** What a session needs of the peer it runs on (sfu/werift-peer.ts WeriftPeer). */
export interface GridPeer {
  transport: ViewerTransport;
  cname: string;
  slots: readonly { mid: string; kind: "video" | "audio"; ssrc: number }[];
}

export interface GridSessionOptions {
  id: GridSessionId;
  user: string | undefined;
  log: Logger;
  plan: AnswerPlan;
  timers: ViewerTimers;
  /** Close if not connected this long after the answer, ms. */
  connectTimeoutMs: number;
  /** Close if ICE stays disconnected this long, ms. */
  disconnectTimeoutMs: number;
  /** Slots bound before the connection is up start this long after it is, ms (see the file comment). */
  startHoldMs: number;
  /** This thread's source of a camera, if it has one. */
  source(camera: CameraId): Source | undefined;
  /** A new viewer of `source` with the engine's options (not yet bound to a transport). */
  newViewer(source: Source, id: string, log: Logger): Viewer;
}

/** Reasons the session gives the viewers it ends itself (no `slotEnded` for these). */
const REBOUND = ViewerCloseReasons.slotRebound;
const UNBOUND = ViewerCloseReasons.slotUnbound;

/** Viewers the session ended itself (an unbind with a reason of the caller's: no `slotEnded` either). */
const asked = new WeakSet<Viewer>();

interface SlotState {
  readonly mid: string;
  readonly kind: "video" | "audio";
  readonly ssrc: number;
  viewer: Viewer | undefined;
  /** Where the slot's stream stands after its last viewer (so a later bind continues it). */
  last: { seq: number; ts: number } | undefined;
  /** A video slot's sound (its paired audio slot), or the video slot an audio slot follows. */
  sound?: SlotState | undefined;
  follows?: SlotState | undefined;
}

export class GridSession implements GridSessionHandle {
  readonly id: GridSessionId;
  readonly user: string | undefined;
  private readonly o: GridSessionOptions;
  private readonly log: Logger;
  private readonly events: SafeEmitter<GridSessionEvents>;
  private readonly slotList: SlotState[] = [];
  private readonly byMid = new Map<string, SlotState>();
  private peer: GridPeer | undefined;
  private transportState: TransportState = "connecting";
  private _state: ViewerState = "connecting";
  private closedReason: ViewerCloseReason | undefined;
  private closing: Promise<void> | undefined;
  private readonly createdAt: number;
  private connectedAt: number | undefined;
  private connectTimer: unknown;
  private disconnectTimer: unknown;
  private startTimer: unknown;
  /** The slot viewers follow the transport (after the start hold, see the file comment). */
  private started = false;
  private binds = 0;

  constructor(o: GridSessionOptions) {
    this.o = o;
    this.id = o.id;
    this.user = o.user;
    this.log = o.log;
    this.events = new SafeEmitter<GridSessionEvents>((event, err) => this.log.warn("session listener failed", { event, err }));
    this.createdAt = o.timers.now();
    this.connectTimer = o.timers.setTimeout(() => {
      this.connectTimer = undefined;
      if (this._state === "connecting") void this.close("connect timeout");
    }, o.connectTimeoutMs);
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

  /** The negotiated peer: its slots become bindable. Called once, before any transport event is delivered. */
  attachPeer(peer: GridPeer): void {
    this.peer = peer;
    for (const s of peer.slots) {
      const slot: SlotState = { mid: s.mid, kind: s.kind, ssrc: s.ssrc, viewer: undefined, last: undefined };
      this.slotList.push(slot);
      this.byMid.set(s.mid, slot);
    }
    const videos = this.slotList.filter((s) => s.kind === "video");
    for (const [i, a] of this.slotList.filter((s) => s.kind === "audio").entries()) {
      const v = videos[i];
      if (!v) break;
      v.sound = a;
      a.follows = v;
    }
  }

  slots(): GridSlot[] {
    return this.slotList.map((s) => ({ mid: s.mid, kind: s.kind, camera: (s.follows ?? s).viewer?.cameraId }));
  }

  async bind(mid: string, camera: CameraId): Promise<void> {
    this.bindNow(mid, camera);
  }

  /** Synchronous bind (the media worker answers from it). */
  bindNow(mid: string, camera: CameraId): void {
    if (this.closing || !this.peer) throw new ClosedError("session closed");
    const slot = this.byMid.get(mid);
    if (!slot) throw new NotFoundError("no such slot");
    if (slot.follows) throw new BadInputError(`slot ${mid} carries the sound of slot ${slot.follows.mid}: bind that one`);
    if (slot.viewer && slot.viewer.cameraId === camera && slot.viewer.state !== "closed") return;
    const source = this.o.source(camera);
    if (!source) throw new NotFoundError(`no source for camera ${camera}`);
    this.endViewer(slot, REBOUND);

    const vid = `${this.id}.${mid}.${++this.binds}`;
    const log = this.log.child({ camera, slot: mid });
    const viewer = this.o.newViewer(source, vid, log);
    slot.viewer = viewer;
    source.addViewer(viewer);
    viewer.on("closed", (reason) => {
      const cont = viewer.continuation(slot.kind);
      if (cont) slot.last = cont;
      const sound = slot.sound && viewer.continuation("audio");
      if (sound) slot.sound!.last = sound;
      if (slot.viewer === viewer) slot.viewer = undefined;
      // Ends the session asked for (re-bind, unbind, close) are not news; anything else is.
      if (reason !== REBOUND && reason !== UNBOUND && !this.closing && !asked.has(viewer)) this.events.emit("slotEnded", mid, camera, reason);
    });
    const plan = this.o.plan;
    const transport = new SlotTransport(this.peer.transport);
    const pts = new Map<CodecName, number>();
    for (const c of plan.audio?.choices ?? []) pts.set(c.codec, c.payloadType);
    if (slot.kind === "video") {
      const sound = slot.sound;
      viewer.bindTransport(transport, {
        cname: this.peer.cname,
        video: { ssrc: slot.ssrc, payloadType: plan.video!.choice.payloadType, continueAfter: slot.last },
        audio: sound ? { ssrc: sound.ssrc, payloadTypes: pts, continueAfter: sound.last } : undefined,
      });
    } else {
      viewer.bindTransport(transport, { cname: this.peer.cname, audio: { ssrc: slot.ssrc, payloadTypes: pts, continueAfter: slot.last } });
    }
    // A slot bound on a live connection starts at once (with the camera's cached GOP).
    if (this.transportState === "connected" && this.started) viewer.onTransportState("connected");
    log.debug("slot bound");
  }

  async unbind(mid: string, reason: ViewerCloseReason = UNBOUND): Promise<void> {
    this.unbindNow(mid, reason);
  }

  unbindNow(mid: string, reason: ViewerCloseReason = UNBOUND): void {
    const slot = this.byMid.get(mid);
    if (!slot) throw new NotFoundError("no such slot");
    if (slot.follows) throw new BadInputError(`slot ${mid} carries the sound of slot ${slot.follows.mid}: unbind that one`);
    this.endViewer(slot, reason);
  }

  private endViewer(slot: SlotState, reason: ViewerCloseReason): void {
    const v = slot.viewer;
    if (!v) return;
    const cont = v.continuation(slot.kind);
    if (cont) slot.last = cont;
    const sound = slot.sound && v.continuation("audio");
    if (sound) slot.sound!.last = sound;
    slot.viewer = undefined;
    asked.add(v);
    void v.close(reason);
  }

  /** The viewers of bound slots (the engine ticks them with its own). */
  *viewers(): IterableIterator<Viewer> {
    for (const s of this.slotList) if (s.viewer) yield s.viewer;
  }

  // ---- transport events (from the peer) ----

  onTransportState(s: TransportState, detail?: string): void {
    if (this._state === "closed") return;
    this.transportState = s;
    if (s === "connected" && !this.started) {
      if (this.startTimer === undefined) this.startTimer = this.o.timers.setTimeout(() => this.startSlots(), this.o.startHoldMs);
    } else for (const v of [...this.viewers()]) v.onTransportState(s, detail);
    switch (s) {
      case "connected":
        this.clearTimer("disconnectTimer");
        if (this.connectedAt === undefined) {
          this.connectedAt = this.o.timers.now();
          this.clearTimer("connectTimer");
          this.log.info("session connected", { ms: this.connectedAt - this.createdAt, slots: this.slotList.length });
        }
        this.setState("connected");
        break;
      case "disconnected":
        this.setState("disconnected");
        if (this.disconnectTimer === undefined) {
          this.disconnectTimer = this.o.timers.setTimeout(() => {
            this.disconnectTimer = undefined;
            if (this._state === "disconnected") void this.close(ViewerCloseReasons.iceDisconnected);
          }, this.o.disconnectTimeoutMs);
        }
        break;
      case "failed":
        void this.close(toCloseReason(detail ?? ViewerCloseReasons.iceFailed));
        break;
      case "closed":
        void this.close(toCloseReason(detail ?? ViewerCloseReasons.transportClosed));
        break;
      case "connecting":
        break;
    }
  }

  /** The hold is over: bound slots start (the transport is connected, or they learn its state now). */
  private startSlots(): void {
    this.startTimer = undefined;
    if (this.started || this._state === "closed") return;
    this.started = true;
    for (const v of [...this.viewers()]) v.onTransportState(this.transportState);
  }

  onRtcp(bytes: Buffer): void {
    if (this._state === "closed") return;
    for (const s of this.slotList) s.viewer?.onRtcp(bytes);
  }

  stats(): GridSessionStats {
    const slots: GridSlotStats[] = this.slotList.map((s) => {
      const v = s.viewer?.stats();
      return {
        mid: s.mid,
        kind: s.kind,
        camera: (s.follows ?? s).viewer?.cameraId,
        ssrc: s.ssrc,
        packetsOut: v?.packetsOut ?? 0,
        bytesOut: v?.bytesOut ?? 0,
        plis: v?.plis ?? 0,
        keyframesFromCache: v?.keyframesFromCache ?? 0,
        quality: v?.quality ?? "full",
      };
    });
    const transport: TransportInfo | undefined = this.peer?.transport.describe?.();
    return {
      id: this.id,
      user: this.user,
      state: this._state,
      createdAt: this.createdAt,
      connectMs: this.connectedAt === undefined ? undefined : this.connectedAt - this.createdAt,
      slots,
      transport,
    };
  }

  close(reason: ViewerCloseReason = ViewerCloseReasons.closed): Promise<void> {
    if (this.closing) return this.closing;
    this.closedReason = reason;
    this.clearTimer("connectTimer");
    this.clearTimer("disconnectTimer");
    this.clearTimer("startTimer");
    this.setState("closed");
    const viewers = [...this.viewers()];
    for (const s of this.slotList) s.viewer = undefined;
    if (isExpectedClose(reason)) this.log.debug("session closed", { reason });
    else this.log.info("session closed", { reason });
    this.closing = (async () => {
      await Promise.all(viewers.map((v) => v.close(ViewerCloseReasons.sessionClosed)));
      try {
        await this.peer?.transport.close();
      } catch (err) {
        this.log.debug("transport close failed", { err });
      }
      this.events.emit("closed", reason);
      this.events.removeAllListeners();
    })();
    return this.closing;
  }

  private setState(s: ViewerState): void {
    if (this._state === s || this._state === "closed") return;
    this._state = s;
    this.events.emit("state", s);
  }

  private clearTimer(which: "connectTimer" | "disconnectTimer" | "startTimer"): void {
    const h = this[which];
    if (h !== undefined) this.o.timers.clearTimeout(h);
    this[which] = undefined;
  }
}

/** What a detached slot transport's close() returns: nothing is left to wait for. */
const DETACHED: Promise<void> = Promise.resolve();

/**
 * One slot's view of the session's transport: sends go through it (each packet carries the
 * slot's SSRC), closing ends only the slot, never the shared connection.
 */
class SlotTransport implements ViewerTransport {
  private readonly shared: ViewerTransport;
  private detached = false;

  constructor(shared: ViewerTransport) {
    this.shared = shared;
  }

  sendRtp(header: RtpHeaderFields, payload: Buffer, arrivalMs?: number): boolean {
    return !this.detached && this.shared.sendRtp(header, payload, arrivalMs);
  }

  sendRtcp(compound: Buffer): boolean {
    return !this.detached && this.shared.sendRtcp(compound);
  }

  get inFlight(): number {
    return this.shared.inFlight;
  }

  /** Detaches this slot (the session closes the shared transport); the same settled promise to every caller. */
  close(): Promise<void> {
    this.detached = true;
    return DETACHED;
  }

  describe(): TransportInfo | undefined {
    return this.shared.describe?.();
  }
}
