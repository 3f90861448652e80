/**
 * Stateless nonces (RFC 8489 §9.2): the server keeps nothing per client, so floods of
 * unauthenticated requests cost no memory. A nonce carries its expiry and a MAC over
 * (expiry, client IP) under a per-process random key; a nonce that is expired, forged,
 * or replayed from another address earns 438 Stale Nonce and a fresh one.
 *
 * The value deliberately does not start with the RFC 8489 "obMatJos2" cookie: we do not
 * offer the password-algorithm negotiation, so clients use the classic MD5 key and may
 * still protect messages with MESSAGE-INTEGRITY-SHA256.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export type NonceCheck = "ok" | "stale" | "invalid";

const VERSION = 1;
const MAC_LENGTH = 12;

export class NonceIssuer {
  private readonly key: Buffer;
  private readonly lifetimeMs: number;

  /** `lifetimeSeconds`: how long a nonce stays valid. `key`: 32 random bytes unless given (tests). */
  constructor(opts: { lifetimeSeconds: number; key?: Buffer }) {
    this.key = opts.key ?? randomBytes(32);
    this.lifetimeMs = opts.lifetimeSeconds * 1000;
  }

  /** A nonce for a client at `clientIp`, valid from `now` (ms) for the configured lifetime. */
  issue(clientIp: string, now: number): string {
    const b = Buffer.allocUnsafe(5 + MAC_LENGTH);
    b[0] = VERSION;
    b.writeUInt32BE(Math.floor((now + this.lifetimeMs) / 1000) >>> 0, 1);
    this.mac(b, clientIp).copy(b, 5, 0, MAC_LENGTH);
    return b.toString("base64url");
  }

  check(nonce: string, clientIp: string, now: number): NonceCheck {
    if (nonce.length !== 23 || !/^[A-Za-z0-9_-]+$/.test(nonce)) return "invalid";
    const b = Buffer.from(nonce, "base64url");
    if (b.length !== 5 + MAC_LENGTH || b[0] !== VERSION) return "invalid";
    const expected = this.mac(b, clientIp).subarray(0, MAC_LENGTH);
    if (!timingSafeEqual(expected, b.subarray(5))) return "invalid";
    return b.readUInt32BE(1) * 1000 > now ? "ok" : "stale";
  }

  private mac(b: Buffer, clientIp: string): Buffer {
    return createHmac("sha256", this.key).update(b.subarray(0, 5)).update(clientIp).digest();
  }
}
