/**
 * Media in worker threads behind the Sfu API: the main thread keeps signaling (offers,
 * answers, viewer lifecycle) and ingest; each worker runs an SfuEngine with the werift
 * peers, SRTP and sockets of the viewers placed on it.
 *
 * Placement: a new viewer goes to the worker with the fewest viewers, whatever its
 * camera, so one busy camera uses every core. Every worker therefore holds a replica of
 * every camera's source, fed the same ingest: ingest is a few hundred packets a second
 * per camera, fan-out is that times the viewers, so the replicas cost little and each
 * worker has a warm keyframe cache for its next viewer.
 *
 * Ingest: packets pushed into a source proxy during one callback (one TCP read of an
 * RTSP connection, typically a whole frame) are batched into one buffer and posted to
 * every worker when the callback ends (a microtask), with the main thread's arrival time
 * per packet so forwarding latency counts the hop between threads.
 *
 * Each worker gets its own slice of the ICE port range (werift probes ports one
 * negotiation at a time per thread; disjoint slices keep threads from colliding).
 */
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { monitorEventLoopDelay, type ELDHistogram } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { ClosedError, NotFoundError } from "../config/errors.ts";
import { SafeEmitter } from "../config/events.ts";
import { viewerId as toViewerId, type CameraId, type ViewerId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import type {
  SourceDropReason,
  SourceEvents,
  SourceHandle,
  SourceStats,
  SwitchInfo,
  ViewerDropReason,
  ViewerEvents,
  ViewerHandle,
  ViewerQuality,
  ViewerState,
  ViewerStats,
} from "./api.ts";
import type { CreateViewerOptions, EngineOptions, SfuStats } from "./engine.ts";
import { LatencyHistogram } from "./latency.ts";
import { nativeStatus } from "./native/index.ts";
import { planAnswer, type Offer } from "./offer.ts";
import type { PacketRing } from "./ring.ts";
import type { MediaSink, TrackSpec } from "./types.ts";
import {
  encodeRecord,
  errorFromWire,
  MAX_RECORD_PAYLOAD,
  RECORD_HEADER,
  RecordKind,
  type FromWorker,
  type ToWorker,
  type WorkerInit,
  type WorkerSnapshot,
} from "./worker-protocol.ts";

/** Ingest batch buffer, bytes (a keyframe's worth of 1200-byte packets). */
const BATCH_BYTES = 256 * 1024;
/** A worker that has not exited this long after `close` is terminated (and reported). */
const EXIT_TIMEOUT_MS = 5000;

export interface WorkerPoolOptions extends EngineOptions {
  /** Worker threads; 0 = one per core (os.availableParallelism()). */
  workers: number;
  /**
   * V8 young-generation limit of each media worker, MiB. Per-packet garbage (node:crypto
   * output buffers) makes V8 grow the young generation to its maximum, which costs tens of
   * MiB of RSS per thread; a small one costs ~2 % more CPU in scavenges. Default 8.
   */
  workerYoungGenerationMb?: number | undefined;
}

/** How a pool's workers ended (tests check that they all exited by themselves). */
export interface PoolExit {
  index: number;
  /** True when the thread ended on its own after close; false when it had to be terminated. */
  clean: boolean;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/** One worker thread and what the facade knows of it. */
class MediaWorker {
  readonly index: number;
  readonly worker: Worker;
  readonly exited: Promise<number>;
  viewers = 0;
  snapshot: WorkerSnapshot | undefined;
  viewerStats = new Map<string, ViewerStats>();
  sourceStats = new Map<string, SourceStats>();
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private gone = false;

  constructor(index: number, init: WorkerInit, youngMb: number, onMessage: (w: MediaWorker, m: FromWorker) => void) {
    this.index = index;
    this.worker = new Worker(new URL("./worker.ts", import.meta.url), {
      workerData: init,
      name: `gatehouse-media-${index}`,
      resourceLimits: { maxYoungGenerationSizeMb: youngMb },
    });
    this.worker.on("message", (m: FromWorker) => {
      if (m.t === "reply") {
        const p = this.pending.get(m.req);
        if (!p) return;
        this.pending.delete(m.req);
        if (m.ok) p.resolve(m.value);
        else p.reject(errorFromWire(m.error));
        return;
      }
      if (m.t === "snapshot") this.setSnapshot(m);
      onMessage(this, m);
    });
    this.exited = new Promise((resolve) => {
      this.worker.once("exit", (code) => {
        this.gone = true;
        for (const p of this.pending.values()) p.reject(new ClosedError("media worker exited"));
        this.pending.clear();
        resolve(code);
      });
    });
  }

  post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (this.gone) return;
    this.worker.postMessage(m, transfer);
  }

  /** Sends a request (its `req` is filled in) and resolves with the worker's answer. */
  call<T>(m: ToWorker & { req: number }): Promise<T> {
    if (this.gone) return Promise.reject(new ClosedError("media worker exited"));
    const req = this.nextReq++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(req, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...m, req });
    });
  }

  setSnapshot(s: WorkerSnapshot): void {
    this.snapshot = s;
    this.viewerStats = new Map(s.viewers.map((v) => [v.id, v]));
    this.sourceStats = new Map(s.sources.map((x) => [x.id, x]));
  }
}

