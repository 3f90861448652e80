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
import { networkInterfaces } from "node:os";
import { BadInputError, isGatehouseError, NotFoundError, OverloadError } from "../config/errors.ts";
import { isLoopback } from "../config/net/special.ts";
import type { CameraId, GridSessionId, ViewerId } from "../config/ids.ts";
import type { GridSessionHandle, SourceHandle, SourceWatcher, ViewerHandle } from "./api.ts";
import {
  CANDIDATE_DROP_REASONS,
  formatCandidate,
  judgeCandidate,
  noCandidateDrops,
  parseCandidate,
  screenCandidates,
  type CandidateDropReason,
  type CandidateDrops,
  type CandidateRules,
} from "./candidates.ts";
import { readOffer, type Offer } from "./offer.ts";
import { SfuEngine, type CreateSessionOptions, type CreateViewerOptions, type EngineOptions, type SfuStats } from "./engine.ts";
import { splitPortRange, WorkerPool, type PoolExit, type WorkerRestartPolicy, type WorkerSlotStatus } from "./worker-pool.ts";

/** Whether the native fast path (sfu/native/) is in use, for operators. */
export { nativeStatus } from "./native/index.ts";

export type { SourceHandle, ViewerHandle } from "./api.ts";
export type { GridSessionHandle, GridSessionEvents, GridSessionStats, GridSlot, GridSlotStats, SourceWatcher } from "./api.ts";
export type { CreateViewerOptions, EventLoopStats, SfuStats, SfuTimers, WorkerStats } from "./engine.ts";
export type { LatencySummary } from "./latency.ts";
export { Source } from "./source.ts";
export type { SourceStats, SourceEvents, SourceDropReason } from "./api.ts";
export type { TransportInfo } from "./transport.ts";
export { Viewer } from "./viewer.ts";
export type { ViewerStats, ViewerEvents, ViewerState, ViewerDropReason, ViewerQuality, SwitchInfo } from "./api.ts";
export type { IceServer } from "./werift-peer.ts";
export type { PoolExit, WorkerRestartDecision, WorkerRestartPolicy, WorkerSlotStatus } from "./worker-pool.ts";
export type { CandidateDropReason, CandidateDrops } from "./candidates.ts";

export interface SfuOptions extends EngineOptions {
  /**
   * Media worker threads: undefined = none (media on the calling thread; `timers` and
   * `random` apply only then), 0 = one per core, n = n threads. The ICE port range is
   * split between workers.
   */
  workers?: number | undefined;
  /** With workers: whether and when a worker that failed is replaced (default: at once, always). */
  workerRestarts?: WorkerRestartPolicy | undefined;
  /**
   * What a viewer's own ICE candidates may be (sfu/candidates.ts): private ranges taken
   * (default true), most per offer or PATCH (default 32), most per viewer (default 64).
   * Loopback is taken exactly when `bindAddress` is loopback.
   */
  remoteCandidates?: Partial<Omit<CandidateRules, "loopback">> | undefined;
}

/** Client candidates the SFU has judged since start. */
export interface CandidateStats {
  accepted: number;
  dropped: CandidateDrops;
}

/** One trickled candidate as a WHEP PATCH carries it (RFC 8840): the attribute value and the mid above it. */
export interface TrickledCandidate {
  candidate: string;
  mid: string | undefined;
}

/** What the facade keeps of each viewer's offer, for its PATCHes. */
interface RemoteIce {
  readonly mids: ReadonlySet<string>;
  readonly ufrag: string | undefined;
  /** Candidates given so far (offer and PATCHes). */
  count: number;
}

