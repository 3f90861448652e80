/**
 * The live view as a daily console, in real Chromium against the stub WHEP gateway: the grid
 * fills the screen without scrolling for any camera count, layouts and pages, saved per user,
 * fullscreen, phones without sideways scrolling.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickWhenStill, pressToggle } from "../peers/browser-page.ts";
import { launchChromium, pageErrors, waitForDecodedFrames, type Chromium } from "../peers/chromium.ts";
import { HEIGHT, PHONE_UA, StubGateway, WIDTH } from "../peers/stub-gateway.ts";

const tile = (id: string) => `[data-camera="${id}"]`;
const NAMES = ["Front door", "Back yard", "Garage", "Loading bay", "Lobby", "Car park", "Server room", "Warehouse"];

interface View {
  layout: string;
  page: number;
  pageCount: number;
  shown: string[];
}

const zoomOf = (page: Page): Promise<{ scale: number; x: number; y: number }> =>
  page.evaluate(() => (window as unknown as { gatehouse: { zoom(): { scale: number; x: number; y: number } } }).gatehouse.zoom());
const shownIds = async (page: Page): Promise<string[]> => (await view(page)).shown;

const view = (page: Page): Promise<View> => page.evaluate(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view());

/** How the page sits in its viewport: overflow, and where the tiles on screen are. */
async function measure(page: Page) {
  return page.evaluate(() => {
    const doc = document.documentElement;
    const grid = document.getElementById("grid")!.getBoundingClientRect();
    const tiles = [...document.querySelectorAll<HTMLElement>(".tile")].filter((t) => !t.hidden).map((t) => t.getBoundingClientRect());
    return {
      innerWidth,
      innerHeight,
      scrollWidth: doc.scrollWidth,
      scrollHeight: doc.scrollHeight,
      bodyScrollHeight: document.body.scrollHeight,
      grid: { top: grid.top, bottom: grid.bottom, left: grid.left, right: grid.right },
      tiles: tiles.map((r) => ({ left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height })),
    };
  });
}

