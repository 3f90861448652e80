/**
 * CIDR blocks and address lists: the one implementation behind the TURN peer policy, the SIP
 * device allow-lists, WHEP candidate filtering and the config validation.
 *
 * Rules (the same everywhere):
 * - An entry is an IP literal (`10.0.0.5`, `::1`, a /32 or /128) or `address/prefix`.
 * - Host bits set below the prefix are an ERROR, not silently masked: `10.0.0.1/8` is almost
 *   always a typo for `10.0.0.1/32` or `10.0.0.0/8`, and guessing which would widen or narrow
 *   a security list behind the operator's back. The message names the network they may mean.
 * - IPv4-mapped IPv6 is IPv4: `::ffff:10.0.0.0/104` is stored as `10.0.0.0/8`, and an address
 *   `::ffff:10.0.0.7` (what a dual-stack socket reports) matches IPv4 blocks. So a deny-list of
 *   IPv4 blocks cannot be bypassed by writing the peer in mapped form.
 * - Any other IPv6 block never matches an IPv4 address and vice versa.
 */
import { z } from "zod";
import { BadInputError } from "../errors.ts";
import { formatIp, isMappedIpv4, parseIp, unmapIpv4, type IpBytes, type IpFamily } from "./ip.ts";

/** A parsed CIDR block, network bytes masked to the prefix. */
export interface Cidr {
  readonly family: IpFamily;
  /** 4 or 16 network-order bytes; no bit is set below `prefix`. */
  readonly bytes: IpBytes;
  /** Mask length in bits (0..32 or 0..128). */
  readonly prefix: number;
  /** The entry as written, for logs and errors. */
  readonly text: string;
}

/** Why `text` is not a valid CIDR entry, or undefined when it is. Used by config validation. */
export function cidrProblem(text: string): string | undefined {
  const r = parse(text);
  return typeof r === "string" ? r : undefined;
}

/** Parse a CIDR entry; throws BadInputError (code BAD_INPUT) with the reason. */
export function parseCidr(text: string): Cidr {
  const r = parse(text);
  if (typeof r === "string") throw new BadInputError(r);
  return r;
}

function parse(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  if (addr.includes("%")) return `"${text}": a zoned address (%) cannot be a list entry`;
  const raw = parseIp(addr);
  if (!raw) return `"${text}" is not an IP address or CIDR block`;
  const max = raw.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `"${text}": prefix length must be 0..${max}`;
    prefix = Number(p);
  }
  const masked = maskTo(raw, prefix);
  if (!equalBytes(masked, raw)) {
    return `"${text}": host bits are set below the /${prefix} prefix (the network is ${formatIp(masked)}/${prefix}; a single address needs /${max})`;
  }
  // IPv4-mapped IPv6 with a prefix inside the mapped range is the IPv4 block it names.
  if (raw.length === 16 && prefix >= 96 && isMappedIpv4(raw)) {
    return Object.freeze({ family: 4, bytes: raw.slice(12, 16), prefix: prefix - 96, text });
  }
  return Object.freeze({ family: raw.length === 4 ? 4 : 6, bytes: masked, prefix, text });
}

function maskTo(ip: IpBytes, prefix: number): IpBytes {
  const out = Uint8Array.from(ip);
  for (let bit = prefix; bit < out.length * 8; bit++) out[bit >> 3] = out[bit >> 3]! & ~(0x80 >> (bit & 7));
  return out;
}

function equalBytes(a: IpBytes, b: IpBytes): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True if `ip` (bytes or text) lies in `c`. IPv4-mapped IPv6 addresses match IPv4 blocks. Malformed text never matches. */
export function cidrContains(c: Cidr, ip: IpBytes | string): boolean {
  const b = typeof ip === "string" ? parseIp(ip) : ip;
  if (!b) return false;
  const a = unmapIpv4(b);
  if (a.length !== c.bytes.length) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== c.bytes[i]) return false;
  const rem = c.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (a[full]! & mask) === (c.bytes[full]! & mask);
}

/** An immutable list of CIDR blocks (an allow- or deny-list). */
export class CidrList {
  readonly entries: readonly Cidr[];

  /** Throws BadInputError naming `what[i]` when an entry is malformed (config validation reports it first). */
  constructor(list: readonly (string | Cidr)[], what = "list") {
    this.entries = Object.freeze(
      list.map((e, i) => {
        if (typeof e !== "string") return e;
        const r = parse(e);
        if (typeof r === "string") throw new BadInputError(`${what}[${i}]: ${r}`);
        return r;
      }),
    );
  }

  get size(): number {
    return this.entries.length;
  }

  /** The first entry containing `ip`, or undefined. */
  find(ip: IpBytes | string): Cidr | undefined {
    const b = typeof ip === "string" ? parseIp(ip) : ip;
    if (!b) return undefined;
    for (const c of this.entries) if (cidrContains(c, b)) return c;
    return undefined;
  }

  has(ip: IpBytes | string): boolean {
    return this.find(ip) !== undefined;
  }
}

/** Zod schema of one list entry (IP or CIDR); the issue message is the parser's reason. */
export const cidrEntry = z.string().superRefine((s, ctx) => {
  const r = cidrProblem(s);
  if (r) ctx.addIssue({ code: "custom", message: r });
});
