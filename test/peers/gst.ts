/**
 * A real RTSP recorder for tests: GStreamer's RTSP server (test/peers/gst-rtsp-server.py) as a child process.
 *
 *   await using cam = await startGstRtspServer({ user: "u", password: "p", gop: 10 });
 *   cam.url                      // "rtsp://127.0.0.1:<port>/test" (no credentials in it)
 *   await cam.waitFor((e) => e.event === "request" && e.method === "PLAY");
 *   cam.sessions()               // RTSP sessions open right now (one pull per camera → 1)
 *   await cam.kill("SIGKILL");   // crash it; cam.restart() brings it back on the same port
 *
 * Serves H.264 (pt 96, constrained baseline, SPS/PPS in band before each IDR unless `spropOnly`)
 * and PCMU audio (pt 0) at `mount`, over TCP interleaved and/or UDP, optionally behind Digest auth.
 * Binds 127.0.0.1 on a free port by default. The child exits with the test process (stdin EOF).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

const SCRIPT = new URL("./gst-rtsp-server.py", import.meta.url).pathname;

export interface GstServerOptions {
  /** Listening port; 0 (default) picks a free one. */
  port?: number;
  /** Listening address. Default 127.0.0.1. */
  host?: string;
  /** Mount path. Default "/test". */
  mount?: string;
  /** Require Digest auth with this user (and `password`). */
  user?: string;
  password?: string;
  /** The scheme `user` must authenticate with. Default digest. */
  auth?: "digest" | "basic";
  /** Lower transports offered. Default both. */
  protocols?: ReadonlyArray<"tcp" | "udp">;
  /** SPS/PPS only in the SDP's sprop-parameter-sets, never in band (rtph264pay config-interval=0). */
  spropOnly?: boolean;
  /** rtph264pay config-interval when not spropOnly: -1 (default) = with every IDR, n = every n seconds. */
  configInterval?: number;
  /** Video size, pixels. Default 320×240. */
  width?: number;
  height?: number;
  /** Frames per second. Default 25. */
  fps?: number;
  /** Keyframe interval, frames. Default 25. */
  gop?: number;
  /** Video bitrate, kbit/s. Default 500. */
  bitrate?: number;
  /**
   * videotestsrc pattern. Default "ball": a moving ball on black, which x264 encodes far
   * below `bitrate` (1280×720 at 1800 kbit/s comes out near 150 kbit/s); "snow" (noise)
   * makes the encoder send `bitrate`, like a busy scene.
   */
  pattern?: "ball" | "snow";
  /** Video only. */
  noAudio?: boolean;
  /** RTSP session timeout the server announces and enforces, seconds. Default 60. */
  sessionTimeout?: number;
  /** End the stream (EOS: RTCP BYE, then silence) after this many video frames; each new session starts again. */
  frames?: number;
  /** Video codec. Default h264. */
  codec?: "h264" | "h265";
  /** AAC audio instead of PCMU: true or "generic" = RTP MPEG4-GENERIC (RFC 3640, rtpmp4gpay), "latm" = MP4A-LATM (RFC 6416, rtpmp4apay). */
  aac?: boolean | "generic" | "latm";
  /** Sampling rate of AAC audio, Hz. Default 8000. */
  audioRate?: number;
  /** RTCP sender reports carry the host's wall clock plus this many seconds (a recorder whose clock is off). */
  ntpOffsetSeconds?: number;
  /** Send no RTCP at all (no sender reports: receivers only have arrival times). */
  noRtcp?: boolean;
  /** How long to wait for the server to listen, ms. Default 15000. */
  readyTimeoutMs?: number;
}

/** One JSON line from the server (see the script's docstring). */
export interface GstEvent {
  event: "ready" | "client-connected" | "request" | "session" | "session-removed" | "teardown" | "client-closed" | "error";
  client?: number;
  method?: string;
  port?: number;
  url?: string;
  remote?: string;
  message?: string;
}

export interface GstRtspServer extends AsyncDisposable {
  /** `rtsp://host:port/mount`, without credentials. */
  readonly url: string;
  readonly port: number;
  /** Every event since start, across restarts. */
  readonly events: readonly GstEvent[];
  /** RTSP sessions currently open in the running process (created by SETUP, minus removed). */
  sessions(): number;
  /** TCP connections currently open in the running process. */
  connections(): number;
  /** Resolves with the first event (already seen since `since`, or future) that matches. Default timeout 15 s. */
  waitFor(match: (e: GstEvent) => boolean, opts?: { timeoutMs?: number; since?: number }): Promise<GstEvent>;
  /** Stops the process with `signal` (default SIGKILL: a crash) and resolves when it exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a fresh process on the same port (killing the current one first if it runs). */
  restart(): Promise<void>;
  /** Stops the server for good; idempotent. */
  close(): Promise<void>;
}

