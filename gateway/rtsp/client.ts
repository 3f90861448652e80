/**
 * RTSP 1.0 client (RFC 2326) pulling one stream from a recorder: OPTIONS, DESCRIBE,
 * SETUP per track (TCP interleaved or UDP), PLAY, keep-alive, TEARDOWN; Digest/Basic
 * authentication, bounded redirects, rtsps:// over TLS, request and media timeouts, and
 * RTCP receiver reports back to the recorder.
 *
 * One RtspClient = one attempt. `start()` resolves once playing (after `onPlay`), or
 * rejects with the reason; a playing session that dies emits `ended` once. Retrying is
 * the caller's job (gateway/ingest/camera-ingest.ts). RTP/RTCP go to the sink unchanged.
 */
import { randomBytes } from "node:crypto";
import {
  AuthError,
  BadInputError,
  ClosedError,
  UpstreamError,
  isGatehouseError,
  type GatehouseError,
} from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import { compound, SdesItemType, serializeRr, serializeSdes } from "../../sfu/rtp/rtcp.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import type { UdpPortPool } from "../ingest/udp-ports.ts";
import { RtspConnection } from "./connection.ts";
import { createAuthorizer, isStale, parseChallenges, pickChallenge, type Authorizer, type Credentials } from "../digest/client.ts";
import { formatTransport, parsePublic, parseSession, parseTransport, type TransportSpec } from "./headers.ts";
import { MediaRouter, type RouterStats } from "./media-router.ts";
import { RtspHeaders, interleavedFrame, type RtspResponse } from "./message.ts";
import { baseUrl, parseSdp, planTracks, type ConvertibleCodecs, type IngestTrack, type UnsupportedMedia } from "./sdp.ts";
import { RecorderPolicyError, UnplayableError, UpstreamLostError, isRedirect, responseError } from "./status.ts";
import { realTimers, type TimerHandle, type Timers } from "./timers.ts";
import { UdpMediaPair } from "./udp-media.ts";
import { parseRtspUrl, redirectAllowed, sameOrigin, type RtspUrl } from "./url.ts";

export interface RtspClientOptions {
  /** Which convertible codecs (AAC, H.265) to pull, asked at each DESCRIBE. Default: none. */
  convert?: () => ConvertibleCodecs;
  /** rtsp:// or rtsps:// URL; may carry `user:password@` (percent-encoded). */
  url: string;
  /** Overrides the URL's user name. */
  username?: string | undefined;
  /** Overrides the URL's password. */
  password?: string | undefined;
  /** `tcp` interleaved, `udp`, or `auto` (TCP interleaved; UDP when the recorder answers 461 Unsupported Transport). */
  transport: "tcp" | "udp" | "auto";
  /** Accept any certificate from an rtsps:// recorder. Default false (fail closed). */
  tlsInsecure?: boolean | undefined;
  /** Timeout of each request (and of connecting), ms. */
  requestTimeoutMs: number;
  /** No RTP for this long while playing ends the session, ms. */
  mediaTimeoutMs: number;
  /** Client port pairs; required for UDP. */
  ports?: UdpPortPool | undefined;
  /** SO_RCVBUF for UDP media sockets, bytes. Default 4 MiB. */
  recvBufferSize?: number;
  /** Redirects followed (301/302/303/305/307). Default 3. */
  maxRedirects?: number;
  /** Hosts besides the camera's own that a redirect may lead to (names or IP literals, as written). Default none. */
  redirectHosts?: readonly string[] | undefined;
  /** Answer a Basic challenge over plain rtsp:// (the password crosses the network in clear). Default false: refused. */
  basicOverPlainRtsp?: boolean | undefined;
  userAgent?: string;
  log: Logger;
  timers?: Timers;
  /** Where RTP/RTCP go, track index = position in `PlaySession.tracks`. */
  sink: Pick<MediaSink, "pushRtp" | "pushRtcp">;
  /** Called synchronously once PLAY succeeded, before the first packet reaches the sink. */
  onPlay?: (session: PlaySession) => void;
  /** Client nonce source for Digest (tests). */
  cnonce?: () => string;
  /**
   * Mean interval of the RTCP receiver reports sent to the recorder, ms (each randomized
   * to 0.5–1.5 times it, RFC 3550 §6.3.1). Default 5000, the RFC's minimum; 0 sends none.
   */
  rtcpIntervalMs?: number;
  /**
   * An RTSP option tag the recorder must support (RFC 2326 §12.32), sent with DESCRIBE,
   * SETUP, PLAY and PAUSE: `onvif-replay` for recorder playback. Default none.
   */
  require?: string | undefined;
  /** Headers of the first PLAY instead of `Range: npt=0.000-` (a replay's clock range, Scale…). */
  playHeaders?: Record<string, string> | undefined;
}

