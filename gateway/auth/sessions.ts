/**
 * Server-side sessions: the authority behind the short-lived signed cookie. A session is
 *
 *   live     until `expiresAt` (now + ttl at sign-in or at each successful refresh),
 *   lapsed   after that, revivable by the provider's refresh token until `absoluteExpiresAt`,
 *   ended    on logout, at max age, when the provider refuses the refresh token, or when lapsed
 *            without a refresh token.
 *
 * Sessions someone watches (a viewer's running streams, via `onEnd`) are refreshed in the background
 * before they lapse, so watching never needs a page request; if that refresh cannot happen the
 * watchers are told `expired` when the session lapses and their streams end. Others are refreshed
 * lazily when a request arrives. While the provider is unreachable, sessions keep working until they
 * lapse (refresh attempts back off instead of hammering it).
 */
import { randomBytes } from "node:crypto";
import { AuthError, isGatehouseError } from "../../config/errors.ts";
import { sessionId, userId, type SessionId, type UserId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";

import type { EndReason } from "./types.ts";

export type { EndReason } from "./types.ts";

export interface SessionRecord {
  readonly id: SessionId;
  readonly sub: UserId;
  name: string | undefined;
  roles: readonly string[];
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Usable until (ms); extended by each successful refresh. */
  expiresAt: number;
  /** Never usable after (ms), refreshes or not. */
  readonly absoluteExpiresAt: number;
  refreshToken: string | undefined;
  idToken: string | undefined;
  /** The provider's session this one came from (the ID token's `sid`), for back-channel logout. */
  readonly providerSid: string | undefined;
  /** No refresh attempt before (ms): backoff while the provider is down. */
  nextRefreshAt: number;
  /** The browser it was signed in from (User-Agent, at most 300 characters), for the sessions page. */
  readonly userAgent: string | undefined;
  /** Address of the latest request (ms-free, as the front door saw it). */
  address: string | undefined;
  /** Latest request made with it (ms); the sign-in at first. */
  lastSeenAt: number;
}

/** Longest User-Agent kept with a session, characters. */
export const MAX_USER_AGENT = 300;

/** A session as written to `auth.session.file` (session-file.ts). */
export interface PersistedSession {
  id: string;
  sub: string;
  name: string | undefined;
  roles: string[];
  createdAt: number;
  expiresAt: number;
  absoluteExpiresAt: number;
  refreshToken: string | undefined;
  idToken: string | undefined;
  providerSid: string | undefined;
  userAgent?: string | undefined;
  address?: string | undefined;
  lastSeenAt?: number | undefined;
}

/** What a refresh yields; throw `UpstreamError` (provider down) or `AuthError` (refused). */
export interface Refreshed {
  roles: readonly string[];
  name?: string | undefined;
  refreshToken?: string | undefined;
  idToken?: string | undefined;
}

export interface SessionStoreOptions {
  /** Session lifetime between refreshes, milliseconds. */
  ttlMs: number;
  /** Absolute lifetime, milliseconds. */
  maxAgeMs: number;
  /** Sessions kept at most; beyond it the oldest is ended (`evicted`). Default 100000. */
  maxSessions?: number;
  /** Uses the refresh token at the provider. */
  refresh: (rec: SessionRecord) => Promise<Refreshed>;
  /** Called after a refresh has been applied (roles may have changed). */
  onRefreshed?: (rec: SessionRecord) => void;
  clock: () => number;
  log: Logger;
  /** Sweep interval, milliseconds. Default min(ttl/4, 15 s). 0 disables the timer (tests call sweep()). */
  sweepMs?: number;
  /**
   * A session was created, refreshed or ended (persistence writes then). `urgent`: it was
   * ended on purpose (logout, revocation), which must survive even a crash right after.
   */
  onChange?: (urgent: boolean) => void;
  /** A session was created or refreshed (a cluster shares it). */
  onSaved?: (rec: SessionRecord) => void;
  /** A session ended (once per session, after its watchers were told). */
  onEnded?: (rec: SessionRecord, reason: EndReason) => void;
}

/** Ends someone asked for: a persisted session store must forget these at once. */
const DELIBERATE: ReadonlySet<EndReason> = new Set(["logout", "revoked", "revoked_at_provider", "logged_out_at_provider"]);

/** Wait this long after a failed (provider unreachable) refresh before trying again, milliseconds. */
const REFRESH_BACKOFF_MS = 15_000;

export class SessionStore {
  private readonly sessions = new Map<SessionId, SessionRecord>();
  private readonly listeners = new Map<SessionId, Set<(reason: EndReason) => void>>();
  private readonly inflight = new Map<SessionId, Promise<boolean>>();
  private readonly opts: SessionStoreOptions;
  private readonly timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: SessionStoreOptions) {
    this.opts = opts;
    const every = opts.sweepMs ?? Math.min(opts.ttlMs / 4, 15_000);
    if (every > 0) {
      this.timer = setInterval(() => void this.sweep(), every);
      this.timer.unref();
    }
  }

  get size(): number {
    return this.sessions.size;
  }

  create(init: {
    sub: UserId;
    name: string | undefined;
    roles: readonly string[];
    refreshToken: string | undefined;
    idToken: string | undefined;
    providerSid?: string | undefined;
    /** The signing-in browser's User-Agent and address. */
    userAgent?: string | undefined;
    address?: string | undefined;
  }): SessionRecord {
    const now = this.opts.clock();
    const absoluteExpiresAt = now + this.opts.maxAgeMs;
    const rec: SessionRecord = {
      id: sessionId(randomBytes(24).toString("base64url")),
      ...init,
      providerSid: init.providerSid,
      userAgent: init.userAgent?.slice(0, MAX_USER_AGENT),
      address: init.address,
      lastSeenAt: now,
      roles: Object.freeze([...init.roles]),
      createdAt: now,
      expiresAt: Math.min(now + this.opts.ttlMs, absoluteExpiresAt),
      absoluteExpiresAt,
      nextRefreshAt: 0,
    };
    this.add(rec);
    this.saved(rec);
    return rec;
  }

  private saved(rec: SessionRecord): void {
    try {
      this.opts.onSaved?.(rec);
    } catch (err) {
      this.opts.log.warn("session save listener threw", { err });
    }
  }

  private add(rec: SessionRecord): void {
    this.sessions.set(rec.id, rec);
    if (this.sessions.size > (this.opts.maxSessions ?? 100_000)) {
      const oldest = this.sessions.keys().next();
      if (!oldest.done) this.end(oldest.value, "evicted");
    }
    this.opts.onChange?.(false);
  }

  /** The sessions, for `auth.session.file`. */
  export(): PersistedSession[] {
    return this.all().map((r) => this.persisted(r));
  }

  /** One session as written to `auth.session.file` (and shared in a cluster). */
  persisted(r: SessionRecord): PersistedSession {
    return {
      id: r.id,
      sub: r.sub,
      name: r.name,
      roles: [...r.roles],
      createdAt: r.createdAt,
      expiresAt: r.expiresAt,
      absoluteExpiresAt: r.absoluteExpiresAt,
      refreshToken: r.refreshToken,
      idToken: r.idToken,
      providerSid: r.providerSid,
      userAgent: r.userAgent,
      address: r.address,
      lastSeenAt: r.lastSeenAt,
    };
  }

  /**
   * Sessions from `auth.session.file`, at start: those past their absolute age are dropped;
   * the rest are live or lapsed as their times say (a lapsed one revives with its refresh token).
   */
  import(list: readonly PersistedSession[]): number {
    const now = this.opts.clock();
    let n = 0;
    for (const p of list) {
      if (now >= p.absoluteExpiresAt || this.sessions.has(p.id as SessionId)) continue;
      this.add({
        id: sessionId(p.id),
        sub: userId(p.sub),
        name: p.name,
        roles: Object.freeze([...p.roles]),
        createdAt: p.createdAt,
        expiresAt: Math.min(p.expiresAt, p.absoluteExpiresAt),
        absoluteExpiresAt: p.absoluteExpiresAt,
        refreshToken: p.refreshToken,
        idToken: p.idToken,
        providerSid: p.providerSid,
        nextRefreshAt: 0,
        userAgent: typeof p.userAgent === "string" ? p.userAgent.slice(0, MAX_USER_AGENT) : undefined,
        address: typeof p.address === "string" ? p.address : undefined,
        lastSeenAt: typeof p.lastSeenAt === "number" && Number.isFinite(p.lastSeenAt) ? p.lastSeenAt : p.createdAt,
      });
      n++;
    }
    return n;
  }

  /** The session, live or lapsed; undefined when unknown or ended. */
  get(id: SessionId): SessionRecord | undefined {
    const rec = this.sessions.get(id);
    if (!rec) return undefined;
    if (this.opts.clock() >= rec.absoluteExpiresAt) {
      this.end(id, "max_age");
      return undefined;
    }
    return rec;
  }

  isLive(rec: SessionRecord): boolean {
    return this.opts.clock() < rec.expiresAt && this.sessions.get(rec.id) === rec;
  }

  /**
   * Make sure the session is usable for a request: a live one past half its lifetime is refreshed in
   * the background; a lapsed one is refreshed now (the request waits). False: sign in again.
   */
  async ensureLive(rec: SessionRecord): Promise<boolean> {
    const now = this.opts.clock();
    if (this.isLive(rec)) {
      if (rec.expiresAt - now < this.opts.ttlMs / 2) void this.refresh(rec);
      return true;
    }
    if (!this.sessions.has(rec.id)) return false;
    if (!rec.refreshToken) {
      this.end(rec.id, "expired");
      return false;
    }
    return this.refresh(rec);
  }

  /** Refresh with the provider (single flight per session). True when the session is live afterwards. */
  refresh(rec: SessionRecord): Promise<boolean> {
    const now = this.opts.clock();
    if (!rec.refreshToken || now < rec.nextRefreshAt) return Promise.resolve(this.isLive(rec));
    let p = this.inflight.get(rec.id);
    if (!p) {
      p = this.doRefresh(rec).finally(() => this.inflight.delete(rec.id));
      this.inflight.set(rec.id, p);
    }
    return p;
  }

  private async doRefresh(rec: SessionRecord): Promise<boolean> {
    try {
      const r = await this.opts.refresh(rec);
      if (this.sessions.get(rec.id) !== rec) return false; // ended meanwhile (logout)
      const now = this.opts.clock();
      rec.roles = Object.freeze([...r.roles]);
      if (r.name !== undefined) rec.name = r.name;
      if (r.refreshToken) rec.refreshToken = r.refreshToken; // rotation (RFC 6749 §6, OAuth 2.1 §4.3.1)
      if (r.idToken) rec.idToken = r.idToken;
      rec.expiresAt = Math.min(now + this.opts.ttlMs, rec.absoluteExpiresAt);
      rec.nextRefreshAt = 0;
      this.opts.log.debug("session refreshed", { session: short(rec.id), sub: rec.sub });
      this.opts.onChange?.(false);
      this.saved(rec);
      try {
        this.opts.onRefreshed?.(rec);
      } catch (err) {
        this.opts.log.warn("session refresh listener threw", { err });
      }
      return true;
    } catch (err) {
      if (isGatehouseError(err) && err instanceof AuthError) {
        this.opts.log.info("provider refused the session's refresh token; session ended", { session: short(rec.id), sub: rec.sub });
        this.end(rec.id, "revoked_at_provider");
        return false;
      }
      rec.nextRefreshAt = this.opts.clock() + REFRESH_BACKOFF_MS;
      this.opts.log.warn("session refresh failed; the session keeps working until it lapses", { session: short(rec.id), err });
      return this.isLive(rec);
    }
  }

  /** Every session still held (live or lapsed but revivable), oldest first. */
  all(): SessionRecord[] {
    return [...this.sessions.values()];
  }

  /** End a session now and tell its watchers why. Idempotent. */
  end(id: SessionId, reason: EndReason): boolean {
    const rec = this.sessions.get(id);
    if (!rec) return false;
    this.sessions.delete(id);
    this.opts.log.debug("session ended", { session: short(id), sub: rec.sub, reason });
    this.notify(id, reason);
    try {
      this.opts.onEnded?.(rec, reason);
    } catch (err) {
      this.opts.log.warn("session end listener threw", { err });
    }
    // Closing the gateway ends every session in memory only: the file keeps them for the restart.
    if (reason !== "closed") this.opts.onChange?.(DELIBERATE.has(reason));
    return true;
  }

  /** End every session of a subject (e.g. back-channel logout or an administrator's revocation). */
  endAllOf(sub: string, reason: EndReason): number {
    let n = 0;
    for (const rec of [...this.sessions.values()]) if (rec.sub === sub && this.end(rec.id, reason)) n++;
    return n;
  }

  /**
   * The provider ended a session of its own (back-channel logout): with `sid`, the sessions
   * that came from it (of `sub` too, when given); without, every session of `sub`.
   */
  endFromProvider(sub: string | undefined, sid: string | undefined, reason: EndReason): number {
    if (sid === undefined) return sub === undefined ? 0 : this.endAllOf(sub, reason);
    let n = 0;
    for (const rec of [...this.sessions.values()])
      if (rec.providerSid === sid && (sub === undefined || rec.sub === sub) && this.end(rec.id, reason)) n++;
    return n;
  }

  /**
   * Call `cb` once when the session ends or lapses without refresh. While someone listens, the session
   * is refreshed in the background. Unknown/ended session: `cb("expired")` on the next microtask.
   */
  onEnd(id: SessionId, cb: (reason: EndReason) => void): () => void {
    if (!this.sessions.has(id) || this.closed) {
      queueMicrotask(() => safeCall(cb, "expired", this.opts.log));
      return () => {};
    }
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(cb);
    return () => {
      const s = this.listeners.get(id);
      s?.delete(cb);
      if (s?.size === 0) this.listeners.delete(id);
    };
  }

  /**
   * Housekeeping, run by the timer: max age, background refresh of watched sessions, lapse.
   * Resolves when the refreshes it started have finished (the timer does not wait).
   */
  sweep(): Promise<void> {
    const now = this.opts.clock();
    const started: Promise<boolean>[] = [];
    for (const rec of [...this.sessions.values()]) {
      if (now >= rec.absoluteExpiresAt) {
        this.end(rec.id, "max_age");
        continue;
      }
      const watched = this.listeners.has(rec.id);
      if (now >= rec.expiresAt) {
        if (watched) this.notify(rec.id, "expired"); // streams end; the record may still be revived
        if (!rec.refreshToken) this.end(rec.id, "expired");
        continue;
      }
      if (watched && rec.refreshToken && rec.expiresAt - now < this.opts.ttlMs / 2) started.push(this.refresh(rec));
    }
    return Promise.all(started).then(() => undefined);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const id of [...this.sessions.keys()]) this.end(id, "closed");
  }

  private notify(id: SessionId, reason: EndReason): void {
    const set = this.listeners.get(id);
    if (!set) return;
    this.listeners.delete(id);
    for (const cb of set) safeCall(cb, reason, this.opts.log);
  }
}

function safeCall(cb: (reason: EndReason) => void, reason: EndReason, log: Logger): void {
  try {
    cb(reason);
  } catch (err) {
    // A watcher's bug must not stop the others from being told.
    log.warn("session end listener threw", { err });
  }
}

/** Enough of a session id to correlate log lines, never enough to use it. */
export function short(id: string): string {
  return id.slice(0, 6);
}
