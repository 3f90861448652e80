/**
 * The single view's timeline in Chromium against a real gateway with the demo recorder (the
 * embedded demo: development provider, `admin` may play back, `viewer` may only watch live):
 *  - it shows the recorded ranges and the gaps the recordings API gives;
 *  - it zooms from an hour to a week (buttons, keys, wheel);
 *  - the date and time picker, a click on the track and the keys ask the gateway for playback at
 *    the right time, and every control answers on screen at once;
 *  - on a phone (390×844) nothing overflows sideways and the whole timeline is on screen;
 *  - a live-only user sees no timeline, and the recordings API answers 403.
 */
import type { Browser, HTTPRequest, Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, waitForDecodedFrames, type Chromium } from "../peers/chromium.ts";
import { openRecordedPage } from "../peers/browser-page.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

interface TimelineView {
  shown: boolean;
  span: number;
  viewStart: number;
  mode: "live" | "playback";
  position: number;
  paused: boolean;
  rate: number;
  frameTime: number | null;
  ranges: { start: number; end: number }[];
  error: string;
}

let gw: Gateway;
let chromium: Chromium;

/** What the page's timeline shows; `shown: false` until the web client has started (a page just loaded may not have yet). */
const tl = (page: Page): Promise<TimelineView> =>
  page.evaluate(() => (window as unknown as { gatehouse?: { timeline(): TimelineView } }).gatehouse?.timeline() ?? ({ shown: false } as TimelineView));

/** A tab in a browser context of its own (its own cookies: a sign-in of its own). */
async function freshPage(): Promise<Page> {
  const ctx = await chromium.browser.createBrowserContext();
  return openRecordedPage(ctx as unknown as Browser, silentLogger);
}

/** Presses `key` on the focused element and reads the timeline in the same turn: what the screen shows at once. */
const pressAndRead = (page: Page, key: string): Promise<TimelineView> =>
  page.evaluate((k: string) => {
    (document.activeElement ?? document.body).dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true, cancelable: true }));
    return (window as unknown as { gatehouse: { timeline(): TimelineView } }).gatehouse.timeline();
  }, key);

async function signIn(page: Page, user: "admin" | "viewer", hash = ""): Promise<void> {
  await page.goto(`${gw.url}/${hash}`, { waitUntil: "load" });
  await page.waitForSelector("#username", { timeout: 30_000 });
  await page.type("#username", user);
  await page.type("#password", gw.auth.devUsers!.find((u) => u.username === user)!.password);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 30_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 30_000 }, new URL(gw.url).origin);
}

/** The playback POSTs the page sends from now on (`whep/<id>/playback?start=`). */
function playbackRequests(page: Page): { starts: number[]; controls: Record<string, unknown>[]; off(): void } {
  const starts: number[] = [];
  const controls: Record<string, unknown>[] = [];
  const on = (req: HTTPRequest) => {
    if (req.method() !== "POST") return;
    const u = new URL(req.url());
    if (/^\/whep\/demo\/playback$/.test(u.pathname)) starts.push(Date.parse(u.searchParams.get("start") ?? ""));
    if (/^\/whep\/demo\/playback\/[^/]+\/control$/.test(u.pathname)) controls.push(JSON.parse(req.postData() ?? "{}") as Record<string, unknown>);
  };
  page.on("request", on);
  return { starts, controls, off: () => page.off("request", on) };
}

async function until<T>(what: string, f: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  // The embedded demo without TURN, SIP and the door (not needed here): dev sign-in, the demo recorder.
  const config = parseConfig({ server: { port: 0 }, log: { level: "warn" } }, {});
  expect(config.auth.mode).toBe("dev");
  gw = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium();
}, 120_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
});

