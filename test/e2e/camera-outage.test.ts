/**
 * End to end: what a guard sees when a recorder fails, in real Chromium with real
 * GStreamer recorders. The page must never show LIVE on a frozen picture, must not
 * decode anything from before the outage (framesDecoded stands still while the
 * recorder is down), must say OFFLINE / RECONNECTING with the last picture greyed, and
 * must play again by itself, on the same page and WHEP session, when the recorder is back.
 * `/api/cameras` reports the outage too, for cameras nobody watches as well.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { CameraView } from "../../gateway/cameras.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { tileRows, type TileRow } from "../peers/browser-page.ts";
import { inboundStats, launchChromium, waitForNewFrames, type Chromium } from "../peers/chromium.ts";
import { startGstRtspServer, type GstRtspServer } from "../peers/gst.ts";

const videoOf = (camera: string) => `[data-camera="${camera}"] video`;

async function tile(page: Page, camera: string): Promise<TileRow> {
  const all = await tileRows(page);
  const t = all.find((x) => x.camera === camera);
  if (!t) throw new Error(`no tile for ${camera}`);
  return t;
}

/** Records, every 50 ms in the page, the tile's badge and decoded frames: what a person would have seen. */
async function startTrace(page: Page, camera: string): Promise<void> {
  await page.evaluate((cam) => {
    const w = window as unknown as { __trace: { t: number; label: string; frames: number }[]; __traceTimer?: number };
    w.__trace = [];
    clearInterval(w.__traceTimer);
    w.__traceTimer = window.setInterval(async () => {
      const el = document.querySelector(`[data-camera="${cam}"]`);
      const label = el?.querySelector(".badge-text")?.textContent ?? "";
      const gh = (window as unknown as { __gh?: { inbound(s: string, k: string): Promise<{ framesDecoded: number } | null> } }).__gh;
      const frames = (await gh?.inbound(`[data-camera="${cam}"] video`, "video"))?.framesDecoded ?? -1;
      w.__trace.push({ t: Date.now(), label, frames });
    }, 50);
  }, camera);
}

async function trace(page: Page): Promise<{ t: number; label: string; frames: number }[]> {
  return page.evaluate(() => (window as unknown as { __trace: { t: number; label: string; frames: number }[] }).__trace);
}

async function waitForLabel(page: Page, camera: string, labels: string[], timeoutMs: number): Promise<string> {
  const h = await page.waitForFunction(
    (cam, want) => {
      const text = document.querySelector(`[data-camera="${cam}"] .badge-text`)?.textContent ?? "";
      return (want as string[]).includes(text) ? text : false;
    },
    { polling: 25, timeout: timeoutMs },
    camera,
    labels,
  );
  return (await h.jsonValue()) as string;
}

/** Hash of the picture on screen (changes every frame: the test pattern moves). */
const FRAME_HASH = (selector: string) => `(() => { const v = document.querySelector(${JSON.stringify(selector)});
  const c = document.createElement("canvas"); c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext("2d"); x.drawImage(v, 0, 0); const d = x.getImageData(0, 0, c.width, c.height).data;
  let h = 0; for (let i = 0; i < d.length; i += 4 * 7) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0; return h; })()`;

async function cameras(gateway: Gateway): Promise<CameraView[]> {
  const res = await fetch(`${gateway.url}/api/cameras`);
  expect(res.status).toBe(200);
  return (await res.json()) as CameraView[];
}

async function waitForCamera(gateway: Gateway, id: string, ok: (v: CameraView) => boolean, timeoutMs = 15_000): Promise<CameraView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = gateway.cameras.view(id)!;
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`camera ${id} never matched; last ${JSON.stringify(v)}`);
    await new Promise<void>((resolve) => {
      const off = gateway.cameras.events.on("camera", (c) => {
        if (c.id !== id) return;
        off();
        resolve();
      });
      setTimeout(() => {
        off();
        resolve();
      }, 200);
    });
  }
}

