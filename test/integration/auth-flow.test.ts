/**
 * Sign-in against a real OpenID provider (oidc-provider over HTTPS with a test CA), driven by plain
 * HTTP through the provider's own login pages: code flow with PKCE/state/nonce, rights from a nested
 * claim, sessions, CSRF, logout, refresh, revocation listeners, the provider going down, and the
 * code-flow attacks of issue 3 (replayed code, mismatched state or nonce, open redirect, CSRF, another
 * user's cookie, a forged cookie).
 */
import type { IncomingMessage } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { HttpBrowser, makeTestCa, signIn, startAuthApp, startTestOidc, TEST_USERS, type AuthApp, type TestCa, type TestOidc } from "../peers/oidc.ts";

const cam = (id: string, groups: string[] = []): CameraConfig => ({ id, name: id, url: `rtsp://192.0.2.1/${id}`, transport: "tcp", alwaysOn: false, groups, tlsInsecure: false });
const CAMERAS = [cam("lobby", ["ground"]), cam("dock", ["outdoor"]), cam("vault")];
const TTL = 120;

let ca: TestCa;
let idp: TestOidc;
let app: AuthApp;
let offset = 0;
const logLines: Array<{ msg: string; reason?: string }> = [];
const log = createLogger({ level: "debug", write: (l) => logLines.push(JSON.parse(l) as { msg: string; reason?: string }) });
/** Reasons logged for rejected sign-ins since `from`. */
const rejections = (from: number) => logLines.slice(from).filter((l) => l.msg === "sign-in rejected").map((l) => l.reason ?? "");
const clock = () => Date.now() + offset;
const browsers: HttpBrowser[] = [];
const newBrowser = () => {
  const b = new HttpBrowser(ca.ca);
  browsers.push(b);
  return b;
};
/** A user whose groups the tests change at the provider while they are signed in. */
const dave = { username: "dave", password: "dave-pw-4", sub: "sub-dave", name: "Dave", email: "dave@test.invalid", groups: ["lobby-viewers"] };
const USERS = [...TEST_USERS, dave];
const pw = (u: string) => USERS.find((x) => x.username === u)!.password;
const cookieName = "__Host-gatehouse_session";
const host = "127.0.0.1";

beforeAll(async () => {
  ca = await makeTestCa();
  app = await startAuthApp({
    ca,
    cameras: CAMERAS,
    clock,
    log,
    env: { OIDC_CLIENT_SECRET: "client-secret-for-tests" },
    auth: {
      mode: "oidc",
      clientId: "gatehouse",
      clientSecret: "${OIDC_CLIENT_SECRET}",
      rolesClaim: "realm_access.roles",
      session: { ttlSeconds: TTL },
      rights: [
        { role: "lobby-viewers", cameras: ["lobby"], actions: ["live"] },
        { role: "gatehouse-admins", cameras: ["*"], actions: ["admin"] },
      ],
    },
    provider: async (url) => {
      idp = await startTestOidc({
        ca,
        users: USERS,
        clients: [{ clientId: "gatehouse", clientSecret: "client-secret-for-tests", redirectUris: [`${url}/auth/callback`], postLogoutRedirectUris: [`${url}/auth/signed-out`] }],
      });
      return idp;
    },
  });
});

afterAll(async () => {
  for (const b of browsers) b.close();
  await app?.close();
  await idp?.close();
});

async function signedIn(user: string, returnTo?: string): Promise<HttpBrowser> {
  const b = newBrowser();
  const login = `${app.url}/auth/login${returnTo ? `?return_to=${encodeURIComponent(returnTo)}` : ""}`;
  const res = await signIn(b, login, user, pw(user));
  expect(res.status).toBe(200);
  expect(b.cookie(host, cookieName)).toBeTruthy();
  return b;
}

async function json(b: HttpBrowser, path: string, init: Parameters<HttpBrowser["request"]>[1] = {}) {
  const r = await b.request(`${app.url}${path}`, { ...init, headers: { accept: "application/json", ...(init.headers ?? {}) } });
  return { status: r.status, body: r.body ? (JSON.parse(r.body) as Record<string, unknown>) : undefined, headers: r.headers };
}

