/**
 * Sign-in and rights for the gateway: OpenID Connect (authorization code + PKCE + state + nonce),
 * the gateway's own short-lived signed session cookie backed by server-side sessions, provider JWT
 * access tokens as `Authorization: Bearer`, and per-camera rights mapped from the provider's claims.
 *
 * ## Use
 * ```ts
 * const auth = await createAuth({ config: config.auth, publicUrl, listenHost: config.server.host,
 *                                 cameras: () => registry.configs(), log });
 * app.use(auth.securityHeaders);
 * app.use("/auth", auth.router);          // /auth/login, /auth/callback, /auth/logout, /auth/me, /auth/csrf,
 *                                         // /auth/backchannel-logout (from the provider)
 * app.get("/healthz", ...);               // public routes go before requireUser
 * app.use(auth.requireUser, auth.csrf);   // everything below needs a user; unsafe methods need CSRF proof
 * // per camera: auth.authorizeCamera(req.user!, id, "live") throws NotFoundError / AuthError
 * // WebSocket/SSE: const user = await auth.authorizeUpgrade(req)  (checks Origin too)
 * // streams: const stop = auth.watch(req.user!, (reason) => viewer.close(reason), { cameraId: id, action: "live" })
 * ```
 *
 * ## Decisions
 * - A camera a user may not see answers exactly like an unknown camera (`NotFoundError` → 404, same
 *   body), so rights never reveal which cameras exist. A camera the user may see but not act on in
 *   the requested way is `AuthError("FORBIDDEN")` → 403. Not signed in: 401 (JSON with
 *   `WWW-Authenticate`), or a redirect to /auth/login for a browser navigation.
 * - The cookie holds a JWT (ES256 by default, `kid` header) with `sid`, `sub`, `exp` = the session's
 *   current lifetime (`session.ttlSeconds`, default 10 min). The server-side session is authoritative
 *   (logout and provider-side revocation take effect at once). A request carrying an expired token
 *   goes through refresh: the session is renewed with the provider's refresh token (or was already,
 *   in the background, because a stream watches it) and a fresh cookie is set; without a refresh
 *   token the user signs in again (silently at the provider while its own session lasts).
 * - Rights are re-evaluated on every check from the session's roles (refreshed with the tokens) and
 *   the current mapping; `reload()` swaps the mapping atomically and ends watched streams that lost
 *   their right.
 * - Sign-in failures are limited per source address (callback failures, invalid bearer tokens, forged
 *   cookies) and per account (password failures at the development provider; a real provider limits
 *   its own accounts).
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import express, { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { AuthError, BadInputError, NotFoundError, OverloadError, isGatehouseError } from "../../config/errors.ts";
import { userId, type SessionId, type UserId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import type { AuthConfig } from "../../config/sections/auth.ts";
import { LogoutTokenValidator } from "./backchannel.ts";
import { BearerValidator, JwksCache } from "./bearer.ts";
import { isLoopbackHost, startDevIdp, type RunningOidcProvider } from "./dev-idp.ts";
import { providerFetch, type FetchLike, type ProviderFetch } from "./fetch.ts";
import {
  causeChain,
  CsrfTokens,
  describeFailure,
  errorPage,
  isNavigation,
  page,
  parseCookies,
  sameOrigin,
  securityHeaders,
  sendFailure,
  sendPage,
  type AuthFailure,
} from "./http.ts";
import { SessionKeyring } from "./keys.ts";
import { readSessionFile, SessionFileWriter, type SessionFileState } from "./session-file.ts";
import { RateLimiter } from "./rate-limit.ts";
import { RelyingParty, type LoginTransaction, type TokenSet } from "./relying-party.ts";
import { safeReturnTo } from "./return-to.ts";
import { DEV_RIGHTS, Rights, rolesFromClaims, type AuthAction } from "./rights.ts";
import { SessionStore, short, type EndReason, type Refreshed, type SessionRecord } from "./sessions.ts";

export type { AuthAction } from "./rights.ts";
export type { EndReason } from "./sessions.ts";
export { AUTH_ACTIONS } from "./rights.ts";

/** The authenticated caller, on `req.user` after `requireUser`. */
export interface User {
  /** The provider's subject: stable user id (also the TURN credential's user). */
  readonly sub: UserId;
  readonly name: string | undefined;
  /** Group/role values read from the configured claim path(s). */
  readonly roles: readonly string[];
  /** How the request authenticated. */
  readonly via: "session" | "bearer" | "none";
  /** The gateway session (cookie callers only). */
  readonly sessionId: SessionId | undefined;
  /** When this authentication stops being valid unless refreshed, milliseconds since the epoch. */
  readonly expiresAt: number;
}

declare module "express-serve-static-core" {
  interface Request {
    /** Set by `auth.requireUser`. */
    user?: User;
  }
}

/** A session as administrators see it. */
export interface SessionView {
  /** Names the session in admin requests; derived from its id, never usable as a credential. */
  readonly ref: string;
  readonly sub: string;
  readonly name: string | undefined;
  readonly roles: readonly string[];
  /** ISO 8601. */
  readonly createdAt: string;
  readonly expiresAt: string;
  /** False while lapsed and waiting for a refresh. */
  readonly live: boolean;
}

/** Why a `watch` callback fired: the session ended/lapsed, the bearer token expired, or a right was withdrawn. */
export type WatchReason = EndReason | "forbidden";