describe("the timeline (Chromium, demo recorder)", () => {
  let page: Page;

  beforeAll(async () => {
    // Gaps the playback engine would have learned from the recorder's answers.
    const now = Date.now();
    gw.recordings.learn("demo", { start: now - 5 * HOUR, end: now - 4 * HOUR }, false);
    gw.recordings.learn("demo", { start: now - 20 * HOUR, end: now - 19.5 * HOUR }, false);
    page = await freshPage();
    await signIn(page, "admin", "#camera=demo");
    await waitForDecodedFrames(page, 5, 30_000, ".tile.is-open video");
    await until("timeline shown", () => tl(page), (v) => v.shown && v.ranges.length > 0);
  }, 120_000);

  afterAll(async () => {
    await page?.close();
  });

  it("shows the recorded ranges and the learned gaps, live at the right edge", async () => {
    const v = await tl(page);
    expect(v.mode).toBe("live");
    expect(v.span).toBe(DAY);
    // Three recorded ranges around the two gaps, within the demo's 24 h retention.
    expect(v.ranges.length).toBe(3);
    const now = Date.now();
    expect(v.ranges[0]!.start).toBeGreaterThanOrEqual(now - DAY - 60_000);
    expect(v.ranges[1]!.start - v.ranges[0]!.end).toBeCloseTo(0.5 * HOUR, -4);
    expect(v.ranges[2]!.start - v.ranges[1]!.end).toBeCloseTo(HOUR, -4);
    // Drawn: one box per range in view, the gap between them as wide as an hour of the track.
    const boxes = await page.$$eval(".tl-range", (els) => els.map((e) => e.getBoundingClientRect()).map((r) => ({ left: r.left, right: r.right, width: r.width })));
    const track = await page.$eval(".tl-track", (e) => e.getBoundingClientRect().width);
    expect(boxes.length).toBe(3);
    const gapPx = boxes[2]!.left - boxes[1]!.right;
    expect(gapPx / track).toBeGreaterThan((HOUR / DAY) * 0.9);
    expect(gapPx / track).toBeLessThan((HOUR / DAY) * 1.1);
    // The clock and the badge say live.
    expect(await page.$eval(".tl-mode", (e) => e.textContent)).toBe("Live");
    // The tile's badge follows its once-a-second statistics sample: live from the first sample
    // that counts decoded frames.
    expect(await until("badge live", () => page.$eval(".tile.is-open .badge-text", (e) => e.textContent), (t) => t === "Live")).toBe("Live");
  });

  it("zooms from a week to an hour with the buttons, the keys and the wheel", async () => {
    await page.click(".tl-zoombar button[aria-label='Show a longer time']");
    await page.click(".tl-zoombar button[aria-label='Show a longer time']");
    expect((await tl(page)).span).toBe(7 * DAY);
    expect(await page.$eval(".tl-span", (e) => e.textContent)).toBe("1 week");
    expect(await page.$eval(".tl-zoombar button[aria-label='Show a longer time']", (e) => (e as HTMLButtonElement).disabled)).toBe(true);
    await page.focus(".tl-track");
    await page.keyboard.press("]");
    expect((await tl(page)).span).toBe(3 * DAY);
    for (let i = 0; i < 6; i++) await page.keyboard.press("]");
    expect((await tl(page)).span).toBe(HOUR);
    expect(await page.$eval(".tl-span", (e) => e.textContent)).toBe("1 hour");
    // An hour of axis: labels at round times, none overlapping.
    const labels = await page.$$eval(".tl-tick", (els) => els.map((e) => ({ text: e.textContent ?? "", ...e.getBoundingClientRect().toJSON() }) as { text: string; left: number; right: number }));
    expect(labels.length).toBeGreaterThanOrEqual(3);
    // Midnight is labelled with the day, in the locale's order for weekday and day ("Mon 7" or
    // "7 Mon", as en's CLDR pattern has it): an hour that spans midnight has one such label.
    for (const l of labels) expect(l.text).toMatch(/^\d{2}:\d{2}$|^\w{3} \d{1,2}$|^\d{1,2} \w{3}$/);
    for (let i = 1; i < labels.length; i++) expect(labels[i]!.left).toBeGreaterThanOrEqual(labels[i - 1]!.right);
    // The wheel zooms out around the pointer.
    const box = (await page.$(".tl-track"))!;
    const r = (await box.boundingBox())!;
    await page.mouse.move(r.x + r.width / 2, r.y + r.height / 2);
    for (let i = 0; i < 5; i++) await page.mouse.wheel({ deltaY: 300 });
    const after = await until("wheel zoom", () => tl(page), (v) => v.span > 2 * HOUR);
    expect(after.span).toBeLessThanOrEqual(7 * DAY);
    await page.keyboard.press("[");
    await page.keyboard.press("[");
  });

  it("the picker, a click on the track and the keys ask for playback at the right time; controls answer at once", async () => {
    const reqs = playbackRequests(page);
    try {
      // The date and time picker: two hours ago (local time, to the second).
      const target = Math.floor((Date.now() - 2 * HOUR) / 1000) * 1000;
      const local = await page.evaluate((t: number) => {
        const d = new Date(t);
        const p = (n: number) => String(n).padStart(2, "0");
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
      }, target);
      // Go, and read the screen in the same turn: the answer is at once, before the gateway's.
      const v = await page.evaluate((value: string) => {
        (document.querySelector(".tl-picker") as HTMLInputElement).value = value;
        (document.querySelector(".tl-go") as HTMLButtonElement).click();
        return {
          ...(window as unknown as { gatehouse: { timeline(): TimelineView } }).gatehouse.timeline(),
          badge: document.querySelector(".tile.is-open .badge-text")?.textContent,
          clock: document.querySelector(".tl-clock")?.getAttribute("datetime"),
        };
      }, local);
      expect(v.mode).toBe("playback");
      expect(Math.abs(v.position - target)).toBeLessThan(1000);
      expect(Math.abs(Date.parse(v.clock!) - target)).toBeLessThan(1000);
      expect(v.badge).not.toBe("Live");
      await until("playback POST", async () => reqs.starts.length, (n) => n >= 1);
      expect(reqs.starts[0]).toBe(target);
      // The recording plays: the badge says so, never LIVE, and the clock runs on from the asked time.
      await until("the recording on screen", () => page.$eval(".tile.is-open .badge-text", (e) => e.textContent), (t) => t === "Recorded", 20_000);
      const playing = await tl(page);
      expect(playing.error).toBe("");
      expect(playing.position - target).toBeGreaterThanOrEqual(-1000);
      expect(playing.position - target).toBeLessThan(60_000);

      // A click on the track, a quarter into the view, asks for that time.
      const view = await tl(page);
      const r = (await (await page.$(".tl-track"))!.boundingBox())!;
      await page.mouse.click(r.x + r.width * 0.25, r.y + r.height / 2);
      const expected = view.viewStart + view.span * 0.25;
      // In playback a seek is a control of the same session.
      await until("a seek control", async () => reqs.controls.filter((c) => c.action === "seek").length, (n) => n >= 1);
      const seek = reqs.controls.find((c) => c.action === "seek")!;
      // Within two pixels of the track (the view may have moved on with the clock by a few ms).
      expect(Math.abs(Date.parse(String(seek.time)) - expected)).toBeLessThan((2 * view.span) / r.width + 1000);
    } finally {
      reqs.off();
    }
  });

  it("lists its keys in the shortcut overlay, and the keys work", async () => {
    // Back to live first (End), then K pauses: the picture of now is held.
    await page.focus(".tl-track");
    await page.keyboard.press("End");
    await until("live", () => tl(page), (v) => v.mode === "live");
    const reqs = playbackRequests(page);
    try {
      await page.focus(".tl-track");
      const paused = await pressAndRead(page, "k");
      expect(paused.mode).toBe("playback");
      expect(paused.paused).toBe(true);
      expect(Math.abs(paused.position - Date.now())).toBeLessThan(5000);
      await until("pause opens playback at now", async () => reqs.starts.length, (n) => n >= 1);
      expect(Math.abs(reqs.starts[0]! - Date.now())).toBeLessThan(10_000);
    } finally {
      reqs.off();
    }
    await page.keyboard.press("?");
    await page.waitForSelector("#help[open]");
    const help = await page.$eval("[data-shortcut-list]", (e) => e.textContent ?? "");
    for (const words of ["Back 10 seconds", "Back 30 seconds", "Next frame", "Slower or faster", "Go to a date and time", "Back to live", "Play or pause the recording"]) expect(help).toContain(words);
    await page.keyboard.press("Escape");
    // `t` puts the focus in the picker, filled with the time on screen.
    await page.focus(".tl-track");
    await page.keyboard.press("t");
    expect(await page.evaluate(() => document.activeElement?.className)).toContain("tl-picker");
    expect(await page.$eval(".tl-picker", (e) => (e as HTMLInputElement).value)).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
  });
});

