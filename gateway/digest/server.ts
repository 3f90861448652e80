/**
 * Server-side HTTP Digest, for SIP (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760) and the demo
 * recorder's RTSP (RFC 2326 §D.2): MD5, SHA-256 and SHA-512-256 (plus `-sess` variants),
 * qop=auth; with `allowNoQop`, also the RFC 2069 answer without qop that most RTSP clients send
 * (GStreamer's among them), for which only the nonce's age and address protect against replays.
 * The response arithmetic is the client's (./client.ts): one implementation for both sides.
 *
 * Nonces are stateless and self-authenticating: `issued-at | random | HMAC(secret)`, so a
 * forged or foreign nonce is rejected without a table. The MAC also covers the address the
 * nonce was sent to: a nonce is accepted only from that address, so a request with a spoofed
 * source (which never sees our challenge) cannot get past the nonce check, and cannot count
 * towards a lockout of the address it forges; and an expired one earns
 * `stale=true` (the client retries with the same password, no lockout count). Nonce-count
 * replay protection keeps the highest `nc` per nonce, recorded only after a successful
 * check, so unauthenticated traffic cannot grow the table.
 *
 * Pure apart from the injected clock and random source.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { isToken, readQuoted } from "../sip/uri.ts";
import { digestResponse, type DigestAlgorithm } from "./client.ts";

export type { DigestAlgorithm };

export interface DigestOptions {
  /** Wall-clock milliseconds. */
  now: () => number;
  /** Nonce lifetime, ms; older nonces get `stale=true`. Default 300000 (5 min). */
  nonceLifetimeMs?: number;
  /** Upper bound on nonces remembered for nc replay checks. Default 10000. */
  maxTrackedNonces?: number;
  /** HMAC key for nonces (random per process by default). */
  secret?: Buffer;
  random?: (n: number) => Buffer;
  /**
   * Accept answers without qop (RFC 2069) and challenge without it (`challenge(…, { qop: false })`).
   * For RTSP clients only; SIP requires qop=auth, whose nonce count guards against replays.
   */
  allowNoQop?: boolean;
}

export type VerifyFailure =
  /** No Digest credentials for our realm (or an unknown scheme, RFC 4475 §3.3.7): challenge. */
  | "missing"
  | "malformed"
  | "unsupported-algorithm"
  | "unknown-user"
  | "bad-response"
  /** Well-formed nonce we issued, but expired: challenge with stale=true. */
  | "stale"
  /** Nonce not issued by us (or tampered). */
  | "bad-nonce"
  /** nc not above the last one seen for this nonce. */
  | "replay";

export type VerifyResult =
  | { readonly ok: true; readonly username: string; readonly algorithm: DigestAlgorithm }
  | { readonly ok: false; readonly reason: VerifyFailure; readonly username?: string };

export interface DigestCredentials {
  readonly scheme: string;
  readonly params: ReadonlyMap<string, string>;
}

/** Parse `Digest a=b, c="d"` (RFC 7616 §3.4, auth-param list). Undefined if malformed. */
export function parseCredentials(value: string): DigestCredentials | undefined {
  const s = value.trim();
  const sp = s.search(/[ \t]/);
  if (sp <= 0) return isToken(s) ? { scheme: s, params: new Map() } : undefined;
  const scheme = s.slice(0, sp);
  if (!isToken(scheme)) return undefined;
  const params = new Map<string, string>();
  let i = sp;
  const n = s.length;
  while (i < n) {
    while (i < n && (s[i] === " " || s[i] === "\t" || s[i] === ",")) i++;
    if (i >= n) break;
    const ns = i;
    while (i < n && s[i] !== "=" && s[i] !== " " && s[i] !== "\t" && s[i] !== ",") i++;
    const name = s.slice(ns, i).toLowerCase();
    if (!isToken(name)) return undefined;
    while (i < n && (s[i] === " " || s[i] === "\t")) i++;
    if (s[i] !== "=") return undefined;
    i++;
    while (i < n && (s[i] === " " || s[i] === "\t")) i++;
    let v: string;
    if (s[i] === '"') {
      const q = readQuoted(s, i);
      if (!q) return undefined;
      v = q.value;
      i = q.end;
    } else {
      const vs = i;
      while (i < n && s[i] !== "," && s[i] !== " " && s[i] !== "\t") i++;
      v = s.slice(vs, i);
    }
    if (params.has(name)) return undefined; // duplicated directive
    params.set(name, v);
  }
  return { scheme, params };
}