/** Inclusive sub-ranges of `range`, one per worker. */
export function splitPortRange(range: [number, number], n: number): [number, number][] {
  const [lo, hi] = range;
  const size = Math.floor((hi - lo + 1) / n);
  if (size < 1) throw new RangeError(`ICE port range ${lo}-${hi} is too small for ${n} media workers`);
  return Array.from({ length: n }, (_, i) => [lo + i * size, i === n - 1 ? hi : lo + (i + 1) * size - 1] as [number, number]);
}

export class WorkerPool {
  readonly workerCount: number;
  private readonly o: WorkerPoolOptions;
  private readonly log: Logger;
  private readonly workers: MediaWorker[] = [];
  private readonly sources = new Map<CameraId, SourceProxy>();
  private readonly viewers = new Map<ViewerId, ViewerProxy>();
  /** Viewers closed locally whose worker has not confirmed yet. */
  private readonly closingViewers = new Map<string, ViewerProxy>();
  private readonly loopDelay: ELDHistogram;
  private closing: Promise<PoolExit[]> | undefined;
  private readonly inits: WorkerInit[];

  constructor(o: WorkerPoolOptions) {
    this.o = o;
    this.log = o.log;
    const n = o.workers > 0 ? o.workers : availableParallelism();
    this.workerCount = n;
    const ranges = splitPortRange(o.icePortRange, n);
    this.inits = ranges.map((icePortRange, index) => ({
      index,
      primary: index === 0,
      debugLogs: o.workerDebugLogs ?? false,
      options: {
        icePortRange,
        bindAddress: o.bindAddress,
        announcedAddress: o.announcedAddress,
        nackHistory: o.nackHistory,
        viewerQueuePackets: o.viewerQueuePackets,
        gopCachePackets: o.gopCachePackets,
        gopCacheBytes: o.gopCacheBytes,
        pacingBps: o.pacingBps,
        pacingBurstBytes: o.pacingBurstBytes,
        maxPayload: o.maxPayload,
        connectTimeoutMs: o.connectTimeoutMs,
        disconnectTimeoutMs: o.disconnectTimeoutMs,
        rtcpTimeoutMs: o.rtcpTimeoutMs,
        keyframeResendMinMs: o.keyframeResendMinMs,
        replayFrameSpacingMs: o.replayFrameSpacingMs,
        ownedSrtp: o.ownedSrtp,
        cacheSrtpKeyObjects: o.cacheSrtpKeyObjects,
        directSendBudgetMs: o.directSendBudgetMs,
        maxQueueDelayMs: o.maxQueueDelayMs,
      },
    }));
    for (const init of this.inits) this.workers.push(this.spawn(init));
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    const native = nativeStatus();
    this.log.info("media workers started", {
      workers: n,
      portRanges: ranges.map((r) => r.join("-")).join(","),
      nativeFastPath: native.enabled ? "on" : `off: ${native.reason}`,
    });
  }

  private spawn(init: WorkerInit): MediaWorker {
    const w = new MediaWorker(init.index, init, this.o.workerYoungGenerationMb ?? 8, (mw, m) => this.onMessage(mw, m));
    w.worker.on("error", (err) => this.log.error("media worker failed", { worker: init.index, err }));
    void w.exited.then((code) => this.onExit(w, code));
    return w;
  }