export interface PlaySession {
  /** Tracks being pulled, in sink order. */
  tracks: IngestTrack[];
  /** `tracks` as the sink sees them. */
  specs: TrackSpec[];
  /** Media the recorder offers that are not pulled, with reasons. */
  unsupported: UnsupportedMedia[];
  sessionId: string;
  /** Session timeout, seconds (RFC 2326 §12.37; 60 when not written). */
  timeoutSec: number;
  transport: "tcp" | "udp";
  /** The stream URL after redirects, without credentials. */
  url: string;
  /** Method used for keep-alive. */
  keepAlive: "GET_PARAMETER" | "OPTIONS";
  /** Authentication used, e.g. "digest MD5"; undefined when none was asked. */
  auth: string | undefined;
  /** The headers of the PLAY answer (Range, Scale, RTP-Info…); set by RtspClient, absent in test doubles. */
  playAnswer?: RtspHeaders;
}

/** What a probe found: the tracks a pull would forward and the media it would leave out, with reasons. */
export interface ProbeResult {
  specs: TrackSpec[];
  unsupported: UnsupportedMedia[];
  /** The stream URL after redirects, without credentials. */
  url: string;
}

export type RtspClientEvents = {
  /** A playing session ended (media timeout, connection lost, session expired). Not emitted after close(). */
  ended: [GatehouseError];
};

export interface RtspClientStats extends RouterStats {
  /** Responses that matched no request. */
  unmatchedResponses: number;
  keepAlives: number;
  /** RTCP receiver reports sent to the recorder (one per track and interval). */
  rtcpOut: number;
}

const DEFAULT_RECV_BUFFER = 4 << 20;

export class RtspClient {
  readonly events: SafeEmitter<RtspClientEvents>;
  private readonly opts: RtspClientOptions;
  private readonly log: Logger;
  private readonly timers: Timers;
  private readonly router: MediaRouter;
  private url: RtspUrl;
  /** The configured URL's host: redirects stay on it unless `redirectHosts` says otherwise. */
  private readonly cameraHost: string;
  private creds: Credentials | undefined;
  private conn: RtspConnection | undefined;
  private authorizer: Authorizer | undefined;
  private sessionId: string | undefined;
  private aggregateUrl = "";
  private udp: UdpMediaPair[] = [];
  private state: "new" | "starting" | "playing" | "ended" | "closed" = "new";
  private keepAliveTimer: TimerHandle | undefined;
  private reportTimer: TimerHandle | undefined;
  private rtcpOut = 0;
  /** Our SSRC as an RTP receiver (RFC 3550 §8.1: random), with its CNAME. */
  private readonly ssrc = randomBytes(4).readUInt32BE(0);
  private readonly cname = `gatehouse-${randomBytes(6).toString("hex")}`;
  private watchdogTimer: TimerHandle | undefined;
  private keepAlives = 0;
  private unmatchedBase = 0;
  private shutdownPromise: Promise<void> | undefined;
  private mediaExpected = true;
  private mediaHeld = false;

