/**
 * A real OpenID provider (oidc-provider 9) in-process for tests, served over HTTPS with a throwaway
 * test CA, plus a scripted HTTP "browser" (cookie jar, manual redirects, form submission) to drive
 * sign-in flows without Chromium.
 *
 * The provider is the same code as the development provider, configured differently: TLS, roles in a
 * nested claim (`realm_access.roles`, like Keycloak) and JWT access tokens for an API audience. Its
 * private signing keys are exposed so attack tests can forge tokens that differ from real ones in
 * exactly one property.
 */
import { generateKeyPairSync, type JsonWebKey } from "node:crypto";
import fs from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import express, { type NextFunction, type Request, type Response } from "express";
import { generate } from "selfsigned";
import { silentLogger, type Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { parseConfig } from "../../config/load.ts";
import { createAuth, type Auth } from "../../gateway/auth/index.ts";
import { sendError } from "../../gateway/http/errors.ts";
import { startOidcProvider, type IdpClient, type IdpUser, type RunningOidcProvider } from "../../gateway/auth/dev-idp.ts";
import { providerFetch, type ProviderFetch } from "../../gateway/auth/fetch.ts";

export interface TestCa {
  /** CA certificate (PEM): what clients trust. */
  ca: string;
  /** Leaf certificate and key for 127.0.0.1 / localhost, signed by the CA. */
  cert: string;
  key: string;
}

/** A CA and a server certificate for 127.0.0.1 and localhost, valid for a day. */
export async function makeTestCa(): Promise<TestCa> {
  const notAfterDate = new Date(Date.now() + 86400_000);
  const ca = await generate([{ name: "commonName", value: "Gatehouse test CA" }], {
    keyType: "ec",
    algorithm: "sha256",
    notAfterDate,
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const leaf = await generate([{ name: "commonName", value: "127.0.0.1" }], {
    keyType: "ec",
    algorithm: "sha256",
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] },
    ],
  });
  return { ca: ca.cert, cert: leaf.cert, key: leaf.private };
}

export interface TestOidcOptions {
  clients: IdpClient[];
  users?: IdpUser[];
  /** Where roles go in tokens. Default `realm_access.roles`. */
  rolesClaim?: string;
  /** JWT access-token audience. Default `https://gatehouse.test/api`. */
  apiAudience?: string;
  ca?: TestCa;
  ttl?: { accessToken?: number; idToken?: number; refreshToken?: number };
  rateLimit?: { windowMs: number; maxPerSource: number; maxPerAccount: number };
  log?: Logger;
}

export interface TestOidc extends RunningOidcProvider {
  readonly ca: TestCa;
  readonly apiAudience: string;
  /** The provider's first private signing key. */
  readonly signingJwk: JsonWebKey & { kid?: string };
  /** Requests seen, by path (e.g. `/jwks`), to count JWKS fetches. */
  readonly hits: Map<string, number>;
}

export const TEST_USERS: IdpUser[] = [
  { username: "alice", password: "alice-pw-1", sub: "sub-alice", name: "Alice Viewer", email: "alice@test.invalid", groups: ["lobby-viewers"] },
  { username: "bob", password: "bob-pw-2", sub: "sub-bob", name: "Bob Admin", email: "bob@test.invalid", groups: ["gatehouse-admins"] },
  { username: "carol", password: "carol-pw-3", sub: "sub-carol", name: "Carol Nobody", email: "carol@test.invalid", groups: [] },
];

/** Start the test provider on 127.0.0.1 over HTTPS. */
export async function startTestOidc(opts: TestOidcOptions): Promise<TestOidc> {
  const ca = opts.ca ?? (await makeTestCa());
  const jwk = { ...generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }), kid: "test-key-1" };
  const apiAudience = opts.apiAudience ?? "https://gatehouse.test/api";
  const hits = new Map<string, number>();
  const p = await startOidcProvider({
    host: "127.0.0.1",
    port: 0,
    tls: { key: ca.key, cert: ca.cert },
    clients: opts.clients,
    users: opts.users ?? TEST_USERS,
    rolesClaim: opts.rolesClaim ?? "realm_access.roles",
    apiAudience,
    jwks: [jwk],
    ...(opts.ttl ? { ttl: opts.ttl } : {}),
    ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}),
    log: opts.log ?? silentLogger,
    onRequest: (req: IncomingMessage) => {
      const path = new URL(req.url ?? "/", "https://x").pathname;
      hits.set(path, (hits.get(path) ?? 0) + 1);
    },
  });
  return { ...p, ca, apiAudience, signingJwk: jwk, hits };
}

// ---- a scripted browser --------------------------------------------------------------------------

interface StoredCookie {
  value: string;
  path: string;
}

export interface BrowserResponse {
  status: number;
  url: string;
  headers: Headers;
  body: string;
}

/**
 * Just enough of a browser for sign-in flows: cookies per host (shared across ports, as browsers do),
 * Path matching, deletion by Max-Age/Expires, manual redirects, and forms.
 */