export interface CreateAuthOptions {
  config: AuthConfig;
  /** The gateway's public base URL (`https://video.example.com`, `http://127.0.0.1:8080`). */
  publicUrl: string;
  /** Address the gateway's listener binds (`server.host`). `dev` and `none` refuse non-loopback addresses. */
  listenHost: string;
  /** The current camera list (rights are evaluated against it on every check). */
  cameras: () => readonly CameraConfig[];
  log: Logger;
  /** Milliseconds since the epoch. Default Date.now. */
  clock?: () => number;
  /** How to reach the provider. Default: node:https with `issuerCaFile` trusted. */
  fetch?: FetchLike;
  /** Session sweep interval, milliseconds (tests pass 0 and call `sweep()`). */
  sweepMs?: number;
}

export interface DevUser {
  username: string;
  password: string;
  description: string;
}

export interface Auth {
  readonly mode: AuthConfig["mode"];
  /** Mount at `/auth`. */
  readonly router: Router;
  /** Sets `req.user` or answers 401 (JSON + WWW-Authenticate) / redirects a browser navigation to sign-in. */
  readonly requireUser: RequestHandler;
  /** For unsafe methods of cookie-authenticated requests: same origin and a valid `X-CSRF-Token`, else 403. */
  readonly csrf: RequestHandler;
  /** CSP, frame-ancestors, nosniff, referrer policy, HSTS on TLS. Mount first. */
  readonly securityHeaders: RequestHandler;
  /** The issuer in use (dev: the development provider's URL). */
  readonly issuer: string | undefined;
  /** Development provider's users with their passwords (dev mode only), to print as DEVELOPMENT ONLY. */
  readonly devUsers: readonly DevUser[] | undefined;
  /** Authenticate a raw request (WebSocket upgrade, SSE) from its cookie or bearer token. Throws AuthError. */
  authenticate(req: IncomingMessage): Promise<User>;
  /** `authenticate` plus an Origin check for cookie callers (cross-site WebSocket hijacking). */
  authorizeUpgrade(req: IncomingMessage): Promise<User>;
  can(user: User, cameraId: string, action: AuthAction): boolean;
  /** May the user see this camera at all (any action)? False for unknown cameras. */
  canSee(user: User, cameraId: string): boolean;
  /** Throws NotFoundError when the camera is unknown or invisible to the user, AuthError FORBIDDEN when visible but not allowed. */
  authorizeCamera(user: User, cameraId: string, action: AuthAction): void;
  visibleCameras(user: User): CameraConfig[];
  actions(user: User, cameraId: string): AuthAction[];
  /**
   * Call `cb` once when the user's authentication ends (logout, revocation, lapse without refresh,
   * bearer token expiry) or, with `scope`, when that right is withdrawn (mapping reload, new roles).
   * Returns the unsubscribe function. A watched session is refreshed in the background.
   */
  watch(user: User, cb: (reason: WatchReason) => void, scope?: { cameraId: string; action: AuthAction }): () => void;
  /** Session-level form of `watch`. */
  onRevoke(id: SessionId, cb: (reason: EndReason) => void): () => void;
  /** End one session now (administrator action). */
  revokeSession(id: SessionId): boolean;
  /** The sessions held now, for administrators: each named by a `ref` that is not the session's secret id. */
  listSessions(): SessionView[];
  /** End the session a `listSessions` ref names; false when there is none. */
  revokeSessionRef(ref: string): boolean;
  /** End every session of a subject. */
  revokeUser(sub: string): number;
  /** Apply a new auth section without restart: rights and signing keys. Other changes need a restart (reported). */
  reload(config: AuthConfig): { applied: string[]; needsRestart: string[] };
  /** Session housekeeping now (the timer does it every few seconds); resolves when its refreshes are done. */
  sweep(): Promise<void>;
  close(reason?: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const SESSION_AUDIENCE = "gatehouse-session";
const ANONYMOUS = userId("anonymous");

export async function createAuth(opts: CreateAuthOptions): Promise<Auth> {
  const cfg = opts.config;
  const log = opts.log;
  const clock = opts.clock ?? Date.now;
  const publicUrl = new URL(opts.publicUrl);
  const publicOrigin = publicUrl.origin;
  const base = publicUrl.href.replace(/\/$/, "");
  const tls = publicUrl.protocol === "https:";
  const secureCookies = tls || cfg.cookie.secure === true;
  const cameraList = opts.cameras;

  if (cfg.mode === "dev" || cfg.mode === "none") {
    // Issue 3: the development provider (and no sign-in at all) never serve a network.
    if (!isLoopbackHost(opts.listenHost) || !isLoopbackHost(publicUrl.hostname))
      throw new BadInputError(
        `auth.mode ${cfg.mode} only runs on a loopback address (server.host is ${opts.listenHost}, public URL ${publicOrigin}); ` +
          "configure auth.mode: oidc with your organisation's issuer",
      );
  }

  const cleanups: Array<() => void | Promise<void>> = [];
  let rights = new Rights(cfg.mode === "dev" && cfg.rights.length === 0 ? DEV_RIGHTS : cfg.rights);
  // What a previous run kept (auth.session.file): its sessions, CSRF secret and generated key.
  const kept = cfg.session.file ? readSessionFile(cfg.session.file, log) : undefined;
  let keyring = cfg.session.signingKeys.length ? SessionKeyring.fromFiles(cfg.session.signingKeys) : keptKeyring(kept, log);
  const csrfSecret = kept?.csrfSecret ? Buffer.from(kept.csrfSecret, "base64url") : randomBytes(32);
  const csrfTokens = new CsrfTokens(csrfSecret.length === 32 ? csrfSecret : randomBytes(32));
  const rolesPaths = typeof cfg.rolesClaim === "string" ? [cfg.rolesClaim] : [...cfg.rolesClaim];
  const windowMs = cfg.rateLimit.windowSeconds * 1000;
  const failuresBySource = new RateLimiter({ max: cfg.rateLimit.maxFailuresPerSource, windowMs, clock });
  const loginsBySource = new RateLimiter({ max: cfg.rateLimit.maxLoginsPerSource, windowMs, clock });

  // ---- provider ----------------------------------------------------------------------------------
  let issuer: string | undefined = cfg.issuer;
  let rp: RelyingParty | undefined;
  let bearer: BearerValidator | undefined;
  let logoutTokens: LogoutTokenValidator | undefined;
  let devIdp: RunningOidcProvider | undefined;
  let devUsers: DevUser[] | undefined;
  let ownFetch: ProviderFetch | undefined;

  try {
    const redirectUri = cfg.redirectUrl ?? `${base}/auth/callback`;
    const postLogoutRedirectUri = cfg.postLogoutRedirectUrl ?? `${base}/`;
    let clientSecret = cfg.clientSecret;
    let audience = cfg.bearer.audience;
    let allowInsecure = cfg.allowInsecureIssuer;
    if (cfg.mode === "dev") {
      clientSecret = randomBytes(24).toString("base64url");
      audience ??= `${base}/api`;
      devIdp = await startDevIdp({
        redirectUri,
        postLogoutRedirectUri,
        // Over TLS the development provider cannot check the gateway's (often self-signed) certificate: no back-channel logout then.
        ...(tls ? {} : { backchannelLogoutUri: `${base}/auth/backchannel-logout` }),
        clientId: cfg.clientId,
        clientSecret,
        apiAudience: typeof audience === "string" ? audience : audience[0]!,
        port: cfg.dev.port,
        log: log.child({ component: "dev-idp" }),
        rateLimit: { windowMs, maxPerSource: cfg.rateLimit.maxFailuresPerSource, maxPerAccount: cfg.rateLimit.maxFailuresPerAccount },
        clock,
      });
      cleanups.push(() => devIdp!.close());
      issuer = devIdp.issuer;
      allowInsecure = true; // plain HTTP on loopback only (checked above and by the provider itself)
      devUsers = devIdp.users.map((u) => ({ username: u.username, password: u.password, description: u.description ?? "" }));
      log.warn("DEVELOPMENT identity provider running; never use auth.mode dev in production", { issuer });
    } else if (cfg.mode === "oidc" && allowInsecure && issuer?.startsWith("http:")) {
      log.warn("INSECURE: the identity provider is reached over plain HTTP (auth.allowInsecureIssuer)", { issuer });
    }

    if (cfg.mode !== "none" && issuer) {
      let fetchImpl = opts.fetch;
      if (!fetchImpl) {
        ownFetch = providerFetch({ ca: cfg.issuerCaFile ? readFileSync(cfg.issuerCaFile, "utf8") : undefined });
        cleanups.push(() => ownFetch!.close());
        fetchImpl = ownFetch;
      }
      const method = cfg.clientAuthMethod ?? (clientSecret ? "client_secret_basic" : "none");
      rp = new RelyingParty({
        issuer,
        clientId: cfg.clientId,
        clientSecret,
        clientAuthMethod: method,
        scopes: cfg.scopes,
        redirectUri,
        postLogoutRedirectUri,
        fetch: fetchImpl,
        allowInsecure,
        clock,
        log: log.child({ component: "oidc" }),
      });
      // Discover now so the first sign-in is fast; a provider that is down is not fatal.
      await rp.configuration().catch(() => undefined);
      const jwks = new JwksCache({
        jwksUri: () => rp!.jwksUri(),
        fetch: fetchImpl,
        clock,
        cacheMs: cfg.bearer.jwksCacheSeconds * 1000,
        minRefetchMs: cfg.bearer.jwksMinRefetchSeconds * 1000,
        log: log.child({ component: "jwks" }),
      });
      logoutTokens = new LogoutTokenValidator({
        issuer,
        clientId: cfg.clientId,
        algorithms: cfg.bearer.algorithms,
        clockToleranceSeconds: cfg.bearer.clockToleranceSeconds,
        jwks,
        clock,
      });
      if (audience) {
        bearer = new BearerValidator({
          issuer,
          audience: typeof audience === "string" ? audience : [...audience],
          algorithms: cfg.bearer.algorithms,
          clockToleranceSeconds: cfg.bearer.clockToleranceSeconds,
          jwks,
          clock,
        });
      }
    }
    if (cfg.mode === "none") log.warn("INSECURE: auth.mode none — no sign-in, every caller is an administrator (loopback only)");
  } catch (err) {
    for (const fn of cleanups.reverse()) await fn();
    throw err;
  }

  // ---- sessions ----------------------------------------------------------------------------------
  const scoped = new Set<{ user: User; cameraId: string; action: AuthAction; fire: (r: WatchReason) => void }>();

  const rolesFromTokens = async (t: TokenSet, sub: string): Promise<{ roles: string[]; name: string | undefined }> => {
    const roles = new Set<string>();
    let name: string | undefined;
    for (const source of cfg.claimSources) {
      let claims: unknown;
      if (source === "id_token") claims = t.idClaims;
      else if (source === "userinfo") claims = await rp!.userinfo(t.accessToken, sub);
      else claims = accessTokenClaims(t.accessToken, issuer!, sub);
      for (const r of rolesFromClaims(claims, rolesPaths)) roles.add(r);
      name ??= displayName(claims);
    }
    return { roles: [...roles], name };
  };

  const sessions = new SessionStore({
    ttlMs: cfg.session.ttlSeconds * 1000,
    maxAgeMs: cfg.session.maxAgeSeconds * 1000,
    clock,
    log: log.child({ component: "sessions" }),
    sweepMs: opts.sweepMs,
    refresh: async (rec): Promise<Refreshed> => {
      const t = await rp!.refresh(rec.refreshToken!);
      // A refresh may come without an ID token (OIDC Core §12.2): keep the roles we had then.
      if (t.idClaims && t.idClaims.sub !== rec.sub) throw new AuthError("UNAUTHORIZED", "refresh returned another subject");
      const r = t.idClaims || !cfg.claimSources.includes("id_token") ? await rolesFromTokens(t, rec.sub) : { roles: rec.roles, name: rec.name };
      return { roles: r.roles, name: r.name, refreshToken: t.refreshToken, idToken: t.idToken };
    },
    // New roles may withdraw a right a running stream depends on.
    onRefreshed: () => recheckScoped(),
    onChange: (urgent) => (urgent ? sessionFile?.flush() : sessionFile?.changed()),
  });
  const sessionFile = cfg.session.file
    ? new SessionFileWriter({
        path: cfg.session.file,
        log,
        state: () => ({
          csrfSecret: csrfSecret.toString("base64url"),
          generatedKey: cfg.session.signingKeys.length ? undefined : keyring.signerPem(),
          sessions: sessions.export(),
        }),
      })
    : undefined;
  if (kept) log.info("sessions kept from the previous run", { path: cfg.session.file, sessions: sessions.import(kept.sessions) });
  // Written before the store forgets them (closing ends every session in memory, not in the file).
  cleanups.push(() => sessions.close());
  if (sessionFile) cleanups.push(() => sessionFile.flush());

  const userOf = (rec: SessionRecord): User =>
    Object.freeze({ sub: rec.sub, name: rec.name, roles: rec.roles, via: "session", sessionId: rec.id, expiresAt: rec.expiresAt });

  // ---- pending sign-ins (server-side: the PKCE verifier never leaves the gateway) ----------------
  const pending = new Map<string, { tx: LoginTransaction; returnTo: string; createdAt: number }>();
  const takePending = (id: string | undefined) => {
    if (!id) return undefined;
    const p = pending.get(id);
    pending.delete(id); // single use, whatever the outcome
    if (!p || clock() - p.createdAt > cfg.session.loginTimeoutSeconds * 1000) return undefined;
    return p;
  };
  const addPending = (id: string, v: { tx: LoginTransaction; returnTo: string; createdAt: number }) => {
    pending.set(id, v);
    while (pending.size > cfg.session.maxPendingLogins) {
      const oldest = pending.keys().next();
      if (oldest.done) break;
      pending.delete(oldest.value);
    }
  };

  // ---- cookies -----------------------------------------------------------------------------------
  const sessionCookie = secureCookies ? `__Host-${cfg.cookie.name}` : cfg.cookie.name;
  const loginCookie = secureCookies ? "__Secure-gatehouse_login" : "gatehouse_login";
  const cookieBase = { httpOnly: true, secure: secureCookies, sameSite: cfg.cookie.sameSite, path: "/" } as const;

  const issueCookie = (res: Response, rec: SessionRecord) => {
    const token = keyring.sign({
      iss: publicOrigin,
      aud: SESSION_AUDIENCE,
      sub: rec.sub,
      sid: rec.id,
      iat: Math.floor(clock() / 1000),
      exp: Math.floor(rec.expiresAt / 1000),
    });
    res.cookie(sessionCookie, token, { ...cookieBase, maxAge: Math.max(0, rec.absoluteExpiresAt - clock()) });
  };
  const clearSessionCookie = (res: Response) => res.clearCookie(sessionCookie, cookieBase);

  // ---- authentication ----------------------------------------------------------------------------
  const sourceOf = (req: IncomingMessage) => (req as Request).ip ?? req.socket.remoteAddress ?? "unknown";

  const rateLimited = (source: string) => {
    const wait = failuresBySource.blockedFor(source);
    if (wait > 0) {
      const e = new OverloadError("too many failed sign-in attempts");
      (e as OverloadError & { retryAfter: number }).retryAfter = Math.ceil(wait / 1000);
      return e;
    }
    return undefined;
  };

  type Outcome =
    | { user: User; reissue?: SessionRecord }
    | { error: AuthError | OverloadError; bearer: boolean; clearCookie: boolean };

  async function resolveUser(req: IncomingMessage): Promise<Outcome> {
    if (cfg.mode === "none")
      return { user: Object.freeze({ sub: ANONYMOUS, name: "anonymous", roles: [], via: "none", sessionId: undefined, expiresAt: Infinity }) };
    const source = sourceOf(req);
    const authz = req.headers.authorization;
    if (authz !== undefined) {
      const limited = rateLimited(source);
      if (limited) return { error: limited, bearer: true, clearCookie: false };
      const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(authz.trim());
      if (!m || !bearer) {
        failuresBySource.hit(source);
        return { error: new AuthError("UNAUTHORIZED", m ? "bearer tokens are not accepted" : "malformed Authorization header"), bearer: true, clearCookie: false };
      }
      try {
        const v = await bearer.validate(m[1]!);
        const roles = rolesFromClaims(v.claims, rolesPaths);
        return { user: Object.freeze({ sub: userId(v.sub), name: displayName(v.claims), roles, via: "bearer", sessionId: undefined, expiresAt: v.expiresAt }) };
      } catch (err) {
        failuresBySource.hit(source);
        log.debug("bearer token refused", { source, reason: causeChain(err) });
        return { error: err instanceof AuthError ? err : new AuthError("UNAUTHORIZED", "invalid token", { cause: err }), bearer: true, clearCookie: false };
      }
    }
    const token = parseCookies(req.headers.cookie).get(sessionCookie);
    if (!token) return { error: new AuthError("UNAUTHORIZED", "not signed in"), bearer: false, clearCookie: false };
    let claims: { sid?: unknown; sub?: unknown; exp?: unknown };
    try {
      claims = keyring.verify(token, { issuer: publicOrigin, audience: SESSION_AUDIENCE });
    } catch (err) {
      // A forged or foreign cookie (an old key after a restart also lands here: not counted then).
      const limited = rateLimited(source);
      if (limited) return { error: limited, bearer: false, clearCookie: true };
      if (!(isGatehouseError(err) && /unknown key/.test(err.message))) failuresBySource.hit(source);
      log.debug("session cookie refused", { source, reason: causeChain(err) });
      return { error: new AuthError("UNAUTHORIZED", "invalid session", { cause: err }), bearer: false, clearCookie: true };
    }
    const rec = typeof claims.sid === "string" ? sessions.get(claims.sid as SessionId) : undefined;
    if (!rec || rec.sub !== claims.sub) return { error: new AuthError("UNAUTHORIZED", "session ended"), bearer: false, clearCookie: true };
    if (!(await sessions.ensureLive(rec))) return { error: new AuthError("UNAUTHORIZED", "session expired"), bearer: false, clearCookie: true };
    // Cookie older than the session's current lifetime (refreshed meanwhile, or expired): set a fresh one.
    const cookieExp = typeof claims.exp === "number" ? claims.exp * 1000 : 0;
    const stale = cookieExp <= clock() || rec.expiresAt - cookieExp > 30_000 || !keyring.signedByCurrent(token);
    return stale ? { user: userOf(rec), reissue: rec } : { user: userOf(rec) };
  }

  const fail = (req: Request, res: Response, o: Extract<Outcome, { error: unknown }>) => {
    if (o.clearCookie) clearSessionCookie(res);
    const f = describeFailure(o.error);
    if (f.status === 401 && !o.bearer && isNavigation(req)) {
      res.redirect(303, `/auth/login?return_to=${encodeURIComponent(safeReturnTo(req.originalUrl))}`);
      return;
    }
    if (f.status === 401 && o.bearer) f.bearerError = "invalid_token";
    sendFailure(res, f, { bearer: o.bearer });
  };

  const requireUser: RequestHandler = (req, res, next) => {
    resolveUser(req).then(
      (o) => {
        if ("error" in o) return fail(req, res, o);
        if (o.reissue) issueCookie(res, o.reissue);
        req.user = o.user;
        next();
      },
      (err: unknown) => next(err),
    );
  };

  async function authenticate(req: IncomingMessage): Promise<User> {
    const o = await resolveUser(req);
    if ("error" in o) throw o.error;
    return o.user;
  }

  const csrf: RequestHandler = (req, res, next) => {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return next();
    const user = req.user;
    // Bearer callers carry no ambient credential a third-party page could ride on.
    if (!user || user.via !== "session") return next();
    const presented = req.get("x-csrf-token") ?? (req.body as { _csrf?: unknown } | undefined)?._csrf;
    if (!sameOrigin(req, publicOrigin) || !csrfTokens.verify(user.sessionId!, presented)) {
      log.info("CSRF check failed", { method: req.method, path: req.path, sub: user.sub, origin: req.get("origin") });
      return sendFailure(res, { status: 403, error: "forbidden", reason: "missing or invalid CSRF token" });
    }
    next();
  };

  // ---- rights ------------------------------------------------------------------------------------
  const findCamera = (id: string) => cameraList().find((c) => c.id === id);
  const can = (user: User, id: string, action: AuthAction): boolean => {
    if (user.via === "none") return findCamera(id) !== undefined;
    const cam = findCamera(id);
    return cam !== undefined && rights.can(user, cam, action);
  };
  const canSee = (user: User, id: string): boolean => {
    const cam = findCamera(id);
    return cam !== undefined && (user.via === "none" || rights.canSee(user, cam));
  };
  const visibleCameras = (user: User): CameraConfig[] =>
    user.via === "none" ? [...cameraList()] : cameraList().filter((c) => rights.canSee(user, c));
  const actionsOf = (user: User, id: string): AuthAction[] => {
    const cam = findCamera(id);
    if (!cam) return [];
    return user.via === "none" ? ["live", "playback", "talk", "answer_intercom", "admin"] : rights.actions(user, cam);
  };
  const authorizeCamera = (user: User, id: string, action: AuthAction): void => {
    if (!canSee(user, id)) throw new NotFoundError("no such camera");
    if (!can(user, id, action)) throw new AuthError("FORBIDDEN", `${action} not allowed on this camera`);
  };

  /** Current view of a watched user: a session's roles change with refreshes. */
  const current = (u: User): User => {
    if (u.via !== "session") return u;
    const rec = sessions.get(u.sessionId!);
    return rec ? userOf(rec) : u;
  };
  function recheckScoped(): void {
    for (const w of [...scoped]) if (!can(current(w.user), w.cameraId, w.action)) w.fire("forbidden");
  }

  const watch = (user: User, cb: (reason: WatchReason) => void, scope?: { cameraId: string; action: AuthAction }): (() => void) => {
    let done = false;
    const offs: Array<() => void> = [];
    const off = () => {
      done = true;
      for (const f of offs.splice(0)) f();
    };
    const fire = (reason: WatchReason) => {
      if (done) return;
      off();
      try {
        cb(reason);
      } catch (err) {
        log.warn("watch callback threw", { err });
      }
    };
    if (user.via === "session") offs.push(sessions.onEnd(user.sessionId!, fire));
    else if (user.via === "bearer") {
      // setTimeout caps at 2^31-1 ms; bearer tokens live far shorter.
      const t = setTimeout(() => fire("expired"), Math.min(Math.max(0, user.expiresAt - clock()), 2 ** 31 - 1));
      t.unref();
      offs.push(() => clearTimeout(t));
    }
    if (scope) {
      const entry = { user, cameraId: scope.cameraId, action: scope.action, fire };
      scoped.add(entry);
      offs.push(() => scoped.delete(entry));
    }
    return off;
  };

  // ---- routes ------------------------------------------------------------------------------------
  const router = Router();
  router.use((_req, res, next) => {
    res.set("Cache-Control", "no-store");
    next();
  });

  router.get("/login", (req, res) => {
    const returnTo = safeReturnTo(req.query.return_to);
    if (cfg.mode === "none") return res.redirect(303, returnTo);
    const source = sourceOf(req);
    const wait = Math.max(loginsBySource.blockedFor(source), failuresBySource.blockedFor(source));
    if (wait > 0) {
      res.set("Retry-After", String(Math.ceil(wait / 1000)));
      return sendPage(res, 429, errorPage("Too many attempts", "Too many sign-in attempts from your address. Wait a few minutes, then try again."));
    }
    loginsBySource.hit(source);
    rp!.begin().then(
      ({ url, tx }) => {
        const id = randomBytes(32).toString("base64url");
        addPending(id, { tx, returnTo, createdAt: clock() });
        res.cookie(loginCookie, id, { ...cookieBase, sameSite: "lax", path: "/auth", maxAge: cfg.session.loginTimeoutSeconds * 1000 });
        res.redirect(303, url);
      },
      (err: unknown) => {
        log.warn("cannot start sign-in: identity provider unavailable", { reason: causeChain(err) });
        sendPage(
          res,
          503,
          errorPage(
            "Sign-in is unavailable",
            "The identity provider cannot be reached right now. People already signed in can keep working; try again in a few minutes.",
            { href: `/auth/login?return_to=${encodeURIComponent(returnTo)}`, label: "Try again" },
          ),
        );
      },
    );
  });

  router.get("/callback", (req, res) => {
    if (cfg.mode === "none") return res.redirect(303, "/");
    const source = sourceOf(req);
    const limited = rateLimited(source);
    if (limited) {
      res.set("Retry-After", String((limited as OverloadError & { retryAfter: number }).retryAfter));
      return sendPage(res, 429, errorPage("Too many attempts", "Too many failed sign-in attempts from your address. Wait a few minutes, then try again."));
    }
    const p = takePending(parseCookies(req.headers.cookie).get(loginCookie));
    res.clearCookie(loginCookie, { ...cookieBase, sameSite: "lax", path: "/auth" });
    const again = { href: "/auth/login", label: "Sign in again" };
    if (!p) {
      failuresBySource.hit(source);
      return sendPage(res, 400, errorPage("Sign-in expired", "This sign-in attempt is unknown, already used, or too old.", again));
    }
    const query = req.originalUrl.includes("?") ? req.originalUrl.slice(req.originalUrl.indexOf("?")) : "";
    completeLogin(query, p.tx).then(
      (rec) => {
        // A browser that still held another session gives it up (one session per cookie jar).
        const old = parseCookies(req.headers.cookie).get(sessionCookie);
        if (old) endCookieSession(old, "logout");
        issueCookie(res, rec);
        log.info("signed in", { sub: rec.sub, session: short(rec.id), roles: rec.roles.length });
        res.redirect(303, p.returnTo);
      },
      (err: unknown) => {
        if (isGatehouseError(err) && err.code === "UPSTREAM") {
          log.warn("sign-in failed: identity provider unavailable", { reason: causeChain(err) });
          return sendPage(res, 502, errorPage("Identity provider unreachable", "The identity provider did not answer. Try again in a few minutes.", again));
        }
        failuresBySource.hit(source);
        log.info("sign-in rejected", { source, reason: causeChain(err) });
        sendPage(res, 400, errorPage("Sign-in failed", "The sign-in could not be completed.", again));
      },
    );
  });

  async function completeLogin(query: string, tx: LoginTransaction): Promise<SessionRecord> {
    const t = await rp!.complete(query, tx);
    const sub = t.idClaims?.sub;
    if (typeof sub !== "string" || !sub) throw new AuthError("UNAUTHORIZED", "ID token without subject");
    const { roles, name } = await rolesFromTokens(t, sub);
    const sid = t.idClaims?.sid;
    return sessions.create({ sub: userId(sub), name, roles, refreshToken: t.refreshToken, idToken: t.idToken, providerSid: typeof sid === "string" ? sid : undefined });
  }

  function endCookieSession(token: string, reason: EndReason): SessionRecord | undefined {
    try {
      const c = keyring.verify(token, { issuer: publicOrigin, audience: SESSION_AUDIENCE });
      const rec = typeof c.sid === "string" ? sessions.get(c.sid as SessionId) : undefined;
      if (rec && rec.sub === c.sub) {
        sessions.end(rec.id, reason);
        return rec;
      }
    } catch {
      // not ours: nothing to end
    }
    return undefined;
  }

  const formBody = express.urlencoded({ extended: false, limit: "4kb" });

  router.get("/logout", (req, res, next) => {
    // A confirmation page: sign-out is a POST (CSRF-protected), never a GET a third party could trigger.
    resolveUser(req).then((o) => {
      if ("error" in o || o.user.via !== "session") return res.redirect(303, "/");
      sendPage(
        res,
        200,
        page(
          "Sign out",
          `<h1 id="title">Sign out</h1><form method="post" action="/auth/logout"><input type="hidden" name="_csrf" value="${csrfTokens.token(o.user.sessionId!)}">
<button type="submit" id="logout">Sign out</button></form>`,
        ),
      );
    }, next);
  });

  router.post("/logout", formBody, (req, res, next) => {
    resolveUser(req).then(async (o) => {
      const json = req.accepts(["html", "json"]) === "json";
      const done = (location: string) => (json ? res.json({ redirect: location }) : res.redirect(303, location));
      if ("error" in o || o.user.via !== "session") {
        clearSessionCookie(res);
        return done("/");
      }
      const presented = req.get("x-csrf-token") ?? (req.body as { _csrf?: unknown } | undefined)?._csrf;
      if (!sameOrigin(req, publicOrigin) || !csrfTokens.verify(o.user.sessionId!, presented)) {
        log.info("CSRF check failed on logout", { sub: o.user.sub });
        return sendFailure(res, { status: 403, error: "forbidden", reason: "missing or invalid CSRF token" });
      }
      clearSessionCookie(res);
      const rec = sessions.get(o.user.sessionId!);
      sessions.end(o.user.sessionId!, "logout");
      log.info("signed out", { sub: o.user.sub, session: short(o.user.sessionId!) });
      if (rec?.refreshToken) void rp?.revoke(rec.refreshToken);
      // RP-initiated logout: end the provider's session too, when it offers that.
      const url = (await rp?.endSessionUrl(rec?.idToken)) ?? "/";
      done(url);
    }, next);
  });

  // OpenID Connect Back-Channel Logout 1.0 (backchannel.ts): the provider, server to server.
  // Register `<public URL>/auth/backchannel-logout` as the client's backchannel_logout_uri.
  const logoutBody = express.urlencoded({ extended: false, limit: "20kb" });
  router.post("/backchannel-logout", logoutBody, (req, res) => {
    if (!logoutTokens) return sendFailure(res, { status: 404, error: "not_found", reason: "no identity provider configured" });
    const source = sourceOf(req);
    const limited = rateLimited(source);
    if (limited) return sendFailure(res, describeFailure(limited));
    const token = (req.body as { logout_token?: unknown } | undefined)?.logout_token;
    // §2.8: an invalid request or token is 400, with an OAuth-style error body.
    const refuse = (reason: string) => res.status(400).json({ error: "invalid_request", error_description: reason });
    if (typeof token !== "string" || token.length === 0) {
      failuresBySource.hit(source);
      return refuse("logout_token missing");
    }
    logoutTokens.validate(token).then(
      ({ sub, sid }) => {
        const ended = sessions.endFromProvider(sub, sid, "logged_out_at_provider");
        log.info("back-channel logout from the provider", { sub, sid: sid === undefined ? undefined : short(sid), sessions: ended });
        res.status(200).end();
      },
      (err: unknown) => {
        failuresBySource.hit(source);
        log.info("logout token refused", { source, reason: causeChain(err) });
        refuse("invalid logout token");
      },
    );
  });

  router.get("/me", requireUser, (req, res) => {
    const u = req.user!;
    res.json({
      sub: u.sub,
      name: u.name,
      roles: u.roles,
      via: u.via,
      expiresAt: Number.isFinite(u.expiresAt) ? new Date(u.expiresAt).toISOString() : null,
      csrfToken: u.via === "session" ? csrfTokens.token(u.sessionId!) : null,
      cameras: visibleCameras(u).map((c) => ({ id: c.id, name: c.name ?? c.id, actions: actionsOf(u, c.id) })),
    });
  });

  router.get("/csrf", requireUser, (req, res) => {
    const u = req.user!;
    res.json({ token: u.via === "session" ? csrfTokens.token(u.sessionId!) : null });
  });

  // Unexpected failures inside the auth routes: never a stack trace, never a hint.
  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    log.error("auth route failed", { path: req.path, err });
    const f: AuthFailure = describeFailure(err);
    if (isNavigation(req)) sendPage(res, f.status, errorPage("Sign-in error", "Something went wrong while signing in.", { href: "/auth/login", label: "Try again" }));
    else sendFailure(res, f);
  });

