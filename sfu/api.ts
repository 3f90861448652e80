/**
 * What the gateway holds of the media plane: a source per camera (the MediaSink ingest
 * pushes into) and a viewer per WebRTC session. On the calling thread these are the
 * Source and Viewer objects themselves; with media workers they are proxies whose
 * media lives in a worker thread (sfu/worker-pool.ts). Both behave the same, except
 * that a proxy's `stats()` is a snapshot at most half a second old
 * (`Sfu.refreshStats()` makes it current).
 *
 * This file is the contract: the handles, their events, statistics and states are
 * declared here, and the implementations (source.ts, viewer.ts, the worker proxies)
 * import them from here, never the other way round.
 */
import type { CameraId, GridSessionId, ViewerId } from "../config/ids.ts";
import type { PacketRing } from "./ring.ts";
import type { TransportInfo } from "./transport.ts";
import type { CodecName, MediaSink, TrackSpec } from "./types.ts";

/** A camera's source. */
export interface SourceHandle extends MediaSink {
  readonly id: CameraId;
  on<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void;
  once<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void;
  off<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): void;
  stats(): SourceStats;
  /** The current upstream tracks, or undefined before the first setTracks. */
  currentTracks(): readonly TrackSpec[] | undefined;
  /** Index of the first track of this kind (and codec, when given), or −1. */
  trackIndexOf(kind: "video" | "audio", codec?: CodecName): number;
  /** Viewers, connecting ones included. */
  readonly viewerCount: number;
  /**
   * The packet history of a track when the source lives on this thread (diagnostics and
   * tests); undefined when it lives in media workers.
   */
  ring(track: number): PacketRing | undefined;
}

/** One viewer's session. */
export interface ViewerHandle {
  readonly id: ViewerId;
  readonly cameraId: CameraId;
  readonly user: string | undefined;
  readonly state: ViewerState;
  /** Why the viewer closed, once it has. */
  readonly reason: ViewerCloseReason | undefined;
  on<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): () => void;
  once<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): () => void;
  off<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): void;
  stats(): ViewerStats;
  /** Caps this viewer's send rate, bits/s. */
  setPacingRate(bitsPerSecond: number): void;
  /** The source media comes from now: `cameraId` at first, another after `switchSource`. */
  readonly sourceId: CameraId;
  /**
   * Re-binds this viewer's outgoing video and audio to another source (another stream of
   * the camera, `streamSourceId(camera, "sub")`, or another camera's) without renegotiation:
   * its SSRCs stay, sequence numbers run on without a gap, timestamps continue from the last
   * frame sent by the time elapsed. Video moves at the target's next keyframe (the old
   * picture plays until then; at once from the target's cached keyframe when the current
   * source sends nothing). The target counts as demand (its pull starts) from this call, the
   * old source until the switch is made. Ends with a "switched" event, `ok` false when the
   * target does not exist, sent no keyframe within the switch timeout (default 8 s), or was
   * superseded by another call. Asking for the current source cancels a pending switch.
   */
  switchSource(source: CameraId, reason?: string): void;
  /**
   * The viewer's streams as sources, largest first, and whether the SFU moves it between
   * them as its network allows (`auto`: steps down main → sub → keyframes only within
   * seconds when the browser's reports show the link saturating, back up with hysteresis;
   * see sfu/adapt.ts), or leaves it where `switchSource` puts it.
   */
  setStreams(ladder: readonly CameraId[], auto: boolean): void;
  /** Ends the viewer. Idempotent; resolves once its transport is released. */
  close(reason?: ViewerCloseReason): Promise<void>;
}

// ---- sources: events, statistics -------------------------------------------------

