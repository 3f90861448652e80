/**
 * Time-limited TURN credentials in the "TURN REST API" form that coturn and most
 * deployments understand (draft-uberti-behave-turn-rest): the username is
 * `<unix-expiry-seconds>:<subject>` and the password is
 * base64(HMAC-SHA1(shared secret, username)). A coturn fleet configured with
 * `--use-auth-secret --static-auth-secret=<same secret>` accepts the same credentials.
 *
 * Credentials we mint end in `#<ref>.<mint>`: the non-secret reference of the sign-in session
 * they were minted for (16 base64url characters, empty for callers without a session) and a
 * random mint id (8 base64url characters), so two viewers never share a username:
 * `<expiry>:<subject>#<ref>.<mint>`. coturn reads everything after the first ':' as an opaque
 * user name, so the form stays compatible; our server uses the reference to refuse the
 * credentials, and close their allocations, once the session ends, and the username to find
 * every allocation one peer connection made.
 */
import { createHmac, randomBytes } from "node:crypto";
import { longTermKey } from "./stun/integrity.ts";

export interface TurnCredentials {
  /** `expiry:subject#sessionRef.mint` (`sessionRef` empty without a session). */
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
  const mint = randomBytes(6).toString("base64url");
  const username = `${expiresAt}:${opts.subject}#${opts.session ?? ""}.${mint}`;
  return Object.freeze({ username, password: restPassword(opts.secret, username), ttlSeconds: opts.ttlSeconds, expiresAt });
}

/** The REST password for `username` under `secret`. */
export function restPassword(secret: string, username: string): string {
  return createHmac("sha1", secret).update(username, "utf8").digest("base64");
}

/**
 * Split a REST username into expiry, subject and (when we minted it) session reference.
 * The expiry comes first (coturn's default order); a username that does not start with
 * digits and ':' is not in REST form. One without our `#ref.mint` tail (made elsewhere
 * with the same secret) has no session and is not `minted` here.
 */
export function parseRestUsername(username: string): { expiresAt: number; subject: string; session: string | undefined; minted: boolean } | undefined {
  const ours = /^(\d{1,12}):(.+)#([A-Za-z0-9_-]{16})?\.[A-Za-z0-9_-]{8}$/s.exec(username);
  if (ours) return { expiresAt: Number(ours[1]), subject: ours[2]!, session: ours[3], minted: true };
  const m = /^(\d{1,12}):(.+)$/s.exec(username);
  if (!m) return undefined;
  return { expiresAt: Number(m[1]), subject: m[2]!, session: undefined, minted: false };
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
