/**
 * End to end in real Firefox (Debian's firefox-esr, headless, WebDriver BiDi): the
 * gateway with its built-in demo recorder, plus a second camera on another demo
 * recorder, played by the live-view page. Real decoded H.264 (frames, size, pixels),
 * real audio packets, the stats overlay filled from Firefox's getStats, and opening one
 * camera large (the other's session ends on the gateway) and coming back (it restarts).
 *
 * test/peers/firefox.ts explains the preferences that make Firefox a loopback H.264
 * viewer without the OpenH264 download.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import type { CameraId } from "../../config/ids.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import {
  audioPacketsReceived,
  canvasNotBlack,
  inboundStats,
  videoSize,
  waitForDecodedFrames,
  waitForNewFrames,
} from "../peers/chromium.ts";
import { tileRows } from "../peers/browser-page.ts";
import { launchFirefox, pageErrors, type Firefox } from "../peers/firefox.ts";

const tile = (camera: string) => `[data-camera="${camera}"]`;
const videoOf = (camera: string) => `${tile(camera)} video`;

const tileStats = tileRows;

/** Hash of the current frame of `selector`, computed in the page. */
const FRAME_HASH = (selector: string) => `(() => { const v = document.querySelector(${JSON.stringify(selector)});
  const c = document.createElement("canvas"); c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext("2d"); x.drawImage(v, 0, 0); const d = x.getImageData(0, 0, c.width, c.height).data;
  let h = 0; for (let i = 0; i < d.length; i += 4 * 7) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0; return h; })()`;

