/**
 * A signed-in screen keeps playing through a gateway restart when sessions are kept in
 * `auth.session.file`: Chromium signs in through the development provider, plays the demo
 * camera, the gateway stops and starts again on the same address (the page says "The gateway is
 * restarting" meanwhile), and the same page goes on decoding fresh frames on its own: no sign-in
 * page, no reload, and the notice gone.
 */
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cameraId } from "../../config/ids.ts";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, waitForDecodedFrames, waitForNewFrames, type Chromium } from "../peers/chromium.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "gatehouse-restart-"));
let gw: Gateway | undefined;
let chromium: Chromium;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function start(port: number, devPort: number): Promise<Gateway> {
  const config = parseConfig({
    server: { host: "127.0.0.1", port },
    auth: { mode: "dev", dev: { port: devPort }, session: { file: path.join(dir, "sessions.json") } },
    demo: { enabled: true },
    log: { level: "warn" },
  });
  return startGateway({ config, log: silentLogger });
}

beforeAll(async () => {
  chromium = await launchChromium();
}, 60_000);
afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
  rmSync(dir, { recursive: true, force: true });
});

async function signInAt(page: Page, g: Gateway, user: string): Promise<void> {
  await page.waitForSelector("#username", { timeout: 15_000 });
  await page.type("#username", user);
  await page.type("#password", g.auth.devUsers!.find((u) => u.username === user)!.password);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(g.url).origin);
}

describe("gateway restart with auth.session.file", () => {
  it("the signed-in page resumes video by itself, without signing in again", async () => {
    const devPort = await freePort();
    gw = await start(0, devPort);
    const port = Number(new URL(gw.url).port);
    const page = await chromium.newPage();
    await page.goto(`${gw.url}/`, { waitUntil: "load" });
    await signInAt(page, gw, "viewer");
    await waitForDecodedFrames(page, 10, 20_000);

    // While it is away the page says so in plain words (the gateway's last event on its stream);
    // watched from before the close, which a loaded machine may stretch past the page's next refresh.
    const told = page.waitForFunction(() => !document.querySelector<HTMLElement>("#notice")!.hidden && /gateway is restarting/i.test(document.querySelector("#notice")!.textContent ?? ""), {
      timeout: 30_000,
      polling: 25,
    });
    told.catch(() => {}); // awaited below
    await gw.close("upgrade");
    await told;
    gw = await start(port, devPort);
    const restarted = gw;
    // The page's own retry reaches the new process with its cookie: a viewer appears there...
    const source = restarted.sfu.source(cameraId("demo"));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the page did not come back to the restarted gateway")), 30_000);
      const done = (n: number) => {
        if (n === 0) return;
        clearTimeout(timer);
        resolve();
      };
      source.on("viewers", done);
      done(source.stats().viewers);
    });
    // ...and fresh frames decode on the same page, which never left the gateway.
    await waitForNewFrames(page, 25, 20_000);
    expect(new URL(page.url()).origin).toBe(new URL(restarted.url).origin);
    // The notice goes once the gateway answers again.
    await page.waitForFunction(() => document.querySelector<HTMLElement>("#notice")!.hidden, { timeout: 15_000 });
    await page.close();
  }, 90_000);
});
