/**
 * Several gateways as one, coordinated through Redis: node announcements (nodes.ts), shared
 * sessions and revocations (sessions.ts), one pull per camera by lease (leases.ts), and WHEP
 * answered through the camera's owner (forward.ts). Started by gateway.ts only when the
 * configuration has a `cluster` section; without it nothing here runs and nothing is needed.
 *
 *   const cluster = await startCluster({ config: config.cluster, nodeUrl, ... });
 *   createAuth({ ..., mirror: cluster.sessions });  cluster.sessions.attach(auth);
 *   app.use(INTERNAL_WHEP, inboundRouter(...), whep);  app.use("/whep", forwardingRouter(...), whep);
 */
import os from "node:os";
import type { Request, RequestHandler } from "express";
import type { Logger } from "../../config/log.ts";
import type { ClusterConfig } from "../../config/sections/cluster.ts";
import type { EndReason } from "../auth/index.ts";
import { sendError } from "../http/errors.ts";
import { forwardKey } from "./forward.ts";
import { CameraLeases } from "./leases.ts";
import { NodeRegistry, type NodeAnnouncement } from "./nodes.ts";
import { RedisLink } from "./redis.ts";
import { SharedSessions } from "./sessions.ts";

export { keepAlwaysOnByLease } from "./always-on.ts";
export { ClusterIntercom, INTERNAL_INTERCOM } from "./intercom.ts";
export { forwardingRouter, inboundRouter, INTERNAL_WHEP, servedFrom, type ServedFrom } from "./forward.ts";
export { isRelaySource } from "./forward-receiver.ts";
export type { NodeAnnouncement } from "./nodes.ts";
export { coordinationUnavailable } from "./redis.ts";

export interface ClusterOptions {
  config: ClusterConfig;
  /** This node's front-door URL (the default of `cluster.publicUrl`). */
  frontDoorUrl: string;
  /** The front-door port (part of the default node id). */
  port: number;
  /** Absolute session lifetime, ms. */
  sessionMaxAgeMs: number;
  /** What this node announces besides its id, URL and leases (endpoints, load). */
  announce: () => { endpoints: NodeAnnouncement["endpoints"]; load: Omit<NodeAnnouncement["load"], "cameras">; doors?: string[] };
  /** A session ended on another node (its TURN allocations here close). */
  onRevoked: (ref: string, reason: EndReason) => void;
  log: Logger;
}

/**
 * What the public `/.well-known/gatehouse` says of the cluster: no node's internal URL (the
 * address other nodes reach it at, which a load balancer may hide); the nodes find each other's
 * in Redis, and an administrator sees them in `internal()` (`GET /api/admin/cluster`).
 */
export interface ClusterDiscovery {
  name: string;
  /** This node's id. */
  node: string;
  /** Whether this node reaches the cluster's Redis now. */
  coordinated: boolean;
  /** The nodes alive at the last heartbeat, least loaded first (where a balancer sends new users). */
  nodes: Array<Pick<NodeAnnouncement, "id" | "endpoints" | "load" | "heartbeatAt">>;
}

/** The cluster as an administrator sees it: each node's internal URL and the cameras it pulls too. */
export interface ClusterInternalView extends Omit<ClusterDiscovery, "nodes"> {
  nodes: Array<Pick<NodeAnnouncement, "id" | "url" | "endpoints" | "load" | "owns" | "startedAt" | "heartbeatAt">>;
}

export interface Cluster {
  readonly name: string;
  readonly nodeId: string;
  /** This node's URL for the other nodes. */
  readonly nodeUrl: string;
  readonly link: RedisLink;
  readonly sessions: SharedSessions;
  readonly leases: CameraLeases;
  readonly nodes: NodeRegistry;
  /** Key of the internal link's signatures. */
  readonly forwardKey: Buffer;
  discovery(): ClusterDiscovery;
  internal(): ClusterInternalView;
  close(): Promise<void>;
}

/** Connects to Redis (start-up fails when it cannot), joins the cluster and announces this node. */
export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const cfg = o.config;
  const log = o.log;
  const nodeId = cfg.nodeId ?? `${os.hostname()}:${o.port}`;
  const nodeUrl = (cfg.publicUrl ?? o.frontDoorUrl).replace(/\/$/, "");
  let link: RedisLink;
  try {
    link = await RedisLink.connect(cfg, log);
  } catch (err) {
    throw new Error(`cluster: cannot reach Redis at ${redactUrl(cfg.redis.url)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    const sessions = await SharedSessions.start({ link, nodeId, clusterName: cfg.name, maxAgeMs: o.sessionMaxAgeMs, log, onRevoked: o.onRevoked, resyncGraceMs: cfg.redis.resyncGraceMs });
    const leases = new CameraLeases({ link, nodeId, leaseMs: cfg.leaseMs, log });
    const startedAt = Date.now();
    const nodes = new NodeRegistry({
      link,
      heartbeatMs: cfg.heartbeatMs,
      nodeTtlMs: cfg.nodeTtlMs,
      clock: Date.now,
      log,
      announcement: () => {
        const a = o.announce();
        const owns = leases.owned();
        return { id: nodeId, url: nodeUrl, endpoints: a.endpoints, load: { ...a.load, cameras: owns.length }, owns, doors: a.doors ?? [], startedAt };
      },
    });
    await nodes.beat();
    // Back from an outage: announce at once rather than at the next heartbeat.
    link.events.on("up", () => void nodes.beat());
    log.info("cluster: joined", { cluster: cfg.name, node: nodeId, url: nodeUrl, nodes: nodes.nodes.length });
    let closing: Promise<void> | undefined;
    const listing = () => [...nodes.nodes].sort((a, b) => a.load.viewers - b.load.viewers || a.id.localeCompare(b.id));
    return {
      name: cfg.name,
      nodeId,
      nodeUrl,
      link,
      sessions,
      leases,
      nodes,
      forwardKey: forwardKey(sessions.secrets.csrfSecret),
      discovery: () => ({
        name: cfg.name,
        node: nodeId,
        coordinated: link.available,
        nodes: listing().map((n) => ({ id: n.id, endpoints: n.endpoints, load: n.load, heartbeatAt: n.heartbeatAt })),
      }),
      internal: () => ({
        name: cfg.name,
        node: nodeId,
        coordinated: link.available,
        nodes: listing().map((n) => ({ id: n.id, url: n.url, endpoints: n.endpoints, load: n.load, owns: n.owns, startedAt: n.startedAt, heartbeatAt: n.heartbeatAt })),
      }),
      close: () =>
        (closing ??= (async () => {
          await leases.close();
          await nodes.close();
          sessions.close();
          await link.close();
        })()),
    };
  } catch (err) {
    await link.close();
    throw err;
  }
}

/** `GET /api/admin/cluster`: the internal view, for whom `authorize` lets through (throws otherwise). */
export function clusterAdminHandler(cluster: Pick<Cluster, "internal">, authorize: (req: Request) => void): RequestHandler {
  return (req, res) => {
    try {
      authorize(req);
      res.set("Cache-Control", "no-store").json(cluster.internal());
    } catch (err) {
      sendError(res, err);
    }
  };
}

/** The Redis URL without its password, for messages. */
function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return "(unreadable URL)";
  }
}
