/**
 * The administrators' firewall table and the connection test page in Chromium, on a gateway
 * with HTTPS (self-signed) and TURN on UDP and on the front door (TCP and TLS):
 *  - an administrator of every camera sees one row per rule, with the ports actually bound;
 *    a viewer gets a plain refusal (and the API a 403);
 *  - any signed-in user runs the connection test: direct UDP and the relay over UDP, TCP and
 *    TLS are each tried with real WHEP live views (relay-only, one TURN URI at a time) and all
 *    work on loopback; the page says nothing needs asking;
 *  - the same test from a browser that may not use UDP for WebRTC (Chromium's
 *    `disable_non_proxied_udp` policy: no UDP candidates, no TURN over UDP, TCP only, as
 *    behind a firewall that drops UDP): direct and relay-over-UDP are blocked, TCP and TLS on
 *    the front-door port work, and the advice names the UDP ports to ask the network
 *    administrator for, and the host.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import type { Config } from "../../config/schema.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, type Chromium } from "../peers/chromium.ts";

let gw: Gateway;
let chromium: Chromium;
let dir: string;
let config: Config;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "gh-ports-e2e-"));
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  writeFileSync(path.join(dir, "cert.pem"), pems.cert);
  writeFileSync(path.join(dir, "key.pem"), pems.private);
  config = parseConfig(
    {
      server: { host: "127.0.0.1", port: 0, tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } },
      auth: { mode: "dev" },
      demo: { enabled: true },
      log: { level: "warn" },
      turn: { enabled: true, secret: "e2e-turn-shared-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { address: "127.0.0.1", portRange: [0, 0] } },
    },
    {},
  );
  gw = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium({ args: ["--ignore-certificate-errors"] });
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
  rmSync(dir, { recursive: true, force: true });
});

/** Sign in as `user` in a browser context of its own (no other user's cookies), landing on `at`. */
async function signIn(user: string, at = "/ports.html", browser: Chromium = chromium): Promise<Page> {
  const context = await browser.browser.createBrowserContext();
  const page = await context.newPage();
  await page.goto(`${gw.url}/auth/login?return_to=${encodeURIComponent(at)}`, { waitUntil: "load" });
  await page.waitForSelector("#username", { timeout: 15_000 });
  await page.type("#username", user);
  await page.type("#password", gw.auth.devUsers!.find((u) => u.username === user)!.password);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(gw.url).origin);
  return page;
}

describe("firewall ports page", () => {
  it("shows an administrator every rule with the bound ports; a viewer is refused in plain words", async () => {
    const page = await signIn("admin");
    await page.waitForSelector("#ports:not([hidden]) tbody tr", { timeout: 15_000 });
    const rows = await page.$$eval("#ports tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")));
    const byKey = new Map(rows.map((r) => [r[6], r]));
    expect(byKey.get("server.port")).toEqual(["browsers", "gateway 127.0.0.1", String(gw.httpPort), "TCP (TLS)", "inbound", expect.stringMatching(/HTTPS.*TURN over TLS on the same port/), "server.port"]);
    expect(byKey.get("turn.udp[0]")?.slice(0, 5)).toEqual(["browsers", "gateway 127.0.0.1", String(gw.turn!.udp[0]!.port), "UDP", "inbound"]);
    expect(byKey.get("media.icePortRange")?.[4]).toBe("both ways");
    expect(byKey.get("demo.rtspPort")?.[4]).toBe("local (no opening)");
    expect(await page.$eval("#csv", (a) => (a as HTMLAnchorElement).hidden)).toBe(false);
    // The account menu offers the page to an administrator.
    await page.goto(`${gw.url}/`, { waitUntil: "load" });
    await page.waitForFunction(() => !document.querySelector<HTMLElement>("#ports-link")!.hidden, { timeout: 15_000 });
    await page.close();

    const viewer = await signIn("viewer");
    await viewer.waitForFunction(() => /Only administrators/.test(document.querySelector("#notice")?.textContent ?? ""), { timeout: 15_000 });
    expect(await viewer.$eval("#ports", (t) => (t as HTMLElement).hidden)).toBe(true);
    const status = await viewer.evaluate(async () => (await fetch("api/admin/ports")).status);
    expect(status).toBe(403);
    await viewer.goto(`${gw.url}/`, { waitUntil: "load" });
    await viewer.waitForFunction(() => !document.querySelector<HTMLElement>("#user")!.hidden, { timeout: 15_000 });
    expect(await viewer.$eval("#ports-link", (a) => (a as HTMLElement).hidden)).toBe(true);
    await viewer.close();
  }, 90_000);
});

