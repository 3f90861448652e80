/**
 * What every browser peer (Chromium, Firefox) installs in the pages it opens: a registry of
 * RTCPeerConnections and `__gh.inbound(selector, kind)`, plus a record of page errors. The stats
 * and pixel helpers in chromium.ts work on any page opened through `openRecordedPage`.
 */
import type { Browser, Page } from "puppeteer-core";
import type { Logger } from "../../config/log.ts";

const pageErrorLists = new WeakMap<Page, string[]>();

/** Uncaught exceptions and console errors seen on a page opened by `newPage`. */
export function pageErrors(page: Page): readonly string[] {
  return pageErrorLists.get(page) ?? [];
}

/** A new tab of `browser` that records its peer connections and errors; navigates to `url` when given. */
export async function openRecordedPage(browser: Browser, log: Logger, url?: string): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  pageErrorLists.set(page, errors);
  page.on("pageerror", (err) => {
    const text = err instanceof Error ? err.message : String(err);
    errors.push(text);
    log.debug("page error", { error: text });
  });
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    errors.push(msg.text());
    log.debug("page console error", { text: msg.text() });
  });
  await page.evaluateOnNewDocument(PAGE_HELPERS);
  if (url) await page.goto(url, { waitUntil: "load" });
  return page;
}

/**
 * Installed in every page before its own scripts: an RTCPeerConnection registry and
 * `__gh.inbound(selector, kind)`, the inbound-rtp stats of the receiver feeding the
 * element `selector` (for sound, the one paired with its picture when the element holds none),
 * null while that element is missing or has no stream yet; or of the busiest receiver of that
 * kind when `selector` is null.
 * A plain string so that no test-runner transform can rewrite it.
 */
export const PAGE_HELPERS = `(() => {
  if (window.__gh || typeof RTCPeerConnection !== "function") return;
  const pcs = [];
  let next = 0;
  const Native = RTCPeerConnection;
  class RecordedPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      this.__ghId = ++next;
      pcs.push(this);
    }
  }
  window.RTCPeerConnection = RecordedPeerConnection;
  const live = () => {
    for (let i = pcs.length - 1; i >= 0; i--) if (pcs[i].signalingState === "closed") pcs.splice(i, 1);
    return pcs;
  };
  window.__gh = {
    pcs: live,
    async inbound(selector, kind) {
      // With a selector, only the element's own tracks count: before it has a stream (or
      // exists) there is nothing to report, never another receiver on the same page.
      let tracks = null;
      if (selector) {
        const el = document.querySelector(selector);
        if (!el || !el.srcObject) return null;
        tracks = el.srcObject.getTracks();
        // A tile's element holds only its picture at first (web/app.js shownStream): its sound is
        // the audio section paired with the picture's, the only one of a one-camera connection,
        // the i-th of a grid's for its i-th video section (gateway/http/grid.ts).
        if (kind === "audio" && !tracks.some((t) => t.kind === "audio")) {
          for (const pc of live()) {
            const ts = pc.getTransceivers().filter((t) => t.receiver.track);
            const videos = ts.filter((t) => t.receiver.track.kind === "video");
            const audios = ts.filter((t) => t.receiver.track.kind === "audio");
            const i = videos.findIndex((t) => tracks.includes(t.receiver.track));
            if (i < 0) continue;
            const paired = audios.length === 1 ? audios[0] : audios[i];
            if (paired) tracks = [...tracks, paired.receiver.track];
          }
        }
      }
      let best = null;
      for (const pc of live()) {
        for (const r of pc.getReceivers()) {
          if (!r.track || r.track.kind !== kind) continue;
          if (tracks && !tracks.includes(r.track)) continue;
          let report;
          try { report = await r.getStats(); } catch { continue; }
          for (const s of report.values()) {
            if (s.type !== "inbound-rtp" || s.kind !== kind) continue;
            const score = kind === "video" ? (s.framesDecoded || 0) : (s.packetsReceived || 0);
            if (!best || score > best.score) best = { score, key: pc.__ghId + ":" + s.ssrc, stat: s, pc: pc.__ghId, state: pc.connectionState };
          }
        }
      }
      if (!best) return null;
      const s = best.stat;
      return { key: best.key, pc: best.pc, state: best.state, framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0, packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0, ssrc: s.ssrc };
    },
  };
})();`;