describe("sign-in through the provider", () => {
  it("completes the code flow and sets a Secure, HttpOnly, SameSite=Lax session cookie", async () => {
    const b = newBrowser();
    const back = await signIn(b, `${app.url}/auth/login?return_to=${encodeURIComponent("/api/cameras?x=1")}`, "alice", pw("alice"), { stopAt: `${app.url}/auth/callback` });
    const cb = new URL(back.url);
    expect(cb.searchParams.get("code")).toBeTruthy();
    expect(cb.searchParams.get("state")).toBeTruthy();
    const res = await b.request(back.url);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/api/cameras?x=1");
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith(`${cookieName}=`))!;
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; Secure/);
    expect(setCookie).toMatch(/; SameSite=Lax/);
    expect(setCookie).toMatch(/; Path=\//);
    expect(setCookie).not.toMatch(/Domain=/);
    // The token is a JWT we signed (ES256, kid) and short-lived.
    const [h, p] = b.cookie(host, cookieName)!.split(".");
    const header = JSON.parse(Buffer.from(h!, "base64url").toString()) as { alg: string; kid: string };
    const payload = JSON.parse(Buffer.from(p!, "base64url").toString()) as { sub: string; exp: number; iat: number };
    expect(header.alg).toBe("ES256");
    expect(header.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(payload.sub).toBe("sub-alice");
    expect(payload.exp - payload.iat).toBeLessThanOrEqual(TTL);
    // The security headers are on every response.
    expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(res.headers.get("strict-transport-security")).toContain("max-age=");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("referrer-policy")).toBe("same-origin");
  });

  it("shows each user exactly the cameras their claims allow", async () => {
    const alice = await signedIn("alice");
    const bob = await signedIn("bob");
    const carol = await signedIn("carol");
    expect((await json(alice, "/api/cameras")).body).toEqual([{ id: "lobby", name: "lobby" }]);
    expect(((await json(bob, "/api/cameras")).body as unknown as Array<{ id: string }>).map((c) => c.id)).toEqual(["lobby", "dock", "vault"]);
    expect((await json(carol, "/api/cameras")).body).toEqual([]);
    const me = await json(alice, "/auth/me");
    expect(me.body).toMatchObject({ sub: "sub-alice", name: "Alice Viewer", roles: ["lobby-viewers"], via: "session", cameras: [{ id: "lobby", actions: ["live"] }] });
    expect(typeof me.body!.csrfToken).toBe("string");
  });

  it("answers an invisible camera exactly like an unknown one, and a visible but forbidden action with 403", async () => {
    const alice = await signedIn("alice");
    const invisible = await json(alice, "/api/cameras/dock");
    const unknown = await json(alice, "/api/cameras/no-such-camera");
    expect(invisible.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(invisible.body).toEqual(unknown.body);
    expect((await json(alice, "/api/cameras/lobby")).status).toBe(200);
    const csrf = (await json(alice, "/auth/me")).body!.csrfToken as string;
    const talk = await json(alice, "/api/cameras/lobby/talk", { method: "POST", headers: { "x-csrf-token": csrf } });
    expect(talk.status).toBe(403);
    expect((await json(alice, "/api/cameras/dock/talk", { method: "POST", headers: { "x-csrf-token": csrf } })).status).toBe(404);
  });

  it("answers 401 with a Bearer challenge to API calls and redirects browser navigations to sign-in", async () => {
    const b = newBrowser();
    const api = await json(b, "/api/cameras");
    expect(api.status).toBe(401);
    expect(api.headers.get("www-authenticate")).toBe('Bearer realm="gatehouse"');
    const nav = await b.request(`${app.url}/api/cameras?a=1`, { headers: { accept: "text/html", "sec-fetch-mode": "navigate" } });
    expect(nav.status).toBe(303);
    expect(nav.headers.get("location")).toBe(`/auth/login?return_to=${encodeURIComponent("/api/cameras?a=1")}`);
    expect((await b.request(`${app.url}/healthz`)).status).toBe(200);
  });
});

