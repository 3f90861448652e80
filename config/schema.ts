/**
 * The one validated configuration. Each field documents its default and unit.
 * Sections owned by later features (auth, turn, sip) live in their own files and
 * are composed here. Objects are strict: an unknown key is an error naming its path.
 */
import { z } from "zod";
import { authSection } from "./sections/auth.ts";
import { turnSection } from "./sections/turn.ts";
import { sipSection } from "./sections/sip.ts";
import { metricsSection } from "./sections/metrics.ts";
import { gridSection, iceSection, viewersSection } from "./sections/viewers.ts";
import { auditSection } from "./sections/audit.ts";
import { clusterSection } from "./sections/cluster.ts";
import { supervisionSection } from "./sections/supervision.ts";
import { cidrEntry } from "./net/cidr.ts";
import { cameraPlaybackSchema, playbackSection } from "./sections/playback.ts";
import { cameraTranscode, transcodeSection } from "./sections/transcode.ts";

/** An inclusive UDP/TCP port range written as [first, last]. */
export const portRange = z
  .tuple([z.number().int().min(1).max(65535), z.number().int().min(1).max(65535)])
  .refine(([a, b]) => a <= b, { message: "first port must not exceed last port" });

const cameraId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "lower-case letters, digits, '-' and '_', at most 64 characters");

const rtspUrl = z
  .string()
  .url()
  .refine((u) => /^rtsps?:\/\//i.test(u), { message: "must be an rtsp:// or rtsps:// URL" });

/**
 * A further stream of a camera (a recorder's substream, typically 640×360). It is pulled
 * on demand like the main stream, once whatever the number of viewers, with the camera's
 * credentials, transport and TLS settings.
 */
export const cameraStreamSchema = z.strictObject({
  /** Stream id: `/whep/<camera>?stream=<id>`. `main` (the camera's `url`) and `auto` are reserved. */
  id: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "lower-case letters, digits, '-' and '_', at most 32 characters")
    .refine((s) => s !== "main" && s !== "auto", { message: "'main' and 'auto' are reserved names" }),
  /** `rtsp://` or `rtsps://` URL of this stream. */
  url: rtspUrl,
  /** Picture size, pixels (shown to the user; optional). */
  width: z.number().int().min(16).max(16384).optional(),
  /** Picture height, pixels (shown to the user; optional). */
  height: z.number().int().min(16).max(16384).optional(),
});

export const cameraSchema = z.strictObject({
  /** Stable id used in URLs (`/whep/<id>`) and rights. */
  id: cameraId,
  /** Display name. Default: the id. */
  name: z.string().min(1).max(200).optional(),
  /** `rtsp://` or `rtsps://` URL of the main (full-resolution) stream. Credentials may also be embedded in it. */
  url: rtspUrl,
  /**
   * Further streams of the camera, largest first; the last one is its substream (`sub`): grid
   * tiles, the Low choice and adaptation to a slow network use it. Default none (every viewer
   * gets the main stream).
   */
  streams: z
    .array(cameraStreamSchema)
    .max(4)
    .optional()
    .refine((l) => l === undefined || new Set(l.map((s) => s.id)).size === l.length, { message: "stream ids must be unique" }),
  /** RTSP user name. Default: from the URL, else none. */
  username: z.string().optional(),
  /** RTSP password; use `${ENV_VAR}` to take it from the environment. */
  password: z.string().optional(),
  /**
   * RTP transport: `auto` (TCP interleaved first; UDP when the recorder answers 461 Unsupported
   * Transport; back to TCP when UDP media never arrives), `tcp` (interleaved) or `udp`. Default `auto`.
   */
  transport: z.enum(["auto", "tcp", "udp"]).default("auto"),
  /** Pull continuously instead of on demand. Default false. */
  alwaysOn: z.boolean().default(false),
  /** Groups this camera belongs to, for rights. */
  groups: z.array(z.string().min(1)).default([]),
  /** Accept self-signed certificates from an `rtsps://` recorder. Default false (fail closed). */
  tlsInsecure: z.boolean().default(false),
  /**
   * Answer a recorder's Basic challenge over plain `rtsp://`, sending the password in clear.
   * Default false: such a camera fails with a reason saying so (Digest and `rtsps://` need no opt-in).
   */
  basicOverPlainRtsp: z.boolean().optional(),
  /** Hosts besides the camera URL's own that its recorder may redirect to (names or IP literals). Default none. */
  redirectHosts: z
    .array(
      z
        .string()
        .min(1)
        .max(253)
        .regex(/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?)$/, "a host name or IP address, without scheme or port"),
    )
    .optional(),
  /** Where and how the camera's recorder replays recordings. Default: none (no playback for this camera). */
  playback: cameraPlaybackSchema.optional(),
  /** Conversion of codecs browsers cannot play (AAC sound, H.265 video); needs ffmpeg (`transcode.ffmpegPath`). Default: every field's default. */
  transcode: cameraTranscode.optional(),
});

