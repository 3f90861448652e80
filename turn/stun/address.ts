/**
 * Transport addresses and the lookup keys of the relay tables. The IP text helpers are the
 * shared ones (`config/net/ip.ts`), re-exported for the codec.
 * Per-packet lookups use number keys for IPv4 (ip * 65536 + port fits in 48 bits).
 */
import { ipv4ToInt, type IpFamily } from "../../config/net/ip.ts";

export { canonicalIp, formatIp, ipv4ToInt, parseIp, socketIp, type IpFamily } from "../../config/net/ip.ts";

/** A transport address as the relay tables and actions carry it. */
export interface TransportAddress {
  readonly family: IpFamily;
  /** Node's text form: "192.0.2.1", "2001:db8::1". */
  readonly address: string;
  readonly port: number;
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
