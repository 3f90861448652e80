/**
 * Sign-in without HTTP: who a request's credentials belong to, the sign-ins in progress, rights on
 * cameras, watching sessions for the streams that depend on them, and the events other rooms act
 * on (`observer`). The routes (routes.ts) turn requests into calls here and outcomes into answers;
 * nothing in this file knows about Express, cookies or status codes.
 *
 * Decisions
 * - The session token (a JWT in the cookie) carries `sid`, `sub`, `exp` = the session's current
 *   lifetime; the server-side session is authoritative (logout and provider-side revocation take
 *   effect at once). An expired token goes through refresh: the session is renewed with the
 *   provider's refresh token (or already was, in the background, because a stream watches it) and a
 *   fresh token is issued; without a refresh token the user signs in again.
 * - Rights are re-evaluated on every check from the session's roles (refreshed with the tokens) and
 *   the current mapping; `reload()` swaps the mapping atomically and ends watched streams that lost
 *   their right.
 * - Sign-in failures are limited per source address (callback failures, invalid bearer tokens,
 *   forged session tokens); the development provider limits its own accounts.
 * - Outcomes are typed results (`Resolution`, `SignInStart`, `SignInResult`), never errors to
 *   interpret by their text.
 */
import { createHash, randomBytes } from "node:crypto";
import { AuthError, isGatehouseError, NotFoundError, OverloadError, RateLimitedError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import { userId, type SessionId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import type { AuthConfig } from "../../config/sections/auth.ts";
import type { AuthEvents, AuthObserver, SignInFailure } from "./events.ts";
import { causeChain, CsrfTokens } from "./http.ts";
import { SessionKeyring, UnknownSigningKeyError } from "./keys.ts";
import type { Provider } from "./provider.ts";
import { RateLimiter } from "./rate-limit.ts";
import type { LoginTransaction, TokenSet } from "./relying-party.ts";
import { DEV_RIGHTS, Rights, rolesFromClaims, type AuthAction } from "./rights.ts";
import { readSessionFile, SessionFileWriter, type SessionFileState } from "./session-file.ts";
import { SessionStore, short, type PersistedSession, type Refreshed, type SessionRecord } from "./sessions.ts";
import type { EndReason, SessionView, User, WatchReason } from "./types.ts";
import { describeUserAgent } from "./user-agent.ts";

/** The `aud` of the gateway's own session tokens. */
const SESSION_AUDIENCE = "gatehouse-session";
const ANONYMOUS = userId("anonymous");

export interface AuthCoreOptions {
  config: AuthConfig;
  /** The gateway's public origin: the issuer of its session tokens. */
  publicOrigin: string;
  provider: Provider;
  /** The current camera list (rights are evaluated against it on every check). */
  cameras: () => readonly CameraConfig[];
  /** Milliseconds since the epoch. */
  clock: () => number;
  log: Logger;
  /** Session sweep interval, milliseconds (tests pass 0 and call `sweep()`). */
  sweepMs?: number | undefined;
  /** Sessions shared with other gateways (gateway/cluster/): absent, sessions live in this process (and `auth.session.file`). */
  mirror?: SessionMirror | undefined;
}

/**
 * Where sessions are shared with other gateways of a cluster. Sessions are created, refreshed and
 * ended here as always; the mirror is told, and a session this gateway does not hold is asked of it.
 */
export interface SessionMirror {
  /**
   * The session with this id, kept by another gateway; undefined when none (or it was ended).
   * Throws OverloadError when the cluster cannot be asked now.
   */
  load(id: SessionId): Promise<PersistedSession | undefined>;
  /** A session was created or refreshed here. */
  saved(session: PersistedSession): void;
  /**
   * Sessions of a subject (with `sid`: those from that provider session) were ended here by the
   * provider (back-channel logout) or an administrator: the cluster ends them everywhere, held or not.
   */
  endedAll(sub: string | undefined, sid: string | undefined, reason: EndReason): void;
  /** The signing key (PKCS#8 PEM) and CSRF secret every gateway of the cluster uses when none is configured. */
  readonly secrets?: { signingKeyPem: string; csrfSecret: Buffer } | undefined;
  /** Issuer of the session tokens (the same on every gateway of the cluster). */
  readonly tokenIssuer?: string | undefined;
}

/** What a request presented. */
export interface Credentials {
  /** The `Authorization` header as sent, if any. */
  readonly authorization: string | undefined;
  /** The gateway's session token (from its cookie), if any. */
  readonly sessionToken: string | undefined;
  /** The client's address (rate limits). */
  readonly source: string;
}

/** Who the credentials belong to. */
export type Resolution =
  | {
      readonly ok: true;
      readonly user: User;
      /** Set when the presented session token is stale (refreshed session, rotated key): issue a fresh one. */
      readonly reissue?: SessionRecord;
    }
  | {
      readonly ok: false;
      /** OverloadError: the sessions shared with other gateways cannot be read now (503). */
      readonly error: AuthError | RateLimitedError | OverloadError;
      /** The caller presented a bearer token (RFC 6750 `error=` in the challenge). */
      readonly bearer: boolean;
      /** The presented session token is useless: the client should forget it. */
      readonly clearSessionToken: boolean;
    };

export type SignInStart =
  | { readonly ok: true; readonly url: string; readonly attemptId: string }
  | { readonly ok: false; readonly failure: "rate_limited"; readonly retryAfterSeconds: number }
  | { readonly ok: false; readonly failure: "provider_unavailable" };

export type SignInResult =
  | { readonly ok: true; readonly session: SessionRecord; readonly returnTo: string }
  | { readonly ok: false; readonly failure: SignInFailure; readonly retryAfterSeconds?: number };

export type BackchannelResult =
  | { readonly ok: true; readonly ended: number }
  | { readonly ok: false; readonly failure: "unsupported" | "missing_token" | "invalid_token" }
  | { readonly ok: false; readonly failure: "rate_limited"; readonly error: RateLimitedError };

interface PendingSignIn {
  tx: LoginTransaction;
  returnTo: string;
  createdAt: number;
}

interface ScopedWatch {
  user: User;
  cameraId: string;
  action: AuthAction;
  fire: (r: WatchReason) => void;
}

export class AuthCore {
  readonly mode: AuthConfig["mode"];
  /** Sign-ins, sign-in failures and ended sessions, as they happen. */
  readonly observer: AuthObserver;

  private cfg: AuthConfig;
  private readonly publicOrigin: string;
  private readonly provider: Provider;
  private readonly cameras: () => readonly CameraConfig[];
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly events: SafeEmitter<AuthEvents>;
  private rights: Rights;
  private keyring: SessionKeyring;
  private readonly csrfSecret: Buffer;
  private readonly csrf: CsrfTokens;
  private readonly rolesPaths: readonly string[];
  private readonly failuresBySource: RateLimiter;
  private readonly loginsBySource: RateLimiter;
  private readonly sessions: SessionStore;
  private readonly sessionFile: SessionFileWriter | undefined;
  private readonly mirror: SessionMirror | undefined;
  /** `iss` of the session tokens: the public origin, or the cluster's common issuer. */
  private readonly tokenIssuer: string;
  private readonly pending = new Map<string, PendingSignIn>();
  private readonly scoped = new Set<ScopedWatch>();
  private closing: Promise<void> | undefined;

  constructor(opts: AuthCoreOptions) {
    const cfg = (this.cfg = opts.config);
    this.mode = cfg.mode;
    this.publicOrigin = opts.publicOrigin;
    this.mirror = opts.mirror;
    this.tokenIssuer = opts.mirror?.tokenIssuer ?? opts.publicOrigin;
    this.provider = opts.provider;
    this.cameras = opts.cameras;
    this.clock = opts.clock;
    this.log = opts.log;
    this.events = new SafeEmitter<AuthEvents>((event, err) => this.log.warn("auth event listener threw", { event, err }));
    this.observer = this.events;
    this.rights = rightsOf(cfg);
    // What a previous run kept (auth.session.file): its sessions, CSRF secret and generated key.
    const kept = cfg.session.file ? readSessionFile(cfg.session.file, this.log) : undefined;
    const shared = opts.mirror?.secrets;
    this.keyring = cfg.session.signingKeys.length
      ? SessionKeyring.fromFiles(cfg.session.signingKeys)
      : shared
        ? SessionKeyring.fromGeneratedPem(shared.signingKeyPem)
        : keptKeyring(kept, this.log);
    const keptSecret = shared?.csrfSecret ?? (kept?.csrfSecret ? Buffer.from(kept.csrfSecret, "base64url") : undefined);
    this.csrfSecret = keptSecret?.length === 32 ? keptSecret : randomBytes(32);
    this.csrf = new CsrfTokens(this.csrfSecret);
    this.rolesPaths = typeof cfg.rolesClaim === "string" ? [cfg.rolesClaim] : [...cfg.rolesClaim];
    const windowMs = cfg.rateLimit.windowSeconds * 1000;
    this.failuresBySource = new RateLimiter({ max: cfg.rateLimit.maxFailuresPerSource, windowMs, clock: this.clock });
    this.loginsBySource = new RateLimiter({ max: cfg.rateLimit.maxLoginsPerSource, windowMs, clock: this.clock });

    this.sessions = new SessionStore({
      ttlMs: cfg.session.ttlSeconds * 1000,
      maxAgeMs: cfg.session.maxAgeSeconds * 1000,
      clock: this.clock,
      log: this.log.child({ component: "sessions" }),
      sweepMs: opts.sweepMs,
      refresh: (rec) => this.refreshShared(rec),
      onSaved: (rec) => this.mirror?.saved(this.sessions.persisted(rec)),
      // New roles may withdraw a right a running stream depends on.
      onRefreshed: () => this.recheckScoped(),
      onChange: (urgent) => (urgent ? this.sessionFile?.flush() : this.sessionFile?.changed()),
      onEnded: (rec, reason) =>
        this.events.emit("sessionEnded", { sessionId: rec.id, ref: sessionRef(rec.id), sub: rec.sub, reason, at: this.clock() }),
    });
    this.sessionFile = cfg.session.file
      ? new SessionFileWriter({
          path: cfg.session.file,
          log: this.log,
          state: () => ({
            csrfSecret: this.csrfSecret.toString("base64url"),
            generatedKey: this.cfg.session.signingKeys.length ? undefined : this.keyring.signerPem(),
            sessions: this.sessions.export(),
          }),
        })
      : undefined;
    if (kept) this.log.info("sessions kept from the previous run", { path: cfg.session.file, sessions: this.sessions.import(kept.sessions) });
  }

  /** The issuer in use (dev: the development provider's URL). */
  get issuer(): string | undefined {
    return this.provider.issuer;
  }

  // ---- resolving a user ------------------------------------------------------------------------

  /** Who presented these credentials: a bearer token first, else the session token. */
  async resolve(c: Credentials): Promise<Resolution> {
    if (this.mode === "none")
      return { ok: true, user: Object.freeze({ sub: ANONYMOUS, name: "anonymous", roles: [], via: "none", sessionId: undefined, expiresAt: Infinity }) };
    if (c.authorization !== undefined) return this.resolveBearer(c.authorization, c.source);
    const token = c.sessionToken;
    if (!token) return { ok: false, error: new AuthError("UNAUTHORIZED", "not signed in"), bearer: false, clearSessionToken: false };
    let claims: { sid?: unknown; sub?: unknown; exp?: unknown };
    try {
      claims = await this.keyring.verify(token, { issuer: this.tokenIssuer, audience: SESSION_AUDIENCE });
    } catch (err) {
      // A forged or foreign token (an old key after a restart also lands here: not counted then).
      const limited = this.rateLimited(c.source);
      if (limited) return { ok: false, error: limited, bearer: false, clearSessionToken: true };
      if (!(err instanceof UnknownSigningKeyError)) this.failuresBySource.hit(c.source);
      this.log.debug("session cookie refused", { source: c.source, reason: causeChain(err) });
      return { ok: false, error: new AuthError("UNAUTHORIZED", "invalid session", { cause: err }), bearer: false, clearSessionToken: true };
    }
    let rec: SessionRecord | undefined;
    try {
      rec = typeof claims.sid === "string" ? await this.find(claims.sid as SessionId) : undefined;
    } catch (err) {
      // The cluster cannot be asked: the cookie may well be good, so it is kept (503, not 401).
      if (err instanceof OverloadError) return { ok: false, error: err, bearer: false, clearSessionToken: false };
      throw err;
    }
    if (!rec || rec.sub !== claims.sub) return { ok: false, error: new AuthError("UNAUTHORIZED", "session ended"), bearer: false, clearSessionToken: true };
    if (!(await this.sessions.ensureLive(rec)))
      return { ok: false, error: new AuthError("UNAUTHORIZED", "session expired"), bearer: false, clearSessionToken: true };
    // For the sessions page: when and from where it was last used (memory only, not persisted per request).
    rec.lastSeenAt = this.clock();
    rec.address = c.source;
    // Token older than the session's current lifetime (refreshed meanwhile, or expired): issue a fresh one.
    const tokenExp = typeof claims.exp === "number" ? claims.exp * 1000 : 0;
    const stale = tokenExp <= this.clock() || rec.expiresAt - tokenExp > 30_000 || !this.keyring.signedByCurrent(token);
    return stale ? { ok: true, user: userOf(rec), reissue: rec } : { ok: true, user: userOf(rec) };
  }

  private async resolveBearer(authorization: string, source: string): Promise<Resolution> {
    const limited = this.rateLimited(source);
    if (limited) return { ok: false, error: limited, bearer: true, clearSessionToken: false };
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization.trim());
    const bearer = this.provider.bearer;
    if (!m || !bearer) {
      this.failuresBySource.hit(source);
      const error = new AuthError("UNAUTHORIZED", m ? "bearer tokens are not accepted" : "malformed Authorization header");
      return { ok: false, error, bearer: true, clearSessionToken: false };
    }
    try {
      const v = await bearer.validate(m[1]!);
      const roles = rolesFromClaims(v.claims, this.rolesPaths);
      return { ok: true, user: Object.freeze({ sub: userId(v.sub), name: displayName(v.claims), roles, via: "bearer", sessionId: undefined, expiresAt: v.expiresAt }) };
    } catch (err) {
      this.failuresBySource.hit(source);
      this.log.debug("bearer token refused", { source, reason: causeChain(err) });
      const error = err instanceof AuthError ? err : new AuthError("UNAUTHORIZED", "invalid token", { cause: err });
      return { ok: false, error, bearer: true, clearSessionToken: false };
    }
  }

  /** A signed session token for the session's current lifetime (the cookie's value). */
  sessionToken(rec: SessionRecord): Promise<string> {
    return this.keyring.sign({
      iss: this.tokenIssuer,
      aud: SESSION_AUDIENCE,
      sub: rec.sub,
      sid: rec.id,
      iat: Math.floor(this.clock() / 1000),
      exp: Math.floor(rec.expiresAt / 1000),
    });
  }

  /** Milliseconds the session may still be revived (the cookie's lifetime). */
  remainingMs(rec: SessionRecord): number {
    return Math.max(0, rec.absoluteExpiresAt - this.clock());
  }

  /** End the session a (valid) session token names; nothing when the token is not ours. */
  async endByToken(token: string, reason: EndReason): Promise<SessionRecord | undefined> {
    try {
      const c = await this.keyring.verify(token, { issuer: this.tokenIssuer, audience: SESSION_AUDIENCE });
      const rec = typeof c.sid === "string" ? await this.find(c.sid as SessionId) : undefined;
      if (rec && rec.sub === c.sub) {
        this.sessions.end(rec.id, reason);
        return rec;
      }
    } catch {
      // not ours: nothing to end
    }
    return undefined;
  }

  /** The source's failure budget is spent: the error to answer with; else undefined. */
  rateLimited(source: string): RateLimitedError | undefined {
    const wait = this.failuresBySource.blockedFor(source);
    if (wait <= 0) return undefined;
    return new RateLimitedError("too many failed sign-in attempts", { retryAfterSeconds: Math.ceil(wait / 1000) });
  }

  // ---- CSRF --------------------------------------------------------------------------------------

  csrfToken(id: SessionId): string {
    return this.csrf.token(id);
  }

  verifyCsrf(id: SessionId, presented: unknown): boolean {
    return this.csrf.verify(id, presented);
  }

  // ---- pending sign-ins (server-side: the PKCE verifier never leaves the gateway) ----------------

  /** Start a sign-in at the provider: the URL to send the browser to, and the attempt's id (its cookie). */
  async beginSignIn(source: string, returnTo: string): Promise<SignInStart> {
    const wait = Math.max(this.loginsBySource.blockedFor(source), this.failuresBySource.blockedFor(source));
    if (wait > 0) {
      this.failed("rate_limited", source);
      return { ok: false, failure: "rate_limited", retryAfterSeconds: Math.ceil(wait / 1000) };
    }
    this.loginsBySource.hit(source);
    let begun: { url: string; tx: LoginTransaction };
    try {
      begun = await this.provider.rp!.begin();
    } catch (err) {
      this.log.warn("cannot start sign-in: identity provider unavailable", { reason: causeChain(err) });
      this.failed("provider_unavailable", source);
      return { ok: false, failure: "provider_unavailable" };
    }
    const attemptId = randomBytes(32).toString("base64url");
    this.pending.set(attemptId, { tx: begun.tx, returnTo, createdAt: this.clock() });
    while (this.pending.size > this.cfg.session.maxPendingLogins) {
      const oldest = this.pending.keys().next();
      if (oldest.done) break;
      this.pending.delete(oldest.value);
    }
    return { ok: true, url: begun.url, attemptId };
  }

  /** Finish the sign-in `attemptId` names with the provider's callback query (`?code=…&state=…`). */
  async completeSignIn(attemptId: string | undefined, query: string, source: string, userAgent?: string): Promise<SignInResult> {
    const limited = this.rateLimited(source);
    if (limited) {
      this.failed("rate_limited", source);
      return { ok: false, failure: "rate_limited", retryAfterSeconds: limited.retryAfterSeconds ?? 60 };
    }
    const p = this.takePending(attemptId);
    if (!p) {
      this.failuresBySource.hit(source);
      this.failed("unknown_attempt", source);
      return { ok: false, failure: "unknown_attempt" };
    }
    let rec: SessionRecord;
    try {
      rec = await this.createSession(query, p.tx, { userAgent, address: source });
    } catch (err) {
      if (isGatehouseError(err) && err.code === "UPSTREAM") {
        this.log.warn("sign-in failed: identity provider unavailable", { reason: causeChain(err) });
        this.failed("provider_unavailable", source);
        return { ok: false, failure: "provider_unavailable" };
      }
      this.failuresBySource.hit(source);
      this.log.info("sign-in rejected", { source, reason: causeChain(err) });
      this.failed("rejected", source);
      return { ok: false, failure: "rejected" };
    }
    this.log.info("signed in", { sub: rec.sub, session: short(rec.id), roles: rec.roles.length });
    this.events.emit("signedIn", { sessionId: rec.id, ref: sessionRef(rec.id), sub: rec.sub, name: rec.name, roles: rec.roles, source, at: this.clock() });
    return { ok: true, session: rec, returnTo: p.returnTo };
  }

  private takePending(id: string | undefined): PendingSignIn | undefined {
    if (!id) return undefined;
    const p = this.pending.get(id);
    this.pending.delete(id); // single use, whatever the outcome
    if (!p || this.clock() - p.createdAt > this.cfg.session.loginTimeoutSeconds * 1000) return undefined;
    return p;
  }

  private failed(reason: SignInFailure, source: string): void {
    this.events.emit("signInFailed", { reason, source, at: this.clock() });
  }

  private async createSession(query: string, tx: LoginTransaction, client: { userAgent: string | undefined; address: string }): Promise<SessionRecord> {
    const t = await this.provider.rp!.complete(query, tx);
    const sub = t.idClaims?.sub;
    if (typeof sub !== "string" || !sub) throw new AuthError("UNAUTHORIZED", "ID token without subject");
    const { roles, name } = await this.rolesFromTokens(t, sub);
    const sid = t.idClaims?.sid;
    return this.sessions.create({
      sub: userId(sub),
      name,
      roles,
      refreshToken: t.refreshToken,
      idToken: t.idToken,
      providerSid: typeof sid === "string" ? sid : undefined,
      ...client,
    });
  }

  private async rolesFromTokens(t: TokenSet, sub: string): Promise<{ roles: string[]; name: string | undefined }> {
    const roles = new Set<string>();
    let name: string | undefined;
    for (const source of this.cfg.claimSources) {
      let claims: unknown;
      if (source === "id_token") claims = t.idClaims;
      else if (source === "userinfo") claims = await this.provider.rp!.userinfo(t.accessToken, sub);
      else claims = accessTokenClaims(t.accessToken, this.provider.issuer!, sub);
      for (const r of rolesFromClaims(claims, this.rolesPaths)) roles.add(r);
      name ??= displayName(claims);
    }
    return { roles: [...roles], name };
  }

  /**
   * A session held here, or one another gateway of the cluster created (taken in here from then
   * on). Throws OverloadError when the cluster cannot be asked.
   */
  private async find(id: SessionId): Promise<SessionRecord | undefined> {
    const rec = this.sessions.get(id);
    if (rec || !this.mirror) return rec;
    const kept = await this.mirror.load(id);
    if (!kept || kept.id !== id) return undefined;
    this.sessions.import([kept]);
    return this.sessions.get(id);
  }

  /**
   * The session of a request another gateway of the cluster forwarded (it authenticated the
   * caller; the session is checked here again). Undefined when the session is unknown or over.
   */
  async sessionUser(id: SessionId): Promise<User | undefined> {
    const rec = await this.find(id);
    if (!rec || !(await this.sessions.ensureLive(rec))) return undefined;
    return userOf(rec);
  }

  /** In a cluster, another gateway may have refreshed the session already: take its result rather than spend the refresh token twice. */
  private async refreshShared(rec: SessionRecord): Promise<Refreshed> {
    if (this.mirror) {
      try {
        const kept = await this.mirror.load(rec.id);
        if (kept && kept.expiresAt > rec.expiresAt + 1000)
          return { roles: kept.roles, name: kept.name, refreshToken: kept.refreshToken, idToken: kept.idToken };
      } catch {
        // the cluster cannot be asked: refresh with the token this gateway holds
      }
    }
    return this.refreshAtProvider(rec);
  }

  /**
   * A session ended on another gateway of the cluster (sign-out, revocation, back-channel
   * logout): end it here too, with its streams. By its non-secret ref; false when not held here.
   */
  endFromCluster(ref: string, reason: EndReason): boolean {
    const rec = this.sessions.all().find((r) => sessionRef(r.id) === ref);
    return rec !== undefined && this.sessions.end(rec.id, reason);
  }

  /** The provider ended sessions (back-channel logout) at another gateway of the cluster: the matching ones held here end too. */
  endFromProviderCluster(sub: string | undefined, sid: string | undefined, reason: EndReason): number {
    return this.sessions.endFromProvider(sub, sid, reason);
  }

  /** The sessions held here (a cluster shares them again and checks them against its revocations after an outage). */
  heldSessions(): PersistedSession[] {
    return this.sessions.export();
  }

  private async refreshAtProvider(rec: SessionRecord): Promise<Refreshed> {
    const t = await this.provider.rp!.refresh(rec.refreshToken!);
    // A refresh may come without an ID token (OIDC Core §12.2): keep the roles we had then.
    if (t.idClaims && t.idClaims.sub !== rec.sub) throw new AuthError("UNAUTHORIZED", "refresh returned another subject");
    const r = t.idClaims || !this.cfg.claimSources.includes("id_token") ? await this.rolesFromTokens(t, rec.sub) : { roles: rec.roles, name: rec.name };
    return { roles: r.roles, name: r.name, refreshToken: t.refreshToken, idToken: t.idToken };
  }

  // ---- signing out -------------------------------------------------------------------------------

  /**
   * The user signs out of this session: it ends (`logout`), the provider's refresh token is revoked,
   * and the provider's end-session URL (RP-initiated logout) is returned when it offers one.
   */
  async signOut(id: SessionId): Promise<string | undefined> {
    const rec = this.sessions.get(id);
    this.sessions.end(id, "logout");
    if (!rec) return undefined;
    this.log.info("signed out", { sub: rec.sub, session: short(id) });
    if (rec.refreshToken) void this.provider.rp?.revoke(rec.refreshToken);
    return this.provider.rp?.endSessionUrl(rec.idToken);
  }

  /** OpenID Connect Back-Channel Logout 1.0 (backchannel.ts): the provider ends sessions, server to server. */
  async backchannelLogout(token: unknown, source: string): Promise<BackchannelResult> {
    const validator = this.provider.logoutTokens;
    if (!validator) return { ok: false, failure: "unsupported" };
    const limited = this.rateLimited(source);
    if (limited) return { ok: false, failure: "rate_limited", error: limited };
    if (typeof token !== "string" || token.length === 0) {
      this.failuresBySource.hit(source);
      return { ok: false, failure: "missing_token" };
    }
    try {
      const { sub, sid } = await validator.validate(token);
      const ended = this.sessions.endFromProvider(sub, sid, "logged_out_at_provider");
      this.mirror?.endedAll(sub, sid, "logged_out_at_provider");
      this.log.info("back-channel logout from the provider", { sub, sid: sid === undefined ? undefined : short(sid), sessions: ended });
      return { ok: true, ended };
    } catch (err) {
      this.failuresBySource.hit(source);
      this.log.info("logout token refused", { source, reason: causeChain(err) });
      return { ok: false, failure: "invalid_token" };
    }
  }

  // ---- rights ------------------------------------------------------------------------------------

  can(user: User, id: string, action: AuthAction): boolean {
    const cam = this.findCamera(id);
    if (user.via === "none") return cam !== undefined;
    return cam !== undefined && this.rights.can(user, cam, action);
  }

  /** May the user see this camera at all (any action)? False for unknown cameras. */
  canSee(user: User, id: string): boolean {
    const cam = this.findCamera(id);
    return cam !== undefined && (user.via === "none" || this.rights.canSee(user, cam));
  }

  visibleCameras(user: User): CameraConfig[] {
    return user.via === "none" ? [...this.cameras()] : this.cameras().filter((c) => this.rights.canSee(user, c));
  }

  actions(user: User, id: string): AuthAction[] {
    const cam = this.findCamera(id);
    if (!cam) return [];
    return user.via === "none" ? ["live", "playback", "talk", "answer_intercom", "admin"] : this.rights.actions(user, cam);
  }

  /**
   * A camera the user may not see answers exactly like an unknown one (NotFoundError), so rights
   * never reveal which cameras exist; visible but not allowed is AuthError FORBIDDEN.
   */
  authorizeCamera(user: User, id: string, action: AuthAction): void {
    if (!this.canSee(user, id)) throw new NotFoundError("no such camera");
    if (!this.can(user, id, action)) throw new AuthError("FORBIDDEN", `${action} not allowed on this camera`);
  }

  private findCamera(id: string): CameraConfig | undefined {
    return this.cameras().find((c) => c.id === id);
  }

  // ---- watching sessions -------------------------------------------------------------------------

  /**
   * Call `cb` once when the user's authentication ends (logout, revocation, lapse without refresh,
   * bearer token expiry) or, with `scope`, when that right is withdrawn (mapping reload, new roles).
   * Returns the unsubscribe function. A watched session is refreshed in the background.
   */
  watch(user: User, cb: (reason: WatchReason) => void, scope?: { cameraId: string; action: AuthAction }): () => void {
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
        this.log.warn("watch callback threw", { err });
      }
    };
    if (user.via === "session") offs.push(this.sessions.onEnd(user.sessionId!, fire));
    else if (user.via === "bearer") {
      // setTimeout caps at 2^31-1 ms; bearer tokens live far shorter.
      const t = setTimeout(() => fire("expired"), Math.min(Math.max(0, user.expiresAt - this.clock()), 2 ** 31 - 1));
      t.unref();
      offs.push(() => clearTimeout(t));
    }
    if (scope) {
      const entry: ScopedWatch = { user, cameraId: scope.cameraId, action: scope.action, fire };
      this.scoped.add(entry);
      offs.push(() => this.scoped.delete(entry));
    }
    return off;
  }

  /** Session-level form of `watch`. */
  onRevoke(id: SessionId, cb: (reason: EndReason) => void): () => void {
    return this.sessions.onEnd(id, cb);
  }

  /** Current view of a watched user: a session's roles change with refreshes. */
  private current(u: User): User {
    if (u.via !== "session") return u;
    const rec = this.sessions.get(u.sessionId!);
    return rec ? userOf(rec) : u;
  }

  private recheckScoped(): void {
    for (const w of [...this.scoped]) if (!this.can(this.current(w.user), w.cameraId, w.action)) w.fire("forbidden");
  }

  // ---- administration ----------------------------------------------------------------------------

  revokeSession(id: SessionId): boolean {
    return this.sessions.end(id, "revoked");
  }

  /** Every session; `current` marks the one of the browser asking. */
  listSessions(current?: SessionId): SessionView[] {
    return this.sessions.all().map((rec) => {
      const renews = rec.refreshToken !== undefined;
      return {
        ref: sessionRef(rec.id),
        sub: rec.sub,
        name: rec.name,
        roles: rec.roles,
        createdAt: new Date(rec.createdAt).toISOString(),
        expiresAt: new Date(rec.expiresAt).toISOString(),
        endsAt: new Date(renews ? rec.absoluteExpiresAt : rec.expiresAt).toISOString(),
        renews,
        live: this.sessions.isLive(rec),
        device: describeUserAgent(rec.userAgent),
        address: rec.address,
        lastSeenAt: new Date(rec.lastSeenAt).toISOString(),
        current: rec.id === current,
      };
    });
  }

  revokeSessionRef(ref: string): boolean {
    const rec = this.sessions.all().find((r) => sessionRef(r.id) === ref);
    return rec !== undefined && this.sessions.end(rec.id, "revoked");
  }

  revokeUser(sub: string): number {
    this.mirror?.endedAll(sub, undefined, "revoked");
    return this.sessions.endAllOf(sub, "revoked");
  }

  /** Apply a new auth section without restart: rights and signing keys. Other changes need a restart (reported). */
  reload(next: AuthConfig): { applied: string[]; needsRestart: string[] } {
    const cfg = this.cfg;
    const applied: string[] = [];
    const needsRestart: string[] = [];
    for (const k of ["mode", "issuer", "clientId", "clientSecret", "clientAuthMethod", "scopes", "redirectUrl", "issuerCaFile", "bearer", "cookie", "dev", "rolesClaim", "claimSources"] as const)
      if (JSON.stringify(next[k]) !== JSON.stringify(cfg[k])) needsRestart.push(`auth.${k}`);
    if (next.session.file !== cfg.session.file) needsRestart.push("auth.session.file");
    this.rights = rightsOf(next);
    applied.push("auth.rights");
    if (next.session.signingKeys.length && JSON.stringify(next.session.signingKeys) !== JSON.stringify(cfg.session.signingKeys)) {
      this.keyring = SessionKeyring.fromFiles(next.session.signingKeys);
      applied.push("auth.session.signingKeys");
    }
    this.log.info("auth configuration reloaded", { applied, needsRestart });
    this.recheckScoped();
    return { applied, needsRestart };
  }

  /** Session housekeeping now (the timer does it every few seconds); resolves when its refreshes are done. */
  sweep(): Promise<void> {
    return this.sessions.sweep();
  }

  /** Ends every session in memory (`closed`; the session file keeps them), stops the provider. Idempotent. */
  close(reason = "closed"): Promise<void> {
    this.closing ??= (async () => {
      this.log.debug("auth closing", { reason });
      const steps: Array<() => unknown> = [
        // Written before the store forgets them (closing ends every session in memory, not in the file).
        () => this.sessionFile?.flush(),
        () => this.sessions.close(),
        () => this.provider.close(),
      ];
      for (const step of steps) {
        try {
          await step();
        } catch (err) {
          this.log.warn("error while closing auth", { err });
        }
      }
      this.pending.clear();
      this.scoped.clear();
      this.events.removeAllListeners();
    })();
    return this.closing;
  }
}

function rightsOf(cfg: AuthConfig): Rights {
  return new Rights(cfg.mode === "dev" && cfg.rights.length === 0 ? DEV_RIGHTS : cfg.rights);
}

function userOf(rec: SessionRecord): User {
  return Object.freeze({ sub: rec.sub, name: rec.name, roles: rec.roles, via: "session", sessionId: rec.id, expiresAt: rec.expiresAt });
}

/** The name administrators, logs and events use for a session: a hash of its id (the id itself is a bearer secret). */
export function sessionRef(id: SessionId): string {
  return createHash("sha256").update(id).digest("base64url").slice(0, 16);
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
