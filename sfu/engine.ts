/**
 * One media thread's SFU: sources (one per camera, fed by ingest through MediaSink)
 * and viewers (one werift peer connection each), the shared pacer, and the periodic
 * tick (sender reports, stats). Closing the engine closes every source and viewer.
 *
 * The public `Sfu` (sfu/sfu.ts) runs one engine on the calling thread, or one per
 * media worker thread (sfu/worker.ts) behind the same API.
 */
import { randomBytes } from "node:crypto";
import { monitorEventLoopDelay, type ELDHistogram } from "node:perf_hooks";
import { ClosedError, NotFoundError } from "../config/errors.ts";
import { gridSessionId as toGridSessionId, viewerId as toViewerId, type CameraId, type GridSessionId, type ViewerId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import { DEFAULT_MAX_PAYLOAD } from "./h264/packetizer.ts";
import { LatencyHistogram, type LatencySummary } from "./latency.ts";
import { SendBatch } from "./udp-writer.ts";
import { GridSession } from "./grid-session.ts";
import { planAnswer, planGridAnswer, type Offer } from "./offer.ts";
import { Pacer } from "./pacer.ts";
import { Source, type SourceStats } from "./source.ts";
import type { CodecName } from "./types.ts";
import type { GridSessionStats } from "./api.ts";
import { Viewer, type ViewerStats } from "./viewer.ts";
import { createWeriftPeer, prewarmDtlsCertificate, type IceServer, type WeriftPeer } from "./werift-peer.ts";
import type { IngestStats } from "./worker-protocol.ts";


/** Timers and clock, injectable for tests. Clock is Unix ms (NTP in sender reports derives from it). */
export interface SfuTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  setImmediate(fn: () => void): unknown;
  now(): number;
}

/** Options of one engine (see SfuOptions in sfu/sfu.ts for the documentation of each). */
export interface EngineOptions {
  log: Logger;
  /** Inclusive UDP port range for viewers' ICE. */
  icePortRange: [number, number];
  /** Address viewers' ICE binds ("0.0.0.0" = every interface, loopback excluded). */
  bindAddress: string;
  /** Address announced in host candidates instead of the bound one (1:1 NAT). */
  announcedAddress?: string | undefined;
  /** ICE servers for the SFU's own gathering. Default none (the SFU is the reachable side). */
  iceServers?: () => IceServer[];
  /** Packets kept per track for NACK retransmission. */
  nackHistory: number;
  /** Per-viewer send queue bound, packets; beyond it whole frames are dropped until a keyframe. */
  viewerQueuePackets: number;
  /** Largest GOP the keyframe cache replays, packets. Default ¾ of viewerQueuePackets. */
  gopCachePackets?: number;
  /** Largest GOP the keyframe cache replays, payload bytes. Default 4 MiB. */
  gopCacheBytes?: number;
  /** Per-viewer pacing rate, bits/s. Default 30 Mbit/s (replays a 1 MB GOP in ~0.3 s). */
  pacingBps?: number;
  /** Per-viewer pacing bucket, bytes (goes out at once: a live keyframe is never delayed). Default 256 KiB. */
  pacingBurstBytes?: number;
  /** Largest RTP payload sent, bytes. Default 1200 (fits TURN over IPv6 under a 1280-byte MTU). */
  maxPayload?: number;
  /** Close a viewer not connected this long after its answer, ms. Default 20000. */
  connectTimeoutMs?: number;
  /** Close a viewer whose ICE stays disconnected this long, ms. Default 10000. */
  disconnectTimeoutMs?: number;
  /** Close a connected viewer that sent no RTCP for this long (tab gone without DELETE), ms. Default 15000. */
  rtcpTimeoutMs?: number;
  /** Minimum spacing of cache replays answering one viewer's PLI/FIR, ms. Default 500. */
  keyframeResendMinMs?: number;
  /** RTP spacing given to replayed cached frames, ms (see Viewer.resync). Default 1. */
  replayFrameSpacingMs?: number;
  /** Multi-camera sessions: slots bound before the connection is up start this long after our side of DTLS completes, ms (see GridSession). Default 40. */
  gridStartHoldMs?: number;
  /**
   * Send media through our own SRTP context and a direct socket write once ICE+DTLS are
   * up (sfu/srtp/, sfu/udp-writer.ts). false = werift's SRTP session. Default true.
   */
  ownedSrtp?: boolean;
  /** werift path only: replace its raw SRTP keys with KeyObjects once connected (≈2× cheaper per packet). Default true. */
  cacheSrtpKeyObjects?: boolean;
  /**
   * Time live packets may spend going out straight from an ingest callback per turn of
   * the event loop, ms; beyond it they are queued and paced. 0 = always queue (see
   * sfu/pacer.ts for why that is the default). Default 0.
   */
  directSendBudgetMs?: number;
  timers?: SfuTimers;
  /** Uniform [0, 1) source for viewers' initial RTP sequence numbers and timestamps (tests). Default: crypto. */
  random?: () => number;
  /** Log at debug level inside media workers (their lines cross a thread). Default false. */
  workerDebugLogs?: boolean;
  /** Live video queued longer than this for a viewer is dropped up to the next keyframe, ms. Default 500. */
  maxQueueDelayMs?: number;
  /** How a viewer's network adaptation switches it (a media worker asks the facade). Default: the viewer itself. */
  requestSwitch?: (viewer: ViewerId, source: CameraId, reason: string) => void;
}

