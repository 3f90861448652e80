/**
 * The lifecycle of ONE camera's pull: on demand (start with the first viewer, stop
 * `rtsp.idleStopSeconds` after the last leaves) or always on; reconnect with capped
 * exponential backoff and jitter, reset once a session has played stably.
 *
 * State per camera only: one camera's failure never touches another (the UDP port pool
 * is the one shared object). Timers, clock, randomness and the RTSP client are injected,
 * so backoff and idle stop are tested without sleeping.
 */
import { ClosedError, isGatehouseError, UpstreamError, type GatehouseError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig, Config } from "../../config/schema.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import {
  RtspClient,
  type PlaySession,
  type ProbeResult,
  type RtspClientEvents,
  type RtspClientOptions,
  type RtspClientStats,
} from "../rtsp/client.ts";
import { isPermanent, RecorderPolicyError, RtspStatusError, UnplayableError, UpstreamLostError } from "../rtsp/status.ts";
import { realTimers, type TimerHandle, type Timers } from "../rtsp/timers.ts";
import { backoffDelay } from "./backoff.ts";
import { CameraStateMachine, type CameraStatus } from "./camera-state.ts";
import type { UdpPortPool } from "./udp-ports.ts";

/** What CameraIngest needs of an RTSP client (tests substitute a fake). */
export interface IngestClient {
  start(): Promise<PlaySession>;
  close(reason?: string): Promise<void>;
  stats(): RtspClientStats;
  readonly events: Pick<SafeEmitter<RtspClientEvents>, "on">;
  /** Connect + DESCRIBE only, for the light check of idle cameras (absent: no checks). */
  probe?(): Promise<ProbeResult>;
}

export interface CameraIngestOptions {
  camera: CameraConfig;
  rtsp: Config["rtsp"];
  sink: MediaSink;
  log: Logger;
  ports: UdpPortPool;
  timers?: Timers;
  /** Uniform in [0, 1), for backoff jitter. Default Math.random. */
  random?: () => number;
  /** A session that played this long resets the backoff, ms. Default 10000. */
  stableMs?: number;
  /** Which convertible codecs (AAC, H.265) to pull, asked at each DESCRIBE (gateway/transcode/). Default: none. */
  convert?: RtspClientOptions["convert"];
  /** Builds the RTSP client of each attempt. Default: a real RtspClient. */
  createClient?: (opts: RtspClientOptions) => IngestClient;
}

/** `disabled` is the camera registry's (a camera the supervisor stopped), never the ingest's own. */
export type IngestState = "idle" | "connecting" | "playing" | "backoff" | "failed" | "disabled";

export interface IngestStatus {
  state: IngestState;
  /** Why the camera is not playing (last failure, or "idle: …"). */
  reason?: string;
  /** When the state was entered, epoch ms. */
  since: number;
  /** Reconnect attempts since the ingest was created. */
  reconnects: number;
  /** RTP packets and bytes received, all sessions together. */
  packetsIn: number;
  bytesIn: number;
  /** Malformed input dropped (bad interleaved channel, garbage RTP/RTCP), all sessions together. */
  malformed: number;
  /** The most recent failure, kept after a successful reconnect (for diagnostics). */
  lastError?: string;
  /** Tracks of the current (or last) session, as given to the sink. */
  tracks: TrackSpec[];
  /** Media the recorder offers that are not forwarded, with reasons (e.g. H.265). */
  unsupported: { type: string; reason: string; passthrough?: "H265" }[];
  /** RTSP sessions this ingest holds on the recorder right now (0 or 1: one pull per camera). */
  recorderSessions: number;
  /** Transport of the current session. */
  transport?: "tcp" | "udp";
  /** Delay before the next attempt, ms, while in backoff/failed. */
  retryInMs?: number;
  /** What a person is told (camera-state.ts): live, reconnecting, offline… with reasons in plain words. */
  camera: CameraStatus;
}

export type CameraIngestEvents = {
  state: [IngestStatus];
};

