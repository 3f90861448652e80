/**
 * Sign-in and rights for the gateway: OpenID Connect (authorization code + PKCE + state + nonce),
 * the gateway's own short-lived signed session cookie backed by server-side sessions, provider JWT
 * access tokens as `Authorization: Bearer`, and per-camera rights mapped from the provider's claims.
 *
 * Three parts: the identity provider set-up (provider.ts), the core without HTTP (core.ts:
 * resolving a user, pending sign-ins, rights, watching sessions, events) and the routes
 * (routes.ts). This file puts them together.
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
 * // events: auth.observer.on("sessionEnded", ({ ref, sub, reason }) => ...)   (events.ts)
 * ```
 */
import type { IncomingMessage } from "node:http";
import type { RequestHandler, Router } from "express";
import type { SessionId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import type { AuthConfig } from "../../config/sections/auth.ts";
import { AuthCore, type SessionMirror } from "./core.ts";
import type { AuthObserver } from "./events.ts";
import type { FetchLike } from "./fetch.ts";
import { securityHeaders } from "./http.ts";
import { setUpProvider } from "./provider.ts";
import type { AuthAction } from "./rights.ts";
import type { PersistedSession } from "./sessions.ts";
import { authRoutes } from "./routes.ts";
import type { DevUser, EndReason, SessionView, User, WatchReason } from "./types.ts";

export type { AuthAction } from "./rights.ts";
export type { DevUser, EndReason, SessionView, User, WatchReason } from "./types.ts";
export type { AuthEvents, AuthObserver, SessionEndedEvent, SignedInEvent, SignInFailedEvent, SignInFailure } from "./events.ts";
export { AUTH_ACTIONS } from "./rights.ts";
export { sessionRef } from "./core.ts";
export type { SessionMirror } from "./core.ts";
export type { PersistedSession } from "./sessions.ts";

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
  /** Sessions shared with the other gateways of a cluster (gateway/cluster/). */
  mirror?: SessionMirror;
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
  /** Sign-ins, sign-in failures and ended sessions (sign-out is `sessionEnded` with reason `logout`). */
  readonly observer: AuthObserver;
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
  /** Every session; `current` (the asking browser's session id) is marked. */
  listSessions(current?: SessionId): SessionView[];
  /** End the session a `listSessions` ref names; false when there is none. */
  revokeSessionRef(ref: string): boolean;
  /** End every session of a subject. */
  revokeUser(sub: string): number;
  /** The user of a session another gateway of the cluster vouches for (a forwarded request); undefined when the session is unknown or over. */
  sessionUser(id: SessionId): Promise<User | undefined>;
  /** A session ended on another gateway of the cluster: end it here too (false when not held here). */
  endFromCluster(ref: string, reason: EndReason): boolean;
  /** The provider ended sessions at another gateway of the cluster: end the matching ones held here. */
  endFromProviderCluster(sub: string | undefined, sid: string | undefined, reason: EndReason): number;
  /** The sessions held here, as persisted (a cluster re-shares them after a Redis outage). */
  heldSessions(): PersistedSession[];
  /** Apply a new auth section without restart: rights and signing keys. Other changes need a restart (reported). */
  reload(config: AuthConfig): { applied: string[]; needsRestart: string[] };
  /** Session housekeeping now (the timer does it every few seconds); resolves when its refreshes are done. */
  sweep(): Promise<void>;
  close(reason?: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function createAuth(opts: CreateAuthOptions): Promise<Auth> {
  const cfg = opts.config;
  const log = opts.log;
  const clock = opts.clock ?? Date.now;
  const publicUrl = new URL(opts.publicUrl);
  const publicOrigin = publicUrl.origin;
  const tls = publicUrl.protocol === "https:";

  const provider = await setUpProvider({ config: cfg, base: publicUrl.href.replace(/\/$/, ""), listenHost: opts.listenHost, clock, log, fetch: opts.fetch });
  let core: AuthCore;
  try {
    core = new AuthCore({ config: cfg, publicOrigin, provider, cameras: opts.cameras, clock, log, sweepMs: opts.sweepMs, mirror: opts.mirror });
  } catch (err) {
    await provider.close();
    throw err;
  }
  const routes = authRoutes({ core, config: cfg, publicOrigin, secureCookies: tls || cfg.cookie.secure === true, log });
  const issuerOrigin = provider.issuer ? new URL(provider.issuer).origin : undefined;

  return {
    mode: cfg.mode,
    router: routes.router,
    requireUser: routes.requireUser,
    csrf: routes.csrf,
    securityHeaders: securityHeaders({ tls, formActions: issuerOrigin ? [issuerOrigin] : [] }),
    issuer: provider.issuer,
    devUsers: provider.devUsers,
    observer: core.observer,
    authenticate: routes.authenticate,
    authorizeUpgrade: routes.authorizeUpgrade,
    can: (user, id, action) => core.can(user, id, action),
    canSee: (user, id) => core.canSee(user, id),
    authorizeCamera: (user, id, action) => core.authorizeCamera(user, id, action),
    visibleCameras: (user) => core.visibleCameras(user),
    actions: (user, id) => core.actions(user, id),
    watch: (user, cb, scope) => core.watch(user, cb, scope),
    onRevoke: (id, cb) => core.onRevoke(id, cb),
    revokeSession: (id) => core.revokeSession(id),
    listSessions: (current) => core.listSessions(current),
    revokeSessionRef: (ref) => core.revokeSessionRef(ref),
    revokeUser: (sub) => core.revokeUser(sub),
    sessionUser: (id) => core.sessionUser(id),
    endFromCluster: (ref, reason) => core.endFromCluster(ref, reason),
    endFromProviderCluster: (sub, sid, reason) => core.endFromProviderCluster(sub, sid, reason),
    heldSessions: () => core.heldSessions(),
    reload: (next) => core.reload(next),
    sweep: () => core.sweep(),
    close: (reason) => core.close(reason),
    [Symbol.asyncDispose]: () => core.close("disposed"),
  };
}