describe("live view console (Chromium, stub WHEP server)", () => {
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

  const cameras = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      id: `cam${i + 1}`,
      name: `${NAMES[i % NAMES.length]}${i >= NAMES.length ? ` ${Math.floor(i / NAMES.length) + 1}` : ""}`,
      state: "playing",
      groups: [i % 2 ? "outdoor" : "indoor"],
    }));

  let users = 0;
  const reset = async (n: number) => {
    for (const c of new Set([...stub.viewers.values()].map((v) => v.camera))) await stub.dropViewers(c);
    stub.cameras = cameras(n);
    // A user of its own per test: preferences (layout, favourites) are kept per user in the browser.
    stub.me = { name: "Ada Lovelace", sub: `ada-${++users}`, via: "session" };
    stub.intercom = null;
  };

  /** A page at `size`, phone-like below 700 px; waits until `n` tiles are laid out. */
  const open = async (size: { width: number; height: number }, n: number, hash = ""): Promise<Page> => {
    const page = await chromium.newPage();
    const phone = size.width < 700;
    await page.emulate({
      viewport: { ...size, isMobile: phone, hasTouch: phone, deviceScaleFactor: 1 },
      userAgent: phone ? PHONE_UA : await chromium.browser.userAgent(),
    });
    await page.goto(`${stub.url}${hash}`);
    await page.waitForFunction((count) => document.querySelectorAll(".tile").length === count, { timeout: 10_000 }, n);
    return page;
  };

  for (const size of [
    { width: 1440, height: 900 },
    { width: 390, height: 844 },
  ]) {
    it(`fills a ${size.width}×${size.height} viewport without scrollbars for 1, 5, 9 and 16 cameras`, async () => {
      for (const n of [1, 5, 9, 16]) {
        await reset(n);
        const page = await open(size, n);
        try {
          await page.waitForFunction((count) => [...document.querySelectorAll(".tile")].filter((t) => !(t as HTMLElement).hidden).length === count, {}, n);
          const m = await measure(page);
          const where = `${n} cameras at ${size.width}×${size.height}: ${JSON.stringify({ ...m, tiles: m.tiles.length })}`;
          // No scrolling either way.
          expect(m.scrollWidth, where).toBeLessThanOrEqual(m.innerWidth);
          expect(m.scrollHeight, where).toBeLessThanOrEqual(m.innerHeight);
          expect(m.bodyScrollHeight, where).toBeLessThanOrEqual(m.innerHeight);
          // Every camera on screen, inside the viewport.
          expect(m.tiles).toHaveLength(n);
          for (const t of m.tiles) {
            expect(t.left, where).toBeGreaterThanOrEqual(0);
            expect(t.top, where).toBeGreaterThanOrEqual(0);
            expect(t.right, where).toBeLessThanOrEqual(m.innerWidth);
            expect(t.bottom, where).toBeLessThanOrEqual(m.innerHeight);
          }
          // The grid reaches the bottom of the screen (less its margin), and the tiles span its
          // width and height: no half-empty screen.
          expect(m.grid.bottom, where).toBeGreaterThan(m.innerHeight - 40);
          const right = Math.max(...m.tiles.map((t) => t.right));
          const bottom = Math.max(...m.tiles.map((t) => t.bottom));
          const left = Math.min(...m.tiles.map((t) => t.left));
          const top = Math.min(...m.tiles.map((t) => t.top));
          expect(right - left, where).toBeGreaterThan((m.grid.right - m.grid.left) * 0.98);
          expect(bottom - top, where).toBeGreaterThan((m.grid.bottom - m.grid.top) * 0.98);
          // Tiles are as large as the space allows: together they cover most of the grid.
          const area = m.tiles.reduce((a, t) => a + t.width * t.height, 0);
          const gridArea = (m.grid.right - m.grid.left) * (m.grid.bottom - m.grid.top);
          expect(area / gridArea, where).toBeGreaterThan(0.7);
          if (n === 5) await waitForDecodedFrames(page, 1, 15_000, `${tile("cam5")} video`);
        } finally {
          await page.close();
        }
      }
    });
  }

  it("offers 1, 2×2, 3×3, 4×4 and 1+5 layouts with pages, pauses what is off the page, and keeps the choice per user", async () => {
    await reset(7);
    const page = await open({ width: 1440, height: 900 }, 7);
    try {
      expect((await view(page)).layout).toBe("auto");
      await page.click('#layouts [data-layout="2x2"]');
      await page.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().shown.length === 4);
      expect(await view(page)).toEqual({ layout: "2x2", page: 0, pageCount: 2, shown: ["cam1", "cam2", "cam3", "cam4"] });
      expect(await page.$eval("#page-label", (e) => e.textContent)).toBe("1 / 2");
      expect(await page.$eval('#layouts [data-layout="2x2"]', (b) => b.getAttribute("aria-pressed"))).toBe("true");
      // 2×2 tiles: two columns, two rows, equal halves of the grid.
      const m = await measure(page);
      expect(new Set(m.tiles.map((t) => Math.round(t.left))).size).toBe(2);
      expect(new Set(m.tiles.map((t) => Math.round(t.top))).size).toBe(2);
      // Tiles off the page are paused: their WHEP sessions end on the server.
      await page.waitForFunction(() => document.querySelector('[data-camera="cam7"]')?.getAttribute("data-status") === "paused");
      await waitForDecodedFrames(page, 1, 15_000, `${tile("cam4")} video`);

      await page.click("#page-next");
      await page.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().page === 1);
      expect((await view(page)).shown).toEqual(["cam5", "cam6", "cam7"]);
      await waitForDecodedFrames(page, 1, 15_000, `${tile("cam7")} video`);
      await page.keyboard.press("PageDown"); // wraps to the first page
      await page.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().page === 0);

      // 1+5: the first tile spans two columns and two rows of a 3×3 grid.
      await page.click('#layouts [data-layout="1+5"]');
      await page.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().shown.length === 6);
      const big = await page.$eval(tile("cam1"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
      const small = await page.$eval(tile("cam2"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
      expect(big.width).toBeGreaterThan(small.width * 1.9);
      expect(big.height).toBeGreaterThan(small.height * 1.9);

      for (const [key, id, count] of [
        ["1", "1", 1],
        ["3", "3x3", 7],
        ["4", "4x4", 7],
        ["0", "auto", 7],
      ] as const) {
        await page.keyboard.press(key);
        await page.waitForFunction((l) => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().layout === l, {}, id);
        expect((await view(page)).shown).toHaveLength(count);
      }
      await page.keyboard.press("3");
      await page.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().layout === "3x3");
    } finally {
      await page.close();
    }

    // The same user finds the layout again; another user on this browser gets their own.
    const again = await open({ width: 1440, height: 900 }, 7);
    try {
      await again.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().layout === "3x3");
    } finally {
      await again.close();
    }
    stub.me = { name: "Grace Hopper", sub: "grace", via: "session" };
    const other = await open({ width: 1440, height: 900 }, 7);
    try {
      await other.waitForSelector("#user:not([hidden])");
      expect((await view(other)).layout).toBe("auto");
      expect(pageErrors(other).filter((e) => !/status of 404/.test(e))).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it("enters and leaves fullscreen by button, by F and by double-clicking a camera", async () => {
    await reset(3);
    const page = await open({ width: 1440, height: 900 }, 3);
    const fsElement = () => page.evaluate(() => document.fullscreenElement?.id || document.fullscreenElement?.getAttribute("data-camera") || null);
    try {
      await page.click("#fullscreen");
      await page.waitForFunction(() => document.fullscreenElement !== null);
      expect(await fsElement()).toBe("main");
      // The button follows the page's fullscreenchange event, which comes after fullscreenElement is set.
      await page.waitForFunction(() => document.getElementById("fullscreen")?.getAttribute("aria-pressed") === "true", { timeout: 5000 });
      // The grid fills the whole screen in fullscreen.
      const m = await measure(page);
      expect(m.grid.bottom).toBeGreaterThan(m.innerHeight - 40);
      await page.keyboard.press("f");
      await page.waitForFunction(() => document.fullscreenElement === null);
      await page.waitForFunction(() => document.getElementById("fullscreen")?.getAttribute("aria-pressed") === "false", { timeout: 5000 });

      await page.keyboard.press("F");
      await page.waitForFunction(() => document.fullscreenElement !== null);
      await page.keyboard.press("f");
      await page.waitForFunction(() => document.fullscreenElement === null);

      // Double-click a camera: it opens large and goes fullscreen; a double-click again leaves.
      await page.click(`${tile("cam2")} .tile-open`, { count: 2 });
      await page.waitForFunction(() => document.fullscreenElement !== null);
      expect(await fsElement()).toBe("cam2");
      expect(new URL(page.url()).hash).toBe("#camera=cam2");
      const box = await page.$eval(tile("cam2"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
      expect(box.width).toBe(1440);
      expect(box.height).toBe(900);
      await page.click(`${tile("cam2")} .tile-open`, { count: 2 });
      await page.waitForFunction(() => document.fullscreenElement === null);
      // Still in the single view after leaving fullscreen.
      expect(await page.$eval(tile("cam2"), (e) => e.classList.contains("is-open"))).toBe(true);
    } finally {
      await page.close();
    }
  });

  for (const width of [360, 390]) {
    it(`has no sideways overflow at ${width} px: account actions in a menu, the single view at full width`, async () => {
      await reset(5);
      stub.intercom = {
        devices: [{ id: "door1", name: "Front gate", camera: "cam1", cameraName: "Front door", online: true, canAnswer: true, canTalk: true }],
      };
      const page = await open({ width, height: 780 }, 5);
      try {
        await page.waitForSelector("#user:not([hidden])");
        await page.waitForSelector(".ic-doors-btn:not([hidden])"); // the intercom's Doors button is in the bar too
        const overflow = () =>
          page.evaluate(() => ({
            scrollWidth: document.documentElement.scrollWidth,
            offRight: [...document.querySelectorAll(".topbar > *, .toolbar > *")]
              .filter((e) => !(e as HTMLElement).hidden && e.getBoundingClientRect().width > 0)
              .filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5)
              .map((e) => e.className || e.id),
          }));
        expect(await overflow()).toEqual({ scrollWidth: width, offRight: [] });
        // Sign out and Sessions are in the account menu, which fits the screen.
        expect(await page.$eval("#sign-out", (e) => e.getBoundingClientRect().width)).toBe(0);
        await page.tap("#menu-btn");
        await page.waitForSelector("#account-menu:not([hidden])");
        const menu = await page.$eval("#account-menu", (e) => e.getBoundingClientRect().toJSON() as DOMRect);
        expect(menu.left).toBeGreaterThanOrEqual(0);
        expect(menu.right).toBeLessThanOrEqual(width);
        expect(await page.$eval("#sign-out", (e) => e.getBoundingClientRect().width)).toBeGreaterThan(100);
        expect(await page.$eval("#account-menu .user-name", (e) => e.textContent)).toBe("Ada Lovelace");
        await page.keyboard.press("Escape");
        await page.waitForSelector("#account-menu", { hidden: true });

        // Single view: the camera uses the full width.
        await page.tap(`${tile("cam3")} .tile-open`);
        await page.waitForFunction(() => location.hash === "#camera=cam3");
        const box = await page.$eval(tile("cam3"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
        expect(box.left).toBe(0);
        expect(box.width).toBe(width);
        expect(await overflow()).toEqual({ scrollWidth: width, offRight: [] });
      } finally {
        await page.close();
      }
    });
  }

  it("on a phone turned sideways, the single view fills the screen", async () => {
    await reset(2);
    const page = await open({ width: 844, height: 390 }, 2, "#camera=cam2");
    try {
      await page.waitForFunction(() => document.body.classList.contains("is-single"));
      const box = await page.$eval(tile("cam2"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
      expect(box).toMatchObject({ left: 0, top: 0, width: 844, height: 390 });
      expect(await page.$eval(".topbar", (e) => e.getBoundingClientRect().height)).toBe(0);
    } finally {
      await page.close();
    }
  });
  it("finds cameras: search by name, filter by group, favourites first and favourites only, kept per user", async () => {
    await reset(6); // cam1 Front door (indoor), cam2 Back yard (outdoor), cam3 Garage, cam4 Loading bay, cam5 Lobby, cam6 Car park
    const page = await open({ width: 1440, height: 900 }, 6);
    // Each step waits at most 10 s and says which state it waited for and what the page showed.
    const until = async (what: string, fn: string) => {
      try {
        await page.waitForFunction(fn, { timeout: 10_000 });
      } catch (err) {
        const now = await page.evaluate(() => ({
          view: (window as unknown as { gatehouse: { view(): View } }).gatehouse.view(),
          search: (document.getElementById("search") as HTMLInputElement).value,
          focus: document.activeElement?.id || document.activeElement?.tagName,
          hash: location.hash,
        }));
        throw new Error(`waiting for ${what}: ${JSON.stringify(now)}`, { cause: err });
      }
    };
    const shown = "window.gatehouse.view().shown";
    try {
      await until("three groups", `document.getElementById("group-filter").options.length === 3`);
      expect(await page.$$eval("#group-filter option", (os) => os.map((o) => o.textContent))).toEqual(["All groups", "indoor", "outdoor"]);

      await page.keyboard.press("/"); // focuses the search box
      await until("the search box focused by /", `document.activeElement?.id === "search"`);
      await page.keyboard.type("gar");
      await until("one camera for 'gar'", `${shown}.length === 1`);
      expect(await shownIds(page)).toEqual(["cam3"]);
      await page.keyboard.type("xyz");
      await page.waitForSelector("#no-match:not([hidden])", { timeout: 10_000 });
      await page.keyboard.press("Escape"); // clears the search
      await until("all six after Escape", `${shown}.length === 6`);
      // Accents and case do not matter; every word must match.
      await page.type("#search", "LOADING  bay");
      await until("cam4 for 'LOADING  bay'", `${shown}.join() === "cam4"`);
      await page.$eval("#search", (e) => (e as HTMLInputElement).select());
      await page.keyboard.press("Backspace");
      await until("all six after clearing the search", `${shown}.length === 6`);

      await page.select("#group-filter", "outdoor");
      await until("the three outdoor cameras", `${shown}.length === 3`);
      expect(await shownIds(page)).toEqual(["cam2", "cam4", "cam6"]);
      // Hidden cameras do not play.
      await until("cam1 paused while hidden", `document.querySelector('[data-camera="cam1"]')?.getAttribute("data-status") === "paused"`);
      await page.select("#group-filter", "");
      await until("all six in all groups", `${shown}.length === 6`);

      // Favourites come first; "favourites only" keeps just them.
      await pressToggle(page, `${tile("cam5")} .tile-fav`, "true");
      await until("cam5 first as a favourite", `${shown}[0] === "cam5"`);
      expect(await page.$eval(`${tile("cam5")} .tile-fav`, (b) => [b.getAttribute("aria-pressed"), b.getAttribute("aria-label")])).toEqual([
        "true",
        "Remove Lobby from favourites",
      ]);
      await pressToggle(page, "#fav-filter", "true");
      await until("only cam5 with favourites only", `${shown}.join() === "cam5"`);
      const first = await page.$eval(tile("cam5"), (e) => e.getBoundingClientRect().width);
      expect(first).toBeGreaterThan(1300); // one camera: the whole width
    } finally {
      await page.close();
    }
    const again = await open({ width: 1440, height: 900 }, 6);
    try {
      await again.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().shown.join() === "cam5", { timeout: 10_000 });
      expect(await again.$eval("#fav-filter", (b) => b.getAttribute("aria-pressed"))).toBe("true");
      await pressToggle(again, "#fav-filter", "false");
      await again.waitForFunction(() => (window as unknown as { gatehouse: { view(): View } }).gatehouse.view().shown.length === 6, { timeout: 10_000 });
      expect((await shownIds(again))[0]).toBe("cam5");
    } finally {
      await again.close();
    }
  }, 60_000);

  it("steps to the previous and next camera in the single view, within the current filter", async () => {
    await reset(6);
    const page = await open({ width: 1440, height: 900 }, 6, "#camera=cam2");
    try {
      await waitForDecodedFrames(page, 1, 15_000, `${tile("cam2")} video`);
      await page.keyboard.press("ArrowRight");
      await page.waitForFunction(() => location.hash === "#camera=cam3");
      await waitForDecodedFrames(page, 1, 15_000, `${tile("cam3")} video`);
      expect(await page.$eval("#view-title", (e) => e.textContent)).toBe("Garage");
      await page.click(`${tile("cam3")} .tile-prev`);
      await page.waitForFunction(() => location.hash === "#camera=cam2");
      await page.click(`${tile("cam2")} .tile-prev`); // wraps round
      await page.waitForFunction(() => location.hash === "#camera=cam1");
      // Only the open camera plays.
      await page.waitForFunction(() => document.querySelector('[data-camera="cam2"]')?.getAttribute("data-status") === "paused");
      await page.keyboard.press("Escape");
      await page.waitForFunction(() => location.hash === "");

      await page.select("#group-filter", "outdoor");
      // The grid re-fits after a filter change: click where the tile is once it stands still.
      await clickWhenStill(page, `${tile("cam4")} .tile-open`);
      await page.waitForFunction(() => location.hash === "#camera=cam4");
      await page.click(`${tile("cam4")} .tile-next`);
      await page.waitForFunction(() => location.hash === "#camera=cam6");
      await page.keyboard.press("ArrowRight");
      await page.waitForFunction(() => location.hash === "#camera=cam2");
    } finally {
      await page.close();
    }
  });

  it("saves a snapshot as a PNG of the camera's size, named after the camera and the frame's time", async () => {
    await reset(2);
    const dir = await mkdtemp(path.join(os.tmpdir(), "gatehouse-snap-"));
    const page = await open({ width: 1440, height: 900 }, 2, "#camera=cam1");
    const cdp = await chromium.browser.target().createCDPSession();
    try {
      await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir, eventsEnabled: true });
      const done = new Promise<void>((resolve) => {
        cdp.on("Browser.downloadProgress", (e: { state: string }) => {
          if (e.state === "completed") resolve();
        });
      });
      await waitForDecodedFrames(page, 5, 15_000, `${tile("cam1")} video`);
      await page.waitForFunction(() => document.querySelector('[data-camera="cam1"]')?.getAttribute("data-status") === "live");
      const before = new Date();
      before.setMilliseconds(0);
      await page.click(`${tile("cam1")} .tile-snapshot`);
      await done;
      const files = await readdir(dir);
      expect(files).toHaveLength(1);
      const name = files[0]!;
      const m = /^Front-door_(\d{4})-(\d{2})-(\d{2})_(\d{2})-(\d{2})-(\d{2})\.png$/.exec(name);
      expect(m, name).not.toBeNull();
      const at = new Date(+m![1]!, +m![2]! - 1, +m![3]!, +m![4]!, +m![5]!, +m![6]!);
      expect(at.getTime()).toBeGreaterThanOrEqual(before.getTime());
      expect(at.getTime()).toBeLessThanOrEqual(Date.now());
      const png = await readFile(path.join(dir, name));
      expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      expect(png.toString("latin1", 12, 16)).toBe("IHDR");
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([WIDTH, HEIGHT]);
      expect(png.length).toBeGreaterThan(2000); // a picture, not an empty canvas
      expect(await page.$eval("#toast", (e) => e.textContent)).toBe(`Snapshot saved: ${name}`);
      // The P key does the same.
      await page.keyboard.press("p");
      await page.waitForFunction(() => /Snapshot saved/.test(document.getElementById("toast")?.textContent ?? ""));
    } finally {
      await cdp.detach().catch(() => undefined);
      await page.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("zooms with the wheel around the pointer, pans by dragging, and resets", async () => {
    await reset(1);
    const page = await open({ width: 1440, height: 900 }, 1, "#camera=cam1");
    try {
      await waitForDecodedFrames(page, 1, 15_000, `${tile("cam1")} video`);
      const box = await page.$eval(tile("cam1"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
      const px = box.x + box.width * 0.25;
      const py = box.y + box.height * 0.25;
      await page.mouse.move(px, py);
      await page.mouse.wheel({ deltaY: -400 });
      await page.waitForFunction(() => (window as unknown as { gatehouse: { zoom(): { scale: number } } }).gatehouse.zoom().scale > 2);
      const z = await zoomOf(page);
      // The point under the pointer stays where it was.
      expect((px - box.x - z.x) / z.scale).toBeCloseTo(px - box.x, 0);
      expect((py - box.y - z.y) / z.scale).toBeCloseTo(py - box.y, 0);
      expect(await page.$eval(`${tile("cam1")} video`, (v) => (v as HTMLElement).style.transform)).toMatch(/scale\(2\.\d+\)/);
      expect(await page.$eval(`${tile("cam1")} .tile-zoom`, (e) => [(e as HTMLElement).hidden, e.querySelector(".zoom-level")?.textContent])).toEqual([
        false,
        `${z.scale.toFixed(1)}×`,
      ]);
      // Drag to pan.
      await page.mouse.move(px, py);
      await page.mouse.down();
      await page.mouse.move(px - 120, py - 60, { steps: 6 });
      await page.mouse.up();
      const panned = await zoomOf(page);
      expect(panned.scale).toBe(z.scale);
      expect(panned.x).toBeCloseTo(z.x - 120, 0);
      expect(panned.y).toBeCloseTo(z.y - 60, 0);
      // A drag does not leave the picture: the pan is clamped.
      await page.mouse.down();
      await page.mouse.move(px + 3000, py + 3000, { steps: 4 });
      await page.mouse.up();
      expect(await zoomOf(page)).toMatchObject({ x: 0, y: 0 });
      // Still the single view (a drag is not a click on anything).
      expect(new URL(page.url()).hash).toBe("#camera=cam1");
      await page.click(`${tile("cam1")} .zoom-reset`);
      expect(await zoomOf(page)).toEqual({ scale: 1, x: 0, y: 0 });
      expect(await page.$eval(`${tile("cam1")} video`, (v) => (v as HTMLElement).style.transform)).toBe("");
      await page.keyboard.press("+");
      expect((await zoomOf(page)).scale).toBeCloseTo(1.25, 5);
      await page.keyboard.press("0");
      expect((await zoomOf(page)).scale).toBe(1);
    } finally {
      await page.close();
    }
  });

  it("zooms with a two-finger pinch on a touch screen", async () => {
    await reset(1);
    const page = await open({ width: 390, height: 844 }, 1, "#camera=cam1");
    const cdp = await page.createCDPSession();
    try {
      await waitForDecodedFrames(page, 1, 15_000, `${tile("cam1")} video`);
      const box = await page.$eval(tile("cam1"), (e) => e.getBoundingClientRect().toJSON() as DOMRect);
      const cx = box.x + box.width / 2;
      const cy = box.y + box.height / 2;
      const points = (d: number) => [
        { x: cx - d, y: cy, id: 1 },
        { x: cx + d, y: cy, id: 2 },
      ];
      await cdp.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: points(30) });
      for (let d = 40; d <= 90; d += 10) await cdp.send("Input.dispatchTouchEvent", { type: "touchMove", touchPoints: points(d) });
      await cdp.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
      const z = await zoomOf(page);
      expect(z.scale).toBeGreaterThan(2);
      expect(z.scale).toBeLessThan(3.5);
      // Pinched around the centre: the centre stays put.
      expect((box.width / 2 - z.x) / z.scale).toBeCloseTo(box.width / 2, -1);
      // The page itself did not zoom.
      expect(await page.evaluate(() => visualViewport?.scale ?? 1)).toBe(1);
    } finally {
      await cdp.detach().catch(() => undefined);
      await page.close();
    }
  });

  it("lists the keyboard shortcuts in a help overlay (?), and they can be turned off and on again", async () => {
    await reset(2);
    const page = await open({ width: 1440, height: 900 }, 2);
    try {
      await page.keyboard.press("?");
      await page.waitForSelector("#help[open]");
      const rows = await page.$$eval("#help .shortcut dd", (els) => els.map((e) => e.textContent ?? ""));
      for (const label of ["Fullscreen on or off", "Save a snapshot", "Search cameras", "Previous or next camera", "Layout 2×2"]) {
        expect(rows.some((r) => r.startsWith(label)), label).toBe(true);
      }
      await page.click("#help [data-shortcuts-toggle]");
      await page.keyboard.press("Escape");
      await page.waitForSelector("#help", { hidden: true });
      // Off: single keys do nothing; navigation keys still work.
      await page.keyboard.press("s");
      await page.keyboard.press("2");
      await page.keyboard.press("?");
      expect(await page.$eval("#stats-toggle", (b) => b.getAttribute("aria-pressed"))).toBe("false");
      expect((await view(page)).layout).toBe("auto");
      expect(await page.$eval("#help", (d) => (d as HTMLDialogElement).open)).toBe(false);
      await page.focus(`${tile("cam1")} .tile-open`);
      await page.keyboard.press("ArrowRight");
      expect(await page.evaluate(() => document.activeElement?.closest(".tile")?.getAttribute("data-camera"))).toBe("cam2");
    } finally {
      await page.close();
    }
    // The choice is kept; the menu still opens the list, where they go back on.
    const again = await open({ width: 1440, height: 900 }, 2);
    try {
      await again.waitForSelector("#user:not([hidden])");
      await again.keyboard.press("s");
      expect(await again.$eval("#stats-toggle", (b) => b.getAttribute("aria-pressed"))).toBe("false");
      await again.click("#menu-btn");
      await again.click("#shortcuts-btn");
      await again.waitForSelector("#help[open]");
      expect(await again.$eval("#help [data-shortcuts-toggle]", (c) => (c as HTMLInputElement).checked)).toBe(false);
      await again.click("#help [data-shortcuts-toggle]");
      await again.click("#help [data-close]");
      await again.keyboard.press("s");
      expect(await again.$eval("#stats-toggle", (b) => b.getAttribute("aria-pressed"))).toBe("true");
    } finally {
      await again.close();
    }
  });
});
