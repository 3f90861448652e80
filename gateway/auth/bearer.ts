/**
 * `Authorization: Bearer` with the provider's JWT access tokens (RFC 9068 profile, RFC 6750 usage),
 * validated locally against the provider's JWKS: signature with a key the provider published, `alg`
 * from an explicit allow-list that must also fit the key, `iss`, `aud`, `exp` (required), `nbf`, and a
 * `sub`. Every failure is the same `UNAUTHORIZED "invalid token"` to the caller; the precise reason
 * goes in the error's `cause` for debug logs only.
 *
 * The JWKS is cached; an unknown `kid` triggers a refetch at most once per `minRefetchMs` (so a flood
 * of made-up kids cannot turn the gateway into a load generator against the provider). When the
 * provider is unreachable, the keys already fetched keep working.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import { AuthError, BadInputError, UpstreamError } from "../../config/errors.ts";
import type { ASYMMETRIC_JWS_ALGS } from "../../config/sections/auth.ts";
import type { Logger } from "../../config/log.ts";
import type { FetchLike } from "./fetch.ts";

export type Alg = (typeof ASYMMETRIC_JWS_ALGS)[number];
const EC_CURVE: Record<string, string> = { ES256: "P-256", ES384: "P-384", ES512: "P-521" };
/** Tokens larger than this are refused before any parsing, bytes. */
const MAX_TOKEN_BYTES = 16 * 1024;

export interface JwksCacheOptions {
  /** Resolves the provider's `jwks_uri` (after discovery). */
  jwksUri: () => Promise<string>;
  fetch: FetchLike;
  /** Milliseconds since the epoch. */
  clock: () => number;
  /** How long fetched keys are fresh, milliseconds. */
  cacheMs: number;
  /** Minimum interval between refetches caused by an unknown kid, milliseconds. */
  minRefetchMs: number;
  log: Logger;
}

interface CachedKey {
  kid: string | undefined;
  jwk: JsonWebKey & { kid?: string; alg?: string; use?: string };
  key: KeyObject;
}

export class JwksCache {
  private keys: CachedKey[] = [];
  private fetchedAt = -Infinity;
  private inflight: Promise<void> | undefined;
  private readonly opts: JwksCacheOptions;

  constructor(opts: JwksCacheOptions) {
    this.opts = opts;
  }

  /** The key for `kid` usable with `alg`, refetching when stale or unknown (rate-limited). */
  async key(kid: string | undefined, alg: Alg): Promise<KeyObject | undefined> {
    const now = this.opts.clock();
    if (now - this.fetchedAt >= this.opts.cacheMs) await this.refresh();
    let found = this.select(kid, alg);
    if (!found && this.opts.clock() - this.fetchedAt >= this.opts.minRefetchMs) {
      await this.refresh();
      found = this.select(kid, alg);
    }
    return found;
  }

  private select(kid: string | undefined, alg: Alg): KeyObject | undefined {
    const fits = this.keys.filter((k) => keyFits(k, alg));
    if (kid !== undefined) return fits.find((k) => k.kid === kid)?.key;
    // No kid (RFC 7515 §4.1.4 makes it optional): only unambiguous when exactly one key fits.
    return fits.length === 1 ? fits[0]!.key : undefined;
  }