describe("attacks on the code flow", () => {
  it("never redirects off-site after sign-in (open redirect in return_to)", async () => {
    for (const evil of ["https://evil.example/", "//evil.example/x", "/\\evil.example", "/%5Cevil.example", "javascript:alert(1)", "/\t/evil.example"]) {
      const b = newBrowser();
      const back = await signIn(b, `${app.url}/auth/login?return_to=${encodeURIComponent(evil)}`, "alice", pw("alice"), { stopAt: `${app.url}/auth/callback` });
      const res = await b.request(back.url);
      expect(res.status).toBe(303);
      const loc = res.headers.get("location")!;
      expect(new URL(loc, app.url).origin, `${evil} → ${loc}`).toBe(app.url);
      expect(loc.startsWith("//")).toBe(false);
    }
  });

  it("refuses a replayed authorization code", async () => {
    const b = newBrowser();
    const back = await signIn(b, `${app.url}/auth/login`, "alice", pw("alice"), { stopAt: `${app.url}/auth/callback` });
    expect((await b.request(back.url)).status).toBe(303); // first use signs in
    const cookie = b.cookie(host, cookieName);
    // Same browser replays the callback: the sign-in transaction is single-use.
    const again = await b.request(back.url);
    expect(again.status).toBe(400);
    // A fresh transaction whose state the old code is made to match: the provider refuses the used code.
    const attacker = newBrowser();
    const start = await attacker.request(`${app.url}/auth/login`);
    const state = new URL(start.headers.get("location")!).searchParams.get("state")!;
    const replay = new URL(back.url);
    replay.searchParams.set("state", state);
    const mark = logLines.length;
    const res = await attacker.request(replay.href);
    expect(rejections(mark).join()).toMatch(/invalid_grant/);
    expect(res.status).toBe(400);
    expect(res.body).toContain("Sign-in failed");
    expect(attacker.cookie(host, cookieName)).toBeUndefined();
    expect(b.cookie(host, cookieName)).toBe(cookie);
  });

  it("refuses a callback whose state does not match the browser's sign-in", async () => {
    const b = newBrowser();
    const back = await signIn(b, `${app.url}/auth/login`, "alice", pw("alice"), { stopAt: `${app.url}/auth/callback` });
    const forged = new URL(back.url);
    forged.searchParams.set("state", "attacker-chosen-state");
    const mark = logLines.length;
    const res = await b.request(forged.href);
    expect(rejections(mark).join()).toMatch(/state/);
    expect(res.status).toBe(400);
    expect(b.cookie(host, cookieName)).toBeUndefined();
  });

  it("refuses an ID token whose nonce is not the one this sign-in sent", async () => {
    const b = newBrowser();
    const start = await b.request(`${app.url}/auth/login`);
    const authUrl = new URL(start.headers.get("location")!);
    authUrl.searchParams.set("nonce", "attacker-nonce"); // state and PKCE untouched
    const form = await b.follow(authUrl.href);
    const back = await b.submitForm(form, { username: "alice", password: pw("alice") }, { stopAt: `${app.url}/auth/callback` });
    const mark = logLines.length;
    const res = await b.request(back.url);
    expect(rejections(mark).join()).toMatch(/nonce/);
    expect(res.status).toBe(400);
    expect(b.cookie(host, cookieName)).toBeUndefined();
  });

  it("does not sign in another browser that only has the callback URL (login CSRF)", async () => {
    const victim = newBrowser();
    const attacker = newBrowser();
    const back = await signIn(attacker, `${app.url}/auth/login`, "carol", pw("carol"), { stopAt: `${app.url}/auth/callback` });
    const res = await victim.request(back.url);
    expect(res.status).toBe(400);
    expect(victim.cookie(host, cookieName)).toBeUndefined();
  });

  it("rejects state-changing requests without the CSRF token or from another origin", async () => {
    const alice = await signedIn("alice");
    const csrf = (await json(alice, "/auth/me")).body!.csrfToken as string;
    expect((await json(alice, "/whep/lobby", { method: "POST" })).status).toBe(403);
    expect((await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": "x".repeat(43) } })).status).toBe(403);
    expect((await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf, origin: "https://evil.example" } })).status).toBe(403);
    expect((await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf, "sec-fetch-site": "cross-site" } })).status).toBe(403);
    // Another user's token does not fit this session.
    const bob = await signedIn("bob");
    const bobCsrf = (await json(bob, "/auth/me")).body!.csrfToken as string;
    expect((await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": bobCsrf } })).status).toBe(403);
    const ok = await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf, origin: app.url } });
    expect(ok.status).toBe(201);
    // Sign-out is state-changing too: without the token the session survives.
    expect((await json(alice, "/auth/logout", { method: "POST" })).status).toBe(403);
    expect((await json(alice, "/api/cameras")).status).toBe(200);
  });

  it("gives a session cookie the rights of its own subject, wherever it is presented; a forged one nothing", async () => {
    const alice = await signedIn("alice");
    const mallory = newBrowser();
    mallory.setCookie(host, cookieName, alice.cookie(host, cookieName)!);
    const me = await json(mallory, "/auth/me");
    expect(me.body).toMatchObject({ sub: "sub-alice", cameras: [{ id: "lobby" }] });
    // Change the subject inside the token: the signature no longer verifies.
    const [h, p, s] = alice.cookie(host, cookieName)!.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
    const forged = [h, Buffer.from(JSON.stringify({ ...claims, sub: "sub-bob" })).toString("base64url"), s].join(".");
    mallory.setCookie(host, cookieName, forged);
    const r = await json(mallory, "/api/cameras");
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: "unauthorized", reason: "sign-in required" });
    // alg none with the same claims.
    const none = [Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url"), p, ""].join(".");
    mallory.setCookie(host, cookieName, none);
    expect((await json(mallory, "/api/cameras")).status).toBe(401);
  });
});