/** Event-loop delay of the media thread, ms (perf_hooks.monitorEventLoopDelay). */
export interface EventLoopStats {
  p99: number;
  max: number;
}

/** Sfu.stats(): per-source and per-viewer counters plus the media plane's own measurements. */
export interface SfuStats {
  sources: SourceStats[];
  viewers: ViewerStats[];
  /** Multi-camera sessions (sfu/grid-session.ts), each with its slots. */
  sessions?: GridSessionStats[];
  /**
   * Live packets, ingest (MediaSink.pushRtp) → handed to the socket (SRTP protected and
   * written), per packet per viewer, since start or `resetMeasurements()`. Cache replays
   * and retransmissions are not counted.
   */
  forwardLatencyMs: LatencySummary;
  /** The same, bucket by bucket (for Prometheus histograms). */
  forwardLatency: LatencyHistogram;
  /** Event-loop delay since start or `resetMeasurements()`. */
  eventLoopDelayMs: EventLoopStats;
  /** Per media worker (absent without workers): viewers placed on it, its loop delay and V8 heap. */
  workers?: WorkerStats[];
}

/** One media worker as Sfu.stats() reports it. */
export interface WorkerStats {
  index: number;
  viewers: number;
  eventLoopDelayMs: EventLoopStats;
  /** Its ingest queue: longest fan-out slice (ms) since the last reset, slices that yielded, bytes waiting. */
  ingest: IngestStats;
  heapUsedKb: number;
  heapTotalKb: number;
  externalKb: number;
}

export interface CreateViewerOptions {
  log?: Logger;
  /** Who is watching (for logs and stats). */
  user?: string;
  /** The viewer id to use (a worker's engine receives it from the Sfu facade). Default: random. */
  id?: ViewerId;
  /** ICE servers for this viewer's own gathering (a worker cannot call `iceServers()`). */
  iceServers?: IceServer[];
  /**
   * The camera watched, when the viewer starts on another of its streams' sources
   * (`streamSourceId(camera, stream)`): the viewer's `cameraId`. Default: the source id.
   */
  cameraId?: CameraId;
}

export interface CreateSessionOptions {
  log?: Logger;
  /** Who is watching (for logs and stats). */
  user?: string;
  /** The session id to use (a worker's engine receives it from the Sfu facade). Default: random. */
  id?: GridSessionId;
  /** ICE servers for this session's own gathering. */
  iceServers?: IceServer[];
  /** Most video slots the offer may ask for. */
  maxSlots: number;
}

const defaultTimers: SfuTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  setImmediate: (fn) => setImmediate(fn),
  now: () => Date.now(),
};

/** Least pacing rate of a multi-camera session's slot, bits/s (a 1080p keyframe goes out within a few hundred ms). */
const MIN_SLOT_PACING_BPS = 4_000_000;
/** Least pacing burst of a multi-camera session's slot, bytes. */
const MIN_SLOT_BURST_BYTES = 16 * 1024;