  // ---- lifecycle ---------------------------------------------------------------------------------
  let closing: Promise<void> | undefined;
  const close = (reason = "closed") => {
    closing ??= (async () => {
      log.debug("auth closing", { reason });
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch (err) {
          log.warn("error while closing auth", { err });
        }
      }
      pending.clear();
      scoped.clear();
    })();
    return closing;
  };

  const issuerOrigin = issuer ? new URL(issuer).origin : undefined;
  return {
    mode: cfg.mode,
    router,
    requireUser,
    csrf,
    securityHeaders: securityHeaders({ tls, formActions: issuerOrigin ? [issuerOrigin] : [] }),
    issuer,
    devUsers,
    authenticate,
    async authorizeUpgrade(req) {
      const user = await authenticate(req);
      // Cross-site WebSocket hijacking: a cookie-authenticated upgrade must come from our pages.
      if (user.via === "session" && req.headers.origin !== publicOrigin) throw new AuthError("FORBIDDEN", "cross-origin upgrade");
      return user;
    },
    can,
    canSee,
    authorizeCamera,
    visibleCameras,
    actions: actionsOf,
    watch,
    onRevoke: (id, cb) => sessions.onEnd(id, cb),
    revokeSession: (id) => sessions.end(id, "revoked"),
    listSessions: () =>
      sessions.all().map((rec) => ({
        ref: sessionRef(rec.id),
        sub: rec.sub,
        name: rec.name,
        roles: rec.roles,
        createdAt: new Date(rec.createdAt).toISOString(),
        expiresAt: new Date(rec.expiresAt).toISOString(),
        live: sessions.isLive(rec),
      })),
    revokeSessionRef: (ref) => {
      const rec = sessions.all().find((r) => sessionRef(r.id) === ref);
      return rec !== undefined && sessions.end(rec.id, "revoked");
    },
    revokeUser: (sub) => sessions.endAllOf(sub, "revoked"),
    reload(next) {
      const applied: string[] = [];
      const needsRestart: string[] = [];
      for (const k of ["mode", "issuer", "clientId", "clientSecret", "clientAuthMethod", "scopes", "redirectUrl", "issuerCaFile", "bearer", "cookie", "dev", "rolesClaim", "claimSources"] as const)
        if (JSON.stringify(next[k]) !== JSON.stringify(cfg[k])) needsRestart.push(`auth.${k}`);
      if (next.session.file !== cfg.session.file) needsRestart.push("auth.session.file");
      rights = new Rights(next.mode === "dev" && next.rights.length === 0 ? DEV_RIGHTS : next.rights);
      applied.push("auth.rights");
      if (next.session.signingKeys.length && JSON.stringify(next.session.signingKeys) !== JSON.stringify(cfg.session.signingKeys)) {
        keyring = SessionKeyring.fromFiles(next.session.signingKeys);
        applied.push("auth.session.signingKeys");
      }
      log.info("auth configuration reloaded", { applied, needsRestart });
      recheckScoped();
      return { applied, needsRestart };
    },
    sweep: () => sessions.sweep(),
    close,
    [Symbol.asyncDispose]: () => close("disposed"),
  };
}

