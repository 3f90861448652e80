/**
 * Special-purpose address ranges (IANA IPv4 and IPv6 Special-Purpose Address Registries, plus
 * multicast, reserved and the cloud metadata services). A relay, a trickled ICE candidate or a
 * device contact in one of these ranges is local, private or meaningless as a destination; who
 * refuses what is the caller's policy (TURN peers, WHEP candidates), the ranges live here once.
 *
 * Classification works on the raw bytes: an IPv4-mapped IPv6 address is labelled
 * "ipv4-mapped" whatever IPv4 address it carries, so a mapped form is never mistaken for an
 * ordinary public IPv6 destination (fail closed).
 */
import { cidrContains, parseCidr, type Cidr } from "./cidr.ts";
import { isMappedIpv4, parseIp, unmapIpv4, type IpBytes } from "./ip.ts";

export type SpecialPurpose =
  | "metadata" // cloud instance metadata (169.254.169.254, fd00:ec2::254, 100.100.100.200)
  | "this-network"
  | "private"
  | "cgnat"
  | "loopback"
  | "link-local"
  | "ietf-protocol"
  | "documentation"
  | "as112"
  | "amt"
  | "6to4-relay"
  | "benchmarking"
  | "multicast"
  | "reserved" // 240/4, includes 255.255.255.255
  | "ipv4-compatible" // ::/96, includes :: and ::1
  | "ipv4-mapped"
  | "nat64"
  | "nat64-local"
  | "discard"
  | "6to4"
  | "srv6"
  | "unique-local"
  | "site-local";

const TABLE: readonly (readonly [string, SpecialPurpose])[] = [
  // Most specific first: the first match names the range.
  ["169.254.169.254/32", "metadata"],
  ["100.100.100.200/32", "metadata"],
  ["fd00:ec2::254/128", "metadata"],
  ["::1/128", "loopback"],
  // IPv4.
  ["0.0.0.0/8", "this-network"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "cgnat"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "ietf-protocol"],
  ["192.0.2.0/24", "documentation"],
  ["192.31.196.0/24", "as112"],
  ["192.52.193.0/24", "amt"],
  ["192.88.99.0/24", "6to4-relay"],
  ["192.168.0.0/16", "private"],
  ["192.175.48.0/24", "as112"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation"],
  ["203.0.113.0/24", "documentation"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved"],
  // IPv6.
  ["::/96", "ipv4-compatible"],
  ["64:ff9b::/96", "nat64"],
  ["64:ff9b:1::/48", "nat64-local"],
  ["100::/64", "discard"],
  ["2001::/23", "ietf-protocol"], // Teredo, ORCHID, benchmarking…
  ["2001:db8::/32", "documentation"],
  ["2002::/16", "6to4"],
  ["3fff::/20", "documentation"],
  ["5f00::/16", "srv6"],
  ["fc00::/7", "unique-local"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "site-local"],
  ["ff00::/8", "multicast"],
];

const RANGES: readonly { readonly cidr: Cidr; readonly label: SpecialPurpose }[] = TABLE.map(([t, label]) => ({ cidr: parseCidr(t), label }));

/**
 * The special-purpose range of `ip` (bytes or text), or undefined for an ordinary global
 * unicast address. Malformed text is "reserved" (never treat garbage as public).
 */
export function specialPurpose(ip: IpBytes | string): SpecialPurpose | undefined {
  const b = typeof ip === "string" ? parseIp(ip) : ip;
  if (!b) return "reserved";
  if (isMappedIpv4(b)) return "ipv4-mapped";
  for (const r of RANGES) if (cidrContains(r.cidr, b)) return r.label;
  return undefined;
}

/** True for the unspecified addresses (0.0.0.0, ::) and IPv4 limited broadcast: never a destination. */
export function isUnspecified(ip: IpBytes | string): boolean {
  const b = typeof ip === "string" ? parseIp(ip) : ip;
  if (!b) return false;
  if (b.length === 4) return b.every((x) => x === 0) || b.every((x) => x === 255);
  return b.every((x) => x === 0);
}

/** True for loopback addresses (127/8, ::1, and their IPv4-mapped forms). */
export function isLoopback(ip: IpBytes | string): boolean {
  const b = typeof ip === "string" ? parseIp(ip) : ip;
  if (!b) return false;
  return specialPurpose(unmapIpv4(b)) === "loopback";
}
