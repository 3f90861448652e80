/**
 * Console preferences kept per signed-in user on the gateway (development sign-in, two demo
 * users): read and write with CSRF proof, shape and size limits, one user's never another's,
 * kept across a restart on the same data directory; without sign-in there are none (404).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { HttpBrowser } from "../peers/oidc.ts";
import { signedInDevUser } from "../peers/oidc.ts";

let dataDir: string;
let gw: Gateway | undefined;
const browsers: HttpBrowser[] = [];

const start = (mode: "dev" | "none" = "dev", maxBytes?: number) =>
  startGateway({
    config: parseConfig(
      { server: { host: "127.0.0.1", port: 0 }, auth: { mode }, log: { level: "silent" }, dataDir, ...(maxBytes ? { preferences: { maxBytes } } : {}) },
      {},
    ),
    log: silentLogger,
  });

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "gatehouse-prefs-"));
  gw = await start("dev", 2048);
}, 60_000);
afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
  rmSync(dataDir, { recursive: true, force: true });
});

async function call(b: HttpBrowser, method: string, body?: string, opts: { csrf?: boolean; type?: string } = {}): Promise<{ status: number; json: unknown }> {
  const g = gw!;
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET") {
    headers["content-type"] = opts.type ?? "application/json";
    if (opts.csrf !== false) {
      headers["x-csrf-token"] = (JSON.parse((await b.request(`${g.url}/auth/me`, { headers: { accept: "application/json" } })).body) as { csrfToken: string }).csrfToken;
      headers.origin = g.url;
    }
  }
  const r = await b.request(`${g.url}/api/me/preferences`, { method, headers, ...(body !== undefined ? { body } : {}) });
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = r.body;
  }
  return { status: r.status, json };
}

const doc = { layout: "3x3", favourites: ["demo", "lobby"], group: "", favouritesOnly: true, shortcuts: false, quality: "low" };

describe("per-user console preferences", () => {
  it("start empty, store a document with CSRF proof and read it back", async () => {
    const admin = await signedInDevUser(gw!, "admin", browsers);
    expect(await call(admin, "GET")).toEqual({ status: 200, json: { preferences: null, updatedAt: null } });
    expect((await call(admin, "PUT", JSON.stringify(doc), { csrf: false })).status).toBe(403);
    const put = await call(admin, "PUT", JSON.stringify(doc));
    expect(put.status).toBe(200);
    expect((put.json as { preferences: unknown }).preferences).toEqual(doc);
    const got = await call(admin, "GET");
    expect(got.status).toBe(200);
    expect((got.json as { preferences: unknown }).preferences).toEqual(doc);
    expect(typeof (got.json as { updatedAt: unknown }).updatedAt).toBe("number");
    // A second browser of the same user (another workstation) sees the same.
    const again = await signedInDevUser(gw!, "admin", browsers);
    expect(((await call(again, "GET")).json as { preferences: unknown }).preferences).toEqual(doc);
  });

  it("refuse unknown keys, wrong types, malformed JSON and non-JSON bodies with 400; too large with 413", async () => {
    const viewer = await signedInDevUser(gw!, "viewer", browsers);
    for (const bad of [
      { ...doc, extra: 1 },
      { layout: 3 },
      { favourites: "demo" },
      { favourites: [1] },
      { quality: "ultra" },
      { shortcuts: "yes" },
      { layout: "x".repeat(17) },
      [doc],
    ]) {
      const r = await call(viewer, "PUT", JSON.stringify(bad));
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect((r.json as { error: string }).error).toBe("bad_input");
    }
    expect((await call(viewer, "PUT", "{not json")).status).toBe(400);
    expect((await call(viewer, "PUT", "layout=1x1", { type: "application/x-www-form-urlencoded" })).status).toBe(400);
    const big = await call(viewer, "PUT", JSON.stringify({ favourites: Array.from({ length: 200 }, (_, i) => `camera-${i}`) }));
    expect(big.status).toBe(413);
    expect((big.json as { error: string }).error).toBe("bad_input");
    // Nothing of the refused documents was kept.
    expect((await call(viewer, "GET")).json).toEqual({ preferences: null, updatedAt: null });
  });

  it("keep each user's preferences apart", async () => {
    const admin = await signedInDevUser(gw!, "admin", browsers);
    const viewer = await signedInDevUser(gw!, "viewer", browsers);
    expect((await call(viewer, "PUT", JSON.stringify({ layout: "1x1", favourites: ["door"] }))).status).toBe(200);
    expect(((await call(admin, "GET")).json as { preferences: unknown }).preferences).toEqual(doc);
    expect(((await call(viewer, "GET")).json as { preferences: unknown }).preferences).toEqual({ layout: "1x1", favourites: ["door"] });
  });

  it("survive a restart of the gateway on the same data directory", async () => {
    await gw!.close("restart");
    gw = await start("dev", 2048);
    const admin = await signedInDevUser(gw, "admin", browsers);
    expect(((await call(admin, "GET")).json as { preferences: unknown }).preferences).toEqual(doc);
  }, 60_000);

  it("answer 404 without a sign-in layer, and 401 to a caller not signed in", async () => {
    const { HttpBrowser } = await import("../peers/oidc.ts");
    const stranger = new HttpBrowser();
    browsers.push(stranger);
    expect((await call(stranger, "GET")).status).toBe(401);
    await gw!.close("no sign-in");
    gw = await start("none");
    const anyone = new HttpBrowser();
    browsers.push(anyone);
    const r = await call(anyone, "GET");
    expect(r.status).toBe(404);
    expect((r.json as { error: string }).error).toBe("not_found");
  }, 60_000);
});