  constructor(opts: RtspClientOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.timers = opts.timers ?? realTimers;
    this.events = new SafeEmitter<RtspClientEvents>((event, err) => this.log.error("rtsp client listener failed", { event, err }));
    this.url = parseRtspUrl(opts.url);
    this.cameraHost = this.url.host;
    const username = opts.username ?? this.url.username;
    if (username !== undefined) this.creds = { username, password: opts.password ?? this.url.password ?? "" };
    this.router = new MediaRouter(opts.sink);
    let lastSinkLog = -Infinity;
    this.router.onSinkError = (err) => {
      const now = this.timers.now();
      if (now - lastSinkLog > 10_000) {
        lastSinkLog = now;
        this.log.error("media sink threw; packet dropped", { err });
      }
    };
    this.router.onBye = (track) =>
      this.end(new UpstreamLostError("rtcp-bye", `the recorder ended the stream (RTCP BYE on track ${track})`));
  }

  stats(): RtspClientStats {
    const s = this.router.stats;
    return {
      ...s,
      drops: { ...s.drops },
      unmatchedResponses: this.unmatchedBase + (this.conn?.unmatched ?? 0),
      keepAlives: this.keepAlives,
      rtcpOut: this.rtcpOut,
    };
  }

  /** Connects and plays; resolves once media may flow, rejects with UpstreamError/AuthError/ClosedError. */
  async start(): Promise<PlaySession> {
    if (this.state !== "new") throw new ClosedError("RtspClient.start() called twice or after close");
    this.state = "starting";
    try {
      return await this.run();
    } catch (err) {
      const e = asError(err);
      if (this.isClosed()) throw this.closedError(e);
      await this.shutdown(e.message);
      this.state = "ended";
      throw e;
    }
  }

  /** Ends the session: TEARDOWN (best effort, short timeout), then closes sockets. Idempotent. */
  close(reason = "closed"): Promise<void> {
    if (this.state !== "ended") this.state = "closed";
    return this.shutdown(reason);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close("disposed");
  }

  /** A method, so TypeScript does not narrow `state` across awaits. */
  private isClosed(): boolean {
    return this.state === "closed";
  }

  private closedError(cause: GatehouseError): GatehouseError {
    return cause instanceof ClosedError ? cause : new ClosedError("RTSP client closed", { cause });
  }

  /**
   * Checks the recorder without pulling anything: connect, OPTIONS, DESCRIBE (with
   * authentication and redirects), then close; no SETUP, so no session and no media.
   * Resolves with what could be played; rejects like start() would.
   */
  async probe(): Promise<ProbeResult> {
    if (this.state !== "new") throw new ClosedError("RtspClient.probe() after start or close");
    this.state = "starting";
    try {
      return await this.run(async (describe) => {
        const sdp = this.readSdp(describe);
        const plan = planTracks(sdp, baseUrl(this.url.href, describe.headers.get("Content-Base"), describe.headers.get("Content-Location")), this.opts.convert?.());
        return { specs: plan.tracks.map((t) => t.spec), unsupported: plan.unsupported, url: this.url.href };
      });
    } finally {
      if (!this.isClosed()) this.state = "ended";
      await this.shutdown("probe done");
    }
  }

  private async run<T = PlaySession>(
    then: (describe: RtspResponse, publicMethods: Set<string>) => Promise<T> = (d, p) => this.setupAndPlay(d, p) as Promise<T>,
  ): Promise<T> {
    const maxRedirects = this.opts.maxRedirects ?? 3;
    for (let redirects = 0; ; redirects++) {
      await this.connect();
      const options = await this.send("OPTIONS", this.url.href);
      if (isRedirect(options.status) && (await this.redirect(options, redirects, maxRedirects))) continue;
      const publicMethods = options.status < 300 ? parsePublic(options.headers.get("Public")) : new Set<string>();

      const describe = await this.send("DESCRIBE", this.url.href, { Accept: "application/sdp", ...this.required() });
      if (isRedirect(describe.status) && (await this.redirect(describe, redirects, maxRedirects))) continue;
      if (describe.status >= 300) throw responseError("DESCRIBE", describe.status, describe.reason);
      return await then(describe, publicMethods);
    }
  }