/** Claims of the provider's access token when it is a JWT of this issuer for this subject; else undefined. */
function accessTokenClaims(token: string, issuer: string, sub: string): Record<string, unknown> | undefined {
  // Received directly from the token endpoint over TLS (OIDC Core §3.1.3.7 point 6 reasoning): the
  // channel authenticates it; still, only trust it when it names the same issuer and subject.
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const c = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
    return c.iss === issuer && c.sub === sub ? c : undefined;
  } catch {
    return undefined;
  }
}

function displayName(claims: unknown): string | undefined {
  if (!claims || typeof claims !== "object") return undefined;
  const c = claims as Record<string, unknown>;
  for (const k of ["name", "preferred_username", "email"]) if (typeof c[k] === "string" && c[k]) return c[k];
  return undefined;
}

/** The name administrators use for a session: a hash of its id (the id itself is a bearer secret). */
function sessionRef(id: SessionId): string {
  return createHash("sha256").update(id).digest("base64url").slice(0, 16);
}

/** The generated signing key the session file kept, or a fresh one (none kept, or unusable: logged). */
function keptKeyring(kept: SessionFileState | undefined, log: Logger): SessionKeyring {
  if (kept?.generatedKey) {
    try {
      return SessionKeyring.fromGeneratedPem(kept.generatedKey);
    } catch (err) {
      log.warn("the session file's signing key is not usable; everyone signs in again", { err });
    }
  }
  return SessionKeyring.generate();
}
