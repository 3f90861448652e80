/**
 * `auth.session.file`: sessions survive a gateway restart (same cookie, same CSRF token, no new
 * sign-in), a session ended on purpose stays ended across the restart, and a damaged file never
 * stops the gateway from starting.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { createLogger, silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "gatehouse-sessions-"));
const browsers: HttpBrowser[] = [];
let gw: Gateway | undefined;
afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
  rmSync(dir, { recursive: true, force: true });
});

/** Starts the gateway on `port` (0: any) with the session file; the dev provider on a fixed port so its issuer stays the same. */
async function start(file: string, port: number, devPort: number, log = silentLogger): Promise<Gateway> {
  const config = parseConfig({ server: { host: "127.0.0.1", port }, auth: { mode: "dev", dev: { port: devPort }, session: { file } }, log: { level: "silent" } }, { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR });
  return startGateway({ config, log });
}

/** A TCP port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const me = async (b: HttpBrowser, url: string) => {
  const r = await b.request(`${url}/auth/me`, { headers: { accept: "application/json" } });
  return { status: r.status, csrf: r.status === 200 ? (JSON.parse(r.body) as { csrfToken: string }).csrfToken : undefined };
};

describe("sessions kept across restarts", () => {
  it("keeps the signed-in browser signed in, with the same CSRF token; a signed-out one stays out", async () => {
    const file = path.join(dir, "sessions.json");
    const devPort = await freePort();
    gw = await start(file, 0, devPort);
    const port = Number(new URL(gw.url).port);
    const password = (u: string) => gw!.auth.devUsers!.find((x) => x.username === u)!.password;
    const stays = new HttpBrowser();
    const leaves = new HttpBrowser();
    browsers.push(stays, leaves);
    expect((await signIn(stays, `${gw.url}/auth/login`, "viewer", password("viewer"))).status).toBe(200);
    expect((await signIn(leaves, `${gw.url}/auth/login`, "admin", password("admin"))).status).toBe(200);
    const before = await me(stays, gw.url);
    // Signing out is written at once (a crash right after must not bring the session back).
    const out = await me(leaves, gw.url);
    const r = await leaves.request(`${gw.url}/auth/logout`, { method: "POST", headers: { accept: "application/json", "x-csrf-token": out.csrf!, origin: gw.url } });
    expect(r.status).toBe(200);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8")).not.toContain('"dev-admin"');

    // Moving the file is not something a running gateway can do: reload says it needs a restart.
    const moved = parseConfig({ auth: { mode: "dev", dev: { port: devPort }, session: { file: path.join(dir, "elsewhere.json") } } }, {});
    expect(gw.auth.reload(moved.auth).needsRestart).toContain("auth.session.file");

    await gw.close("restart");
    gw = await start(file, port, devPort);
    expect(await me(stays, gw.url)).toEqual(before); // same session, same CSRF token: no sign-in page
    expect((await me(leaves, gw.url)).status).toBe(401);
  });

  it("starts with nobody signed in when the file is damaged, and says so", async () => {
    await gw?.close("next test");
    gw = undefined;
    const file = path.join(dir, "damaged.json");
    writeFileSync(file, '{"version":1,"sessions":[{"id":', { mode: 0o600 });
    const lines: string[] = [];
    gw = await start(file, 0, 0, createLogger({ level: "warn", write: (l) => lines.push(l) }));
    expect(lines.some((l) => l.includes("the session file is not usable"))).toBe(true);
    const b = new HttpBrowser();
    browsers.push(b);
    expect((await me(b, gw.url)).status).toBe(401);
  });
});
