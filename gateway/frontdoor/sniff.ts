/**
 * What a connection speaks, from its first bytes. Pure: bytes in, verdict out.
 *
 * - TLS: a handshake record, 0x16 then major version 0x03 (RFC 8446 §5.1).
 * - TURN: a STUN message, top two bits 0 and the magic cookie 0x2112A442 at bytes 4–7
 *   (RFC 8489 §5). ChannelData (first byte 0x40–0x7F) cannot open a TURN connection —
 *   nothing is bound on a new 5-tuple, and an allocation over TCP lives and dies with
 *   its connection (RFC 8656 §3.1) — while HTTP methods start with bytes in that very
 *   range ('G' 0x47, 'P' 0x50, 'D' 0x44…), so such a start is HTTP.
 * - HTTP: everything else (the HTTP server answers 400 to garbage).
 */

export type Protocol = "tls" | "turn" | "http";

/** The verdict, or "more" when the bytes so far cannot decide. */
export function sniff(b: Uint8Array, allowTls: boolean): Protocol | "more" {
  if (b.length === 0) return "more";
  const b0 = b[0]!;
  if (allowTls && b0 === 0x16) {
    if (b.length < 2) return "more";
    if (b[1] === 0x03) return "tls";
    return "http";
  }
  if ((b0 & 0xc0) === 0) {
    if (b.length < 8) {
      // Bail out early when a byte already rules the cookie out.
      const cookie = [0x21, 0x12, 0xa4, 0x42];
      for (let i = 4; i < b.length; i++) if (b[i] !== cookie[i - 4]) return "http";
      return "more";
    }
    return b[4] === 0x21 && b[5] === 0x12 && b[6] === 0xa4 && b[7] === 0x42 ? "turn" : "http";
  }
  return "http";
}
