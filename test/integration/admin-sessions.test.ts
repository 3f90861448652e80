/**
 * Administrators' session routes on the whole gateway (development sign-in, two demo users):
 * listing who is signed in without revealing session secrets, ending one session or all of a
 * user's, CSRF and the global admin right required; enabling a disabled camera (its tile's
 * Enable button) needs the admin right on that camera and CSRF.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { HttpBrowser} from "../peers/oidc.ts";
import { signedInDevUser } from "../peers/oidc.ts";

let gw: Gateway;
const browsers: HttpBrowser[] = [];

beforeAll(async () => {
  gw = await startGateway({ config: parseConfig({ server: { host: "127.0.0.1", port: 0 }, auth: { mode: "dev" }, log: { level: "silent" } }, { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR }), log: silentLogger });
}, 60_000);
afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
});

const signedIn = (user: "admin" | "viewer"): Promise<HttpBrowser> => signedInDevUser(gw, user, browsers);

async function call(b: HttpBrowser, method: string, path: string, csrf = true): Promise<{ status: number; body: string }> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (csrf && method !== "GET") {
    headers["x-csrf-token"] = (JSON.parse((await b.request(`${gw.url}/auth/me`, { headers })).body) as { csrfToken: string }).csrfToken;
    headers.origin = gw.url;
  }
  const r = await b.request(`${gw.url}${path}`, { method, headers });
  return { status: r.status, body: r.body };
}

/** The gateway session id inside a browser's (signed) session cookie. */
const sidOf = (b: HttpBrowser) => decodeJwt(b.cookie("127.0.0.1", "gatehouse_session")!).sid as string;

describe("administrators' session routes", () => {
  it("list sessions by a reference that is not the session's secret, for administrators only", async () => {
    const admin = await signedIn("admin");
    const viewer = await signedIn("viewer");
    expect((await call(viewer, "GET", "/api/admin/sessions")).status).toBe(403);
    const r = await call(admin, "GET", "/api/admin/sessions");
    expect(r.status).toBe(200);
    const list = (JSON.parse(r.body) as { sessions: Array<{ ref: string; sub: string; live: boolean }> }).sessions;
    expect(list.map((s) => s.sub)).toEqual(expect.arrayContaining(["dev-admin", "dev-viewer"]));
    expect(list.every((s) => s.live && /^[A-Za-z0-9_-]{16}$/.test(s.ref))).toBe(true);
    for (const b of [admin, viewer]) expect(r.body).not.toContain(sidOf(b));
  });

  it("end one session (CSRF required), then every session of a user", async () => {
    const admin = await signedIn("admin");
    const sessions = async () => (JSON.parse((await call(admin, "GET", "/api/admin/sessions")).body) as { sessions: Array<{ ref: string; sub: string }> }).sessions;
    const known = new Set((await sessions()).map((s) => s.ref));
    const v1 = await signedIn("viewer");
    const ref = (await sessions()).find((s) => !known.has(s.ref))!.ref;
    const v2 = await signedIn("viewer");
    const me = async (b: HttpBrowser) => (await b.request(`${gw.url}/auth/me`, { headers: { accept: "application/json" } })).status;

    expect((await call(admin, "DELETE", `/api/admin/sessions/${ref}`, false)).status).toBe(403);
    expect((await call(admin, "DELETE", `/api/admin/sessions/${ref}`)).status).toBe(204);
    expect([await me(v1), await me(v2)]).toEqual([401, 200]);
    expect((await call(admin, "DELETE", `/api/admin/sessions/${ref}`)).status).toBe(404);
    expect((await call(v2, "DELETE", `/api/admin/users/dev-admin/sessions`)).status).toBe(403);

    const viewers = (await sessions()).filter((s) => s.sub === "dev-viewer").length;
    expect(viewers).toBeGreaterThanOrEqual(1);
    const r = await call(admin, "DELETE", "/api/admin/users/dev-viewer/sessions");
    expect([r.status, JSON.parse(r.body)]).toEqual([200, { ended: viewers }]);
    expect(await me(v2)).toBe(401);
    expect((await sessions()).some((s) => s.sub === "dev-viewer")).toBe(false);
    expect(await me(admin)).toBe(200);
  });
});

describe("enabling a disabled camera from its tile", () => {
  it("needs the admin right on the camera and CSRF; 409 when not disabled, 404 for an unknown camera", async () => {
    const admin = await signedIn("admin");
    const viewer = await signedIn("viewer");
    expect((await call(admin, "POST", "/api/cameras/demo/enable")).status).toBe(409);
    // The supervisor disables the demo camera after more failures than the window allows.
    for (let i = 0; i < 1000 && gw.supervisor.status("camera:demo")!.state !== "disabled"; i++) gw.supervisor.failed("camera:demo", "test: the session was lost");
    expect(gw.cameras.view("demo")!.status).toBe("disabled");
    expect((await call(viewer, "POST", "/api/cameras/demo/enable")).status).toBe(403);
    expect((await call(admin, "POST", "/api/cameras/demo/enable", false)).status).toBe(403);
    expect((await call(admin, "POST", "/api/cameras/nope/enable")).status).toBe(404);
    expect(gw.cameras.view("demo")!.status).toBe("disabled");
    const ok = await call(admin, "POST", "/api/cameras/demo/enable");
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ id: "camera:demo", state: "ok" });
    expect(gw.cameras.view("demo")!.status).not.toBe("disabled");
    expect(gw.supervisor.recent().at(-1)).toMatchObject({ component: "camera:demo", type: "enabled", by: "dev-admin" });
  });
});