/** Why the source dropped an upstream packet. */
export type SourceDropReason =
  /** Not RTP, or a track index outside the last setTracks. */
  | "malformed"
  /** A payload type other than the track's. */
  | "payloadType"
  | "duplicate"
  /** Reordered or late (older than the newest packet). */
  | "late"
  /** Video before the first keyframe of an upstream session: no viewer could decode it. */
  | "awaitingKeyframe"
  /** H.264 payloads a browser cannot use (interleaved-mode types, malformed STAP-A, empty). */
  | "unsupportedPayload"
  /** Larger than a history slot (non-H.264 payload over 1500 bytes). */
  | "oversize"
  /** Pushed while no upstream session was announced (before setTracks or after close). */
  | "noTracks"
  /**
   * Never fanned out: the media thread fell further behind ingest than its backlog bound
   * (overload; the viewers resume at the next keyframe).
   */
  | "backlog";

export interface SourceTrackStats extends TrackSpec {
  packetsIn: number;
  packetsOut: number;
  /** Upstream packets lost (sequence gaps). */
  lost: number;
  keyframes: number;
  /** Packets in the current cached GOP, 0 when none is usable. */
  gopPackets: number;
  /** H.264: STAP-A(SPS, PPS) inserted before IDRs. */
  parameterSetsInserted: number;
  /** Payloads split to fit the path MTU. */
  refragmented: number;
  /** The upstream sends RTCP sender reports (lip sync uses its clock). */
  upstreamSr: boolean;
}

export interface SourceStats {
  id: CameraId;
  packetsIn: number;
  bytesIn: number;
  dropped: Record<SourceDropReason, number>;
  /** Viewers (connecting ones included): the demand signal. */
  viewers: number;
  tracks: SourceTrackStats[];
  /** A keyframe is cached: a new viewer starts decoding at once. */
  hasKeyframe: boolean;
  /** Unix ms of the last upstream packet, undefined before the first. */
  lastPacketAt: number | undefined;
  /** Upstream sessions announced by setTracks (reconnects + 1). */
  sessions: number;
  upstreamUp: boolean;
}

export type SourceEvents = {
  /** Viewer count changed (connecting viewers count): drives on-demand pulling. */
  viewers: [count: number];
  /** A keyframe started on a video track. */
  keyframe: [info: { track: number; packets: number }];
  /** Periodic statistics (about once a second while anyone listens). */
  stats: [stats: SourceStats];
};

// ---- viewers: why they end -----------------------------------------------------------

/**
 * Why a viewer ended. The values are the words logs, the audit trail (`live_view_end`) and the
 * media workers' messages carry; compare against these constants, never against literals.
 */
export const ViewerCloseReasons = {
  /** The browser ended its session (WHEP DELETE). */
  clientDelete: "client delete",
  /** The SFU (the gateway) is shutting down. */
  sfuClosing: "sfu closing",
  /** Its source (camera) was closed. */
  sourceClosed: "source closed",
  /** ICE + DTLS did not complete in time after the POST. */
  connectTimeout: "connect timeout",
  /** The connection was lost and did not come back. */
  iceDisconnected: "ice disconnected",
  /** ICE failed (no path between the browser and the gateway). */
  iceFailed: "ice failed",
  /** ICE or the DTLS handshake failed. */
  dtlsFailed: "ice/dtls failed",
  /** The transport closed under the viewer. */
  transportClosed: "transport closed",
  /** The media worker serving it died. */
  workerFailed: "media worker failed",
  /** The browser stopped sending RTCP (closed tab, dead network). */
  viewerSilent: "viewer silent (no RTCP)",
  /** The offer could not be answered. */
  negotiationFailed: "negotiation failed",
  /** The gateway refused it after it was made (admission, audit). */
  rejectedByGateway: "rejected by gateway",
  /** Another gateway of the cluster now serves the camera. */
  takenOver: "camera taken over by another node",
  /** A slot of a multi-camera session was bound to another camera (its viewer of the old one ends). */
  slotRebound: "slot re-bound",
  /** A slot of a multi-camera session was unbound by its page. */
  slotUnbound: "slot unbound",
  /** The multi-camera session the slot belonged to ended. */
  sessionClosed: "session closed",
  /** Ended without a more precise reason. */
  closed: "closed",
  /** Ended by `[Symbol.asyncDispose]`. */
  disposed: "disposed",
} as const;