  /** A worker ended without being asked: its viewers end, a fresh worker takes its place. */
  private onExit(w: MediaWorker, code: number): void {
    if (this.closing || this.workers[w.index] !== w) return;
    this.log.error("media worker exited unexpectedly; restarting it", { worker: w.index, code });
    for (const v of [...this.viewers.values()]) if (v.worker === w) v.remoteClosed("media worker failed");
    const fresh = this.spawn(this.inits[w.index]!);
    this.workers[w.index] = fresh;
    for (const s of this.sources.values()) {
      const tracks = s.currentTracks();
      if (tracks) fresh.post({ t: "tracks", cam: s.id, tracks: [...tracks] });
    }
  }

  private onMessage(w: MediaWorker, m: FromWorker): void {
    switch (m.t) {
      case "viewerState": {
        const v = this.viewers.get(m.id as ViewerId);
        if (v?.worker === w) v.remoteState(m.state);
        break;
      }
      case "viewerClosed": {
        const v = this.viewers.get(m.id as ViewerId);
        if (v?.worker === w) v.remoteClosed(m.reason);
        else this.closingViewers.get(m.id)?.remoteClosed(m.reason);
        break;
      }
      case "viewerQuality": {
        const v = this.viewers.get(m.id as ViewerId);
        if (v?.worker === w) v.remoteQuality(m.quality, m.reason);
        break;
      }
      case "viewerSwitched": {
        const v = this.viewers.get(m.id as ViewerId);
        if (v?.worker === w) v.remoteSwitched(m.info);
        break;
      }
      case "keyframe":
        this.sources.get(m.cam as CameraId)?.emitKeyframe(m.info);
        break;
      case "snapshot":
        if (w.index === 0) for (const s of this.sources.values()) s.emitStatsIfWatched();
        break;
      case "log":
        this.log[m.level](m.msg, m.fields);
        break;
      default:
        break;
    }
  }

  /** Sends a message to every worker; with `data`, each gets its own copy of its first `length` bytes, transferred. */
  broadcast(m: ToWorker, data?: { buffer: ArrayBuffer; length: number }): void {
    for (const w of this.workers) {
      if (!data || m.t !== "media") {
        w.post(m);
        continue;
      }
      const ab = data.buffer.slice(0, data.length);
      w.post({ ...m, data: new Uint8Array(ab) }, [ab]);
    }
  }

  // ---- Sfu API ----------------------------------------------------------------

  source(id: CameraId): SourceHandle {
    if (this.closing) throw new ClosedError("sfu closed");
    let s = this.sources.get(id);
    if (!s) {
      s = new SourceProxy(id, this);
      this.sources.set(id, s);
    }
    return s;
  }

  findSource(id: CameraId): SourceHandle | undefined {
    return this.sources.get(id);
  }

  sourceList(): SourceHandle[] {
    return [...this.sources.values()];
  }

  viewer(id: ViewerId): ViewerHandle | undefined {
    return this.viewers.get(id);
  }

  viewerList(): ViewerHandle[] {
    return [...this.viewers.values()];
  }

  async createViewer(id: CameraId, offer: Offer, opts: CreateViewerOptions = {}): Promise<{ viewer: ViewerHandle; answerSdp: string }> {
    if (this.closing) throw new ClosedError("sfu closed");
    const source = this.sources.get(id);
    if (!source) throw new NotFoundError(`no source for camera ${id}`);
    // Bad or unsupported offers fail here, before they count as demand (as on one thread).
    planAnswer(offer.parsed, source.currentTracks());
    const w = this.leastLoaded();
    const vid = toViewerId(randomBytes(12).toString("base64url"));
    const v = new ViewerProxy(vid, source, w, opts.user, this, opts.cameraId);
    // A viewer is demand from the moment it asks (on-demand pulls start now).
    this.viewers.set(vid, v);
    w.viewers++;
    source.addViewer();
    try {
      const r = await w.call<{ answerSdp: string }>({
        t: "createViewer",
        req: 0,
        cam: id,
        id: vid,
        offer,
        user: opts.user,
        iceServers: opts.iceServers ?? this.o.iceServers?.() ?? [],
        camera: opts.cameraId,
      });
      if (v.state === "closed") throw new ClosedError("viewer closed during negotiation");
      return { viewer: v, answerSdp: r.answerSdp };
    } catch (err) {
      v.remoteClosed("negotiation failed");
      throw err;
    }
  }

