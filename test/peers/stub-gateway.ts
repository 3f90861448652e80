/**
 * A small WHEP gateway for the web client's tests in real Chromium: the static web/ folder under
 * the strict CSP the sign-in layer sets, `api/cameras`, `auth/me`, `auth/csrf`, and one werift
 * peer per viewer forwarding a live test pattern, so the page's behaviour can be driven precisely
 * (sign-in redirect, CSRF, sessions dropped by the server, many cameras).
 *
 * Media: ffmpeg encodes a live 320×180 H.264 test pattern and a PCMU tone to RTP; a werift
 * peer per viewer forwards it, as the SFU would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { EventEmitter, once } from "node:events";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import express from "express";
import { MediaStreamTrack, type RTCPeerConnection, RTCRtpCodecParameters } from "werift";
import { loopbackPeerConnection } from "./loopback-peer.ts";

export const WEB_ROOT = fileURLToPath(new URL("../../web/", import.meta.url));
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
export const PHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
export const WIDTH = 320;
export const HEIGHT = 180;

export interface StubCamera {
  id: string;
  name: string;
  state: string;
  reason?: string;
  groups?: string[];
}

export interface WhepRequestRecord {
  method: string;
  camera: string;
  viewer?: string;
  csrf?: string;
  /** performance.now() when the request arrived. */
  at: number;
}

/** A minimal WHEP gateway: static web/, api/cameras, and one werift peer per viewer. */
export class StubGateway extends EventEmitter {
  url = "";
  cameras: StubCamera[] = [];
  /** Status of api/cameras (401 to test the sign-in redirect). */
  camerasStatus = 200;
  /** When set, auth/csrf returns it and WHEP POST/DELETE require it. */
  csrfToken: string | null = null;
  /** What auth/me answers (404 when null). */
  me: { name: string; sub: string; via: string } | null = null;
  /** What `api/intercom` answers (its event stream then sends `ready`), or null for 404. */
  intercom: { devices: Array<Record<string, unknown>> } | null = null;
  /** `Link` header value for OPTIONS (ICE servers), or null for none. */
  iceLink: string | null = null;
  /** Cameras whose WHEP endpoint answers 404. */
  readonly missing = new Set<string>();
  /** Cameras whose POST answers 503 with this `Retry-After`, seconds (no free media port). */
  readonly busy = new Map<string, number>();
  /** This stub has no multi-camera route (`grid`): its 404 to those requests comes this late, ms (a slow gateway). */
  gridDelayMs = 0;
  readonly requests: WhepRequestRecord[] = [];
  readonly viewers = new Map<string, { camera: string; pc: RTCPeerConnection }>();
  private readonly video = new MediaStreamTrack({ kind: "video" });
  private readonly audio = new MediaStreamTrack({ kind: "audio" });
  private ffmpeg: ChildProcess | undefined;
  private server: ReturnType<express.Express["listen"]> | undefined;
  private readonly sockets: dgram.Socket[] = [];
  private next = 0;
  rtpIn = 0;
  /** While set, the test pattern's video stops on the way to every viewer (the connections stay up, the sound goes on). */
  videoFrozen = false;

