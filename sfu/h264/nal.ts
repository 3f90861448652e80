/**
 * H.264 NAL unit basics (ITU-T H.264 §7.3.1, RFC 6184 §5.2–5.4): types, keyframe
 * detection on RTP payloads, Annex-B splitting, SDP fmtp and sprop-parameter-sets.
 */

/** NAL unit types used here (H.264 Table 7-1) and the RTP-only types of RFC 6184 Table 1. */
export const NalType = {
  SLICE: 1,
  IDR: 5,
  SEI: 6,
  SPS: 7,
  PPS: 8,
  AUD: 9,
  END_OF_SEQUENCE: 10,
  END_OF_STREAM: 11,
  FILLER: 12,
  STAP_A: 24,
  STAP_B: 25,
  MTAP16: 26,
  MTAP24: 27,
  FU_A: 28,
  FU_B: 29,
} as const;

/** The 5-bit type of a NAL unit header byte. */
export function nalType(headerByte: number): number {
  return headerByte & 0x1f;
}

/**
 * True when an RTP payload (modes 0/1) starts a keyframe: a single IDR or SPS NAL, a
 * STAP-A that holds one, or the first FU-A fragment of one. SPS counts because
 * encoders send SPS+PPS immediately before the IDR; starting a viewer there lets it
 * decode. Never throws on malformed payloads (returns false).
 */
export function h264PayloadIsKeyframeStart(payload: Uint8Array): boolean {
  if (payload.length < 1) return false;
  const t = payload[0]! & 0x1f;
  if (t === NalType.IDR || t === NalType.SPS) return true;
  if (t === NalType.FU_A) {
    if (payload.length < 2) return false;
    const fu = payload[1]!;
    const inner = fu & 0x1f;
    return (fu & 0x80) !== 0 && (inner === NalType.IDR || inner === NalType.SPS);
  }
  if (t === NalType.STAP_A) {
    let p = 1;
    while (p + 2 < payload.length) {
      const size = (payload[p]! << 8) | payload[p + 1]!;
      if (size === 0 || p + 2 + size > payload.length) return false;
      const inner = payload[p + 2]! & 0x1f;
      if (inner === NalType.IDR || inner === NalType.SPS) return true;
      p += 2 + size;
    }
  }
  return false;
}

/**
 * Splits an Annex-B byte stream (start codes 00 00 01 / 00 00 00 01) into NAL units,
 * returned as subarrays of `buf` (no copies). Trailing zero bytes of a NAL (the
 * leading zero of a 4-byte start code) are trimmed, as H.264 §B.2 allows.
 */
export function splitAnnexB(buf: Uint8Array): Buffer[] {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const out: Buffer[] = [];
  const n = b.length;
  let start = -1;
  let i = 0;
  while (i + 2 < n) {
    if (b[i] === 0 && b[i + 1] === 0 && b[i + 2] === 1) {
      if (start >= 0) pushTrimmed(out, b, start, i);
      i += 3;
      start = i;
    } else {
      i++;
    }
  }
  if (start >= 0) pushTrimmed(out, b, start, n);
  return out;
}

function pushTrimmed(out: Buffer[], b: Buffer, start: number, end: number): void {
  while (end > start && b[end - 1] === 0) end--;
  if (end > start) out.push(b.subarray(start, end));
}

/**
 * Parses an SDP `a=fmtp` parameter string ("packetization-mode=1;profile-level-id=42e01f;…",
 * with or without the leading payload type) into a map with lower-cased keys.
 */
export function parseFmtp(fmtp: string): Map<string, string> {
  const out = new Map<string, string>();
  let s = fmtp.trim();
  // Tolerate the whole attribute value "96 packetization-mode=1;…".
  const m = /^\d+\s+/.exec(s);
  if (m) s = s.slice(m[0].length);
  for (const part of s.split(";")) {
    const p = part.trim();
    if (!p) continue;
    const eq = p.indexOf("=");
    if (eq < 0) out.set(p.toLowerCase(), "");
    else out.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim());
  }
  return out;
}

/** SPS and PPS NAL units (header byte included) from sprop-parameter-sets. */
export interface ParameterSets {
  sps: Buffer[];
  pps: Buffer[];
}

/**
 * Decodes sprop-parameter-sets (RFC 6184 §8.1: comma-separated base64 NAL units) into
 * SPS and PPS lists. Accepts a full fmtp string or just the parameter's value; entries
 * that are empty, not base64, or neither SPS nor PPS are skipped.
 */
export function parseSpropParameterSets(fmtpOrValue: string): ParameterSets {
  const out: ParameterSets = { sps: [], pps: [] };
  let value = fmtpOrValue;
  if (fmtpOrValue.includes("=") && /sprop-parameter-sets/i.test(fmtpOrValue)) {
    value = parseFmtp(fmtpOrValue).get("sprop-parameter-sets") ?? "";
  }
  for (const part of value.split(",")) {
    const t = part.trim();
    if (!t || !/^[A-Za-z0-9+/]+=*$/.test(t)) continue;
    const nal = Buffer.from(t, "base64");
    if (nal.length < 2) continue;
    const type = nal[0]! & 0x1f;
    if (type === NalType.SPS) out.sps.push(nal);
    else if (type === NalType.PPS) out.pps.push(nal);
  }
  return out;
}

/** The sprop-parameter-sets value for SDP (RFC 6184 §8.1). */
export function formatSpropParameterSets(sets: ParameterSets): string {
  return [...sets.sps, ...sets.pps].map((n) => n.toString("base64")).join(",");
}

/** profile-level-id for SDP: the three bytes after an SPS's NAL header, as 6 hex digits (RFC 6184 §8.1). */
export function profileLevelIdFromSps(sps: Uint8Array): string | null {
  if (sps.length < 4) return null;
  return Buffer.from(sps.buffer, sps.byteOffset + 1, 3).toString("hex");
}

export { parseSps, unescapeRbsp, type SpsInfo } from "./sps.ts";
