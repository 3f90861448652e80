/**
 * Server side of RTSP Digest authentication (RFC 2617 §3.2, as RFC 2326 §D.2 uses it)
 * for the demo recorder: stateless nonces (timestamp + HMAC) so no per-client table,
 * MD5 with or without qop=auth. Pure apart from the injected clock and secret.
 */

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { digestResponse, parseCredentials } from "../rtsp/digest.ts";

export interface DigestVerifierOptions {
  username: string;
  password: string;
  /** Realm shown to clients. Default "Gatehouse demo". */
  realm?: string;
  /** Nonce lifetime, ms (after it the client is told stale=true). Default 300000. */
  nonceTtlMs?: number;
  /** Wall clock, ms. */
  clock: () => number;
  /** HMAC key for nonces; random by default. */
  secret?: Buffer;
}

/** Outcome of checking an Authorization header. */
export type DigestVerdict = "ok" | "missing" | "stale" | "denied";

export class DigestVerifier {
  readonly realm: string;
  private readonly username: string;
  private readonly password: string;
  private readonly ttl: number;
  private readonly clock: () => number;
  private readonly secret: Buffer;

  constructor(opts: DigestVerifierOptions) {
    this.username = opts.username;
    this.password = opts.password;
    this.realm = opts.realm ?? "Gatehouse demo";
    this.ttl = opts.nonceTtlMs ?? 300_000;
    this.clock = opts.clock;
    this.secret = opts.secret ?? randomBytes(32);
  }

  /** A `WWW-Authenticate` value. No qop: RFC 2069-style answers are what most RTSP clients send. */
  challenge(stale = false): string {
    return `Digest realm="${this.realm}", nonce="${this.nonce()}", algorithm=MD5${stale ? ", stale=TRUE" : ""}`;
  }

  /** Checks an `Authorization` header value for `method`. */
  verify(method: string, authorization: string | undefined): DigestVerdict {
    if (!authorization) return "missing";
    const c = parseCredentials(authorization);
    if (!c || c.scheme !== "digest") return "denied";
    const p = c.params;
    const nonce = p.get("nonce") ?? "";
    const uri = p.get("uri");
    const response = p.get("response");
    const algorithm = (p.get("algorithm") ?? "MD5").toUpperCase();
    const qop = p.get("qop");
    if (!uri || !response || algorithm !== "MD5" || (qop !== undefined && qop !== "auth")) return "denied";
    if (p.get("username") !== this.username || p.get("realm") !== this.realm) return "denied";
    const age = this.nonceAge(nonce);
    if (age < 0) return "denied";
    const expected = digestResponse({
      algorithm: "MD5",
      sess: false,
      username: this.username,
      password: this.password,
      realm: this.realm,
      nonce,
      method,
      uri,
      qop: qop === "auth" ? "auth" : undefined,
      nc: p.get("nc"),
      cnonce: p.get("cnonce"),
    });
    const a = Buffer.from(expected, "latin1");
    const b = Buffer.from(response.toLowerCase(), "latin1");
    if (a.length !== b.length || !timingSafeEqual(a, b)) return "denied";
    // A correct answer to an expired nonce: ask again with stale=true so the client retries silently (RFC 2617 §3.2.1).
    return age > this.ttl ? "stale" : "ok";
  }

  private nonce(): string {
    const ts = Math.floor(this.clock()).toString(16).padStart(12, "0");
    return ts + this.mac(ts);
  }

  private mac(ts: string): string {
    return createHmac("sha256", this.secret).update(ts).digest("hex").slice(0, 32);
  }

  /** Age of a nonce we issued, ms, or −1 when we did not issue it. */
  private nonceAge(nonce: string): number {
    if (!/^[0-9a-f]{44}$/.test(nonce)) return -1;
    const ts = nonce.slice(0, 12);
    const a = Buffer.from(nonce.slice(12), "latin1");
    const b = Buffer.from(this.mac(ts), "latin1");
    if (!timingSafeEqual(a, b)) return -1;
    return Math.max(0, this.clock() - parseInt(ts, 16));
  }
}