  async addIceCandidate(id: ViewerId, candidate: string, mid: string): Promise<void> {
    const v = this.viewers.get(id);
    if (!v) throw new NotFoundError("no such viewer");
    await v.worker.call({ t: "candidate", req: 0, id, candidate, mid });
  }

  stats(): SfuStats {
    const latency = new LatencyHistogram();
    let loopP99 = this.loopDelay.percentile(99) / 1e6;
    let loopMax = this.loopDelay.max / 1e6;
    for (const w of this.workers) {
      const s = w.snapshot;
      if (!s) continue;
      latency.merge(LatencyHistogram.fromJSON(s.latency));
      loopP99 = Math.max(loopP99, s.loop.p99);
      loopMax = Math.max(loopMax, s.loop.max);
    }
    return {
      sources: [...this.sources.values()].map((s) => s.stats()),
      viewers: [...this.viewers.values()].map((v) => v.stats()),
      forwardLatencyMs: latency.summary(),
      forwardLatency: latency,
      eventLoopDelayMs: { p99: Math.round(loopP99 * 100) / 100, max: Math.round(loopMax * 100) / 100 },
      workers: this.workers.map((w) => ({
        index: w.index,
        viewers: w.viewers,
        eventLoopDelayMs: w.snapshot?.loop ?? { p99: 0, max: 0 },
        ingest: w.snapshot?.ingest ?? { sliceMaxMs: 0, pacerPassMaxMs: 0, yields: 0, backlogBytes: 0 },
        heapUsedKb: w.snapshot?.heap.usedKb ?? 0,
        heapTotalKb: w.snapshot?.heap.totalKb ?? 0,
        externalKb: w.snapshot?.heap.externalKb ?? 0,
      })),
    };
  }

  /** Fresh snapshots from every worker. */
  async refreshStats(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        try {
          w.setSnapshot(await w.call<WorkerSnapshot>({ t: "snapshot", req: 0 }));
        } catch {
          // an exiting worker keeps its last snapshot
        }
      }),
    );
  }

  resetMeasurements(): void {
    this.loopDelay.reset();
    for (const w of this.workers) {
      w.post({ t: "reset" });
      if (w.snapshot) w.snapshot = { ...w.snapshot, latency: new LatencyHistogram().toJSON(), loop: { p99: 0, max: 0 } };
    }
  }

  /** The primary worker's stats of a camera's source replica. */
  primarySourceStats(id: CameraId): SourceStats | undefined {
    return this.workers[0]?.sourceStats.get(id);
  }

  /** Worker the next viewer goes to. */
  private leastLoaded(): MediaWorker {
    let best = this.workers[0]!;
    for (const w of this.workers) if (w.viewers < best.viewers) best = w;
    return best;
  }

  /** Called by a viewer proxy as it closes (locally or remotely). */
  forget(v: ViewerProxy): void {
    if (this.viewers.get(v.id) !== v) return;
    this.viewers.delete(v.id);
    v.worker.viewers--;
    v.releaseSources();
  }

  /** Asks the worker to close a viewer; resolves when it has. */
  closeRemote(v: ViewerProxy, reason: string): Promise<void> {
    this.closingViewers.set(v.id, v);
    return v.worker
      .call<void>({ t: "closeViewer", req: 0, id: v.id, reason })
      .catch(() => {})
      .finally(() => this.closingViewers.delete(v.id));
  }

  /**
   * Closes every viewer and worker. Resolves with how each worker ended: on its own
   * (clean) or terminated after EXIT_TIMEOUT_MS (something kept it alive).
   */
  close(reason = "sfu closing"): Promise<PoolExit[]> {
    this.closing ??= (async () => {
      this.log.info("sfu closing", { reason });
      for (const s of this.sources.values()) s.flush();
      for (const v of [...this.viewers.values()]) v.localClosing("sfu closing");
      const exits = await Promise.all(
        this.workers.map(async (w) => {
          await w.call({ t: "close", req: 0, reason: "sfu closing" }).catch(() => {});
          let timer: NodeJS.Timeout | undefined;
          const clean = await Promise.race([
            w.exited.then(() => true),
            new Promise<boolean>((r) => (timer = setTimeout(() => r(false), EXIT_TIMEOUT_MS))),
          ]);
          clearTimeout(timer);
          if (!clean) {
            this.log.warn("media worker did not exit after close; terminating it", { worker: w.index });
            await w.worker.terminate();
          }
          return { index: w.index, clean };
        }),
      );
      for (const v of [...this.viewers.values()]) v.remoteClosed("sfu closing");
      this.loopDelay.disable();
      this.sources.clear();
      return exits;
    })();
    return this.closing;
  }
}

