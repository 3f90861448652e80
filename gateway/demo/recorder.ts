/**
 * The built-in demo recorder: an in-process RTSP 1.0 server (RFC 2326) that loops a
 * short H.264 + PCMU clip, so `npm start` with no configuration shows live video.
 *
 * It behaves like a modest IP recorder: OPTIONS, DESCRIBE (SDP with
 * sprop-parameter-sets), SETUP over TCP interleaved or UDP, PLAY with RTP-Info, PAUSE,
 * GET_PARAMETER keep-alives, TEARDOWN, a 60 s session timeout, optional Digest auth,
 * SPS/PPS in band before every IDR and RTCP sender reports every second.
 *
 * It is also a recorder: a PLAY with `Require: onvif-replay` plays the demo recording (a 60 s
 * clip whose frames show their own second and frame number, looped against the wall clock over
 * the last 24 hours) from `Range: clock=…` at `Scale` (reverse too), with the ONVIF RTP header
 * extension carrying each frame's recorded time (`replay.ts`, `replay-sender.ts`).
 *
 * Cheap per session: the clip is packetized once (`clip.ts`); a session only stamps a
 * 12-byte header per packet (`sender.ts`). One timer tick (10 ms) paces every session
 * by RTP timestamps; a session whose TCP connection backs up skips to the next keyframe
 * instead of queueing.
 */

import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { fileURLToPath } from "node:url";
import type { Logger } from "../../config/log.ts";
import { BadInputError } from "../../config/errors.ts";
import { parseRtcp, type RtcpItem } from "../../sfu/rtp/rtcp.ts";
import { RtspHeaders, RtspStreamParser, interleavedFrame, serializeResponse, type RtspRequest, type RtspResponse } from "../rtsp/message.ts";
import { prepareClip, type DemoClip } from "./clip.ts";
import { DigestServer } from "../digest/server.ts";
import { HeaderSlab, TrackSender, type TrackTransport } from "./sender.ts";
import { DemoRecording, ONVIF_REPLAY, formatClockTime, parseReplayRequest, requiresReplay, unsupportedOptions } from "./replay.ts";
import { ReplaySender } from "./replay-sender.ts";

/** Timer functions, injectable so tests drive the pacing tick and the reaper without sleeping. */
export interface DemoTimers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface DemoRecorderOptions {
  /** Address for the RTSP listener and the UDP media sockets. */
  host: string;
  /** RTSP TCP port; 0 picks a free one. */
  port: number;
  log: Logger;
  /** Clip files; default: the committed assets. `ulaw: null` serves video only. */
  paths?: { h264?: string; ulaw?: string | null };
  /**
   * The recording served to ONVIF replay requests; default: the committed 60 s clip at 25 fps
   * over the last 24 hours. `false`: no recording (a replay PLAY gets 551 Option not supported).
   */
  recording?: DemoRecordingSource | false;
  /** Frame rate of the H.264 file, frames/s. Default 25. */
  fps?: number;
  /** Path of the stream. Default "/demo". */
  streamPath?: string;
  /** Require RTSP Digest auth (RFC 2617) with these credentials. */
  auth?: { username: string; password: string; realm?: string };
  /** Session timeout announced and enforced, seconds. Default 60. */
  sessionTimeoutSeconds?: number;
  /** Concurrent sessions; more get 453 Not Enough Bandwidth. Default 64. */
  maxSessions?: number;
  /** Largest RTP payload, bytes. Default 1400 (what recorders on a 1500-byte MTU send). */
  maxPayload?: number;
  /** Pacing tick, ms. Default 10. */
  tickMs?: number;
  /** Interval between RTCP sender reports, ms. Default 1000. */
  rtcpIntervalMs?: number;
  /** TCP backlog (bytes queued in the socket) above which a session skips packets. Default 4 MiB. */
  tcpHighWaterBytes?: number;
  /** Monotonic clock, ms. Default performance.now. */
  clock?: () => number;
  /** Wall clock for RTCP NTP timestamps and nonces, ms since the epoch. Default Date.now. */
  wallClock?: () => number;
  timers?: DemoTimers;
  /** Random bytes (session ids, SSRCs, initial sequence numbers and timestamps). */
  random?: (n: number) => Buffer;
}

export interface DemoRecordingSource {
  /** H.264 Annex-B clip; default the committed `demo-recording-640x360-25fps.h264`. */
  h264?: string;
  /** Its frame rate, frames/s. Default 25. */
  fps?: number;
  /** How far back the recording reaches, ms. Default 24 h. */
  windowMs?: number;
}

export interface DemoRecorderStats {
  sessions: number;
  connections: number;
  packetsSent: number;
  packetsSkipped: number;
  badRequests: number;
  sessionsTimedOut: number;
  /** RTCP reports received from clients, over UDP or interleaved (keep-alives). */
  rtcpReceived: number;
  /** PLAY requests that started or moved a replay. */
  replays: number;
}

