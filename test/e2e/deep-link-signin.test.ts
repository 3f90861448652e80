/**
 * A link to one camera (`/#camera=<id>`) opened before sign-in still opens that camera after
 * signing in through the identity provider's own pages (the fragment never reaches a server,
 * so only the page itself can carry it through sign-in). Chromium, the whole gateway, the
 * embedded development provider.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { Auth } from "../../gateway/auth/index.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, type Chromium } from "../peers/chromium.ts";

let gw: Gateway;
let chromium: Chromium;

beforeAll(async () => {
  gw = await startGateway({
    config: parseConfig({
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "dev" },
      demo: { enabled: true },
      cameras: [{ id: "lobby", name: "Lobby", url: "rtsp://127.0.0.1:9/never" }],
      log: { level: "warn" },
    }),
    log: silentLogger,
  });
  chromium = await launchChromium();
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
});

it("a /#camera=<id> link opened before sign-in opens that camera after sign-in", { timeout: 60_000 }, async () => {
  const auth = (gw as Gateway & { auth: Auth }).auth;
  const page = await chromium.newPage();
  try {
    await page.goto(`${gw.url}/#camera=demo`, { waitUntil: "load" });
    await page.waitForSelector("#username", { timeout: 15_000 });
    expect(new URL(page.url()).origin).toBe(auth.issuer);
    await page.type("#username", "admin");
    await page.type("#password", auth.devUsers!.find((u) => u.username === "admin")!.password);
    await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
    await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(gw.url).origin);
    await page.waitForFunction(() => document.body.classList.contains("is-single"), { timeout: 15_000 });
    expect(new URL(page.url()).hash).toBe("#camera=demo");
    expect(await page.$eval("#view-title", (el) => el.textContent)).toBe("Demo camera");
    // Only the linked camera plays; the other tile waits.
    const open = await page.$$eval("#grid .tile", (els) => els.filter((e) => !(e as HTMLElement).hidden).map((e) => (e as HTMLElement).dataset.camera));
    expect(open).toEqual(["demo"]);
  } finally {
    await page.close();
  }
});