// ---- proxies --------------------------------------------------------------------

const NO_DROPS: Record<SourceDropReason, number> = {
  malformed: 0,
  payloadType: 0,
  duplicate: 0,
  late: 0,
  awaitingKeyframe: 0,
  unsupportedPayload: 0,
  oversize: 0,
  noTracks: 0,
  backlog: 0,
};

/** A camera's source as the main thread sees it: ingest is batched to every worker. */
class SourceProxy implements SourceHandle, MediaSink {
  readonly id: CameraId;
  private readonly pool: WorkerPool;
  private readonly events: SafeEmitter<SourceEvents>;
  private tracks: readonly TrackSpec[] | undefined;
  private count = 0;
  private readonly batch: ArrayBuffer;
  private readonly view: Buffer;
  private used = 0;
  private scheduled = false;
  private burstAt = 0;
  private packetsIn = 0;
  private bytesIn = 0;
  private lastPacketAt: number | undefined;
  private readonly flushBound = (): void => this.flush();

  constructor(id: CameraId, pool: WorkerPool) {
    this.id = id;
    this.pool = pool;
    this.events = new SafeEmitter<SourceEvents>(() => {});
    this.batch = new ArrayBuffer(BATCH_BYTES);
    this.view = Buffer.from(this.batch);
  }

  on<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  once<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void {
    return this.events.once(event, fn);
  }

  off<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): void {
    this.events.off(event, fn);
  }

  // ---- MediaSink: in order, to every worker ----

  setTracks(tracks: readonly TrackSpec[]): void {
    this.flush();
    this.tracks = Object.freeze(tracks.map((t) => Object.freeze({ ...t })));
    this.pool.broadcast({ t: "tracks", cam: this.id, tracks: [...this.tracks] });
  }

  pushRtp(track: number, packet: Buffer): void {
    this.packetsIn++;
    this.bytesIn += packet.length;
    this.lastPacketAt = Date.now();
    this.append(RecordKind.RTP, track, packet);
  }

  pushRtcp(track: number, packet: Buffer): void {
    this.append(RecordKind.RTCP, track, packet);
  }

  upstreamDown(reason: string): void {
    this.flush();
    this.pool.broadcast({ t: "down", cam: this.id, reason });
  }

  private append(kind: number, track: number, packet: Buffer): void {
    if (packet.length > MAX_RECORD_PAYLOAD || track < 0 || track > 255) return; // not RTP anyone sends
    if (!this.scheduled) {
      // The first packet of a burst (see Source.burstArrival): its arrival stands for the burst's.
      this.scheduled = true;
      this.burstAt = performance.timeOrigin + performance.now();
      queueMicrotask(this.flushBound);
    }
    if (this.used + RECORD_HEADER + packet.length > BATCH_BYTES) this.post();
    // Epoch time with sub-ms precision: the worker converts it to its own clock.
    this.used = encodeRecord(this.view, this.used, kind, track, packet, this.burstAt);
  }

  /** Posts the batched records (once the current callback is done, or before an ordered message). */
  flush(): void {
    this.scheduled = false;
    this.post();
  }

  private post(): void {
    if (this.used === 0) return;
    const length = this.used;
    this.used = 0;
    // Each worker gets an exact-size copy by transfer; the batch buffer stays here for the next burst.
    this.pool.broadcast({ t: "media", cam: this.id, data: new Uint8Array(0) }, { buffer: this.batch, length });
  }

  // ---- the rest of SourceHandle ----

  currentTracks(): readonly TrackSpec[] | undefined {
    return this.tracks;
  }

  trackIndexOf(kind: "video" | "audio"): number {
    return this.tracks?.findIndex((t) => t.kind === kind) ?? -1;
  }

  get viewerCount(): number {
    return this.count;
  }

  /** Media lives in the workers: no history on this thread. */
  ring(_track: number): PacketRing | undefined {
    return undefined;
  }

  addViewer(): void {
    this.count++;
    this.events.emit("viewers", this.count);
  }

  removeViewer(): void {
    this.count--;
    this.events.emit("viewers", this.count);
  }

  emitKeyframe(info: { track: number; packets: number }): void {
    this.events.emit("keyframe", info);
  }

  emitStatsIfWatched(): void {
    if (this.events.listenerCount("stats") > 0) this.events.emit("stats", this.stats());
  }

  /** The primary worker's replica (ingest is the same everywhere), with this thread's counts. */
  stats(): SourceStats {
    const replica = this.pool.primarySourceStats(this.id);
    return {
      id: this.id,
      packetsIn: this.packetsIn,
      bytesIn: this.bytesIn,
      dropped: replica ? { ...replica.dropped } : { ...NO_DROPS },
      viewers: this.count,
      tracks: replica?.tracks ?? [],
      hasKeyframe: replica?.hasKeyframe ?? false,
      lastPacketAt: this.lastPacketAt,
      sessions: replica?.sessions ?? 0,
      upstreamUp: replica?.upstreamUp ?? this.tracks !== undefined,
    };
  }
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

