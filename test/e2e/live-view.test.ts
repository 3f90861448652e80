/**
 * End to end: recorder → gateway (RTSP ingest, SFU, WHEP) → the live-view page in
 * real Chromium. Real decoded video (frames, size, pixels), real audio packets;
 * a recorder crash and restart resumes on the same page without reload or a new
 * WHEP session; several viewers share one RTSP pull.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import type { ConfigInput } from "../../config/schema.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import {
  audioPacketsReceived,
  canvasNotBlack,
  inboundStats,
  launchChromium,
  pageErrors,
  videoSize,
  waitForDecodedFrames,
  waitForNewFrames,
  type Chromium,
} from "../peers/chromium.ts";
import { tileRows } from "../peers/browser-page.ts";
import { startGstRtspServer, type GstRtspServer } from "../peers/gst.ts";

const videoOf = (camera: string) => `[data-camera="${camera}"] video`;

function gatewayConfig(input: ConfigInput) {
  return parseConfig({ server: { port: 0 }, auth: { mode: "none" }, log: { level: "warn" }, ...input }, { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR });
}

const tiles = tileRows;

/** Hash of the current frame of `selector`, computed in the page. */
const FRAME_HASH = (selector: string) => `(() => { const v = document.querySelector(${JSON.stringify(selector)});
  const c = document.createElement("canvas"); c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext("2d"); x.drawImage(v, 0, 0); const d = x.getImageData(0, 0, c.width, c.height).data;
  let h = 0; for (let i = 0; i < d.length; i += 4 * 7) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0; return h; })()`;

/** The page shows a moving picture: not black, and a later frame differs. */
async function expectMovingPicture(page: Page, selector: string): Promise<void> {
  expect(await canvasNotBlack(page, selector)).toBe(true);
  const first = (await page.evaluate(FRAME_HASH(selector))) as number;
  // The test patterns move every frame: wait for a different picture.
  await page.waitForFunction(`${FRAME_HASH(selector)} !== ${first}`, { polling: 100, timeout: 5000 });
}