describe("the timeline on a phone (390×844)", () => {
  it("fits: no sideways scrolling, the whole timeline on screen under the picture", async () => {
    const page = await freshPage();
    try {
      await page.emulate({
        viewport: { width: 390, height: 844, deviceScaleFactor: 3, isMobile: true, hasTouch: true },
        userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
      });
      await signIn(page, "admin", "#camera=demo");
      await until("timeline shown", () => tl(page), (v) => v.shown);
      const m = await page.evaluate(() => {
        const doc = document.documentElement;
        const t = document.getElementById("timeline")!.getBoundingClientRect();
        const tile = document.querySelector(".tile.is-open")!.getBoundingClientRect();
        const offenders = [...document.querySelectorAll("#timeline *")]
          .map((e) => ({ cls: (e as HTMLElement).className, r: e.getBoundingClientRect() }))
          .filter((x) => x.r.width > 0 && (x.r.right > innerWidth + 0.5 || x.r.left < -0.5))
          .map((x) => String(x.cls));
        return { innerWidth, innerHeight, scrollWidth: doc.scrollWidth, timeline: t.toJSON() as DOMRect, tile: tile.toJSON() as DOMRect, offenders };
      });
      expect(m.scrollWidth).toBeLessThanOrEqual(m.innerWidth);
      expect(m.offenders).toEqual([]);
      expect(m.timeline.bottom).toBeLessThanOrEqual(m.innerHeight);
      expect(m.timeline.top).toBeGreaterThanOrEqual(m.tile.bottom - 1);
      expect(m.tile.height).toBeGreaterThan(150); // the picture keeps room
      // Controls big enough for a finger.
      const small = await page.$$eval(".timeline button, .timeline select, .timeline input", (els) => els.filter((e) => e.getBoundingClientRect().height < 34).map((e) => e.className));
      expect(small).toEqual([]);
    } finally {
      await page.close();
    }
  }, 90_000);
});

