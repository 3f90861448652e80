/**
 * The media plane: sources (one per camera, fed by ingest through MediaSink) and
 * viewers (one WebRTC session each). Closing the Sfu closes every source and viewer.
 *
 *   const sfu = new Sfu({ log, icePortRange: [40000, 40999], bindAddress: "0.0.0.0", nackHistory: 512, viewerQueuePackets: 1024, workers: 0 });
 *   ingest.sink = sfu.source(cameraId("door"));
 *   const { viewer, answerSdp } = await sfu.createViewer(cameraId("door"), offerSdp, { user });
 *
 * Where the media runs: without `workers` (tests, embedding) one SfuEngine on the
 * calling thread (sfu/engine.ts); with `workers` (the gateway: `media.workers`, 0 = one
 * per core) media worker threads (sfu/worker-pool.ts) while signaling and ingest stay on
 * the calling thread. The API is the same either way.
 */
import type { CameraId, ViewerId } from "../config/ids.ts";
import type { SourceHandle, ViewerHandle } from "./api.ts";
import { normalizeBundleOnly } from "./offer.ts";
import { SfuEngine, type CreateViewerOptions, type EngineOptions, type SfuStats } from "./engine.ts";
import { WorkerPool, type PoolExit } from "./worker-pool.ts";

/** Whether the native fast path (sfu/native/) is in use, for operators. */
export { nativeStatus } from "./native/index.ts";

export type { SourceHandle, ViewerHandle } from "./api.ts";
export type { CreateViewerOptions, EventLoopStats, SfuStats, SfuTimers, WorkerStats } from "./engine.ts";
export type { LatencySummary } from "./latency.ts";
export { Source } from "./source.ts";
export type { SourceStats, SourceEvents, SourceDropReason } from "./source.ts";
export type { TransportInfo } from "./transport.ts";
export { Viewer } from "./viewer.ts";
export type { ViewerStats, ViewerEvents, ViewerState, ViewerDropReason, ViewerQuality } from "./viewer.ts";
export type { IceServer } from "./werift-peer.ts";
export type { PoolExit } from "./worker-pool.ts";

export interface SfuOptions extends EngineOptions {
  /**
   * Media worker threads: undefined = none (media on the calling thread; `timers` and
   * `random` apply only then), 0 = one per core, n = n threads. The ICE port range is
   * split between workers.
   */
  workers?: number | undefined;
}

/** What the facade needs from where the media runs. */
interface Backend {
  readonly workerCount: number;
  source(id: CameraId): SourceHandle;
  findSource(id: CameraId): SourceHandle | undefined;
  sourceList(): SourceHandle[];
  createViewer(id: CameraId, offerSdp: string, opts?: CreateViewerOptions): Promise<{ viewer: ViewerHandle; answerSdp: string }>;
  viewer(id: ViewerId): ViewerHandle | undefined;
  viewerList(): ViewerHandle[];
  stats(): SfuStats;
  refreshStats(): Promise<void>;
  resetMeasurements(): void;
  addIceCandidate(id: ViewerId, candidate: string, mid?: string): Promise<void>;
  remoteIceUfrag(id: ViewerId): string | undefined;
}

export class Sfu {
  private readonly backend: Backend;
  private readonly engine: SfuEngine | undefined;
  private readonly pool: WorkerPool | undefined;
  private closing: Promise<void> | undefined;
  private exits: Promise<PoolExit[]> | undefined;

  constructor(opts: SfuOptions) {
    if (opts.workers === undefined) {
      this.engine = new SfuEngine(opts);
      this.backend = this.engine;
    } else {
      this.pool = new WorkerPool({ ...opts, workers: opts.workers });
      this.backend = this.pool;
    }
  }

  /** Media worker threads (0: media runs on the calling thread). */
  get workerCount(): number {
    return this.backend.workerCount;
  }

  /** The source of a camera, created on first use. Throws ClosedError after close. */
  source(id: CameraId): SourceHandle {
    return this.backend.source(id);
  }

  /** The source of a camera if it exists. */
  findSource(id: CameraId): SourceHandle | undefined {
    return this.backend.findSource(id);
  }

  /** All sources. */
  sourceList(): SourceHandle[] {
    return this.backend.sourceList();
  }

  /**
   * Creates a viewer from a browser's offer and returns the answer (ICE candidates
   * included: WHEP has no server-side trickle). The viewer counts as demand at once;
   * media starts when ICE+DTLS connect, with the cached GOP.
   * Throws BadInputError (bad or unsupported SDP), NotFoundError (no such source),
   * ClosedError (SFU closing), OverloadError (negotiation timed out).
   */
  createViewer(id: CameraId, offerSdp: string, opts: CreateViewerOptions = {}): Promise<{ viewer: ViewerHandle; answerSdp: string }> {
    // Firefox marks bundled sections bundle-only (port 0): read them as the bundled sections they are.
    return this.backend.createViewer(id, normalizeBundleOnly(offerSdp), opts);
  }

  /** A viewer by id, while it lives. */
  viewer(id: ViewerId): ViewerHandle | undefined {
    return this.backend.viewer(id);
  }

  /** All live viewers. */
  viewerList(): ViewerHandle[] {
    return this.backend.viewerList();
  }

  /**
   * Per-source and per-viewer counters, forwarding latency (`forwardLatencyMs`: live
   * packets from MediaSink.pushRtp to the socket, per packet per viewer) and event-loop
   * delay (`eventLoopDelayMs`, the worst media thread) since start or
   * `resetMeasurements()`. With workers, a snapshot at most ~500 ms old (`refreshStats()` makes it current).
   */
  stats(): SfuStats {
    return this.backend.stats();
  }

  /** Makes the next `stats()` current (workers report at once). */
  refreshStats(): Promise<void> {
    return this.backend.refreshStats();
  }

  /** Starts a new window for `forwardLatencyMs` and `eventLoopDelayMs`. */
  resetMeasurements(): void {
    this.backend.resetMeasurements();
  }

  /** Adds a client's trickled ICE candidate (WHEP PATCH). */
  addIceCandidate(id: ViewerId, candidate: string, mid?: string): Promise<void> {
    return this.backend.addIceCandidate(id, candidate, mid);
  }

  /** The client's current ICE ufrag for a viewer (a PATCH with another one is an ICE restart). */
  remoteIceUfrag(id: ViewerId): string | undefined {
    return this.backend.remoteIceUfrag(id);
  }

  /** Closes every source and viewer (and media worker); later calls return the same promise. */
  close(reason = "sfu closing"): Promise<void> {
    this.exits ??= this.pool ? this.pool.close(reason) : this.engine!.close(reason).then(() => []);
    this.closing ??= this.exits.then(() => {});
    return this.closing;
  }

  /**
   * Once closing: how each media worker ended (on its own, or terminated because
   * something kept it alive). Empty without workers; undefined before `close`.
   */
  get workerExits(): Promise<PoolExit[]> | undefined {
    return this.exits;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close("disposed");
  }
}
