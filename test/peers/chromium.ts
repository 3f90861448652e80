/**
 * Debian's Chromium as a real WebRTC viewer, driven by puppeteer-core.
 *
 * Loopback WebRTC needs `--allow-loopback-in-peer-connection` and
 * `--use-fake-ui-for-media-stream`. Measured with Chromium 156: with the fake-UI
 * flag a receive-only RTCPeerConnection gathers 127.0.0.1 host candidates at once,
 * without any getUserMedia call, even in a network namespace holding only `lo`;
 * without the flag it gathers none there. So neither the product page nor the
 * tests call getUserMedia.
 *
 * Every page opened with `newPage` records its RTCPeerConnections (a thin subclass
 * installed before the page's scripts run), so the helpers below can read
 * `getStats()` of whatever page is under test without knowing its code.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";
import type { Browser, Page } from "puppeteer-core";
import type { Logger } from "../../config/log.ts";
import { silentLogger } from "../../config/log.ts";
import { openRecordedPage, PAGE_HELPERS } from "./browser-page.ts";

export { pageErrors } from "./browser-page.ts";

/** Flags that make headless Chromium a usable WebRTC peer on loopback. */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-extensions",
  "--no-first-run",
  "--no-default-browser-check",
  "--mute-audio",
  "--allow-loopback-in-peer-connection",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  // Plain IP candidates instead of mDNS names on hosts with a real interface.
  "--disable-features=WebRtcHideLocalIpsWithMdns",
];

export interface ChromiumOptions {
  /** Browser binary. Default: $CHROMIUM_PATH or /usr/bin/chromium. */
  executablePath?: string;
  /** More command-line flags. */
  args?: string[];
  /** Page viewport, CSS px. Default 1280×720. */
  viewport?: { width: number; height: number };
  /** Page console errors and uncaught exceptions go here (debug level). */
  log?: Logger;
  /**
   * Talk to the browser over a pipe instead of a loopback TCP port: needed when the binary
   * is a wrapper that starts it in another network namespace. Default false.
   */
  pipe?: boolean;
}

export interface Chromium {
  browser: Browser;
  /** A new tab that records its RTCPeerConnections; navigates to `url` when given (waits for `load`). */
  newPage(url?: string): Promise<Page>;
  /** Close the browser and remove its profile directory. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}


/** Launch headless Chromium with a fresh profile in a temporary directory. */
export async function launchChromium(opts: ChromiumOptions = {}): Promise<Chromium> {
  const log = opts.log ?? silentLogger;
  const profile = await fs.mkdtemp(path.join(os.tmpdir(), "gatehouse-chromium-"));
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: opts.executablePath ?? process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium",
      headless: true, // new headless mode (--headless=new)
      args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, ...(opts.args ?? [])],
      defaultViewport: opts.viewport ?? { width: 1280, height: 720 },
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      protocolTimeout: 30_000,
      pipe: opts.pipe ?? false,
    });
  } catch (err) {
    await fs.rm(profile, { recursive: true, force: true });
    throw err;
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const proc = browser.process();
      try {
        await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000).unref())]);
      } catch {
        // already gone
      }
      if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await fs.rm(profile, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
    })();
    return closing;
  };

  const newPage = (url?: string): Promise<Page> => openRecordedPage(browser, log, url);

  return { browser, newPage, close, [Symbol.asyncDispose]: close };
}


/** What the page's receiver reported (see PAGE_HELPERS). */
export interface InboundStats {
  /** Identifies one receive stream: peer connection + SSRC. Counters restart when it changes. */
  key: string;
  pc: number;
  state: string;
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  packetsReceived: number;
  bytesReceived: number;
  ssrc: number;
}

/** The inbound-rtp stats of `kind` for the receiver playing in `selector` (default: busiest receiver). */
export async function inboundStats(page: Page, kind: "video" | "audio", selector?: string): Promise<InboundStats | null> {
  await ensureHelpers(page);
  return page.evaluate(
    (sel, k) => (window as unknown as GhWindow).__gh.inbound(sel, k),
    selector ?? null,
    kind,
  );
}

/** Video frames decoded so far by the receiver playing in `selector` (0 when none). */
export async function decodedFrames(page: Page, selector?: string): Promise<number> {
  return (await inboundStats(page, "video", selector))?.framesDecoded ?? 0;
}

/**
 * Wait until the receiver playing in `selector` (default: any video receiver) has
 * decoded at least `n` frames and, with a selector, the element itself holds a frame to
 * show (`readyState` ≥ HAVE_CURRENT_DATA: the decoder's count runs ahead of the element on a
 * busy machine). Polls the page's getStats every 50 ms.
 * @returns the frame count reached
 */
