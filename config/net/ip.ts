/**
 * IP address text ⇄ bytes, shared by every room (TURN codec and policy, SIP allow-lists,
 * WHEP candidate filtering, config validation). One parser, so that every list and check
 * agrees on what an address is.
 *
 * Addresses travel as Node formats them (`rinfo.address`: dotted IPv4, compressed lower-case
 * IPv6), so `formatIp` follows RFC 5952 and produces the same text. Only IP literals are
 * accepted: never a host name (nothing here resolves names).
 */
import { isIPv4, isIPv6 } from "node:net";

/** 4 (IPv4) or 16 (IPv6) network-order bytes. */
export type IpBytes = Uint8Array;

export type IpFamily = 4 | 6;

/**
 * IPv4 or IPv6 text to its 4 or 16 network-order bytes; undefined if not an IP literal.
 * An IPv6 zone (`fe80::1%eth0`) is ignored. IPv4-mapped IPv6 stays 16 bytes (see `unmapIpv4`).
 */
export function parseIp(text: string): IpBytes | undefined {
  if (isIPv4(text)) {
    const out = new Uint8Array(4);
    const parts = text.split(".");
    for (let i = 0; i < 4; i++) out[i] = Number(parts[i]);
    return out;
  }
  const zone = text.indexOf("%");
  const t = zone >= 0 ? text.slice(0, zone) : text;
  if (!isIPv6(t)) return undefined;
  const out = new Uint8Array(16);
  let head = t;
  let tail = "";
  const dbl = t.indexOf("::");
  if (dbl >= 0) {
    head = t.slice(0, dbl);
    tail = t.slice(dbl + 2);
  }
  const groups = (s: string): number[] => {
    if (!s) return [];
    const g: number[] = [];
    for (const part of s.split(":")) {
      if (part.includes(".")) {
        // Embedded IPv4 (::ffff:1.2.3.4): two 16-bit groups.
        const v4 = part.split(".").map(Number);
        g.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else g.push(parseInt(part, 16));
    }
    return g;
  };
  const h = groups(head);
  const tl = groups(tail);
  h.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  const start = 8 - tl.length;
  tl.forEach((g, i) => {
    out[(start + i) * 2] = g >> 8;
    out[(start + i) * 2 + 1] = g & 0xff;
  });
  return out;
}

/** True when `text` is an IPv4 or IPv6 literal (no brackets, no port, no name). */
export function isIpLiteral(text: string): boolean {
  return parseIp(text) !== undefined;
}

/** True for IPv4-mapped IPv6 bytes (`::ffff:a.b.c.d`). */
export function isMappedIpv4(ip: IpBytes): boolean {
  if (ip.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return false;
  return ip[10] === 0xff && ip[11] === 0xff;
}

/** IPv4-mapped IPv6 bytes to the 4 IPv4 bytes they carry; any other address unchanged. */
export function unmapIpv4(ip: IpBytes): IpBytes {
  return isMappedIpv4(ip) ? ip.subarray(12, 16) : ip;
}

/** Network-order bytes to text (RFC 5952 compression for IPv6, dotted tail for IPv4-mapped, as Node writes it). */
export function formatIp(b: IpBytes): string {
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
  if (bestStart === 0 && bestLen === 5 && g[5] === 0xffff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
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
 * Canonical text of a socket's address with IPv4-mapped IPv6 (what a dual-stack listener
 * reports for IPv4 clients) turned back into plain IPv4.
 */
export function socketIp(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const b = parseIp(text);
  return b ? formatIp(unmapIpv4(b)) : undefined;
}

/**
 * Dotted IPv4 text to a uint32 without allocating; -1 if `s` is not plain IPv4.
 * For per-packet paths, where `rinfo.address` is already canonical.
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