/** Parse the `algorithm` directive (default MD5, RFC 2617 §3.2.2). */
function parseAlgorithm(a: string | undefined): { alg: DigestAlgorithm; sess: boolean } | undefined {
  const v = (a ?? "MD5").toUpperCase();
  const sess = v.endsWith("-SESS");
  const base = sess ? v.slice(0, -5) : v;
  if (base === "MD5" || base === "SHA-256" || base === "SHA-512-256") return { alg: base, sess };
  return undefined;
}

interface NonceUse {
  nc: number;
  issuedAt: number;
}

export class DigestServer {
  private readonly now: () => number;
  private readonly lifetime: number;
  private readonly maxTracked: number;
  private readonly secret: Buffer;
  private readonly random: (n: number) => Buffer;
  private readonly allowNoQop: boolean;
  private readonly used = new Map<string, NonceUse>();
  /** Nonces issued at or before this time that are no longer tracked are treated as stale. */
  private forgottenBefore = -Infinity;

  constructor(opts: DigestOptions) {
    this.now = opts.now;
    this.lifetime = opts.nonceLifetimeMs ?? 300_000;
    this.maxTracked = opts.maxTrackedNonces ?? 10_000;
    this.secret = opts.secret ?? randomBytes(32);
    this.random = opts.random ?? randomBytes;
    this.allowNoQop = opts.allowNoQop ?? false;
  }

  /** A fresh nonce bound to `realm` and to the address it is sent to. */
  nonce(realm: string, address: string): string {
    const issued = Buffer.alloc(6);
    issued.writeUIntBE(Math.floor(this.now()), 0, 6);
    const rand = this.random(9);
    const mac = this.mac(issued, rand, realm, address);
    return Buffer.concat([issued, rand, mac]).toString("base64url");
  }

  /** WWW-Authenticate values for a client at `address`, one per algorithm in preference order (RFC 8760 §2.4). */
  challenge(realm: string, algorithms: readonly DigestAlgorithm[], address: string, stale = false, o: { qop?: boolean } = {}): string[] {
    const nonce = this.nonce(realm, address);
    const qop = o.qop === false && this.allowNoQop ? "" : `, qop="auth"`;
    return algorithms.map((a) => `Digest realm="${realm}", nonce="${nonce}", algorithm=${a}${qop}${stale ? ", stale=true" : ""}`);
  }