export async function startGstRtspServer(opts: GstServerOptions = {}): Promise<GstRtspServer> {
  const server = new GstProcess(opts);
  await server.start(opts.port ?? 0);
  return server;
}

class GstProcess implements GstRtspServer {
  url = "";
  port = 0;
  readonly events: GstEvent[] = [];
  private readonly opts: GstServerOptions;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private openSessions = 0;
  private openConnections = 0;
  private closed = false;
  private stderr = "";
  private readonly waiters = new Set<(e: GstEvent) => void>();

  constructor(opts: GstServerOptions) {
    this.opts = opts;
  }

  sessions(): number {
    return this.openSessions;
  }

  connections(): number {
    return this.openConnections;
  }

  async start(port: number): Promise<void> {
    const o = this.opts;
    const args = [SCRIPT, "--port", String(port), "--host", o.host ?? "127.0.0.1", "--mount", o.mount ?? "/test"];
    if (o.user !== undefined) args.push("--user", o.user, "--password", o.password ?? "", "--auth", o.auth ?? "digest");
    if (o.protocols) args.push("--protocols", o.protocols.join(","));
    if (o.spropOnly) args.push("--sprop-only");
    if (o.configInterval !== undefined) args.push("--config-interval", String(o.configInterval));
    for (const [k, v] of [
      ["--width", o.width],
      ["--height", o.height],
      ["--fps", o.fps],
      ["--gop", o.gop],
      ["--bitrate", o.bitrate],
      ["--session-timeout", o.sessionTimeout],
      ["--frames", o.frames],
      ["--codec", o.codec],
      ["--pattern", o.pattern],
    ] as const)
      if (v !== undefined) args.push(k, String(v));
    if (o.noAudio) args.push("--no-audio");
    if (o.aac === "latm") args.push("--aac-latm");
    else if (o.aac) args.push("--aac");
    if (o.audioRate !== undefined) args.push("--audio-rate", String(o.audioRate));
    if (o.ntpOffsetSeconds !== undefined) args.push("--ntp-offset", String(o.ntpOffsetSeconds));
    if (o.noRtcp) args.push("--no-rtcp");

    // Binding the old port right after a kill can race the kernel; retry a few times.
    for (let attempt = 0; ; attempt++) {
      this.openSessions = 0;
      this.openConnections = 0;
      const since = this.events.length;
      const child = spawn("/usr/bin/python3", args, { stdio: ["pipe", "pipe", "pipe"] });
      this.child = child;
      this.stderr = "";
      child.stderr!.on("data", (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
      this.exited = new Promise<void>((res) => child.once("exit", () => res()));
      createInterface({ input: child.stdout! }).on("line", (line) => this.onLine(line));
      const ready = await Promise.race([
        this.waitFor((e) => e.event === "ready" || e.event === "error", { since, timeoutMs: o.readyTimeoutMs ?? 15000 }),
        this.exited.then((): GstEvent => ({ event: "error", message: `exited: ${this.stderr.trim()}` })),
      ]).catch((e: Error): GstEvent => ({ event: "error", message: e.message }));
      if (ready.event === "ready") {
        this.port = ready.port!;
        this.url = ready.url!;
        return;
      }
      await this.kill("SIGKILL");
      if (port === 0 || attempt >= 20) throw new Error(`GStreamer RTSP server did not start: ${ready.message ?? ""}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private onLine(line: string): void {
    let e: GstEvent;
    try {
      e = JSON.parse(line) as GstEvent;
    } catch {
      return; // GStreamer warnings may reach stdout
    }
    if (e.event === "session") this.openSessions++;
    else if (e.event === "session-removed") this.openSessions = Math.max(0, this.openSessions - 1);
    else if (e.event === "client-connected") this.openConnections++;
    else if (e.event === "client-closed") this.openConnections = Math.max(0, this.openConnections - 1);
    this.events.push(e);
    for (const w of [...this.waiters]) w(e);
  }

  waitFor(match: (e: GstEvent) => boolean, opts: { timeoutMs?: number; since?: number } = {}): Promise<GstEvent> {
    const seen = this.events.slice(opts.since ?? this.events.length).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out waiting for a GStreamer event; last: ${JSON.stringify(this.events.slice(-3))}`));
      }, opts.timeoutMs ?? 15000);
      const w = (e: GstEvent): void => {
        if (!match(e)) return;
        clearTimeout(timer);
        this.waiters.delete(w);
        resolve(e);
      };
      this.waiters.add(w);
    });
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await this.exited;
    this.openSessions = 0;
    this.openConnections = 0;
  }

  async restart(): Promise<void> {
    if (this.closed) throw new Error("GStreamer RTSP server closed");
    await this.kill("SIGKILL");
    await this.start(this.port);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const child = this.child;
    if (!child) return;
    child.stdin?.end();
    const t = setTimeout(() => child.kill("SIGKILL"), 3000);
    await this.kill("SIGTERM");
    clearTimeout(t);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