describe("live view end to end (gateway + Chromium)", () => {
  let chromium: Chromium;

  beforeAll(async () => {
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
  });

  describe("built-in demo recorder", () => {
    let gateway: Gateway;

    beforeAll(async () => {
      gateway = await startGateway({ config: gatewayConfig({}), log: silentLogger });
    });

    afterAll(async () => {
      await gateway?.close("test done");
    });

    it("plays the demo camera: decoded 640×360 video, real pixels, audio packets", async () => {
      const page = await chromium.newPage(`${gateway.url}/`);
      try {
        await waitForDecodedFrames(page, 25, 20_000, videoOf("demo"));
        expect(await videoSize(page, videoOf("demo"))).toEqual({ width: 640, height: 360 });
        await expectMovingPicture(page, videoOf("demo"));
        await page.waitForFunction(
          async () => {
            const gh = (window as unknown as { __gh: { inbound(s: string, k: string): Promise<{ packetsReceived: number } | null> } }).__gh;
            return ((await gh.inbound('[data-camera="demo"] video', "audio"))?.packetsReceived ?? 0) > 5;
          },
          { polling: 100, timeout: 10_000 },
        );
        expect(await audioPacketsReceived(page, videoOf("demo"))).toBeGreaterThan(5);
        const [tile] = await tiles(page);
        expect(tile).toMatchObject({ camera: "demo", state: "connected", attempts: 1 });
        // A video element that has no stream yet reports nothing, however busy another
        // receiver on the page is (a ring card's video once passed on a grid tile's frames).
        await page.evaluate(() => document.body.append(Object.assign(document.createElement("video"), { id: "no-stream-yet" })));
        expect(await inboundStats(page, "video", "#no-stream-yet")).toBeNull();
        expect(await inboundStats(page, "video", "#not-on-the-page")).toBeNull();
        expect((await inboundStats(page, "video"))?.framesDecoded).toBeGreaterThan(0);
        expect(pageErrors(page).filter((e) => !/404/.test(e))).toEqual([]);
      } finally {
        await page.close();
      }
    });
  });

  describe("GStreamer RTSP recorder", () => {
    const WIDTH = 480;
    const HEIGHT = 272;
    let recorder: GstRtspServer;
    let gateway: Gateway;
    let page: Page;

    beforeAll(async () => {
      recorder = await startGstRtspServer({ width: WIDTH, height: HEIGHT, gop: 25, bitrate: 600 });
      gateway = await startGateway({
        config: gatewayConfig({
          demo: { enabled: false },
          cameras: [{ id: "gst", name: "GStreamer camera", url: recorder.url, transport: "tcp" }],
          // Quick recovery for the crash test: the first retry after 200 ms, then at most 1 s apart.
          rtsp: { reconnectMinMs: 200, reconnectMaxMs: 1000, mediaTimeoutMs: 2000 },
        }),
        log: silentLogger,
      });
    });

    afterAll(async () => {
      await page?.close().catch(() => undefined);
      await gateway?.close("test done");
      await recorder?.close();
    });

    it("plays the camera: decoded video of the recorder's size, real pixels, audio packets", async () => {
      page = await chromium.newPage(`${gateway.url}/`);
      await waitForDecodedFrames(page, 25, 20_000, videoOf("gst"));
      expect(await videoSize(page, videoOf("gst"))).toEqual({ width: WIDTH, height: HEIGHT });
      await expectMovingPicture(page, videoOf("gst"));
      await page.waitForFunction(
        async () => {
          const gh = (window as unknown as { __gh: { inbound(s: string, k: string): Promise<{ packetsReceived: number } | null> } }).__gh;
          return ((await gh.inbound('[data-camera="gst"] video', "audio"))?.packetsReceived ?? 0) > 5;
        },
        { polling: 100, timeout: 10_000 },
      );
      expect(recorder.sessions()).toBe(1);

      // An administrator (everyone, with sign-in off) sees the gateway's side one click away: the
      // tile's statistics add the recorder's state, transport and tracks, and what it has sent.
      await page.click('[data-camera="gst"] .tile-stats-toggle');
      const recorderRow = await page.waitForFunction(
        () => {
          const t = document.querySelector('[data-camera="gst"] [data-ingest="recorder"]')?.textContent ?? "";
          return /^playing over TCP · H264/.test(t) ? t : false;
        },
        { polling: 100, timeout: 10_000 },
      );
      expect(await recorderRow.jsonValue()).toMatch(/^playing over TCP · H264/);
      expect(await page.$eval('[data-camera="gst"] [data-ingest="upstream"]', (e) => e.textContent)).toMatch(/^[\d,]+ packets, [\d,]+ KiB, 0 reconnects, 0 dropped$/);
      expect(await page.$eval('[data-camera="gst"] [data-ingest="lastError"]', (e) => e.textContent)).toBe("none");
      await page.click('[data-camera="gst"] .tile-stats-toggle');
    });

    it("resumes on the same page, same WHEP session, within seconds of a recorder crash and restart", async () => {
      await page.evaluate(() => {
        (window as unknown as { notReloaded: boolean }).notReloaded = true;
      });
      const before = await inboundStats(page, "video", videoOf("gst"));
      expect(before).not.toBeNull();

      await recorder.kill("SIGKILL");
      await recorder.restart();
      const restartedAt = Date.now();
      // 25 new frames = a second of fresh video: nothing left over from before the crash.
      await waitForNewFrames(page, 25, 15_000, videoOf("gst"));
      const resumeMs = Date.now() - restartedAt;
      console.info(`live view resumed ${resumeMs} ms after the recorder restarted`);
      expect(resumeMs).toBeLessThan(10_000);

      expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
      const after = await inboundStats(page, "video", videoOf("gst"));
      expect(after?.pc).toBe(before?.pc); // same RTCPeerConnection: no renegotiation
      const [tile] = await tiles(page);
      expect(tile).toMatchObject({ camera: "gst", state: "connected", attempts: 1 });
      expect(await videoSize(page, videoOf("gst"))).toEqual({ width: WIDTH, height: HEIGHT });
      await expectMovingPicture(page, videoOf("gst"));
    });

    it("serves three viewers from one RTSP pull", async () => {
      const more = [await chromium.newPage(`${gateway.url}/`), await chromium.newPage(`${gateway.url}/`)];
      try {
        for (const p of [page, ...more]) await waitForNewFrames(p, 25, 20_000, videoOf("gst"));
        expect(recorder.sessions()).toBe(1);
        const plays = recorder.events.filter((e) => e.event === "request" && e.method === "PLAY").length;
        expect(plays).toBe(2); // the first pull and the one after the restart, none per viewer
        for (const p of more) expect(await canvasNotBlack(p, videoOf("gst"))).toBe(true);
      } finally {
        for (const p of more) await p.close();
      }
    });
  });
});