/** Period of the viewer tick (sender reports, timeouts, step-down), ms. */
const TICK_MS = 250;
/** Stepped-down viewers return only after this long without any queue overflow, ms. */
const STEP_UP_QUIET_MS = 2000;
/** Share of the viewers that may step back up per tick. */
const STEP_UP_FRACTION = 0.02;

export class SfuEngine {
  private readonly o: EngineOptions;
  private readonly log: Logger;
  private readonly timers: SfuTimers;
  private readonly sources = new Map<CameraId, Source>();
  private readonly viewers = new Map<ViewerId, Viewer>();
  private readonly sessions = new Map<GridSessionId, GridSession>();
  /** The werift side of each viewer, for trickle ICE. */
  private readonly peers = new Map<ViewerId, Pick<WeriftPeer, "addRemoteCandidate">>();
  private readonly pacer: Pacer;
  private readonly latency = new LatencyHistogram();
  /** This thread's fan-out writes (sfu/udp-writer.ts), recording live packets' latency. */
  private readonly batch = new SendBatch({ latency: this.latency });
  private readonly loopDelay: ELDHistogram;
  private readonly tickHandle: unknown;
  private ticks = 0;
  private closing: Promise<void> | undefined;

  constructor(opts: EngineOptions) {
    this.o = opts;
    this.log = opts.log;
    this.timers = opts.timers ?? defaultTimers;
    const t = this.timers;
    this.pacer = new Pacer(
      {
        setImmediate: (fn) => t.setImmediate(fn),
        setTimeout: (fn, ms) => t.setTimeout(fn, ms),
        clearTimeout: (h) => t.clearTimeout(h),
        now: () => t.now(),
      },
      64,
      1024,
      opts.directSendBudgetMs ?? 0,
    );
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    prewarmDtlsCertificate();
    this.tickHandle = t.setInterval(() => this.tick(), TICK_MS);
    (this.tickHandle as { unref?: () => void }).unref?.();
  }

  /** The source of a camera, created on first use. Throws ClosedError after close. */
  source(id: CameraId): Source {
    if (this.closing) throw new ClosedError("sfu closed");
    let s = this.sources.get(id);
    if (!s) {
      const queue = this.o.viewerQueuePackets;
      s = new Source({
        id,
        log: this.log.child({ camera: id }),
        now: () => this.timers.now(),
        nackHistory: this.o.nackHistory,
        gopCachePackets: this.o.gopCachePackets ?? Math.floor((queue * 3) / 4),
        gopCacheBytes: this.o.gopCacheBytes ?? 4 * 1024 * 1024,
        maxPayload: this.o.maxPayload ?? DEFAULT_MAX_PAYLOAD,
        onClosed: (src) => {
          if (this.sources.get(src.id) === src) this.sources.delete(src.id);
        },
      });
      this.sources.set(id, s);
    }
    return s;
  }

  /** The source of a camera if it exists. */
  findSource(id: CameraId): Source | undefined {
    return this.sources.get(id);
  }