/**
 * Click `selector` once it has stopped moving: its box the same over two animation frames. The
 * grid re-fits its columns from a ResizeObserver a frame after a filter changes what is shown, so
 * a click aimed at a tile's button just after the change can land where the button was.
 */
export async function clickWhenStill(page: Page, selector: string, timeoutMs = 10_000): Promise<void> {
  await page.waitForFunction(
    (sel) =>
      new Promise<boolean>((resolve) => {
        const box = () => JSON.stringify(document.querySelector(sel)?.getBoundingClientRect() ?? null);
        const first = box();
        requestAnimationFrame(() => requestAnimationFrame(() => resolve(first !== "null" && box() === first)));
      }),
    { timeout: timeoutMs, polling: 50 },
    selector,
  );
  await page.click(selector);
}

/**
 * Presses a toggle button (`aria-pressed`) as a person would, and waits until it says `pressed`.
 * The page records where the click landed: a click that missed the button (a layout that settled
 * after `clickWhenStill` looked moved it; a busy browser lays out a frame late) is made again,
 * once; a click that hit it is never repeated, however long the page takes to show its state.
 */
export async function pressToggle(page: Page, selector: string, pressed: "true" | "false", timeoutMs = 10_000): Promise<void> {
  const isPressed = (sel: string, want: string) => document.querySelector(sel)?.getAttribute("aria-pressed") === want;
  const click = async (): Promise<string | null> => {
    await page.evaluate((sel: string) => {
      const w = window as unknown as { __toggleClick?: string };
      w.__toggleClick = undefined;
      document.addEventListener(
        "click",
        (e) => {
          const t = e.target instanceof Element ? e.target : null;
          w.__toggleClick = t?.closest(sel) ? "hit" : `missed: ${t?.outerHTML.slice(0, 160) ?? "nothing"}`;
        },
        { capture: true, once: true },
      );
    }, selector);
    await clickWhenStill(page, selector, timeoutMs);
    // "hit" when the click landed on the button, else what it landed on.
    const landed = await page.waitForFunction(() => (window as unknown as { __toggleClick?: string }).__toggleClick, { timeout: timeoutMs, polling: 50 });
    const v = (await landed.jsonValue()) as string;
    return v === "hit" ? null : v;
  };
  const missed = await click();
  const again = missed === null ? null : await click();
  try {
    await page.waitForFunction(isPressed, { timeout: timeoutMs, polling: 50 }, selector, pressed);
  } catch (err) {
    throw new Error(`${selector} not aria-pressed=${pressed}; clicks landed on ${missed ?? "the button"}${missed === null ? "" : ` / ${again ?? "the button"}`}`, { cause: err });
  }
}

/**
 * One tile as the live page's test hook reports it (`window.gatehouse.stats()`, web/app.js `stats`):
 * what it shows and why, its session, and its receiver's statistics (web/stats.js `StatsSummary`,
 * absent before the first sample).
 */
export interface TileRow {
  camera: string;
  /** `data-status`: live, connecting, waiting, retrying, reconnecting, offline, error, paused… */
  status: string;
  /** The badge's word and the tile's message, as shown. */
  label: string;
  message: string;
  /** What the gateway says of the camera. */
  serverStatus: string;
  /** The last real picture, greyed, with its time ("Last picture …"). */
  stale: boolean;
  lastPicture: string;
  frameTime: string;
  /** The session's state (a WHEP session or a grid slot), and its attempts so far. */
  state: string;
  attempts: number;
  hasAudio: boolean;
  muted: boolean;
  resource: string | null;
  error: { status: number; message: string } | null;
  framesDecoded?: number;
  packetsLost?: number;
  frameWidth?: number;
  frameHeight?: number;
  videoCodec?: string;
  audioCodec?: string;
  candidateType?: string;
}

/** Every tile of a live page, as its test hook reports them. */
export function tileRows(page: Page): Promise<TileRow[]> {
  return page.evaluate(() => (window as unknown as { gatehouse: { stats(): Promise<TileRow[]> } }).gatehouse.stats());
}