  async start(): Promise<void> {
    const [vport, aport] = await Promise.all([this.rtpSocket(this.video), this.rtpSocket(this.audio)]);
    // prettier-ignore
    this.ffmpeg = spawn("ffmpeg", [
      "-hide_banner", "-loglevel", "error", "-re",
      "-f", "lavfi", "-i", `testsrc2=size=${WIDTH}x${HEIGHT}:rate=25`,
      "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000",
      "-map", "0:v", "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
      "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "rtp", "-payload_type", "96", `rtp://127.0.0.1:${vport}?pkt_size=1200`,
      "-map", "1:a", "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1", "-f", "rtp", "-payload_type", "0", `rtp://127.0.0.1:${aport}`,
    ], { stdio: ["ignore", "ignore", "pipe"] });

    const app = express();
    app.get("/api/cameras", (_req, res) => {
      if (this.camerasStatus !== 200) {
        res.status(this.camerasStatus).json({ reason: "sign in" });
        return;
      }
      res.json(this.cameras);
    });
    app.get("/auth/csrf", (_req, res) => {
      if (!this.csrfToken) {
        res.status(404).end();
        return;
      }
      res.json({ token: this.csrfToken });
    });
    app.get("/auth/me", (_req, res) => {
      if (!this.me) {
        res.status(404).end();
        return;
      }
      res.json(this.me);
    });
    app.get("/api/intercom", (_req, res) => {
      if (!this.intercom || !this.me) {
        res.status(404).end();
        return;
      }
      res.json({ user: { sub: this.me.sub, name: this.me.name }, iceServers: [], devices: this.intercom.devices });
    });
    app.get("/api/intercom/events", (_req, res) => {
      if (!this.intercom || !this.me) {
        res.status(404).end();
        return;
      }
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store" });
      res.write(`event: ready\ndata: ${JSON.stringify({ user: { sub: this.me.sub, name: this.me.name }, ringing: [], calls: [] })}\n\n`);
    });
    app.get("/auth/login", (req, res) => {
      this.emit("login", String(req.query["return_to"] ?? ""));
      res.type("html").send("<!doctype html><title>Sign in</title><p>Sign in</p>");
    });
    app.options("/whep/:camera", (_req, res) => {
      if (this.iceLink) res.set("Link", this.iceLink);
      res.status(204).end();
    });
    app.post("/whep/:camera", express.text({ type: "application/sdp" }), (req, res, next) => {
      this.answer(req.params.camera, String(req.body), req.get("X-CSRF-Token"))
        .then((r) => {
          res.status(r.status);
          if (r.location) res.set("Location", r.location);
          if (r.retryAfter !== undefined) res.set("Retry-After", String(r.retryAfter));
          res.type(r.status === 201 ? "application/sdp" : "application/json").send(r.body);
        })
        .catch(next);
    });
    app.delete("/whep/:camera/:viewer", (req, res) => {
      const csrf = req.get("X-CSRF-Token");
      this.record({ method: "DELETE", camera: req.params.camera, viewer: req.params.viewer, ...(csrf ? { csrf } : {}) });
      if (this.csrfToken && csrf !== this.csrfToken) {
        res.status(403).end();
        return;
      }
      const v = this.viewers.get(req.params.viewer);
      this.viewers.delete(req.params.viewer);
      void v?.pc.close();
      res.status(200).end();
    });
    // No grid route here (an older gateway): the page's requests to it get the 404 below, `gridDelayMs` late.
    app.all(/^\/grid(\/|$)/, (_req, _res, next) => {
      if (this.gridDelayMs > 0) setTimeout(next, this.gridDelayMs);
      else next();
    });
    // The strict policy the sign-in layer sets: the page must work without inline script or style.
    app.use((_req, res, next) => {
      res.set("Content-Security-Policy", CSP);
      next();
    });
    app.use(express.static(WEB_ROOT));
    const server = app.listen(0, "127.0.0.1");
    this.server = server;
    await once(server, "listening");
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  /** Resolves with the first request (past or future) matching `pred`. */
  waitForRequest(pred: (r: WhepRequestRecord) => boolean, timeoutMs = 10_000): Promise<WhepRequestRecord> {
    const seen = this.requests.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("request", on);
        reject(new Error(`no matching WHEP request within ${timeoutMs} ms; saw ${JSON.stringify(this.requests)}`));
      }, timeoutMs);
      const on = (r: WhepRequestRecord) => {
        if (!pred(r)) return;
        clearTimeout(timer);
        this.off("request", on);
        resolve(r);
      };
      this.on("request", on);
    });
  }

  /** Close every server-side peer of `camera` without telling the browser (a gateway restart, a crash). */
  async dropViewers(camera: string): Promise<number> {
    let n = 0;
    for (const [id, v] of this.viewers) {
      if (v.camera !== camera) continue;
      this.viewers.delete(id);
      await v.pc.close();
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    this.ffmpeg?.kill("SIGKILL");
    for (const v of this.viewers.values()) await v.pc.close();
    this.viewers.clear();
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise((r) => this.server?.close(r));
    }
    for (const s of this.sockets) s.close();
  }

  private record(req: Omit<WhepRequestRecord, "at">): void {
    const r = { ...req, at: performance.now() };
    this.requests.push(r);
    this.emit("request", r);
  }

  private async rtpSocket(track: MediaStreamTrack): Promise<number> {
    const sock = dgram.createSocket("udp4");
    this.sockets.push(sock);
    sock.on("message", (msg) => {
      this.rtpIn++;
      if (this.videoFrozen && track === this.video) return;
      track.writeRtp(msg);
    });
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
    return (sock.address() as AddressInfo).port;
  }

  private async answer(camera: string, offer: string, csrf: string | undefined): Promise<{ status: number; body: string; location?: string; retryAfter?: number }> {
    const viewer = `v${++this.next}`;
    this.record({ method: "POST", camera, viewer, ...(csrf ? { csrf } : {}) });
    if (this.csrfToken && csrf !== this.csrfToken) return { status: 403, body: JSON.stringify({ reason: "bad CSRF token" }) };
    if (this.missing.has(camera) || !this.cameras.some((c) => c.id === camera)) {
      return { status: 404, body: JSON.stringify({ reason: "unknown camera" }) };
    }
    const busyFor = this.busy.get(camera);
    if (busyFor !== undefined) return { status: 503, body: JSON.stringify({ reason: "no free media port" }), retryAfter: busyFor };
    const pc = loopbackPeerConnection({
      codecs: {
        video: [
          new RTCRtpCodecParameters({
            mimeType: "video/H264",
            clockRate: 90000,
            rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }],
            parameters: "packetization-mode=1;profile-level-id=42e01f;level-asymmetry-allowed=1",
          }),
        ],
        audio: [new RTCRtpCodecParameters({ mimeType: "audio/PCMU", clockRate: 8000, channels: 1 })],
      },
    });
    await pc.setRemoteDescription({ type: "offer", sdp: offer });
    for (const t of pc.getTransceivers()) {
      t.setDirection("sendonly");
      await t.sender.replaceTrack(t.kind === "video" ? this.video : this.audio);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc.iceGatheringState !== "complete") {
      await new Promise<void>((resolve) => {
        const { unSubscribe } = pc.iceGatheringStateChange.subscribe((s) => {
          if (s === "complete") {
            unSubscribe();
            resolve();
          }
        });
      });
    }
    this.viewers.set(viewer, { camera, pc });
    return { status: 201, body: pc.localDescription?.sdp ?? "", location: `/whep/${camera}/${viewer}` };
  }
}

