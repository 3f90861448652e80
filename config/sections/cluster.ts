/**
 * Several gateways as one (gateway/cluster/), coordinated through Redis (or any
 * Redis-compatible server). Absent: the gateway runs alone, exactly as without this section,
 * and nothing extra is needed.
 *
 * What the nodes share there: their announcements (endpoints, load, heartbeat), the sign-in
 * sessions and their revocations, the session-signing key and CSRF secret (made by the first
 * node when none is configured), and one lease per camera naming the node that pulls it.
 */
import { z } from "zod";

export const clusterSection = z
  .strictObject({
    /** Cluster name: every key this cluster writes starts with `gatehouse:<name>:`, so clusters may share one Redis. Default `gatehouse`. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '.', '-' and '_', at most 64").default("gatehouse"),
    redis: z.strictObject({
      /** `redis://[user:password@]host:port[/db]` or `rediss://` (TLS); `${REDIS_URL}` from the environment. */
      url: z
        .string()
        .min(1)
        .refine((u) => /^rediss?:\/\//i.test(u), { message: "must be a redis:// or rediss:// URL" }),
      /** Connecting (and each reconnect attempt) gives up after this long, milliseconds. Default 2000. */
      connectTimeoutMs: z.number().int().min(100).max(60_000).default(2000),
      /** Longest wait between reconnect attempts while Redis is unreachable, milliseconds. Default 2000. */
      reconnectMaxMs: z.number().int().min(100).max(60_000).default(2000),
      /**
       * After Redis comes back, a sign-in session it does not have is answered "try again" (503)
       * rather than ended, for this long, milliseconds: a Redis restarted without its data gets
       * the sessions back as each node shares what it holds again. Default 6000.
       */
      resyncGraceMs: z.number().int().min(0).max(600_000).default(6000),
    }),
    /** This node's id, unique in the cluster. Default: the host name and the front-door port. */
    nodeId: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "letters, digits, '.', ':', '-' and '_', at most 128").optional(),
    /**
     * Base URL at which the other nodes (and a load balancer's health checks) reach this node
     * directly, e.g. `https://gw2.internal:443`. Default: the address the front door listens on.
     */
    publicUrl: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//i.test(u), { message: "must be an http:// or https:// URL" })
      .optional(),
    /** A node announces itself (endpoints, load) this often, milliseconds. Default 1000. */
    heartbeatMs: z.number().int().min(100).max(60_000).default(1000),
    /** A node that has not announced itself for this long is gone from the listing, milliseconds. Default 5000. */
    nodeTtlMs: z.number().int().min(300).max(600_000).default(5000),
    /**
     * A camera's lease (the node that pulls it) lapses this long after its owner last renewed it
     * (renewed every third of it); then another node may take the camera over. Milliseconds. Default 4000.
     */
    leaseMs: z.number().int().min(300).max(600_000).default(4000),
    /** A WHEP request forwarded to the camera's owner gives up after this long (503 to the client), milliseconds. Default 5000. */
    forwardTimeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /**
     * Finished door calls the cluster's shared call history keeps (a list in Redis every node
     * adds its calls to; each node lists them beside its own), the oldest dropped beyond. Default 1000.
     */
    callHistoryMax: z.number().int().min(0).max(100_000).default(1000),
    /**
     * How a viewer who reaches a node that does not pull the camera is served (README "Cluster"):
     * answered through the owner (the owner's SFU sends to the browser), or from a relay on this
     * node that the owner forwards the camera's RTP to over an internal UDP link.
     */
    forward: z
      .strictObject({
        /** `answer`: always through the owner. `forward`: relay on this node once `above` is reached. Default `forward`. */
        mode: z.enum(["answer", "forward"]).default("forward"),
        /**
         * In `forward` mode, viewers of a camera this node answers through its owner before it
         * relays the camera instead (counted from their POST to their DELETE); 0 relays from the
         * first viewer. A camera already relayed here is always served from the relay. Default 0.
         */
        above: z.number().int().min(0).max(10_000).default(0),
        /** Internal address the forwarding socket binds (UDP); the other nodes must reach it. Default: `server.host`. */
        address: z.union([z.ipv4(), z.ipv6()]).optional(),
        /** UDP port of the forwarding socket; 0 picks a free one (told to the other node when it subscribes). Default 0. */
        port: z.number().int().min(0).max(65_535).default(0),
        /** A relaying node whose owner sends nothing this long finds the owner again; an owner not kept alive this long ends the link, ms. Default 2000. */
        silenceMs: z.number().int().min(200).max(60_000).default(2000),
        /** Links this node forwards at most (one per relaying node and camera stream). Default 256. */
        maxLinks: z.number().int().min(1).max(100_000).default(256),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.nodeTtlMs < 2 * c.heartbeatMs) ctx.addIssue({ code: "custom", path: ["nodeTtlMs"], message: "must be at least twice heartbeatMs" });
  });

export type ClusterConfig = z.infer<typeof clusterSection>;
