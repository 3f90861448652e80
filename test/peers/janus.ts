/**
 * Janus 1.1.2 (Debian package `janus`) as the reference WebRTC gateway for side-by-side
 * benchmarks: its streaming plugin pulls an RTSP URL (one pull, like ours) and offers it
 * to any number of viewers through the Janus HTTP API.
 *
 *   await using janus = await startJanus({ rtspUrl: cam.url, eventLoops: 2 });
 *   const s = await janus.session();                   // one Janus session, many handles
 *   const w = await s.watch();                          // attach + watch: Janus OFFERS
 *   await w.start(answerSdp);                           // our answer (candidates inside)
 *   janus.pid                                           // for /proc CPU sampling
 *
 * Each start gets a fresh config directory (temp dir): janus.jcfg (optional
 * `event_loops`, only the streaming plugin and HTTP transport loaded, ICE gathered on
 * loopback only, no STUN), janus.transport.http.jcfg on a free 127.0.0.1 port, and
 * janus.plugin.streaming.jcfg with one `rtsp` mountpoint (id 1, video only by default,
 * `videobufferkf` on by default so new viewers get the latest keyframe at once), or one per
 * URL of `rtspUrls` (ids 1…N, watched with `session.watch({ mountpoint })`).
 * Janus pulls RTSP over UDP only (RTP/AVP), so the recorder must offer UDP.
 * The process is killed by its own pid on close.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const JANUS_LIB = "/usr/lib/x86_64-linux-gnu/janus";

export interface JanusOptions {
  /** RTSP URL the streaming plugin pulls (mountpoint id 1). */
  rtspUrl: string;
  /** Several cameras: mountpoint i + 1 pulls `rtspUrls[i]` (then `rtspUrl` is not used). */
  rtspUrls?: readonly string[];
  /** `event_loops` in janus.jcfg: a fixed pool of media loops; undefined = as packaged (one loop per handle). */
  eventLoops?: number;
  /** `videobufferkf`: keep the latest keyframe for new viewers. Default true. */
  videoBufferKf?: boolean;
  /** Pull the RTSP audio track too. Default false (video only). */
  audio?: boolean;
  /** UDP port range for ICE and the RTSP client, "min-max". Default a random 2000-port block in 50000–59999. */
  rtpPortRange?: string;
  /** Janus `debug_level` (0–7). Default 3 (warnings). */
  debugLevel?: number;
  /** Janus binary. Default `janus` on PATH. */
  binary?: string;
  /** How long to wait for the HTTP API and a pulled RTSP stream, ms. Default 20000. */
  readyTimeoutMs?: number;
}

