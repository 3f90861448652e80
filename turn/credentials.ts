/**
 * Time-limited TURN credentials in the "TURN REST API" form that coturn and most
 * deployments understand (draft-uberti-behave-turn-rest): the username is
 * `<unix-expiry-seconds>:<subject>` and the password is
 * base64(HMAC-SHA1(shared secret, username)). A coturn fleet configured with
 * `--use-auth-secret --static-auth-secret=<same secret>` accepts the same credentials.
 *
 * Credentials minted for a signed-in session carry the session's non-secret reference
 * after the subject: `<expiry>:<subject>#<ref>` (ref: 16 base64url characters). coturn
 * reads everything after the first ':' as an opaque user name, so the form stays
 * compatible; our server uses the reference to refuse the credentials, and close their
 * allocations, once the session ends.
 */
import { createHmac } from "node:crypto";
import { longTermKey } from "./stun/integrity.ts";

export interface TurnCredentials {
  /** `expiry:subject`, or `expiry:subject#sessionRef`. */
  readonly username: string;
  /** base64 HMAC-SHA1 of the username under the shared secret. */
  readonly password: string;
  /** Seconds the credentials stay valid for new allocations. */
  readonly ttlSeconds: number;
  /** Expiry as a Unix time in seconds. */
  readonly expiresAt: number;
}

export interface MintOptions {
  /** The shared secret (`turn.secret`). */
  secret: string;
  /** Who the credentials are for (the signed-in user's id); must not be empty. */
  subject: string;
  /** Lifetime in seconds (`turn.credentialLifetimeSeconds`, default 300). */
  ttlSeconds: number;
  /** Current time in milliseconds since the epoch. Default Date.now(). */
  now?: number;
  /** Non-secret reference of the session the credentials are for (16 base64url characters). */
  session?: string | undefined;
}

/** A session reference as it may appear in a username. */
export const SESSION_REF = /^[A-Za-z0-9_-]{16}$/;

/** Mint time-limited credentials for one viewer (gateway → WHEP Link headers and the web client). */
export function mintTurnCredentials(opts: MintOptions): TurnCredentials {
  if (!opts.subject) throw new RangeError("subject must not be empty");
  if (!(opts.ttlSeconds > 0)) throw new RangeError("ttlSeconds must be positive");
  const now = opts.now ?? Date.now();
  const expiresAt = Math.floor(now / 1000) + Math.ceil(opts.ttlSeconds);
  if (opts.session !== undefined && !SESSION_REF.test(opts.session)) throw new RangeError("session must be 16 base64url characters");
  const username = opts.session === undefined ? `${expiresAt}:${opts.subject}` : `${expiresAt}:${opts.subject}#${opts.session}`;
  return Object.freeze({ username, password: restPassword(opts.secret, username), ttlSeconds: opts.ttlSeconds, expiresAt });
}

/** The REST password for `username` under `secret`. */
export function restPassword(secret: string, username: string): string {
  return createHmac("sha1", secret).update(username, "utf8").digest("base64");
}

/**
 * Split a REST username into expiry and subject. The expiry comes first (coturn's
 * default order); a username that does not start with digits and ':' is not ours.
 */
export function parseRestUsername(username: string): { expiresAt: number; subject: string; session: string | undefined } | undefined {
  const m = /^(\d{1,12}):(.+?)(?:#([A-Za-z0-9_-]{16}))?$/s.exec(username);
  if (!m) return undefined;
  return { expiresAt: Number(m[1]), subject: m[2]!, session: m[3] };
}

/**
 * Keys for the long-term mechanism, derived from REST usernames under the current and
 * previous secrets. Derivation is cheap (two HMACs) but requests are frequent, so the
 * last few thousand keys are cached; the cache is bounded whatever clients send.
 */
export class CredentialKeys {
  private readonly secrets: readonly string[];
  private readonly realm: string;
  private readonly cache = new Map<string, Buffer[]>();
  private readonly maxEntries: number;

  constructor(opts: { secrets: readonly string[]; realm: string; maxEntries?: number }) {
    if (opts.secrets.length === 0) throw new RangeError("at least one secret is needed");
    this.secrets = [...opts.secrets];
    this.realm = opts.realm;
    this.maxEntries = opts.maxEntries ?? 4096;
  }

  /** Candidate long-term keys for `username`, one per accepted secret, newest first. */
  keysFor(username: string): readonly Buffer[] {
    const hit = this.cache.get(username);
    if (hit) return hit;
    const keys = this.secrets.map((s) => longTermKey(username, this.realm, restPassword(s, username)));
    if (this.cache.size >= this.maxEntries) {
      // Drop the oldest entry (Map keeps insertion order).
      const first = this.cache.keys().next();
      if (!first.done) this.cache.delete(first.value);
    }
    this.cache.set(username, keys);
    return keys;
  }
}
