/**
 * Media in worker threads behind the Sfu API: the main thread keeps signaling (offers,
 * answers, viewer lifecycle) and ingest; each worker runs an SfuEngine with the werift
 * peers, SRTP and sockets of the viewers placed on it.
 *
 * This file is the coordinator: it starts the workers, routes their messages to the
 * proxies, and restarts a worker that ended unasked, as its restart policy says. The
 * parts live beside it, each readable alone:
 *   worker-pool/media-worker.ts  one thread, its request channel and stats mirror
 *   worker-pool/placement.ts     port-range slices and which worker takes a viewer
 *   worker-pool/source-proxy.ts  a camera's source (ingest batched to every worker)
 *   worker-pool/viewer-proxy.ts  a viewer whose media lives in a worker
 * The proxies get narrow callbacks (SourceChannel, ViewerChannel), never the pool.
 *
 * Each worker gets its own slice of the ICE port range (werift probes ports one
 * negotiation at a time per thread; disjoint slices keep threads from colliding).
 */
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { monitorEventLoopDelay, type ELDHistogram } from "node:perf_hooks";
import { ClosedError, NotFoundError } from "../config/errors.ts";
import { gridSessionId as toGridSessionId, viewerId as toViewerId, type CameraId, type GridSessionId, type ViewerId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import type { GridSessionHandle, GridSlot, SourceHandle, SourceStats, ViewerHandle } from "./api.ts";
import { toCloseReason, ViewerCloseReasons } from "./api.ts";
import type { CreateSessionOptions, CreateViewerOptions, EngineOptions, SfuStats } from "./engine.ts";
import { GridSessionProxy } from "./grid-session-proxy.ts";
import { LatencyHistogram } from "./latency.ts";
import { nativeStatus } from "./native/index.ts";
import { planAnswer, planGridAnswer, type Offer } from "./offer.ts";
import { MediaWorker } from "./worker-pool/media-worker.ts";
import { leastLoaded, splitPortRange } from "./worker-pool/placement.ts";
import { SourceProxy } from "./worker-pool/source-proxy.ts";
import { ViewerProxy } from "./worker-pool/viewer-proxy.ts";
import type { FromWorker, ToWorker, WorkerInit, WorkerSnapshot } from "./worker-protocol.ts";

export { splitPortRange } from "./worker-pool/placement.ts";

/** A worker that has not exited this long after `close` is terminated (and reported). */
const EXIT_TIMEOUT_MS = 5000;

/** What to do with a worker that ended without being asked. */
export type WorkerRestartDecision =
  /** Start a fresh thread in its slot after `delayMs` (its slot takes no viewers meanwhile). */
  | { restart: true; delayMs: number }
  /** Leave the slot empty until `restartWorker(index)`; viewers go to the other workers. */
  | { restart: false; reason: string };

/** Decides restarts (the gateway's supervisor); without one a failed worker is replaced at once. */
export interface WorkerRestartPolicy {
  /**
   * A worker ended unasked. Its viewers are already closed (their pages offer again and
   * are placed on the running workers).
   * @param error what the thread threw, when it threw
   */
  exited(index: number, code: number, error: Error | undefined): WorkerRestartDecision;
  /** A worker (re)started in slot `index`. */
  started?(index: number): void;
}

export interface WorkerPoolOptions extends EngineOptions {
  /** Worker threads; 0 = one per core (os.availableParallelism()). */
  workers: number;
  /**
   * V8 young-generation limit of each media worker, MiB. Per-packet garbage (node:crypto
   * output buffers) makes V8 grow the young generation to its maximum, which costs tens of
   * MiB of RSS per thread; a small one costs ~2 % more CPU in scavenges. Default 8.
   */
  workerYoungGenerationMb?: number | undefined;
  /** Restart decisions for workers that fail. Default: replace at once, always. */
  workerRestarts?: WorkerRestartPolicy | undefined;
}

/** How a pool's workers ended (tests check that they all exited by themselves). */
export interface PoolExit {
  index: number;
  /** True when the thread ended on its own after close; false when it had to be terminated. */
  clean: boolean;
}

/** A worker slot as operators see it. */
export interface WorkerSlotStatus {
  index: number;
  /** running; restarting (a fresh thread starts soon); stopped (left empty by the restart policy). */
  state: "running" | "restarting" | "stopped";
  viewers: number;
  /** Threads started in this slot since the pool started, the first included. */
  starts: number;
  /** Why the last thread of this slot ended unasked. */
  lastFailure?: string;
}

interface Slot {
  worker: MediaWorker;
  state: WorkerSlotStatus["state"];
  starts: number;
  lastFailure: string | undefined;
  lastError: Error | undefined;
  timer: NodeJS.Timeout | undefined;
}

interface Placed {
  proxy: ViewerProxy;
  worker: MediaWorker;
}

export class WorkerPool {
  readonly workerCount: number;
  private readonly o: WorkerPoolOptions;
  private readonly log: Logger;
  private readonly slots: Slot[] = [];
  private readonly sources = new Map<CameraId, SourceProxy>();
  private readonly viewers = new Map<ViewerId, Placed>();
  /** Multi-camera sessions and the worker each lives on (sfu/grid-session-proxy.ts). */
  private readonly sessions = new Map<GridSessionId, { proxy: GridSessionProxy; worker: MediaWorker }>();
  /** Viewers closed locally whose worker has not confirmed yet. */
  private readonly closingViewers = new Map<string, Placed>();
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
        gridStartHoldMs: o.gridStartHoldMs,
        ownedSrtp: o.ownedSrtp,
        cacheSrtpKeyObjects: o.cacheSrtpKeyObjects,
        directSendBudgetMs: o.directSendBudgetMs,
        maxQueueDelayMs: o.maxQueueDelayMs,
      },
    }));
    for (const init of this.inits)
      this.slots.push({ worker: this.spawn(init), state: "running", starts: 1, lastFailure: undefined, lastError: undefined, timer: undefined });
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    const native = nativeStatus();
    this.log.info("media workers started", {
      workers: n,
      portRanges: ranges.map((r) => r.join("-")).join(","),
      nativeFastPath: native.enabled ? "on" : `off: ${native.reason}`,
    });
  }

  /** The current thread of each slot (an ended one until its replacement starts). */
  get workers(): readonly MediaWorker[] {
    return this.slots.map((s) => s.worker);
  }

  private spawn(init: WorkerInit): MediaWorker {
    const w = new MediaWorker(init, this.o.workerYoungGenerationMb ?? 8, (mw, m) => this.onMessage(mw, m));
    w.worker.on("error", (err) => {
      this.log.error("media worker failed", { worker: init.index, err });
      const slot = this.slots[init.index];
      if (slot?.worker === w) slot.lastError = err;
    });
    void w.exited.then((code) => this.onExit(w, code));
    return w;
  }

  /** A worker ended without being asked: its viewers end; its restart policy says whether a fresh one takes its place. */
  private onExit(w: MediaWorker, code: number): void {
    const slot = this.slots[w.index];
    if (this.closing || !slot || slot.worker !== w) return;
    const error = slot.lastError;
    slot.lastError = undefined;
    slot.lastFailure = error ? error.message : `exit code ${code}`;
    for (const p of [...this.viewers.values()]) if (p.worker === w) p.proxy.remoteClosed(ViewerCloseReasons.workerFailed);
    for (const x of [...this.sessions.values()]) if (x.worker === w) x.proxy.remoteClosed(ViewerCloseReasons.workerFailed);
    let decision: WorkerRestartDecision = { restart: true, delayMs: 0 };
    try {
      decision = this.o.workerRestarts?.exited(w.index, code, error) ?? decision;
    } catch (err) {
      this.log.warn("worker restart policy failed; restarting the worker", { worker: w.index, err });
    }
    if (!decision.restart) {
      slot.state = "stopped";
      this.log.error("media worker exited unexpectedly; not restarting it", { worker: w.index, code, reason: decision.reason });
      return;
    }
    slot.state = "restarting";
    this.log.error("media worker exited unexpectedly; restarting it", { worker: w.index, code, delayMs: decision.delayMs });
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      this.startSlot(w.index);
    }, decision.delayMs);
  }

  /** A fresh thread in slot `index`, given every camera's tracks so far. */
  private startSlot(index: number): void {
    const slot = this.slots[index]!;
    if (this.closing) return;
    const fresh = this.spawn(this.inits[index]!);
    slot.worker = fresh;
    slot.state = "running";
    slot.starts++;
    for (const s of this.sources.values()) {
      const tracks = s.currentTracks();
      if (tracks) fresh.post({ t: "tracks", cam: s.id, tracks: [...tracks] });
    }
    try {
      this.o.workerRestarts?.started?.(index);
    } catch (err) {
      this.log.warn("worker restart policy failed", { worker: index, err });
    }
  }

  /**
   * Starts a fresh worker in a slot its restart policy left empty (an administrator's
   * action, or the end of the policy's window). False when the slot is running or restarting.
   */
  restartWorker(index: number): boolean {
    const slot = this.slots[index];
    if (!slot || this.closing || slot.state !== "stopped") return false;
    this.log.info("media worker started again", { worker: index });
    this.startSlot(index);
    return true;
  }

  /**
   * Makes worker `index` fail as an uncaught exception in it would (the thread ends with an
   * error): for tests and failure drills. Nothing outside this process can ask for it.
   */
  injectFault(index: number): boolean {
    const slot = this.slots[index];
    if (!slot || slot.state !== "running") return false;
    slot.worker.post({ t: "fault" });
    return true;
  }

  /** Each slot: running, restarting or stopped, with its viewers. */
  workerSlots(): WorkerSlotStatus[] {
    return this.slots.map((s, index) => ({
      index,
      state: s.state,
      viewers: s.worker.viewers,
      starts: s.starts,
      ...(s.lastFailure !== undefined ? { lastFailure: s.lastFailure } : {}),
    }));
  }

  private onMessage(w: MediaWorker, m: FromWorker): void {
    switch (m.t) {
      case "viewerState": {
        const p = this.viewers.get(m.id as ViewerId);
        if (p?.worker === w) p.proxy.remoteState(m.state);
        break;
      }
      case "viewerClosed": {
        const p = this.viewers.get(m.id as ViewerId);
        if (p?.worker === w) p.proxy.remoteClosed(toCloseReason(m.reason));
        else this.closingViewers.get(m.id)?.proxy.remoteClosed(toCloseReason(m.reason));
        break;
      }
      case "viewerQuality": {
        const p = this.viewers.get(m.id as ViewerId);
        if (p?.worker === w) p.proxy.remoteQuality(m.quality, m.reason);
        break;
      }
      case "viewerWantsSource": {
        // Network adaptation in the worker: demand is counted here, so the switch starts here.
        const p = this.viewers.get(m.id as ViewerId);
        if (p?.worker === w) p.proxy.switchSource(m.cam as CameraId, m.reason);
        break;
      }
      case "viewerSwitched": {
        const p = this.viewers.get(m.id as ViewerId);
        if (p?.worker === w) p.proxy.remoteSwitched(m.info);
        break;
      }
      case "sessionState":
      case "sessionClosed":
      case "slotEnded": {
        const x = this.sessions.get(m.id as GridSessionId);
        if (!x || x.worker !== w) break;
        if (m.t === "sessionState") x.proxy.remoteState(m.state);
        else if (m.t === "sessionClosed") x.proxy.remoteClosed(m.reason);
        else x.proxy.remoteSlotEnded(m.mid, m.cam as CameraId, m.reason);
        break;
      }
      case "keyframe":
        this.sources.get(m.cam as CameraId)?.emitKeyframe(m.info);
        break;
      case "snapshot":
        if (w === this.reporter()) for (const s of this.sources.values()) s.emitStatsIfWatched();
        break;
      case "log":
        this.log[m.level](m.msg, m.fields);
        break;
      default:
        break;
    }
  }

  /** The worker whose source replicas stand for all: the primary, or the first running one while it is down. */
  private reporter(): MediaWorker | undefined {
    const first = this.slots[0]?.worker;
    if (first && !first.ended) return first;
    return this.slots.find((s) => !s.worker.ended)?.worker ?? first;
  }

  /** Sends a message to every running worker; with `data`, each gets its own copy of its first `length` bytes, transferred. */
  broadcast(m: ToWorker, data?: { buffer: ArrayBuffer; length: number }): void {
    for (const { worker: w } of this.slots) {
      if (w.ended) continue;
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
      s = new SourceProxy(id, {
        broadcast: (m, data) => this.broadcast(m, data),
        replicaStats: (cam) => this.primarySourceStats(cam),
      });
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

  /** Forgets a source without viewers here and in every worker (Sfu.releaseSource). */
  releaseSource(id: CameraId): boolean {
    const s = this.sources.get(id);
    if (!s || s.viewerCount > 0) return false;
    s.flush();
    this.sources.delete(id);
    this.broadcast({ t: "release", cam: id });
    return true;
  }

  viewer(id: ViewerId): ViewerHandle | undefined {
    return this.viewers.get(id)?.proxy;
  }

  viewerList(): ViewerHandle[] {
    return [...this.viewers.values()].map((p) => p.proxy);
  }

  async createViewer(id: CameraId, offer: Offer, opts: CreateViewerOptions = {}): Promise<{ viewer: ViewerHandle; answerSdp: string }> {
    if (this.closing) throw new ClosedError("sfu closed");
    const source = this.sources.get(id);
    if (!source) throw new NotFoundError(`no source for camera ${id}`);
    // Bad or unsupported offers fail here, before they count as demand (as on one thread).
    planAnswer(offer.parsed, source.currentTracks());
    const w = leastLoaded(this.slots.map((s) => ({ viewers: s.worker.viewers, accepting: s.state === "running" && !s.worker.ended, worker: s.worker }))).worker;
    const vid = toViewerId(randomBytes(12).toString("base64url"));
    const placed = { worker: w } as Placed;
    const v = new ViewerProxy(
      vid,
      source,
      opts.user,
      {
        stats: () => w.viewerStats.get(vid),
        setPacing: (bps) => w.post({ t: "pacing", id: vid, bps }),
        closeRemote: (reason) => this.closeRemote(placed, reason),
        forget: () => this.forget(placed),
        findSource: (cam) => this.sources.get(cam),
        switchTo: (cam, reason) => w.post({ t: "switch", id: vid, cam, reason }),
        setStreams: (ladder, auto) => w.post({ t: "streams", id: vid, ladder: [...ladder], auto }),
      },
      opts.cameraId,
    );
    placed.proxy = v;
    // A viewer is demand from the moment it asks (on-demand pulls start now).
    this.viewers.set(vid, placed);
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

  /** A multi-camera session on the least loaded worker (see sfu/grid-session-proxy.ts for why any worker will do). */
  async createSession(offer: Offer, opts: CreateSessionOptions): Promise<{ session: GridSessionHandle; answerSdp: string }> {
    if (this.closing) throw new ClosedError("sfu closed");
    planGridAnswer(offer.parsed, opts.maxSlots);
    const w = leastLoaded(this.slots.map((s) => ({ viewers: s.worker.viewers, accepting: s.state === "running" && !s.worker.ended, worker: s.worker }))).worker;
    const sid = toGridSessionId(randomBytes(12).toString("base64url"));
    const proxy = new GridSessionProxy(sid, opts.user, {
      call: (m) => w.call(m),
      stats: (id) => w.sessionStats.get(id),
      addDemand: (camera) => {
        const src = this.sources.get(camera);
        if (!src) return false;
        src.addViewer();
        return true;
      },
      removeDemand: (camera) => this.sources.get(camera)?.removeViewer(),
      forget: (p) => {
        if (this.sessions.get(p.id)?.proxy !== p) return;
        this.sessions.delete(p.id);
        w.viewers--;
      },
    });
    this.sessions.set(sid, { proxy, worker: w });
    w.viewers++;
    try {
      const r = await w.call<{ answerSdp: string; slots: GridSlot[] }>({
        t: "createSession",
        req: 0,
        id: sid,
        offer,
        user: opts.user,
        iceServers: opts.iceServers ?? this.o.iceServers?.() ?? [],
        maxSlots: opts.maxSlots,
      });
      proxy.setSlots(r.slots);
      if (proxy.state === "closed") throw new ClosedError("session closed during negotiation");
      return { session: proxy, answerSdp: r.answerSdp };
    } catch (err) {
      proxy.remoteClosed("negotiation failed");
      throw err;
    }
  }

  session(id: GridSessionId): GridSessionHandle | undefined {
    return this.sessions.get(id)?.proxy;
  }

  sessionList(): GridSessionHandle[] {
    return [...this.sessions.values()].map((x) => x.proxy);
  }

  async addIceCandidate(id: ViewerId, candidate: string, mid: string): Promise<void> {
    const p = this.viewers.get(id);
    if (!p) throw new NotFoundError("no such viewer");
    await p.worker.call({ t: "candidate", req: 0, id, candidate, mid });
  }

  stats(): SfuStats {
    const latency = new LatencyHistogram();
    let loopP99 = this.loopDelay.percentile(99) / 1e6;
    let loopMax = this.loopDelay.max / 1e6;
    for (const { worker: w } of this.slots) {
      const s = w.snapshot;
      if (!s) continue;
      latency.merge(LatencyHistogram.fromJSON(s.latency));
      loopP99 = Math.max(loopP99, s.loop.p99);
      loopMax = Math.max(loopMax, s.loop.max);
    }
    return {
      sources: [...this.sources.values()].map((s) => s.stats()),
      viewers: [...this.viewers.values()].map((p) => p.proxy.stats()),
      sessions: [...this.sessions.values()].map((x) => x.proxy.stats()),
      forwardLatencyMs: latency.summary(),
      forwardLatency: latency,
      eventLoopDelayMs: { p99: Math.round(loopP99 * 100) / 100, max: Math.round(loopMax * 100) / 100 },
      workers: this.slots.map(({ worker: w }) => ({
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
      this.slots.map(async ({ worker: w }) => {
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
    for (const { worker: w } of this.slots) {
      w.post({ t: "reset" });
      if (w.snapshot) w.snapshot = { ...w.snapshot, latency: new LatencyHistogram().toJSON(), loop: { p99: 0, max: 0 } };
    }
  }

  /** The reporting worker's stats of a camera's source replica. */
  primarySourceStats(id: CameraId): SourceStats | undefined {
    return this.reporter()?.sourceStats.get(id);
  }

  /** A viewer closed (locally or remotely): it no longer counts as load or demand. */
  private forget(p: Placed): void {
    if (this.viewers.get(p.proxy.id) !== p) return;
    this.viewers.delete(p.proxy.id);
    p.worker.viewers--;
    p.proxy.releaseSources();
  }

  /** Asks the worker to close a viewer; resolves when it has. */
  private closeRemote(p: Placed, reason: string): Promise<void> {
    const id = p.proxy.id;
    this.closingViewers.set(id, p);
    return p.worker
      .call<void>({ t: "closeViewer", req: 0, id, reason })
      .catch(() => {})
      .finally(() => this.closingViewers.delete(id));
  }

  /**
   * Closes every viewer and worker. Resolves with how each worker ended: on its own
   * (clean) or terminated after EXIT_TIMEOUT_MS (something kept it alive).
   */
  close(reason = "sfu closing"): Promise<PoolExit[]> {
    this.closing ??= (async () => {
      this.log.info("sfu closing", { reason });
      for (const slot of this.slots) clearTimeout(slot.timer);
      for (const s of this.sources.values()) s.flush();
      for (const p of [...this.viewers.values()]) p.proxy.localClosing("sfu closing");
      for (const x of [...this.sessions.values()]) void x.proxy.close(ViewerCloseReasons.sfuClosing);
      const exits = await Promise.all(
        this.slots.map(async ({ worker: w }) => {
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
      for (const p of [...this.viewers.values()]) p.proxy.remoteClosed("sfu closing");
      for (const x of [...this.sessions.values()]) x.proxy.remoteClosed("sfu closing");
      this.loopDelay.disable();
      this.sources.clear();
      return exits;
    })();
    return this.closing;
  }
}
