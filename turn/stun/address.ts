/**
 * IP address helpers shared by the codec, the policy and the relay tables.
 *
 * Addresses travel as Node formats them (`rinfo.address`: dotted IPv4, compressed
 * lower-case IPv6), so the formatter here follows RFC 5952 to produce the same text.
 * Per-packet lookups use number keys for IPv4 (ip * 65536 + port fits in 48 bits).
 */
import { parseIp } from "../../config/sections/turn.ts";

export { parseIp };

export type IpFamily = 4 | 6;

/** A transport address as the relay tables and actions carry it. */
export interface TransportAddress {
  readonly family: IpFamily;
  /** Node's text form: "192.0.2.1", "2001:db8::1". */
  readonly address: string;
  readonly port: number;
}

/** Network-order bytes to text (RFC 5952 compression for IPv6). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  // Longest run of zero groups (length ≥ 2) becomes "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped addresses are written with a dotted tail, as Node does.
  if (bestStart === 0 && bestLen === 5 && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  const hex = (x: number): string => x.toString(16);
  if (bestStart < 0) return g.map(hex).join(":");
  const left = g.slice(0, bestStart).map(hex).join(":");
  const right = g.slice(bestStart + bestLen).map(hex).join(":");
  return `${left}::${right}`;
}

/** Normalise any IP text to Node's canonical form; undefined if not an IP. */
export function canonicalIp(text: string): string | undefined {
  const b = parseIp(text);
  return b ? formatIp(b) : undefined;
}

/**
 * Canonical text of a socket's address with IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a
 * dual-stack listener reports for IPv4 clients) turned back into plain IPv4.
 */
export function socketIp(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const c = canonicalIp(text);
  if (c && c.startsWith("::ffff:") && c.includes(".")) return c.slice(7);
  return c;
}

/**
 * Dotted IPv4 text to a uint32 without allocating; -1 if `s` is not plain IPv4.
 * Used on the per-packet path, where `rinfo.address` is already canonical.
 */
export function ipv4ToInt(s: string): number {
  let acc = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255) return -1;
      acc = acc * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      digits++;
      if (digits > 3) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0 || part > 255) return -1;
  return acc * 256 + part;
}

/**
 * Lookup key of a transport address: a number for IPv4 (ip * 65536 + port),
 * a string for IPv6. Numbers and strings never collide in a Map.
 */
export function addressKey(address: string, port: number): number | string {
  const v4 = ipv4ToInt(address);
  return v4 >= 0 ? v4 * 65536 + port : `${address}|${port}`;
}

/** Lookup key of an IP alone (permissions are per IP, RFC 8656 §9). */
export function ipKey(address: string): number | string {
  const v4 = ipv4ToInt(address);
  return v4 >= 0 ? v4 : address;
}