  /**
   * Check an Authorization header for `method`, received from `address`, against
   * `password(username)`. `allowed` limits the algorithms accepted (those we offered).
   */
  verify(
    header: string | undefined,
    method: string,
    realm: string,
    allowed: readonly DigestAlgorithm[],
    password: (username: string) => string | undefined,
    address: string,
  ): VerifyResult {
    if (!header) return { ok: false, reason: "missing" };
    // Another scheme (Basic, RFC 4475 §3.3.7's unknown one) is not for us: challenge.
    if (!/^\s*digest\s/i.test(header)) return { ok: false, reason: "missing" };
    const cred = parseCredentials(header);
    if (!cred) return { ok: false, reason: "malformed" };
    if (cred.scheme.toLowerCase() !== "digest") return { ok: false, reason: "missing" };
    const p = cred.params;
    const username = p.get("username");
    const nonce = p.get("nonce");
    const uri = p.get("uri");
    const response = p.get("response");
    if (p.get("realm") !== realm) return { ok: false, reason: "missing", ...(username ? { username } : {}) };
    if (!username || !nonce || !uri || !response) return { ok: false, reason: "malformed" };
    const algo = parseAlgorithm(p.get("algorithm"));
    if (!algo || !allowed.includes(algo.alg)) return { ok: false, reason: "unsupported-algorithm", username };
    // qop=auth is required (unless allowNoQop): it carries the nonce count we use against replays.
    const qop = p.get("qop")?.toLowerCase();
    const legacy = qop === undefined && this.allowNoQop && !algo.sess;
    if (qop !== "auth" && !legacy) return { ok: false, reason: "malformed", username };
    const ncText = p.get("nc");
    const cnonce = p.get("cnonce");
    if (!legacy && (!ncText || !/^[0-9a-fA-F]{8}$/.test(ncText) || !cnonce)) return { ok: false, reason: "malformed", username };
    const issuedAt = this.checkNonce(nonce, realm, address);
    if (issuedAt === undefined) return { ok: false, reason: "bad-nonce", username };
    const pw = password(username);
    if (pw === undefined) return { ok: false, reason: "unknown-user", username };
    const expected = digestResponse({
      algorithm: algo.alg,
      sess: algo.sess,
      username,
      realm,
      password: pw,
      method,
      uri,
      nonce,
      cnonce,
      nc: ncText,
      qop: legacy ? undefined : "auth",
    });
    if (!safeEqualHex(expected, response.toLowerCase())) return { ok: false, reason: "bad-response", username };
    // The password is right; only now does freshness matter (RFC 7616 §3.3: stale=true).
    if (this.now() - issuedAt > this.lifetime) return { ok: false, reason: "stale", username };
    if (legacy) return { ok: true, username, algorithm: algo.alg };
    const nc = parseInt(ncText!, 16);
    const prior = this.used.get(nonce);
    if (prior) {
      if (nc <= prior.nc) return { ok: false, reason: "replay", username };
      prior.nc = nc;
    } else {
      if (issuedAt <= this.forgottenBefore) return { ok: false, reason: "stale", username };
      this.track(nonce, { nc, issuedAt });
    }
    return { ok: true, username, algorithm: algo.alg };
  }

  /** Tracked nonce count (tests). */
  get trackedNonces(): number {
    return this.used.size;
  }

  private track(nonce: string, use: NonceUse): void {
    if (this.used.size >= this.maxTracked) {
      const cutoff = this.now() - this.lifetime;
      for (const [k, v] of this.used) if (v.issuedAt < cutoff) this.used.delete(k);
      while (this.used.size >= this.maxTracked) {
        const oldest = this.used.entries().next().value as [string, NonceUse];
        this.used.delete(oldest[0]);
        this.forgottenBefore = Math.max(this.forgottenBefore, oldest[1].issuedAt);
      }
    }
    this.used.set(nonce, use);
  }

  /** Issued-at of a nonce we minted for `realm` and sent to `address`, or undefined when forged or sent elsewhere. */
  private checkNonce(nonce: string, realm: string, address: string): number | undefined {
    let raw: Buffer;
    try {
      raw = Buffer.from(nonce, "base64url");
    } catch {
      return undefined;
    }
    if (raw.length !== 6 + 9 + 16) return undefined;
    const issued = raw.subarray(0, 6);
    const rand = raw.subarray(6, 15);
    const mac = raw.subarray(15);
    if (!timingSafeEqual(mac, this.mac(issued, rand, realm, address))) return undefined;
    return issued.readUIntBE(0, 6);
  }

  private mac(issued: Buffer, rand: Buffer, realm: string, address: string): Buffer {
    return createHmac("sha256", this.secret).update(issued).update(rand).update(realm, "latin1").update("\0").update(address, "latin1").digest().subarray(0, 16);
  }

  /**
   * A stable pseudo-random pick for `key` (HMAC under the per-process secret): the same
   * key always gets the same index, and without the secret the index cannot be predicted.
   */
  pick(key: string, n: number): number {
    if (n <= 1) return 0;
    return createHmac("sha256", this.secret).update("pick\0").update(key, "utf8").digest().readUInt32BE(0) % n;
  }
}

function safeEqualHex(a: string, b: string): boolean {
  const ba = Buffer.from(a, "latin1");
  const bb = Buffer.from(b, "latin1");
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}
