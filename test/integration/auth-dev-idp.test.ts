/**
 * The embedded default: `auth.mode: dev` runs the development provider in-process on loopback with
 * two demo users whose passwords are generated at start. Real password check, implicit consent,
 * failed logins limited per account and per source, and no way to run it on a non-loopback address.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { startOidcProvider } from "../../gateway/auth/dev-idp.ts";
import { createAuth } from "../../gateway/auth/index.ts";
import { HttpBrowser, signIn, startAuthApp, type AuthApp } from "../peers/oidc.ts";

const cam = (id: string, groups: string[] = []): CameraConfig => ({ id, name: id, url: `rtsp://192.0.2.1/${id}`, transport: "tcp", alwaysOn: false, groups, tlsInsecure: false });
const CAMERAS = [cam("demo", ["demo"]), cam("lobby")];

let app: AuthApp;
const browsers: HttpBrowser[] = [];
const newBrowser = () => {
  const b = new HttpBrowser();
  browsers.push(b);
  return b;
};
const user = (name: string) => app.auth.devUsers!.find((u) => u.username === name)!;

beforeAll(async () => {
  app = await startAuthApp({ cameras: CAMERAS, auth: { mode: "dev", rateLimit: { maxFailuresPerAccount: 3, maxFailuresPerSource: 6 } } });
});
afterAll(async () => {
  for (const b of browsers) b.close();
  await app?.close();
});

async function cameras(b: HttpBrowser): Promise<string[]> {
  const r = await b.request(`${app.url}/api/cameras`, { headers: { accept: "application/json" } });
  expect(r.status).toBe(200);
  return (JSON.parse(r.body) as Array<{ id: string }>).map((c) => c.id);
}

describe("development identity provider", () => {
  it("runs on loopback with two demo users and generated passwords", () => {
    expect(app.auth.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(app.auth.devUsers!.map((u) => u.username)).toEqual(["viewer", "admin"]);
    for (const u of app.auth.devUsers!) expect(u.password).toMatch(/^[A-Za-z0-9_-]{12,}$/);
    expect(user("viewer").password).not.toBe(user("admin").password);
  });

  it("signs the viewer in through its login form (no consent page) and shows only the demo camera", async () => {
    const b = newBrowser();
    const res = await signIn(b, `${app.url}/auth/login`, "viewer", user("viewer").password);
    expect(res.status).toBe(200);
    expect(res.body).toContain("Signed in as dev-viewer");
    expect(await cameras(b)).toEqual(["demo"]);
    const me = JSON.parse((await b.request(`${app.url}/auth/me`)).body) as { cameras: Array<{ id: string; actions: string[] }> };
    expect(me.cameras).toEqual([{ id: "demo", name: "demo", actions: ["live"] }]);
  });

  it("gives the administrator every camera and every action", async () => {
    const b = newBrowser();
    await signIn(b, `${app.url}/auth/login`, "admin", user("admin").password);
    expect(await cameras(b)).toEqual(["demo", "lobby"]);
    const me = JSON.parse((await b.request(`${app.url}/auth/me`)).body) as { cameras: Array<{ actions: string[] }> };
    expect(me.cameras[0]!.actions).toEqual(["live", "playback", "talk", "answer_intercom", "admin"]);
  });

  it("checks the password and says the same for a wrong password and an unknown user", async () => {
    const b = newBrowser();
    const form = await b.follow(`${app.url}/auth/login`);
    const wrong = await b.submitForm(form, { username: "admin", password: "not-the-password" });
    const form2 = await b.follow(`${app.url}/auth/login`);
    const ghost = await b.submitForm(form2, { username: "nobody", password: "whatever" });
    expect(wrong.status).toBe(401);
    expect(ghost.status).toBe(401);
    const msg = (html: string) => /role="alert">([^<]*)</.exec(html)?.[1];
    expect(msg(wrong.body)).toBe("Wrong user name or password.");
    expect(msg(ghost.body)).toBe(msg(wrong.body));
    expect(b.cookie("127.0.0.1", "gatehouse_session")).toBeUndefined();
  });

  it("limits failed logins per account, then per source address", async () => {
    // Fresh provider state per check: "admin" and "nobody" already failed once each above (source: 2).
    const b = newBrowser();
    const attempt = async (username: string, password: string) => {
      const form = await b.follow(`${app.url}/auth/login`);
      return b.submitForm(form, { username, password });
    };
    for (let i = 0; i < 3; i++) expect((await attempt("viewer", "guess")).status).toBe(401); // source: 5
    const locked = await attempt("viewer", user("viewer").password);
    expect(locked.status).toBe(429);
    expect(locked.body).toContain("Too many failed attempts");
    // Another account is still fine from here (one more failure first: source reaches 6)...
    expect((await attempt("admin", "guess")).status).toBe(401);
    // ...until the source itself is over its limit.
    expect((await attempt("admin", user("admin").password)).status).toBe(429);
  });
});

describe("session signing keys", () => {
  it("rotate on reload without logging anyone out", async () => {
    const { generateKeyPairSync } = await import("node:crypto");
    const fs = await import("node:fs/promises");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "gatehouse-keys-"));
    try {
      const key = async (name: string) => {
        const file = path.join(dir, name);
        await fs.writeFile(file, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string);
        return file;
      };
      const oldKey = await key("old.pem");
      const newKey = await key("new.pem");
      await using rot = await startAuthApp({ cameras: CAMERAS, auth: { mode: "dev", session: { signingKeys: [oldKey] } } });
      const pwOf = (u: string) => rot.auth.devUsers!.find((x) => x.username === u)!.password;
      const b = newBrowser();
      await signIn(b, `${rot.url}/auth/login`, "viewer", pwOf("viewer"));
      const kid = (token: string) => (JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()) as { kid: string }).kid;
      const before = b.cookie("127.0.0.1", "gatehouse_session")!;
      const r = rot.auth.reload(parseConfig({ auth: { mode: "dev", session: { signingKeys: [newKey, oldKey] } } }).auth);
      expect(r.applied).toContain("auth.session.signingKeys");
      // New sessions are signed by the new key.
      const b2 = newBrowser();
      await signIn(b2, `${rot.url}/auth/login`, "admin", pwOf("admin"));
      expect(kid(b2.cookie("127.0.0.1", "gatehouse_session")!)).not.toBe(kid(before));
      // A session that stays away keeps its old-key cookie; one that is used gets it re-signed.
      const idle = newBrowser();
      idle.setCookie("127.0.0.1", "gatehouse_session", before);
      expect((await b.request(`${rot.url}/api/cameras`)).status).toBe(200);
      expect(kid(b.cookie("127.0.0.1", "gatehouse_session")!)).toBe(kid(b2.cookie("127.0.0.1", "gatehouse_session")!));
      // Dropping the old key: re-signed sessions carry on; a cookie still signed by it no longer verifies.
      rot.auth.reload(parseConfig({ auth: { mode: "dev", session: { signingKeys: [newKey] } } }).auth);
      expect((await b.request(`${rot.url}/api/cameras`)).status).toBe(200);
      expect((await b2.request(`${rot.url}/api/cameras`)).status).toBe(200);
      expect((await idle.request(`${rot.url}/api/cameras`, { headers: { accept: "application/json" } })).status).toBe(401);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("mode none (tests of other features only)", () => {
  it("lets everyone in as an administrator, on loopback", async () => {
    await using open = await startAuthApp({ cameras: CAMERAS, auth: { mode: "none" } });
    const b = newBrowser();
    const r = await b.request(`${open.url}/api/cameras`);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Array<{ id: string }>).map((c) => c.id)).toEqual(["demo", "lobby"]);
    expect((await b.request(`${open.url}/whep/lobby`, { method: "POST" })).status).toBe(201);
    expect((await b.request(`${open.url}/api/cameras/nope`)).status).toBe(404);
  });
});

describe("loopback only", () => {
  it("refuses dev mode when the gateway listens on a non-loopback address", async () => {
    const cfg = parseConfig({ auth: { mode: "dev" } }).auth;
    for (const [listenHost, publicUrl] of [
      ["0.0.0.0", "http://127.0.0.1:8080"],
      ["192.0.2.10", "http://192.0.2.10:8080"],
      ["127.0.0.1", "https://video.example.com"],
    ] as const) {
      await expect(createAuth({ config: cfg, publicUrl, listenHost, cameras: () => CAMERAS, log: silentLogger })).rejects.toThrow(/loopback/);
    }
    const none = parseConfig({ auth: { mode: "none" } }).auth;
    await expect(createAuth({ config: none, publicUrl: "http://10.0.0.1:8080", listenHost: "0.0.0.0", cameras: () => CAMERAS, log: silentLogger })).rejects.toThrow(
      BadInputError,
    );
  });

  it("refuses to bind the provider itself to a non-loopback address", async () => {
    await expect(startOidcProvider({ host: "0.0.0.0", clients: [], users: [], log: silentLogger })).rejects.toThrow(/loopback/);
  });
});