export class CameraIngest {
  readonly events: SafeEmitter<CameraIngestEvents>;
  private readonly opts: CameraIngestOptions;
  private readonly log: Logger;
  private readonly timers: Timers;
  private readonly createClient: (opts: RtspClientOptions) => IngestClient;
  private state: IngestState = "idle";
  private reason: string | undefined = "idle: no viewers";
  private since: number;
  private viewers = 0;
  /** Pulled whether watched or not (`alwaysOn`, or held so by the cluster's lease). */
  private keepOn: boolean;
  private closed = false;
  private client: IngestClient | undefined;
  private generation = 0;
  private attempt = 0;
  private reconnects = 0;
  private retryInMs: number | undefined;
  private idleTimer: TimerHandle | undefined;
  private retryTimer: TimerHandle | undefined;
  private stableTimer: TimerHandle | undefined;
  private playing: PlaySession | undefined;
  private lastSession: PlaySession | undefined;
  private lastError: string | undefined;
  private lastLoggedFailure: string | undefined;
  /** `auto` transport: UDP delivered nothing once, so later attempts use TCP. */
  private preferTcp = false;
  private totals = { packetsIn: 0, bytesIn: 0, malformed: 0 };
  private closing: Promise<void> | undefined;
  private readonly machine: CameraStateMachine;
  private checkTimer: TimerHandle | undefined;
  private checking: IngestClient | undefined;
  /** Unplayable media found by the last light check (idle cameras). */
  private checkedUnsupported: IngestStatus["unsupported"] | undefined;
  /** Told when a pull or light check ends its attempt to read the stream description (whenDescribed). */
  private readonly describeWaiters = new Set<() => void>();

  constructor(opts: CameraIngestOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.timers = opts.timers ?? realTimers;
    this.createClient = opts.createClient ?? ((o) => new RtspClient(o));
    this.since = this.timers.now();
    this.machine = new CameraStateMachine(() => this.timers.now());
    this.events = new SafeEmitter<CameraIngestEvents>((event, err) => this.log.error("ingest listener failed", { event, err }));
    this.keepOn = opts.camera.alwaysOn;
    if (this.keepOn) {
      this.reason = undefined;
      this.connect();
    } else {
      // The first light check soon after start (spread over a second), then every interval.
      this.armCheck(Math.round((opts.random ?? Math.random)() * 1000));
    }
  }

  /**
   * Pull whether watched or not (`alwaysOn`), or only on demand again. In a cluster only the node
   * holding the camera's lease keeps an `alwaysOn` camera pulled (gateway/cluster/always-on.ts).
   */
  setAlwaysOn(on: boolean): void {
    if (this.closed || on === this.keepOn) return;
    this.keepOn = on;
    if (on) {
      this.clearIdle();
      this.timers.clearTimeout(this.checkTimer);
      this.checkTimer = undefined;
      if (this.state === "idle") this.connect();
      return;
    }
    if (this.viewers === 0 && this.state !== "idle") this.armIdle();
    this.armCheck(this.checkIntervalMs());
  }

  /** Whether the recorder's stream description (its media and codecs) is known: from a pull, or from the last light check. */
  described(): boolean {
    return this.lastSession !== undefined || this.checkedUnsupported !== undefined;
  }

