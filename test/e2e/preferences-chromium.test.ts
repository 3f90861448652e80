/**
 * Console preferences follow the user to another workstation, in Chromium against the whole
 * gateway (development sign-in, demo camera, temp data directory): the administrator chooses a
 * layout and a favourite in one browser context; a second context (no shared storage) signed in
 * as the same user opens with the same layout and favourite.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, type Chromium } from "../peers/chromium.ts";

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-prefs-page-"));
let gw: Gateway;
let chromium: Chromium;

beforeAll(async () => {
  const config = parseConfig({ server: { host: "127.0.0.1", port: 0 }, auth: { mode: "dev" }, demo: { enabled: true }, log: { level: "warn" }, dataDir });
  gw = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium();
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const password = (user: string) => gw.auth.devUsers!.find((u) => u.username === user)!.password;

async function openSignedIn(user: string): Promise<Page> {
  const context = await chromium.browser.createBrowserContext();
  const page = await context.newPage();
  await page.goto(`${gw.url}/`, { waitUntil: "load" });
  await page.waitForSelector("#username", { timeout: 15_000 });
  await page.type("#username", user);
  await page.type("#password", password(user));
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(gw.url).origin);
  await page.waitForSelector('li[data-camera="demo"] .tile-fav', { timeout: 15_000 });
  return page;
}

const shown = (page: Page) =>
  page.evaluate(() => ({
    layout: document.querySelector('#layouts button[aria-pressed="true"]')?.getAttribute("data-layout") ?? null,
    favourite: document.querySelector('li[data-camera="demo"] .tile-fav')?.getAttribute("aria-pressed") ?? null,
  }));

describe("console preferences kept on the gateway, in Chromium", () => {
  it("a layout and a favourite chosen in one browser are there in another", { timeout: 90_000 }, async () => {
    const first = await openSignedIn("admin");
    expect(await shown(first)).toEqual({ layout: "auto", favourite: "false" });
    await first.$eval('#layouts button[data-layout="2x2"]', (b) => (b as HTMLButtonElement).click());
    await first.$eval('li[data-camera="demo"] .tile-fav', (b) => (b as HTMLButtonElement).click());
    expect(await shown(first)).toEqual({ layout: "2x2", favourite: "true" });
    // The page writes to the gateway shortly after the change.
    await first.waitForFunction(
      async () => {
        const r = await fetch("/api/me/preferences", { headers: { Accept: "application/json" }, cache: "no-store" });
        const p = ((await r.json()) as { preferences: { layout?: string; favourites?: string[] } | null }).preferences;
        return p?.layout === "2x2" && p.favourites?.includes("demo") === true;
      },
      { timeout: 15_000, polling: 250 },
    );

    const second = await openSignedIn("admin");
    await second.waitForFunction(() => document.querySelector('#layouts button[aria-pressed="true"]')?.getAttribute("data-layout") === "2x2", { timeout: 15_000 });
    expect(await shown(second)).toEqual({ layout: "2x2", favourite: "true" });

    // Another user's console is untouched.
    const viewer = await openSignedIn("viewer");
    expect(await shown(viewer)).toEqual({ layout: "auto", favourite: "false" });
  });
});