// Each test kills and restarts real recorders and waits on real decoding: generous limits for a loaded machine.
describe("a camera that fails, seen in Chromium (real GStreamer recorders)", { timeout: 90_000 }, () => {
  let chromium: Chromium;
  let crash: GstRtspServer;
  let ending: GstRtspServer;
  let gone: GstRtspServer;
  let udpOnly: GstRtspServer;
  let hevc: GstRtspServer;
  let gateway: Gateway;
  const views: CameraView[] = [];

  beforeAll(async () => {
    [chromium, crash, ending, gone, udpOnly, hevc] = await Promise.all([
      launchChromium(),
      startGstRtspServer({ width: 320, height: 240, gop: 25 }),
      // Ends its stream (EOS: RTCP BYE) 3 s into every session, as VLC does at each loop of its file.
      startGstRtspServer({ width: 320, height: 240, gop: 25, frames: 75 }),
      startGstRtspServer({ width: 320, height: 240, gop: 25 }),
      startGstRtspServer({ width: 320, height: 240, gop: 25, protocols: ["udp"] }),
      startGstRtspServer({ width: 320, height: 240, gop: 25, codec: "h265", aac: true }),
    ]);
    gateway = await startGateway({
      config: parseConfig(
        {
          server: { port: 0 },
          auth: { mode: "none" },
          log: { level: "warn" },
          demo: { enabled: false },
          // Only the defaults that matter here are changed: a quick light check for the unwatched cameras.
          rtsp: { checkIntervalSeconds: 1 },
          cameras: [
            { id: "crash", url: crash.url },
            { id: "ending", url: ending.url },
            { id: "gone", url: gone.url },
            { id: "udponly", url: udpOnly.url },
            // H.265 passthrough switched off: nothing is pulled, and the camera has nothing a browser can play.
            { id: "hevc", url: hevc.url, transcode: { aac: "off", h265Passthrough: false } },
          ],
        },
        {},
      ),
      log: silentLogger,
    });
    gateway.cameras.events.on("camera", (v) => void views.push(v));
  }, 90_000);

  afterAll(async () => {
    await gateway?.close("test done");
    await Promise.all([crash, ending, gone, udpOnly, hevc].map((r) => r?.close()));
    await chromium?.close();
  });

  it("recorder SIGKILLed and restarted on the same port: OFFLINE at once, nothing decoded meanwhile, live again on the same session", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=crash`);
    try {
      await waitForNewFrames(page, 25, 20_000, videoOf("crash"));
      await waitForLabel(page, "crash", ["Live"], 5000);
      const before = (await inboundStats(page, "video", videoOf("crash")))!;
      const lostBefore = (await tile(page, "crash")).packetsLost ?? 0;
      await startTrace(page, "crash");

      const killedAt = Date.now();
      await crash.kill("SIGKILL");
      const label = await waitForLabel(page, "crash", ["Reconnecting", "Offline"], 5000);
      const detectMs = Date.now() - killedAt;
      console.info(`outage shown after ${detectMs} ms (${label})`);
      expect(detectMs).toBeLessThan(1500);
      await waitForLabel(page, "crash", ["Offline"], 5000);
      const down = await tile(page, "crash");
      expect(down).toMatchObject({ status: "offline", serverStatus: "offline", stale: true });
      expect(down.message).toMatch(/^Camera offline: the recorder does not answer \(connection refused\)/);
      expect(down.lastPicture).toMatch(/^Last picture \d\d:\d\d:\d\d$/);
      const api = (await cameras(gateway)).find((c) => c.id === "crash")!;
      expect(api).toMatchObject({ status: "offline", reachability: "unreachable", lostBy: "connection-closed" });
      expect(api.downSince).toBeGreaterThanOrEqual(killedAt);

      // A guard watching for a while: no frame decoded, no LIVE (the gateway answers PLIs with nothing old).
      const framesAtDown = (await inboundStats(page, "video", videoOf("crash")))!.framesDecoded;
      await new Promise((r) => setTimeout(r, 2000));
      expect((await inboundStats(page, "video", videoOf("crash")))!.framesDecoded).toBe(framesAtDown);

      await crash.restart();
      const listeningAt = Date.now();
      const hashBefore = (await page.evaluate(FRAME_HASH(videoOf("crash")))) as number;
      await waitForNewFrames(page, 10, 10_000, videoOf("crash"));
      console.info(`first new frames ${Date.now() - listeningAt} ms after the recorder listened again`);
      await waitForLabel(page, "crash", ["Live"], 5000);
      await page.waitForFunction(`${FRAME_HASH(videoOf("crash"))} !== ${hashBefore}`, { polling: 100, timeout: 5000 });
      const after = await tile(page, "crash");
      expect(after).toMatchObject({ status: "live", state: "connected", attempts: 1, stale: false });
      expect(after.frameTime).toMatch(/^\d\d:\d\d:\d\d$/);
      // Same RTCPeerConnection and the same RTP stream: SSRC kept, sequence numbers continuing (no
      // gap the receiver would count as thousands of lost packets).
      const now = (await inboundStats(page, "video", videoOf("crash")))!;
      expect(now.pc).toBe(before.pc);
      expect(now.ssrc).toBe(before.ssrc);
      expect(((await tile(page, "crash")).packetsLost ?? 0) - lostBefore).toBeLessThan(10);

      // What the page showed from the kill on: LIVE only once new frames were decoded again, and
      // no frame decoded between the first non-live label and the last frame before the restart.
      const t = (await trace(page)).filter((x) => x.t >= killedAt);
      const firstDown = t.findIndex((x) => x.label !== "Live");
      const firstLiveAgain = t.findIndex((x, i) => i > firstDown && x.label === "Live");
      expect(firstDown).toBeGreaterThanOrEqual(0);
      expect(firstLiveAgain).toBeGreaterThan(firstDown);
      const outage = t.slice(firstDown, firstLiveAgain);
      expect(outage.every((x) => x.label !== "Live")).toBe(true);
      // Frames the recorder sent just before it died may still be decoded as the label changes (a
      // fresh-machine run saw one); from 500 ms after the kill until it listens again, none.
      const restarted = outage.filter((x) => x.t >= killedAt + 500 && x.t < listeningAt);
      expect(restarted.length).toBeGreaterThan(0);
      expect(new Set(restarted.map((x) => x.frames)).size).toBe(1);
      expect(t[firstLiveAgain]!.frames).toBeGreaterThan(restarted[0]!.frames);
    } finally {
      await page.close();
    }
  });

  it("a recorder that ends its stream (RTCP BYE) is noticed at once, not by the 5 s media timer, and comes back", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=ending`);
    try {
      await waitForNewFrames(page, 10, 20_000, videoOf("ending"));
      await waitForLabel(page, "ending", ["Live"], 10_000);
      await startTrace(page, "ending");
      // The recorder ends each session after 3 s: the first change from LIVE the trace saw (the
      // session it started in may have ended just before it started).
      const leavesLive = (x: { label: string }, i: number, a: { label: string }[]) => i > 0 && a[i - 1]!.label === "Live" && x.label !== "Live";
      await page.waitForFunction(
        () => {
          const a = (window as unknown as { __trace: { label: string }[] }).__trace;
          return a.some((x, i) => i > 0 && a[i - 1]!.label === "Live" && x.label !== "Live");
        },
        { polling: 25, timeout: 15_000 },
      );
      const t = await trace(page);
      // From the last decoded frame to leaving LIVE: well under the media timeout (5 s).
      const leftLive = t.findIndex(leavesLive);
      let liveFrom = leftLive - 1;
      while (liveFrom > 0 && t[liveFrom - 1]!.label === "Live") liveFrom--;
      const live = t.slice(liveFrom, leftLive);
      const lastFrameAt = live.reduce((acc, x, i, a) => (i > 0 && x.frames > a[i - 1]!.frames ? x.t : acc), live[0]!.t);
      console.info(`end of stream shown ${t[leftLive]!.t - lastFrameAt} ms after the last frame`);
      expect(t[leftLive]!.t - lastFrameAt).toBeLessThan(2500);
      expect(views.some((v) => v.id === "ending" && v.status === "reconnecting" && v.lostBy === "rtcp-bye")).toBe(true);
      // Each new session plays again from its own keyframe.
      await waitForNewFrames(page, 10, 10_000, videoOf("ending"));
      await waitForLabel(page, "ending", ["Live"], 5000);
    } finally {
      await page.close();
    }
  });

  it("a recorder gone for good: OFFLINE with the last picture greyed; a new viewer gets the state and no video", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=gone`);
    try {
      await waitForNewFrames(page, 25, 20_000, videoOf("gone"));
      await gone.close();
      await waitForLabel(page, "gone", ["Offline"], 5000);
      const before = (await inboundStats(page, "video", videoOf("gone")))!.framesDecoded;
      await new Promise((r) => setTimeout(r, 1500));
      const t = await tile(page, "gone");
      expect(t).toMatchObject({ status: "offline", stale: true });
      expect(t.framesDecoded).toBe(before);
      expect((await cameras(gateway)).find((c) => c.id === "gone")).toMatchObject({ status: "offline", reachability: "unreachable" });
    } finally {
      await page.close();
    }

    // Minutes later someone else opens it: the state at once, no picture from before the outage.
    const fresh = await chromium.newPage(`${gateway.url}/#camera=gone`);
    try {
      await waitForLabel(fresh, "gone", ["Offline"], 10_000);
      await fresh.waitForFunction(() => (window as unknown as { gatehouse: { sessions: Map<string, { state: string }> } }).gatehouse.sessions.get("gone")?.state === "connected", {
        polling: 50,
        timeout: 10_000,
      });
      await new Promise((r) => setTimeout(r, 1500));
      const t = await tile(fresh, "gone");
      expect(t).toMatchObject({ status: "offline", serverStatus: "offline", stale: false, lastPicture: "" });
      expect(t.framesDecoded ?? 0).toBe(0);
      expect(await fresh.$eval(`[data-camera="gone"] .spinner`, (el) => getComputedStyle(el).display)).toBe("none");
      const viewer = gateway.sfu.viewerList().find((v) => v.cameraId === "gone");
      await gateway.sfu.refreshStats();
      expect(viewer?.stats().keyframesFromCache).toBe(0);
    } finally {
      await fresh.close();
    }
  });

  it("a UDP-only recorder (461 to TCP) plays with the default transport, and the status says UDP", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=udponly`);
    try {
      await waitForNewFrames(page, 25, 20_000, videoOf("udponly"));
      await waitForLabel(page, "udponly", ["Live"], 5000);
      expect((await cameras(gateway)).find((c) => c.id === "udponly")).toMatchObject({ status: "live", transport: "udp" });
    } finally {
      await page.close();
    }
  });

  it("/api/cameras tells the truth about cameras nobody watches, and names what cannot be played", async () => {
    // No viewer ever: only the light check (connect + DESCRIBE) looks at it.
    const hevcView = await waitForCamera(gateway, "hevc", (v) => v.reachability === "failing");
    expect(hevcView).toMatchObject({ status: "idle", viewers: 0 });
    expect(hevcView.statusReason).toMatch(/^nothing a browser can play: H\.265 video cannot be played by this browser/);
    expect(hevcView.unplayable.map((u) => u.reason)).toEqual([
      "H.265 video cannot be played by this browser: configure an H.264 stream on the camera, or set its transcode.h265 to h264 (converts with ffmpeg)",
      "AAC sound is switched off for this camera (transcode.aac: off)",
    ]);
    expect(hevc.sessions()).toBe(0);

    // Opened anyway: the tile says why, with no spinner waiting forever.
    const page = await chromium.newPage(`${gateway.url}/#camera=hevc`);
    try {
      await waitForLabel(page, "hevc", ["Camera error"], 10_000);
      const t = await tile(page, "hevc");
      expect(t.message).toMatch(/^Nothing a browser can play: H\.265/);
      expect(await page.$eval(`[data-camera="hevc"] .spinner`, (el) => getComputedStyle(el).display)).toBe("none");
      expect(await page.$eval(`[data-camera="hevc"] .tile-note`, (el) => el.textContent)).toMatch(/^Not shown: H\.265/);
    } finally {
      await page.close();
    }
  });
});
