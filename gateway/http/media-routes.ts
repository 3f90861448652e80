/**
 * The routes that start media for a signed-in user: recorder playback and live view (WHEP under
 * /whep, answered through the camera's owner in a cluster) and the whole grid over one peer
 * connection (/grid). Each viewer or session ends with its caller's sign-in session or right,
 * and the relays its peer connection allocated end with it.
 *
 * In a cluster a camera is pulled by one node (its lease holder). A viewer reaching another node
 * is served there from a relay of the owner's pull, or answered through the owner
 * (`cluster.forward`); both routes ask `servedFrom` where the camera comes from. A grid's slots
 * are always served from a relay: the grid's one peer connection ends on this node.
 */
import type express from "express";
import type { Logger } from "../../config/log.ts";
import { NotFoundError, OverloadError } from "../../config/errors.ts";
import type { Config } from "../../config/schema.ts";
import { authCloseReason } from "../../sfu/api.ts";
import type { Sfu } from "../../sfu/sfu.ts";
import { whepAudit, type AuditLog, type GridAudit } from "../audit/index.ts";
import type { playbackAudit } from "../audit/hooks.ts";
import type { Auth } from "../auth/index.ts";
import { autoStreamChoice } from "../auto-streams.ts";
import type { CameraRegistry } from "../cameras.ts";
import { forwardingRouter, isRelaySource, servedFrom, type Cluster } from "../cluster/index.ts";
import type { Forwarding } from "../cluster/forward-relay.ts";
import { playbackRouter } from "../playback/routes.ts";
import type { PlaybackService } from "../playback/service.ts";
import { namedRelayUsers, RELAY_USERNAME_HEADER, type RelayAccess } from "../relay-access.ts";
import { gridDisabledRouter, gridRouter, type GridCounters } from "./grid.ts";
import type { ViewerAdmission } from "./viewer-admission.ts";
import { iceServerLinks, whepRouter } from "./whep.ts";
import { cameraMovingNotice, ownerOfUser, type ViewerLostNotices } from "../supervision/viewer-notices.ts";

export interface MediaRoutesParts {
  readonly config: Readonly<Config>;
  readonly sfu: Sfu;
  readonly registry: CameraRegistry;
  readonly auth: Auth;
  readonly admission: ViewerAdmission;
  readonly relay: RelayAccess;
  readonly playback: PlaybackService;
  readonly audit: AuditLog | undefined;
  readonly playbackAudit: ReturnType<typeof playbackAudit> | undefined;
  readonly gridAudit: GridAudit | undefined;
  readonly cluster: Cluster | undefined;
  /** RTP forwarding between the cluster's nodes: a viewer here may be served from a relay of the owner's pull. */
  readonly forwarding?: Pick<Forwarding, "route" | "answered"> | undefined;
  /** Tells a viewer's page at once when its media worker dies. */
  readonly lostNotices?: ViewerLostNotices | undefined;
  /** Grid binds made and refused (`/metrics`). */
  readonly gridCounters?: GridCounters | undefined;
  readonly log: Logger;
}

/** Viewers belong to the session that made them (a bearer token's user counts as one session). */
function sessionOf(req: express.Request): string | undefined {
  return req.user ? (req.user.sessionId ?? `${req.user.via}:${req.user.sub}`) : undefined;
}

/**
 * Mounts playback, live view and the grid on `app`. Returns the live-view router alone, which the
 * cluster's internal link also reaches (a WHEP request another node forwarded).
 */
