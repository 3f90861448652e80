/**
 * The typed events sign-in publishes (`auth.observer`) on the whole gateway: a sign-in, a failed
 * sign-in, and the end of a session with its reason — what the TURN relay and an audit log act on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { SessionEndedEvent, SignedInEvent, SignInFailedEvent } from "../../gateway/auth/index.ts";
import { sessionRef } from "../../gateway/auth/index.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { HttpBrowser, signedInDevUser } from "../peers/oidc.ts";

let gw: Gateway;
const browsers: HttpBrowser[] = [];
const signedInEvents: SignedInEvent[] = [];
const failed: SignInFailedEvent[] = [];
const ended: SessionEndedEvent[] = [];

beforeAll(async () => {
  gw = await startGateway({ config: parseConfig({ server: { host: "127.0.0.1", port: 0 }, auth: { mode: "dev" }, log: { level: "silent" } }, { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR }), log: silentLogger });
  gw.auth.observer.on("signedIn", (e) => signedInEvents.push(e));
  gw.auth.observer.on("signInFailed", (e) => failed.push(e));
  gw.auth.observer.on("sessionEnded", (e) => ended.push(e));
  // A listener that throws reaches neither sign-in nor the other listeners.
  gw.auth.observer.on("sessionEnded", () => {
    throw new Error("a broken audit sink");
  });
}, 60_000);
afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
});

const signedIn = (user: "admin" | "viewer"): Promise<HttpBrowser> => signedInDevUser(gw, user, browsers);

const me = async (b: HttpBrowser) => (await b.request(`${gw.url}/auth/me`, { headers: { accept: "application/json" } })).status;

describe("auth events", () => {
  it("tells who signed in, and ends each session exactly once with a typed reason (sign-out, revocation)", async () => {
    const viewer = await signedIn("viewer");
    const e = signedInEvents.at(-1)!;
    expect(e).toMatchObject({ sub: "dev-viewer", source: "127.0.0.1" });
    expect(e.ref).toBe(sessionRef(e.sessionId));
    expect(gw.auth.listSessions().map((s) => s.ref)).toContain(e.ref);

    // Sign-out through the page's form (CSRF token from /auth/me).
    const csrf = (JSON.parse((await viewer.request(`${gw.url}/auth/me`, { headers: { accept: "application/json" } })).body) as { csrfToken: string }).csrfToken;
    const out = await viewer.request(`${gw.url}/auth/logout`, { method: "POST", headers: { accept: "application/json", "x-csrf-token": csrf, origin: gw.url } });
    expect(out.status).toBe(200);
    expect(ended.filter((x) => x.sessionId === e.sessionId)).toEqual([{ sessionId: e.sessionId, ref: e.ref, sub: "dev-viewer", reason: "logout", at: expect.any(Number) }]);
    expect(await me(viewer)).toBe(401);

    // An administrator ends every session of a user: one event per session, reason "revoked".
    await signedIn("viewer");
    await signedIn("viewer");
    const two = signedInEvents.slice(-2).map((x) => x.sessionId);
    expect(gw.auth.revokeUser("dev-viewer")).toBe(2);
    expect(ended.filter((x) => two.includes(x.sessionId)).map((x) => x.reason)).toEqual(["revoked", "revoked"]);
    expect(gw.auth.revokeUser("dev-viewer")).toBe(0);
    expect(ended.filter((x) => two.includes(x.sessionId))).toHaveLength(2);
  });

  it("reports a sign-in callback the gateway never started, without a session", async () => {
    const before = signedInEvents.length;
    const b = new HttpBrowser();
    browsers.push(b);
    const r = await b.request(`${gw.url}/auth/callback?code=forged&state=forged`, { headers: { accept: "text/html" } });
    expect(r.status).toBe(400);
    expect(failed.at(-1)).toMatchObject({ reason: "unknown_attempt", source: "127.0.0.1" });
    expect(signedInEvents.length).toBe(before);
  });
});