export interface Janus extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8188/janus */
  readonly api: string;
  readonly pid: number;
  /** The mountpoint id to `watch` (the first one). */
  readonly mountpoint: number;
  /** Every mountpoint id, in the order of `rtspUrls` (just `[1]` with one URL). */
  readonly mountpoints: readonly number[];
  /** Last lines of Janus's output (for error reports). */
  tail(): string;
  /** Opens a Janus session with its own event long-poll. */
  session(): Promise<JanusSession>;
  /** The streaming plugin's view of a mountpoint (`info` request, default the first): `{ enabled, viewers, media… }`. */
  mountpointInfo(id?: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface JanusWatch {
  /** Handle id inside the session. */
  readonly handle: number;
  /** The SDP offer Janus sent for this viewer. */
  readonly offerSdp: string;
  /** Sends our answer (ICE candidates included) and `start`; resolves when Janus acknowledges it. */
  start(answerSdp: string): Promise<void>;
  /** Resolves when Janus reports the PeerConnection up (`webrtcup`). */
  readonly webrtcUp: Promise<void>;
  /** Detaches the handle (ends that viewer). */
  detach(): Promise<void>;
}

export interface JanusSession {
  readonly id: number;
  /** Attaches a streaming handle and asks to watch the mountpoint (default the session's); resolves with Janus's offer. */
  watch(opts?: { timeoutMs?: number; mountpoint?: number }): Promise<JanusWatch>;
  /** Destroys the session and every handle in it. Idempotent. */
  destroy(): Promise<void>;
}

/** A TCP port that was free a moment ago (Janus's HTTP transport cannot be told to pick one). */
async function freeTcpPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The three config files, in libconfig syntax (`.jcfg`). Exported for tests. */
export function janusConfigFiles(o: {
  dir: string;
  httpPort: number;
  rtspUrl: string;
  /** One mountpoint per URL (ids 1…N) instead of `rtspUrl`. */
  rtspUrls?: readonly string[] | undefined;
  eventLoops?: number | undefined;
  videoBufferKf: boolean;
  audio: boolean;
  rtpPortRange: string;
  debugLevel: number;
}): Record<string, string> {
  const q = (s: string) => JSON.stringify(s); // libconfig strings take the same escapes as JSON
  const plugins = [
    "audiobridge",
    "duktape",
    "echotest",
    "lua",
    "nosip",
    "recordplay",
    "sip",
    "textroom",
    "videocall",
    "videoroom",
    "voicemail",
  ].map((p) => `libjanus_${p}.so`);
  const transports = ["mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets"].map((t) => `libjanus_${t}.so`);
  return {
    "janus.jcfg": `general: {
  configs_folder = ${q(o.dir)}
  plugins_folder = ${q(`${JANUS_LIB}/plugins`)}
  transports_folder = ${q(`${JANUS_LIB}/transports`)}
  events_folder = ${q(`${JANUS_LIB}/events`)}
  loggers_folder = ${q(`${JANUS_LIB}/loggers`)}
  debug_level = ${o.debugLevel}
  server_name = "gatehouse-bench"
  session_timeout = 0
${o.eventLoops !== undefined ? `  event_loops = ${o.eventLoops}\n` : ""}}
certificates: {
}
media: {
  ipv6 = false
  rtp_port_range = ${q(o.rtpPortRange)}
}
nat: {
  nice_debug = false
  ice_enforce_list = "127.0.0.1"
  ignore_mdns = true
}
plugins: {
  disable = ${q(plugins.join(","))}
}
transports: {
  disable = ${q(transports.join(","))}
}
loggers: {
  disable = "libjanus_jsonlog.so"
}
events: {
  broadcast = false
}
`,
    "janus.transport.http.jcfg": `general: {
  json = "plain"
  base_path = "/janus"
  http = true
  port = ${o.httpPort}
  ip = "127.0.0.1"
  https = false
}
admin: {
  admin_http = false
  admin_https = false
}
`,
    "janus.plugin.streaming.jcfg":
      "general: {\n}\n" +
      (o.rtspUrls ?? [o.rtspUrl])
        .map(
          (url, i) => `${i === 0 ? "bench" : `bench${i + 1}`}: {
  type = "rtsp"
  id = ${i + 1}
  description = "gatehouse bench ${i + 1}"
  audio = ${o.audio}
  video = true
  url = ${q(url)}
  videobufferkf = ${o.videoBufferKf}
  rtspiface = "127.0.0.1"
  rtsp_reconnect_delay = 5
}
`,
        )
        .join(""),
  };
}

/** Janus processes still running: killed if this process exits without closing them (Janus has no stdin watch). */
const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
}

export async function startJanus(o: JanusOptions): Promise<Janus> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "gatehouse-janus-"));
  const readyTimeoutMs = o.readyTimeoutMs ?? 20_000;
  const base = 50000 + 2000 * Math.floor(Math.random() * 5);
  let lastErr: unknown;
  // The HTTP port is picked before Janus binds it: retry on the rare race.
  for (let attempt = 0; attempt < 5; attempt++) {
    const httpPort = await freeTcpPort();
    const files = janusConfigFiles({
      dir,
      httpPort,
      rtspUrl: o.rtspUrl,
      rtspUrls: o.rtspUrls,
      eventLoops: o.eventLoops,
      videoBufferKf: o.videoBufferKf ?? true,
      audio: o.audio ?? false,
      rtpPortRange: o.rtpPortRange ?? `${base}-${base + 1999}`,
      debugLevel: o.debugLevel ?? 3,
    });
    for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(dir, name), text);
    const child = spawn(o.binary ?? "janus", ["-C", path.join(dir, "janus.jcfg"), "-F", dir, "-o"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    track(child);
    const proc = new JanusProcess(child, `http://127.0.0.1:${httpPort}/janus`, dir, (o.rtspUrls ?? [o.rtspUrl]).length);
    try {
      await proc.waitReady(readyTimeoutMs);
      return proc;
    } catch (err) {
      lastErr = err;
      await proc.close({ keepDir: true });
    }
  }
  await fs.rm(dir, { recursive: true, force: true });
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
}

