/**
 * `Authorization: Bearer` with the provider's JWT access tokens, against a real provider (HTTPS,
 * test CA). One token obtained through the provider's own code flow proves interoperability; the
 * attack tokens are signed with the provider's real key (or a deliberate wrong one) and differ from
 * a valid token in exactly one property, so each rejection is due to that property alone.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import * as oidc from "openid-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { providerFetch } from "../../gateway/auth/fetch.ts";
import { HttpBrowser, makeTestCa, startAuthApp, startTestOidc, TEST_USERS, type AuthApp, type TestCa, type TestOidc } from "../peers/oidc.ts";

const cam = (id: string, groups: string[] = []): CameraConfig => ({ id, name: id, url: `rtsp://192.0.2.1/${id}`, transport: "tcp", alwaysOn: false, groups, tlsInsecure: false });
const CAMERAS = [cam("lobby"), cam("dock")];
const APP_REDIRECT = "https://mobile.test/cb";
const RIGHTS = [
  { role: "lobby-viewers", cameras: ["lobby"], actions: ["live"] },
  { role: "gatehouse-admins", cameras: ["*"], actions: ["admin"] },
];

let ca: TestCa;
let idp: TestOidc;
let app: AuthApp;
let realToken: string;
let realIdToken: string;
const logLines: Array<{ msg: string; reason?: string }> = [];
const log = createLogger({ level: "debug", write: (l) => logLines.push(JSON.parse(l) as { msg: string; reason?: string }) });
const browser = () => new HttpBrowser(ca.ca);
const now = () => Math.floor(Date.now() / 1000);

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const c: Record<string, unknown> = { iss: idp.issuer, aud: idp.apiAudience, sub: "sub-alice", realm_access: { roles: ["lobby-viewers"] }, iat: now(), exp: now() + 300, ...over };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}
function forge(over: Record<string, unknown> = {}, opts: { kid?: string; alg?: string; key?: KeyObject | Uint8Array } = {}): Promise<string> {
  const key = opts.key ?? createPrivateKey({ key: idp.signingJwk, format: "jwk" });
  return new SignJWT(claims(over)).setProtectedHeader({ alg: opts.alg ?? "RS256", kid: opts.kid ?? idp.signingJwk.kid! }).sign(key);
}

async function call(token: string, path = "/api/cameras", init: { method?: string; target?: AuthApp } = {}) {
  const b = browser();
  try {
    const r = await b.request(`${(init.target ?? app).url}${path}`, { method: init.method ?? "GET", headers: { authorization: `Bearer ${token}`, accept: "application/json" } });
    return { status: r.status, body: r.body, challenge: r.headers.get("www-authenticate"), retryAfter: r.headers.get("retry-after") };
  } finally {
    b.close();
  }
}

beforeAll(async () => {
  ca = await makeTestCa();
  app = await startAuthApp({
    ca,
    cameras: CAMERAS,
    log,
    env: { OIDC_CLIENT_SECRET: "s3" },
    auth: {
      mode: "oidc",
      clientSecret: "${OIDC_CLIENT_SECRET}",
      rolesClaim: "realm_access.roles",
      rights: RIGHTS,
      bearer: { audience: "https://gatehouse.test/api", jwksMinRefetchSeconds: 60 },
      rateLimit: { maxFailuresPerSource: 1000 },
    },
    provider: async (url) => {
      idp = await startTestOidc({
        ca,
        clients: [
          { clientId: "gatehouse", clientSecret: "s3", redirectUris: [`${url}/auth/callback`], postLogoutRedirectUris: [`${url}/`] },
          // A mobile app: public client, PKCE, asks for an access token for the gateway's API.
          { clientId: "mobile-app", redirectUris: [APP_REDIRECT], postLogoutRedirectUris: [] },
        ],
      });
      return idp;
    },
  });

  // The mobile app's own code flow at the provider, with a resource indicator (RFC 8707).
  const f = providerFetch({ ca: ca.ca });
  const config = await oidc.discovery(new URL(idp.issuer), "mobile-app", {}, oidc.None(), { [oidc.customFetch]: f as oidc.CustomFetch });
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: APP_REDIRECT,
    scope: "openid",
    resource: idp.apiAudience,
    state,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
  });
  const b = browser();
  const form = await b.follow(url.href);
  const back = await b.submitForm(form, { username: "alice", password: TEST_USERS[0]!.password }, { stopAt: APP_REDIRECT });
  const tokens = await oidc.authorizationCodeGrant(config, new URL(back.url), { pkceCodeVerifier: verifier, expectedState: state }, { resource: idp.apiAudience });
  realToken = tokens.access_token;
  realIdToken = tokens.id_token!;
  b.close();
  f.close();
});

afterAll(async () => {
  await app?.close();
  await idp?.close();
});

describe("bearer tokens from the provider", () => {
  it("accepts the provider's JWT access token and applies the rights of its subject", async () => {
    expect(realToken.split(".")).toHaveLength(3);
    const r = await call(realToken);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual([{ id: "lobby", name: "lobby" }]);
    const me = JSON.parse((await call(realToken, "/auth/me")).body) as Record<string, unknown>;
    expect(me).toMatchObject({ sub: "sub-alice", via: "bearer", csrfToken: null });
    // A bearer caller carries no ambient credential: no CSRF token needed.
    expect((await call(realToken, "/whep/lobby", { method: "POST" })).status).toBe(201);
    expect((await call(realToken, "/api/cameras/dock")).status).toBe(404);
  });

  it("accepts a token forged with the provider's real key (control for the attacks below)", async () => {
    expect((await call(await forge())).status).toBe(200);
    const admin = await call(await forge({ sub: "sub-bob", realm_access: { roles: ["gatehouse-admins"] } }));
    expect(JSON.parse(admin.body)).toHaveLength(2);
  });

  // [attack, token, why it must be refused (as logged, never sent)]
  const attacks: Array<[string, () => string | Promise<string>, RegExp]> = [
    ["alg none (unsigned)", () => [b64({ alg: "none", typ: "JWT", kid: idp.signingJwk.kid }), b64(claims()), ""].join("."), /not a compact JWS/],
    ["alg none (with a signature part)", () => [b64({ alg: "none", typ: "JWT", kid: idp.signingJwk.kid }), b64(claims()), "AAAA"].join("."), /algorithm none not allowed/],
    [
      "HS256 signed with the provider's public key as the secret",
      () =>
        forge({}, {
          alg: "HS256",
          key: Buffer.from(createPublicKey(createPrivateKey({ key: idp.signingJwk, format: "jwk" })).export({ type: "spki", format: "pem" }) as string),
        }),
      /algorithm HS256 not allowed/,
    ],
    ["a wrong signature (another key, same kid)", () => forge({}, { key: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey }), /signature verification failed/],
    [
      "a tampered payload",
      async () => {
        const [h, , s] = (await forge()).split(".");
        return [h, b64(claims({ realm_access: { roles: ["gatehouse-admins"] } })), s].join(".");
      },
      /signature verification failed/,
    ],
    ["expired", () => forge({ iat: now() - 900, exp: now() - 120 }), /"exp" claim timestamp check failed/],
    ["not yet valid", () => forge({ nbf: now() + 120 }), /"nbf" claim timestamp check failed/],
    ["a wrong issuer", () => forge({ iss: "https://evil.example" }), /unexpected "iss" claim value/],
    ["a wrong audience", () => forge({ aud: "https://other-service.example/api" }), /unexpected "aud" claim value/],
    ["an unknown kid", () => forge({}, { kid: "kid-nobody-published" }), /no provider key for kid/],
    ["no exp", () => forge({ exp: undefined }), /no exp/],
    ["no sub", () => forge({ sub: undefined }), /no sub/],
    ["an algorithm outside the allow-list (RS512)", () => forge({}, { alg: "RS512" }), /algorithm RS512 not allowed/],
    ["the ID token instead of an access token", () => realIdToken, /unexpected "aud" claim value/],
    ["garbage", () => "not.a.jwt", /malformed|compact/],
  ];

  it.each(attacks)("rejects %s with 401 and no detail", async (_name, make, why) => {
    const mark = logLines.length;
    const r = await call(await make());
    const reasons = logLines.slice(mark).filter((l) => l.msg === "bearer token refused").map((l) => l.reason);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(why);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toEqual({ error: "unauthorized", reason: "sign-in required" });
    expect(r.challenge).toBe('Bearer realm="gatehouse", error="invalid_token"');
  });

  it("refetches the JWKS for unknown kids at most once per interval", async () => {
    const before = idp.hits.get("/jwks") ?? 0;
    for (let i = 0; i < 8; i++) expect((await call(await forge({}, { kid: randomBytes(8).toString("hex") }))).status).toBe(401);
    expect((idp.hits.get("/jwks") ?? 0) - before).toBeLessThanOrEqual(1);
  });

  it("rejects other Authorization schemes", async () => {
    const b = browser();
    const r = await b.request(`${app.url}/api/cameras`, { headers: { authorization: `Basic ${Buffer.from("alice:alice-pw-1").toString("base64")}` } });
    b.close();
    expect(r.status).toBe(401);
  });

  it("keeps validating with the cached keys while the provider is down", async () => {
    await idp.suspend();
    try {
      expect((await call(await forge())).status).toBe(200);
    } finally {
      await idp.resume();
    }
  });

  it("ends a bearer caller's stream when the token expires", async () => {
    const r = await call(await forge({ exp: now() + 1 }), "/whep/lobby", { method: "POST" });
    expect(r.status).toBe(201);
    const viewer = (JSON.parse(r.body) as { viewer: number }).viewer;
    expect(await app.waitEnded(viewer)).toBe("expired");
  });
});

describe("rate limiting of failed sign-ins per source", () => {
  let limited: AuthApp;
  let offset = 0;
  beforeAll(async () => {
    limited = await startAuthApp({
      cameras: CAMERAS,
      clock: () => Date.now() + offset,
      auth: {
        mode: "oidc",
        clientSecret: "s3",
        rolesClaim: "realm_access.roles",
        rights: RIGHTS,
        bearer: { audience: "https://gatehouse.test/api" },
        rateLimit: { maxFailuresPerSource: 3, windowSeconds: 60 },
      },
      provider: async () => idp,
    });
  });
  afterAll(() => limited?.close());

  it("answers 429 after too many invalid tokens, even to a valid one, until the window passes", async () => {
    for (let i = 0; i < 3; i++) expect((await call(await forge({ iss: "https://evil.example" }), "/api/cameras", { target: limited })).status).toBe(401);
    const r = await call(await forge(), "/api/cameras", { target: limited });
    expect(r.status).toBe(429);
    expect(Number(r.retryAfter)).toBeGreaterThan(0);
    const b = browser();
    const cb = await b.request(`${limited.url}/auth/callback?code=x&state=y`);
    const login = await b.request(`${limited.url}/auth/login`);
    b.close();
    expect(cb.status).toBe(429);
    expect(login.status).toBe(429);
    offset += 61_000;
    expect((await call(await forge(), "/api/cameras", { target: limited })).status).toBe(200);
  });
});

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString("base64url");
}
