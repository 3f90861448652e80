/**
 * One viewer of one camera: its own SSRC, sequence and timestamp space per track, a
 * bounded send queue drained by the shared pacer, NACK answers from a per-viewer
 * history, keyframe resync from the source's GOP cache, and RTCP sender reports.
 *
 * The secure transport is behind `ViewerTransport` (werift today). Everything here
 * runs on the event loop; the per-packet path allocates nothing.
 */
import { randomBytes, randomInt } from "node:crypto";
import { SafeEmitter } from "../config/events.ts";
import type { CameraId, ViewerId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import type { ViewerDropReason, ViewerEvents, ViewerHandle, ViewerQuality, ViewerState, ViewerStats, ViewerTrackStats } from "./api.ts";
import { isExpectedClose, toCloseReason, ViewerCloseReasons, type ViewerCloseReason } from "./api.ts";

export type { ViewerDropReason, ViewerEvents, ViewerQuality, ViewerState, ViewerStats, ViewerTrackStats } from "./api.ts";
import type { Drainable, Pacer } from "./pacer.ts";
import { SlotFlag, type PacketRing } from "./ring.ts";
import { ntpFromUnixMs, ntpMiddle32 } from "./rtp/ntp.ts";
import {
  compound,
  nackItemsToSeqs,
  parseRtcp,
  SdesItemType,
  serializeSdes,
  serializeSr,
  type ReportBlock,
} from "./rtp/rtcp.ts";
import { SendQueue } from "./send-queue.ts";
import { SentHistory } from "./sent-history.ts";
import { SourceSwitch, spliceOffset } from "./rebind.ts";
import { ViewerAdaptation } from "./stream-switch.ts";
import type { TransportState, ViewerTransport } from "./transport.ts";
import type { CodecName, TrackSpec } from "./types.ts";

/** What a viewer needs from its source. */
export interface ViewerSource {
  readonly id: CameraId;
  /** The packet history of a source track. */
  ring(track: number): PacketRing | undefined;
  trackSpec(track: number): TrackSpec | undefined;
  /** Index of the first source track of this kind (and codec, when given), or −1. */
  trackIndexOf(kind: "video" | "audio", codec?: CodecName): number;
  /** The cached GOP of a video track as an inclusive range of extended sequence numbers. */
  gop(track: number): { start: number; end: number } | undefined;
  /** The source-timeline RTP timestamp at `nowMs` and the NTP time (Unix ms) to pair it with. */
  clockAt(track: number, nowMs: number): { unixMs: number; ts: number } | undefined;
  /** Registers a viewer as demand (connecting ones included). */
  addViewer(viewer: Viewer): void;
  /** Upstream bit rate now, bits/s (0 when not pulled). */
  rateBps(): number;
  /** Start fan-out to this viewer (it is connected). */
  attach(viewer: Viewer): void;
  /** Stop fan-out and forget this viewer. */
  removeViewer(viewer: Viewer): void;
}

export interface ViewerTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export interface ViewerOptions {
  id: ViewerId;
  source: ViewerSource;
  log: Logger;
  user?: string | undefined;
  pacer: Pacer;
  timers: ViewerTimers;
  /** Send queue bound, packets. */
  queuePackets: number;
  /** Packets remembered per track for NACK answers. */
  nackHistory: number;
  /** Pacing rate, bits/s. */
  pacingBps: number;
  /** Pacing bucket, bytes: this much goes out at once before pacing applies. */
  pacingBurstBytes: number;
  /** Close if not connected this long after the answer, ms. */
  connectTimeoutMs: number;
  /** Close if ICE stays disconnected this long, ms. */
  disconnectTimeoutMs: number;
  /**
   * Close a connected viewer that sent no RTCP for this long, ms (RFC 3550 §6.3.5 style
   * timeout: a browser reports every second; ICE consent alone takes 30 s to expire).
   */
  rtcpTimeoutMs: number;
  /** Minimum spacing of GOP replays answering PLI/FIR, ms. */
  keyframeResendMinMs: number;
  /** RTP timestamp spacing of replayed cached frames, ms of media clock; ≤ 0 keeps the original spacing (see `resync`). */
  replayFrameSpacingMs: number;
  /** Uniform [0, 1) source for initial sequence numbers and timestamp offsets. Default: crypto. */
  random?: (() => number) | undefined;
  /**
   * Live video that waited in the queue longer than this is dropped up to the next
   * keyframe (counts as an overflow for step-down), ms: past capacity latency stays
   * bounded instead of growing with the queue. Default 500.
   */
  maxQueueDelayMs?: number | undefined;
  /** The camera this viewer watches (rights, resource URLs). Default: the source's id. */
  cameraId?: CameraId | undefined;
  /** Finds another source by id for `switchSource` (undefined: unknown). Default: none can be found. */
  findSource?: ((id: CameraId) => ViewerSource | undefined) | undefined;
  /** Give up a source switch when the target sent no keyframe this long, ms. Default 8000. */
  switchTimeoutMs?: number | undefined;
  /**
   * How a switch decided by network adaptation is made: where sources' demand is counted
   * on another thread, it must go through there. Default: `switchSource` itself.
   */
  requestSwitch?: ((source: CameraId, reason: string) => void) | undefined;
}

/** An outgoing RTP stream's position: the next sequence number to send and the last timestamp sent. */
export interface RtpContinuation {
  seq: number;
  ts: number;
}

/** Per negotiated m-section state. */
interface ViewerTrack {
  kind: "video" | "audio";
  /** Our SSRC for this viewer (announced in the answer). */
  ssrc: number;
  /** Source track feeding it, −1 when none. */
  sourceTrack: number;
  /** Payload type to send for the source's current codec, −1 when not negotiated. */
  payloadType: number;
  /** Payload types negotiated per codec. */
  payloadTypes: Map<CodecName, number>;
  clockRate: number;
  /** Next sequence number to send. */
  seq: number;
  /** Source extended seq of the last packet sent, −1 = next packet starts a run (no gap). */
  lastSrcExt: number;
  /** Live mapping: viewer ts = source ts + tsOffset. */
  tsOffset: number;
  lastTs: number;
  sentAny: boolean;
  /** Video only: drop until a keyframe start. */
  waitKeyframe: boolean;
  packets: number;
  bytes: number;
  /** What was sent, by sequence number (NACK answers, copies). */
  sent: SentHistory;
  /** Our timestamp of the last packet mapped (queued or sent) and when (ingest clock, ms): where a new source's timestamps continue. */
  mappedTs: number;
  lastAt: number;
  mapped: boolean;
  /** The next packet comes from a newly bound source: splice its timestamps onto ours. */
  splice: boolean;
  /** Sequence numbers used so far (gaps included), unwrapped: what a receiver's extended highest seq counts. */
  extSeq: number;
  /**
   * Position (as `extSeq` counts) of the first packet sent from the current source: NACKs for
   * packets before it are not answered (a receiver decodes from the new source's keyframe, sent
   * before any answer could be, so a resend of the old stream only adds to the link's queue).
   */
  nackFloor: number;
  /** Middle 32 bits of the NTP time in our last SR (what the receiver echoes as LSR). */
  lastSrMiddle: number;
  /** Our clock when that SR went out, ms. */
  lastSrAt: number;
}

/** Queue flag: starts a run (no sequence gap to the previous packet). */
const RUN_START = 1;
/** Queue flag: a live packet (not a replay or retransmission): its forwarding latency counts. */
const LIVE = 2;
/**
 * Queue flag: sent twice (same sequence number: a receiver keeps one), the copies of a
 * keyframe's packets after its last one. The keyframe a switch starts from: one of its
 * packets lost on a slow, lossy link costs a round trip behind the link's queue before
 * anything can be shown.
 */
const TWICE = 4;
/** Source gaps larger than this are not reproduced in a viewer's sequence (not loss but a restart). */
const MAX_KEPT_GAP = 100;
/** Socket backpressure: stop draining while this many sends are pending. */
const MAX_IN_FLIGHT = 512;
/** A NACK for a packet resent less than this long ago is ignored (RFC 4585 §3.2 spirit: avoid storms). */
const RESEND_GUARD_MS = 40;
/** Two queue overflows within this window (two GOPs of a slow recorder) step a viewer down to keyframes only, ms. */
const OVERFLOW_WINDOW_MS = 10_000;
/** First stay at keyframes only, ms; doubles (up to STEP_DOWN_MAX_MS) when it has to step down again soon after. */
const STEP_DOWN_MIN_MS = 10_000;
const STEP_DOWN_MAX_MS = 120_000;
/** A switch to another source is made at once (cached keyframe) when the current one sent no video this long, ms. */
const STALE_SOURCE_MS = 1000;
/** Least pacing bucket while Auto quality caps the rate (else a tenth of a second at the cap), bytes. */
const MIN_CAPPED_BURST_BYTES = 8192;
const VIDEO = 0;
const AUDIO = 1;

export class Viewer implements Drainable, ViewerHandle {
  readonly id: ViewerId;
  readonly cameraId: CameraId;
  readonly user: string | undefined;
  /** When the pacer should retry (see Drainable). */
  retryInMs = -1;

  private readonly events: SafeEmitter<ViewerEvents>;
  private readonly o: ViewerOptions;
  private readonly log: Logger;
  private readonly queue: SendQueue;
  private readonly tracks: (ViewerTrack | undefined)[] = [undefined, undefined];
  private transport: ViewerTransport | undefined;
  private cname = "gatehouse";
  private _state: ViewerState = "connecting";
  private closedReason: ViewerCloseReason | undefined;
  private closing: Promise<void> | undefined;
  private readonly createdAt: number;
  private connectedAt: number | undefined;
  private connectTimer: unknown;
  private disconnectTimer: unknown;
  private attached = false;
  private tokens: number;
  private tokensAt: number;
  private bytesPerMs: number;
  /** The pacing rate set (bytes/ms) and bucket, before any cap from Auto quality (see `tick`). */
  private basePerMs: number;
  private burstBytes: number;
  private lastResyncAt = -Infinity;
  private lastRtcpAt = 0;
  private readonly header = { marker: false, payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0 };
  private readonly st = {
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
    malformedRtcp: 0,
    rttMs: undefined as number | undefined,
    fractionLost: undefined as number | undefined,
    jitterMs: undefined as number | undefined,
    rembBps: undefined as number | undefined,
  };
  private readonly drops: Record<ViewerDropReason, number> = {
    queueFull: 0,
    awaitingKeyframe: 0,
    expired: 0,
    codecNotNegotiated: 0,
    notConnected: 0,
    steppedDown: 0,
    queueDelay: 0,
  };
  // Overload step-down (see `tick` and `stepDown`).
  private quality: ViewerQuality = "full";
  private inKeyframe = false;
  private stepUpAtKeyframe = false;
  private overflowAt = -Infinity;
  private lastOverflowAt = -Infinity;
  private holdMs = STEP_DOWN_MIN_MS;
  private holdUntil = 0;
  private stepDowns = 0;
  /** The source media comes from now, and a pending switch to another (see sfu/rebind.ts). */
  private readonly sw: SourceSwitch<ViewerSource>;
  private switchReason = "";
  /** Sequence numbers of the TWICE packets sent whose copies are still to go. */
  private readonly copies: number[] = [];
  /** Auto quality (sfu/stream-switch.ts), when the viewer adapts to its network. */
  private adapt: ViewerAdaptation | undefined;

  constructor(o: ViewerOptions) {
    this.o = o;
    this.id = o.id;
    this.cameraId = o.cameraId ?? o.source.id;
    this.sw = new SourceSwitch<ViewerSource>(o.source, { timeoutMs: o.switchTimeoutMs ?? 8000 });
    this.user = o.user;
    this.log = o.log;
    this.events = new SafeEmitter<ViewerEvents>((event, err) => this.log.warn("viewer listener failed", { event, err }));
    this.queue = new SendQueue(o.queuePackets);
    this.createdAt = o.timers.now();
    this.bytesPerMs = this.basePerMs = o.pacingBps / 8000;
    this.tokens = this.burstBytes = o.pacingBurstBytes;
    this.tokensAt = this.createdAt;
    this.connectTimer = o.timers.setTimeout(() => {
      this.connectTimer = undefined;
      if (this._state === "connecting") void this.close(ViewerCloseReasons.connectTimeout);
    }, o.connectTimeoutMs);
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

  get state(): ViewerState {
    return this._state;
  }

  /** The source media comes from now. */
  private get src(): ViewerSource {
    return this.sw.current;
  }

  /** The id of the source media comes from now (it changes when a switch commits). */
  get sourceId(): CameraId {
    return this.sw.current.id;
  }

  /**
   * Re-binds this viewer (video and audio) to another source: at the target's next
   * keyframe, or at once from its cached keyframe when the current source sends nothing.
   * SSRC, sequence numbers and timestamps continue; no renegotiation. The target counts as
   * demand from now (its pull starts), the old source until the switch is made. Emits
   * "switched" when done or given up. Throws nothing: an unknown source is a failed switch.
   */
  switchSource(id: CameraId, reason = "switch"): void {
    if (this._state === "closed") return;
    const target = id === this.src.id ? this.src : id === this.sw.target?.id ? this.sw.target : this.o.findSource?.(id);
    if (!target) {
      this.events.emit("switched", { from: this.src.id, to: id, ok: false, reason: "no such source" });
      return;
    }
    const r = this.sw.request(target, this.o.timers.now());
    const gone = this.sw.abandoned;
    if (gone) {
      gone.removeViewer(this);
      this.events.emit("switched", { from: this.src.id, to: gone.id, ok: false, reason: "superseded" });
    }
    if (r === "same") return;
    this.switchReason = reason;
    target.addViewer(this);
    if (!this.attached) {
      // Nothing sent yet: bind now (the join replays the target's cached keyframe).
      this.commitSwitch();
      return;
    }
    target.attach(this);
    const video = this.tracks[VIDEO];
    const now = this.o.timers.now();
    const stale = !video || !video.mapped || now - video.lastAt > STALE_SOURCE_MS || this.src.trackIndexOf("video") < 0;
    // A step down by network adaptation: every moment more on the larger stream queues on a
    // link that cannot carry it, so the target's cached GOP goes out now (when it has one).
    const fast = this.adapt?.fastSwitchTo(id) === true && video !== undefined && hasCachedGop(target, video.payloadTypes);
    if (stale || fast) {
      // The current source shows nothing live (down, or not started), or a step down: the target's cached keyframe beats waiting.
      this.commitSwitch();
      if (this.tracks[VIDEO]) this.resync("switch");
    }
  }

  /**
   * The viewer's streams, largest first (sources), and whether the SFU moves it between
   * them as its network allows (`auto`; keyframes only below the smallest) or leaves the
   * choice to the caller (`switchSource`). Auto starts from where the viewer is.
   */
  setStreams(ladder: readonly CameraId[], auto: boolean): void {
    if (this._state === "closed") return;
    const was = this.adapt;
    this.adapt = undefined;
    if (was?.keyframes && this.quality === "keyframes") this.requestStepUp();
    if (!auto || ladder.length === 0) return;
    this.adapt = new ViewerAdaptation(ladder, {
      current: () => this.src,
      target: () => this.sw.target,
      findSource: (id) => this.o.findSource?.(id),
      keyframesOnly: () => this.quality === "keyframes",
      stepDown: (reason, now) => this.stepDown(reason, now),
      requestStepUp: () => this.requestStepUp(),
      switchTo: (id, reason) => (this.o.requestSwitch ?? ((sid: CameraId, r: string) => this.switchSource(sid, r)))(id, reason),
      now: () => this.o.timers.now(),
      log: this.log,
    });
    this.adapt.bindTransport(this.transport);
  }

  /** Moves to the switch target now: tracks remapped, queued packets of the old source dropped, timestamps spliced. */
  private commitSwitch(): void {
    if (!this.sw.commit()) return;
    this.afterCommit();
  }

  private afterCommit(): void {
    const left = this.sw.left!;
    for (const [t, vt] of this.tracks.entries()) {
      if (!vt) continue;
      this.queue.removeTrack(t);
      vt.lastSrcExt = -1;
      vt.splice = true;
      vt.sourceTrack = -2; // forces the remap below
      vt.nackFloor = vt.extSeq;
    }
    this.onSourceTracks();
    left.removeViewer(this);
    this.log.info("viewer switched source", { from: left.id, to: this.src.id, reason: this.switchReason });
    this.events.emit("switched", { from: left.id, to: this.src.id, ok: true, reason: this.switchReason });
  }

  /** Why the viewer closed, once it has. */
  get reason(): ViewerCloseReason | undefined {
    return this.closedReason;
  }

  /**
   * Binds the negotiated transport: SSRCs and payload types from the answer. Called
   * once, before any transport event can arrive.
   */
  bindTransport(
    transport: ViewerTransport,
    negotiated: {
      cname: string;
      video?: { ssrc: number; payloadType: number; h265PayloadType?: number | undefined; continueAfter?: RtpContinuation | undefined } | undefined;
      audio?: { ssrc: number; payloadTypes: Map<CodecName, number>; continueAfter?: RtpContinuation | undefined } | undefined;
    },
  ): void {
    this.transport = transport;
    this.adapt?.bindTransport(transport);
    this.cname = negotiated.cname;
    const H = this.o.nackHistory;
    const rnd = this.o.random;
    const make = (kind: "video" | "audio", ssrc: number, payloadTypes: Map<CodecName, number>): ViewerTrack => ({
      kind,
      ssrc,
      sourceTrack: -1,
      payloadType: -1,
      payloadTypes,
      clockRate: kind === "video" ? 90000 : 8000,
      // RFC 3550 §5.1: random initial sequence number and timestamp.
      seq: rnd ? Math.floor(rnd() * 0x10000) & 0xffff : randomInt(0, 0x10000),
      lastSrcExt: -1,
      tsOffset: rnd ? Math.floor(rnd() * 0x100000000) >>> 0 : randomBytes(4).readUInt32BE(0),
      lastTs: 0,
      sentAny: false,
      waitKeyframe: kind === "video",
      packets: 0,
      bytes: 0,
      sent: new SentHistory(H),
      mappedTs: 0,
      lastAt: 0,
      mapped: false,
      splice: false,
      extSeq: 0,
      nackFloor: 0,
      lastSrMiddle: 0,
      lastSrAt: 0,
    });
    // An outgoing stream that another viewer sent on before (a slot of a multi-camera session
    // re-bound to another camera): its sequence numbers and timestamps go on from there, so
    // the receiver sees one continuous stream (the first packet sent here starts a run).
    const cont = (vt: ViewerTrack, c: RtpContinuation | undefined): ViewerTrack => {
      if (!c) return vt;
      vt.seq = c.seq & 0xffff;
      vt.lastTs = c.ts >>> 0;
      vt.sentAny = true;
      return vt;
    };
    if (negotiated.video) {
      this.tracks[VIDEO] = cont(make("video", negotiated.video.ssrc, videoPayloadTypes(negotiated.video)), negotiated.video.continueAfter);
    }
    if (negotiated.audio) this.tracks[AUDIO] = cont(make("audio", negotiated.audio.ssrc, negotiated.audio.payloadTypes), negotiated.audio.continueAfter);
    this.onSourceTracks();
  }

  /** Where this viewer's outgoing stream of `kind` stands (next sequence number, last timestamp), once it has sent. */
  continuation(kind: "video" | "audio"): RtpContinuation | undefined {
    const vt = this.tracks[kind === "video" ? VIDEO : AUDIO];
    return vt && vt.sentAny ? { seq: vt.seq, ts: vt.lastTs } : undefined;
  }

  /** The source's track list changed (setTracks): remap tracks and payload types. */
  onSourceTracks(): void {
    for (const vt of this.tracks) {
      if (!vt) continue;
      const idx = vt.kind === "video" ? videoTrackFor(this.src, vt.payloadTypes) : this.src.trackIndexOf(vt.kind);
      const spec = idx >= 0 ? this.src.trackSpec(idx) : undefined;
      if (vt.sourceTrack !== idx) {
        this.queue.removeTrack(vt === this.tracks[VIDEO] ? VIDEO : AUDIO);
        vt.lastSrcExt = -1;
      }
      vt.sourceTrack = idx;
      vt.payloadType = spec ? (vt.payloadTypes.get(spec.codec) ?? -1) : -1;
      if (spec) vt.clockRate = spec.clockRate;
    }
  }

  // ---- transport events -------------------------------------------------------

  /** Transport state changes (from the adapter). */
  onTransportState(s: TransportState, detail?: string): void {
    if (this._state === "closed") return;
    switch (s) {
      case "connected":
        this.clearTimer("disconnectTimer");
        if (this.connectedAt === undefined) {
          this.connectedAt = this.o.timers.now();
          this.clearTimer("connectTimer");
          this.setState("connected");
          this.log.info("viewer connected", { ms: this.connectedAt - this.createdAt });
          this.attached = true;
          this.lastRtcpAt = this.connectedAt;
          this.src.attach(this);
          this.resync("join");
        } else {
          this.setState("connected");
        }
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

  /** One plain RTCP compound from the viewer. */
  onRtcp(bytes: Buffer): void {
    if (this._state === "closed") return;
    const now = this.o.timers.now();
    this.lastRtcpAt = now;
    for (const item of parseRtcp(bytes)) {
      switch (item.type) {
        case "rr":
        case "sr":
          for (const b of item.reports) this.onReportBlock(b, now);
          break;
        case "nack": {
          const vt = this.trackBySsrc(item.mediaSsrc);
          this.st.nacks++;
          if (!vt) break;
          for (const seq of nackItemsToSeqs(item.items)) this.retransmit(vt, seq, now);
          break;
        }
        case "pli":
          if (this.trackBySsrc(item.mediaSsrc) === this.tracks[VIDEO] && this.tracks[VIDEO]) {
            this.st.plis++;
            this.onKeyframeRequest("pli", now);
          }
          break;
        case "fir":
          // RFC 5104 §4.3.1.2: the target SSRC is in the FCI, the media SSRC field is 0.
          if (this.tracks[VIDEO] && item.entries.some((e) => e.ssrc === this.tracks[VIDEO]!.ssrc)) {
            this.st.firs++;
            this.onKeyframeRequest("fir", now);
          }
          break;
        case "twcc":
          if (this.adapt) {
            this.adapt.onTransportFeedback(item, now);
            this.paceToLink(this.adapt, now);
          }
          break;
        case "remb":
          // Recorded, not used: see sfu/adapt.ts on REMB.
          this.st.rembBps = item.bitrate;
          break;
        case "error":
          this.st.malformedRtcp++;
          break;
        default:
          break;
      }
    }
  }

  // ---- media path ------------------------------------------------------------

  /**
   * A new packet in the source's ring for source track `srcTrack` (called for attached
   * viewers). `now`: the SFU clock (ms) at ingest.
   */
  onSourcePacket(srcTrack: number, ring: PacketRing, ext: number, now: number, from: ViewerSource): void {
    if (from !== this.src) {
      // The switch target: its first keyframe start moves this viewer over (then sent as usual).
      if (from !== this.sw.target || (ring.flags(ext) & SlotFlag.KEYFRAME_START) === 0) return;
      if (srcTrack !== videoTrackFor(from, this.tracks[VIDEO]?.payloadTypes, true) || !this.sw.onKeyframe(from)) return;
      this.afterCommit();
      if (this.tracks[VIDEO]) this.tracks[VIDEO].waitKeyframe = false;
    }
    let t: number;
    let vt = this.tracks[VIDEO];
    if (vt && vt.sourceTrack === srcTrack) t = VIDEO;
    else {
      vt = this.tracks[AUDIO];
      if (!vt || vt.sourceTrack !== srcTrack) return;
      t = AUDIO;
    }
    if (vt.payloadType < 0) {
      this.drops.codecNotNegotiated++;
      return;
    }
    let flags = LIVE;
    const keyframeStart = (ring.flags(ext) & SlotFlag.KEYFRAME_START) !== 0;
    if (vt.waitKeyframe) {
      if (!keyframeStart) {
        this.drops.awaitingKeyframe++;
        return;
      }
      // Resume at a live keyframe: same timestamp mapping, a new run (no sequence gap).
      vt.waitKeyframe = false;
      flags |= RUN_START;
    }
    if (t === VIDEO && this.quality === "keyframes") {
      if (keyframeStart) {
        flags |= RUN_START;
        if (this.stepUpAtKeyframe) this.setQuality("full", "capacity back");
        else {
          // Each keyframe starts a new run: skipped frames are not loss (no gap, no NACK).
          this.inKeyframe = true;
        }
      } else if (!this.inKeyframe) {
        this.drops.steppedDown++;
        return;
      }
      if (this.quality === "keyframes" && (ring.flags(ext) & SlotFlag.MARKER) !== 0) this.inKeyframe = false;
    }
    if (vt.splice) {
      // First packet from a newly bound source: continue our timestamps, start a run (no gap).
      vt.tsOffset = spliceOffset({ lastTs: vt.mappedTs, lastAt: vt.lastAt, sentAny: vt.mapped, tsOffset: vt.tsOffset }, ring.timestamp(ext), now, vt.clockRate);
      vt.splice = false;
      flags |= RUN_START;
    }
    const ts = (ring.timestamp(ext) + vt.tsOffset) >>> 0;
    vt.lastAt = now;
    vt.mappedTs = ts;
    vt.mapped = true;
    const tr = this.transport;
    if (tr && this.queue.length === 0 && this.mayDirect(tr, now) && this.o.pacer.takeDirect()) {
      // Nothing queued ahead of it: out now, from the ingest callback.
      this.tokens -= this.sendPacket(tr, t, ext, ts, flags);
      return;
    }
    this.enqueue(t, ext, ts, flags, keyframeStart);
    this.o.pacer.wake(this);
  }

  /** Tokens and socket allow a direct send now. */
  private mayDirect(tr: ViewerTransport, now: number): boolean {
    this.tokens = Math.min(this.burstBytes, this.tokens + (now - this.tokensAt) * this.bytesPerMs);
    this.tokensAt = now;
    return this.tokens > 0 && tr.inFlight < MAX_IN_FLIGHT;
  }

  /**
   * Queues one packet. When the queue is full this viewer cannot keep up: every queued
   * video packet is dropped (whole frames: none of them is sent any more) and all video
   * until the next keyframe, which then starts a new run without a sequence gap. Audio
   * packets are small and independent and keep flowing.
   */
  private enqueue(t: number, ext: number, ts: number, flags: number, keyframeStart: boolean): void {
    if (this.queue.push(t, ext, ts, flags)) return;
    const video = this.tracks[VIDEO];
    let dropped = this.dropQueuedVideo();
    if (t === VIDEO && keyframeStart) {
      // The packet that overflowed starts a keyframe itself: resume right here.
      video!.waitKeyframe = false;
      if (!this.queue.push(t, ext, ts, RUN_START | (flags & LIVE))) dropped++;
    } else if (t === VIDEO || !this.queue.push(t, ext, ts, flags)) {
      dropped++;
    }
    this.drops.queueFull += dropped;
    this.noteOverflow();
    this.log.debug("viewer queue full: dropping video until the next keyframe", { dropped });
  }

  /** Removes every queued video packet and waits for the next keyframe; returns how many. */
  private dropQueuedVideo(): number {
    const video = this.tracks[VIDEO];
    if (!video) return 0;
    const n = this.queue.removeTrack(VIDEO);
    video.waitKeyframe = true;
    video.lastSrcExt = -1;
    return n;
  }

  private noteOverflow(): void {
    this.lastOverflowAt = this.overflowAt;
    this.overflowAt = this.o.timers.now();
  }

  /**
   * The queue's head is live video that has waited too long: this viewer is behind (its
   * link, or the SFU's CPU). Drop the backlog up to the next keyframe rather than let
   * the delay grow; it counts as an overflow for step-down.
   */
  private dropIfStale(): void {
    const q = this.queue;
    if (q.length === 0 || (q.peekFlags() & LIVE) === 0 || q.peekTrack() !== VIDEO) return;
    const vt = this.tracks[VIDEO];
    const ring = vt && vt.sourceTrack >= 0 ? this.src.ring(vt.sourceTrack) : undefined;
    if (!ring) return;
    const at = ring.arrivalOf(q.peekExt());
    if (at <= 0 || performance.now() - at <= (this.o.maxQueueDelayMs ?? 500)) return;
    const dropped = this.dropQueuedVideo();
    this.drops.queueDelay += dropped;
    // Paced down to what a queueing link delivers, the backlog is Auto quality's to resolve
    // (a step down), not an overload of ours.
    if (this.bytesPerMs === this.basePerMs) this.noteOverflow();
    this.log.debug("viewer behind: dropping queued video until the next keyframe", { dropped });
  }

  /**
   * Replays the cached GOP (keyframe start to newest) to this viewer only: on join, so
   * it decodes at once, and on PLI/FIR, which cannot be forwarded to an RTSP recorder.
   *
   * Timestamps: a burst of frames spanning up to a GOP with their original spacing would
   * make a receiver's playout clock run that far behind live (its jitter buffer plays
   * frames at their RTP spacing). The replayed frames instead get `replayFrameSpacingMs`
   * apart, ending where the live mapping continues, so they decode and render within a
   * few tens of ms and live frames follow at their real spacing.
   */
  resync(reason: "join" | "pli" | "fir" | "switch"): void {
    const vt = this.tracks[VIDEO];
    if (!vt || vt.sourceTrack < 0) return;
    const ring = this.src.ring(vt.sourceTrack);
    const gop = this.src.gop(vt.sourceTrack);
    this.queue.removeTrack(VIDEO);
    if (!ring || !gop || gop.end - gop.start + 1 > this.queue.capacity - this.queue.length) {
      // Nothing usable cached (no keyframe yet, or a GOP larger than the queue): wait for the next one.
      vt.waitKeyframe = true;
      vt.lastSrcExt = -1;
      return;
    }
    const start = gop.start;
    const end = gop.end;
    const first = this.firstHeld(ring, start, end);
    const keyTs = ring.timestamp(first);
    const protect = (e: number) => (reason === "switch" && ring.timestamp(e) === keyTs ? TWICE : 0);
    if (this.o.replayFrameSpacingMs <= 0) {
      // Original spacing: one offset for the replay and the live stream after it.
      const base = vt.sentAny ? (vt.lastTs + 1) >>> 0 : vt.tsOffset;
      vt.tsOffset = (base - ring.timestamp(first)) >>> 0;
      for (let e = start; e <= end; e++) {
        if (ring.has(e)) this.queue.push(VIDEO, e, (ring.timestamp(e) + vt.tsOffset) >>> 0, (e === first ? RUN_START : 0) | protect(e));
      }
    } else {
      const step = Math.max(1, Math.round((this.o.replayFrameSpacingMs * vt.clockRate) / 1000));
      // First replayed frame: after anything already sent (PLI), anywhere on join.
      const base = vt.sentAny ? (vt.lastTs + step) >>> 0 : vt.tsOffset;
      let frame = -1;
      let prevTs = -1;
      for (let e = start; e <= end; e++) {
        if (!ring.has(e)) continue;
        const ts = ring.timestamp(e);
        if (ts !== prevTs) {
          frame++;
          prevTs = ts;
        }
        this.queue.push(VIDEO, e, (base + frame * step) >>> 0, (e === first ? RUN_START : 0) | protect(e));
      }
      // Live packets continue from the last replayed frame at their real spacing.
      vt.tsOffset = (base + frame * step - ring.timestamp(end)) >>> 0;
    }
    vt.waitKeyframe = false;
    vt.splice = false;
    vt.mappedTs = (ring.timestamp(end) + vt.tsOffset) >>> 0;
    vt.lastAt = this.o.timers.now();
    vt.mapped = true;
    this.st.keyframesFromCache++;
    this.lastResyncAt = this.o.timers.now();
    this.log.debug("replaying cached GOP", { reason, packets: end - start + 1 });
    this.o.pacer.wake(this);
  }

  private firstHeld(ring: PacketRing, start: number, end: number): number {
    for (let e = start; e <= end; e++) if (ring.has(e)) return e;
    return start;
  }

  private onKeyframeRequest(reason: "pli" | "fir", now: number): void {
    if (this._state !== "connected") return;
    const vt = this.tracks[VIDEO];
    if (!vt || vt.waitKeyframe) return; // a keyframe is coming anyway
    if (now - this.lastResyncAt < this.o.keyframeResendMinMs) return;
    if (this.adapt?.congested(now)) {
      // A queueing link: send nothing more it cannot decode, restart at the next live keyframe.
      this.drops.queueDelay += this.dropQueuedVideo();
      this.lastResyncAt = now;
      return;
    }
    this.resync(reason);
  }

  /** Pacer callback: send up to `max` queued packets, and a running probe's copies (see ViewerAdaptation.sendProbe). */
  drain(max: number, now: number): number {
    // The copies owed until now go ahead of the packets sent now (a pass that came late sends both).
    const probeInMs = this.adapt && this.transport && this._state !== "closed" ? this.adapt.sendProbe(this.transport, this.resendVideo, now) : -1;
    const sent = this.drainQueue(max, now);
    if (probeInMs >= 0) this.retryInMs = this.retryInMs < 0 ? probeInMs : Math.min(this.retryInMs, probeInMs);
    return sent;
  }

  private readonly resendVideo = (tr: ViewerTransport, seq: number): number => {
    const vt = this.tracks[VIDEO];
    return vt && vt.sent.has(seq) ? vt.sent.resend(tr, this.header, seq, vt.payloadType, vt.ssrc) : 0;
  };

  private drainQueue(max: number, now: number): number {
    const tr = this.transport;
    if (this._state === "closed" || !tr) {
      this.retryInMs = -1;
      return 0;
    }
    this.dropIfStale();
    // Token bucket refill.
    this.tokens = Math.min(this.burstBytes, this.tokens + (now - this.tokensAt) * this.bytesPerMs);
    this.tokensAt = now;
    let sent = 0;
    const q = this.queue;
    while (q.length > 0 && sent < max) {
      if (this.tokens <= 0) {
        this.retryInMs = Math.max(1, -this.tokens / this.bytesPerMs);
        return sent;
      }
      if (tr.inFlight >= MAX_IN_FLIGHT) {
        this.retryInMs = 1;
        return sent;
      }
      const bytes = this.sendHead(tr);
      this.tokens -= bytes;
      sent++;
    }
    this.retryInMs = q.length > 0 ? 0 : -1;
    return sent;
  }

  private sendHead(tr: ViewerTransport): number {
    const q = this.queue;
    const t = q.peekTrack();
    const ext = q.peekExt();
    const ts = q.peekTs();
    const flags = q.peekFlags();
    q.shift();
    return this.sendPacket(tr, t, ext, ts, flags);
  }

  /** Sends one packet of the source's history with this viewer's header; returns bytes sent (0 when not). */
  private sendPacket(tr: ViewerTransport, t: number, ext: number, ts: number, flags: number): number {
    const vt = this.tracks[t];
    if (!vt || vt.sourceTrack < 0) return 0;
    const ring = this.src.ring(vt.sourceTrack);
    if (!ring || !ring.has(ext)) {
      // Gone from history: leave lastSrcExt so the hole shows as a sequence gap.
      this.drops.expired++;
      return 0;
    }
    let seq = vt.seq;
    if ((flags & RUN_START) === 0 && vt.lastSrcExt >= 0) {
      // Keep upstream loss visible to the receiver so it can NACK/PLI instead of decoding a hole.
      const gap = ext - vt.lastSrcExt - 1;
      if (gap > 0 && gap <= MAX_KEPT_GAP) seq = (seq + gap) & 0xffff;
    }
    const payload = ring.payload(ext);
    const h = this.header;
    h.marker = (ring.flags(ext) & SlotFlag.MARKER) !== 0;
    h.payloadType = vt.payloadType;
    h.sequenceNumber = seq;
    h.timestamp = ts;
    h.ssrc = vt.ssrc;
    if (!tr.sendRtp(h, payload, (flags & LIVE) !== 0 ? ring.arrivalOf(ext) : 0)) {
      this.drops.notConnected++;
      return 0;
    }
    vt.sent.record(seq, ext, ts, ring);
    vt.extSeq += ((seq - vt.seq) & 0xffff) + 1;
    vt.seq = (seq + 1) & 0xffff;
    vt.lastSrcExt = ext;
    vt.lastTs = ts;
    vt.sentAny = true;
    vt.packets++;
    vt.bytes += payload.length;
    if (t === VIDEO) this.adapt?.onSentVideo(seq, payload.length, this.o.timers.now());
    this.st.packetsOut++;
    this.st.bytesOut += payload.length + 12;
    // The copies go once the whole keyframe is out: its first copy complete is what decodes.
    if ((flags & TWICE) !== 0) this.copies.push(seq);
    const extra = this.copies.length > 0 && ((flags & TWICE) === 0 || h.marker) ? this.sendCopies(tr) : 0;
    return payload.length + 12 + extra;
  }

  /** Sends the copies of the keyframe packets marked TWICE (see there); returns bytes. */
  private sendCopies(tr: ViewerTransport): number {
    const vt = this.tracks[VIDEO];
    let bytes = 0;
    const tcc = tr.transportCc;
    if (tcc) tcc.copy = true;
    for (const seq of this.copies) {
      if (!vt || !vt.sent.has(seq)) continue;
      const n = vt.sent.resend(tr, this.header, seq, vt.payloadType, vt.ssrc);
      if (n === 0) break;
      bytes += n;
      this.st.retransmits++;
      this.st.retransmitBytes += n;
    }
    this.copies.length = 0;
    if (tcc) tcc.copy = false;
    return bytes;
  }

  /** RFC 4585 §6.2.1 generic NACK: resend the original packet with this viewer's seq and ts. */
  private retransmit(vt: ViewerTrack, seq: number, now: number): void {
    this.st.nackedPackets++;
    const tr = this.transport;
    if (!tr || !vt.sent.has(seq)) {
      this.st.nackMisses++;
      return;
    }
    if (vt.extSeq - ((vt.seq - seq) & 0xffff) < vt.nackFloor) return; // from the stream left behind
    if (now - vt.sent.lastResentAt(seq) < RESEND_GUARD_MS) return;
    const n = vt.sent.resend(tr, this.header, seq, vt.payloadType, vt.ssrc, now);
    if (n === 0) return;
    this.tokens -= n;
    this.st.retransmits++;
    this.st.retransmitBytes += n;
  }

  private onReportBlock(b: ReportBlock, now: number): void {
    const vt = this.trackBySsrc(b.ssrc);
    if (!vt) return;
    if (vt.kind === "video") {
      this.st.fractionLost = b.fractionLost / 256;
      this.st.jitterMs = (b.jitter * 1000) / vt.clockRate;
    }
    let rttMs: number | undefined;
    if (b.lsr !== 0 && b.lsr === vt.lastSrMiddle) {
      // RFC 3550 §6.4.1 A − LSR − DLSR, with A − LSR measured on our own clock: the SR's
      // NTP may be the camera's clock, so only the elapsed time since sending is comparable.
      const rtt = now - vt.lastSrAt - (b.dlsr * 1000) / 65536;
      if (rtt >= 0) this.st.rttMs = rttMs = rtt;
    }
    if (vt.kind === "video" && this.adapt) {
      this.adapt.onReport({ now, highestSeq: b.highestSeq, cumulativeLost: b.cumulativeLost, fractionLost: b.fractionLost / 256, rttMs });
      this.paceToLink(this.adapt, now);
    }
  }

  private trackBySsrc(ssrc: number): ViewerTrack | undefined {
    const v = this.tracks[VIDEO];
    if (v && v.ssrc === ssrc) return v;
    const a = this.tracks[AUDIO];
    if (a && a.ssrc === ssrc) return a;
    return undefined;
  }

  /**
   * Periodic work (the SFU calls it about every 250 ms): the RTCP silence timeout, and
   * RTCP sender reports once a second per track that has sent media (RFC 3550 §6.4.1),
   * mapping the source clock into this viewer's timestamp space for lip sync.
   */
  tick(now: number): void {
    if (this._state !== "connected" || !this.transport) return;
    if (now - this.lastRtcpAt > this.o.rtcpTimeoutMs) {
      void this.close(ViewerCloseReasons.viewerSilent);
      return;
    }
    const given = this.sw.expired(now);
    if (given) {
        given.removeViewer(this);
      this.log.info("source switch given up: no keyframe from the target", { to: given.id });
      this.events.emit("switched", { from: this.src.id, to: given.id, ok: false, reason: "no keyframe in time" });
    }
    if (this.adapt) {
      this.adapt.tick(now);
      this.paceToLink(this.adapt, now);
      if (this.adapt.probing(now)) this.o.pacer.wake(this);
    }
    // Overload: a viewer whose queue overflowed twice in a few seconds cannot be kept up
    // with (its link, or our CPU): step it down rather than drop frame after frame.
    if (this.quality === "full" && now - this.lastOverflowAt < OVERFLOW_WINDOW_MS) this.stepDown("queue overflow", now);
    for (const vt of this.tracks) {
      if (!vt || !vt.sentAny || vt.sourceTrack < 0) continue;
      // RFC 3550 §6.2: ~1 s here (tiny bandwidth), randomised ±25 % by the tick phase.
      if (now - vt.lastSrAt < 1000) continue;
      const clock = this.src.clockAt(vt.sourceTrack, now);
      if (!clock) continue;
      const ntp = ntpFromUnixMs(clock.unixMs);
      const sr = serializeSr({
        ssrc: vt.ssrc,
        ntpSeconds: ntp.seconds,
        ntpFraction: ntp.fraction,
        rtpTimestamp: (clock.ts + vt.tsOffset) >>> 0,
        packetCount: vt.packets >>> 0,
        octetCount: vt.bytes >>> 0,
      });
      const sdes = serializeSdes([{ ssrc: vt.ssrc, items: [{ type: SdesItemType.CNAME, value: this.cname }] }]);
      if (this.transport.sendRtcp(compound([sr, sdes]))) {
        vt.lastSrAt = now;
        vt.lastSrMiddle = ntpMiddle32(ntp.seconds, ntp.fraction);
      }
    }
  }

  /**
   * Past capacity: send this viewer whole keyframes only (video at about one frame per
   * GOP, audio unchanged) for a while. Staying down doubles the next time it happens
   * soon after (up to two minutes), jittered so viewers stepped down together do not
   * come back together.
   */
  stepDown(reason: string, now = this.o.timers.now()): void {
    if (this.quality === "keyframes" || this._state === "closed") return;
    this.holdMs = now - this.holdUntil < STEP_DOWN_MAX_MS ? Math.min(STEP_DOWN_MAX_MS, this.holdMs * 2) : STEP_DOWN_MIN_MS;
    if (this.stepDowns === 0) this.holdMs = STEP_DOWN_MIN_MS;
    this.holdUntil = now + this.holdMs * (0.8 + 0.4 * (this.o.random ?? Math.random)());
    this.stepDowns++;
    this.overflowAt = -Infinity;
    this.lastOverflowAt = -Infinity;
    this.stepUpAtKeyframe = false;
    // Whatever is queued is older than the next keyframe: drop it and restart there.
    const video = this.tracks[VIDEO];
    if (video) {
      this.drops.steppedDown += this.queue.removeTrack(VIDEO);
      video.lastSrcExt = -1;
    }
    this.inKeyframe = false;
    this.setQuality("keyframes", reason);
  }

  /** Stepped down and its hold time is over: may it come back now? (The SFU lets a few back at a time.) */
  canStepUp(now: number): boolean {
    // Held down by network adaptation: it brings the viewer back itself.
    if (this.adapt?.keyframes) return false;
    return this.quality === "keyframes" && !this.stepUpAtKeyframe && now >= this.holdUntil;
  }

  /** Back to every frame, from the next keyframe on (P-frames need the frames before them). */
  requestStepUp(): void {
    if (this.quality === "keyframes") this.stepUpAtKeyframe = true;
  }

  /** An overflow happened within `ms` before `now`. */
  overflowedWithin(now: number, ms: number): boolean {
    return now - this.overflowAt < ms;
  }

  get currentQuality(): ViewerQuality {
    return this.quality;
  }

  private setQuality(q: ViewerQuality, reason: string): void {
    if (this.quality === q) return;
    this.quality = q;
    this.stepUpAtKeyframe = false;
    this.inKeyframe = false;
    if (q === "keyframes") this.log.info("viewer stepped down to keyframes only", { reason, forMs: Math.round(this.holdMs) });
    else this.log.info("viewer stepped back up", { reason });
    this.events.emit("quality", q, reason);
  }

  /**
   * A queueing link: send no faster than it delivers, so what it cannot carry waits (and is
   * dropped, or left behind by a step down) here rather than in a queue on the path.
   */
  private paceToLink(a: ViewerAdaptation, now: number): void {
    const cap = a.pacingCapBps(now);
    this.bytesPerMs = cap === undefined ? this.basePerMs : Math.min(this.basePerMs, cap / 8000);
    this.burstBytes = cap === undefined ? this.o.pacingBurstBytes : Math.min(this.o.pacingBurstBytes, Math.max(MIN_CAPPED_BURST_BYTES, cap / 80));
    this.tokens = Math.min(this.tokens, this.burstBytes);
  }

  /** Caps this viewer's send rate (bits/s), e.g. for a known slow link. Takes effect at once. */
  setPacingRate(bitsPerSecond: number): void {
    if (!(bitsPerSecond > 0)) return;
    this.basePerMs = bitsPerSecond / 8000;
    this.bytesPerMs = Math.min(this.bytesPerMs, this.basePerMs);
  }

  stats(): ViewerStats {
    const tracks: ViewerTrackStats[] = [];
    for (const vt of this.tracks) {
      if (vt) tracks.push({ kind: vt.kind, ssrc: vt.ssrc, payloadType: vt.payloadType, packets: vt.packets, bytes: vt.bytes });
    }
    return {
      id: this.id,
      cameraId: this.cameraId,
      user: this.user,
      state: this._state,
      createdAt: this.createdAt,
      connectMs: this.connectedAt === undefined ? undefined : this.connectedAt - this.createdAt,
      ...this.st,
      drops: { ...this.drops },
      queued: this.queue.length,
      tracks,
      transport: this.transport?.describe?.(),
      quality: this.quality,
      stepDowns: this.stepDowns,
      sourceId: this.src.id,
      estimateBps: this.adapt?.est.estimateBps === undefined ? undefined : Math.round(this.adapt.est.estimateBps),
      deliveredBps: this.adapt && Math.round(this.adapt.est.deliveredBps),
      queueDelayMs: this.adapt && Math.round(this.adapt.est.queueDelayMs),
      probes: this.adapt && { ...this.adapt.probes, bytes: this.adapt.probeBytes },
      adaptive: this.adapt !== undefined,
    };
  }

  /** Ends the viewer: stops media, releases the transport, tells the source. Idempotent. */
  close(reason: ViewerCloseReason = ViewerCloseReasons.closed): Promise<void> {
    if (this.closing) return this.closing;
    this.closedReason = reason;
    this.clearTimer("connectTimer");
    this.clearTimer("disconnectTimer");
    this.setState("closed");
    this.queue.clear();
    this.o.pacer.remove(this);
    this.src.removeViewer(this);
    const pending = this.sw.target;
    if (pending) {
      this.sw.request(this.src, this.o.timers.now());
      pending.removeViewer(this);
    }
    this.attached = false;
    if (isExpectedClose(reason)) this.log.debug("viewer closed", { reason });
    else this.log.info("viewer closed", { reason });
    this.closing = (async () => {
      try {
        await this.transport?.close();
      } catch (err) {
        this.log.debug("transport close failed", { err });
      }
      this.events.emit("closed", reason);
      this.events.removeAllListeners();
    })();
    return this.closing;
  }

  /** Is the viewer receiving fan-out from its source? */
  get isAttached(): boolean {
    return this.attached;
  }

  private setState(s: ViewerState): void {
    if (this._state === s) return;
    if (this._state === "closed") return;
    this._state = s;
    this.events.emit("state", s);
  }

  private clearTimer(which: "connectTimer" | "disconnectTimer"): void {
    const h = this[which];
    if (h !== undefined) this.o.timers.clearTimeout(h);
    this[which] = undefined;
  }
}

/** The payload types of a viewer's video: H.264, and H.265 when it negotiated it (passthrough). */
function videoPayloadTypes(v: { payloadType: number; h265PayloadType?: number | undefined }): Map<CodecName, number> {
  const m = new Map<CodecName, number>([["H264", v.payloadType]]);
  if (v.h265PayloadType !== undefined) m.set("H265", v.h265PayloadType);
  return m;
}

/** Has `src` a cached GOP (keyframe on) on the video track a viewer with these payload types would get? */
function hasCachedGop(src: ViewerSource, pts: ReadonlyMap<CodecName, number>): boolean {
  const t = videoTrackFor(src, pts, true);
  return t >= 0 && src.gop(t) !== undefined;
}

/**
 * The source video track a viewer is sent: the camera's H.265 when both sides have it, else its
 * H.264, else (`negotiatedOnly` false) the first video track, counted as not negotiated.
 */
function videoTrackFor(src: ViewerSource, pts: ReadonlyMap<CodecName, number> | undefined, negotiatedOnly = false): number {
  const hevc = pts?.has("H265") ? src.trackIndexOf("video", "H265") : -1;
  if (hevc >= 0) return hevc;
  const avc = src.trackIndexOf("video", "H264");
  return avc >= 0 || negotiatedOnly ? avc : src.trackIndexOf("video");
}