export async function waitForDecodedFrames(page: Page, n: number, timeoutMs: number, selector?: string): Promise<number> {
  await ensureHelpers(page);
  try {
    const handle = await page.waitForFunction(
      async (sel, target) => {
        const s = await (window as unknown as GhWindow).__gh.inbound(sel, "video");
        if (!s || s.framesDecoded < target) return false;
        if (sel && ((document.querySelector(sel) as HTMLMediaElement | null)?.readyState ?? 0) < HTMLMediaElement.HAVE_CURRENT_DATA) return false;
        return s.framesDecoded;
      },
      { polling: 50, timeout: timeoutMs },
      selector ?? null,
      n,
    );
    return (await handle.jsonValue()) as number;
  } catch (err) {
    const now = await inboundStats(page, "video", selector).catch(() => null);
    throw new Error(`expected ≥ ${n} decoded frames within ${timeoutMs} ms; now ${JSON.stringify(now)}`, { cause: err });
  }
}

/**
 * Wait until `n` more frames are decoded than when called. If the receive stream
 * changes meanwhile (new connection or SSRC), counting restarts on the new one.
 * @returns the stream key and frame count reached
 */
export async function waitForNewFrames(
  page: Page,
  n: number,
  timeoutMs: number,
  selector?: string,
): Promise<{ key: string; framesDecoded: number }> {
  const start = await inboundStats(page, "video", selector);
  try {
    const handle = await page.waitForFunction(
      async (sel, target, startKey, startFrames) => {
        const s = await (window as unknown as GhWindow).__gh.inbound(sel, "video");
        if (!s) return false;
        const base = s.key === startKey ? startFrames : 0;
        return s.framesDecoded - base >= target ? { key: s.key, framesDecoded: s.framesDecoded } : false;
      },
      { polling: 50, timeout: timeoutMs },
      selector ?? null,
      n,
      start?.key ?? "",
      start?.framesDecoded ?? 0,
    );
    return (await handle.jsonValue()) as { key: string; framesDecoded: number };
  } catch (err) {
    const now = await inboundStats(page, "video", selector).catch(() => null);
    throw new Error(`expected ${n} new decoded frames within ${timeoutMs} ms; start ${JSON.stringify(start)}, now ${JSON.stringify(now)}`, {
      cause: err,
    });
  }
}

/** The intrinsic size of the video playing in `selector`, px (0×0 before the first frame). */
export async function videoSize(page: Page, selector = "video"): Promise<{ width: number; height: number }> {
  return page.$eval(selector, (el) => {
    const v = el as HTMLVideoElement;
    return { width: v.videoWidth, height: v.videoHeight };
  });
}

export interface CanvasSample {
  width: number;
  height: number;
  /** Mean luma of the sampled pixels, 0–255. */
  meanLuma: number;
  /** Share of sampled pixels brighter than near-black (luma > 32), 0–1. */
  litFraction: number;
  /** Distinct colours among the sampled pixels (quantised to 4 bits per channel). */
  colours: number;
  /** FNV-1a hash of the sampled pixels: two different values mean the picture changed. */
  hash: number;
}

/** Draw the current frame of `selector` to a canvas and sample a grid of pixels. */
export async function sampleVideoPixels(page: Page, selector = "video"): Promise<CanvasSample> {
  return page.$eval(selector, (el) => {
    const v = el as HTMLVideoElement;
    const width = v.videoWidth;
    const height = v.videoHeight;
    if (!width || !height) return { width, height, meanLuma: 0, litFraction: 0, colours: 0, hash: 0 };
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new Error("no 2d context");
    ctx.drawImage(v, 0, 0, width, height);
    const data = ctx.getImageData(0, 0, width, height).data;
    let n = 0;
    let lit = 0;
    let sum = 0;
    let hash = 0x811c9dc5;
    const colours = new Set<number>();
    const step = Math.max(1, Math.floor(Math.min(width, height) / 48));
    for (let y = 0; y < height; y += step) {
      for (let x = 0; x < width; x += step) {
        const i = (y * width + x) * 4;
        const r = data[i] ?? 0;
        const g = data[i + 1] ?? 0;
        const b = data[i + 2] ?? 0;
        const luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        sum += luma;
        if (luma > 32) lit++;
        const c = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
        colours.add(c);
        hash = Math.imul(hash ^ c, 0x01000193) >>> 0;
        n++;
      }
    }
    return { width, height, meanLuma: sum / n, litFraction: lit / n, colours: colours.size, hash };
  });
}

/**
 * True when the video's current frame shows a picture: some clearly lit pixels (≥ 0.5 % of
 * the samples: enough for GStreamer's small white ball on black) and more than one colour.
 */
export async function canvasNotBlack(page: Page, selector = "video"): Promise<boolean> {
  const s = await sampleVideoPixels(page, selector);
  return s.litFraction >= 0.005 && s.colours > 1;
}

/** Audio RTP packets received by the receiver playing in `selector` (default: busiest audio receiver). */
export async function audioPacketsReceived(page: Page, selector?: string): Promise<number> {
  return (await inboundStats(page, "audio", selector))?.packetsReceived ?? 0;
}

interface GhWindow {
  __gh: { inbound(selector: string | null, kind: string): Promise<InboundStats | null> };
}

/** Pages not opened through `newPage` get the helpers late (connections made before are not recorded). */
async function ensureHelpers(page: Page): Promise<void> {
  const has = await page.evaluate(() => "__gh" in window);
  if (!has) await page.evaluate(PAGE_HELPERS);
}
