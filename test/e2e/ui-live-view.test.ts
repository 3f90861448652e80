/**
 * The live-view page in real Chromium, against a small WHEP server of its own so
 * the page's behaviour can be driven precisely: sign-in redirect, CSRF, sessions
 * dropped by the server, deep links, keyboard use, session clean-up on page close.
 * (The same page against the whole gateway is covered by live-view.test.ts.)
 *
 * Media: ffmpeg encodes a live 320×180 H.264 test pattern and a PCMU tone to RTP;
 * a werift peer per viewer forwards it, as the SFU would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { EventEmitter, once } from "node:events";
import { createHmac } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import express from "express";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters } from "werift";
import {
  audioPacketsReceived,
  canvasNotBlack,
  launchChromium,
  pageErrors,
  videoSize,
  waitForDecodedFrames,
  waitForNewFrames,
  type Chromium,
} from "../peers/chromium.ts";
import { startCoturn } from "../peers/coturn.ts";

const WEB_ROOT = fileURLToPath(new URL("../../web/", import.meta.url));
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const PHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const WIDTH = 320;
const HEIGHT = 180;

interface StubCamera {
  id: string;
  name: string;
  state: string;
  reason?: string;
}

interface WhepRequestRecord {
  method: string;
  camera: string;
  viewer?: string;
  csrf?: string;
}

/** A minimal WHEP gateway: static web/, api/cameras, and one werift peer per viewer. */
class StubGateway extends EventEmitter {
  url = "";
  cameras: StubCamera[] = [];
  /** Status of api/cameras (401 to test the sign-in redirect). */
  camerasStatus = 200;
  /** When set, auth/csrf returns it and WHEP POST/DELETE require it. */
  csrfToken: string | null = null;
  /** What auth/me answers (404 when null). */
  me: { name: string; sub: string; via: string } | null = null;
  /** `Link` header value for OPTIONS (ICE servers), or null for none. */
  iceLink: string | null = null;
  /** Cameras whose WHEP endpoint answers 404. */
  readonly missing = new Set<string>();
  readonly requests: WhepRequestRecord[] = [];
  readonly viewers = new Map<string, { camera: string; pc: RTCPeerConnection }>();
  private readonly video = new MediaStreamTrack({ kind: "video" });
  private readonly audio = new MediaStreamTrack({ kind: "audio" });
  private ffmpeg: ChildProcess | undefined;
  private server: ReturnType<express.Express["listen"]> | undefined;
  private readonly sockets: dgram.Socket[] = [];
  private next = 0;
  rtpIn = 0;

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

  private record(r: WhepRequestRecord): void {
    this.requests.push(r);
    this.emit("request", r);
  }

  private async rtpSocket(track: MediaStreamTrack): Promise<number> {
    const sock = dgram.createSocket("udp4");
    this.sockets.push(sock);
    sock.on("message", (msg) => {
      this.rtpIn++;
      track.writeRtp(msg);
    });
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
    return (sock.address() as AddressInfo).port;
  }