interface JanusReply {
  janus: string;
  transaction?: string;
  session_id?: number;
  sender?: number;
  data?: { id?: number };
  error?: { code: number; reason: string };
  plugindata?: { plugin: string; data: Record<string, unknown> };
  jsep?: { type: string; sdp: string };
}

/** Opens a session on a running Janus's HTTP API (`api` = http://host:port/janus) for watching `mountpoint`. */
export async function openJanusSession(api: string, mountpoint: number): Promise<JanusSession> {
  const s = await post(api, { janus: "create" });
  return new Session(api, s.data!.id!, mountpoint);
}

let txCounter = 0;
const tx = () => `t${process.pid}-${++txCounter}`;

async function post(url: string, body: Record<string, unknown>): Promise<JanusReply> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify({ ...body, transaction: tx() }) });
  const reply = (await res.json()) as JanusReply;
  if (reply.janus === "error") throw new Error(`janus ${String(body["janus"])}: ${reply.error?.code} ${reply.error?.reason}`);
  return reply;
}

class JanusProcess implements Janus {
  readonly api: string;
  readonly pid: number;
  readonly mountpoint = 1;
  readonly mountpoints: readonly number[];
  private readonly child: ChildProcess;
  private readonly dir: string;
  private output = "";
  private readonly exited: Promise<void>;
  private readonly sessions = new Set<JanusSession>();
  private closing: Promise<void> | undefined;

  constructor(child: ChildProcess, api: string, dir: string, mountpoints: number) {
    this.mountpoints = Array.from({ length: mountpoints }, (_, i) => i + 1);
    this.child = child;
    this.api = api;
    this.dir = dir;
    this.pid = child.pid ?? -1;
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-8000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.exited = new Promise((r) => child.once("exit", () => r()));
  }

  tail(): string {
    return this.output.split("\n").slice(-15).join("\n");
  }

  /** HTTP API up and every mountpoint pulling (its RTSP source answered). */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    let last = "";
    while (Date.now() < deadline) {
      if (exited) throw new Error(`janus exited: ${this.tail()}`);
      try {
        const res = await fetch(`${this.api}/info`);
        if (res.ok) {
          let all = true;
          for (const id of this.mountpoints) {
            const info = await this.mountpointInfo(id);
            if (info["enabled"] === true) continue;
            last = `mountpoint ${id}: ${JSON.stringify(info).slice(0, 300)}`;
            all = false;
            break;
          }
          if (all) return;
        }
      } catch (err) {
        last = String(err);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`janus not ready after ${timeoutMs} ms (${last}): ${this.tail()}`);
  }

  async mountpointInfo(id = this.mountpoint): Promise<Record<string, unknown>> {
    const s = await post(this.api, { janus: "create" });
    const sid = s.data!.id!;
    try {
      const h = await post(`${this.api}/${sid}`, { janus: "attach", plugin: "janus.plugin.streaming" });
      const r = await post(`${this.api}/${sid}/${h.data!.id!}`, {
        janus: "message",
        body: { request: "info", id },
      });
      const data = r.plugindata?.data ?? {};
      if (data["error"]) throw new Error(`janus info: ${String(data["error"])}`);
      return (data["info"] as Record<string, unknown>) ?? {};
    } finally {
      await post(`${this.api}/${sid}`, { janus: "destroy" }).catch(() => {});
    }
  }

  async session(): Promise<JanusSession> {
    const session = await openJanusSession(this.api, this.mountpoint);
    this.sessions.add(session);
    return session;
  }