/** What the facade needs from where the media runs. */
interface Backend {
  readonly workerCount: number;
  source(id: CameraId): SourceHandle;
  findSource(id: CameraId): SourceHandle | undefined;
  sourceList(): SourceHandle[];
  releaseSource(id: CameraId): boolean;
  createViewer(id: CameraId, offer: Offer, opts?: CreateViewerOptions): Promise<{ viewer: ViewerHandle; answerSdp: string }>;
  createSession(offer: Offer, opts: CreateSessionOptions): Promise<{ session: GridSessionHandle; answerSdp: string }>;
  session(id: GridSessionId): GridSessionHandle | undefined;
  sessionList(): GridSessionHandle[];
  viewer(id: ViewerId): ViewerHandle | undefined;
  viewerList(): ViewerHandle[];
  stats(): SfuStats;
  refreshStats(): Promise<void>;
  resetMeasurements(): void;
  addIceCandidate(id: ViewerId, candidate: string, mid: string): Promise<void>;
}

export class Sfu {
  private readonly backend: Backend;
  private readonly engine: SfuEngine | undefined;
  private readonly pool: WorkerPool | undefined;
  private closing: Promise<void> | undefined;
  private exits: Promise<PoolExit[]> | undefined;
  private readonly rules: CandidateRules;
  private readonly remote = new Map<ViewerId, RemoteIce>();
  private readonly candidates: CandidateStats = { accepted: 0, dropped: noCandidateDrops() };
  private refusedNoPort = 0;
  /** Seconds after which a refused viewer may try again: by then every unconnected viewer has been reclaimed. */
  private readonly retryAfterSeconds: number;
  /**
   * Most viewers the ICE port range holds: each binds one UDP port per address it gathers
   * on (one for a fixed bind address, one per interface address for a wildcard).
   */
  readonly viewerCapacity: number;

  constructor(opts: SfuOptions) {
    if (opts.workers === undefined) {
      this.engine = new SfuEngine(opts);
      this.backend = this.engine;
    } else {
      this.pool = new WorkerPool({ ...opts, workers: opts.workers });
      this.backend = this.pool;
    }
    const rc = opts.remoteCandidates ?? {};
    this.rules = {
      loopback: isLoopbackAddress(opts.bindAddress),
      privateRanges: rc.privateRanges ?? true,
      maxPerRequest: rc.maxPerRequest ?? 32,
      maxPerViewer: rc.maxPerViewer ?? 64,
    };
    this.retryAfterSeconds = Math.ceil((opts.connectTimeoutMs ?? 20_000) / 1000);
    const perViewer = portsPerViewer(opts.bindAddress);
    const slices = this.pool ? splitPortRange(opts.icePortRange, this.pool.workerCount) : [opts.icePortRange];
    this.viewerCapacity = slices.reduce((n, [lo, hi]) => n + Math.floor((hi - lo + 1) / perViewer), 0);
  }

  /** Media worker threads (0: media runs on the calling thread). */
  get workerCount(): number {
    return this.backend.workerCount;
  }

  /** Each media worker slot: running, restarting or stopped (empty without workers). */
  workerSlots(): WorkerSlotStatus[] {
    return this.pool?.workerSlots() ?? [];
  }

  /** Starts a fresh worker in a slot its restart policy left empty; false when there is nothing to start. */
  restartWorker(index: number): boolean {
    return this.pool?.restartWorker(index) ?? false;
  }

