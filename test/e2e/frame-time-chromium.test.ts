/**
 * The wall-clock time a tile shows for the frame on screen comes from the recorder's own
 * clock when the recorder sends RTCP sender reports, and is the arrival time when it sends
 * none. A GStreamer recorder whose reports are an hour behind the host's clock (its pipeline
 * clock offset, as a camera with a wrong clock would be) must show a time an hour behind;
 * one that sends no RTCP shows the time the frames arrived. Real Chromium, real recorders.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, waitForNewFrames, type Chromium } from "../peers/chromium.ts";
import { startGstRtspServer, type GstRtspServer } from "../peers/gst.ts";

const OFFSET_S = -3600;

interface TileTime {
  /** The text under the tile (HH:MM:SS in the page's locale). */
  frameTime: string;
  /** The instant it stands for, Unix ms. */
  frameWall: number;
  /** The page's clock when the tile read it from Chromium's statistics (once a second). */
  now: number;
  /** The texts the page would show for `expected` − 1 s … + 1 s (expected: `now` + the offset). */
  accepted: string[];
}

/** Waits until the tile shows a time, then reads it with the page's own clock and formatting. */
async function tileTime(page: Page, camera: string, offsetMs: number): Promise<TileTime> {
  await page.waitForFunction((cam) => (document.querySelector(`[data-camera="${cam}"] .tile-time`)?.textContent ?? "") !== "", { polling: 50, timeout: 10_000 }, camera);
  return page.evaluate(
    async (cam, off) => {
      const gh = (window as unknown as { gatehouse: { stats(): Promise<Array<{ camera: string; frameTime: string; frameWall: number; frameSampledAt: number }>> } }).gatehouse;
      const t = (await gh.stats()).find((x) => x.camera === cam)!;
      const now = t.frameSampledAt;
      const text = (ms: number) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
      const accepted = [-1000, 0, 1000].map((d) => text(now + off + d));
      return { frameTime: t.frameTime, frameWall: t.frameWall, now, accepted };
    },
    camera,
    offsetMs,
  );
}

describe("the frame time on a tile (real GStreamer recorders, Chromium)", { timeout: 90_000 }, () => {
  let chromium: Chromium;
  let offset: GstRtspServer;
  let silent: GstRtspServer;
  let gateway: Gateway;

  beforeAll(async () => {
    [chromium, offset, silent] = await Promise.all([
      launchChromium(),
      startGstRtspServer({ width: 320, height: 240, gop: 25, ntpOffsetSeconds: OFFSET_S }),
      startGstRtspServer({ width: 320, height: 240, gop: 25, noRtcp: true }),
    ]);
    gateway = await startGateway({
      config: parseConfig(
        {
          server: { port: 0 },
          auth: { mode: "none" },
          log: { level: "warn" },
          demo: { enabled: false },
          cameras: [
            { id: "offset", url: offset.url },
            { id: "silent", url: silent.url },
          ],
        },
        {},
      ),
      log: silentLogger,
    });
  }, 90_000);

  afterAll(async () => {
    await gateway?.close("test done");
    await Promise.all([offset, silent].map((r) => r?.close()));
    await chromium?.close();
  });

  it("a recorder whose sender reports run an hour behind: the tile shows its time, an hour behind", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=offset`);
    try {
      await waitForNewFrames(page, 25, 20_000, `[data-camera="offset"] video`);
      // Chromium needs a couple of sender reports (one a second) before it maps RTP time to the
      // sender's clock; until then the tile shows the arrival time. Waits for the hour to show.
      const framesAt = Date.now();
      await page.waitForFunction(
        async (want) => {
          const gh = (window as unknown as { gatehouse: { stats(): Promise<Array<{ camera: string; frameWall: number; frameSampledAt: number }>> } }).gatehouse;
          const t = (await gh.stats()).find((x) => x.camera === "offset");
          return t !== undefined && Math.abs(t.frameWall - (t.frameSampledAt + want)) < 1000;
        },
        { polling: 200, timeout: 30_000 },
        OFFSET_S * 1000,
      );
      console.info(`the recorder's hour shown ${Date.now() - framesAt} ms after the first frames`);
      const t = await tileTime(page, "offset", OFFSET_S * 1000);
      console.info(`offset recorder: frame ${t.frameWall - t.now} ms from the page's clock when sampled, shown ${t.frameTime}`);
      expect(Math.abs(t.frameWall - (t.now + OFFSET_S * 1000))).toBeLessThan(1000);
      expect(t.accepted).toContain(t.frameTime);
    } finally {
      await page.close();
    }
  });

  it("a recorder that sends no sender reports: the tile shows the arrival time", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=silent`);
    try {
      await waitForNewFrames(page, 25, 20_000, `[data-camera="silent"] video`);
      const t = await tileTime(page, "silent", 0);
      console.info(`silent recorder: frame ${t.frameWall - t.now} ms from the page's clock when sampled, shown ${t.frameTime}`);
      expect(Math.abs(t.frameWall - t.now)).toBeLessThan(1000);
      expect(t.accepted).toContain(t.frameTime);
    } finally {
      await page.close();
    }
  });

  it("the top bar shows the time now, and the LIVE badge leaves the picture's top-left corner (where cameras burn their time) free", async () => {
    const page = await chromium.newPage(`${gateway.url}/#camera=silent`);
    try {
      await waitForNewFrames(page, 10, 20_000, `[data-camera="silent"] video`);
      await page.waitForFunction(() => document.querySelector(`[data-camera="silent"] .badge-text`)?.textContent === "Live", { polling: 50, timeout: 10_000 });
      const r = await page.evaluate(() => {
        const text = (ms: number) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
        const now = Date.now();
        const video = document.querySelector(`[data-camera="silent"] video`)!.getBoundingClientRect();
        const badge = document.querySelector(`[data-camera="silent"] .badge`)!.getBoundingClientRect();
        return {
          clock: document.getElementById("clock")?.textContent ?? "",
          // Redrawn with the statistics, once a second: up to a second behind on a loaded machine.
          accepted: [-2000, -1000, 0, 1000].map((d) => text(now + d)),
          video: { left: video.left, top: video.top, width: video.width, height: video.height },
          badge: { left: badge.left, right: badge.right, top: badge.top, bottom: badge.bottom, width: badge.width },
        };
      });
      expect(r.accepted).toContain(r.clock);
      expect(r.badge.width).toBeGreaterThan(0);
      // The corner: the left third of the picture's top quarter.
      const corner = { right: r.video.left + r.video.width / 3, bottom: r.video.top + r.video.height / 4 };
      const overlaps = r.badge.left < corner.right && r.badge.top < corner.bottom && r.badge.right > r.video.left && r.badge.bottom > r.video.top;
      expect(overlaps).toBe(false);
    } finally {
      await page.close();
    }
  });
});