  private async connect(): Promise<void> {
    const { url } = this;
    if (url.tls && this.opts.tlsInsecure) this.log.warn("rtsps: certificate verification disabled (tlsInsecure)");
    const conn = await RtspConnection.open({
      endpoint: { host: url.host, port: url.port, tls: url.tls, tlsInsecure: this.opts.tlsInsecure === true },
      requestTimeoutMs: this.opts.requestTimeoutMs,
      log: this.log,
      timers: this.timers,
      userAgent: this.opts.userAgent ?? "Gatehouse",
      onInterleaved: (ch, data) => this.router.onInterleaved(ch, data),
    });
    if (this.isClosed()) {
      conn.close("closed while connecting");
      throw new ClosedError("closed while connecting");
    }
    this.conn = conn;
    conn.events.on("closed", (err) => this.onConnectionClosed(conn, err));
    conn.events.on("malformed", (err, fatal) => this.log.warn("malformed input from recorder", { reason: err.message, fatal }));
    conn.events.on("request", (req) => {
      if (req.method === "REDIRECT") this.end(new UpstreamLostError("redirect", "recorder sent REDIRECT"));
    });
  }

  /** Follows a 3xx (RFC 2326 §11.3) by reconnecting to Location; false when there is none. */
  private async redirect(res: RtspResponse, redirects: number, max: number): Promise<boolean> {
    const location = res.headers.get("Location");
    if (!location) return false;
    if (redirects >= max) throw new UpstreamError(`too many redirects (more than ${max})`);
    let next: RtspUrl;
    try {
      next = parseRtspUrl(new URL(location, this.url.href).href);
    } catch (err) {
      throw new UpstreamError(`redirect to an invalid location`, { cause: err });
    }
    if (this.url.tls && !next.tls) throw new UpstreamError("redirect from rtsps:// to rtsp:// refused");
    // A recorder must not be able to point the gateway at any host of the network.
    if (!redirectAllowed(this.cameraHost, next, this.opts.redirectHosts))
      throw new RecorderPolicyError("redirect_host", `redirect to another host (${next.host}) refused; list it in the camera's redirectHosts to allow it`);
    // Credentials follow a redirect only to the same host and port, unless the new URL carries its own.
    if (next.username !== undefined) this.creds = { username: next.username, password: next.password ?? "" };
    else if (!sameOrigin(this.url, next)) this.creds = undefined;
    this.log.info("rtsp redirect", { status: res.status, to: next.href });
    this.authorizer = undefined;
    const old = this.conn;
    this.conn = undefined;
    if (old) {
      this.unmatchedBase += old.unmatched;
      old.close("redirected");
    }
    this.url = next;
    return true;
  }

  private readSdp(describe: RtspResponse): ReturnType<typeof parseSdp> {
    const type = describe.headers.get("Content-Type");
    if (type !== undefined && !/^\s*application\/sdp\s*(;|$)/i.test(type))
      throw new UpstreamError(`DESCRIBE answer is ${type}, not application/sdp`);
    try {
      return parseSdp(describe.body.toString("utf8"));
    } catch (err) {
      throw new UnplayableError(`recorder's SDP is unusable: ${(err as Error).message}`, { cause: err });
    }
  }