export interface DemoRecorder {
  /** rtsp://host:port/demo */
  readonly url: string;
  readonly port: number;
  /** Sessions currently set up (ready or playing). */
  sessions(): number;
  /** What the recording holds now (ONVIF replay), epoch ms; null without a recording. */
  recordingWindow(): { from: number; to: number } | null;
  stats(): DemoRecorderStats;
  /** Stops listening, ends every session and connection. Idempotent. */
  close(reason?: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const ASSETS = fileURLToPath(new URL("./assets/", import.meta.url));
const DEFAULT_H264 = ASSETS + "demo-640x360-25fps.h264";
const DEFAULT_ULAW = ASSETS + "demo-8khz.ulaw";
const DEFAULT_RECORDING = ASSETS + "demo-recording-640x360-25fps.h264";
/** The demo recording reaches this far back by default: a day. */
export const DEMO_RECORDING_WINDOW_MS = 24 * 3600_000;
const PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, TEARDOWN";
const REAP_EVERY_MS = 1000;

/** Loads the clip, binds the RTSP listener and the UDP pair, and starts the pacing tick. */
export async function startDemoRecorder(opts: DemoRecorderOptions): Promise<DemoRecorder> {
  const h264 = await readFile(opts.paths?.h264 ?? DEFAULT_H264);
  const ulawPath = opts.paths?.ulaw === undefined ? DEFAULT_ULAW : opts.paths.ulaw;
  const ulaw = ulawPath === null ? undefined : await readFile(ulawPath);
  const clip = prepareClip({ h264, ulaw, fps: opts.fps ?? 25, maxPayload: opts.maxPayload ?? 1400 });
  let recording: LoadedRecording | null = null;
  if (opts.recording !== false) {
    const src = opts.recording ?? {};
    const fps = src.fps ?? 25;
    const recClip = prepareClip({ h264: await readFile(src.h264 ?? DEFAULT_RECORDING), fps, maxPayload: opts.maxPayload ?? 1400 });
    recording = { clip: recClip, clock: recordingOf(recClip, src.windowMs ?? DEMO_RECORDING_WINDOW_MS) };
  }
  const server = new DemoServer(opts, clip, recording);
  await server.listen();
  return server;
}

interface LoadedRecording {
  clip: DemoClip;
  clock: DemoRecording;
}

/** The recording's clock from a prepared clip: its frames and which of them are key frames. */
export function recordingOf(clip: DemoClip, windowMs: number): DemoRecording {
  const keyFrames: boolean[] = [];
  let lastTs = -1;
  for (const p of clip.video.packets) {
    if (p.ts !== lastTs) keyFrames.push(p.keyframe);
    lastTs = p.ts;
  }
  return new DemoRecording({ frames: keyFrames.length, fps: clip.fps, keyFrames, windowMs });
}

// ------------------------------------------------------------------------------------
// Transports

class Conn {
  readonly socket: net.Socket;
  readonly parser = new RtspStreamParser({ maxBodyBytes: 65536 });
  readonly sessions = new Set<Session>();
  /** Interleaved channel → the session that owns it (incoming RTCP is a keep-alive). */
  readonly channels = new Map<number, Session>();
  readonly slab = new HeaderSlab();
  readonly id: number;
  lastSeen: number;
  closed = false;
  constructor(socket: net.Socket, id: number, now: number) {
    this.socket = socket;
    this.id = id;
    this.lastSeen = now;
  }
}

class TcpTransport implements TrackTransport {
  private readonly conn: Conn;
  private readonly channel: number;
  private readonly highWater: number;
  constructor(conn: Conn, channel: number, highWater: number) {
    this.conn = conn;
    this.channel = channel;
    this.highWater = highWater;
  }
  writable(): boolean {
    return !this.conn.closed && this.conn.socket.writableLength < this.highWater;
  }
  rtp(header: Buffer, payload: Buffer): void {
    // RFC 2326 §10.12: '$', channel, 16-bit length, then the RTP packet.
    const h = this.conn.slab.take(4 + header.length);
    h[0] = 0x24;
    h[1] = this.channel;
    h.writeUInt16BE(header.length + payload.length, 2);
    header.copy(h, 4);
    this.conn.socket.write(h);
    this.conn.socket.write(payload);
  }
  rtcp(packet: Buffer): void {
    if (!this.conn.closed) this.conn.socket.write(interleavedFrame(this.channel + 1, packet));
  }
}

class UdpTransport implements TrackTransport {
  private readonly rtpSock: dgram.Socket;
  private readonly rtcpSock: dgram.Socket;
  private readonly address: string;
  private readonly rtpPort: number;
  private readonly rtcpPort: number;
  private readonly slab: HeaderSlab;
  constructor(rtpSock: dgram.Socket, rtcpSock: dgram.Socket, address: string, rtpPort: number, rtcpPort: number, slab: HeaderSlab) {
    this.rtpSock = rtpSock;
    this.rtcpSock = rtcpSock;
    this.address = address;
    this.rtpPort = rtpPort;
    this.rtcpPort = rtcpPort;
    this.slab = slab;
  }
  writable(): boolean {
    return this.rtpSock.getSendQueueCount() < 2000;
  }
  rtp(header: Buffer, payload: Buffer): void {
    const h = this.slab.take(header.length);
    header.copy(h);
    this.rtpSock.send([h, payload], this.rtpPort, this.address);
  }
  rtcp(packet: Buffer): void {
    this.rtcpSock.send(packet, this.rtcpPort, this.address);
  }
}

// ------------------------------------------------------------------------------------
// Sessions

interface TrackSetup {
  sender: TrackSender;
  /** The Transport header value answered to SETUP. */
  transportHeader: string;
  /** "address:port" of the client's RTCP port, for UDP. */
  udpKey?: string;
  /** Interleaved RTP channel, for TCP. */
  channel?: number;
}

class Session {
  readonly id: string;
  readonly tracks: (TrackSetup | undefined)[] = [];
  state: "ready" | "playing" = "ready";
  lastSeen: number;
  /** Clock time at which play time was 0. */
  startMs = 0;
  /** Play time reached when paused, ms; −1 before the first PLAY. */
  pausedAt = -1;
  nextReportAt = 0;
  /** The connection carrying its interleaved tracks, if any. */
  conn: Conn | null = null;
  /** Set by the first PLAY with `Require: onvif-replay`: the video track then plays the recording. */
  replay: ReplaySender | null = null;
  readonly slab = new HeaderSlab();
  constructor(id: string, now: number) {
    this.id = id;
    this.lastSeen = now;
  }
}

/** A transport choice parsed from the client's Transport header (RFC 2326 §12.39). */
type TransportChoice = { kind: "tcp"; interleaved: [number, number] | null } | { kind: "udp"; clientPorts: [number, number] };

function parsePair(v: string, max: number): [number, number] | null {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(v.trim());
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] !== undefined ? Number(m[2]) : a + 1;
  if (a > max || b > max) return null;
  return [a, b];
}

/** The first acceptable alternative of a Transport header, or null (→ 461). */
export function parseTransport(value: string): TransportChoice | null {
  for (const alt of value.split(",")) {
    const parts = alt.split(";").map((s) => s.trim());
    const spec = (parts[0] ?? "").toUpperCase();
    const params = new Map<string, string>();
    for (const p of parts.slice(1)) {
      const eq = p.indexOf("=");
      params.set((eq < 0 ? p : p.slice(0, eq)).toLowerCase(), eq < 0 ? "" : p.slice(eq + 1).replace(/^"|"$/g, ""));
    }
    if (params.has("multicast")) continue;
    const mode = params.get("mode");
    if (mode !== undefined && mode.toUpperCase() !== "PLAY") continue;
    if (spec === "RTP/AVP/TCP") {
      const il = params.get("interleaved");
      if (il === undefined) return { kind: "tcp", interleaved: null };
      const pair = parsePair(il, 255);
      if (pair) return { kind: "tcp", interleaved: pair };
    } else if (spec === "RTP/AVP" || spec === "RTP/AVP/UDP") {
      const cp = params.get("client_port");
      const pair = cp !== undefined ? parsePair(cp, 65535) : null;
      if (pair && pair[0] > 0 && pair[1] > 0) return { kind: "udp", clientPorts: pair };
    }
  }
  return null;
}

// ------------------------------------------------------------------------------------
// Server

interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer;
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  451: "Parameter Not Understood",
  453: "Not Enough Bandwidth",
  454: "Session Not Found",
  455: "Method Not Valid in This State",
  459: "Aggregate Operation Not Allowed",
  461: "Unsupported Transport",
  500: "Internal Server Error",
  501: "Not Implemented",
  551: "Option not supported",
};