  /**
   * Resolves true once the stream description is known; false after `timeoutMs`, or as soon as
   * the pull or light check under way fails (nothing more to learn by waiting). An idle camera
   * is checked at once rather than at its next light check.
   */
  whenDescribed(timeoutMs: number): Promise<boolean> {
    if (this.described()) return Promise.resolve(true);
    if (this.closed || timeoutMs <= 0) return Promise.resolve(false);
    if (this.state === "idle" && !this.checking) {
      this.timers.clearTimeout(this.checkTimer);
      this.checkTimer = undefined;
      void this.check();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        this.describeWaiters.delete(done);
        this.timers.clearTimeout(timer);
        resolve(this.described());
      };
      const timer = this.timers.setTimeout(done, timeoutMs);
      this.describeWaiters.add(done);
    });
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof CameraIngestEvents>(event: K, fn: (...args: CameraIngestEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /** Viewer count from the SFU: 0→>0 starts (cancelling an idle stop), >0→0 arms the idle stop. */
  setDemand(viewers: number): void {
    if (this.closed) return;
    const prev = this.viewers;
    this.viewers = Math.max(0, Math.floor(viewers) || 0);
    if (this.viewers > 0) {
      this.clearIdle();
      if (this.state === "idle") this.connect();
      else if (this.state === "backoff" && prev === 0) this.retrySoon();
      return;
    }
    if (prev > 0 && !this.keepOn && this.state !== "idle") this.armIdle();
  }

  status(): IngestStatus {
    const live = this.client?.stats();
    const session = this.playing ?? this.lastSession;
    const s: IngestStatus = {
      state: this.state,
      since: this.since,
      reconnects: this.reconnects,
      packetsIn: this.totals.packetsIn + (live?.packetsIn ?? 0),
      bytesIn: this.totals.bytesIn + (live?.bytesIn ?? 0),
      malformed: this.totals.malformed + (live?.malformed ?? 0),
      tracks: session?.specs ?? [],
      unsupported: session
        ? session.unsupported.map(unsupportedView)
        : (this.checkedUnsupported ?? []),
      recorderSessions: this.playing ? 1 : 0,
      camera: this.machine.status(),
    };
    if (this.reason !== undefined) s.reason = this.reason;
    if (this.lastError !== undefined) s.lastError = this.lastError;
    if (this.playing) s.transport = this.playing.transport;
    if (this.retryInMs !== undefined) s.retryInMs = this.retryInMs;
    return s;
  }

  /** Stops pulling for good (TEARDOWN if playing); idempotent. */
  close(reason = "closed"): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.clearIdle();
    this.timers.clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    void this.checking?.close(reason);
    this.describeAttemptEnded();
    this.closing = this.stop(reason, "debug").then(() => this.events.removeAllListeners());
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close("disposed");
  }

  private wanted(): boolean {
    return !this.closed && (this.keepOn || this.viewers > 0 || this.idleTimer !== undefined);
  }

  private setState(state: IngestState, reason: string | undefined): void {
    if (state !== this.state) this.since = this.timers.now();
    this.state = state;
    this.reason = reason;
    this.events.emit("state", this.status());
  }

  private connect(): void {
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.retryInMs = undefined;
    const gen = ++this.generation;
    const { camera, rtsp } = this.opts;
    const transport = camera.transport === "auto" && this.preferTcp ? "tcp" : camera.transport;
    this.machine.attempt();
    this.setState("connecting", undefined);
    let client: IngestClient;
    try {
      client = this.createClient({
        url: camera.url,
        username: camera.username,
        password: camera.password,
        transport,
        tlsInsecure: camera.tlsInsecure,
        basicOverPlainRtsp: camera.basicOverPlainRtsp,
        redirectHosts: camera.redirectHosts,
        convert: this.opts.convert,
        requestTimeoutMs: rtsp.requestTimeoutMs,
        mediaTimeoutMs: rtsp.mediaTimeoutMs,
        ports: this.opts.ports,
        log: this.log.child({ attempt: this.reconnects }),
        timers: this.timers,
        sink: this.opts.sink,
        onPlay: (session) => this.onPlay(gen, session),
      });
    } catch (err) {
      this.onFailure(gen, err);
      return;
    }
    this.client = client;
    client.events.on("ended", (err) => this.onFailure(gen, err));
    client.start().catch((err: unknown) => this.onFailure(gen, err));
  }

  /** Synchronous, from inside the client, before any packet reaches the sink. */
  private onPlay(gen: number, session: PlaySession): void {
    if (gen !== this.generation || this.closed) return;
    this.playing = session;
    this.lastSession = session;
    this.lastLoggedFailure = undefined;
    this.opts.sink.setTracks(session.specs);
    this.machine.live();
    this.setState("playing", undefined);
    this.describeAttemptEnded();
    this.timers.clearTimeout(this.stableTimer);
    this.stableTimer = this.timers.setTimeout(() => {
      this.stableTimer = undefined;
      if (gen === this.generation) this.attempt = 0; // playing stably: the next failure starts over at min delay
    }, this.opts.stableMs ?? 10_000);
  }

  private onFailure(gen: number, raw: unknown): void {
    if (gen !== this.generation || this.closed) return;
    this.generation++; // later callbacks of this attempt are stale
    const err = toError(raw);
    const client = this.client;
    this.client = undefined;
    const stats = client?.stats();
    this.addTotals(stats);
    void client?.close(err.message);
    this.timers.clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
    const wasPlaying = this.playing;
    this.playing = undefined;
    if (wasPlaying) {
      // Viewers learn it now, before anything else: the SFU stops serving cached frames.
      this.opts.sink.upstreamDown(err.message);
      this.machine.lost(err);
      if (this.opts.camera.transport === "auto" && wasPlaying.transport === "udp" && stats?.packetsIn === 0) {
        this.log.info("no media over UDP; switching to TCP interleaved", {});
        this.preferTcp = true;
      }
    }
    else this.machine.failed(err);
    this.lastError = err.message;
    this.describeAttemptEnded();
    if (!this.wanted()) {
      this.machine.idle();
      this.setState("idle", "idle: no viewers");
      this.armCheck(this.checkIntervalMs());
      return;
    }
    const permanent = isPermanent(err);
    const { reconnectMinMs, reconnectMaxMs, watchedRetryMaxMs } = this.opts.rtsp;
    let delay = permanent
      ? reconnectMaxMs
      : backoffDelay(this.attempt++, { minMs: reconnectMinMs, maxMs: reconnectMaxMs, random: this.opts.random });
    // Someone is looking at this camera: keep retrying often, so it is back within moments of the recorder.
    if (!permanent && this.viewers > 0) delay = Math.min(delay, watchedRetryMaxMs);
    // One warning per distinct failure; repeats are debug so a dead camera does not flood the log.
    const key = failureKey(err);
    const level = this.lastLoggedFailure === key ? "debug" : "warn";
    this.lastLoggedFailure = key;
    this.log[level]("camera ingest failed; will retry", { reason: err.message, code: err.code, retryInMs: delay });
    this.retryInMs = delay;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.wanted()) {
        this.machine.idle();
        this.setState("idle", "idle: no viewers");
        this.armCheck(this.checkIntervalMs());
        return;
      }
      this.reconnects++;
      this.connect();
    }, delay);
    this.setState(permanent ? "failed" : "backoff", err.message);
  }

  private armIdle(): void {
    this.clearIdle();
    const ms = this.opts.rtsp.idleStopSeconds * 1000;
    this.idleTimer = this.timers.setTimeout(() => {
      this.idleTimer = undefined;
      if (this.viewers > 0 || this.keepOn || this.closed) return;
      void this.stop(`idle: no viewers for ${this.opts.rtsp.idleStopSeconds} s`, "info");
    }, ms);
  }

  private clearIdle(): void {
    this.timers.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Ends any attempt or session (TEARDOWN when playing) and goes idle. */
  private async stop(reason: string, level: "debug" | "info"): Promise<void> {
    this.generation++;
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.stableTimer);
    this.retryTimer = this.stableTimer = undefined;
    this.retryInMs = undefined;
    this.attempt = 0;
    const client = this.client;
    this.client = undefined;
    const wasPlaying = this.playing;
    this.playing = undefined;
    if (wasPlaying) this.opts.sink.upstreamDown(reason);
    this.machine.idle();
    if (this.state !== "idle") this.setState("idle", reason);
    if (!this.closed) this.armCheck(this.checkIntervalMs());
    if (client) {
      this.addTotals(client.stats());
      await client.close(reason);
    }
    this.log[level]("camera ingest stopped", { reason });
  }

  /** A first viewer arrived while an unwatched camera waits out a long backoff: try again now-ish. */
  private retrySoon(): void {
    const delay = Math.min(this.retryInMs ?? 0, this.opts.rtsp.watchedRetryMaxMs);
    if (this.retryTimer === undefined || (this.retryInMs ?? 0) <= delay) return;
    this.timers.clearTimeout(this.retryTimer);
    this.retryInMs = delay;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.wanted()) return;
      this.reconnects++;
      this.connect();
    }, delay);
  }

  private checkIntervalMs(): number {
    return this.opts.rtsp.checkIntervalSeconds * 1000;
  }

  /** Schedules the light check of an idle camera (connect + DESCRIBE, no session) in `ms`. */
  private armCheck(ms: number): void {
    this.timers.clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    if (this.closed || this.keepOn || this.opts.rtsp.checkIntervalSeconds <= 0) return;
    this.checkTimer = this.timers.setTimeout(() => {
      this.checkTimer = undefined;
      void this.check();
    }, ms);
  }

  private async check(): Promise<void> {
    if (this.closed || this.checking) return;
    if (this.state !== "idle") {
      this.armCheck(this.checkIntervalMs()); // pulling tells us everything; look again later
      return;
    }
    const { camera, rtsp } = this.opts;
    let client: IngestClient;
    try {
      client = this.createClient({
        url: camera.url,
        username: camera.username,
        password: camera.password,
        transport: camera.transport,
        tlsInsecure: camera.tlsInsecure,
        convert: this.opts.convert,
        requestTimeoutMs: rtsp.requestTimeoutMs,
        mediaTimeoutMs: rtsp.mediaTimeoutMs,
        log: this.log.child({ check: true }),
        timers: this.timers,
        sink: { pushRtp: () => {}, pushRtcp: () => {} },
      });
    } catch (err) {
      if (this.machine.checked(toError(err))) this.events.emit("state", this.status());
      this.armCheck(this.checkIntervalMs());
      return;
    }
    if (!client.probe) return;
    this.checking = client;
    let error: GatehouseError | undefined;
    try {
      const found = await client.probe();
      this.checkedUnsupported = found.unsupported.map(unsupportedView);
      if (found.specs.length === 0) error = toError(new UnplayableError(`no playable track: ${found.unsupported.map((u) => u.reason).join("; ")}`));
    } catch (err) {
      error = toError(err);
    } finally {
      this.checking = undefined;
      this.describeAttemptEnded();
    }
    if (this.closed) return;
    if (error && error.code === "CLOSED") return;
    this.log.debug("camera checked", { ok: !error, reason: error?.message });
    if (this.machine.checked(error)) this.events.emit("state", this.status());
    this.armCheck(this.checkIntervalMs());
  }

  private describeAttemptEnded(): void {
    for (const w of [...this.describeWaiters]) w();
  }

  private addTotals(s: RtspClientStats | undefined): void {
    if (!s) return;
    this.totals.packetsIn += s.packetsIn;
    this.totals.bytesIn += s.bytesIn;
    this.totals.malformed += s.malformed;
  }
}

function toError(err: unknown): GatehouseError {
  if (isGatehouseError(err)) return err;
  if (err instanceof Error) return new UpstreamError(err.message, { cause: err });
  return new ClosedError(String(err));
}

/**
 * What makes two failures "the same one again" for the log: their class, category and typed
 * details (RTSP status, loss signal, refused policy, socket error), never their text.
 */
export function failureKey(err: GatehouseError): string {
  const parts: string[] = [err.constructor.name, err.code];
  if (err instanceof RtspStatusError) parts.push(err.method, String(err.status));
  if (err instanceof UpstreamLostError) parts.push(err.signal);
  if (err instanceof RecorderPolicyError) parts.push(err.policy);
  const sys = (err.cause as { code?: unknown } | undefined)?.code;
  if (typeof sys === "string") parts.push(sys);
  return parts.join(":");
}

/** What the status says of media left out (or pulled only for viewers that can play it). */
function unsupportedView(u: { type: string; reason: string; passthrough?: "H265" | undefined }): IngestStatus["unsupported"][number] {
  return u.passthrough ? { type: u.type, reason: u.reason, passthrough: u.passthrough } : { type: u.type, reason: u.reason };
}