describe("connection test page", () => {
  it("tries direct UDP and the relay over UDP, TCP and TLS one at a time; all work on loopback", async () => {
    const page = await signIn("viewer", "/connectivity.html");
    await page.waitForFunction(() => (window as unknown as { gatehouseConnectivity: { done: boolean } }).gatehouseConnectivity.done, { timeout: 80_000 });
    const results = await page.$$eval("#paths tbody tr", (trs) => trs.map((tr) => ({ path: (tr as HTMLElement).dataset.path, state: (tr as HTMLElement).dataset.state, detail: tr.querySelectorAll("td")[2]?.textContent ?? "" })));
    expect(results.map((r) => [r.path, r.state])).toEqual([
      ["direct", "works"],
      ["turn-udp", "works"],
      ["turn-tcp", "works"],
      ["turn-tls", "works"],
    ]);
    // Each relay check really went through the relay, over its own transport.
    expect(results[0]!.detail).toMatch(/connected \(direct\)/);
    expect(results[1]!.detail).toMatch(/^turn:.*through the relay over UDP/);
    expect(results[2]!.detail).toMatch(/^turn:.*through the relay over TCP/);
    expect(results[3]!.detail).toMatch(/^turns:.*through the relay over TLS/);
    expect(await page.$eval("#advice", (p) => p.textContent)).toMatch(/Video reaches you directly.*Nothing to ask/);
    // Every test view was ended.
    await expect.poll(() => gw.sfu.stats().viewers.length, { timeout: 15_000 }).toBe(0);
    await page.close();
  }, 120_000);
});

describe("connection test page, UDP blocked", () => {
  it("says which paths are blocked and asks for the UDP ports in plain words; TCP and TLS on the front-door port work", async () => {
    // Chromium's own switch: WebRTC may use UDP only through a proxy that carries it, and there is none.
    await using noUdp = await launchChromium({ args: ["--ignore-certificate-errors", "--webrtc-ip-handling-policy=disable_non_proxied_udp"] });
    const page = await signIn("viewer", "/connectivity.html", noUdp);
    await page.waitForFunction(() => (window as unknown as { gatehouseConnectivity: { done: boolean } }).gatehouseConnectivity.done, { timeout: 100_000 });
    const results = await page.$$eval("#paths tbody tr", (trs) => trs.map((tr) => ({ path: (tr as HTMLElement).dataset.path, state: (tr as HTMLElement).dataset.state, detail: tr.querySelectorAll("td")[2]?.textContent ?? "" })));
    expect(results.map((r) => [r.path, r.state])).toEqual([
      ["direct", "blocked"],
      ["turn-udp", "blocked"],
      ["turn-tcp", "works"],
      ["turn-tls", "works"],
    ]);
    expect(results[2]!.detail).toMatch(new RegExp(`^turn:127\\.0\\.0\\.1:${gw.httpPort}.*through the relay over TCP`));
    expect(results[3]!.detail).toMatch(new RegExp(`^turns:127\\.0\\.0\\.1:${gw.httpPort}.*through the relay over TLS`));
    const [first, last] = config.media.icePortRange;
    const advice = await page.$eval("#advice", (p) => p.textContent ?? "");
    expect(advice).toBe(
      `UDP is blocked on this network: video works through the relay over TLS on TCP port ${gw.httpPort}, with more delay and less smoothness. ` +
        `Ask your network administrator to allow UDP ports ${first}–${last} and UDP port ${gw.turn!.udp[0]!.port} from this computer to 127.0.0.1.`,
    );
    await expect.poll(() => gw.sfu.stats().viewers.length, { timeout: 15_000 }).toBe(0);
    await page.close();
  }, 150_000);
});