  private async answer(camera: string, offer: string, csrf: string | undefined): Promise<{ status: number; body: string; location?: string }> {
    const viewer = `v${++this.next}`;
    this.record({ method: "POST", camera, viewer, ...(csrf ? { csrf } : {}) });
    if (this.csrfToken && csrf !== this.csrfToken) return { status: 403, body: JSON.stringify({ reason: "bad CSRF token" }) };
    if (this.missing.has(camera) || !this.cameras.some((c) => c.id === camera)) {
      return { status: 404, body: JSON.stringify({ reason: "unknown camera" }) };
    }
    const pc = new RTCPeerConnection({
      iceServers: [],
      // Loopback only, like the tests' other peers (and reachable through coturn's loopback relay).
      // werift binds to iceInterfaceAddresses but advertises the interfaces it finds (loopback excluded):
      // turn those off and advertise the bound address.
      iceUseIpv4: false,
      iceUseIpv6: false,
      iceAdditionalHostAddresses: ["127.0.0.1"],
      iceInterfaceAddresses: { udp4: "127.0.0.1" },
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

const tile = (id: string) => `[data-camera="${id}"]`;
const tileVideo = (id: string) => `${tile(id)} video`;

interface TileStats {
  camera: string;
  candidateType?: string;
  status: string;
  state: string;
  attempts: number;
  hasAudio: boolean;
  muted: boolean;
  frameWidth?: number;
  framesDecoded?: number;
}

async function tileStats(page: Page): Promise<TileStats[]> {
  return page.evaluate(() => (window as unknown as { gatehouse: { stats(): Promise<TileStats[]> } }).gatehouse.stats());
}

describe("live view page (Chromium, stub WHEP server)", () => {
  const stub = new StubGateway();
  let chromium: Chromium;

  beforeAll(async () => {
    await stub.start();
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    await stub.close();
  });

  /** Fresh stub state for a test; peers left by earlier tests' closed pages are dropped. */
  const resetStub = async (cameras: Array<[string, string]>) => {
    for (const c of new Set([...stub.viewers.values()].map((v) => v.camera))) await stub.dropViewers(c);
    stub.cameras = cameras.map(([id, name]) => ({ id, name, state: "playing" }));
    stub.camerasStatus = 200;
    stub.csrfToken = null;
    stub.missing.clear();
    stub.iceLink = null;
    stub.me = null;
  };

  it("shows one live tile per camera with decoded video, audio, stats overlay and an unmute button", async () => {
    await resetStub([
      ["front-door", "Front door"],
      ["yard", "Back yard"],
    ]);
    const page = await chromium.newPage(stub.url);
    try {
      await waitForDecodedFrames(page, 10, 15_000, tileVideo("front-door"));
      await waitForDecodedFrames(page, 10, 15_000, tileVideo("yard"));
      expect(await page.$$eval(".tile .tile-name", (els) => els.map((e) => e.textContent))).toEqual(["Front door", "Back yard"]);
      expect(await videoSize(page, tileVideo("yard"))).toEqual({ width: WIDTH, height: HEIGHT });
      expect(await canvasNotBlack(page, tileVideo("front-door"))).toBe(true);

      // Badges turn "Live" once frames flow (the page samples stats every second).
      await page.waitForFunction(
        () => [...document.querySelectorAll(".tile")].every((t) => (t as HTMLElement).dataset["status"] === "live"),
        { timeout: 5000 },
      );
      expect(await page.$$eval(".badge-text", (els) => els.map((e) => e.textContent))).toEqual(["Live", "Live"]);
      expect(await page.$eval("#summary", (e) => e.textContent)).toBe("2 cameras · 2 live");
      expect(await page.$eval("#user", (e) => (e as HTMLElement).hidden)).toBe(true); // no sign-in layer

      // Audio arrives and can be switched on from the tile.
      const audio = await audioPacketsReceived(page, tileVideo("front-door"));
      expect(audio).toBeGreaterThan(0);
      await page.waitForSelector(`${tile("front-door")} .tile-audio:not([hidden])`, { timeout: 5000 });
      await page.click(`${tile("front-door")} .tile-audio`);
      expect(await page.$eval(`${tile("front-door")} .tile-audio`, (b) => b.getAttribute("aria-pressed"))).toBe("true");
      expect(await page.$eval(tileVideo("front-door"), (v) => (v as HTMLVideoElement).muted)).toBe(false);

      // Stats overlay: real figures from getStats.
      await page.click("#stats-toggle");
      await page.waitForFunction(
        (sel) => /kbit\/s/.test(document.querySelector(`${sel} [data-stat=bitrate]`)?.textContent ?? "") &&
          document.querySelector(`${sel} [data-stat=bitrate]`)?.textContent !== "0 kbit/s",
        { timeout: 5000 },
        tile("yard"),
      );
      expect(await page.$eval(`${tile("yard")} [data-stat=resolution]`, (e) => e.textContent)).toBe(`${WIDTH}×${HEIGHT}`);
      expect(await page.$eval(`${tile("yard")} [data-stat=codec]`, (e) => e.textContent)).toBe("H264 / PCMU");

      const stats = await tileStats(page);
      expect(stats.map((s) => [s.camera, s.state, s.hasAudio, s.frameWidth])).toEqual([
        ["front-door", "connected", true, WIDTH],
        ["yard", "connected", true, WIDTH],
      ]);
      // No CSP violation (they are reported as console errors), no uncaught exception.
      expect(pageErrors(page).filter((e) => !/status of 404/.test(e))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("opens a camera large on click, closes the other sessions, and comes back with Escape", async () => {
    await resetStub([
      ["front-door", "Front door"],
      ["yard", "Back yard"],
    ]);
    const page = await chromium.newPage(stub.url);
    try {
      await waitForDecodedFrames(page, 5, 15_000, tileVideo("front-door"));
      await waitForDecodedFrames(page, 5, 15_000, tileVideo("yard"));
      const frontViewer = [...stub.viewers].find(([, v]) => v.camera === "front-door")?.[0];
      expect(frontViewer).toBeDefined();

      await page.click(`${tile("yard")} .tile-open`);
      expect(new URL(page.url()).hash).toBe("#camera=yard");
      // The hidden camera's session is ended on the server (WHEP DELETE).
      await stub.waitForRequest((r) => r.method === "DELETE" && r.viewer === frontViewer);
      expect(await page.$eval(tile("front-door"), (e) => (e as HTMLElement).hidden)).toBe(true);
      expect(await page.$eval(tile("yard"), (e) => e.classList.contains("is-open"))).toBe(true);
      expect(await page.$eval("#view-title", (e) => e.textContent)).toBe("Back yard");
      const box = await page.$eval(tile("yard"), (e) => e.getBoundingClientRect().width);
      expect(box).toBeGreaterThan(1000); // large: the 1280 px viewport minus margins
      await waitForNewFrames(page, 10, 5000, tileVideo("yard"));

      await page.keyboard.press("Escape");
      await page.waitForFunction(() => location.hash === "" && document.querySelector("#grid")?.getAttribute("data-mode") === "grid");
      expect(await page.$eval(tile("front-door"), (e) => (e as HTMLElement).hidden)).toBe(false);
      // The paused tile restarts with a new session and decodes again.
      await waitForNewFrames(page, 5, 15_000, tileVideo("front-door"));
      // Focus returns to the tile that was open.
      expect(await page.evaluate(() => document.activeElement?.closest(".tile")?.getAttribute("data-camera"))).toBe("yard");
    } finally {
      await page.close();
    }
  });

  it("a link naming a camera opens it directly and starts only that camera's session", async () => {
    await resetStub([
      ["front-door", "Front door"],
      ["yard", "Back yard"],
      ["garage", "Garage"],
    ]);
    const before = stub.requests.length;
    const page = await chromium.newPage(`${stub.url}#camera=garage`);
    try {
      await waitForDecodedFrames(page, 5, 15_000, tileVideo("garage"));
      expect(await page.$eval(tile("garage"), (e) => e.classList.contains("is-open"))).toBe(true);
      const posts = stub.requests.slice(before).filter((r) => r.method === "POST");
      expect(posts.map((r) => r.camera)).toEqual(["garage"]);
      // Browser Back from a deep link has nowhere to go in-app: the back button returns to the grid instead.
      await page.click("#back");
      await page.waitForFunction(() => document.querySelector("#grid")?.getAttribute("data-mode") === "grid");
      await waitForDecodedFrames(page, 1, 15_000, tileVideo("front-door"));
    } finally {
      await page.close();
    }
  });

  it("is usable from the keyboard: arrows move between tiles, Enter opens, S toggles stats, M toggles sound", async () => {
    await resetStub([
      ["front-door", "Front door"],
      ["yard", "Back yard"],
      ["garage", "Garage"],
    ]);
    const page = await chromium.newPage(stub.url);
    try {
      await page.waitForSelector(`${tile("garage")} .tile-open`);
      await page.focus(`${tile("front-door")} .tile-open`);
      await page.keyboard.press("ArrowRight");
      const focused = () => page.evaluate(() => document.activeElement?.closest(".tile")?.getAttribute("data-camera"));
      expect(await focused()).toBe("yard");
      await page.keyboard.press("End");
      expect(await focused()).toBe("garage");
      await page.keyboard.press("ArrowLeft");
      expect(await focused()).toBe("yard");
      expect(await page.$eval(`${tile("yard")} .tile-open`, (b) => b.getAttribute("aria-label"))).toMatch(/^Open Back yard, /);

      await page.keyboard.press("Enter");
      await page.waitForFunction(() => location.hash === "#camera=yard");
      await waitForDecodedFrames(page, 1, 15_000, tileVideo("yard"));
      await page.keyboard.press("s");
      expect(await page.$eval(`${tile("yard")} .tile-stats`, (e) => (e as HTMLElement).hidden)).toBe(false);
      await page.waitForSelector(`${tile("yard")} .tile-audio:not([hidden])`, { timeout: 5000 });
      await page.keyboard.press("m");
      expect(await page.$eval(tileVideo("yard"), (v) => (v as HTMLVideoElement).muted)).toBe(false);
      // Every control has an accessible name.
      const unnamed = await page.$$eval("button:not([hidden])", (bs) =>
        bs.filter((b) => !(b.getAttribute("aria-label") || b.textContent?.trim())).map((b) => b.outerHTML.slice(0, 80)),
      );
      expect(unnamed).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("reconnects by itself, without reloading, when the server drops the session", async () => {
    await resetStub([["front-door", "Front door"]]);
    const page = await chromium.newPage(stub.url);
    try {
      await waitForDecodedFrames(page, 5, 15_000, tileVideo("front-door"));
      await page.evaluate(() => {
        (window as unknown as { notReloaded: boolean }).notReloaded = true;
      });
      expect(await stub.dropViewers("front-door")).toBe(1);
      // Chromium notices after ~5 s without ICE consent, the page retries after its grace period.
      const resumed = await waitForNewFrames(page, 10, 25_000, tileVideo("front-door"));
      expect(resumed.framesDecoded).toBeGreaterThanOrEqual(10);
      expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
      const [s] = await tileStats(page);
      expect(s?.attempts).toBe(2);
      expect(s?.state).toBe("connected");
    } finally {
      await page.close();
    }
  });

  it("ends its WHEP sessions when the page goes away (DELETE with keepalive)", async () => {
    await resetStub([["yard", "Back yard"]]);
    const page = await chromium.newPage(stub.url);
    await waitForDecodedFrames(page, 1, 15_000, tileVideo("yard"));
    const viewer = [...stub.viewers].find(([, v]) => v.camera === "yard")?.[0];
    await page.close({ runBeforeUnload: true });
    await stub.waitForRequest((r) => r.method === "DELETE" && r.viewer === viewer);
    expect(stub.viewers.has(viewer ?? "")).toBe(false);
  });

  it("sends the browser to sign in, returning to the same view, when the camera list answers 401", async () => {
    await resetStub([["yard", "Back yard"]]);
    stub.camerasStatus = 401;
    const login = once(stub, "login") as Promise<[string]>;
    const page = await chromium.newPage(`${stub.url}#camera=yard`);
    try {
      const [returnTo] = await login;
      expect(returnTo).toBe("/#camera=yard");
      await page.waitForFunction(() => location.pathname === "/auth/login");
    } finally {
      await page.close();
    }
  });

  it("with a signed-in session: shows the user, offers sign-out, sends the CSRF token with WHEP POST and DELETE", async () => {
    await resetStub([["yard", "Back yard"]]);
    stub.csrfToken = "tok-123";
    stub.me = { name: "Ada Lovelace", sub: "ada", via: "session" };
    const before = stub.requests.length;
    const page = await chromium.newPage(stub.url);
    try {
      await page.waitForSelector("#user:not([hidden])", { timeout: 5000 });
      expect(await page.$eval("#user .user-name", (e) => e.textContent)).toBe("Ada Lovelace");
      expect(await page.$eval("#sign-out", (a) => [(a as HTMLElement).hidden, (a as HTMLAnchorElement).href])).toEqual([false, `${stub.url}auth/logout`]);
      await waitForDecodedFrames(page, 1, 15_000, tileVideo("yard"));
      const post = stub.requests.slice(before).find((r) => r.method === "POST");
      expect(post?.csrf).toBe("tok-123");
    } finally {
      await page.close();
    }
    const del = await stub.waitForRequest((r) => stub.requests.indexOf(r) >= before && r.method === "DELETE");
    expect(del.csrf).toBe("tok-123");
  });

  it("shows why a camera cannot be played and keeps retrying", async () => {
    await resetStub([
      ["yard", "Back yard"],
      ["gone", "Old gate"],
    ]);
    stub.missing.add("gone");
    const page = await chromium.newPage(stub.url);
    try {
      await waitForDecodedFrames(page, 1, 15_000, tileVideo("yard"));
      await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute("data-status") === "retrying", { timeout: 5000 }, tile("gone"));
      expect(await page.$eval(`${tile("gone")} .tile-message`, (e) => e.textContent)).toBe("Unknown camera");
      // Two attempts at least: the backoff retries a 404 (the camera may come back).
      await stub.waitForRequest((r) => r.method === "POST" && r.camera === "gone" && stub.requests.filter((x) => x.camera === "gone").length >= 2);
      const gone = (await tileStats(page)).find((s) => s.camera === "gone");
      expect(gone?.state === "retrying" || gone?.state === "connecting").toBe(true);
    } finally {
      await page.close();
    }
  });

  it("parses WHEP Link headers into ICE servers (RFC 8288 syntax, in the browser)", async () => {
    await resetStub([]);
    const page = await chromium.newPage(stub.url);
    try {
      const header =
        '<stun:stun.example.net>; rel="ice-server", ' +
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u:1700000000"; credential="p,w;\\"x"; credential-type="password", ' +
        "<turns:turn.example.net:443?transport=tcp>; rel=ice-server; username=bob; credential=secret, " +
        '<https://example.net/doc>; rel="help", <http://bad>; rel="ice-server", garbage, <stun:a>; REL="ice-server"';
      // A string, so the test runner's module transform cannot rewrite the page's dynamic import.
      const servers = await page.evaluate(
        `import("/whep.js").then((w) => w.iceServersFromLinks(w.parseLinkHeader(${JSON.stringify(header)})))`,
      );
      expect(servers).toEqual([
        { urls: "stun:stun.example.net" },
        { urls: "turn:turn.example.net:3478?transport=udp", username: "u:1700000000", credential: 'p,w;"x' },
        { urls: "turns:turn.example.net:443?transport=tcp", username: "bob", credential: "secret" },
        { urls: "stun:a" },
      ]);
    } finally {
      await page.close();
    }
  });
  it("with ?relay=1 plays through the TURN server advertised in the OPTIONS Link header (coturn)", async () => {
    await resetStub([["yard", "Back yard"]]);
    const secret = "relay-test-secret";
    // coturn needs a real (empty) user database file for time-limited credentials; /dev/null does not do.
    const db = await mkdtemp(path.join(os.tmpdir(), "gatehouse-coturn-"));
    try {
      await using turn = await startCoturn({ secret, realm: "gatehouse.test", args: [`--userdb=${db}/turndb`] });
      // Time-limited TURN credentials (REST scheme): username "<expiry>:<user>", password base64 HMAC-SHA1 of it.
      const username = `${Math.floor(Date.now() / 1000) + 600}:viewer`;
      const credential = createHmac("sha1", secret).update(username).digest("base64");
      stub.iceLink = `<turn:127.0.0.1:${turn.port}?transport=udp>; rel="ice-server"; username="${username}"; credential="${credential}"`;
      const page = await chromium.newPage(`${stub.url}?relay=1`);
      try {
        await waitForDecodedFrames(page, 5, 15_000, tileVideo("yard"));
        const config = await page.evaluate(() => {
          const gh = (window as unknown as { gatehouse: { sessions: Map<string, { pc: RTCPeerConnection }> } }).gatehouse;
          const c = gh.sessions.get("yard")?.pc.getConfiguration();
          return { policy: c?.iceTransportPolicy, servers: c?.iceServers };
        });
        expect(config.policy).toBe("relay");
        expect(config.servers).toEqual([{ urls: [`turn:127.0.0.1:${turn.port}?transport=udp`], username, credential }]);
        const [s] = await tileStats(page);
        expect(s?.candidateType).toBe("relay");
      } finally {
        await page.close();
      }
    } finally {
      await rm(db, { recursive: true, force: true });
    }
  });

  it("fits a phone: one column, touch targets of at least 40 px, tap opens a camera", async () => {
    await resetStub([
      ["front-door", "Front door"],
      ["yard", "Back yard"],
    ]);
    const page = await chromium.newPage();
    try {
      await page.emulate({ viewport: { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }, userAgent: PHONE_UA });
      await page.goto(stub.url);
      await waitForDecodedFrames(page, 1, 15_000, tileVideo("yard"));
      const boxes = await page.$$eval(".tile", (els) => els.map((e) => e.getBoundingClientRect().toJSON() as DOMRect));
      expect(boxes).toHaveLength(2);
      expect(boxes[0]?.x).toBe(boxes[1]?.x); // stacked
      expect(boxes[0]!.width).toBeGreaterThan(350);
      const small = await page.$$eval("button:not([hidden])", (bs) =>
        bs.map((b) => b.getBoundingClientRect()).filter((r) => r.width > 0 && (r.width < 40 || r.height < 40)).length,
      );
      expect(small).toBe(0);
      expect(await page.$eval("html", (e) => e.scrollWidth)).toBeLessThanOrEqual(390); // no sideways scrolling
      await page.tap(`${tile("front-door")} .tile-open`);
      await page.waitForFunction(() => location.hash === "#camera=front-door");
      await waitForDecodedFrames(page, 1, 15_000, tileVideo("front-door"));
    } finally {
      await page.close();
    }
  });
});