class DemoServer implements DemoRecorder {
  url = "";
  port = 0;
  private readonly opts: DemoRecorderOptions;
  private readonly log: Logger;
  private readonly clip: DemoClip;
  private readonly clock: () => number;
  private readonly wallClock: () => number;
  private readonly timers: DemoTimers;
  private readonly random: (n: number) => Buffer;
  private readonly streamPath: string;
  private readonly timeoutMs: number;
  private readonly rtcpIntervalMs: number;
  private readonly highWater: number;
  private readonly maxSessions: number;
  /** Digest for RTSP clients: MD5 and the RFC 2069 answer without qop (GStreamer sends no other). */
  private readonly auth: { readonly server: DigestServer; readonly username: string; readonly password: string; readonly realm: string } | null;
  private readonly server: net.Server;
  private rtpSock: dgram.Socket | null = null;
  private rtcpSock: dgram.Socket | null = null;
  private serverRtpPort = 0;
  private readonly sessionsById = new Map<string, Session>();
  private readonly playing = new Set<Session>();
  private readonly conns = new Set<Conn>();
  /** Client RTCP "address:port" → session, for UDP receiver reports as keep-alives. */
  private readonly udpPeers = new Map<string, Session>();
  private timer: unknown = null;
  private nextReapAt = 0;
  private nextConnId = 1;
  private closing: Promise<void> | null = null;
  private readonly counters = { packetsSent: 0, packetsSkipped: 0, badRequests: 0, sessionsTimedOut: 0, rtcpReceived: 0, replays: 0 };
  private readonly recording: LoadedRecording | null;