export class HttpBrowser {
  readonly jar = new Map<string, Map<string, StoredCookie>>();
  private readonly fetch: ProviderFetch;
  /** Extra headers on every request (e.g. Origin, Sec-Fetch-*). */
  extraHeaders: Record<string, string> = {};

  constructor(ca?: string) {
    this.fetch = providerFetch({ ca });
  }

  cookie(host: string, name: string): string | undefined {
    return this.jar.get(host)?.get(name)?.value;
  }

  setCookie(host: string, name: string, value: string, path = "/"): void {
    let m = this.jar.get(host);
    if (!m) this.jar.set(host, (m = new Map()));
    m.set(name, { value, path });
  }

  async request(url: string, init: { method?: string; body?: string | URLSearchParams | Uint8Array<ArrayBuffer>; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<BrowserResponse> {
    const u = new URL(url);
    const cookies = [...(this.jar.get(u.hostname) ?? new Map<string, StoredCookie>())]
      .filter(([, c]) => u.pathname === c.path || u.pathname.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`))
      .map(([k, c]) => `${k}=${c.value}`)
      .join("; ");
    const headers: Record<string, string> = { ...this.extraHeaders, ...(init.headers ?? {}) };
    if (cookies) headers.cookie = cookies;
    const res = await this.fetch(url, { method: init.method ?? "GET", headers, ...(init.body !== undefined ? { body: init.body } : {}), ...(init.signal ? { signal: init.signal } : {}) });
    for (const sc of res.headers.getSetCookie()) this.store(u.hostname, sc);
    return { status: res.status, url, headers: res.headers, body: await res.text() };
  }

  /** GET (or the given request) and follow redirects (303 → GET) until a non-redirect or `stopAt` prefix. */
  async follow(url: string, opts: { stopAt?: string; max?: number; method?: string; body?: string | URLSearchParams; headers?: Record<string, string> } = {}): Promise<BrowserResponse> {
    let res = await this.request(url, { ...(opts.method ? { method: opts.method } : {}), ...(opts.body !== undefined ? { body: opts.body } : {}), ...(opts.headers ? { headers: opts.headers } : {}) });
    for (let i = 0; i < (opts.max ?? 15); i++) {
      if (res.status < 300 || res.status >= 400) return res;
      const next = new URL(res.headers.get("location")!, res.url).href;
      if (opts.stopAt && next.startsWith(opts.stopAt)) return { ...res, url: next, status: 0 };
      res = await this.request(next);
    }
    throw new Error(`too many redirects from ${url}`);
  }

  /** Fill in and submit the first form on `page` (fields by name), following redirects. */
  async submitForm(page: BrowserResponse, fields: Record<string, string>, opts: { stopAt?: string } = {}): Promise<BrowserResponse> {
    const action = /<form[^>]*action="([^"]+)"/.exec(page.body)?.[1];
    if (!action) throw new Error(`no form on ${page.url}: ${page.body.slice(0, 300)}`);
    const body = new URLSearchParams();
    for (const m of page.body.matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) body.set(m[1]!, m[2]!);
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    return this.follow(new URL(action.replace(/&amp;/g, "&"), page.url).href, { method: "POST", body, ...opts });
  }

  close(): void {
    this.fetch.close();
  }

  private store(host: string, header: string): void {
    const [pair, ...attrs] = header.split(";");
    const i = pair!.indexOf("=");
    const name = pair!.slice(0, i).trim();
    const value = pair!.slice(i + 1).trim();
    let path = "/";
    let expired = false;
    for (const a of attrs) {
      const [k, v = ""] = a.trim().split("=");
      const key = k!.toLowerCase();
      if (key === "path") path = v;
      if (key === "max-age" && Number(v) <= 0) expired = true;
      if (key === "expires" && Date.parse(v) <= Date.now()) expired = true;
    }
    const m = this.jar.get(host) ?? new Map<string, StoredCookie>();
    this.jar.set(host, m);
    if (expired) m.delete(name);
    else m.set(name, { value, path });
  }
}

/**
 * Sign in through the provider's own pages: start at `loginUrl` (the gateway's /auth/login), submit
 * the login form, follow redirects back until `stopAt` (when given) or the final page.
 */
export async function signIn(
  browser: HttpBrowser,
  loginUrl: string,
  username: string,
  password: string,
  opts: { stopAt?: string } = {},
): Promise<BrowserResponse> {
  const form = await browser.follow(loginUrl);
  if (form.status !== 200 || !form.body.includes('name="password"')) throw new Error(`expected the login form, got ${form.status} at ${form.url}`);
  return browser.submitForm(form, { username, password }, opts);
}

/**
 * A new browser signed in to a gateway running the development provider, as one of its demo
 * accounts; it joins `browsers` (the caller closes them). Throws unless sign-in ends in 200.
 */
export async function signedInDevUser(
  gw: { url: string; auth: { devUsers?: ReadonlyArray<{ username: string; password: string }> | undefined } },
  user: string,
  browsers: HttpBrowser[],
): Promise<HttpBrowser> {
  const b = new HttpBrowser();
  browsers.push(b);
  const account = gw.auth.devUsers?.find((u) => u.username === user);
  if (!account) throw new Error(`no development account "${user}"`);
  const res = await signIn(b, `${gw.url}/auth/login`, user, account.password);
  if (res.status !== 200) throw new Error(`signing in as ${user} ended with ${res.status} at ${res.url}`);
  return b;
}

// ---- a minimal gateway around the auth module ------------------------------------------------------

export interface AuthAppOptions {
  /** The `auth` config section (input form); `issuer` is filled in from the provider when omitted. */
  auth: Record<string, unknown>;
  cameras: CameraConfig[];
  /** Serve the app over HTTPS with this CA's certificate. Default: plain HTTP. */
  ca?: TestCa;
  /** Starts the provider once the app's URL (hence its redirect URI) is known; omit for dev/none modes. */
  provider?: ((appUrl: string) => Promise<{ issuer: string; ca: TestCa }>) | undefined;
  clock?: () => number;
  env?: NodeJS.ProcessEnv;
  log?: Logger;
}

export interface AuthApp {
  url: string;
  auth: Auth;
  /** What `watch` callbacks reported for viewers created via POST /whep/:camera. */
  ended: Array<{ viewer: number; reason: string }>;
  /** Resolves with the reason once viewer `n` has been ended. */
  waitEnded(viewer: number): Promise<string>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The auth module mounted the way the gateway mounts it, with stand-in routes: GET /api/cameras (the
 * visible list), GET /api/cameras/:id (live right), POST /whep/:id (CSRF + live right; a "viewer" that
 * watches its session), GET /healthz (public).
 */
export async function startAuthApp(opts: AuthAppOptions): Promise<AuthApp> {
  let handler: http.RequestListener = (_req, res) => res.writeHead(503).end();
  const server = opts.ca
    ? https.createServer({ key: opts.ca.key, cert: opts.ca.cert }, (q, s) => handler(q, s))
    : http.createServer((q, s) => handler(q, s));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `${opts.ca ? "https" : "http"}://127.0.0.1:${port}`;

  let tmp: string | undefined;
  const authInput: Record<string, unknown> = { ...opts.auth };
  if (opts.provider) {
    const p = await opts.provider(url);
    authInput.issuer ??= p.issuer;
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "gatehouse-auth-"));
    const caFile = path.join(tmp, "ca.pem");
    await fs.writeFile(caFile, p.ca.ca);
    authInput.issuerCaFile ??= caFile;
  }
  const config = parseConfig({ auth: authInput }, opts.env ?? {});
  let auth: Auth;
  try {
    auth = await createAuth({
      config: config.auth,
      publicUrl: url,
      listenHost: "127.0.0.1",
      cameras: () => opts.cameras,
      log: opts.log ?? silentLogger,
      ...(opts.clock ? { clock: opts.clock } : {}),
      sweepMs: 0,
    });
  } catch (err) {
    server.close();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  }

  const ended: AuthApp["ended"] = [];
  const waiters = new Map<number, (reason: string) => void>();
  const waitEnded = (viewer: number) =>
    new Promise<string>((resolve) => {
      const e = ended.find((x) => x.viewer === viewer);
      if (e) resolve(e.reason);
      else waiters.set(viewer, resolve);
    });
  let nextViewer = 0;
  const app = express();
  app.disable("x-powered-by");
  app.use(auth.securityHeaders);
  app.use("/auth", auth.router);
  app.get("/healthz", (_req, res) => res.json({ ok: true }));
  app.use(auth.requireUser, auth.csrf);
  app.get("/", (req, res) => res.type("html").send(`<!doctype html><p id="home">Signed in as ${req.user!.sub}</p>`));
  app.get("/api/cameras", (req, res) => res.json(auth.visibleCameras(req.user!).map((c) => ({ id: c.id, name: c.name ?? c.id }))));
  app.get("/api/cameras/:id", (req, res) => {
    auth.authorizeCamera(req.user!, req.params.id, "live");
    res.json({ id: req.params.id, actions: auth.actions(req.user!, req.params.id) });
  });
  app.post("/whep/:id", (req, res) => {
    auth.authorizeCamera(req.user!, req.params.id, "live");
    const viewer = ++nextViewer;
    auth.watch(
      req.user!,
      (reason) => {
        ended.push({ viewer, reason });
        waiters.get(viewer)?.(reason);
      },
      { cameraId: req.params.id, action: "live" },
    );
    res.status(201).json({ viewer, sub: req.user!.sub });
  });
  app.post("/api/cameras/:id/talk", (req, res) => {
    auth.authorizeCamera(req.user!, req.params.id, "talk");
    res.status(204).end();
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    sendError(res, err);
  });
  handler = app;

  const close = async () => {
    await auth.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  };
  return { url, auth, ended, waitEnded, close, [Symbol.asyncDispose]: close };
}