/** Access ended: the session was signed out, expired or revoked, or the right was removed. */
export type AuthCloseReason = `auth: ${string}`;
export type ViewerCloseReason = (typeof ViewerCloseReasons)[keyof typeof ViewerCloseReasons] | AuthCloseReason;

const KNOWN_CLOSE_REASONS: ReadonlySet<string> = new Set(Object.values(ViewerCloseReasons));

/** The reason for a viewer ended because its user's access ended (`why`: "logout", "expired", …). */
export function authCloseReason(why: string): AuthCloseReason {
  return `auth: ${why}`;
}

/** Whether a reason (or text received as one) says the user's access ended. */
export function isAuthCloseReason(reason: string): reason is AuthCloseReason {
  return reason.startsWith("auth: ");
}

/** A reason received as text (a worker message): itself when known, else `closed`. */
export function toCloseReason(text: string): ViewerCloseReason {
  return KNOWN_CLOSE_REASONS.has(text) || isAuthCloseReason(text) ? (text as ViewerCloseReason) : ViewerCloseReasons.closed;
}

/** Ends its owner chose (logged at debug, not info). */
export function isExpectedClose(reason: ViewerCloseReason): boolean {
  return (
    reason === ViewerCloseReasons.clientDelete ||
    reason === ViewerCloseReasons.sfuClosing ||
    reason === ViewerCloseReasons.sourceClosed ||
    reason === ViewerCloseReasons.disposed ||
    reason === ViewerCloseReasons.slotRebound ||
    reason === ViewerCloseReasons.slotUnbound ||
    reason === ViewerCloseReasons.sessionClosed
  );
}

/** Plain words for a person (a page, a log line read by an operator). */
export function closeReasonText(reason: ViewerCloseReason): string {
  if (isAuthCloseReason(reason)) return "Your access to this camera ended (signed out, session expired or right removed).";
  switch (reason as (typeof ViewerCloseReasons)[keyof typeof ViewerCloseReasons]) {
    case ViewerCloseReasons.clientDelete:
      return "The viewer was closed.";
    case ViewerCloseReasons.sfuClosing:
      return "The gateway is restarting.";
    case ViewerCloseReasons.sourceClosed:
      return "The camera was removed.";
    case ViewerCloseReasons.connectTimeout:
      return "The video connection could not be set up in time.";
    case ViewerCloseReasons.iceDisconnected:
    case ViewerCloseReasons.transportClosed:
      return "The video connection was lost.";
    case ViewerCloseReasons.iceFailed:
    case ViewerCloseReasons.dtlsFailed:
      return "No network path for video was found between this browser and the gateway.";
    case ViewerCloseReasons.workerFailed:
      return "The gateway's media process failed; the view starts again.";
    case ViewerCloseReasons.viewerSilent:
      return "The browser stopped answering.";
    case ViewerCloseReasons.negotiationFailed:
      return "The browser and the gateway could not agree on a video format.";
    case ViewerCloseReasons.rejectedByGateway:
      return "The gateway refused the stream.";
    case ViewerCloseReasons.takenOver:
      return "Another gateway now serves this camera.";
    default:
      return "The video ended.";
  }
}

// ---- viewers: states, events, statistics -------------------------------------------

/** Viewer lifecycle as seen from outside. */
export type ViewerState = "connecting" | "connected" | "disconnected" | "closed";

export type ViewerEvents = {
  closed: [reason: ViewerCloseReason];
  state: [state: ViewerState];
  /** Overload step-down ("keyframes": only whole keyframes are sent) and step back up ("full"). */
  quality: [mode: ViewerQuality, reason: string];
  /** A source switch (`switchSource`) was made (`ok`), or given up: the viewer stays on `from`. */
  switched: [info: SwitchInfo];
};

