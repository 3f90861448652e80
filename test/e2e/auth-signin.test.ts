/**
 * Sign-in end to end in Chromium against the whole gateway with the embedded default (development
 * identity provider): sign in through the provider's pages, see exactly the permitted cameras, play
 * one, sign out, and lose access — including a stream still playing in another tab, which the
 * gateway ends when the session is revoked. The administrator sees every camera, and ends another
 * user's sessions from the sessions page.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cameraId } from "../../config/ids.ts";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { Auth } from "../../gateway/auth/index.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { canvasNotBlack, launchChromium, waitForDecodedFrames, type Chromium } from "../peers/chromium.ts";

let gw: Gateway;
let auth: Auth;
let chromium: Chromium;

beforeAll(async () => {
  const config = parseConfig({
    server: { host: "127.0.0.1", port: 0 },
    auth: { mode: "dev" },
    demo: { enabled: true },
    // A second camera only the administrator may see (never pulled: nobody watches it).
    cameras: [{ id: "lobby", name: "Lobby", url: "rtsp://127.0.0.1:9/never" }],
    log: { level: "warn" },
  });
  gw = await startGateway({ config, log: silentLogger });
  const wired = (gw as Gateway & { auth?: Auth }).auth;
  if (!wired) throw new Error("gateway/gateway.ts does not expose the auth module as `gateway.auth` (see gateway/auth/index.ts)");
  auth = wired;
  chromium = await launchChromium();
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
});

const password = (user: string) => auth.devUsers!.find((u) => u.username === user)!.password;

/** From a gateway page that redirected to the provider's login form: sign in and land back on the gateway. */
async function signInAt(page: Page, user: string): Promise<void> {
  await page.waitForSelector("#username", { timeout: 15_000 });
  expect(new URL(page.url()).origin).toBe(auth.issuer);
  await page.type("#username", user);
  await page.type("#password", password(user));
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(gw.url).origin);
}

/**
 * The gateway's own page style took effect (the page's CSP allows it by hash): the brand mark,
 * the dark background, a rounded blue primary action; not the browser's defaults.
 */
async function styled(page: Page): Promise<{ brand: boolean; background: boolean; buttonStyled: boolean }> {
  return page.evaluate(() => {
    const primary = document.querySelector(".primary");
    const p = primary ? getComputedStyle(primary) : null;
    return {
      brand: !!document.querySelector(".brand"),
      background: getComputedStyle(document.body).backgroundColor === "rgb(11, 14, 19)",
      buttonStyled: !!p && p.backgroundColor === "rgb(30, 111, 217)" && p.borderRadius === "10px",
    };
  });
}

async function tileNames(page: Page): Promise<string[]> {
  await page.waitForFunction(() => document.querySelectorAll("#grid .tile").length > 0, { timeout: 15_000 });
  return page.$$eval("#grid .tile .tile-name", (els) => els.map((e) => e.textContent ?? ""));
}

async function apiCameraIds(page: Page): Promise<{ status: number; ids: string[] }> {
  return page.evaluate(async () => {
    const r = await fetch("/api/cameras", { headers: { accept: "application/json" }, cache: "no-store" });
    return { status: r.status, ids: r.ok ? ((await r.json()) as Array<{ id: string }>).map((c) => c.id) : [] };
  });
}