export function mountMediaRoutes(app: express.Express, p: MediaRoutesParts): express.RequestHandler {
  const { auth, relay, registry, playback } = p;
  // Playback first: the live routes answer 405 to any other path of two segments.
  app.use(
    "/whep",
    playbackRouter({
      service: playback,
      camera: (id) => registry.config(id),
      authorize: (req, id) => auth.authorizeCamera(req.user!, id, "playback"),
      ownerOf: (req) => ({ user: req.user?.sub ?? "", session: sessionOf(req) ?? "" }),
      // A playback ends when its session is revoked, lapses, or loses the right.
      onStarted: (req, entry) => {
        const stop = auth.watch(req.user!, (reason) => void playback.end(entry, authCloseReason(reason)), { cameraId: entry.cameraId, action: "playback" });
        entry.viewer.on("closed", stop);
        p.playbackAudit?.started(req, entry);
      },
      setIceLinks: (req, res) => {
        for (const l of iceServerLinks(relay.iceServersFor(req.user))) res.append("Link", l);
      },
      log: p.log.child({ component: "playback" }),
    }),
  );

  const whep = whepRouter({
    sfu: p.sfu,
    cameraExists: (id) => registry.has(id),
    streamSource: (id, stream, h265) => registry.describedStreamSource(id, stream, h265),
    // Auto: the SFU moves the viewer along the camera's streams as its network allows; else it stays put.
    onStreamChoice: autoStreamChoice(registry, { warmSubstream: p.config.media.autoWarmSubstream }),
    // A relayed viewer's stream change comes from a relay of the owner's pull of that stream too.
    ...(p.cluster ? { relayedSource: relayedSourceOf(p, p.cluster) } : {}),
    authorize: (req, id) => auth.authorizeCamera(req.user!, id, "live"),
    userOf: (req) => req.user?.sub,
    sessionOf,
    admission: p.admission,
    // A viewer's stream ends when its session is revoked, lapses, or loses the right.
    onViewer: (req, viewer) => {
      p.lostNotices?.watch(ownerOfUser(req.user), viewer);
      const user = req.user!;
      const stop = auth.watch(
        user,
        (reason) => {
          void viewer.close(authCloseReason(reason));
          relay.callerLost(user);
        },
        { cameraId: viewer.cameraId, action: "live" },
      );
      const releaseRelays = relay.relaysOf(user.sub, req.body, namedRelayUsers(req.headers[RELAY_USERNAME_HEADER.toLowerCase()], user.sub));
      viewer.on("closed", () => {
        stop();
        releaseRelays();
      });
    },
    iceServers: (req) => relay.iceServersFor(req.user),
    ...(p.audit ? { audit: whepAudit(p.audit) } : {}),
    log: p.log.child({ component: "whep" }),
  });
  const cluster = p.cluster;
  if (cluster)
    // Viewers of a camera another node pulls are served from a relay here, or answered through that node.
    app.use(
      "/whep",
      forwardingRouter({
        nodeId: cluster.nodeId,
        leases: cluster.leases,
        nodes: cluster.nodes,
        key: cluster.forwardKey,
        cameraExists: (id) => registry.has(id),
        authorize: (req, id) => auth.authorizeCamera(req.user!, id, "live"),
        timeoutMs: p.config.cluster!.forwardTimeoutMs,
        leaseSeconds: Math.ceil(p.config.cluster!.leaseMs / 1000),
        ...(p.forwarding ? { relay: p.forwarding } : {}),
        ...(p.lostNotices ? { ownerGone: movingNotices(p.lostNotices) } : {}),
        log: p.log.child({ component: "cluster" }),
      }),
    );
  app.use("/whep", whep);

  if (!p.config.media.grid.enabled) {
    app.use("/grid", gridDisabledRouter());
    return whep;
  }
  app.use(
    "/grid",
    gridRouter({
      sfu: p.sfu,
      limits: p.config.media.grid,
      cameraExists: (id) => registry.has(id),
      streamSource: cluster ? (id, stream) => clusterSlotSource(p, cluster, id, stream) : (id, stream) => registry.streamSource(id, stream),
      authorize: (req, id) => auth.authorizeCamera(req.user!, id, "live"),
      userOf: (req) => req.user?.sub,
      sessionOf,
      admission: p.admission,
      ...(p.gridCounters ? { counters: p.gridCounters } : {}),
      // The whole session ends with the caller's sign-in session (as live viewers do), its relays with it.
      onSession: (req, session, offer) => {
        // Its page hears at once when the session's media worker dies (it offers again).
        p.lostNotices?.watchSession(ownerOfUser(req.user), session);
        const user = req.user!;
        const stop = auth.watch(user, (reason) => {
          void session.close(authCloseReason(reason));
          relay.callerLost(user);
        });
        const releaseRelays = relay.relaysOf(user.sub, offer, namedRelayUsers(req.headers[RELAY_USERNAME_HEADER.toLowerCase()], user.sub));
        session.once("closed", () => {
          stop();
          releaseRelays();
        });
      },
      // Each binding ends when the right to its camera is withdrawn; the session stays.
      onBinding: (req, _session, _mid, camera, end) => {
        const stop = auth.watch(req.user!, (reason) => end(authCloseReason(reason)), { cameraId: camera, action: "live" });
        return () => stop();
      },
      ...(p.gridAudit ? { audit: p.gridAudit } : {}),
      iceServers: (req) => relay.iceServersFor(req.user),
      log: p.log.child({ component: "grid" }),
    }),
  );
  return whep;
}

/**
 * The source a grid slot of this node shows for a camera's stream in a cluster: this node's own
 * pull when it holds the camera's lease (taken when free), else a relay of the owner's pull, in
 * either `cluster.forward.mode` (a slot cannot be answered through another node). An owner that
 * is gone is taken over. Throws OverloadError (503, Retry-After) when no relay can be had now.
 */
async function clusterSlotSource(p: MediaRoutesParts, cluster: Cluster, camera: string, stream: string): Promise<{ stream: string; source: string } | undefined> {
  const found = p.registry.streamSource(camera, stream);
  if (!found) return undefined;
  const d = { leases: cluster.leases, ...(p.forwarding ? { relay: p.forwarding } : {}) };
  let served = await servedFrom(d, camera, found.stream, true);
  if (served.from === "owner" && !(await cluster.nodes.alive(served.owner.node))) {
    if ((await cluster.leases.takeOver(camera, served.owner)).self) served = { from: "here" };
  }
  if (served.from === "here") return found;
  if (served.from === "relay") return { stream: found.stream, source: served.source };
  throw new OverloadError(`this camera is pulled by the gateway node ${served.owner.node}, which cannot forward it here now`, { retryAfterSeconds: 1 });
}

/** WhepDeps.relayedSource: a relayed viewer's asked stream, as a grid slot gets it (clusterSlotSource). */
function relayedSourceOf(p: MediaRoutesParts, cluster: Cluster) {
  return async (camera: string, stream: string, current: string): Promise<string | undefined> => {
    if (!isRelaySource(current)) return undefined;
    const found = await clusterSlotSource(p, cluster, camera, stream);
    if (!found) throw new NotFoundError(`camera has no stream '${stream}'`);
    return found.source;
  };
}

/** A viewer answered through a node that died: its pages offer again at once. */
function movingNotices(notices: ViewerLostNotices) {
  return {
    ownerOf: (req: express.Request) => ownerOfUser(req.user),
    tell: (owner: ReturnType<typeof ownerOfUser>, camera: string, viewer: string) => notices.notify(owner, cameraMovingNotice(camera, viewer, true)),
  };
}