/** The outcome of a source switch. */
export interface SwitchInfo {
  /** The source the viewer was on when the switch ended (for a failure: the one it stays on). */
  from: CameraId;
  /** The source asked for. */
  to: CameraId;
  ok: boolean;
  /** The caller's reason when made; why not otherwise ("no such source", "superseded", "no keyframe in time"). */
  reason: string;
}

/**
 * What a viewer is sent: every frame, or (stepped down past capacity: there is no
 * simulcast layer to switch to) whole keyframes only, about one frame per GOP.
 */
export type ViewerQuality = "full" | "keyframes";

/** Why packets did not reach a viewer. */
export type ViewerDropReason =
  /** The send queue was full: the frame and everything up to the next keyframe were dropped. */
  | "queueFull"
  /** Video before the first keyframe (after a join without cache, an overflow, or a PLI without cache). */
  | "awaitingKeyframe"
  /** The packet left the source history before this viewer's queue reached it. */
  | "expired"
  /** The source's codec was not negotiated with this viewer (e.g. audio codec changed upstream). */
  | "codecNotNegotiated"
  /** The transport refused the packet (not connected). */
  | "notConnected"
  /** Video between keyframes while the viewer is stepped down to keyframes only. */
  | "steppedDown"
  /** Queued video older than maxQueueDelayMs (the viewer or the SFU fell behind): dropped up to the next keyframe. */
  | "queueDelay";

export interface ViewerTrackStats {
  kind: "video" | "audio";
  ssrc: number;
  payloadType: number;
  packets: number;
  bytes: number;
}

export interface ViewerStats {
  id: ViewerId;
  cameraId: CameraId;
  user: string | undefined;
  state: ViewerState;
  /** Unix ms when the viewer was created (offer received). */
  createdAt: number;
  /** Milliseconds from offer to ICE+DTLS connected; undefined until then. */
  connectMs: number | undefined;
  packetsOut: number;
  bytesOut: number;
  /** RTCP NACK packets received. */
  nacks: number;
  /** Sequence numbers asked for by NACKs. */
  nackedPackets: number;
  retransmits: number;
  retransmitBytes: number;
  /** NACKed packets no longer (or never) held. */
  nackMisses: number;
  plis: number;
  firs: number;
  /** Times the cached GOP was replayed to this viewer (join, PLI, FIR). */
  keyframesFromCache: number;
  drops: Record<ViewerDropReason, number>;
  /** Packets waiting in the send queue now. */
  queued: number;
  /** Round-trip time from the last receiver report, ms. */
  rttMs: number | undefined;
  /** Fraction lost (0–1) from the last receiver report on video. */
  fractionLost: number | undefined;
  /** Interarrival jitter from the last video receiver report, ms. */
  jitterMs: number | undefined;
  /** Last REMB estimate, bits/s. */
  rembBps: number | undefined;
  malformedRtcp: number;
  tracks: ViewerTrackStats[];
  /** SRTP profile and send path, once connected. */
  transport: TransportInfo | undefined;
  /** "keyframes" while stepped down for overload. */
  quality: ViewerQuality;
  /** Times this viewer was stepped down. */
  stepDowns: number;
  /** The source media comes from now (another of the camera's streams after a switch). */
  sourceId: CameraId;
  /** The network estimate of an adaptive (Auto) viewer, bits/s; undefined before the link said anything or when not adaptive. */
  estimateBps: number | undefined;
  /** Of an adaptive viewer: what reached it over the last second, bits/s, and how long its packets queue on the path (a lower bound), ms. */
  deliveredBps?: number | undefined;
  queueDelayMs?: number | undefined;
  /**
   * Of an adaptive viewer: probes of the link made before stepping up, failed ones, bytes they
   * sent as copies, and of the last one judged from transport-wide feedback what the link
   * delivered while it ran, what was sent over the same span and the rate it was judged
   * against (bits/s, 0: none).
   */
  probes?: { made: number; failed: number; bytes: number; last: { deliveredBps: number; sentBps: number; targetBps: number } } | undefined;
  /** Moved between its streams by the SFU as its network allows (Auto). */
  adaptive: boolean;
}