  close(opts: { keepDir?: boolean } = {}): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.sessions].map((s) => s.destroy().catch(() => {})));
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill("SIGTERM");
        const t = setTimeout(() => this.child.kill("SIGKILL"), 3000);
        await this.exited;
        clearTimeout(t);
      }
      if (!opts.keepDir) await fs.rm(this.dir, { recursive: true, force: true });
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

interface HandleWaiters {
  offer?: (r: JanusReply) => void;
  up?: () => void;
  fail?: (err: Error) => void;
}

/** One Janus session: handles share a single long-poll loop that dispatches events by sender. */
class Session implements JanusSession {
  readonly id: number;
  private readonly url: string;
  private readonly mountpoint: number;
  private readonly handles = new Map<number, HandleWaiters>();
  private destroyed = false;
  private poll: AbortController | undefined;

  constructor(api: string, id: number, mountpoint: number) {
    this.url = `${api}/${id}`;
    this.id = id;
    this.mountpoint = mountpoint;
    void this.longPoll();
  }

  private async longPoll(): Promise<void> {
    while (!this.destroyed) {
      this.poll = new AbortController();
      let events: JanusReply[];
      try {
        const res = await fetch(`${this.url}?maxev=50&rid=${Date.now()}`, { signal: this.poll.signal });
        const body = (await res.json()) as JanusReply | JanusReply[];
        events = Array.isArray(body) ? body : [body];
      } catch {
        if (this.destroyed) return;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      for (const e of events) this.dispatch(e);
    }
  }

  private dispatch(e: JanusReply): void {
    const w = e.sender !== undefined ? this.handles.get(e.sender) : undefined;
    if (!w) return;
    if (e.janus === "event" && e.jsep?.type === "offer") w.offer?.(e);
    else if (e.janus === "event" && e.plugindata?.data["error"]) w.fail?.(new Error(String(e.plugindata.data["error"])));
    else if (e.janus === "webrtcup") w.up?.();
    else if (e.janus === "hangup" || e.janus === "detached") w.fail?.(new Error(`janus ${e.janus}`));
  }

  async watch(opts: { timeoutMs?: number; mountpoint?: number } = {}): Promise<JanusWatch> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const h = await post(this.url, { janus: "attach", plugin: "janus.plugin.streaming" });
    const handle = h.data!.id!;
    const hurl = `${this.url}/${handle}`;
    const waiters: HandleWaiters = {};
    this.handles.set(handle, waiters);
    let failed: (err: Error) => void = () => {};
    const failure = new Promise<never>((_, reject) => (failed = reject));
    failure.catch(() => {});
    waiters.fail = (err) => failed(err);
    const timeout = <T>(p: Promise<T>, what: string): Promise<T> => {
      let t: NodeJS.Timeout | undefined;
      return Promise.race([
        p,
        failure,
        new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`janus: no ${what} after ${timeoutMs} ms`)), timeoutMs))),
      ]).finally(() => clearTimeout(t));
    };
    const offer = new Promise<JanusReply>((resolve) => (waiters.offer = resolve));
    const webrtcUp = timeout(new Promise<void>((resolve) => (waiters.up = resolve)), "webrtcup");
    webrtcUp.catch(() => {});
    // The offer may come in the synchronous reply or, usually, as an event on the long poll.
    const ack = await post(hurl, { janus: "message", body: { request: "watch", id: opts.mountpoint ?? this.mountpoint } });
    if (ack.jsep?.type === "offer") waiters.offer?.(ack);
    const ev = await timeout(offer, "offer");
    return {
      handle,
      offerSdp: ev.jsep!.sdp,
      webrtcUp,
      start: async (answerSdp: string) => {
        await post(hurl, { janus: "message", body: { request: "start" }, jsep: { type: "answer", sdp: answerSdp } });
        // Every candidate is in the answer: tell Janus gathering is complete.
        await post(hurl, { janus: "trickle", candidate: { completed: true } });
      },
      detach: async () => {
        this.handles.delete(handle);
        await post(hurl, { janus: "detach" }).catch(() => {});
      },
    };
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.poll?.abort();
    this.handles.clear();
    await post(this.url, { janus: "destroy" }).catch(() => {});
  }
}
