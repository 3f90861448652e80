/**
 * OpenID Connect Back-Channel Logout 1.0 against a real provider (oidc-provider, HTTPS with a test
 * CA): signing out at the provider ends the user's gateway session and the streams watching it,
 * through the provider's own logout token. Forged tokens, signed with the provider's real key and
 * each differing from a valid one in one property, are refused with 400 for that reason, and end
 * nothing.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { BACKCHANNEL_LOGOUT_EVENT } from "../../gateway/auth/backchannel.ts";
import { HttpBrowser, makeTestCa, signIn, startAuthApp, startTestOidc, TEST_USERS, type AuthApp, type TestCa, type TestOidc } from "../peers/oidc.ts";

const cam = (id: string): CameraConfig => ({ id, name: id, url: `rtsp://192.0.2.1/${id}`, transport: "tcp", alwaysOn: false, groups: [], tlsInsecure: false });
const pw = (u: string) => TEST_USERS.find((x) => x.username === u)!.password;

let ca: TestCa;
let idp: TestOidc;
let app: AuthApp;
const browsers: HttpBrowser[] = [];
const logLines: Array<{ msg: string; reason?: string; sessions?: number }> = [];
const log = createLogger({ level: "debug", write: (l) => logLines.push(JSON.parse(l) as { msg: string; reason?: string }) });
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  ca = await makeTestCa();
  app = await startAuthApp({
    cameras: [cam("lobby")],
    log,
    env: { OIDC_CLIENT_SECRET: "s3" },
    auth: {
      mode: "oidc",
      clientId: "gatehouse",
      clientSecret: "${OIDC_CLIENT_SECRET}",
      rolesClaim: "realm_access.roles",
      rights: [
        { role: "lobby-viewers", cameras: ["lobby"], actions: ["live"] },
        { role: "gatehouse-admins", cameras: ["*"], actions: ["admin", "live"] },
      ],
      rateLimit: { maxFailuresPerSource: 1000 },
    },
    provider: async (url) => {
      idp = await startTestOidc({
        ca,
        log,
        clients: [
          {
            clientId: "gatehouse",
            clientSecret: "s3",
            redirectUris: [`${url}/auth/callback`],
            postLogoutRedirectUris: [`${url}/`],
            backchannelLogoutUri: `${url}/auth/backchannel-logout`,
          },
        ],
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

async function signedIn(user: string): Promise<HttpBrowser> {
  const b = new HttpBrowser(ca.ca);
  browsers.push(b);
  expect((await signIn(b, `${app.url}/auth/login`, user, pw(user))).status).toBe(200);
  return b;
}

async function me(b: HttpBrowser): Promise<number> {
  return (await b.request(`${app.url}/auth/me`, { headers: { accept: "application/json" } })).status;
}

/** A viewer of the lobby camera that watches `b`'s session; resolves with its id. */
async function watching(b: HttpBrowser): Promise<number> {
  const csrf = (JSON.parse((await b.request(`${app.url}/auth/me`, { headers: { accept: "application/json" } })).body) as { csrfToken: string }).csrfToken;
  const r = await b.request(`${app.url}/whep/lobby`, { method: "POST", headers: { accept: "application/json", "x-csrf-token": csrf, origin: app.url } });
  expect(r.status).toBe(201);
  return (JSON.parse(r.body) as { viewer: number }).viewer;
}

function logoutClaims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const c: Record<string, unknown> = {
    iss: idp.issuer,
    aud: "gatehouse",
    sub: "sub-bob",
    iat: now(),
    exp: now() + 120,
    jti: randomBytes(12).toString("hex"),
    events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
    ...over,
  };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}
function forge(over: Record<string, unknown> = {}, opts: { key?: KeyObject | Uint8Array; alg?: string } = {}): Promise<string> {
  const key = opts.key ?? createPrivateKey({ key: idp.signingJwk, format: "jwk" });
  return new SignJWT(logoutClaims(over)).setProtectedHeader({ alg: opts.alg ?? "RS256", kid: idp.signingJwk.kid! }).sign(key);
}
async function post(body: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`${app.url}/auth/backchannel-logout`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body });
  return { status: r.status, body: await r.text() };
}

describe("back-channel logout", () => {
  it("signing out at the provider ends the gateway session and its streams at once", async () => {
    const alice = await signedIn("alice");
    const other = await signedIn("alice"); // another browser of the same user: its own provider session
    const viewer = await watching(alice);
    // Sign out at the provider itself (not through the gateway): its logout page, confirmed.
    const page = await alice.follow(`${idp.issuer}/session/end`);
    expect(page.body).toContain("op.logoutForm");
    await alice.submitForm(page, { logout: "yes" });
    expect(await app.waitEnded(viewer)).toBe("logged_out_at_provider");
    expect(await me(alice)).toBe(401);
    // The other browser's provider session was not ended: its gateway session lives on.
    expect(await me(other)).toBe(200);
    expect(logLines.some((l) => l.msg === "back-channel logout from the provider" && l.sessions === 1)).toBe(true);
  });

  it("refuses forged or malformed logout tokens, each for its own reason, and ends nothing", async () => {
    const bob = await signedIn("bob");
    const cases: Array<[string, string, RegExp]> = [
      ["no token", "", /./],
      ["not a JWT", "logout_token=abc", /not a compact JWS/],
      ["another audience", `logout_token=${await forge({ aud: "someone-else" })}`, /"aud" claim/],
      ["another issuer", `logout_token=${await forge({ iss: "https://evil.example" })}`, /"iss" claim/],
      ["no event", `logout_token=${await forge({ events: undefined })}`, /not a back-channel logout event/],
      ["another event", `logout_token=${await forge({ events: { "http://schemas.openid.net/event/other": {} } })}`, /not a back-channel logout event/],
      ["an ID token (nonce)", `logout_token=${await forge({ nonce: "n-1" })}`, /nonce/],
      ["neither sub nor sid", `logout_token=${await forge({ sub: undefined })}`, /neither sub nor sid/],
      ["no jti", `logout_token=${await forge({ jti: undefined })}`, /no jti/],
      ["no iat", `logout_token=${await forge({ iat: undefined })}`, /no iat/],
      ["too old", `logout_token=${await forge({ iat: now() - 3600, exp: undefined })}`, /too old/],
      ["expired", `logout_token=${await forge({ exp: now() - 120 })}`, /"exp" claim timestamp check failed/],
      ["signed with another key", `logout_token=${await forge({}, { key: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey })}`, /signature/],
      ["HS256 with the public key as secret", `logout_token=${await forge({}, { key: Buffer.from(JSON.stringify(idp.signingJwk)), alg: "HS256" })}`, /algorithm HS256 not allowed/],
    ];
    for (const [name, body, reason] of cases) {
      const before = logLines.length;
      const r = await post(body);
      expect(r.status, name).toBe(400);
      expect(JSON.parse(r.body), name).toMatchObject({ error: "invalid_request" });
      if (body) expect(logLines.slice(before).find((l) => l.msg === "logout token refused")?.reason, name).toMatch(reason);
    }
    expect(await me(bob)).toBe(200);

    // A valid token for bob's subject (no sid: all his sessions) ends them; replayed, it is refused.
    const token = await forge();
    expect((await post(`logout_token=${token}`)).status).toBe(200);
    expect(await me(bob)).toBe(401);
    const before = logLines.length;
    expect((await post(`logout_token=${token}`)).status).toBe(400);
    expect(logLines.slice(before).find((l) => l.msg === "logout token refused")?.reason).toMatch(/replayed/);
  });
});
