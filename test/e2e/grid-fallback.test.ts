/**
 * The live view when the gateway refuses its grid over one connection for good, in Chromium: the
 * page plays every tile over a WHEP session of its own instead, and no tile says anything false on
 * the way (never an error, a refusal or a retry countdown; only Connecting/Waiting, then Live).
 * Four cameras of the built-in demo recorder, no sign-in (loopback).
 * - `media.grid.enabled: false`: `/grid` answers 404, the page's first request finds out.
 * - `media.grid.sessionsPerUser: 1` with the user's other page holding its one session: the second
 *   page's offer is refused (429 `grid_session_limit`); the first page keeps its grid.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { tileRows, type TileRow } from "../peers/browser-page.ts";
import { launchChromium, pageErrors, type Chromium } from "../peers/chromium.ts";

const CAMERAS = ["cam1", "cam2", "cam3", "cam4"];

let recorder: DemoRecorder;
let chromium: Chromium;
const gateways: Gateway[] = [];

beforeAll(async () => {
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  chromium = await launchChromium();
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  for (const g of gateways) await g.close("test done");
  await recorder?.close();
});

async function gatewayWith(grid: Record<string, unknown>): Promise<Gateway> {
  const config = parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "none" },
      log: { level: "warn" },
      demo: { enabled: false },
      media: { grid },
      cameras: CAMERAS.map((id) => ({ id, url: recorder.url, transport: "tcp" })),
    },
    {},
  );
  const g = await startGateway({ config, log: silentLogger });
  gateways.push(g);
  return g;
}

/** A page of the live view whose every tile's status, label and message are recorded from the start. */
async function recordedPage(g: Gateway): Promise<Page> {
  const page = await chromium.newPage();
  await page.evaluateOnNewDocument(() => {
    const w = window as unknown as { __said: Set<string> };
    w.__said = new Set();
    setInterval(() => {
      for (const el of document.querySelectorAll<HTMLElement>("[data-camera]")) {
        w.__said.add(`${el.dataset.status ?? ""}|${el.querySelector(".badge-text")?.textContent ?? ""}|${el.querySelector(".tile-message")?.textContent ?? ""}`);
      }
    }, 20);
  });
  await page.goto(`${g.url}/`, { waitUntil: "load" });
  return page;
}

const tiles = tileRows;
const said = async (page: Page) => (await page.evaluate(() => [...(window as unknown as { __said: Set<string> }).__said])).map((s) => s.split("|"));
const gridOf = (page: Page) => page.evaluate(() => (window as unknown as { gatehouse: { grid(): { state: string } | null } }).gatehouse.grid()?.state ?? null);

/** Polls the page until every camera's tile is Live with frames decoded; returns the tiles. */
async function allLive(page: Page, timeoutMs: number): Promise<TileRow[]> {
  const t0 = Date.now();
  for (;;) {
    const t = await tiles(page);
    if (t.length === CAMERAS.length && t.every((x) => x.status === "live" && (x.framesDecoded ?? 0) > 0)) return t;
    if (Date.now() - t0 > timeoutMs) throw new Error(`not every tile live within ${timeoutMs} ms: ${JSON.stringify(t.map((x) => [x.camera, x.status, x.message]))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** What the tiles said on the way: only the words of a tile coming up, then Live. */
function expectNothingFalse(shown: string[][]): void {
  const statuses = new Set(shown.map(([status]) => status));
  for (const s of statuses) expect(["connecting", "waiting", "live", ""]).toContain(s);
  for (const [, label, message] of shown) {
    expect(label).not.toMatch(/retry|error|no access|unavailable/i);
    expect(message).not.toMatch(/retry|refused|not allowed|failed|error|limit/i);
  }
}

describe("the live view falls back to one WHEP session per tile when the gateway refuses its grid for good (Chromium)", () => {
  it("media.grid.enabled off: every tile plays over a WHEP session of its own, no grid session", async () => {
    const g = await gatewayWith({ enabled: false });
    const page = await recordedPage(g);
    try {
      const t = await allLive(page, 60_000);
      for (const x of t) expect(x.resource).toMatch(/\/whep\//);
      expect(await gridOf(page)).toBeNull();
      expect(g.sfu.sessionList()).toHaveLength(0);
      expect(g.sfu.viewerList().map((v) => v.cameraId).sort()).toEqual(CAMERAS);
      const shown = await said(page);
      expectNothingFalse(shown);
      // (The grid route's 404, and `auth/csrf`'s without sign-in, are logged by the browser as failed loads.)
      expect(pageErrors(page).filter((e) => !/status of 404/.test(e))).toEqual([]);
    } finally {
      await page.close();
    }
  }, 120_000);

  it("the user's grid sessions all held (media.grid.sessionsPerUser 1): the second page plays its tiles over WHEP; the first keeps its grid", async () => {
    const g = await gatewayWith({ sessionsPerUser: 1 });
    const first = await recordedPage(g);
    try {
      await allLive(first, 60_000);
      expect(await gridOf(first)).toBe("connected");
      expect(g.sfu.sessionList()).toHaveLength(1);
      expect(g.sfu.viewerList()).toHaveLength(0);
      const second = await recordedPage(g);
      try {
        const t = await allLive(second, 60_000);
        for (const x of t) expect(x.resource).toMatch(/\/whep\//);
        expect(await gridOf(second)).toBeNull();
        expectNothingFalse(await said(second));
        // The first page's grid goes on; the second page's tiles are the gateway's WHEP viewers.
        expect(g.sfu.sessionList()).toHaveLength(1);
        expect(g.sfu.viewerList().map((v) => v.cameraId).sort()).toEqual(CAMERAS);
        expect(await gridOf(first)).toBe("connected");
        // (The refused offer's 429, and `auth/csrf`'s 404 without sign-in, are logged by the browser as failed loads.)
        expect(pageErrors(second).filter((e) => !/status of 4(29|04)/.test(e))).toEqual([]);
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  }, 120_000);
});