  /**
   * Creates a viewer from a browser's offer and returns the answer (ICE candidates
   * included: WHEP has no server-side trickle). The viewer counts as demand at once;
   * media starts when ICE+DTLS connect, with the cached GOP.
   * The offer was read once by the facade (sfu/offer.ts readOffer).
   * Throws BadInputError (unsupported offer), NotFoundError (no such source),
   * ClosedError (SFU closing), OverloadError (no free ICE port, negotiation timed out).
   */
  async createViewer(
    id: CameraId,
    offer: Offer,
    opts: CreateViewerOptions = {},
  ): Promise<{ viewer: Viewer; answerSdp: string }> {
    if (this.closing) throw new ClosedError("sfu closed");
    const source = this.sources.get(id);
    if (!source) throw new NotFoundError(`no source for camera ${id}`);
    const plan = planAnswer(offer.parsed, source.currentTracks());

    const vid = opts.id ?? toViewerId(randomBytes(12).toString("base64url"));
    const log = (opts.log ?? this.log).child({ camera: opts.cameraId ?? id, viewer: vid });
    const viewer = this.newViewer(source, vid, log, opts.user, undefined, opts.cameraId ?? id);
    // Register first: a viewer is demand from the moment it asks (on-demand pulls start now).
    this.viewers.set(vid, viewer);
    source.addViewer(viewer);
    // Forget it as soon as it starts closing ("state" closed is synchronous; "closed" follows the transport).
    viewer.on("state", (st) => {
      if (st === "closed") {
        this.viewers.delete(vid);
        this.peers.delete(vid);
      }
    });

    let ready = false;
    const early: Array<() => void> = [];
    try {
      const peer = await createWeriftPeer({
        offer,
        plan,
        streamId: `gatehouse-${id}`,
        ...this.peerOptions(opts.iceServers, log),
        handlers: {
          // Events before bindTransport (none expected: ICE starts after the answer) are replayed in order.
          onRtcp: (b) => (ready ? viewer.onRtcp(b) : early.push(() => viewer.onRtcp(b))),
          onState: (s, d) => (ready ? viewer.onTransportState(s, d) : early.push(() => viewer.onTransportState(s, d))),
        },
      });
      const audioPts = new Map<CodecName, number>();
      for (const c of plan.audio?.choices ?? []) audioPts.set(c.codec, c.payloadType);
      viewer.bindTransport(peer.transport, {
        cname: peer.cname,
        video:
          plan.video && peer.videoSsrc !== undefined
            ? { ssrc: peer.videoSsrc, payloadType: plan.video.choice.payloadType, h265PayloadType: plan.video.h265?.payloadType }
            : undefined,
        audio: plan.audio && peer.audioSsrc !== undefined ? { ssrc: peer.audioSsrc, payloadTypes: audioPts } : undefined,
      });
      if (viewer.state !== "closed") this.peers.set(vid, peer);
      ready = true;
      for (const fn of early) fn();
      if (this.closing || viewer.state === "closed") {
        await viewer.close(this.closing ? "sfu closing" : (viewer.reason ?? "closed"));
        throw new ClosedError("viewer closed during negotiation");
      }
      log.info("viewer created", {
        user: opts.user,
        video: plan.video ? `H264/${plan.video.choice.payloadType} ${plan.video.choice.profileLevelId}${plan.video.h265 ? ` H265/${plan.video.h265.payloadType}` : ""}` : "none",
        audio: plan.audio?.choices.map((c) => `${c.codec}/${c.payloadType}`).join(",") ?? "none",
      });
      return { viewer, answerSdp: peer.answerSdp };
    } catch (err) {
      await viewer.close("negotiation failed");
      throw err;
    }
  }

  /**
   * Creates a multi-camera session (sfu/grid-session.ts) from a browser's offer with one
   * receiving video section per slot (at most `maxSlots`) and at most one audio section;
   * returns the answer. Its slots are bound to cameras afterwards (GridSession.bind). The
   * session holds one ICE port like a viewer. Throws as createViewer does.
   */
  async createSession(offer: Offer, opts: CreateSessionOptions): Promise<{ session: GridSession; answerSdp: string }> {
    if (this.closing) throw new ClosedError("sfu closed");
    const plan = planGridAnswer(offer.parsed, opts.maxSlots);
    const sid = opts.id ?? toGridSessionId(randomBytes(12).toString("base64url"));
    const log = (opts.log ?? this.log).child({ session: sid });
    const session = new GridSession({
      id: sid,
      user: opts.user,
      log,
      plan,
      timers: this.timers,
      connectTimeoutMs: this.o.connectTimeoutMs ?? 20_000,
      disconnectTimeoutMs: this.o.disconnectTimeoutMs ?? 10_000,
      startHoldMs: this.o.gridStartHoldMs ?? 40,
      source: (camera) => this.sources.get(camera),
      // The slots share one connection (one socket at the browser): each gets its share of a
      // viewer's pacing rate and burst, so a page turn (every slot replaying its camera's GOP at
      // once) does not burst N times as much into it.
      newViewer: (source, id, vlog) =>
        this.newViewer(source, toViewerId(id), vlog, opts.user, {
          pacingBps: Math.max(MIN_SLOT_PACING_BPS, Math.floor((this.o.pacingBps ?? 30_000_000) / plan.videoSlots.length)),
          pacingBurstBytes: Math.max(MIN_SLOT_BURST_BYTES, Math.floor((this.o.pacingBurstBytes ?? 256 * 1024) / plan.videoSlots.length)),
        }),
    });
    this.sessions.set(sid, session);
    session.on("state", (st) => {
      if (st === "closed") {
        this.sessions.delete(sid);
      }
    });
    let ready = false;
    const early: Array<() => void> = [];
    try {
      const peer = await createWeriftPeer({
        offer,
        plan,
        streamId: `gatehouse-grid-${sid}`,
        ...this.peerOptions(opts.iceServers, log),
        handlers: {
          onRtcp: (b) => (ready ? session.onRtcp(b) : early.push(() => session.onRtcp(b))),
          onState: (s, d) => (ready ? session.onTransportState(s, d) : early.push(() => session.onTransportState(s, d))),
        },
      });
      session.attachPeer(peer);
      ready = true;
      for (const fn of early) fn();
      if (this.closing || session.state === "closed") {
        await session.close(this.closing ? "sfu closing" : (session.reason ?? "closed"));
        throw new ClosedError("session closed during negotiation");
      }
      log.info("session created", { user: opts.user, slots: peer.slots.length, video: `H264/${plan.video!.choice.payloadType}` });
      return { session, answerSdp: peer.answerSdp };
    } catch (err) {
      await session.close("negotiation failed");
      throw err;
    }
  }