const viewers = () => gw.sfu.source(cameraId("demo")).stats().viewers;

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("sign-in in Chromium", () => {
  it("the viewer signs in through the provider, sees only the demo camera, plays it, signs out and loses access", async () => {
    const page = await chromium.newPage();
    await page.goto(`${gw.url}/`, { waitUntil: "load" });
    await signInAt(page, "viewer");
    expect(await tileNames(page)).toEqual(["Demo camera"]);
    expect(await apiCameraIds(page)).toEqual({ status: 200, ids: ["demo"] });
    await waitForDecodedFrames(page, 10, 20_000);
    expect(await canvasNotBlack(page)).toBe(true);

    // A second tab of the same browser keeps playing while the first one signs out.
    const other = await chromium.newPage(`${gw.url}/`);
    await waitForDecodedFrames(other, 5, 20_000);
    const cookie = (await page.cookies()).find((c) => c.name === "gatehouse_session");
    expect(cookie?.httpOnly).toBe(true);
    expect(cookie?.sameSite).toBe("Lax");

    // The sign-out page names the user and offers Cancel, which changes nothing.
    await page.goto(`${gw.url}/auth/logout?return_to=${encodeURIComponent("/#camera=demo")}`, { waitUntil: "load" });
    await page.bringToFront(); // a background tab does not follow links or submit forms
    expect(await page.$eval("#title", (e) => e.textContent)).toBe("Sign out of Gatehouse?");
    expect(await page.$eval("#user", (e) => e.textContent)).toBe("Demo Viewer");
    expect(await styled(page)).toEqual({ brand: true, background: true, buttonStyled: true });
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("#cancel")]);
    expect(new URL(page.url()).hash).toBe("#camera=demo");
    expect((await apiCameraIds(page)).status).toBe(200);

    await page.goto(`${gw.url}/auth/logout`, { waitUntil: "load" });
    await Promise.all([page.waitForNavigation({ timeout: 15_000 }), page.click("#logout")]);
    // Through the provider's sign-out and back to our "signed out" page.
    await page.waitForFunction((origin: string) => location.origin === origin && location.pathname === "/auth/signed-out", { timeout: 20_000 }, new URL(gw.url).origin);
    expect(await page.$eval("#title", (e) => e.textContent)).toBe("You are signed out");
    expect(await styled(page)).toEqual({ brand: true, background: true, buttonStyled: true });
    // Provider session ended too: signing in again asks for the password.
    await Promise.all([page.waitForNavigation({ timeout: 15_000 }), page.click("#sign-in")]);
    await page.waitForFunction((issuer: string) => location.origin === issuer && !!document.querySelector("#password"), { timeout: 20_000 }, auth.issuer!);

    // The stream still playing in the other tab is ended by the gateway at once...
    await until("the other tab's stream to end", () => viewers() === 0, 5000);
    // ...and that tab says why in plain words, with a way to sign in again (no silent trip to sign-in).
    await other.waitForFunction(() => document.querySelector("#notice")?.textContent?.startsWith("You signed out of Gatehouse in another window or on another device."), { timeout: 25_000 });
    expect(await other.$eval("#notice", (e) => e.textContent)).toBe("You signed out of Gatehouse in another window or on another device. Live video has stopped. Sign in again");
    expect(await other.$eval("#sign-in-again", (e) => (e as HTMLAnchorElement).href)).toContain(`${gw.url}/auth/login`);
    expect(await other.$eval("[data-camera] .badge-text", (e) => e.textContent?.trim())).toBe("Signed out");

    // The old cookie is worth nothing now.
    const replay = await fetch(`${gw.url}/api/cameras`, { headers: { cookie: `gatehouse_session=${cookie!.value}`, accept: "application/json" } });
    expect(replay.status).toBe(401);
    await page.close();
    await other.close();
  }, 90_000); // several sign-ins through the provider's pages

  it("the administrator ends another user's session from the sessions page; that browser loses access at once", async () => {
    const adminCtx = await chromium.browser.createBrowserContext();
    const viewerCtx = await chromium.browser.createBrowserContext();
    try {
      const viewer = await viewerCtx.newPage();
      await viewer.goto(`${gw.url}/`, { waitUntil: "load" });
      await signInAt(viewer, "viewer");
      expect((await apiCameraIds(viewer)).status).toBe(200);

      const admin = await adminCtx.newPage();
      await admin.goto(`${gw.url}/`, { waitUntil: "load" });
      await signInAt(admin, "admin");
      await admin.waitForSelector("#sessions-link:not([hidden])", { timeout: 15_000 });
      await admin.click("#menu-btn"); // account actions live in the account menu
      await Promise.all([admin.waitForNavigation({ waitUntil: "load" }), admin.click("#sessions-link")]);
      await admin.waitForSelector('#sessions tr[data-sub="dev-viewer"]', { timeout: 15_000 });
      expect(await admin.$eval('#sessions tr[data-sub="dev-admin"] .session-sub', (e) => e.textContent)).toBe("dev-admin (you)");
      // The administrator's own browser is marked and listed first, with the real device, address and activity.
      const own = await admin.$eval("#sessions tbody tr:first-child", (tr) => ({
        sub: (tr as HTMLElement).dataset["sub"],
        tag: tr.querySelector(".session-tag.is-this")?.textContent,
        device: tr.querySelector(".session-device")?.textContent,
        address: tr.querySelector(".session-address")?.textContent,
        seen: tr.querySelector(".session-seen")?.textContent,
      }));
      expect(own).toMatchObject({ sub: "dev-admin", tag: "This browser", seen: "just now" });
      expect(own.device).toMatch(/^(Headless )?Chrome \d+ on Linux$/);
      expect(own.address).toMatch(/127\.0\.0\.1$/);
      // The session's real end: its maximum age when the provider renews it.
      const [listed] = await admin.evaluate(async () => {
        const r = await fetch("/api/admin/sessions", { cache: "no-store" });
        return ((await r.json()) as { sessions: Array<{ sub: string; current: boolean; renews: boolean; endsAt: string; expiresAt: string }> }).sessions.filter(
          (x) => x.current,
        );
      });
      expect(listed?.sub).toBe("dev-admin");
      if (listed?.renews) expect(Date.parse(listed.endsAt)).toBeGreaterThan(Date.parse(listed.expiresAt));
      else expect(listed?.endsAt).toBe(listed?.expiresAt);
      // The page shows that real end, and says whether the provider renews the session until then.
      const shown = await admin.$eval("#sessions tbody tr:first-child", (tr) => ({
        ends: (tr.querySelector("time.session-ends") as HTMLTimeElement | null)?.dateTime,
        text: tr.querySelector(".session-ends")?.textContent ?? "",
        renew: tr.querySelector(".session-renew")?.textContent,
      }));
      expect(Date.parse(shown.ends!)).toBe(Date.parse(listed!.endsAt));
      expect(shown.text.length).toBeGreaterThan(0);
      expect(shown.renew).toBe(listed!.renews ? "renewed with the provider until then" : "not renewed: sign-in needed after this");

      const rows = await admin.$$eval('#sessions tr[data-sub="dev-viewer"]', (els) => els.length);
      // Ending asks first; Cancel ends nothing.
      await admin.click('#sessions tr[data-sub="dev-viewer"] .session-actions button:last-child'); // every session of the user
      await admin.waitForSelector("#confirm[open]");
      expect(await admin.$eval("#confirm-title", (e) => e.textContent)).toBe("End every session of Demo Viewer?");
      expect(await admin.$eval("#confirm-provider", (e) => e.textContent)).toMatch(/signed straight back in/);
      await admin.click("#confirm-cancel");
      await admin.waitForSelector("#confirm", { hidden: true });
      expect((await apiCameraIds(viewer)).status).toBe(200);
      await admin.click('#sessions tr[data-sub="dev-viewer"] .session-actions button:last-child');
      await admin.waitForSelector("#confirm[open]");
      await admin.click("#confirm-ok");
      await admin.waitForFunction(() => !document.querySelector('#sessions tr[data-sub="dev-viewer"]'), { timeout: 15_000 });
      expect(rows).toBeGreaterThanOrEqual(1);
      expect((await apiCameraIds(viewer)).status).toBe(401);

      // Back on the page, the viewer is signed in again silently (the provider's own session was
      // not ended): the sessions page says so, the viewer sees no sessions link, and the API refuses it.
      await viewer.goto(`${gw.url}/`, { waitUntil: "load" });
      await viewer.waitForSelector("#user:not([hidden])", { timeout: 15_000 });
      expect(await viewer.$eval("#sessions-link", (e) => (e as HTMLElement).hidden)).toBe(true);
      await admin.waitForFunction(() => /Demo Viewer was signed straight back in/.test(document.getElementById("notice")?.textContent ?? ""), { timeout: 15_000 });
      expect(await admin.$eval('#sessions tr[data-sub="dev-viewer"] .session-tag.is-back', (e) => e.textContent)).toBe("Signed back in");
      // On a phone the sessions are cards: no sideways scrolling.
      await admin.setViewport({ width: 390, height: 844 });
      expect(await admin.$eval("#sessions tbody tr", (tr) => getComputedStyle(tr).display)).toBe("block");
      expect(await admin.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      await viewer.goto(`${gw.url}/sessions.html`, { waitUntil: "load" });
      await viewer.waitForSelector("#notice:not([hidden])", { timeout: 15_000 });
      expect(await viewer.$eval("#notice", (e) => e.textContent)).toMatch(/Only an administrator/);
    } finally {
      await adminCtx.close();
      await viewerCtx.close();
    }
  }, 90_000); // several sign-ins through the provider's pages

  it("the administrator sees every camera", async () => {
    const context = await chromium.browser.createBrowserContext();
    try {
      const page = await context.newPage();
      await page.goto(`${gw.url}/`, { waitUntil: "load" });
      await signInAt(page, "admin");
      expect((await tileNames(page)).sort()).toEqual(["Demo camera", "Lobby"]);
      expect((await apiCameraIds(page)).ids.sort()).toEqual(["demo", "lobby"]);
    } finally {
      await context.close();
    }
  });
});
