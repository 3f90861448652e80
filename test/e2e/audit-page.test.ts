/**
 * The audit page in Chromium, against the whole gateway (development sign-in, demo camera,
 * SQLite in a temp data directory): the administrator finds it in the menu, sees who signed in
 * and who watched the demo camera, filters by user and action, exports the same records as
 * CSV and checks the chain; after someone rewrites a record in the database file the page
 * says the chain is broken. A viewer gets neither the link nor the records.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, waitForDecodedFrames, type Chromium } from "../peers/chromium.ts";

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-audit-page-"));
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

async function signInAt(page: Page, user: string): Promise<void> {
  await page.waitForSelector("#username", { timeout: 15_000 });
  await page.type("#username", user);
  await page.type("#password", password(user));
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(gw.url).origin);
}

const rows = (page: Page) =>
  page.$$eval("#records tbody tr", (trs) => trs.map((tr) => ({ action: (tr as HTMLElement).dataset.action!, cells: [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "") })));

describe("audit page in Chromium", () => {
  it("shows, filters, exports and verifies the trail to an administrator only", { timeout: 90_000 }, async () => {
    // The viewer watches the demo camera for a moment, and sees no audit link.
    const vpage = await chromium.newPage();
    await vpage.goto(`${gw.url}/`, { waitUntil: "load" });
    await signInAt(vpage, "viewer");
    await waitForDecodedFrames(vpage, 5, 20_000);
    expect(await vpage.$eval("#audit-link", (a) => (a as HTMLElement).hidden)).toBe(true);
    await vpage.goto(`${gw.url}/audit.html`, { waitUntil: "load" });
    await vpage.waitForFunction(() => !document.getElementById("notice")!.hidden, { timeout: 15_000 });
    expect(await vpage.$eval("#notice", (n) => n.textContent)).toMatch(/Only an administrator/);
    await vpage.close(); // the live view ends

    // The administrator, in a browser context of their own (no cookies shared with the viewer).
    const context = await chromium.browser.createBrowserContext();
    const page = await context.newPage();
    await page.goto(`${gw.url}/`, { waitUntil: "load" });
    await signInAt(page, "admin");
    await page.waitForFunction(() => !(document.getElementById("audit-link") as HTMLElement).hidden, { timeout: 15_000 });
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.$eval("#audit-link", (a) => (a as HTMLAnchorElement).click())]);
    expect(new URL(page.url()).pathname).toBe("/audit.html");

    // Sign-ins of both, the viewer's live view start (and its end, once the tab's session closed).
    await page.waitForFunction(() => document.querySelectorAll("#records tbody tr").length >= 3, { timeout: 15_000 });
    let all = await rows(page);
    expect(all.filter((r) => r.action === "sign_in").length).toBe(2);
    // (The administrator's own grid is watching the demo camera too.)
    const start = all.find((r) => r.action === "live_view_start" && r.cells[3]!.includes("Demo Viewer"))!;
    expect(start.cells).toEqual(expect.arrayContaining(["Live view started", "success", "127.0.0.1", "demo"]));

    // Filter: the viewer's live views only.
    await page.type('#filters input[name="user"]', "dev-viewer");
    await page.select('#filters select[name="action"]', "live_view_start");
    await page.click("#search");
    await page.waitForFunction(() => [...document.querySelectorAll("#records tbody tr")].every((tr) => (tr as HTMLElement).dataset.action === "live_view_start"), { timeout: 15_000 });
    all = await rows(page);
    expect(all.length).toBeGreaterThanOrEqual(1);
    expect(all.every((r) => r.cells[3]!.includes("Demo Viewer"))).toBe(true);

    // The CSV export carries the same filters and the same record.
    const href = await page.$eval("#export", (a) => (a as HTMLAnchorElement).href);
    expect(new URL(href).searchParams.get("user")).toBe("dev-viewer");
    const csv = await page.evaluate(async (u: string) => {
      const r = await fetch(u);
      return { status: r.status, type: r.headers.get("content-type"), disposition: r.headers.get("content-disposition"), text: await r.text() };
    }, href);
    expect(csv.status).toBe(200);
    expect(csv.type).toMatch(/^text\/csv/);
    expect(csv.disposition).toMatch(/^attachment; filename="gatehouse-audit-.*\.csv"$/);
    const lines = csv.text.trimEnd().split("\r\n");
    expect(lines).toHaveLength(all.length + 1);
    expect(lines[1]).toMatch(/^\d+,[^,]+,live_view_start,success,dev-viewer,Demo Viewer,/);

    // The chain checks out; then someone rewrites who watched, in the database file itself.
    await page.click("#verify");
    await page.waitForFunction(() => /intact/.test(document.getElementById("verdict")!.textContent ?? ""), { timeout: 15_000 });
    const seq = Number(lines[1]!.split(",")[0]);
    const db = new DatabaseSync(path.join(dataDir, "audit.sqlite"));
    db.exec("DROP TRIGGER audit_no_update");
    db.prepare("UPDATE audit SET subject = 'someone-else' WHERE seq = ?").run(seq);
    db.close();
    await page.click("#verify");
    await page.waitForFunction(() => /BROKEN/.test(document.getElementById("verdict")!.textContent ?? ""), { timeout: 15_000 });
    expect(await page.$eval("#verdict", (v) => v.textContent)).toContain(`#${seq}`);
    await context.close();
  });
});