  /** A multi-camera session by id, while it lives. */
  session(id: GridSessionId): GridSession | undefined {
    return this.sessions.get(id);
  }

  /** All live multi-camera sessions. */
  sessionList(): GridSession[] {
    return [...this.sessions.values()];
  }

  /** What every peer of this engine is created with. */
  private peerOptions(iceServers: IceServer[] | undefined, log: Logger) {
    return {
      icePortRange: this.o.icePortRange,
      bindAddress: this.o.bindAddress,
      announcedAddress: this.o.announcedAddress,
      iceServers: iceServers ?? this.o.iceServers?.() ?? [],
      ownedSrtp: this.o.ownedSrtp ?? true,
      sendBatch: this.batch,
      latency: this.latency,
      cacheKeyObjects: this.o.cacheSrtpKeyObjects ?? true,
      log,
    };
  }

  /** A viewer of `source` with this engine's options (not yet registered or bound). */
  private newViewer(
    source: Source,
    vid: ViewerId,
    log: Logger,
    user: string | undefined,
    pacing?: { pacingBps: number; pacingBurstBytes: number },
    camera: CameraId = source.id,
  ): Viewer {
    return new Viewer({
      id: vid,
      source,
      cameraId: camera,
      findSource: (sid) => (this.closing ? undefined : this.sources.get(sid)),
      requestSwitch: this.o.requestSwitch ? (sid, reason) => this.o.requestSwitch!(vid, sid, reason) : undefined,
      log,
      user,
      pacer: this.pacer,
      timers: this.timers,
      queuePackets: this.o.viewerQueuePackets,
      nackHistory: this.o.nackHistory,
      pacingBps: pacing?.pacingBps ?? this.o.pacingBps ?? 30_000_000,
      pacingBurstBytes: pacing?.pacingBurstBytes ?? this.o.pacingBurstBytes ?? 256 * 1024,
      connectTimeoutMs: this.o.connectTimeoutMs ?? 20_000,
      disconnectTimeoutMs: this.o.disconnectTimeoutMs ?? 10_000,
      rtcpTimeoutMs: this.o.rtcpTimeoutMs ?? 15_000,
      keyframeResendMinMs: this.o.keyframeResendMinMs ?? 500,
      replayFrameSpacingMs: this.o.replayFrameSpacingMs ?? 1,
      random: this.o.random,
      maxQueueDelayMs: this.o.maxQueueDelayMs ?? 500,
    });
  }

  /** A viewer by id, while it lives. */
  viewer(id: ViewerId): Viewer | undefined {
    return this.viewers.get(id);
  }

