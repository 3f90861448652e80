/**
 * The development identity provider: a real OpenID provider (oidc-provider 9) running in-process on
 * a loopback address, so `npm start` signs users in through the same code path as production.
 *
 * It runs on its OWN port (not mounted under the gateway): its cookies, CSP and lifecycle stay apart
 * from the gateway's, the gateway reaches it like any external issuer (discovery over HTTP), and the
 * same code serves as the real provider in tests (`startOidcProvider`, with TLS there).
 *
 * Unlike oidc-provider's built-in dev pages it checks passwords (`findAccount` + a login form with
 * a constant-time comparison), limits failed attempts per source address and per account, and grants
 * consent implicitly to the first-party clients it was configured with. ID tokens carry the user's
 * groups (`conformIdTokenClaims: false`); access tokens for the configured API audience are JWTs.
 *
 * DEVELOPMENT ONLY: accounts live in memory, passwords are generated at start and printed.
 */
import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual, type JsonWebKey } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import Provider, { errors as providerErrors, type InteractionDetails, type ProviderInstance } from "oidc-provider";
import { BadInputError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import { RateLimiter } from "./rate-limit.ts";
import { DEV_ADMIN_ROLE, DEV_VIEWER_ROLE } from "./rights.ts";

export interface IdpUser {
  /** Login name typed into the form. */
  readonly username: string;
  readonly password: string;
  /** Stable subject identifier (`sub`). */
  readonly sub: string;
  readonly name: string;
  readonly email: string;
  /** Group/role values, placed at `rolesClaim` in ID and access tokens. */
  readonly groups: readonly string[];
  /** What this user may do, for the start-up banner. */
  readonly description?: string;
}

export interface IdpClient {
  clientId: string;
  /** Absent: a public client (PKCE, no secret). */
  clientSecret?: string | undefined;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  /** OIDC Back-Channel Logout 1.0: where logout tokens are posted (with `sid`) when the user's session here ends. */
  backchannelLogoutUri?: string | undefined;
}

export interface OidcProviderOptions {
  /** Loopback address to bind; anything else is refused. Default 127.0.0.1. */
  host?: string;
  /** Port; 0 (default) picks a free one. */
  port?: number;
  /** Serve HTTPS with this certificate (tests use a test CA). Default plain HTTP (loopback only). */
  tls?: { key: string; cert: string };
  clients: IdpClient[];
  users: IdpUser[];
  /** Where the groups go in tokens, dotted (`groups`, `realm_access.roles`). Default `groups`. */
  rolesClaim?: string;
  /** Audience (resource indicator) of JWT access tokens for API clients. */
  apiAudience?: string;
  /** Signing key(s) as private JWKs; default: one fresh RSA key. The first signs. */
  jwks?: JsonWebKey[];
  /** Lifetimes, seconds. */
  ttl?: { accessToken?: number; idToken?: number; refreshToken?: number; session?: number };
  /** Failed logins allowed per window per source address and per account. */
  rateLimit?: { windowMs: number; maxPerSource: number; maxPerAccount: number };
  log: Logger;
  /** Milliseconds since the epoch, for the rate limiter. */
  clock?: () => number;
  /** Observes every request (tests count JWKS fetches). */
  onRequest?: (req: IncomingMessage) => void;
}

export interface RunningOidcProvider {
  /** Issuer identifier, e.g. `http://127.0.0.1:40123`. */
  readonly issuer: string;
  readonly port: number;
  readonly users: readonly IdpUser[];
  /** The private signing keys (tests forge tokens with them). */
  readonly jwks: readonly JsonWebKey[];
  /** Stop answering (connections refused) without forgetting state; `resume()` listens again on the same port. */
  suspend(): Promise<void>;
  resume(): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** True for addresses that never leave this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h) || h === "::ffff:127.0.0.1";
}

