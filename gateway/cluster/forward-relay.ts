/**
 * RTP forwarding between the nodes of a cluster, wired: the forwarding socket, the owner's taps
 * (forward-sender.ts), the relays (forward-receiver.ts), the signed HTTP request by which a node
 * subscribes to a camera stream at its owner, and the policy that decides, for a viewer who
 * reached a node that does not pull the camera, between answering through the owner
 * (forward.ts) and serving from a relay here (`cluster.forward`; README "Cluster").
 *
 *   const taps = createRelayTaps(config.cluster);                 // before the camera registry
 *   const forwarding = await startForwarding({ cluster, taps, ... });
 *   app.use(RELAY_PATH, forwarding.router);                       // before sign-in (signed by a node)
 *   forwardingRouter({ ..., relay: forwarding });
 */
import { randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import { Router, type Request } from "express";
import { AuthError, BadInputError, NotFoundError, OverloadError, UpstreamError, WrongStateError } from "../../config/errors.ts";
import type { CameraId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import type { ClusterConfig } from "../../config/sections/cluster.ts";
import { ViewerCloseReasons, type SourceHandle, type SourceWatcher } from "../../sfu/api.ts";
import { sendError } from "../http/errors.ts";
import { cameraMovingNotice, slotMovingNotice, type ViewerLostNotices } from "../supervision/viewer-notices.ts";
import { AUTH_HEADER, MAX_SKEW_SECONDS, signature } from "./forward.ts";
import { RelayEndpoint } from "./forward-link.ts";
import { RelayReceivers, type RelaySubscription } from "./forward-receiver.ts";
import { LinkTotals, type LinkCount } from "./forward-metrics.ts";
import { RelayTaps } from "./forward-sender.ts";
import { relayLinkKey, type RelayDropReason } from "./forward-wire.ts";
import type { Cluster } from "./index.ts";

/** Path of the internal subscription request on every node. */
export const RELAY_PATH = "/cluster/relay";

/** The owner's taps (made before the camera registry, which hands them its ingests' sinks). */
export function createRelayTaps(config: ClusterConfig, log: Logger): RelayTaps {
  return new RelayTaps({ silenceMs: config.forward.silenceMs, maxLinks: config.forward.maxLinks, totals: new LinkTotals(), log: log.child({ component: "cluster" }) });
}

/** How a viewer of a camera another node pulls is served. */
export type Route = "answer" | "forward";

/**
 * The policy (pure): `answer` mode always answers through the owner; `forward` mode serves from
 * a relay once the camera is relayed here already, or once this node answers `above` viewers
 * of it through the owner.
 */
export function chooseRoute(c: { mode: Route; above: number; relayedHere: boolean; answeredHere: number }): Route {
  if (c.mode === "answer") return "answer";
  return c.relayedHere || c.answeredHere >= c.above ? "forward" : "answer";
}

export interface ForwardingOptions {
  cluster: Pick<Cluster, "nodeId" | "leases" | "nodes" | "forwardKey">;
  config: ClusterConfig["forward"];
  /** The front door's listening host: the forwarding socket's address unless `cluster.forward.address` says. */
  host: string;
  taps: RelayTaps;
  sfu: { source(id: CameraId): SourceHandle; findSource(id: CameraId): SourceHandle | undefined; watchersOf(id: CameraId): SourceWatcher[]; releaseSource(id: CameraId): boolean };
  /** The pages of viewers made here (a relay's owner fell silent or left: they hear that their camera moves). */
  notices?: Pick<ViewerLostNotices, "notifyViewer" | "notifySession">;
  cameras: {
    has(id: string): boolean;
    streamSource(camera: string, stream?: string): { stream: string; source: CameraId } | undefined;
    streamSources(camera: string): CameraId[];
    /** The ids of a camera's streams. */
    streamIds(camera: string): string[];
  };
  timeoutMs: number;
  log: Logger;
}

export interface ForwardingStats {
  links: number;
  relays: number;
  sent: number;
  received: number;
  drops: Record<RelayDropReason, number>;
  relayedPackets: number;
  resubscribes: number;
  adopted: number;
  /** Relay sources released from the SFU after their relay ended. */
  released: number;
  /** Keyframe requests the relays sent to owners. */
  keyframeRequests: number;
}

export interface Forwarding {
  /** Mounted at RELAY_PATH before sign-in: another node subscribes here. */
  readonly router: Router;
  /** The forwarding socket's address and port. */
  readonly address: { address: string; port: number };
  /**
   * The relay source a viewer of `camera`'s `stream` (owned by `node`) is to watch here, or
   * undefined when it is answered through the owner (the policy unless `always`, or a relay that
   * could not be set up).
   */
  route(camera: string, stream: string | undefined, node: string, always?: boolean): Promise<CameraId | undefined>;
  /** A viewer answered through the owner started (+1) or ended (−1). */
  answered(camera: string, delta: number): void;
  stats(): ForwardingStats;
  /** Media packets and bytes per link (direction, other node, source), cumulative. */
  linkTotals(): readonly LinkCount[];
  close(): void;
}

export async function startForwarding(o: ForwardingOptions): Promise<Forwarding> {
  const { cluster, config, log } = o;
  const host = config.address ?? (o.host === "" || o.host === "localhost" ? "127.0.0.1" : o.host);
  const endpoint = await RelayEndpoint.bind({ address: host, port: config.port, log });
  o.taps.attach(endpoint);
  const answeredHere = new Map<string, number>();

  const owner = async (camera: string) => {
    let who = await cluster.leases.owner(camera);
    if (!who.self && !(await cluster.nodes.alive(who.node))) who = await cluster.leases.takeOver(camera, who);
    return who;
  };

  const subscribe = async (camera: string, stream: string, node: string): Promise<RelaySubscription> => {
    let n = cluster.nodes.node(node);
    if (!n) {
      await cluster.nodes.beat();
      n = cluster.nodes.node(node);
    }
    if (!n) throw new OverloadError(`the camera's node ${node} is not in the cluster's listing`, { retryAfterSeconds: 1 });
    const path = `${RELAY_PATH}/${encodeURIComponent(camera)}?stream=${encodeURIComponent(stream)}`;
    const nonce = randomBytes(16).toString("hex");
    const ts = String(Math.floor(Date.now() / 1000));
    const body = JSON.stringify({ node: cluster.nodeId, port: endpoint.address.port, nonce, ...(endpoint.specific ? { address: endpoint.specific } : {}) });
    let res: globalThis.Response;
    try {
      res = await fetch(`${n.url}${path}`, {
        method: "POST",
        headers: { [AUTH_HEADER]: `${ts}.${signature(cluster.forwardKey, ts, "POST", path, "")}`, "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(o.timeoutMs),
      });
    } catch (cause) {
      throw new UpstreamError(`the camera's node ${node} does not answer`, { cause });
    }
    const text = await res.text();
    if (res.status !== 201) throw new UpstreamError(`the camera's node ${node} refused to forward it (${res.status} ${text.slice(0, 200)})`);
    const v = JSON.parse(text) as { channel?: unknown; address?: unknown; port?: unknown };
    if (typeof v.channel !== "number" || typeof v.address !== "string" || isIP(v.address) === 0 || typeof v.port !== "number")
      throw new UpstreamError(`the camera's node ${node} answered an unreadable subscription`);
    return { channel: v.channel, key: relayLinkKey(cluster.forwardKey, v.channel, nonce), address: v.address, port: v.port };
  };

  const localSource = (camera: string, stream: string): CameraId => {
    const s = o.cameras.streamSource(camera, stream);
    if (!s) throw new NotFoundError(`camera '${camera}' has no stream '${stream}'`);
    return s.source;
  };

  const receivers = new RelayReceivers({
    endpoint,
    sfu: o.sfu,
    subscribe,
    owner,
    localSource,
    silenceMs: config.silenceMs,
    ...(o.taps.totals ? { totals: o.taps.totals } : {}),
    // The relay's viewers keep their connection: their pages say what happens until the picture is back.
    onOwnerLost: (relaySource, camera) => {
      // A grid slot bound to the relay stays bound (it plays on when the relay does, or moves with it); its page says so meanwhile.
      for (const w of o.sfu.watchersOf(relaySource)) {
        if (w.kind === "viewer") o.notices?.notifyViewer(w.viewer.id, cameraMovingNotice(camera, w.viewer.id, false));
        else o.notices?.notifySession(w.session.id, slotMovingNotice(w.session.id, w.mid, camera));
      }
    },
    log,
  });

  // A camera this node no longer owns: the nodes relaying it find its new owner at once.
  // Grid slots showing this node's pull of it move to a relay of the new owner's pull (or end, their pages binding again).
  cluster.leases.events.on("lost", (camera, owner) => {
    o.taps.endSources(o.cameras.streamSources(camera), "camera taken over by another node");
    for (const stream of o.cameras.streamIds(camera)) void slotsToOwner(camera, stream, owner?.node);
  });

  const slotsToOwner = async (camera: string, stream: string, node: string | undefined): Promise<void> => {
    const local = o.cameras.streamSource(camera, stream)?.source;
    const slots = local ? o.sfu.watchersOf(local).filter((w) => w.kind === "slot") : [];
    if (slots.length === 0) return;
    let relay: CameraId | undefined;
    try {
      if (node !== undefined && node !== cluster.nodeId) relay = await receivers.ensure(camera, stream, node);
    } catch (err) {
      log.warn("cluster: grid slots of a camera taken over cannot be relayed from its new owner; ending them", { camera, stream, node, err });
    }
    for (const w of slots) {
      const end = () => w.session.unbind(w.mid, ViewerCloseReasons.takenOver).catch(() => {});
      if (relay) await w.session.bind(w.mid, relay).catch(end);
      else await end();
    }
  };

  const router = Router();
  router.post("/:camera", (req, res) => {
    void (async () => {
      const presented = req.get(AUTH_HEADER) ?? "";
      const [ts = "", sig = ""] = presented.split(".", 2);
      const age = Math.abs(Date.now() / 1000 - Number(ts));
      const want = Buffer.from(signature(cluster.forwardKey, ts, req.method, req.originalUrl, ""));
      const got = Buffer.from(sig);
      if (!(age <= MAX_SKEW_SECONDS) || got.length !== want.length || !timingSafeEqual(got, want)) throw new AuthError("UNAUTHORIZED", "not a request of this cluster");
      const camera = String(req.params.camera ?? "");
      if (!o.cameras.has(camera)) throw new NotFoundError("no such camera");
      const stream = typeof req.query.stream === "string" ? req.query.stream : "main";
      const source = localSource(camera, stream);
      const body = await readJson(req);
      const nonce = typeof body.nonce === "string" && /^[0-9a-f]{32}$/.test(body.nonce) ? body.nonce : undefined;
      const port = typeof body.port === "number" && Number.isInteger(body.port) && body.port > 0 && body.port < 65536 ? body.port : undefined;
      const node = typeof body.node === "string" ? body.node.slice(0, 128) : "?";
      if (!nonce || !port) throw new BadInputError("subscription needs a nonce and a port");
      // The relaying node's own address when it bound one, else where its request came from.
      const address = typeof body.address === "string" && isIP(body.address) !== 0 ? body.address : unmapped(req.socket.remoteAddress ?? "");
      if (isIP(address) === 0) throw new BadInputError("no address to forward to");
      const who = await cluster.leases.owner(camera);
      if (!who.self) throw new WrongStateError(`camera '${camera}' is pulled by ${who.node}, not this node`);
      let channel: number;
      do channel = randomInt(1, 0xffff_ffff);
      while (endpoint.owned.has(channel) || endpoint.relayed.has(channel));
      try {
        o.taps.open({ source, node, channel, key: relayLinkKey(cluster.forwardKey, channel, nonce), address, port });
      } catch (err) {
        throw new OverloadError(err instanceof Error ? err.message : String(err), { retryAfterSeconds: 1 });
      }
      res.status(201).json({ channel, address: endpoint.specific ?? unmapped(req.socket.localAddress ?? ""), port: endpoint.address.port });
    })().catch((err: unknown) => sendError(res, err));
  });

  return {
    router,
    address: endpoint.address,
    route: async (camera, stream, node, always = false) => {
      const asked = stream !== undefined && stream !== "auto" ? stream : "main";
      if (!o.cameras.streamSource(camera, asked)) return undefined; // the WHEP routes say why
      const route = always ? "forward" : chooseRoute({ mode: config.mode, above: config.above, relayedHere: receivers.has(camera, asked), answeredHere: answeredHere.get(camera) ?? 0 });
      if (route === "answer") return undefined;
      try {
        return await receivers.ensure(camera, asked, node);
      } catch (err) {
        log.warn("cluster: cannot relay the camera here; answering through its owner", { camera, node, err });
        return undefined;
      }
    },
    answered: (camera, delta) => {
      const n = Math.max(0, (answeredHere.get(camera) ?? 0) + delta);
      if (n === 0) answeredHere.delete(camera);
      else answeredHere.set(camera, n);
    },
    stats: () => ({
      links: o.taps.linkCount,
      relays: receivers.count,
      sent: endpoint.sent,
      received: endpoint.received,
      drops: { ...endpoint.drops },
      relayedPackets: receivers.counters.packets,
      resubscribes: receivers.counters.resubscribes,
      adopted: receivers.counters.adopted,
      released: receivers.counters.released,
      keyframeRequests: receivers.counters.keyframeRequests,
    }),
    linkTotals: () => o.taps.totals?.list() ?? [],
    close: () => {
      receivers.close();
      o.taps.close();
      endpoint.close();
    },
  };
}

function unmapped(a: string): string {
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

function readJson(req: Request): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 4096) {
        req.destroy();
        reject(new BadInputError("subscription too large"));
      } else chunks.push(c);
    });
    req.on("end", () => {
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new BadInputError("subscription is not a JSON object"));
      }
    });
    req.on("error", reject);
  });
}