  /** All live viewers (for the web UI's stats). */
  viewerList(): Viewer[] {
    return [...this.viewers.values()];
  }

  /** All sources. */
  sourceList(): Source[] {
    return [...this.sources.values()];
  }

  /** Closes and forgets a source without viewers (Sfu.releaseSource). */
  releaseSource(id: CameraId): boolean {
    const s = this.sources.get(id);
    if (!s || s.viewerCount > 0) return false;
    this.sources.delete(id);
    void s.close();
    return true;
  }

  /** Everything the web UI, /metrics and the benchmark read: per source and per viewer counters, latency, loop delay. */
  stats(): SfuStats {
    return {
      sources: [...this.sources.values()].map((s) => s.stats()),
      viewers: [...this.viewers.values()].map((v) => v.stats()),
      sessions: [...this.sessions.values()].map((x) => x.stats()),
      forwardLatencyMs: this.latency.summary(),
      forwardLatency: this.latency,
      eventLoopDelayMs: this.loopStats(),
    };
  }

  /** Longest drain pass of the pacer since start or the last reset, ms. */
  pacerPassMaxMs(): number {
    return this.pacer.passMaxMs;
  }

  /** This thread's event-loop delay since start or the last reset, ms. */
  loopStats(): EventLoopStats {
    return {
      p99: Math.round(this.loopDelay.percentile(99) / 1e4) / 100,
      max: Math.round(this.loopDelay.max / 1e4) / 100,
    };
  }

  /** The forwarding-latency histogram (a worker sends its raw counts to the facade). */
  latencyHistogram(): LatencyHistogram {
    return this.latency;
  }

  /** Starts a new measurement window for `forwardLatencyMs` and `eventLoopDelayMs`. */
  resetMeasurements(): void {
    this.latency.reset();
    this.loopDelay.reset();
    this.pacer.resetMeasurements();
  }

  /** Adds a client's trickled ICE candidate (WHEP PATCH), already checked by the facade (sfu/candidates.ts). */
  async addIceCandidate(id: ViewerId, candidate: string, mid: string): Promise<void> {
    const peer = this.peers.get(id);
    if (!peer) throw new NotFoundError("no such viewer");
    await peer.addRemoteCandidate(candidate, mid);
  }

  private tick(): void {
    const now = this.timers.now();
    let healthy = true;
    let count = 0;
    for (const v of this.allViewers()) {
      count++;
      v.tick(now);
      if (v.overflowedWithin(now, STEP_UP_QUIET_MS)) healthy = false;
    }
    // Stepped-down viewers come back a few at a time, and only while no queue overflows:
    // all at once would bring back the overload that sent them down.
    if (healthy) {
      let ups = Math.max(1, Math.ceil(count * STEP_UP_FRACTION));
      for (const v of this.allViewers()) {
        if (ups === 0) break;
        if (v.canStepUp(now)) {
          v.requestStepUp();
          ups--;
        }
      }
    }
    if (++this.ticks % 4 === 0) for (const s of this.sources.values()) s.emitStats();
  }

  /** One-camera viewers and the bound slots of multi-camera sessions (a copy: ticking may close some). */
  private allViewers(): Viewer[] {
    const all = [...this.viewers.values()];
    for (const s of this.sessions.values()) for (const v of s.viewers()) all.push(v);
    return all;
  }

  /** Workers of this engine: none, it runs on the calling thread. */
  get workerCount(): number {
    return 0;
  }

  /** Stats are always current on the calling thread. */
  async refreshStats(): Promise<void> {}

  /** Closes every source and viewer; later calls return the same promise. */
  close(reason = "sfu closing"): Promise<void> {
    this.closing ??= (async () => {
      this.timers.clearInterval(this.tickHandle);
      this.log.info("sfu closing", { reason });
      await Promise.all([...this.sources.values()].map((s) => s.close("sfu closing")));
      await Promise.all([...this.viewers.values()].map((v) => v.close("sfu closing")));
      await Promise.all([...this.sessions.values()].map((x) => x.close("sfu closing")));
      this.pacer.close();
      this.loopDelay.disable();
      this.sources.clear();
      this.viewers.clear();
      this.sessions.clear();
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close("disposed");
  }
}