  constructor(opts: DemoRecorderOptions, clip: DemoClip, recording: LoadedRecording | null) {
    this.opts = opts;
    this.log = opts.log;
    this.clip = clip;
    this.recording = recording;
    this.clock = opts.clock ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? Date.now;
    this.timers = opts.timers ?? {
      setInterval: (fn, ms) => setInterval(fn, ms),
      clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval>),
    };
    this.random = opts.random ?? randomBytes;
    this.streamPath = (opts.streamPath ?? "/demo").replace(/\/+$/, "");
    this.timeoutMs = (opts.sessionTimeoutSeconds ?? 60) * 1000;
    this.rtcpIntervalMs = opts.rtcpIntervalMs ?? 1000;
    this.highWater = opts.tcpHighWaterBytes ?? 4 * 1024 * 1024;
    this.maxSessions = opts.maxSessions ?? 64;
    this.auth = opts.auth
      ? { server: new DigestServer({ now: this.wallClock, allowNoQop: true }), username: opts.auth.username, password: opts.auth.password, realm: opts.auth.realm ?? "Gatehouse demo" }
      : null;
    this.server = net.createServer((s) => this.accept(s));
    this.server.maxConnections = 256;
  }

  async listen(): Promise<void> {
    await this.bindUdpPair();
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.server.on("error", (err) => this.log.error("demo recorder listener error", { err }));
    const addr = this.server.address() as net.AddressInfo;
    this.port = addr.port;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    this.url = `rtsp://${host}:${this.port}${this.streamPath}`;
    this.timer = this.timers.setInterval(() => this.tick(), this.opts.tickMs ?? 10);
    this.nextReapAt = this.clock() + REAP_EVERY_MS;
    this.log.info("demo recorder listening", {
      url: this.url,
      udpPorts: `${this.serverRtpPort}-${this.serverRtpPort + 1}`,
      video: `${this.clip.spsInfo.width}x${this.clip.spsInfo.height} ${this.clip.spsInfo.profile} ${this.clip.fps} fps`,
      audio: this.clip.audio ? "PCMU/8000" : "none",
      loopMs: this.clip.loopMs,
      auth: this.auth ? "digest" : "none",
      recording: this.recording ? `${Math.round(this.recording.clock.windowMs / 3600_000)} h (ONVIF replay)` : "none",
    });
  }

  sessions(): number {
    return this.sessionsById.size;
  }

  recordingWindow(): { from: number; to: number } | null {
    return this.recording ? this.recording.clock.window(this.wallClock()) : null;
  }

  stats(): DemoRecorderStats {
    return { sessions: this.sessionsById.size, connections: this.conns.size, ...this.counters };
  }

  close(reason = "closed"): Promise<void> {
    this.closing ??= this.doClose(reason);
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close("disposed");
  }

  private async doClose(reason: string): Promise<void> {
    if (this.timer !== null) this.timers.clearInterval(this.timer);
    this.timer = null;
    for (const s of [...this.sessionsById.values()]) this.destroySession(s, "recorder closed");
    for (const c of this.conns) c.socket.destroy();
    await Promise.all([
      new Promise<void>((r) => this.server.close(() => r())),
      ...[this.rtpSock, this.rtcpSock].map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve())),
    ]);
    this.log.debug("demo recorder closed", { reason });
  }

  /** Binds RTP on an even port and RTCP on the next one (RFC 3550 §11). */
  private async bindUdpPair(): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const a = dgram.createSocket("udp4");
      const port = await bind(a, 0, this.opts.host).catch(() => -1);
      if (port < 0 || port % 2 !== 0 || port === 65535) {
        a.close();
        continue;
      }
      const b = dgram.createSocket("udp4");
      if ((await bind(b, port + 1, this.opts.host).catch(() => -1)) < 0) {
        a.close();
        b.close();
        continue;
      }
      this.rtpSock = a;
      this.rtcpSock = b;
      this.serverRtpPort = port;
      for (const s of [a, b]) s.on("error", (err) => this.log.debug("demo recorder UDP error", { err }));
      a.on("message", () => {}); // clients may punch holes with dummy RTP: ignore
      b.on("message", (msg, rinfo) => this.onUdpRtcp(msg, rinfo));
      return;
    }
    throw new BadInputError(`demo recorder: could not bind an even/odd UDP port pair on ${this.opts.host}`);
  }

  private onUdpRtcp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const s = this.udpPeers.get(`${rinfo.address}:${rinfo.port}`);
    if (!s) return;
    // Receiver reports show the client is alive (RFC 2326 §12.37 allows RTCP as keep-alive).
    const reports = parseRtcp(msg).filter((i) => i.type === "rr" || i.type === "sr");
    if (reports.length > 0) {
      s.lastSeen = this.clock();
      this.counters.rtcpReceived++;
      this.log.debug("receiver report", { session: s.id, blocks: blockCount(reports) });
    }
  }

  // --------------------------------------------------------------------------------
  // Pacing

  private tick(): void {
    const now = this.clock();
    for (const s of this.playing) {
      const elapsed = now - s.startMs;
      const conn = s.conn && !s.conn.closed ? s.conn : null;
      if (conn) conn.socket.cork(); // batch this tick's frames into one writev
      const report = now >= s.nextReportAt;
      if (s.replay) {
        this.counters.packetsSent += s.replay.pump(now, this.wallClock());
        if (report) {
          s.replay.sendReport();
          s.nextReportAt = now + this.rtcpIntervalMs;
        }
        if (conn) conn.socket.uncork();
        continue;
      }
      const wall = report ? this.wallClock() : 0;
      for (const t of s.tracks) {
        if (!t) continue;
        const before = t.sender.skipped;
        this.counters.packetsSent += t.sender.pump(elapsed);
        this.counters.packetsSkipped += t.sender.skipped - before;
        if (report) t.sender.sendReport(elapsed, wall);
      }
      if (report) s.nextReportAt = now + this.rtcpIntervalMs;
      if (conn) conn.socket.uncork();
    }
    if (now >= this.nextReapAt) {
      this.nextReapAt = now + REAP_EVERY_MS;
      this.reap(now);
    }
  }

  private reap(now: number): void {
    for (const s of [...this.sessionsById.values()]) {
      if (now - s.lastSeen > this.timeoutMs) {
        this.counters.sessionsTimedOut++;
        this.log.info("demo session timed out", { session: s.id, idleMs: Math.round(now - s.lastSeen) });
        this.destroySession(s, "timeout");
      }
    }
    for (const c of this.conns) {
      if (c.sessions.size === 0 && now - c.lastSeen > this.timeoutMs) {
        this.log.debug("closing idle RTSP connection", { conn: c.id });
        c.socket.destroy();
      }
    }
  }

  // --------------------------------------------------------------------------------
  // Connections

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new Conn(socket, this.nextConnId++, this.clock());
    this.conns.add(conn);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("error", (err) => this.log.debug("RTSP connection error", { conn: conn.id, err }));
    socket.on("close", () => this.onClose(conn));
    this.log.debug("RTSP connection", { conn: conn.id, remote: `${socket.remoteAddress}:${socket.remotePort}` });
  }

  private onClose(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.conns.delete(conn);
    // Interleaved media cannot outlive its connection; UDP sessions live on until TEARDOWN or timeout.
    for (const s of [...conn.sessions]) {
      if (s.conn === conn) this.destroySession(s, "connection closed");
      else conn.sessions.delete(s);
    }
  }

  private onData(conn: Conn, chunk: Buffer): void {
    const now = this.clock();
    conn.lastSeen = now;
    for (const s of conn.sessions) if (s.conn === conn) s.lastSeen = now;
    for (const ev of conn.parser.push(chunk)) {
      if (ev.type === "request") {
        this.respond(conn, ev.message, this.handle(conn, ev.message));
      } else if (ev.type === "interleaved") {
        // Client RTCP (receiver reports) on an odd channel: liveness, counted above.
        if (!conn.channels.has(ev.channel)) this.log.debug("interleaved data on an unknown channel", { conn: conn.id, channel: ev.channel });
        else {
          const reports = parseRtcp(ev.data).filter((i) => i.type === "rr" || i.type === "sr");
          if (reports.length > 0) {
            this.counters.rtcpReceived++;
            this.log.debug("receiver report", { conn: conn.id, channel: ev.channel, blocks: blockCount(reports) });
          }
        }
      } else if (ev.type === "response") {
        // We send no requests; a stray response is ignored.
      } else {
        this.counters.badRequests++;
        this.log.debug("bad RTSP request", { conn: conn.id, err: ev.error, fatal: ev.fatal });
        this.respond(conn, null, { status: 400 });
        if (ev.fatal) {
          // The byte stream lost its framing: nothing more can be understood on it.
          conn.socket.end();
          this.onClose(conn);
          return;
        }
      }
    }
  }

  private respond(conn: Conn, req: RtspRequest | null, r: Reply): void {
    if (conn.closed) return;
    const headers = new RtspHeaders();
    const cseq = req?.headers.get("cseq");
    if (cseq !== undefined && /^\d{1,10}$/.test(cseq.trim())) headers.set("CSeq", cseq.trim());
    headers.set("Server", "Gatehouse demo recorder");
    for (const [k, v] of Object.entries(r.headers ?? {})) headers.set(k, v);
    const res: RtspResponse = { status: r.status, reason: REASONS[r.status] ?? "Error", headers, body: r.body ?? Buffer.alloc(0) };
    try {
      conn.socket.write(serializeResponse(res));
    } catch (err) {
      this.log.error("could not serialize an RTSP response", { err, status: r.status });
      conn.socket.destroy();
    }
  }

  // --------------------------------------------------------------------------------
  // Requests

  private handle(conn: Conn, req: RtspRequest): Reply {
    try {
      return this.dispatch(conn, req);
    } catch (err) {
      // One place maps failures to status codes: bad input is the client's fault, anything else is ours.
      if (err instanceof BadInputError) {
        this.counters.badRequests++;
        this.log.debug("bad RTSP request", { method: req.method, err });
        return { status: 400 };
      }
      this.log.error("demo recorder request failed", { method: req.method, err });
      return { status: 500 };
    }
  }

  private dispatch(conn: Conn, req: RtspRequest): Reply {
    const cseq = req.headers.get("cseq");
    if (cseq === undefined || !/^\d{1,10}$/.test(cseq.trim())) throw new BadInputError("missing or invalid CSeq");
    // The one option we know: ONVIF replay (when there is a recording). Anything else is 551 (RFC 2326 §12.32).
    const require = req.headers.get("require");
    if (require !== undefined) {
      const unknown = unsupportedOptions(require);
      if (!this.recording && requiresReplay(require)) unknown.push(ONVIF_REPLAY);
      if (unknown.length > 0) return { status: 551, headers: { Unsupported: unknown.join(", ") } };
    }

    const method = req.method.toUpperCase();
    const auth = this.auth;
    if (method !== "OPTIONS" && auth) {
      const address = conn.socket.remoteAddress ?? "";
      const verdict = auth.server.verify(req.headers.get("authorization"), req.method, auth.realm, ["MD5"], (u) => (u === auth.username ? auth.password : undefined), address);
      if (!verdict.ok) {
        this.log.debug("RTSP auth challenge", { method, verdict: verdict.reason });
        const [challenge] = auth.server.challenge(auth.realm, ["MD5"], address, verdict.reason === "stale", { qop: false });
        return { status: 401, headers: { "WWW-Authenticate": challenge! } };
      }
    }

    // Any request naming a session keeps it alive (RFC 2326 §12.37).
    const sid = sessionIdOf(req);
    let session: Session | undefined;
    if (sid !== undefined) {
      session = this.sessionsById.get(sid);
      if (!session) return { status: 454 };
      session.lastSeen = this.clock();
      conn.sessions.add(session);
    }

    switch (method) {
      case "OPTIONS":
        return { status: 200, headers: { Public: PUBLIC, ...this.sessionHeader(session) } };
      case "DESCRIBE":
        return this.describe(req, requiresReplay(require));
      case "SETUP":
        return this.setup(conn, req, session);
      case "PLAY":
        // A clock= range asks for recorded time, which only the recording has: GStreamer's rtspsrc
        // in ONVIF mode sends one without `Require: onvif-replay`.
        return requiresReplay(require) || session?.replay || (this.recording && isClockRange(req.headers.get("range")))
          ? this.playReplay(req, session)
          : this.play(req, session);
      case "PAUSE":
        return this.pause(req, session);
      case "TEARDOWN":
        if (!session) return { status: 454 };
        if (this.resolve(req.uri) === null) return { status: 404, headers: this.sessionHeader(session) };
        this.destroySession(session, "teardown");
        return { status: 200 };
      case "GET_PARAMETER":
        // An empty GET_PARAMETER is the usual keep-alive; we expose no parameters.
        if (req.body.toString("latin1").trim() !== "") return { status: 451, headers: this.sessionHeader(session) };
        return { status: 200, headers: this.sessionHeader(session) };
      case "ANNOUNCE":
      case "RECORD":
      case "SET_PARAMETER":
      case "REDIRECT":
        return { status: 405, headers: { Allow: PUBLIC } };
      default:
        return { status: 501, headers: { Public: PUBLIC } };
    }
  }

  private sessionHeader(s: Session | undefined): Record<string, string> {
    return s ? { Session: `${s.id};timeout=${Math.round(this.timeoutMs / 1000)}` } : {};
  }

  /** Maps a request URI to the aggregate stream (-1) or a track index; null when not ours. Throws BadInputError if unparseable. */
  private resolve(uri: string): number | null {
    if (uri === "*") return -1;
    let path: string;
    try {
      path = new URL(uri).pathname;
    } catch (err) {
      throw new BadInputError(`invalid request URI ${JSON.stringify(uri.slice(0, 100))}`, { cause: err });
    }
    path = path.replace(/\/+$/, "");
    if (path === this.streamPath) return -1;
    if (path.startsWith(this.streamPath + "/")) {
      const m = /^trackID=(\d)$/.exec(path.slice(this.streamPath.length + 1));
      if (m) {
        const t = Number(m[1]);
        if (t === 0 || (t === 1 && this.clip.audio)) return t;
      }
    }
    return null;
  }

  private baseUrl(req: RtspRequest): string {
    try {
      const u = new URL(req.uri);
      return `rtsp://${u.host}${this.streamPath}/`;
    } catch {
      return this.url + "/";
    }
  }

  private describe(req: RtspRequest, replay: boolean): Reply {
    if (this.resolve(req.uri) !== -1) return { status: 404 };
    const base = this.baseUrl(req);
    return {
      status: 200,
      headers: { "Content-Type": "application/sdp", "Content-Base": base },
      body: Buffer.from(replay ? this.replaySdp() : this.sdp(), "utf8"),
    };
  }

  /**
   * The recording's description: video only (the demo recording has no sound), with the range it
   * holds as absolute times (ONVIF replay; RFC 2326 §C.1.5 `a=range:clock=`).
   */
  private replaySdp(): string {
    const rec = this.recording!;
    const c = rec.clip;
    const win = rec.clock.window(this.wallClock());
    const host = this.opts.host.includes(":") ? "IP6" : "IP4";
    return (
      [
        "v=0",
        `o=- ${Math.floor(this.wallClock() / 1000)} 1 IN ${host} ${this.opts.host}`,
        "s=Gatehouse demo recording",
        `c=IN ${host} ${host === "IP4" ? "0.0.0.0" : "::"}`,
        "t=0 0",
        "a=tool:Gatehouse demo recorder",
        "a=control:*",
        `a=range:clock=${formatClockTime(win.from)}-${formatClockTime(win.to)}`,
        `m=video 0 RTP/AVP ${c.video.payloadType}`,
        `a=rtpmap:${c.video.payloadType} H264/90000`,
        `a=fmtp:${c.video.payloadType} packetization-mode=1;profile-level-id=${c.profileLevelId};sprop-parameter-sets=${c.spropParameterSets}`,
        `a=framerate:${c.fps}`,
        `a=x-dimensions:${c.spsInfo.width},${c.spsInfo.height}`,
        "a=control:trackID=0",
      ].join("\r\n") + "\r\n"
    );
  }

  /** The session description (RFC 4566; H.264 per RFC 6184 §8.2.1). */
  private sdp(): string {
    const c = this.clip;
    const host = this.opts.host.includes(":") ? "IP6" : "IP4";
    const lines = [
      "v=0",
      `o=- ${Math.floor(this.wallClock() / 1000)} 1 IN ${host} ${this.opts.host}`,
      "s=Gatehouse demo",
      "i=Looping test clip",
      `c=IN ${host} ${host === "IP4" ? "0.0.0.0" : "::"}`,
      "t=0 0",
      "a=tool:Gatehouse demo recorder",
      "a=type:broadcast",
      "a=control:*",
      "a=range:npt=0-",
      `m=video 0 RTP/AVP ${c.video.payloadType}`,
      `a=rtpmap:${c.video.payloadType} H264/90000`,
      `a=fmtp:${c.video.payloadType} packetization-mode=1;profile-level-id=${c.profileLevelId};sprop-parameter-sets=${c.spropParameterSets}`,
      `a=framerate:${c.fps}`,
      `a=x-dimensions:${c.spsInfo.width},${c.spsInfo.height}`,
      "a=control:trackID=0",
    ];
    if (c.audio) lines.push("m=audio 0 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=control:trackID=1");
    return lines.join("\r\n") + "\r\n";
  }

  private setup(conn: Conn, req: RtspRequest, existing: Session | undefined): Reply {
    const track = this.resolve(req.uri);
    if (track === null) return { status: 404 };
    if (track === -1) return { status: 459 }; // SETUP names a stream, not the presentation
    const choice = parseTransport(req.headers.get("transport") ?? "");
    if (!choice) return { status: 461 };
    if (existing && existing.state === "playing") return { status: 455, headers: this.sessionHeader(existing) };
    if (choice.kind === "tcp" && existing?.conn && existing.conn !== conn) return { status: 455, headers: this.sessionHeader(existing) };
    if (!existing && this.sessionsById.size >= this.maxSessions) return { status: 453 };

    const now = this.clock();
    const session = existing ?? new Session(this.random(8).toString("hex"), now);
    const clipTrack = track === 0 ? this.clip.video : this.clip.audio!;
    const rnd = this.random(10);
    const sender = new TrackSender({
      track: clipTrack,
      ssrc: rnd.readUInt32BE(0),
      seq: rnd.readUInt16BE(4),
      tsBase: rnd.readUInt32BE(6),
      cname: `gatehouse-demo-${session.id}`,
    });
    const ssrcHex = sender.ssrc.toString(16).toUpperCase().padStart(8, "0");
    const old = session.tracks[track];
    if (old) this.unbindTrack(session, old);

    let setup: TrackSetup;
    if (choice.kind === "tcp") {
      const used = new Set(conn.channels.keys());
      let pair = choice.interleaved;
      if (!pair) {
        let ch = 2 * track;
        while (used.has(ch) || used.has(ch + 1)) ch += 2;
        pair = [ch, ch + 1];
      }
      if (used.has(pair[0]) && conn.channels.get(pair[0]) !== session) return { status: 461 };
      sender.transport = new TcpTransport(conn, pair[0], this.highWater);
      conn.channels.set(pair[0], session);
      conn.channels.set(pair[1], session);
      session.conn = conn;
      setup = { sender, channel: pair[0], transportHeader: `RTP/AVP/TCP;unicast;interleaved=${pair[0]}-${pair[1]};ssrc=${ssrcHex};mode="PLAY"` };
    } else {
      // Media goes to the address the request came from, never to a `destination` (RFC 2326 §12.39: no third-party floods).
      const address = conn.socket.remoteAddress ?? "127.0.0.1";
      const [rtpPort, rtcpPort] = choice.clientPorts;
      sender.transport = new UdpTransport(this.rtpSock!, this.rtcpSock!, address.replace(/^::ffff:/, ""), rtpPort, rtcpPort, session.slab);
      const udpKey = `${address.replace(/^::ffff:/, "")}:${rtcpPort}`;
      this.udpPeers.set(udpKey, session);
      setup = {
        sender,
        udpKey,
        transportHeader: `RTP/AVP;unicast;client_port=${rtpPort}-${rtcpPort};server_port=${this.serverRtpPort}-${this.serverRtpPort + 1};ssrc=${ssrcHex};mode="PLAY"`,
      };
    }
    session.tracks[track] = setup;
    if (track === 0 && session.replay) session.replay.transport = sender.transport;
    if (!existing) {
      this.sessionsById.set(session.id, session);
      this.log.info("demo session created", { session: session.id, conn: conn.id, transport: choice.kind });
    }
    conn.sessions.add(session);
    return { status: 200, headers: { Transport: setup.transportHeader, ...this.sessionHeader(session) } };
  }

  /** Releases a track's UDP peer entry or interleaved channels (re-SETUP or teardown). */
  private unbindTrack(s: Session, t: TrackSetup): void {
    if (t.udpKey) this.udpPeers.delete(t.udpKey);
    if (t.channel !== undefined && s.conn) {
      s.conn.channels.delete(t.channel);
      s.conn.channels.delete(t.channel + 1);
    }
    t.sender.transport = null;
    if (s.replay && s.tracks[0] === t) s.replay.transport = null;
  }

  private play(req: RtspRequest, s: Session | undefined): Reply {
    if (!s) return { status: 454 };
    if (this.resolve(req.uri) === null) return { status: 404, headers: this.sessionHeader(s) };
    const now = this.clock();
    if (s.state !== "playing") {
      // Resume keeps play time (and so RTP timestamps) continuous across a PAUSE.
      s.startMs = s.pausedAt < 0 ? now : now - s.pausedAt;
      s.state = "playing";
      s.nextReportAt = now;
      this.playing.add(s);
      this.log.info("demo session playing", { session: s.id });
    }
    const base = this.baseUrl(req);
    const info: string[] = [];
    s.tracks.forEach((t, i) => {
      if (t) info.push(`url=${base}trackID=${i};seq=${t.sender.nextSeq()};rtptime=${t.sender.nextTimestamp()}`);
    });
    const npt = ((now - s.startMs) / 1000).toFixed(3);
    return { status: 200, headers: { ...this.sessionHeader(s), Range: `npt=${npt}-`, "RTP-Info": info.join(",") } };
  }

  /**
   * PLAY of the recording (ONVIF replay): a Range moves to that time at once (whether playing or
   * not, as `Immediate: yes` asks), Scale sets speed and direction, no Range resumes. The video
   * track plays the recording; a set-up audio track stays silent (the recording has no sound).
   */
  private playReplay(req: RtspRequest, s: Session | undefined): Reply {
    if (!s) return { status: 454 };
    if (this.resolve(req.uri) === null) return { status: 404, headers: this.sessionHeader(s) };
    const video = s.tracks[0];
    if (!video) return { status: 455, headers: this.sessionHeader(s) }; // nothing to play the recording on
    const request = parseReplayRequest(req.headers);
    const now = this.clock();
    if (!s.replay) {
      const rnd = this.random(4);
      s.replay = new ReplaySender({
        track: this.recording!.clip.video,
        recording: this.recording!.clock,
        ssrc: video.sender.ssrc, // as announced in SETUP
        seq: video.sender.nextSeq(),
        tsBase: rnd.readUInt32BE(0),
        cname: `gatehouse-demo-${s.id}`,
      });
      s.replay.transport = video.sender.transport;
    }
    const pos = s.replay.play(request, Number(req.headers.get("cseq")), now, this.wallClock());
    this.counters.replays++;
    if (s.state !== "playing") {
      s.state = "playing";
      s.nextReportAt = now;
      this.playing.add(s);
    }
    this.log.debug("demo replay", { session: s.id, start: new Date(pos.startMs).toISOString(), scale: request.scale, rateControl: request.rateControl });
    const end = request.end !== undefined ? formatClockTime(request.end) : "";
    return {
      status: 200,
      headers: {
        ...this.sessionHeader(s),
        Range: `clock=${formatClockTime(pos.startMs)}-${end}`,
        Scale: String(request.scale),
        "Rate-Control": request.rateControl ? "yes" : "no",
        "RTP-Info": `url=${this.baseUrl(req)}trackID=0;seq=${pos.seq};rtptime=${pos.rtptime}`,
      },
    };
  }

  private pause(req: RtspRequest, s: Session | undefined): Reply {
    if (!s) return { status: 454 };
    if (this.resolve(req.uri) === null) return { status: 404, headers: this.sessionHeader(s) };
    if (s.state === "playing") {
      s.pausedAt = this.clock() - s.startMs;
      s.state = "ready";
      this.playing.delete(s);
    }
    return { status: 200, headers: this.sessionHeader(s) };
  }

  private destroySession(s: Session, reason: DemoSessionEnd): void {
    if (!this.sessionsById.delete(s.id)) return;
    this.playing.delete(s);
    for (const t of s.tracks) if (t) this.unbindTrack(s, t);
    for (const c of this.conns) c.sessions.delete(s);
    const sent = s.tracks.reduce((n, t) => n + (t?.sender.packets ?? 0), 0);
    if (reason === "teardown" || reason === "connection closed") this.log.info("demo session ended", { session: s.id, reason, packets: sent });
    else this.log.debug("demo session ended", { session: s.id, reason, packets: sent });
  }
}

/** Why a client's RTSP session ended: its TEARDOWN or its connection (worth an info line), else a lapse or our own close. */
type DemoSessionEnd = "teardown" | "connection closed" | "timeout" | "recorder closed";

/** True for `Range: clock=…` (RFC 2326 §3.7 absolute time). */
function isClockRange(range: string | undefined): boolean {
  return range !== undefined && /^\s*clock\s*=/i.test(range);
}

/** The session id of a request's Session header ("id;timeout=…"), or undefined. */
function sessionIdOf(req: RtspRequest): string | undefined {
  const v = req.headers.get("session");
  if (v === undefined) return undefined;
  return v.split(";")[0]!.trim();
}

function bind(sock: dgram.Socket, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sock.once("error", onError);
    sock.bind(port, host, () => {
      sock.off("error", onError);
      resolve(sock.address().port);
    });
  });
}

/** Report blocks in a client's RTCP reports (0 in the empty RRs that open NAT bindings). */
function blockCount(reports: RtcpItem[]): number {
  let n = 0;
  for (const r of reports) if (r.type === "rr" || r.type === "sr") n += r.reports.length;
  return n;
}
