/**
 * TURN relay configuration. Owned by the TURN feature (`turn/`).
 *
 * Security settings fail closed: peers in special-purpose ranges (loopback, private,
 * link-local, CGNAT, multicast, metadata…) are refused unless listed in `peers.allow`,
 * and a malformed address list stops start-up with the offending entry's path.
 * The shared secret may come from the environment: `secret: "${TURN_SECRET}"`.
 */
import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";
import { cidrEntry } from "../net/cidr.ts";

const ipAddress = z.string().refine((s) => isIPv4(s) || isIPv6(s), { message: "must be an IPv4 or IPv6 address" });

const portRangeOrAny = z
  .tuple([z.number().int().min(0).max(65535), z.number().int().min(0).max(65535)])
  .refine(([a, b]) => a <= b, { message: "first port must not exceed last port" })
  .refine(([a, b]) => (a === 0) === (b === 0), { message: "use [0, 0] for OS-chosen ports, else both ports ≥ 1" });

const listener = z.strictObject({
  /** Address to bind. Default 127.0.0.1 (local only). */
  host: ipAddress.default("127.0.0.1"),
  /** Port; 0 picks a free port. */
  port: z.number().int().min(0).max(65535),
});

export const turnSection = z
  .strictObject({
    /** Run the embedded TURN server. Default false until configured. */
    enabled: z.boolean().default(false),
    /** REALM sent in challenges; part of the long-term key. Default "gatehouse". */
    realm: z.string().min(1).max(127).default("gatehouse"),
    /**
     * Shared secret for time-limited (TURN REST) credentials: password = base64(HMAC-SHA1(secret, username)).
     * At least 16 characters. Use `${TURN_SECRET}` to take it from the environment. Required when enabled.
     */
    secret: z.string().min(16, "must be at least 16 characters").optional(),
    /** Earlier secrets still accepted while credentials minted under them expire (rotation). Default []. */
    previousSecrets: z.array(z.string().min(16, "must be at least 16 characters")).max(4).default([]),
    /**
     * Lifetime of the credentials the gateway mints for callers without a sign-in session
     * (bearer tokens), seconds, never past the token. Credentials of a session carry its
     * reference, end with it, and last at most `auth.session.maxAgeSeconds`. Default 300.
     */
    credentialLifetimeSeconds: z.number().int().min(30).max(86400).default(300),
    /** How long a NONCE stays valid before the client gets 438 Stale Nonce, seconds. Default 600. */
    nonceLifetimeSeconds: z.number().int().min(10).max(86400).default(600),
    /** UDP listeners for clients. Default one on 127.0.0.1:14049. */
    udp: z.array(listener).default([{ host: "127.0.0.1", port: 14049 }]),
    /** Accept TURN over TCP and TLS on the gateway's HTTPS port (first-bytes sniffing). Default true. */
    shareHttpsPort: z.boolean().default(true),
    /** Optional dedicated TCP listeners for TURN. Default none. */
    tcp: z.array(listener).default([]),
    /** Optional dedicated TLS listeners for TURN (use `server.tls` certificate). Default none. */
    tls: z.array(listener).default([]),
    relay: z
      .strictObject({
        /** Local IPv4 address relay sockets bind. Default 127.0.0.1. */
        address: ipAddress.default("127.0.0.1"),
        /** IPv4 address announced in XOR-RELAYED-ADDRESS, for servers behind NAT. Default: `address`. */
        externalAddress: ipAddress.optional(),
        /** Local IPv6 address for IPv6 relays; IPv6 allocations get 440 when unset. Default none. */
        address6: ipAddress.optional(),
        /** IPv6 address announced for IPv6 relays. Default: `address6`. */
        externalAddress6: ipAddress.optional(),
        /** Relay UDP ports [first, last]; [0, 0] lets the OS choose. Default [49152, 65535]. */
        portRange: portRangeOrAny.default([49152, 65535]),
        /** SO_RCVBUF/SO_SNDBUF of listener and relay sockets, bytes. Default 4 MiB (capped by the kernel). */
        socketBufferBytes: z.number().int().min(65536).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
      })
      .prefault({}),
    lifetimes: z
      .strictObject({
        /** Default allocation lifetime, seconds (RFC 8656: 600). */
        allocationSeconds: z.number().int().min(1).max(86400).default(600),
        /** Longest allocation lifetime a client may ask for, seconds (RFC 8656 recommends 3600). */
        maxAllocationSeconds: z.number().int().min(1).max(86400).default(3600),
        /** Permission lifetime, seconds (RFC 8656: 300, not negotiable by clients). */
        permissionSeconds: z.number().int().min(1).max(3600).default(300),
        /** Channel binding lifetime, seconds (RFC 8656: 600). */
        channelSeconds: z.number().int().min(1).max(3600).default(600),
      })
      .prefault({}),
    quotas: z
      .strictObject({
        /**
         * Live allocations per user (subject of the credential). Default 256: a browser allocates on
         * every TURN transport offered (UDP, TCP, TLS) from each of its networks for each tile, so a
         * wall of 16 tiles on a two-network machine takes 96, and a reload briefly holds the old
         * page's too (measured with Chromium; a closed page's allocations go within ~15 s).
         */
        allocationsPerUser: z.number().int().min(1).max(10000).default(256),
        /** Allocations on this server at once, all users together; more get 486 Allocation Quota Reached. Default 4000. */
        totalAllocations: z.number().int().min(1).max(1_000_000).default(4000),
        /** Relayed bytes per second per allocation, each direction; 0 = unlimited. Default 2.5 MB/s (20 Mbit/s). */
        bandwidthBytesPerSecond: z.number().int().min(0).default(2_500_000),
        /** Failed authentications tolerated per source IP per minute before its requests are dropped. Default 20. */
        authFailuresPerMinute: z.number().int().min(1).max(100000).default(20),
        /** Permissions per allocation. Default 64. */
        permissionsPerAllocation: z.number().int().min(1).max(4096).default(64),
        /** Channel bindings per allocation. Default 64. */
        channelsPerAllocation: z.number().int().min(1).max(16384).default(64),
      })
      .prefault({}),
    peers: z
      .strictObject({
        /** Peer addresses/CIDR blocks always allowed, even in special-purpose ranges. Default []. */
        allow: z.array(cidrEntry).default([]),
        /** Peer addresses/CIDR blocks always refused (403), checked after `allow`. Default []. */
        deny: z.array(cidrEntry).default([]),
        /**
         * Relay to public addresses outside `allow`. Default false: the embedded relay exists to reach this
         * gateway's own media, so it relays only there and to allow-listed peers, and a signed-in user cannot
         * use it as an open relay. Set true only when other WebRTC peers must be reached through it.
         */
        allowPublic: z.boolean().default(false),
      })
      .prefault({}),
    /** Seconds a TLS handshake or the first bytes of a TURN TCP connection may take. Default 10. */
    handshakeTimeoutSeconds: z.number().min(1).max(120).default(10),
  })
  .prefault({})
  .superRefine((t, ctx) => {
    if (t.enabled && !t.secret) ctx.addIssue({ code: "custom", path: ["secret"], message: "required when turn.enabled is true" });
    if (t.lifetimes.allocationSeconds > t.lifetimes.maxAllocationSeconds)
      ctx.addIssue({ code: "custom", path: ["lifetimes", "allocationSeconds"], message: "must not exceed lifetimes.maxAllocationSeconds" });
    if (t.relay.externalAddress && !isIPv4(t.relay.externalAddress))
      ctx.addIssue({ code: "custom", path: ["relay", "externalAddress"], message: "must be an IPv4 address" });
    if (!isIPv4(t.relay.address)) ctx.addIssue({ code: "custom", path: ["relay", "address"], message: "must be an IPv4 address" });
    if (t.relay.address6 && !isIPv6(t.relay.address6))
      ctx.addIssue({ code: "custom", path: ["relay", "address6"], message: "must be an IPv6 address" });
    if (t.relay.externalAddress6 && !isIPv6(t.relay.externalAddress6))
      ctx.addIssue({ code: "custom", path: ["relay", "externalAddress6"], message: "must be an IPv6 address" });
  });

export type TurnConfig = z.infer<typeof turnSection>;
export type TurnConfigInput = z.input<typeof turnSection>;
