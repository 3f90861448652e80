/**
 * The keys that sign the gateway's own session tokens, with rotation: several keys, the FIRST signs,
 * every one verifies (selected by the `kid` header, an RFC 7638 thumbprint). Rotating is putting a new
 * key first; cookies signed by an older key are re-issued with the new one on their next request.
 * Keep the old key for `session.maxAgeSeconds` and nobody is logged out. Without configured files one
 * EC P-256 key is generated in memory.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { compactVerify, decodeProtectedHeader, SignJWT, type JWTPayload } from "jose";
import { BadInputError } from "../../config/errors.ts";

/** A session token signed by a key this keyring does not hold (an old key after a restart or rotation). */
export class UnknownSigningKeyError extends BadInputError {}

/** Algorithms session tokens may carry; HS* and none can never verify. */
export type SessionAlg = "ES256" | "EdDSA" | "RS256";

export interface SessionKey {
  readonly kid: string;
  readonly alg: SessionAlg;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export class SessionKeyring {
  /** Keys in order; `[0]` signs. */
  readonly keys: readonly SessionKey[];
  private readonly byKid: ReadonlyMap<string, SessionKey>;

  constructor(keys: readonly SessionKey[]) {
    if (keys.length === 0) throw new BadInputError("auth.session.signingKeys: at least one key is needed");
    this.keys = Object.freeze([...keys]);
    this.byKid = new Map(keys.map((k) => [k.kid, k]));
  }

  /** One fresh EC P-256 key, in memory only (or kept in `auth.session.file`: see generatedPem). */
  static generate(): SessionKeyring {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    return new SessionKeyring([toSessionKey(privateKey, "generated")]);
  }

  /** A generated key kept across a restart (`generatedPem` of the previous run). */
  static fromGeneratedPem(pem: string): SessionKeyring {
    return new SessionKeyring([toSessionKey(createPrivateKey(pem), "the session file's signing key")]);
  }

  /** The signing key as PKCS#8 PEM, to keep a generated key across restarts. */
  signerPem(): string {
    return this.signer.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  }

  /** Keys from PEM files, first signs. Errors name the file and the reason. */
  static fromFiles(paths: readonly string[], read: (p: string) => string = (p) => readFileSync(p, "utf8")): SessionKeyring {
    const keys = paths.map((p, i) => {
      let pem: string;
      try {
        pem = read(p);
      } catch (cause) {
        throw new BadInputError(`auth.session.signingKeys[${i}]: cannot read ${p}`, { cause });
      }
      let key: KeyObject;
      try {
        key = createPrivateKey(pem);
      } catch (cause) {
        throw new BadInputError(`auth.session.signingKeys[${i}]: ${p} is not a PEM private key`, { cause });
      }
      return toSessionKey(key, `auth.session.signingKeys[${i}]`);
    });
    return new SessionKeyring(keys);
  }

  get signer(): SessionKey {
    return this.keys[0]!;
  }

  /** Sign `claims` (which must carry iat/exp, seconds) with the newest key. */
  sign(claims: JWTPayload): Promise<string> {
    const k = this.signer;
    return new SignJWT(claims).setProtectedHeader({ alg: k.alg, kid: k.kid, typ: "JWT" }).sign(k.privateKey);
  }

  /** Was `token` signed by the current signing key? (Else the caller re-issues it after a rotation.) */
  signedByCurrent(token: string): boolean {
    try {
      return decodeProtectedHeader(token).kid === this.signer.kid;
    } catch {
      return false;
    }
  }

  /**
   * Verify signature, issuer and audience; expiry is NOT checked here (the caller decides between
   * "refresh" and "reject" with its own clock). Throws on anything else: unknown kid
   * (`UnknownSigningKeyError`), an algorithm that does not match the key, a bad signature, a
   * malformed token.
   */
  async verify(token: string, opts: { issuer: string; audience: string }): Promise<JWTPayload> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch (cause) {
      throw new BadInputError("malformed session token", { cause });
    }
    const key = typeof kid === "string" ? this.byKid.get(kid) : undefined;
    if (!key) throw new UnknownSigningKeyError("session token signed by an unknown key");
    // The algorithm comes from OUR key, never from the token header (alg: none / HS256-with-public-key).
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(token, key.publicKey, { algorithms: [key.alg] }));
    } catch (cause) {
      throw new BadInputError("session token signature or algorithm refused", { cause });
    }
    let claims: unknown;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload));
    } catch (cause) {
      throw new BadInputError("malformed session token", { cause });
    }
    if (claims === null || typeof claims !== "object" || Array.isArray(claims)) throw new BadInputError("malformed session token");
    const c = claims as JWTPayload;
    if (c.iss !== opts.issuer) throw new BadInputError("session token of another issuer");
    const aud = Array.isArray(c.aud) ? c.aud : [c.aud];
    if (!aud.includes(opts.audience)) throw new BadInputError("session token for another audience");
    return c;
  }
}

function toSessionKey(privateKey: KeyObject, where: string): SessionKey {
  if (privateKey.type !== "private") throw new BadInputError(`${where}: not a private key`);
  let alg: SessionAlg;
  const details = privateKey.asymmetricKeyDetails;
  if (privateKey.asymmetricKeyType === "ec" && details?.namedCurve === "prime256v1") alg = "ES256";
  else if (privateKey.asymmetricKeyType === "ed25519") alg = "EdDSA";
  else if (privateKey.asymmetricKeyType === "rsa" && (details?.modulusLength ?? 0) >= 2048) alg = "RS256";
  else throw new BadInputError(`${where}: use an EC P-256, Ed25519 or RSA (≥ 2048 bits) key`);
  const publicKey = createPublicKey(privateKey);
  return Object.freeze({ kid: jwkThumbprint(publicKey), alg, privateKey, publicKey });
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC, OKP (RFC 8037 §2) or RSA public key. */
export function jwkThumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" });
  // §3.2: required members only, lexicographic order, no whitespace.
  const canonical =
    jwk.kty === "EC"
      ? JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
      : jwk.kty === "OKP"
        ? JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })
        : JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  return createHash("sha256").update(canonical).digest("base64url");
}
