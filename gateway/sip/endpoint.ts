/**
 * Where a SIP message came from or goes to, and the RFC 3261 §18.2 / RFC 3581 rules
 * that turn a request's top Via and source into the address of its responses.
 */
import { formatVia, type SipRequest, type Via } from "./message.ts";
import { socketHost } from "./uri.ts";

export type SipTransport = "udp" | "tcp" | "tls";

/** A transport address; for TCP/TLS `flow` names the connection a message came in on. */
export interface Endpoint {
  readonly transport: SipTransport;
  readonly address: string;
  readonly port: number;
  /** TCP/TLS connection id, preferred over opening a new connection (§18.2.2, RFC 5626 flows). */
  readonly flow?: number | undefined;
}

export function isReliable(t: SipTransport): boolean {
  return t !== "udp";
}

export function endpointKey(e: Endpoint): string {
  return `${e.transport}:${e.address}:${e.port}`;
}

export function defaultPort(t: SipTransport): number {
  return t === "tls" ? 5061 : 5060;
}

/** Via transport token for our transport. */
export function viaTransport(t: SipTransport): string {
  return t.toUpperCase();
}

/**
 * §18.2.1 + RFC 3581 §4: on receipt, add `received` when the sent-by host differs from the
 * packet source (always when `rport` is present) and fill in an empty `rport`.
 * Rewrites the request's top Via in place; returns the updated Via.
 */
export function stampReceived(req: SipRequest, via: Via, source: Endpoint): Via {
  const addRport = via.rport === true;
  const hostDiffers = socketHost(via.host) !== source.address;
  if (!addRport && !hostDiffers) return via;
  const params = new Map(via.params);
  params.set("received", source.address);
  if (addRport) params.set("rport", String(source.port));
  const updated: Via = { ...via, params, received: source.address, rport: addRport ? source.port : via.rport };
  req.headers.replaceFirstItem("via", formatVia(updated));
  return updated;
}

/**
 * §18.2.2 + RFC 3581 §4: where responses to a request go. Reliable transports reuse the
 * request's connection (the transport falls back to connecting to received:port);
 * UDP goes to `received` (or sent-by) at `rport` (or the sent-by port, or the default).
 * `maddr` is not honoured: we never multicast responses.
 */
export function responseDestination(via: Via | undefined, source: Endpoint): Endpoint {
  if (!via) return source;
  const address = via.received ?? socketHost(via.host);
  const port = typeof via.rport === "number" ? via.rport : via.port ?? defaultPort(source.transport);
  return { transport: source.transport, address, port, flow: source.flow };
}

const PRIVATE_V4 = [
  [0x0a000000, 0xff000000], // 10/8
  [0xac100000, 0xfff00000], // 172.16/12
  [0xc0a80000, 0xffff0000], // 192.168/16
  [0x64400000, 0xffc00000], // 100.64/10 (CGNAT)
  [0xa9fe0000, 0xffff0000], // 169.254/16
  [0x7f000000, 0xff000000], // 127/8
  [0x00000000, 0xff000000], // 0/8
] as const;

/** IPv4 as an unsigned 32-bit number, or undefined. */
export function ipv4ToInt(a: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return undefined;
  return ((o[0]! << 24) >>> 0) + (o[1]! << 16) + (o[2]! << 8) + o[3]!;
}

/** True for RFC 1918, CGNAT, link-local, loopback and 0/8 IPv4, and non-global IPv6. */
export function isPrivateAddress(a: string): boolean {
  const n = ipv4ToInt(a);
  if (n !== undefined) return PRIVATE_V4.some(([net, mask]) => ((n & mask) >>> 0) === net);
  const l = a.toLowerCase();
  return l === "::1" || l === "::" || l.startsWith("fe80:") || l.startsWith("fc") || l.startsWith("fd");
}

/** True when `a` is an IP literal (v4 or v6, no brackets). */
export function isIpLiteral(a: string): boolean {
  return ipv4ToInt(a) !== undefined || /^[0-9a-f:.]+$/i.test(a) && a.includes(":");
}

/** An allow-list entry: `10.0.0.5`, `10.0.0.0/24`, `::1`, `fd00::/8`. */
export interface Cidr {
  readonly text: string;
  matches(address: string): boolean;
}

/** Parse an address or CIDR; undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, bitsText] = text.split("/") as [string, string | undefined];
  const v4 = ipv4ToInt(addr);
  if (v4 !== undefined) {
    const bits = bitsText === undefined ? 32 : Number(bitsText);
    if (!Number.isInteger(bits) || bits < 0 || bits > 32) return undefined;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const net = (v4 & mask) >>> 0;
    return {
      text,
      matches: (a) => {
        const n = ipv4ToInt(a.startsWith("::ffff:") ? a.slice(7) : a);
        return n !== undefined && ((n & mask) >>> 0) === net;
      },
    };
  }
  const v6 = expandV6(addr);
  if (!v6) return undefined;
  const bits = bitsText === undefined ? 128 : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > 128) return undefined;
  return {
    text,
    matches: (a) => {
      const other = expandV6(a);
      if (!other) return false;
      for (let i = 0; i < bits; i++) {
        const byte = i >> 3;
        const bit = 7 - (i & 7);
        if (((v6[byte]! >> bit) & 1) !== ((other[byte]! >> bit) & 1)) return false;
      }
      return true;
    },
  };
}

function expandV6(a: string): Uint8Array | undefined {
  if (!a.includes(":") || !/^[0-9a-f:]+$/i.test(a)) return undefined;
  const halves = a.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? fill : 0).fill("0"), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  }
  return out;
}