describe("a live-only user", () => {
  it("sees no timeline, and the recordings API answers 403", async () => {
    const page = await freshPage();
    try {
      await signIn(page, "viewer", "#camera=demo");
      await waitForDecodedFrames(page, 5, 30_000, ".tile.is-open video");
      const status = await page.evaluate(async () => (await fetch("api/cameras/demo/recordings")).status);
      expect(status).toBe(403);
      const actions = await page.evaluate(async () => ((await (await fetch("api/cameras")).json()) as { id: string; actions: string[] }[]).find((c) => c.id === "demo")?.actions);
      expect(actions).toEqual(["live"]);
      expect(await page.$eval("#timeline", (e) => (e as HTMLElement).hidden)).toBe(true);
      expect((await tl(page)).shown).toBe(false);
      // Its keys do nothing: no playback request.
      const reqs = playbackRequests(page);
      await page.keyboard.press("k");
      await page.keyboard.press("j");
      await page.evaluate(() => new Promise((r) => setTimeout(r, 300)));
      expect(reqs.starts).toEqual([]);
      reqs.off();
    } finally {
      await page.close();
    }
  }, 90_000);
});

/** The clip frame number the demo recording burnt into the picture on screen (11-bit code along the bottom edge). */
async function frameCode(page: Page): Promise<number | null> {
  return page.evaluate(() => {
    const v = document.querySelector<HTMLVideoElement>(".tile.is-open video");
    if (!v || v.videoWidth !== 640 || v.videoHeight !== 360) return null;
    const c = document.createElement("canvas");
    c.width = 640;
    c.height = 360;
    const g = c.getContext("2d", { willReadFrequently: true })!;
    g.drawImage(v, 0, 0);
    let n = 0;
    for (let i = 0; i < 11; i++) {
      const [r, gr, b] = g.getImageData(8 + 32 * i + 12, 347, 1, 1).data as unknown as number[];
      if ((r! + gr! + b!) / 3 > 128) n |= 1 << i;
    }
    return n;
  });
}

describe("playback of the demo recording from the timeline (Chromium, the playback engine)", () => {
  it("pause, then seek with the picker: the picture shows the asked second and frame, and the clock the asked time", async () => {
    const page = await freshPage();
    try {
      await signIn(page, "admin", "#camera=demo");
      await waitForDecodedFrames(page, 5, 30_000, ".tile.is-open video");
      await until("timeline shown", () => tl(page), (v) => v.shown);
      // Pause (playback from now, held), then go to 20 minutes ago at second 17.48 (clip frame 437).
      await page.focus(".tl-track");
      await page.keyboard.press("k");
      await until("paused playback", () => tl(page), (v) => v.mode === "playback" && v.paused);
      const base = Date.now() - 20 * 60_000;
      const target = base - (base % 60_000) + 17_480;
      const local = await page.evaluate((t: number) => {
        const d = new Date(t);
        const p = (n: number) => String(n).padStart(2, "0");
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
      }, target - 480);
      // The picker has whole seconds: 17.000; the held frame must be second 17, frame 0 (clip frame 425), within one frame.
      await page.$eval(".tl-picker", (e, v) => ((e as HTMLInputElement).value = v as string), local);
      await page.click(".tl-go");
      const want = 425;
      const code = await until("the frame of the asked time", () => frameCode(page), (n) => n !== null && Math.abs(n - want) <= 1, 20_000);
      expect(Math.abs(code! - want)).toBeLessThanOrEqual(1);
      const v = await tl(page);
      expect(v.mode).toBe("playback");
      expect(Math.abs(v.position - (target - 480))).toBeLessThanOrEqual(80);
      expect(await page.$eval(".tile.is-open .badge-text", (e) => e.textContent)).toBe("Paused");
      // Step one frame: the code moves by one.
      await page.keyboard.press(".");
      const stepped = await until("one frame later", () => frameCode(page), (n) => n === code! + 1, 10_000);
      expect(stepped).toBe(code! + 1);
      // Back to live.
      await page.click(".tl-live");
      await until("live again", () => page.$eval(".tile.is-open .badge-text", (e) => e.textContent), (t) => t === "Live", 20_000);
    } finally {
      await page.close();
    }
  }, 120_000);
});
