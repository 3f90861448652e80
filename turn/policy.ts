/**
 * Which peers a relay may talk to. Closed by default (RFC 8656 §21.1.5 leaves it to the
 * server; an open relay into loopback, private networks or cloud metadata is how TURN
 * servers get abused): special-purpose ranges are refused with 403 unless explicitly
 * allow-listed, and the gateway's own media addresses are allowed by the server itself.
 *
 * Order: unspecified/broadcast (never) → allow-list → the gateway's own media addresses (on
 * the media port range only) → deny-list → special-purpose → public (unless `allowPublic`
 * is false).
 */
import { CidrList } from "../config/net/cidr.ts";
import { parseIp } from "../config/net/ip.ts";
import { isUnspecified, specialPurpose } from "../config/net/special.ts";

export type PeerVerdict =
  | "allow"
  | "unspecified" // 0.0.0.0, ::, broadcast: meaningless or local as a destination
  | "denied" // matched the configured deny-list
  | "special-purpose" // loopback, private, link-local, CGNAT, multicast, documentation, mapped… (config/net/special.ts)
  | "not-allow-listed" // public, but allowPublic is false
  | "port-not-allowed" // the gateway's own address, but a port outside its media port range
  | "malformed";

export interface PeerPolicyOptions {
  /** Configured allow-list (IPs or CIDR blocks). */
  allow?: readonly string[];
  /** Configured deny-list. */
  deny?: readonly string[];
  /** Relay to public addresses outside the allow-list. Default true. */
  allowPublic?: boolean;
  /** The gateway's own media addresses: allowed (IPs or CIDR blocks), on `gatewayPorts` only. */
  gatewayAddresses?: readonly string[];
  /**
   * The ports of the gateway's media (`media.icePortRange`), inclusive. A relay may reach the
   * gateway's addresses on these ports only: never its SIP, TURN, HTTP or any other service.
   * Default: every port (tests that relay to ad-hoc loopback peers).
   */
  gatewayPorts?: readonly [number, number];
}

export class PeerPolicy {
  private readonly allow: CidrList;
  private readonly deny: CidrList;
  private readonly allowPublic: boolean;
  private gateway: CidrList;
  private readonly gatewayPorts: readonly [number, number];

  /** Throws BadInputError naming the entry if a list is malformed (config validation catches it first). */
  constructor(opts: PeerPolicyOptions = {}) {
    this.allow = new CidrList(opts.allow ?? [], "allow");
    this.deny = new CidrList(opts.deny ?? [], "deny");
    this.allowPublic = opts.allowPublic ?? true;
    this.gateway = new CidrList(opts.gatewayAddresses ?? [], "gatewayAddresses");
    this.gatewayPorts = opts.gatewayPorts ?? [1, 65535];
  }

  /** Replace the gateway's own media addresses (they may change when the SFU rebinds). */
  setGatewayAddresses(list: readonly string[]): void {
    this.gateway = new CidrList(list, "gatewayAddresses");
  }

  /**
   * Decide for a peer IP (text as Node formats it) and, when known, its port. Permissions
   * (RFC 8656 §9) are per IP and are checked without a port; ChannelBind and every Send
   * indication name the port and are checked with it.
   */
  check(address: string, port?: number): PeerVerdict {
    const ip = parseIp(address);
    if (!ip) return "malformed";
    if (isUnspecified(ip)) return "unspecified";
    if (this.allow.has(ip)) return "allow";
    if (this.gateway.has(ip)) {
      if (port === undefined || (port >= this.gatewayPorts[0] && port <= this.gatewayPorts[1])) return "allow";
      return "port-not-allowed";
    }
    if (this.deny.has(ip)) return "denied";
    if (specialPurpose(ip) !== undefined) return "special-purpose";
    return this.allowPublic ? "allow" : "not-allow-listed";
  }
}