  private async setupAndPlay(describe: RtspResponse, publicMethods: Set<string>): Promise<PlaySession> {
    const sdp = this.readSdp(describe);
    const base = baseUrl(this.url.href, describe.headers.get("Content-Base"), describe.headers.get("Content-Location"));
    const plan = planTracks(sdp, base, this.opts.convert?.());
    for (const u of plan.unsupported) this.log.info("media not pulled", { media: u.mediaIndex, type: u.type, reason: u.reason });
    if (plan.tracks.length === 0)
      throw new UnplayableError(
        `no playable track${plan.unsupported.length ? ": " + plan.unsupported.map((u) => u.reason).join("; ") : ""}`,
      );
    this.aggregateUrl = plan.aggregateUrl;

    // `auto` starts with interleaved TCP: it passes every NAT and firewall the RTSP connection does.
    let mode: "tcp" | "udp" = this.opts.transport === "udp" ? "udp" : "tcp";
    let timeoutSec = 60;
    for (let i = 0; i < plan.tracks.length; i++) {
      const t = plan.tracks[i]!;
      let res = await this.setupTrack(i, t, mode);
      // RFC 2326 §11.3.12 461 Unsupported Transport: in auto mode fall back to UDP (VLC and many UDP-only devices).
      if (res.status === 461 && this.opts.transport === "auto" && mode === "tcp" && i === 0) {
        this.log.info("recorder refused TCP interleaved, using UDP");
        mode = "udp";
        res = await this.setupTrack(i, t, mode);
      }
      if (res.status >= 300) throw responseError("SETUP", res.status, res.reason);
      const session = parseSession(res.headers.get("Session") ?? "");
      if (!session) throw new UpstreamError("SETUP answer has no valid Session header");
      if (this.sessionId === undefined) {
        this.sessionId = session.id;
        timeoutSec = session.timeout;
      } else if (session.id !== this.sessionId) {
        this.log.warn("recorder changed the session id between SETUPs", {});
      }
      mode = this.applyTransport(i, t, mode, res);
      this.router.receive(i, t.spec.clockRate);
    }

    const play = await this.playAggregateOrEach(plan.tracks);
    if (play.status >= 300) throw responseError("PLAY", play.status, play.reason);
    if (this.isClosed()) throw new ClosedError("closed during PLAY");

    const session: PlaySession = {
      tracks: plan.tracks,
      specs: plan.tracks.map((t) => t.spec),
      unsupported: plan.unsupported,
      sessionId: this.sessionId!,
      timeoutSec,
      transport: mode,
      url: this.url.href,
      keepAlive: publicMethods.has("GET_PARAMETER") ? "GET_PARAMETER" : "OPTIONS",
      auth: this.authorizer?.description,
      playAnswer: play.headers,
    };
    this.state = "playing";
    try {
      this.opts.onPlay?.(session);
    } catch (err) {
      this.log.error("onPlay handler failed", { err });
    }
    this.router.start();
    this.scheduleKeepAlive(session);
    this.scheduleReports(session);
    this.armWatchdog();
    this.log.info("rtsp playing", {
      url: session.url,
      transport: mode,
      tracks: session.specs.map((s) => `${s.codec}/${s.payloadType}`),
      timeout: timeoutSec,
      auth: session.auth,
    });
    return session;
  }

  private async setupTrack(i: number, t: IngestTrack, mode: "tcp" | "udp"): Promise<RtspResponse> {
    if (mode === "tcp") {
      const interleaved = requestedChannels(i, this.router);
      return this.send("SETUP", t.controlUrl, { Transport: formatTransport({ lower: "TCP", interleaved }), ...this.required() });
    }
    if (!this.opts.ports) throw new BadInputError("UDP transport needs a client port pool");
    const conn = this.conn!;
    const pair = await UdpMediaPair.open({
      pool: this.opts.ports,
      family: conn.remoteFamily,
      bindAddress: conn.localAddress || (conn.remoteFamily === 6 ? "::" : "0.0.0.0"),
      recvBufferSize: this.opts.recvBufferSize ?? DEFAULT_RECV_BUFFER,
      log: this.log,
      onRtp: (p) => this.router.onRtp(i, p),
      onRtcp: (p) => this.router.onRtcp(i, p),
      onForeign: () => this.router.foreign(),
    });
    if (this.isClosed()) {
      pair.close();
      throw new ClosedError("closed during SETUP");
    }
    this.udp[i] = pair;
    if (i === 0) this.log.debug("udp media sockets", { rtp: pair.rtpPort, recvBuffer: pair.recvBufferSize });
    return this.send("SETUP", t.controlUrl, {
      Transport: formatTransport({ lower: "UDP", clientPort: [pair.rtpPort, pair.rtcpPort] }),
      ...this.required(),
    });
  }

