/**
 * Which peers a relay may talk to. Closed by default (RFC 8656 §21.1.5 leaves it to the
 * server; an open relay into loopback, private networks or cloud metadata is how TURN
 * servers get abused): special-purpose ranges are refused with 403 unless explicitly
 * allow-listed, and the gateway's own media addresses are allowed by the server itself.
 *
 * Order: unspecified/broadcast (never) → allow-list → deny-list → special-purpose →
 * public (unless `allowPublic` is false).
 */
import { parseCidr, type Cidr } from "../config/sections/turn.ts";
import { parseIp } from "./stun/address.ts";

export type PeerVerdict =
  | "allow"
  | "unspecified" // 0.0.0.0, ::, broadcast: meaningless or local as a destination
  | "denied" // matched the configured deny-list
  | "special-purpose" // loopback, private, link-local, CGNAT, multicast, documentation, mapped…
  | "not-allow-listed" // public, but allowPublic is false
  | "malformed";

interface Range {
  readonly cidr: Cidr;
  readonly label: string;
}

const SPECIAL: readonly Range[] = (
  [
    // IPv4 (IANA IPv4 Special-Purpose Address Registry, plus multicast and reserved).
    ["0.0.0.0/8", "this-network"],
    ["10.0.0.0/8", "private"],
    ["100.64.0.0/10", "cgnat"],
    ["127.0.0.0/8", "loopback"],
    ["169.254.0.0/16", "link-local"], // includes the 169.254.169.254 metadata service
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
    ["240.0.0.0/4", "reserved"], // includes 255.255.255.255
    // IPv6 (IANA IPv6 Special-Purpose Address Registry, plus multicast).
    ["::/96", "ipv4-compatible"], // includes :: and ::1
    ["::ffff:0:0/96", "ipv4-mapped"],
    ["64:ff9b::/96", "nat64"],
    ["64:ff9b:1::/48", "nat64-local"],
    ["100::/64", "discard"],
    ["2001::/23", "ietf-protocol"], // Teredo, ORCHID, benchmarking…
    ["2001:db8::/32", "documentation"],
    ["2002::/16", "6to4"],
    ["3fff::/20", "documentation"],
    ["5f00::/16", "srv6"],
    ["fc00::/7", "unique-local"], // includes fd00:ec2::254 (metadata)
    ["fe80::/10", "link-local"],
    ["fec0::/10", "site-local"],
    ["ff00::/8", "multicast"],
  ] as const
).map(([text, label]) => ({ cidr: parseCidr(text) as Cidr, label }));

/** True if `ip` (4 or 16 bytes) lies in `c`. */
export function inCidr(ip: Uint8Array, c: Cidr): boolean {
  if (ip.length !== c.bytes.length) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (ip[i] !== c.bytes[i]) return false;
  const rem = c.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (ip[full]! & mask) === (c.bytes[full]! & mask);
}

/** The special-purpose range label of `ip`, or undefined for an ordinary public address. */
export function specialPurposeLabel(ip: Uint8Array): string | undefined {
  for (const r of SPECIAL) if (inCidr(ip, r.cidr)) return r.label;
  return undefined;
}

function isUnspecified(ip: Uint8Array): boolean {
  if (ip.length === 4) return ip.every((b) => b === 0) || ip.every((b) => b === 255);
  return ip.every((b) => b === 0);
}

function toCidrs(list: readonly string[], what: string): Cidr[] {
  return list.map((s, i) => {
    const c = parseCidr(s);
    if (typeof c === "string") throw new RangeError(`${what}[${i}]: ${c}`);
    return c;
  });
}

export interface PeerPolicyOptions {
  /** Configured allow-list (IPs or CIDR blocks). */
  allow?: readonly string[];
  /** Configured deny-list. */
  deny?: readonly string[];
  /** Relay to public addresses outside the allow-list. Default true. */
  allowPublic?: boolean;
  /** The gateway's own media addresses: always allowed (IPs or CIDR blocks). */
  gatewayAddresses?: readonly string[];
}

export class PeerPolicy {
  private readonly allow: Cidr[];
  private readonly deny: Cidr[];
  private readonly allowPublic: boolean;
  private gateway: Cidr[];

  /** Throws RangeError naming the entry if a list is malformed (config validation catches it first). */
  constructor(opts: PeerPolicyOptions = {}) {
    this.allow = toCidrs(opts.allow ?? [], "allow");
    this.deny = toCidrs(opts.deny ?? [], "deny");
    this.allowPublic = opts.allowPublic ?? true;
    this.gateway = toCidrs(opts.gatewayAddresses ?? [], "gatewayAddresses");
  }

  /** Replace the gateway's own media addresses (they may change when the SFU rebinds). */
  setGatewayAddresses(list: readonly string[]): void {
    this.gateway = toCidrs(list, "gatewayAddresses");
  }

  /** Decide for a peer IP (text as Node formats it). */
  check(address: string): PeerVerdict {
    const ip = parseIp(address);
    if (!ip) return "malformed";
    if (isUnspecified(ip)) return "unspecified";
    for (const c of this.allow) if (inCidr(ip, c)) return "allow";
    for (const c of this.gateway) if (inCidr(ip, c)) return "allow";
    for (const c of this.deny) if (inCidr(ip, c)) return "denied";
    if (specialPurposeLabel(ip) !== undefined) return "special-purpose";
    return this.allowPublic ? "allow" : "not-allow-listed";
  }
}