export const configSchema = z.strictObject({
  /** The front door: HTTP(S), WebSocket and TURN over TCP/TLS on one port, its timeouts and connection limits. */
  server: z
    .strictObject({
      /** Address the HTTP(S) listener binds. Default 127.0.0.1 (local only). */
      host: z.string().default("127.0.0.1"),
      /** HTTP port. Default 8080; 0 picks a free port. */
      port: z.number().int().min(0).max(65535).default(8080),
      /** TLS for the front door (HTTPS, TURN over TLS). Paths to PEM files. */
      tls: z
        .strictObject({ cert: z.string().min(1), key: z.string().min(1) })
        .optional(),
      /** Public base URL used in links, when behind a proxy. */
      publicUrl: z.string().url().optional(),
      /**
       * Reverse proxies (IP or CIDR) whose `X-Forwarded-For` is believed: the client address
       * used by rate limits and logs is then the last address in that header that is not itself
       * a trusted proxy. Default [] (the header is ignored; the TCP peer is the client).
       */
      trustProxy: z.array(cidrEntry).default([]),
      /** A new connection must send its first bytes (ClientHello, request line, STUN header) within this, ms. Default 10000. */
      firstBytesTimeoutMs: z.number().int().min(100).max(300_000).default(10_000),
      /** The TLS handshake must complete within this, ms. Default 10000. */
      tlsHandshakeTimeoutMs: z.number().int().min(100).max(300_000).default(10_000),
      /** Each request's headers must arrive in full within this, ms (408 and close). Default 10000. */
      headersTimeoutMs: z.number().int().min(100).max(300_000).default(10_000),
      /** Each request, headers and body, must arrive in full within this, ms (408 and close). Default 30000. */
      requestTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
      /** An idle keep-alive connection is closed after this, ms. Default 5000. */
      keepAliveTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
      /**
       * Open front-door connections at once (HTTP, WebSocket, TURN over TCP/TLS). When full, the
       * oldest connection that has not yet completed a request is closed to make room. Default 10000.
       */
      maxConnections: z.number().int().min(16).max(1_000_000).default(10_000),
      /** Open connections per client address (trusted proxies exempt); more are closed at once. Default 256. */
      maxConnectionsPerSource: z.number().int().min(1).max(1_000_000).default(256),
      /**
       * On SIGTERM/SIGINT the gateway stops accepting, tells open pages it is restarting, ends SIP
       * calls with BYE, closes viewers, writes the audit trail and the session file, then exits 0.
       * Steps still running after this long are abandoned (logged); ms. Default 10000.
       */
      shutdownTimeoutMs: z.number().int().min(100).max(300_000).default(10_000),
    })
    .superRefine((s, ctx) => {
      if (s.headersTimeoutMs > s.requestTimeoutMs) {
        ctx.addIssue({ code: "custom", path: ["headersTimeoutMs"], message: "must not exceed server.requestTimeoutMs" });
      }
    })
    .prefault({}),
  /** WebRTC media: ICE ports and addresses, media worker threads, per-viewer queues and viewer limits. */
  media: z
    .strictObject({
      /** UDP ports for WebRTC ICE (viewer media). Default [40000, 40999]. */
      icePortRange: portRange.default([40000, 40999]),
      /** Address announced in ICE candidates when behind NAT. Default: the bound address. */
      announcedAddress: z.string().optional(),
      /** Interface address WebRTC binds. Default: server.host. */
      bindAddress: z.string().optional(),
      /** Media worker threads. Default 0 = one per core. */
      workers: z.number().int().min(0).max(64).default(0),
      /** Packets kept per stream for NACK retransmission. Default 512. */
      nackHistory: z.number().int().min(32).max(8192).default(512),
      /** Per-viewer send queue bound, in packets; beyond it whole frames are dropped. Default 1024. */
      viewerQueuePackets: z.number().int().min(64).max(65536).default(1024),
      /**
       * Keep a camera's substream pulled while any viewer of it is on Auto, so a step down to it
       * starts at once from its cached keyframe (one pull whatever the number of such viewers).
       * Default true.
       */
      autoWarmSubstream: z.boolean().default(true),
      /** Live viewers per session and per user, and how long an unconnected one may hold its port. */
      viewers: viewersSection,
      /** What a viewer's own ICE candidates may be. */
      ice: iceSection,
      /** Multi-camera sessions: a whole grid over one peer connection. */
      grid: gridSection,
    })
    .prefault({}),
  /** Pulling cameras and recorders over RTSP: client ports, timeouts, reconnect backoff, idle stop. */
  rtsp: z
    .strictObject({
      /** UDP client ports for RTP/RTCP, two consecutive per stream. Default [3556, 4556]. */
      clientPortRange: portRange.default([3556, 4556]),
      /** Seconds to keep pulling after the last viewer leaves. Default 30. */
      idleStopSeconds: z.number().min(0).max(86400).default(30),
      /** Request timeout, milliseconds. Default 10000. */
      requestTimeoutMs: z.number().int().min(100).max(120000).default(10000),
      /** No media for this long means the recorder is gone: reconnect. Milliseconds. Default 5000. */
      mediaTimeoutMs: z.number().int().min(500).max(120000).default(5000),
      /** First reconnect delay, milliseconds, doubling up to `reconnectMaxMs`. Default 500. */
      reconnectMinMs: z.number().int().min(50).max(60000).default(500),
      /** Cap of the reconnect delay, milliseconds. Default 30000. */
      reconnectMaxMs: z.number().int().min(100).max(600000).default(30000),
      /** Longest reconnect delay while someone watches the camera, milliseconds (the backoff applies when nobody does). Default 250. */
      watchedRetryMaxMs: z.number().int().min(50).max(60000).default(250),
      /** Light check (connect + DESCRIBE, no media) of cameras nobody watches, every this many seconds; 0 = never. Default 60. */
      checkIntervalSeconds: z.number().min(0).max(86400).default(60),
      /**
       * A viewer without H.265 who asks for a camera whose stream description (its codecs) the
       * gateway has not read yet waits at most this long, milliseconds, while it is read: an
       * H.265-only camera is then refused in words instead of answered with nothing to play. Default 4000.
       */
      describeWaitMs: z.number().int().min(0).max(60000).default(4000),
    })
    .prefault({}),
  /** Cameras. When empty and `demo.enabled` is not false, the built-in demo recorder is used. */
  cameras: z.array(cameraSchema).default([]),
  /** The built-in demo recorder and demo door station, for trying the gateway without cameras. */
  demo: z
    .strictObject({
      /** Built-in demo recorder: `auto` (only when no cameras are configured), true or false. */
      enabled: z.union([z.boolean(), z.literal("auto")]).default("auto"),
      /** Port of the demo RTSP server on 127.0.0.1. Default 0 (any free port). */
      rtspPort: z.number().int().min(0).max(65535).default(0),
      /**
       * Built-in demo door station: an in-process SIP intercom at the demo camera that registers
       * with the gateway, rings when an administrator asks, answers calls, plays a tone and echoes
       * what it hears. Runs only with the demo recorder and `sip.enabled` (UDP).
       */
      door: z
        .strictObject({
          /** Default false; true in the embedded defaults (`npm start` without a file). */
          enabled: z.boolean().default(false),
          /** Display name in rings and the Doors menu. Default "Demo door". */
          name: z.string().min(1).max(200).default("Demo door"),
          /** Milliseconds the door rings before it answers a call. Default 800. */
          answerAfterMs: z.number().int().min(0).max(30000).default(800),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Logging to stderr: level, format and the write buffer. */
  log: z
    .strictObject({
      /** Least severe level written. Default info. */
      level: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
      /** `json` (one object per line, for collectors) or `pretty` (for people). Default pretty. */
      format: z.enum(["json", "pretty"]).default("pretty"),
      /** Log lines waiting to be written to stderr, in bytes; past it lines are dropped and counted. Default 4 MiB. */
      bufferBytes: z.number().int().min(65536).max(1 << 30).default(4 * 1024 * 1024),
    })
    .prefault({}),
  /** Sign-in (OpenID Connect, the development provider or none), sessions and rights per camera. */
  auth: authSection,
  /** The embedded TURN relay (UDP, and TCP/TLS on the front-door port): credentials, quotas, relay ports. */
  turn: turnSection,
  /** The SIP door-intercom server: transports, registered devices, who answers, limits and timers. */
  sip: sipSection,
  /** Prometheus metrics: scrape token, a listener of their own, the rolling window of figures. */
  metrics: metricsSection,
  /** The audit trail: SQLite or PostgreSQL, retention, queue and export limits. */
  audit: auditSection,
  /** Recorder playback: limits and pacing. */
  playback: playbackSection,
  /** Several gateways as one, through Redis (gateway/cluster/). Default: none (this gateway runs alone). */
  cluster: clusterSection.optional(),
  /** Supervision of every component: restarts with backoff, at most N per window, health checks, the webhook. */
  supervision: supervisionSection,
  /** Conversion of codecs browsers cannot play (AAC sound, H.265 video) with ffmpeg: its path and limits. */
  transcode: transcodeSection,
  /** Each signed-in user's console preferences, kept in `<dataDir>/preferences.sqlite`. */
  preferences: z
    .strictObject({
      /** Largest preferences document one user may store, bytes (a larger PUT is 413). */
      maxBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
    })
    .prefault({}),
  /** Directory for the gateway's own files (the audit trail's SQLite file). Relative paths are from the working directory. Default `data`. */
  dataDir: z.string().min(1).default("data"),
});

export type Config = z.infer<typeof configSchema>;
export type CameraConfig = z.infer<typeof cameraSchema>;
export type CameraStreamConfig = z.infer<typeof cameraStreamSchema>;
export type ConfigInput = z.input<typeof configSchema>;