/** Start an oidc-provider on loopback with real login (password check), implicit consent, JWT access tokens. */
export async function startOidcProvider(opts: OidcProviderOptions): Promise<RunningOidcProvider> {
  const host = opts.host ?? "127.0.0.1";
  if (!isLoopbackHost(host))
    throw new BadInputError(`the development identity provider only runs on a loopback address, not ${host}`);
  const log = opts.log;
  const clock = opts.clock ?? Date.now;
  const rolesPath = (opts.rolesClaim ?? "groups").split(".");
  const rolesTop = rolesPath[0]!;
  const users = new Map(opts.users.map((u) => [u.username, u]));
  const bySub = new Map(opts.users.map((u) => [u.sub, u]));
  const rl = opts.rateLimit ?? { windowMs: 300_000, maxPerSource: 20, maxPerAccount: 5 };
  const perSource = new RateLimiter({ max: rl.maxPerSource, windowMs: rl.windowMs, clock });
  const perAccount = new RateLimiter({ max: rl.maxPerAccount, windowMs: rl.windowMs, clock });
  const jwks = opts.jwks ?? [generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" })];
  const ttl = { accessToken: 600, idToken: 600, refreshToken: 86400, session: 86400, ...opts.ttl };
  const firstParty = new Set(opts.clients.map((c) => c.clientId));
  const clientOrigins = [...new Set(opts.clients.flatMap((c) => c.redirectUris.map((u) => new URL(u).origin)))];

  const groupsClaims = (u: IdpUser): Record<string, unknown> => {
    let v: unknown = [...u.groups];
    for (let i = rolesPath.length - 1; i > 0; i--) v = { [rolesPath[i]!]: v };
    return { [rolesTop]: v };
  };

  // Bind first: the issuer URL needs the port.
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }) : http.createServer();
  await listen(server, opts.port ?? 0, host);
  const port = (server.address() as AddressInfo).port;
  const issuer = `${opts.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;

  const provider: ProviderInstance = new Provider(issuer, {
    clients: opts.clients.map((c) => ({
      client_id: c.clientId,
      ...(c.clientSecret ? { client_secret: c.clientSecret } : { token_endpoint_auth_method: "none" }),
      redirect_uris: c.redirectUris,
      post_logout_redirect_uris: c.postLogoutRedirectUris,
      ...(c.backchannelLogoutUri ? { backchannel_logout_uri: c.backchannelLogoutUri, backchannel_logout_session_required: true } : {}),
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    })),
    adapter: memoryAdapterFactory(),
    // oidc-provider refuses outgoing requests to special-use addresses (SSRF protection), loopback
    // included; this provider and the gateway it serves both run on loopback, so its back-channel
    // logout requests to a loopback gateway go out without that dispatcher. Anything else keeps it.
    fetch: (url: string, init: RequestInit & { dispatcher?: unknown }) => {
      if (!isLoopbackHost(new URL(url).hostname)) return globalThis.fetch(url, init);
      const { dispatcher: _ssrfGuard, ...rest } = init;
      return globalThis.fetch(url, rest);
    },
    jwks: { keys: jwks },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    claims: {
      openid: ["sub", rolesTop],
      profile: ["name", "preferred_username"],
      email: ["email", "email_verified"],
    },
    // Groups in the ID token, not only at UserInfo (OIDC Core §5.4 would move scope claims there).
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource: autoSubmitLogout, postLogoutSuccessSource: signedOutPage },
      backchannelLogout: { enabled: true },
      // RFC 7009 §2.1: a client may revoke only tokens issued to it.
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) => oneOf?.[0],
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          if (!opts.apiAudience || resource !== opts.apiAudience) throw new providerErrors.InvalidTarget();
          return { scope: "api", audience: resource, accessTokenTTL: ttl.accessToken, accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } } };
        },
      },
    },
    // Refresh tokens without requiring offline_access: the gateway refreshes its sessions with them.
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) => client.grantTypeAllowed("refresh_token"),
    extraTokenClaims: async (_ctx: unknown, token: { accountId?: string }) => {
      const u = token.accountId ? bySub.get(token.accountId) : undefined;
      return u ? groupsClaims(u) : undefined;
    },
    findAccount: async (_ctx: unknown, sub: string) => {
      const u = bySub.get(sub);
      if (!u) return undefined;
      return {
        accountId: u.sub,
        claims: async () => ({
          sub: u.sub,
          name: u.name,
          preferred_username: u.username,
          email: u.email,
          email_verified: true,
          ...groupsClaims(u),
        }),
      };
    },
    // Consent is implied for the first-party clients this provider was started for.
    loadExistingGrant: async (ctx: GrantCtx) => {
      const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const g = await ctx.oidc.provider.Grant.find(grantId);
        if (g) return g;
      }
      if (!firstParty.has(ctx.oidc.client.clientId)) return undefined;
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope("openid profile email offline_access");
      if (opts.apiAudience) grant.addResourceScope(opts.apiAudience, "api");
      await grant.save();
      return grant;
    },
    ttl: {
      AccessToken: ttl.accessToken,
      AuthorizationCode: 60,
      IdToken: ttl.idToken,
      RefreshToken: ttl.refreshToken,
      Session: ttl.session,
      Grant: ttl.session,
      Interaction: 600,
    },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = "html";
      ctx.body = page("Sign-in error", `<h1>Sign-in error</h1><p>${esc(out.error_description ?? out.error ?? "error")}</p>`);
    },
  });
  provider.on("server_error", (_ctx: unknown, err: unknown) => log.warn("identity provider error", { err }));
  provider.on("backchannel.error", (_ctx: unknown, err: unknown, client: unknown) =>
    log.warn("identity provider: back-channel logout failed", { client: (client as { clientId?: string } | undefined)?.clientId, err }),
  );
  const providerHandler = provider.callback();

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    opts.onRequest?.(req);
    const url = new URL(req.url ?? "/", issuer);
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(url.pathname);
    if (!m) return providerHandler(req, res);
    interaction(req, res, m[2] === "/login").catch((err: unknown) => {
      log.debug("interaction failed", { err });
      if (!res.headersSent) send(res, 400, page("Sign-in error", "<h1>Sign-in expired</h1><p>Go back to the application and sign in again.</p>"));
    });
  };
  server.on("request", handler);

  async function interaction(req: IncomingMessage, res: ServerResponse, submit: boolean): Promise<void> {
    const details: InteractionDetails = await provider.interactionDetails(req, res);
    if (details.prompt.name === "consent") return grantConsent(req, res, details);
    if (details.prompt.name !== "login") throw new BadInputError(`unsupported prompt ${details.prompt.name}`);
    if (!submit) return send(res, 200, loginPage(details.uid, "", ""), clientOrigins);
    if (req.method !== "POST") return send(res, 405, page("Method not allowed", "<h1>Method not allowed</h1>"));
    const form = new URLSearchParams(await readBody(req, 8192));
    const username = (form.get("username") ?? "").slice(0, 200);
    const password = (form.get("password") ?? "").slice(0, 200);
    const source = req.socket.remoteAddress ?? "unknown";
    const wait = Math.max(perSource.blockedFor(source), perAccount.blockedFor(username.toLowerCase()));
    if (wait > 0) {
      log.warn("sign-in rate limited", { source, account: username });
      res.setHeader("Retry-After", String(Math.ceil(wait / 1000)));
      return send(res, 429, loginPage(details.uid, username, "Too many failed attempts. Try again later."), clientOrigins);
    }
    const user = users.get(username);
    // Compare digests in constant time; do the same work when the user does not exist.
    const ok = constantTimeEqual(password, user?.password ?? randomBytes(16).toString("hex")) && user !== undefined;
    if (!ok) {
      perSource.hit(source);
      perAccount.hit(username.toLowerCase());
      log.info("sign-in failed", { source, account: username });
      return send(res, 401, loginPage(details.uid, username, "Wrong user name or password."), clientOrigins);
    }
    perAccount.reset(username.toLowerCase());
    log.info("signed in at development provider", { account: username });
    await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
  }

  async function grantConsent(req: IncomingMessage, res: ServerResponse, details: InteractionDetails): Promise<void> {
    const clientId = String(details.params.client_id ?? "");
    if (!firstParty.has(clientId)) throw new BadInputError("consent for an unknown client");
    const grant =
      (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ??
      new provider.Grant({ accountId: details.session?.accountId, clientId });
    const d = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(" "));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [r, s] of Object.entries(d.missingResourceScopes ?? {})) grant.addResourceScope(r, s.join(" "));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  let closed = false;
  const closeServer = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  // Every caller gets the same promise (a second call must not resolve before the server is down).
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed = true;
    closing ??= closeServer();
    return closing;
  };
  return {
    issuer,
    port,
    users: opts.users,
    jwks,
    suspend: closeServer,
    resume: async () => {
      if (!closed && !server.listening) await listen(server, port, host);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

export interface DevIdpOptions {
  /** The gateway's redirect URI (`<publicUrl>/auth/callback`). */
  redirectUri: string;
  /** Where the provider returns after sign-out (`<publicUrl>/`). */
  postLogoutRedirectUri: string;
  /** Where the provider posts logout tokens (`<publicUrl>/auth/backchannel-logout`). */
  backchannelLogoutUri?: string;
  clientId: string;
  clientSecret: string;
  /** Audience of JWT access tokens for API clients. */
  apiAudience: string;
  port?: number;
  log: Logger;
  rateLimit?: OidcProviderOptions["rateLimit"];
  clock?: () => number;
}

/** The development provider with the two demo users, `viewer` and `admin`, and fresh passwords. */
export async function startDevIdp(opts: DevIdpOptions): Promise<RunningOidcProvider> {
  const pw = () => randomBytes(9).toString("base64url");
  const users: IdpUser[] = [
    {
      username: "viewer",
      password: pw(),
      sub: "dev-viewer",
      name: "Demo Viewer",
      email: "viewer@gatehouse.invalid",
      groups: [DEV_VIEWER_ROLE],
      description: "may watch the demo camera live, nothing else",
    },
    {
      username: "admin",
      password: pw(),
      sub: "dev-admin",
      name: "Demo Administrator",
      email: "admin@gatehouse.invalid",
      groups: [DEV_ADMIN_ROLE],
      description: "every action on every camera",
    },
  ];
  return startOidcProvider({
    host: "127.0.0.1",
    port: opts.port ?? 0,
    clients: [
      {
        clientId: opts.clientId,
        clientSecret: opts.clientSecret,
        redirectUris: [opts.redirectUri],
        postLogoutRedirectUris: [opts.postLogoutRedirectUri],
        backchannelLogoutUri: opts.backchannelLogoutUri,
      },
    ],
    users,
    apiAudience: opts.apiAudience,
    log: opts.log,
    ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
}

// ---- helpers -------------------------------------------------------------------------------------

type Payload = Record<string, unknown> & { grantId?: string; uid?: string; userCode?: string; consumed?: number };

/**
 * oidc-provider storage in memory, one store per provider instance (the library's built-in adapter
 * is shared by every provider in the process and warns on each start). Entries expire; authorization
 * codes are marked consumed so a replayed code is detected (and its grant revoked) by the provider.
 */
function memoryAdapterFactory(): (model: string) => object {
  const store = new Map<string, { payload: Payload; expiresAt: number }>();
  const alive = (key: string) => {
    const e = store.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return e;
  };
  return (model: string) => {
    const key = (id: string) => `${model}:${id}`;
    return {
      async upsert(id: string, payload: Payload, expiresIn?: number) {
        // Sweep lazily so the store cannot grow with abandoned interactions.
        if (store.size > 10000) for (const k of store.keys()) alive(k);
        store.set(key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
      },
      async find(id: string) {
        return alive(key(id))?.payload;
      },
      async findByUid(uid: string) {
        for (const [k, e] of store) if (k.startsWith(`${model}:`) && e.payload.uid === uid && alive(k)) return e.payload;
        return undefined;
      },
      async findByUserCode(userCode: string) {
        for (const [k, e] of store) if (k.startsWith(`${model}:`) && e.payload.userCode === userCode && alive(k)) return e.payload;
        return undefined;
      },
      async consume(id: string) {
        const e = alive(key(id));
        if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id: string) {
        store.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        for (const [k, e] of store) if (e.payload.grantId === grantId) store.delete(k);
      },
    };
  };
}

interface GrantCtx {
  oidc: {
    result?: { consent?: { grantId?: string } };
    session: { accountId: string | undefined; grantIdFor(clientId: string): string | undefined };
    client: { clientId: string };
    provider: ProviderInstance;
  };
}

function constantTimeEqual(a: string, b: string): boolean {
  const da = createHash("sha256").update(a).digest();
  const db = createHash("sha256").update(b).digest();
  return timingSafeEqual(da, db);
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new BadInputError("form too large"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, html: string, formTargets: readonly string[] = []): void {
  res.statusCode = status;
  res.setHeader("Content-Type", "text/html; charset=utf-8");
  res.setHeader("Cache-Control", "no-store");
  // form-action also governs the redirects after a submission: the login ends at the clients' redirect URIs.
  res.setHeader(
    "Content-Security-Policy",
    `default-src 'none'; style-src 'unsafe-inline'; form-action 'self'${formTargets.map((o) => ` ${o}`).join("")}; frame-ancestors 'none'`,
  );
  res.setHeader("X-Frame-Options", "DENY");
  res.end(html);
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><style>body{font:16px system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.5rem;font-size:.85rem}.err{color:#a00}</style></head>
<body>${body}</body></html>`;
}

function loginPage(uid: string, username: string, error: string): string {
  return page(
    "Sign in — Gatehouse development provider",
    `<p class="warn">DEVELOPMENT ONLY identity provider. The user names and passwords were printed when Gatehouse started.</p>
<h1>Sign in</h1>${error ? `<p class="err" role="alert">${esc(error)}</p>` : ""}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">User name</label><input id="username" name="username" value="${esc(username)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit" id="submit">Sign in</button></form>`,
  );
}

// RP-initiated logout (OIDC RP-Initiated Logout 1.0 §2): the provider asks for confirmation with a form;
// the dev provider confirms on the user's behalf (the gateway already asked), with a button as fallback.
async function autoSubmitLogout(ctx: { body: string; set(h: string, v: string): void }, form: string): Promise<void> {
  ctx.body = page(
    "Signing out",
    `${form}<p>Signing out…</p><button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout">Sign out</button>
<script>document.getElementById("logout").click()</script>`,
  );
}

async function signedOutPage(ctx: { body: string }): Promise<void> {
  ctx.body = page("Signed out", "<h1>Signed out</h1><p>You have been signed out.</p>");
}