  /** Reads the server's Transport answer (it may change channels or ports) and wires media. */
  private applyTransport(i: number, t: IngestTrack, mode: "tcp" | "udp", res: RtspResponse): "tcp" | "udp" {
    const value = res.headers.get("Transport");
    const tr: TransportSpec | undefined = value ? parseTransport(value) : undefined;
    if (value && !tr) throw new UpstreamError(`SETUP answer has an unreadable Transport: ${value.slice(0, 80)}`);
    if (tr && !tr.unicast) throw new UpstreamError("recorder answered with multicast transport");
    const conn = this.conn!;
    if (mode === "tcp" || tr?.lower === "TCP") {
      if (mode === "udp") {
        // The server chose interleaved TCP although we offered UDP (allowed by §12.39).
        this.udp[i]?.close();
        delete this.udp[i];
      }
      const [rtp, rtcp] = tr?.interleaved ?? requestedChannels(i, this.router);
      if (this.router.channelInUse(rtp) || this.router.channelInUse(rtcp))
        throw new UpstreamError(`recorder assigned interleaved channels ${rtp}-${rtcp} twice`);
      this.router.mapChannels(i, rtp, rtcp);
      return "tcp";
    }
    const pair = this.udp[i]!;
    pair.setServer(conn.remoteAddress, tr?.serverPort, tr?.source);
    pair.punch(t.spec.payloadType);
    return "udp";
  }

  /** RFC 2326 §9 aggregate control; 459 means the server wants per-track PLAY. */
  private async playAggregateOrEach(tracks: IngestTrack[]): Promise<RtspResponse> {
    const headers = { ...(this.opts.playHeaders ?? { Range: "npt=0.000-" }), ...this.required() };
    const res = await this.send("PLAY", this.aggregateUrl, headers);
    if (res.status !== 459) return res;
    let last = res;
    for (const t of tracks) {
      last = await this.send("PLAY", t.controlUrl, headers);
      if (last.status >= 300) return last;
    }
    return last;
  }

  private required(): Record<string, string> {
    return this.opts.require ? { Require: this.opts.require } : {};
  }

  /**
   * A PLAY (seek, speed) or PAUSE on the playing session (RFC 2326 §10.5, §10.6), with
   * `require` added. Resolves with the answer, whatever its status (the caller decides
   * what a 4xx means); rejects with ClosedError/UpstreamError when the connection fails.
   * While `expectMedia(false)` (paused) the media watchdog does not end the session.
   */
  async control(method: "PLAY" | "PAUSE", headers: Record<string, string> = {}): Promise<RtspResponse> {
    if (this.state !== "playing") throw new ClosedError(`RTSP session not playing (${this.state})`);
    return this.send(method, this.aggregateUrl, { ...headers, ...this.required() });
  }

  /**
   * Holds the recorder back by TCP flow control (interleaved transport only): true stops
   * reading its connection, false reads again. Every request (controls, keep-alive) reads
   * again by itself, since its answer comes on the same connection.
   */
  holdMedia(hold: boolean): void {
    this.mediaHeld = hold;
    this.conn?.holdReading(hold);
  }

  /** Whether `holdMedia(true)` is in force. */
  get held(): boolean {
    return this.mediaHeld;
  }

  /** Whether silence ends the session: false while paused or at the end of a recording. */
  expectMedia(on: boolean): void {
    this.mediaExpected = on;
  }