// ---- multi-camera sessions ----------------------------------------------------------

/**
 * One browser's multi-camera session: ONE peer connection (one ICE/DTLS handshake, one
 * ICE port, one set of TURN allocations) with several outgoing slots, one per m-section
 * the browser offered to receive on. Each slot is bound to a camera (or to none) and can
 * be re-bound without renegotiation: the slot's SSRC stays, its sequence numbers and
 * timestamps go on, and the new camera starts at its cached keyframe.
 */
export interface GridSessionHandle {
  readonly id: GridSessionId;
  readonly user: string | undefined;
  /** The peer connection's state (the same lifecycle as a viewer's). */
  readonly state: ViewerState;
  /** Why the session closed, once it has. */
  readonly reason: string | undefined;
  /** Every slot, in offer order. */
  slots(): GridSlot[];
  /**
   * Binds a slot to a camera (replacing what it showed). Rights are the caller's business.
   * NotFoundError: no such slot or camera; ClosedError: the session is closed.
   */
  bind(mid: string, camera: CameraId): Promise<void>;
  /** Unbinds a slot (it sends nothing until bound again). Harmless when it is not bound. */
  unbind(mid: string, reason?: ViewerCloseReason): Promise<void>;
  on<K extends keyof GridSessionEvents>(event: K, fn: (...args: GridSessionEvents[K]) => void): () => void;
  once<K extends keyof GridSessionEvents>(event: K, fn: (...args: GridSessionEvents[K]) => void): () => void;
  off<K extends keyof GridSessionEvents>(event: K, fn: (...args: GridSessionEvents[K]) => void): void;
  stats(): GridSessionStats;
  /** Ends the session and every binding. Every caller gets the same promise, resolved once its transport is released. */
  close(reason?: ViewerCloseReason): Promise<void>;
}

/**
 * Something watching a source (Sfu.watchersOf): a viewer, or a multi-camera session's slot bound
 * to it (a paired audio slot follows its video slot and is not listed on its own). Who moves a
 * source's watchers elsewhere (or ends them) moves both: `switchSource` for a viewer, `bind`
 * (at the new source's keyframe) or `unbind` for a slot.
 */
export type SourceWatcher = { readonly kind: "viewer"; readonly viewer: ViewerHandle } | { readonly kind: "slot"; readonly session: GridSessionHandle; readonly mid: string };

/** A slot of a multi-camera session. */
export interface GridSlot {
  /** The m-section's mid (the browser's transceiver). */
  mid: string;
  kind: "video" | "audio";
  /** The camera it shows, if bound. */
  camera: CameraId | undefined;
}

export type GridSessionEvents = {
  closed: [reason: ViewerCloseReason];
  state: [state: ViewerState];
  /** A binding ended without being asked (the camera's source closed, the slot fell silent…). */
  slotEnded: [mid: string, camera: CameraId, reason: ViewerCloseReason];
};

export interface GridSlotStats extends GridSlot {
  ssrc: number;
  packetsOut: number;
  bytesOut: number;
  plis: number;
  /** Times the cached GOP started this slot's camera (binds, PLIs). */
  keyframesFromCache: number;
  quality: ViewerQuality;
}

export interface GridSessionStats {
  id: GridSessionId;
  user: string | undefined;
  state: ViewerState;
  /** Unix ms when the session was created (offer received). */
  createdAt: number;
  /** Milliseconds from offer to ICE+DTLS connected; undefined until then. */
  connectMs: number | undefined;
  slots: GridSlotStats[];
  transport: TransportInfo | undefined;
}