/** Resolves when the camera's SFU source has `n` viewers (its "viewers" event), rejects after `timeoutMs`. */
function viewersReach(gateway: Gateway, camera: string, n: number, timeoutMs: number): Promise<void> {
  const source = gateway.sfu.source(camera as CameraId);
  if (source.stats().viewers === n) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`camera ${camera}: ${source.stats().viewers} viewers after ${timeoutMs} ms, expected ${n}`));
    }, timeoutMs);
    const off = source.on("viewers", (count) => {
      if (count !== n) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

describe("live view end to end in Firefox (gateway + Firefox ESR)", () => {
  let firefox: Firefox;
  let lobby: DemoRecorder;
  let gateway: Gateway;
  let page: Page;

  beforeAll(async () => {
    // The second camera's recorder must exist before the gateway's config names it.
    [firefox, lobby] = await Promise.all([
      launchFirefox(),
      startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger }),
    ]);
    gateway = await startGateway({
      config: parseConfig(
        {
          server: { port: 0 },
          auth: { mode: "none" },
          log: { level: "silent" },
          demo: { enabled: true },
          cameras: [{ id: "lobby", name: "Lobby", url: lobby.url, transport: "tcp" }],
        },
        {},
      ),
      log: silentLogger,
    });
  }, 120_000); // a Firefox launch alone took 19 s on the loaded two-core machine

  afterAll(async () => {
    await page?.close().catch(() => undefined);
    await firefox?.close();
    await gateway?.close("test done");
    await lobby?.close();
  });

  it("plays the demo camera: decoded 640×360 H.264, real moving pixels, audio packets, stats overlay", async () => {
    page = await firefox.newPage(`${gateway.url}/`);
    await waitForDecodedFrames(page, 25, 20_000, videoOf("demo"));

    const video = await inboundStats(page, "video", videoOf("demo"));
    expect(video).toMatchObject({ state: "connected", frameWidth: 640, frameHeight: 360 });
    expect(await videoSize(page, videoOf("demo"))).toEqual({ width: 640, height: 360 });

    // Real picture: lit pixels, several colours, and a later frame that differs (the clip moves).
    expect(await canvasNotBlack(page, videoOf("demo"))).toBe(true);
    const first = (await page.evaluate(FRAME_HASH(videoOf("demo")))) as number;
    await page.waitForFunction(`${FRAME_HASH(videoOf("demo"))} !== ${first}`, { polling: 100, timeout: 15_000 });

    // Audio reaches Firefox (the demo clip's PCMU): the page offered it in a way the SFU accepts.
    await page.waitForFunction(
      async (sel) => {
        const gh = (window as unknown as { __gh: { inbound(s: string, k: string): Promise<{ packetsReceived: number } | null> } }).__gh;
        return ((await gh.inbound(sel, "audio"))?.packetsReceived ?? 0) > 5;
      },
      { polling: 100, timeout: 10_000 },
      videoOf("demo"),
    );
    expect(await audioPacketsReceived(page, videoOf("demo"))).toBeGreaterThan(5);

    // The page's own statistics, read from Firefox's getStats (stats.js): codec names, path, size.
    const demo = (await tileStats(page)).find((s) => s.camera === "demo");
    expect(demo).toMatchObject({
      state: "connected",
      attempts: 1,
      hasAudio: true,
      videoCodec: "H264",
      audioCodec: "PCMU",
      candidateType: "host",
      frameWidth: 640,
      frameHeight: 360,
    });
    await page.keyboard.press("s");
    await page.waitForFunction(
      (sel) => /^[1-9][\d,]* kbit\/s$/.test(document.querySelector(`${sel} [data-stat=bitrate]`)?.textContent ?? ""),
      { polling: 100, timeout: 15_000 },
      tile("demo"),
    );
    expect(await page.$eval(`${tile("demo")} [data-stat=resolution]`, (e) => e.textContent)).toBe("640×360");
    expect(await page.$eval(`${tile("demo")} [data-stat=codec]`, (e) => e.textContent)).toBe("H264 / PCMU");
    expect(await page.$eval(tile("demo"), (e) => e.getAttribute("data-status"))).toBe("live");
    expect(pageErrors(page)).toEqual([]);
  }, 90_000);

  it("opens a camera large (the other camera's session ends), plays its sound on request, and comes back", async () => {
    // Both tiles play in the grid first.
    await waitForDecodedFrames(page, 5, 15_000, videoOf("lobby"));
    await viewersReach(gateway, "lobby", 1, 15_000);

    await page.click(`${tile("demo")} .tile-open`);
    // Read in the page: the driver learns of a fragment change by an event of its own, later.
    await page.waitForFunction(() => location.hash === "#camera=demo", { timeout: 10_000 });
    // The hidden camera's session is ended on the gateway (WHEP DELETE, viewer gone).
    await viewersReach(gateway, "lobby", 0, 15_000);
    expect(await page.$eval(tile("lobby"), (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.$eval(tile("demo"), (e) => e.classList.contains("is-open"))).toBe(true);
    expect(await page.$eval("#view-title", (e) => e.textContent)).toBe("Demo camera");
    expect(await page.$eval(tile("demo"), (e) => e.getBoundingClientRect().width)).toBeGreaterThan(1000);
    await waitForNewFrames(page, 10, 15_000, videoOf("demo"));

    // Sound on: a click is the user gesture Firefox's autoplay policy asks for, so playback goes on audibly.
    await page.click(`${tile("demo")} .tile-audio`);
    expect(await page.$eval(videoOf("demo"), (v) => (v as HTMLVideoElement).muted)).toBe(false);
    await waitForNewFrames(page, 10, 15_000, videoOf("demo"));
    expect(await page.$eval(videoOf("demo"), (v) => (v as HTMLVideoElement).paused)).toBe(false);

    await page.keyboard.press("Escape");
    await page.waitForFunction(() => location.hash === "" && document.querySelector("#grid")?.getAttribute("data-mode") === "grid", {
      polling: 50,
      timeout: 15_000,
    });
    expect(await page.$eval(tile("lobby"), (e) => (e as HTMLElement).hidden)).toBe(false);
    // The paused camera restarts with a new session and decodes again; the open one never stopped.
    await waitForNewFrames(page, 10, 15_000, videoOf("lobby"));
    await viewersReach(gateway, "lobby", 1, 15_000);
    expect(await canvasNotBlack(page, videoOf("lobby"))).toBe(true);
    const stats = await tileStats(page);
    expect(stats.map((s) => [s.camera, s.state, s.attempts])).toEqual([
      ["lobby", "connected", 1],
      ["demo", "connected", 1],
    ]);
    expect(await page.evaluate(() => document.activeElement?.closest(".tile")?.getAttribute("data-camera"))).toBe("demo");
    expect(pageErrors(page)).toEqual([]);
  }, 90_000);

  it("ends its sessions on the gateway when the user leaves the page (DELETE with keepalive)", async () => {
    await Promise.all([viewersReach(gateway, "demo", 1, 15_000), viewersReach(gateway, "lobby", 1, 15_000)]);
    // Leaving by navigation. (Closing the tab through WebDriver BiDi lost the keepalive DELETE in
    // about half of the tries: the gateway then ends the viewer only when ICE consent fails.)
    await page.goto("about:blank");
    await Promise.all([viewersReach(gateway, "demo", 0, 15_000), viewersReach(gateway, "lobby", 0, 15_000)]);
  }, 60_000);
});