  /** Makes media worker `index` fail with an uncaught exception (tests and failure drills); false without such a worker. */
  injectWorkerFault(index: number): boolean {
    return this.pool?.injectFault(index) ?? false;
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
   * Forgets a source nobody watches any more (a relay of another node's camera that ended): its
   * history and cached pictures are freed and it leaves `sourceList()`. False (nothing done) when
   * it does not exist or still has viewers; `source(id)` makes a fresh one later.
   */
  releaseSource(id: CameraId): boolean {
    return this.backend.releaseSource(id);
  }

  /**
   * Creates a viewer from a browser's offer and returns the answer (ICE candidates
   * included: WHEP has no server-side trickle). The viewer counts as demand at once;
   * media starts when ICE+DTLS connect, with the cached GOP.
   *
   * The offer is read here, once (sfu/offer.ts readOffer: bundle-only sections normalized,
   * the client's candidates judged), and handed on parsed to wherever the media runs.
   * Throws BadInputError (bad or unsupported SDP), NotFoundError (no such source),
   * ClosedError (SFU closing), OverloadError with `retryAfterSeconds` (no free ICE port,
   * negotiation timed out).
   */
  async createViewer(id: CameraId, offerSdp: string, opts: CreateViewerOptions = {}): Promise<{ viewer: ViewerHandle; answerSdp: string }> {
    const offer = readOffer(offerSdp, this.rules);
    this.count(offer.candidates, offer.dropped);
    // Every port taken: say so now, rather than let werift probe the whole range in vain.
    if (this.portsHeld() >= this.viewerCapacity) throw this.noPorts("no free media port");
    let created: { viewer: ViewerHandle; answerSdp: string };
    try {
      created = await this.backend.createViewer(id, offer, opts);
    } catch (err) {
      if (isGatehouseError(err) && err.code === "OVERLOAD") throw this.noPorts(err.message, err);
      throw err;
    }
    const { viewer } = created;
    if (viewer.state !== "closed") {
      this.remote.set(viewer.id, { mids: new Set(offer.mids), ufrag: offer.parsed.iceUfrag, count: offer.candidates });
      viewer.once("closed", () => this.remote.delete(viewer.id));
    }
    return created;
  }

  /**
   * Creates a multi-camera session (sfu/grid-session.ts): ONE peer connection whose receiving
   * video sections (at most `maxSlots`) and first audio section are slots, each bound to a
   * camera later with `session.bind(mid, camera)` and re-bound without renegotiation. The
   * offer is read as createViewer reads it; it holds one media port like a viewer. Throws
   * as createViewer does (BadInputError also for more video sections than `maxSlots`).
   */
  async createSession(offerSdp: string, opts: { user?: string | undefined; maxSlots: number; iceServers?: CreateViewerOptions["iceServers"] }): Promise<{ session: GridSessionHandle; answerSdp: string }> {
    const offer = readOffer(offerSdp, this.rules);
    this.count(offer.candidates, offer.dropped);
    if (this.portsHeld() >= this.viewerCapacity) throw this.noPorts("no free media port");
    try {
      return await this.backend.createSession(offer, {
        maxSlots: opts.maxSlots,
        ...(opts.user !== undefined ? { user: opts.user } : {}),
        ...(opts.iceServers ? { iceServers: opts.iceServers } : {}),
      });
    } catch (err) {
      if (isGatehouseError(err) && err.code === "OVERLOAD") throw this.noPorts(err.message, err);
      throw err;
    }
  }

  /** A multi-camera session by id, while it lives. */
  session(id: GridSessionId): GridSessionHandle | undefined {
    return this.backend.session(id);
  }

  /** All live multi-camera sessions. */
  sessionList(): GridSessionHandle[] {
    return this.backend.sessionList();
  }

  /** Media ports held: one per viewer and one per multi-camera session. */
  private portsHeld(): number {
    return this.backend.viewerList().length + this.backend.sessionList().length;
  }

  private noPorts(message: string, cause?: unknown): OverloadError {
    this.refusedNoPort++;
    return new OverloadError(message, { retryAfterSeconds: this.retryAfterSeconds, cause });
  }

  private count(accepted: number, dropped: CandidateDrops): void {
    this.candidates.accepted += accepted;
    for (const r of CANDIDATE_DROP_REASONS) this.candidates.dropped[r] += dropped[r];
  }

  /** Viewers refused since start because no media port was free (or negotiation timed out). */
  get viewersRefused(): number {
    return this.refusedNoPort;
  }

  /**
   * Another WebRTC offer the gateway answers outside the SFU (the intercom's talk peer): its
   * candidates screened by the same rules, and counted with the viewers'. Returns the text
   * to give werift. Throws BadInputError like readOffer.
   */
  screenOfferCandidates(sdp: string): string {
    const lines = sdp.split(/\r?\n/);
    while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    const at: number[] = [];
    lines.forEach((l, i) => l.startsWith("a=candidate:") && at.push(i));
    const screened = screenCandidates(lines, at, this.rules);
    this.count(screened.kept, screened.dropped);
    const eol = sdp.includes("\r\n") ? "\r\n" : "\n";
    return screened.lines.join(eol) + eol;
  }

  /** Client candidates accepted and dropped (by reason) since start. */
  candidateStats(): CandidateStats {
    return { accepted: this.candidates.accepted, dropped: { ...this.candidates.dropped } };
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
   * Everything watching `source` now: viewers whose media comes from it and grid slots bound to
   * it (video slots, and audio slots bound on their own: the i-th audio slot of a session
   * follows its i-th video slot).
   */
  watchersOf(source: CameraId): SourceWatcher[] {
    const out: SourceWatcher[] = [];
    for (const viewer of this.backend.viewerList()) if (viewer.sourceId === source) out.push({ kind: "viewer", viewer });
    for (const session of this.backend.sessionList()) {
      const slots = session.slots();
      const videos = slots.filter((s) => s.kind === "video").length;
      let audio = 0;
      for (const s of slots) {
        const paired = s.kind === "audio" && audio++ < videos;
        if (s.camera === source && !paired) out.push({ kind: "slot", session, mid: s.mid });
      }
    }
    return out;
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

  /**
   * A viewer's trickled candidates (WHEP PATCH). The whole request is refused with
   * BadInputError, nothing applied, when it holds more than `maxPerRequest`, a candidate
   * that is not one (RFC 8839 §5.1), or one without a mid of the offer. Well-formed
   * candidates the rules refuse (names, refused ranges, TCP…) and those beyond the
   * viewer's `maxPerViewer` are dropped and counted. NotFoundError for an unknown viewer.
   */
  async addIceCandidates(id: ViewerId, list: readonly TrickledCandidate[]): Promise<{ accepted: number; dropped: CandidateDrops }> {
    const r = this.remote.get(id);
    if (!r) throw new NotFoundError("no such viewer");
    if (list.length > this.rules.maxPerRequest) throw new BadInputError(`too many ICE candidates (at most ${this.rules.maxPerRequest})`);
    const checked = list.map(({ candidate, mid }) => {
      if (mid === undefined) throw new BadInputError("ICE candidate without a=mid");
      if (!r.mids.has(mid)) throw new BadInputError("ICE candidate for an unknown mid");
      return { c: parseCandidate(candidate), mid };
    });
    const dropped = noCandidateDrops();
    let accepted = 0;
    for (const { c, mid } of checked) {
      let verdict: "accept" | CandidateDropReason = judgeCandidate(c, this.rules);
      if (verdict === "accept" && r.count >= this.rules.maxPerViewer) verdict = "excess";
      if (verdict !== "accept") {
        dropped[verdict]++;
        continue;
      }
      r.count++;
      accepted++;
      await this.backend.addIceCandidate(id, formatCandidate(c), mid);
    }
    this.count(accepted, dropped);
    return { accepted, dropped };
  }

  /** The client's ICE ufrag for a viewer, from its offer (a PATCH with another one is an ICE restart). */
  remoteIceUfrag(id: ViewerId): string | undefined {
    return this.remote.get(id)?.ufrag;
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

/** Loopback media sockets: loopback candidates are the only reachable ones. */
function isLoopbackAddress(address: string): boolean {
  return address === "localhost" || isLoopback(address);
}

/** UDP ports one viewer binds: one per address werift gathers on. */
function portsPerViewer(bindAddress: string): number {
  if (bindAddress !== "0.0.0.0" && bindAddress !== "::" && bindAddress !== "") return 1;
  const v6 = bindAddress === "::";
  let n = 0;
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (!a.internal && (a.family === "IPv6") === v6) n++;
  return Math.max(1, n);
}