  /**
   * Sends a request with Session and Authorization; answers a 401 with the strongest
   * challenge we support (RFC 7616 §3.7) and retries. A fresh authorizer rejected again
   * without `stale=true` means wrong credentials.
   */
  private async send(method: string, uri: string, extra: Record<string, string> = {}): Promise<RtspResponse> {
    const conn = this.conn;
    if (!conn) throw new ClosedError("no RTSP connection");
    // An answer cannot be read from a held connection: read again (the owner holds it back again if need be).
    if (this.mediaHeld) this.holdMedia(false);
    let fresh = false;
    for (let attempt = 0; attempt < 4; attempt++) {
      const headers = new RtspHeaders(extra);
      if (this.sessionId !== undefined) headers.set("Session", this.sessionId);
      if (this.authorizer) headers.set("Authorization", this.authorizer.authorize(method, uri));
      const res = await conn.request(method, uri, headers);
      if (res.status !== 401) return res;
      const challenges = parseChallenges(res.headers.getAll("WWW-Authenticate"));
      if (!this.creds) throw new AuthError("UNAUTHORIZED", `${method}: recorder requires credentials and none are configured`);
      const chosen = pickChallenge(challenges);
      if (!chosen) {
        const offered = [...new Set(challenges.map((c) => c.scheme))].join(", ") || "none";
        throw new AuthError("UNAUTHORIZED", `${method}: no supported authentication scheme offered (${offered})`);
      }
      if (fresh && !isStale(chosen)) throw responseError(method, 401, res.reason, "wrong user name or password");
      if (chosen.scheme === "basic" && !this.url.tls && this.opts.basicOverPlainRtsp !== true)
        throw new RecorderPolicyError(
          "basic_over_plain_rtsp",
          `${method}: the recorder asks for Basic authentication over plain rtsp://, which would send the password in clear; refused ` +
            "(use rtsps://, turn on Digest at the recorder, or set basicOverPlainRtsp for this camera)",
        );
      this.authorizer = createAuthorizer(chosen, this.creds, this.opts.cnonce ? { cnonce: this.opts.cnonce } : {});
      fresh = true;
    }
    throw responseError(method, 401, "Unauthorized", "the recorder kept sending stale nonces");
  }

  private scheduleKeepAlive(session: PlaySession): void {
    let method = session.keepAlive;
    // RFC 2326 §12.37: refresh before the timeout; half of it leaves room for a slow answer.
    const interval = Math.max(1000, (session.timeoutSec * 1000) / 2);
    const tick = async (): Promise<void> => {
      if (this.state !== "playing") return;
      try {
        const res = await this.send(method, this.aggregateUrl);
        this.keepAlives++;
        if (res.status === 454) {
          this.end(new UpstreamLostError("session-error", "session expired on the recorder (454 Session Not Found)"));
          return;
        }
        if (res.status >= 300 && method === "GET_PARAMETER") {
          this.log.info("GET_PARAMETER keep-alive refused; using OPTIONS", { status: res.status });
          method = "OPTIONS";
        }
      } catch (err) {
        if (this.state !== "playing") return;
        // A recorder that no longer answers its control connection is gone, whatever media is still queued.
        this.end(new UpstreamLostError("session-error", `keep-alive failed: ${asError(err).message}`, { cause: err }));
        return;
      }
      if (this.state === "playing") this.keepAliveTimer = this.timers.setTimeout(() => void tick(), interval);
    };
    this.keepAliveTimer = this.timers.setTimeout(() => void tick(), interval);
  }

  /**
   * RTCP receiver reports to the recorder (RFC 3550 §6.4.2), one compound per track
   * (RR with its report block, then SDES CNAME), over the track's interleaved RTCP
   * channel or from its UDP RTCP socket. Recorders use them as liveness and to see our
   * loss and jitter; some end UDP sessions that send none.
   */
  private scheduleReports(session: PlaySession): void {
    const mean = this.opts.rtcpIntervalMs ?? 5000;
    if (mean <= 0) return;
    const next = () => {
      this.reportTimer = this.timers.setTimeout(tick, mean * (0.5 + Math.random()));
    };
    const tick = (): void => {
      if (this.state !== "playing") return;
      const now = performance.now();
      for (let i = 0; i < session.tracks.length; i++) {
        const block = this.router.reception(i)?.reportBlock(now);
        const report = compound([
          serializeRr({ ssrc: this.ssrc, reports: block ? [block] : [] }),
          serializeSdes([{ ssrc: this.ssrc, items: [{ type: SdesItemType.CNAME, value: this.cname }] }]),
        ]);
        const channel = this.router.rtcpChannel(i);
        if (channel !== undefined) this.conn?.write(interleavedFrame(channel, report));
        else if (!this.udp[i]?.sendRtcp(report)) continue;
        this.rtcpOut++;
      }
      next();
    };
    next();
  }