describe("WebSocket and event-stream upgrades", () => {
  it("authenticates an upgrade from its cookie and refuses one from another origin", async () => {
    const alice = await signedIn("alice");
    const cookie = `${cookieName}=${alice.cookie(host, cookieName)!}`;
    const upgrade = (headers: Record<string, string>) =>
      app.auth.authorizeUpgrade({ headers, method: "GET", url: "/events", socket: { remoteAddress: "127.0.0.1" } } as unknown as IncomingMessage);
    const user = await upgrade({ cookie, origin: app.url });
    expect(user.sub).toBe("sub-alice");
    expect(app.auth.visibleCameras(user).map((c) => c.id)).toEqual(["lobby"]);
    await expect(upgrade({ cookie, origin: "https://evil.example" })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(upgrade({ cookie })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(upgrade({ origin: app.url })).rejects.toMatchObject({ code: "UNAUTHORIZED" });
  });
});

describe("session lifecycle", () => {
  it("signs out: ends the session, tells its watchers, and ends the provider's session (RP-initiated logout)", async () => {
    const alice = await signedIn("alice");
    const me = await json(alice, "/auth/me");
    const csrf = me.body!.csrfToken as string;
    const viewer = (await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf } })).body!.viewer as number;
    const stolen = alice.cookie(host, cookieName)!;
    const out = await alice.request(`${app.url}/auth/logout`, { method: "POST", body: new URLSearchParams({ _csrf: csrf }), headers: { origin: app.url } });
    expect(out.status).toBe(303);
    const endSession = new URL(out.headers.get("location")!);
    expect(endSession.origin).toBe(idp.issuer);
    expect(endSession.searchParams.get("id_token_hint")).toBeTruthy();
    expect(endSession.searchParams.get("post_logout_redirect_uri")).toBe(`${app.url}/auth/signed-out`);
    expect(app.ended).toContainEqual({ viewer, reason: "logout" });
    expect(alice.cookie(host, cookieName)).toBeUndefined();
    // The provider's confirmation page (auto-submitted by script in a browser) then back to us.
    const confirm = await alice.follow(endSession.href);
    const back = await alice.submitForm(confirm, { logout: "yes" }, { stopAt: `${app.url}/auth/signed-out` });
    expect(back.url).toBe(`${app.url}/auth/signed-out`);
    expect((await alice.follow(back.url)).body).toContain("You are signed out");
    // The old cookie is worthless now, and the provider wants a password again.
    const replay = newBrowser();
    replay.setCookie(host, cookieName, stolen);
    expect((await json(replay, "/api/cameras")).status).toBe(401);
    const form = await alice.follow(`${app.url}/auth/login`);
    expect(form.body).toContain('name="password"');
  });

  it("refreshes silently with the provider's refresh token when the session token has expired", async () => {
    const alice = await signedIn("alice");
    const before = alice.cookie(host, cookieName);
    const tokenCalls = idp.hits.get("/token") ?? 0;
    offset += (TTL + 5) * 1000;
    const r = await json(alice, "/api/cameras");
    expect(r.status).toBe(200);
    expect(idp.hits.get("/token")).toBe(tokenCalls + 1);
    expect(alice.cookie(host, cookieName)).not.toBe(before);
    const exp = (JSON.parse(Buffer.from(alice.cookie(host, cookieName)!.split(".")[1]!, "base64url").toString()) as { exp: number }).exp;
    expect(exp * 1000).toBeGreaterThan(clock());
  });

  it("keeps a watched session alive in the background, then ends its streams when it lapses without refresh", async () => {
    const alice = await signedIn("alice");
    const csrf = (await json(alice, "/auth/me")).body!.csrfToken as string;
    const viewer = (await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf } })).body!.viewer as number;
    const tokenCalls = idp.hits.get("/token") ?? 0;
    offset += (TTL * 0.6) * 1000; // past half-life: the sweep refreshes watched sessions
    await app.auth.sweep();
    expect(idp.hits.get("/token")).toBe(tokenCalls + 1);
    expect(app.ended.some((e) => e.viewer === viewer)).toBe(false);
    // Now the provider goes away: the session cannot be refreshed, the stream ends when it lapses.
    await idp.suspend();
    try {
      offset += (TTL * 0.6) * 1000;
      await app.auth.sweep(); // refresh attempt fails, session still live
      expect(app.ended.some((e) => e.viewer === viewer)).toBe(false);
      expect((await json(alice, "/api/cameras")).status).toBe(200);
      offset += (TTL * 0.5) * 1000;
      await app.auth.sweep();
      expect(app.ended).toContainEqual({ viewer, reason: "expired" });
      expect((await json(alice, "/api/cameras")).status).toBe(401);
    } finally {
      await idp.resume();
    }
  });

  it("with the provider down: a clear error page for sign-in, established sessions keep working", async () => {
    const alice = await signedIn("alice");
    await idp.suspend();
    try {
      expect((await json(alice, "/api/cameras")).status).toBe(200);
      offset += 31_000; // past the reachability cache
      const page = await newBrowser().request(`${app.url}/auth/login`, { headers: { accept: "text/html" } });
      expect(page.status).toBe(503);
      expect(page.headers.get("content-type")).toMatch(/text\/html/);
      expect(page.body).toContain("identity provider cannot be reached");
      expect(page.body).not.toMatch(/ECONNREFUSED|stack|at [A-Za-z]+ \(/);
      expect((await json(alice, "/api/cameras")).status).toBe(200);
    } finally {
      await idp.resume();
    }
    expect((await json(alice, "/api/cameras")).status).toBe(200);
  });

  it("ends a stream when the provider withdraws the role it depends on (seen at refresh)", async () => {
    const b = await signedIn("dave");
    const csrf = (await json(b, "/auth/me")).body!.csrfToken as string;
    const viewer = (await json(b, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf } })).body!.viewer as number;
    dave.groups = []; // an administrator removes Dave from the group at the provider
    offset += TTL * 0.6 * 1000;
    await app.auth.sweep();
    expect(app.ended).toContainEqual({ viewer, reason: "forbidden" });
    expect((await json(b, "/api/cameras")).body).toEqual([]);
  });

  it("applies a new rights mapping without restart and ends streams that lost their right", async () => {
    const alice = await signedIn("alice");
    const csrf = (await json(alice, "/auth/me")).body!.csrfToken as string;
    const viewer = (await json(alice, "/whep/lobby", { method: "POST", headers: { "x-csrf-token": csrf } })).body!.viewer as number;
    const { parseConfig } = await import("../../config/load.ts");
    const base = {
      mode: "oidc",
      issuer: idp.issuer,
      clientId: "gatehouse",
      clientSecret: "client-secret-for-tests",
      rolesClaim: "realm_access.roles",
      session: { ttlSeconds: TTL },
    };
    const next = parseConfig({ auth: { ...base, rights: [{ role: "lobby-viewers", cameraGroups: ["outdoor"], actions: ["live"] }] } }).auth;
    const r = app.auth.reload(next);
    expect(r.applied).toContain("auth.rights");
    expect(app.ended).toContainEqual({ viewer, reason: "forbidden" });
    expect((await json(alice, "/api/cameras")).body).toEqual([{ id: "dock", name: "dock" }]);
    app.auth.reload(
      parseConfig({
        auth: {
          ...base,
          rights: [
            { role: "lobby-viewers", cameras: ["lobby"], actions: ["live"] },
            { role: "gatehouse-admins", cameras: ["*"], actions: ["admin"] },
          ],
        },
      }).auth,
    );
    expect((await json(alice, "/api/cameras")).body).toEqual([{ id: "lobby", name: "lobby" }]);
  });
});