/** A viewer whose media lives in `worker`. */
class ViewerProxy implements ViewerHandle {
  readonly id: ViewerId;
  readonly cameraId: CameraId;
  readonly user: string | undefined;
  /** The source media comes from, and the one a pending switch goes to: both count this viewer as demand. */
  private source: SourceProxy;
  private pending: SourceProxy | undefined;
  readonly worker: MediaWorker;
  private readonly pool: WorkerPool;
  private readonly events: SafeEmitter<ViewerEvents>;
  private readonly createdAt = Date.now();
  private _state: ViewerState = "connecting";
  private closedReason: string | undefined;
  private closing: Promise<void> | undefined;
  private closedEmitted = false;
  private resolveClosed: () => void = () => {};

  constructor(id: ViewerId, source: SourceProxy, worker: MediaWorker, user: string | undefined, pool: WorkerPool, camera?: CameraId) {
    this.id = id;
    this.cameraId = camera ?? source.id;
    this.source = source;
    this.worker = worker;
    this.user = user;
    this.pool = pool;
    this.events = new SafeEmitter<ViewerEvents>(() => {});
  }

  get state(): ViewerState {
    return this._state;
  }

  get reason(): string | undefined {
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
    const s = this.worker.viewerStats.get(this.id);
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
    };
  }

  setPacingRate(bitsPerSecond: number): void {
    if (bitsPerSecond > 0 && this._state !== "closed") this.worker.post({ t: "pacing", id: this.id, bps: bitsPerSecond });
  }

  get sourceId(): CameraId {
    return this.source.id;
  }

  /** See ViewerHandle.switchSource: demand moves here, the switch itself is made in the worker. */
  switchSource(id: CameraId, reason = "switch"): void {
    if (this._state === "closed" || id === this.pending?.id) return;
    const target = id === this.source.id ? this.source : this.pool.findSource(id);
    if (!(target instanceof SourceProxy)) {
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
    this.worker.post({ t: "switch", id: this.id, cam: id, reason });
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

  close(reason = "closed"): Promise<void> {
    if (this.closing) return this.closing;
    this.localClosing(reason);
    return this.closing!;
  }

  /** Starts closing from this side: state "closed" at once, "closed" event when the worker is done. */
  localClosing(reason: string): void {
    if (this.closing) return;
    this.closedReason = reason;
    this.setState("closed");
    this.pool.forget(this);
    const done = new Promise<void>((r) => (this.resolveClosed = r));
    void this.pool.closeRemote(this, reason).then(() => this.remoteClosed(reason));
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
  remoteClosed(reason: string): void {
    if (!this.closing) {
      this.closedReason = reason;
      this.setState("closed");
      this.pool.forget(this);
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