  /** Ends the session when no RTP arrived for mediaTimeoutMs (checked in quarters, no per-packet timer). */
  private armWatchdog(): void {
    const step = Math.max(25, this.opts.mediaTimeoutMs / 4);
    let last = this.router.stats.packetsIn;
    let quiet = 0;
    const check = (): void => {
      if (this.state !== "playing") return;
      const now = this.router.stats.packetsIn;
      quiet = now === last && this.mediaExpected && !this.mediaHeld ? quiet + 1 : 0;
      last = now;
      if (quiet >= 4) {
        this.end(new UpstreamLostError("no-media", `no media for ${this.opts.mediaTimeoutMs} ms`));
        return;
      }
      this.watchdogTimer = this.timers.setTimeout(check, step);
    };
    this.watchdogTimer = this.timers.setTimeout(check, step);
  }

  private onConnectionClosed(conn: RtspConnection, err: GatehouseError): void {
    if (conn !== this.conn) return; // a connection we left on redirect
    if (this.state !== "playing") return;
    if (err instanceof ClosedError) this.end(err);
    else {
      const code = (err.cause as { code?: unknown } | undefined)?.code;
      this.end(new UpstreamLostError(code === undefined ? "connection-closed" : "connection-reset", err.message, { cause: err }));
    }
  }

  /** A playing session died: stop, clean up, tell the owner once. */
  private end(err: GatehouseError): void {
    if (this.state !== "playing") return;
    this.state = "ended";
    this.log.info("rtsp session ended", { reason: err.message });
    void this.shutdown(err.message);
    this.events.emit("ended", err);
  }

  /** TEARDOWN if a session exists and the connection is up, then release everything. Runs once. */
  private shutdown(reason: string): Promise<void> {
    return (this.shutdownPromise ??= this.doShutdown(reason));
  }

  private async doShutdown(reason: string): Promise<void> {
    this.router.stop();
    this.timers.clearTimeout(this.keepAliveTimer);
    this.timers.clearTimeout(this.reportTimer);
    this.timers.clearTimeout(this.watchdogTimer);
    const conn = this.conn;
    if (conn && !conn.closed && this.sessionId !== undefined) {
      const sessionId = this.sessionId;
      this.sessionId = undefined;
      const headers = new RtspHeaders({ Session: sessionId });
      if (this.authorizer) headers.set("Authorization", this.authorizer.authorize("TEARDOWN", this.aggregateUrl || this.url.href));
      // RFC 2326 §10.12: TEARDOWN frees the recorder's resources now rather than at session timeout.
      const limit = Math.min(this.opts.requestTimeoutMs, 2000);
      let timer: TimerHandle | undefined;
      await Promise.race([
        conn.request("TEARDOWN", this.aggregateUrl || this.url.href, headers).catch(() => undefined),
        new Promise<void>((r) => (timer = this.timers.setTimeout(r, limit))),
      ]);
      this.timers.clearTimeout(timer);
    }
    if (conn) {
      this.unmatchedBase += conn.unmatched;
      this.conn = undefined;
      conn.close(new ClosedError(reason));
    }
    this.closeUdp();
  }

  private closeUdp(): void {
    for (const p of this.udp) p?.close();
    this.udp = [];
  }
}

function requestedChannels(i: number, router: MediaRouter): [number, number] {
  let ch = 2 * i;
  while (ch < 254 && (router.channelInUse(ch) || router.channelInUse(ch + 1))) ch += 2;
  return [ch, ch + 1];
}

function asError(err: unknown): GatehouseError {
  return isGatehouseError(err) ? err : new UpstreamError(err instanceof Error ? err.message : String(err), { cause: err });
}
