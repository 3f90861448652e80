/**
 * SIP intercom configuration (registrar + UAS for door stations). Owned by the SIP feature.
 * Every field documents its default and unit. Security settings fail closed: a device can
 * call only after registering with its password or from an allow-listed address.
 */
import { z } from "zod";
import { cidrEntry } from "../net/cidr.ts";

const port = z.number().int().min(0).max(65535);

/** Inclusive UDP port range [first, last] for RTP+RTCP pairs (two ports per call). */
const rtpRange = z
  .tuple([z.number().int().min(1024).max(65535), z.number().int().min(1024).max(65535)])
  .refine(([a, b]) => a <= b, { message: "first port must not exceed last port" })
  .refine(([a, b]) => b - a >= 1, { message: "needs at least two ports (RTP and RTCP)" });

const slug = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "lower-case letters, digits, '-' and '_', at most 64 characters");

/** `10.0.0.5`, `10.0.0.0/24`, `::1`, `fd00::/8`; host bits below the prefix are an error (config/net/cidr.ts). */
const cidr = cidrEntry;

const digestAlgorithm = z.enum(["SHA-256", "SHA-512-256", "MD5"]);

const device = z
  .strictObject({
    /** Stable id (rights, logs, API). */
    id: slug,
    /** Display name. Default: the id. */
    name: z.string().min(1).max(200).optional(),
    /** SIP user name the device registers and authenticates with (the AOR is `sip:<username>@<domain>`). */
    username: z.string().regex(/^[A-Za-z0-9._~+-]{1,64}$/, "letters, digits and . _ ~ + -, at most 64"),
    /** Digest password; write `${ENV_VAR}`. Without it the device can only call from `allow` addresses. */
    password: z.string().min(8, "at least 8 characters").optional(),
    /** Camera shown with this door's ring (a `cameras[].id`). */
    camera: slug.optional(),
    /** Who may answer. Both empty: every user with the `answer_intercom` right. */
    answerers: z
      .strictObject({
        /** User ids (the OIDC `sub` or mapped id). */
        users: z.array(z.string().min(1)).default([]),
        /** Groups from the identity provider's claims. */
        groups: z.array(z.string().min(1)).default([]),
      })
      .prefault({}),
    /** "Open door" signalling. */
    dtmf: z
      .strictObject({
        /** Digits sent by the open-door action (0-9, *, #, A-D). Default "#". */
        openDoor: z.string().regex(/^[0-9*#A-Da-d]{1,16}$/, "DTMF digits 0-9 * # A-D, 1 to 16").default("#"),
        /** `rfc4733` (telephone-event in RTP) or `info` (SIP INFO application/dtmf-relay). Default rfc4733. */
        method: z.enum(["rfc4733", "info"]).default("rfc4733"),
        /** Tone duration per digit, ms. Default 160. */
        durationMs: z.number().int().min(40).max(2000).default(160),
      })
      .prefault({}),
    /** Source addresses/CIDRs the device may call from without registering or authenticating. Default none. */
    allow: z.array(cidr).default([]),
    /**
     * Digest algorithms offered, most preferred first (RFC 8760). Default ["MD5"]: many SIP
     * stacks (baresip 1.x, sipp 3.6, older door stations) fail on any non-MD5 challenge, even
     * when an MD5 one follows. List "SHA-256" first for devices that implement RFC 8760.
     */
    digestAlgorithms: z.array(digestAlgorithm).min(1).default(["MD5"]),
    /** Challenge INVITEs from registered (not allow-listed) sources with digest. Default true. */
    authenticateCalls: z.boolean().default(true),
  })
  .refine((d) => d.password !== undefined || d.allow.length > 0, {
    message: "a device needs a password (to register) or allow-listed addresses",
  });

export const sipSection = z
  .strictObject({
    /** Run the SIP registrar/UAS. Default false. */
    enabled: z.boolean().default(false),
    /** Address the SIP listeners and RTP sockets bind. Default 127.0.0.1 (local only). */
    bindAddress: z.string().default("127.0.0.1"),
    /** Address written in Via, Contact and SDP when it differs from the bound one (NAT, 0.0.0.0). */
    announcedAddress: z.string().optional(),
    /** SIP over UDP. Default enabled on 5060 (0 = any free port). */
    udp: z
      .strictObject({
        /** Default true. */
        enabled: z.boolean().default(true),
        /** Port; 0 = any free port. Default 5060. */
        port: port.default(5060),
      })
      .prefault({}),
    /** SIP over TCP. Default enabled on 5060 (0 = any free port). */
    tcp: z
      .strictObject({
        /** Default true. */
        enabled: z.boolean().default(true),
        /** Port; 0 = any free port. Default 5060. */
        port: port.default(5060),
      })
      .prefault({}),
    /** SIP over TLS; absent = off. Certificate and key are PEM paths (default: server.tls). */
    tls: z
      .strictObject({
        /** TLS port. Default 5061. */
        port: port.default(5061),
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
      })
      .optional(),
    /** SIP domain of the device AORs. Default "gatehouse". */
    domain: z.string().regex(/^[A-Za-z0-9.-]{1,253}$/, "a host name").default("gatehouse"),
    /** Digest realm. Default: the domain. */
    realm: z.string().min(1).max(128).optional(),
    /** UDP ports for call audio, RTP+RTCP pairs. Default [10000, 10999]. */
    rtpPortRange: rtpRange.default([10000, 10999]),
    /** Seconds a call rings before it ends with 480 and is recorded as missed. Default 30. */
    ringTimeoutSeconds: z.number().min(1).max(600).default(30),
    /** Answer with 183 + SDP while ringing: the door's audio reaches the browser before answer, the door hears a ringback tone. Default false (180 only). */
    earlyMedia: z.boolean().default(false),
    /**
     * After "Open door" on a ringing call (the gateway answers, sends the digits, hangs up): how
     * long the call is kept after the last RFC 4733 event before BYE, ms, so the door's jitter
     * buffer plays the event out (a door station receiving BYE at once may drop it). SIP INFO
     * digits are confirmed by the door's 2xx and need no wait. Default 500.
     */
    openDoorHangupDelayMs: z.number().int().min(0).max(5000).default(500),
    registration: z
      .strictObject({
        /** Shortest binding accepted, seconds; shorter requests get 423 (RFC 3261 §10.3). Default 60. */
        minExpires: z.number().int().min(1).max(86400).default(60),
        /** Longest binding granted, seconds (longer requests are shortened). Default 3600. */
        maxExpires: z.number().int().min(1).max(604800).default(3600),
        /** Granted when the device asks for none, seconds. Default 3600. */
        defaultExpires: z.number().int().min(1).max(604800).default(3600),
        /** Bindings kept per device (oldest evicted). Default 4. */
        maxBindings: z.number().int().min(1).max(32).default(4),
      })
      .prefault({})
      .refine((r) => r.minExpires <= r.maxExpires, { message: "minExpires must not exceed maxExpires" }),
    /** OPTIONS keep-alive to registered devices, seconds; 0 disables. A device that stops answering loses its binding. Default 30. */
    keepAliveSeconds: z.number().int().min(0).max(3600).default(30),
    /**
     * SIP over TCP/TLS connections. Without authentication anyone can open them, so they are
     * bounded per source and closed quickly unless a device registered over them.
     */
    connections: z
      .strictObject({
        /** Simultaneous TCP/TLS connections in all; more are refused. Default 2048. */
        max: z.number().int().min(1).max(100000).default(2048),
        /** Simultaneous TCP/TLS connections from one source address; more are refused. Default 16. */
        perSource: z.number().int().min(1).max(10000).default(16),
        /** A message whose end has not arrived this long after its first byte closes the connection, seconds. Default 10. */
        messageTimeoutSeconds: z.number().min(1).max(600).default(10),
        /** A connection no device registered over is closed after this long without a SIP message, seconds. Default 30. */
        unregisteredIdleSeconds: z.number().min(1).max(86400).default(30),
        /** Any connection is closed after this long without traffic, seconds. Default 600. */
        idleSeconds: z.number().min(1).max(86400).default(600),
      })
      .prefault({}),
    /** Digest nonce lifetime, seconds (then stale=true). Default 300. */
    nonceLifetimeSeconds: z.number().int().min(10).max(86400).default(300),
    /** Brute-force lockout of a source address after failed authentications. */
    lockout: z
      .strictObject({
        /** Failures that lock the source out. Default 5. */
        maxFailures: z.number().int().min(1).max(1000).default(5),
        /** Window in which failures count, seconds. Default 300. */
        windowSeconds: z.number().int().min(1).max(86400).default(300),
        /** Lockout duration, seconds. Default 900. */
        durationSeconds: z.number().int().min(1).max(604800).default(900),
      })
      .prefault({}),
    /** RFC 4028 session timer: smallest Session-Expires accepted, seconds (Min-SE). Default 90. */
    minSessionExpires: z.number().int().min(90).max(86400).default(90),
    /** Concurrent calls; more get 503. Default 500. */
    maxCalls: z.number().int().min(1).max(10000).default(500),
    /** RFC 3261 timers, ms: T1 (RTT estimate), T2, T4. Defaults 500, 4000, 5000. */
    timers: z
      .strictObject({
        /** T1, the round-trip estimate: first retransmission interval, ms. Default 500. */
        t1Ms: z.number().int().min(10).max(10000).default(500),
        /** T2, the longest retransmission interval of non-INVITE requests and INVITE responses, ms. Default 4000. */
        t2Ms: z.number().int().min(100).max(60000).default(4000),
        /** T4, how long a message may stay in the network, ms. Default 5000. */
        t4Ms: z.number().int().min(100).max(60000).default(5000),
      })
      .prefault({}),
    /** Door stations and intercoms. */
    devices: z.array(device).default([]),
  })
  .prefault({})
  .superRefine((s, ctx) => {
    const ids = new Set<string>();
    const users = new Set<string>();
    s.devices.forEach((d, i) => {
      if (ids.has(d.id)) ctx.addIssue({ code: "custom", path: ["devices", i, "id"], message: `duplicate device id "${d.id}"` });
      if (users.has(d.username.toLowerCase()))
        ctx.addIssue({ code: "custom", path: ["devices", i, "username"], message: `duplicate username "${d.username}"` });
      ids.add(d.id);
      users.add(d.username.toLowerCase());
    });
    if (s.enabled && !s.udp.enabled && !s.tcp.enabled && !s.tls)
      ctx.addIssue({ code: "custom", path: ["udp"], message: "at least one of udp, tcp, tls must be enabled" });
  });

export type SipConfig = z.infer<typeof sipSection>;
export type SipDeviceConfig = SipConfig["devices"][number];