  private refresh(): Promise<void> {
    this.inflight ??= this.load().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async load(): Promise<void> {
    // Counted as an attempt even when it fails, so an unreachable provider is not hammered.
    this.fetchedAt = this.opts.clock();
    try {
      const uri = await this.opts.jwksUri();
      const res = await this.opts.fetch(uri, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new UpstreamError(`JWKS answered ${res.status}`);
      const body = (await res.json()) as { keys?: unknown };
      if (!Array.isArray(body.keys)) throw new UpstreamError("JWKS without keys");
      const keys: CachedKey[] = [];
      for (const raw of body.keys as Array<CachedKey["jwk"]>) {
        if (!raw || typeof raw !== "object" || (raw.use !== undefined && raw.use !== "sig")) continue;
        if (raw.kty !== "RSA" && raw.kty !== "EC" && raw.kty !== "OKP") continue;
        try {
          // Public members only: a JWKS that leaks a private member must not make us hold a private key.
          const pub: JsonWebKey =
            raw.kty === "RSA"
              ? { kty: "RSA", n: raw.n, e: raw.e }
              : raw.kty === "EC"
                ? { kty: "EC", crv: raw.crv, x: raw.x, y: raw.y }
                : { kty: "OKP", crv: raw.crv, x: raw.x };
          keys.push({ kid: typeof raw.kid === "string" ? raw.kid : undefined, jwk: raw, key: createPublicKey({ key: pub, format: "jwk" }) });
        } catch {
          this.opts.log.debug("unusable JWKS key skipped", { kid: raw.kid });
        }
      }
      this.keys = keys;
      this.opts.log.debug("JWKS fetched", { keys: keys.length });
    } catch (err) {
      this.opts.log.warn("cannot fetch the provider's JWKS; keeping the keys already known", { err, known: this.keys.length });
    }
  }
}

function keyFits(k: CachedKey, alg: Alg): boolean {
  if (k.jwk.alg !== undefined && k.jwk.alg !== alg) return false;
  if (alg === "EdDSA") return k.jwk.kty === "OKP" && k.jwk.crv === "Ed25519";
  if (alg.startsWith("ES")) return k.jwk.kty === "EC" && k.jwk.crv === EC_CURVE[alg];
  return k.jwk.kty === "RSA" && (k.key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
}

/** How a JWT the provider signed is checked (access tokens here, logout tokens in backchannel.ts). */
export interface ProviderJwtOptions {
  issuer: string;
  audience: string | string[];
  /** Explicit allow-list; never HS* or none (the config schema cannot express them). */
  algorithms: readonly Alg[];
  /** Tolerated clock skew, seconds. */
  clockToleranceSeconds: number;
  jwks: JwksCache;
  clock: () => number;
}

/**
 * A compact JWS signed by the provider: size and shape, no critical extensions, `alg` in the
 * allow-list and fitting the provider's key for `kid`, signature, `iss`, `aud`, and `exp`/`nbf`
 * when present. Throws BadInputError (or jose's errors) with the reason.
 */
export async function verifyProviderJwt(token: string, o: ProviderJwtOptions): Promise<JWTPayload> {
  if (token.length > MAX_TOKEN_BYTES) throw new BadInputError("token too large");
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw new BadInputError("not a compact JWS");
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch (cause) {
    throw new BadInputError("malformed JWT", { cause });
  }
  // RFC 7515 §4.1.11: we understand no critical extensions.
  if (header.crit !== undefined) throw new BadInputError("crit header not supported");
  const alg = header.alg as Alg;
  if (!o.algorithms.includes(alg)) throw new BadInputError(`algorithm ${String(header.alg)} not allowed`);
  const key = await o.jwks.key(typeof header.kid === "string" ? header.kid : undefined, alg);
  if (!key) throw new BadInputError(`no provider key for kid ${String(header.kid)}`);
  const { payload } = await jwtVerify(token, key, {
    algorithms: [alg],
    issuer: o.issuer,
    audience: o.audience,
    clockTolerance: o.clockToleranceSeconds,
    currentDate: new Date(o.clock()),
  });
  return payload;
}

export type BearerValidatorOptions = ProviderJwtOptions;

export interface ValidatedToken {
  sub: string;
  /** Expiry, milliseconds since the epoch. */
  expiresAt: number;
  claims: JWTPayload;
}

export class BearerValidator {
  private readonly opts: BearerValidatorOptions;

  constructor(opts: BearerValidatorOptions) {
    this.opts = opts;
  }

  /** Validate a compact JWS access token. Throws `AuthError("UNAUTHORIZED")` with the reason as cause. */
  async validate(token: string): Promise<ValidatedToken> {
    try {
      return await this.check(token);
    } catch (cause) {
      throw new AuthError("UNAUTHORIZED", "invalid token", { cause });
    }
  }

  private async check(token: string): Promise<ValidatedToken> {
    const payload = await verifyProviderJwt(token, this.opts);
    // A JWT's exp is optional; an access token without expiry is refused (RFC 9068 §2.2).
    if (typeof payload.exp !== "number") throw new BadInputError("token has no exp");
    if (typeof payload.sub !== "string" || payload.sub.length === 0) throw new BadInputError("token has no sub");
    return { sub: payload.sub, expiresAt: payload.exp * 1000, claims: payload };
  }
}
