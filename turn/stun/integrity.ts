/**
 * MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5), MESSAGE-INTEGRITY-SHA256 (§14.6),
 * FINGERPRINT (§14.7) and the long-term credential key (§9.2.2).
 *
 * Verification hashes the received bytes in place: the header's length field is fed
 * to the HMAC as it would read had the integrity attribute been the last one, so the
 * message is never copied.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";
import { FINGERPRINT_XOR, HEADER_LENGTH, PasswordAlgorithm } from "./constants.ts";
import type { StunMessage } from "./message.ts";

export type IntegrityAlgorithm = "sha1" | "sha256";

/** HMAC over raw[0..end) with the length field replaced by `lengthField` (the §14.5 rule). */
export function integrityHmac(algo: IntegrityAlgorithm, key: Uint8Array, raw: Uint8Array, end: number, lengthField: number): Buffer {
  const h = createHmac(algo, key);
  h.update(raw.subarray(0, 2));
  const l = Buffer.allocUnsafe(2);
  l.writeUInt16BE(lengthField, 0);
  h.update(l);
  h.update(raw.subarray(4, end));
  return h.digest();
}

/** Which integrity attribute a request carried; responses use the same one (RFC 8489 §9.2.4). */
export function integrityAlgorithmOf(msg: StunMessage): IntegrityAlgorithm | undefined {
  if (msg.integrity256At >= 0) return "sha256";
  if (msg.integrityAt >= 0) return "sha1";
  return undefined;
}

/**
 * Check the message's integrity under `key`. MESSAGE-INTEGRITY-SHA256 wins when both are
 * present (§14.6: an agent that understands it checks it and ignores MESSAGE-INTEGRITY).
 */
export function verifyIntegrity(msg: StunMessage, key: Uint8Array): boolean {
  const raw = msg.raw;
  if (msg.integrity256At >= 0) {
    const at = msg.integrity256At;
    const len = msg.integrity256Length;
    const mac = integrityHmac("sha256", key, raw, at, at - HEADER_LENGTH + 4 + len);
    return timingSafeEqual(mac.subarray(0, len), raw.subarray(at + 4, at + 4 + len));
  }
  if (msg.integrityAt >= 0) {
    const at = msg.integrityAt;
    const mac = integrityHmac("sha1", key, raw, at, at - HEADER_LENGTH + 24);
    return timingSafeEqual(mac, raw.subarray(at + 4, at + 24));
  }
  return false;
}

/** FINGERPRINT value for raw[0..end) whose length field already counts the 8-byte FINGERPRINT. */
export function fingerprintOf(raw: Uint8Array, end: number): number {
  return (crc32(raw.subarray(0, end)) ^ FINGERPRINT_XOR) >>> 0;
}

/** True if there is no FINGERPRINT or it matches; false if present and wrong (§7.3: discard). */
export function fingerprintOk(msg: StunMessage): boolean {
  if (msg.fingerprintAt < 0) return true;
  // FINGERPRINT is the last attribute, so the header length already covers it.
  return fingerprintOf(msg.raw, msg.fingerprintAt) === msg.raw.readUInt32BE(msg.fingerprintAt + 4);
}

/**
 * Long-term credential key (RFC 8489 §9.2.2): MD5 or SHA-256 of
 * `username ":" OpaqueString(realm) ":" OpaqueString(password)`.
 */
export function longTermKey(username: string, realm: string, password: string, algorithm: number = PasswordAlgorithm.MD5): Buffer {
  const input = `${username}:${saslPrep(realm)}:${saslPrep(password)}`;
  return createHash(algorithm === PasswordAlgorithm.SHA256 ? "sha256" : "md5")
    .update(input, "utf8")
    .digest();
}

/** RFC 3454 table B.1: code points mapped to nothing. */
function mappedToNothing(c: number): boolean {
  return (
    c === 0x00ad ||
    c === 0x034f ||
    c === 0x1806 ||
    (c >= 0x180b && c <= 0x180d) ||
    (c >= 0x200b && c <= 0x200d) ||
    c === 0x2060 ||
    (c >= 0xfe00 && c <= 0xfe0f) ||
    c === 0xfeff
  );
}

/** RFC 3454 table C.1.2: non-ASCII spaces, mapped to U+0020. */
function nonAsciiSpace(c: number): boolean {
  return c === 0x00a0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x202f || c === 0x205f || c === 0x3000;
}

/**
 * SASLprep (RFC 4013) mapping and NFKC normalisation, which is what the OpaqueString
 * profile does to the strings that reach us in practice. The prohibited-output and
 * bidi checks are not applied: our passwords are base64 HMACs, and a string that
 * would have been rejected simply yields a key no client can match.
 */
export function saslPrep(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length && ascii; i++) ascii = s.charCodeAt(i) >= 0x20 && s.charCodeAt(i) < 0x7f;
  if (ascii) return s; // printable ASCII: unchanged, the common case
  let out = "";
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (mappedToNothing(c)) continue;
    out += nonAsciiSpace(c) ? " " : ch;
  }
  return out.normalize("NFKC");
}
