/**
 * Starts and stops a whole gateway: demo recorder (when configured), SFU, camera
 * ingest, SIP, TURN, sign-in and the HTTP front door.
 * `await using gw = await startGateway({ config })`.
 *
 * Everything started registers its cleanup, and close runs them in reverse. Before that,
 * the front door stops accepting, the open pages' event streams end with a `gateway`
 * "restarting" notice, and SIP calls end with BYE. Then the intercom's browser side and
 * sign-in (the session file is written), the front door's connections, TURN, SIP, the pulls
 * (sources see upstreamDown), the SFU (viewers end), the demo recorder, and the audit trail
 * last (what waits is written). `close(reason, { timeoutMs })` bounds it: a step still running
 * at the bound is logged and left behind, and the rest still run.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import express from "express";
import type { Config, CameraConfig } from "../config/schema.ts";
import { createLogger, type Logger } from "../config/log.ts";
import { Sfu } from "../sfu/sfu.ts";
import { ViewerCloseReasons } from "../sfu/api.ts";
import { CameraRegistry } from "./cameras.ts";
import { startDemoRecorder, type DemoRecorder } from "./demo/recorder.ts";
import { apiRouter } from "./http/api.ts";
import { recordingsRouter } from "./http/recordings.ts";
import { recordingsCatalog } from "./playback/search.ts";
import { preferencesRouter } from "./http/preferences.ts";
import { PreferenceStore } from "./preferences/store.ts";
import { RetentionRecordings, type RecordingIndex } from "./playback/recordings.ts";
import { errorHandler } from "./http/errors.ts";
import { ViewerAdmission } from "./http/viewer-admission.ts";
import { mountMediaRoutes } from "./http/media-routes.ts";
import { mountAdminRoutes } from "./http/admin-routes.ts";
import { createAuth, type Auth } from "./auth/index.ts";
import { hasScrapeToken, metricsHandler, startMetricsListener } from "./http/metrics.ts";
import { healthzHandler, readyzHandler } from "./http/health.ts";
import { discoveryHandler } from "./http/discovery.ts";
import { startTurnServer, type TurnServer } from "../turn/index.ts";
import { CidrList } from "../config/net/cidr.ts";
import { clientAddress, startFrontDoor, type FrontDoor } from "./frontdoor/index.ts";
import type { SipServer } from "./sip/index.ts";
import { createIntercomWeb } from "./intercom/index.ts";
import { DEMO_DOOR_ID, startDoors } from "./intercom/doors.ts";
import { AuditCallLog, auditAuth, auditIntercom, auditWhepRefusals, gridAudit, openAudit, type AuditLog } from "./audit/index.ts";
import type { DemoDoor } from "./demo/door.ts";
import { demoDoorRouter } from "./demo/routes.ts";
import { startWithFallback, type TakenPort, type TakenPortPolicy } from "./ports.ts";
import { SafeEmitter } from "../config/events.ts";
import { ClusterIntercom, inboundRouter, INTERNAL_INTERCOM, INTERNAL_WHEP, keepAlwaysOnByLease, startCluster, type Cluster } from "./cluster/index.ts";
import { createRelayTaps, RELAY_PATH, startForwarding, type Forwarding } from "./cluster/forward-relay.ts";
import { realTimers } from "./rtsp/timers.ts";
import { Supervisor } from "./supervision/supervisor.ts";
import { Webhook } from "./supervision/webhook.ts";
import { mediaWorkerPolicy, superviseCameras, superviseMediaWorkers, superviseSip, superviseTurn, type TurnSupervision } from "./supervision/wiring.ts";
import { ownerOfUser, ViewerLostNotices } from "./supervision/viewer-notices.ts";
import { PlaybackService } from "./playback/service.ts";
import { playbackAudit } from "./audit/hooks.ts";
import { RelayAccess, type RelayUser } from "./relay-access.ts";
import { wireReadiness } from "./readiness.ts";
import { GridCounters } from "./http/grid.ts";
import { webAssets } from "./http/web-assets.ts";

const WEB_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "web");
/** The package version, for the discovery document. */
const GATEHOUSE_VERSION = (JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "package.json"), "utf8")) as { version: string }).version;

export interface GatewayOptions {
  config: Readonly<Config>;
  log?: Logger;
  /**
   * A fixed port (front door, TURN, SIP) already taken by another program: `fail` (default)
   * stops start-up; `fallback` says which and listens on a free port instead (`npm start` with
   * the embedded defaults, where nobody chose the ports).
   */
  takenPorts?: TakenPortPolicy;
}

/** How a close proceeds. */
export interface CloseOptions {
  /**
   * Bound on the whole close, ms (`server.shutdownTimeoutMs` for a signal): a step still running
   * then is logged and left behind, and the remaining ones (audit trail last) still run.
   * Default: no bound.
   */
  timeoutMs?: number;
}

/** A step that starts after the shutdown bound still gets this long, ms (the audit trail's last write). */
const LAST_STEP_MS = 1000;

/** Events of the gateway's own lifecycle, for the parts that tell clients about it. */
export type GatewayLifecycleEvents = {
  /** A close began: stop taking work, tell clients. */
  closing: [reason: string];
};

/** Id of the built-in demo recorder's camera. */
export const DEMO_CAMERA_ID = "demo";
/** Device id and SIP user of the built-in demo door station. */
export { DEMO_DOOR_ID };

export interface Gateway {
  /** Base URL of the front door, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly httpPort: number;
  readonly sfu: Sfu;
  readonly cameras: CameraRegistry;
  /** The built-in demo recorder, when it runs. */
  readonly demo: DemoRecorder | undefined;
  /** Sign-in and rights; `auth.devUsers` lists the development provider's demo accounts. */
  readonly auth: Auth;
  /** The embedded TURN server, when `turn.enabled`. */
  readonly turn: TurnServer | undefined;
  /** The SIP door-intercom server, when `sip.enabled` (its browser side is under /api/intercom). */
  readonly sip: SipServer | undefined;
  /** The audit trail, when `audit.enabled`. */
  readonly audit: AuditLog | undefined;
  /** Restarts, error-tolerant states and the last events of every component. */
  readonly supervisor: Supervisor;
  /** The front door (HTTP(S), WebSocket and TURN over TCP/TLS on one port): its connections and counters. */
  readonly frontDoor: Pick<FrontDoor, "connections" | "stats">;
  /** Base URL of the metrics-only listener, when `metrics.listen` is set. */
  readonly metricsUrl: string | undefined;
  /** The built-in demo door station, when `demo.door.enabled` (with the demo recorder and SIP over UDP). */
  readonly demoDoor: DemoDoor | undefined;
  /** Fixed ports that were taken at start, each replaced by a free one (`takenPorts: "fallback"`). */
  readonly takenPorts: readonly TakenPort[];
  /** This node's membership of a cluster, when `cluster` is configured. */
  readonly cluster: Cluster | undefined;
  /** RTP forwarding between the cluster's nodes (its socket, links, relays, drops), when `cluster` is configured. */
  readonly forwarding: Forwarding | undefined;
  /** What each camera's recorder holds (the timeline); the playback engine tells it what it learns. */
  readonly recordings: RecordingIndex & Pick<RetentionRecordings, "ranges" | "window">;
  /** Recorder playbacks open now (their sessions, re-timers and viewers). */
  readonly playback: Pick<PlaybackService, "list" | "size">;
  /** Graceful close (see the file's doc comment); the same promise for every caller. */
  close(reason?: string, opts?: CloseOptions): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The demo camera's playback: ONVIF replay from the demo recorder itself, over the demo
 * recording's window (none when the recorder serves no recording).
 */
function demoPlayback(demo: DemoRecorder): Pick<CameraConfig, "playback"> {
  const w = demo.recordingWindow();
  if (!w) return {};
  return { playback: { mode: "onvif", url: demo.url, retentionDays: (w.to - w.from) / 86_400_000, pacing: "recorder", intraFromRate: 8 } };
}

/** How far back a camera's recorder keeps video, ms (its `playback.retentionDays`), or undefined without playback. */
function retentionOf(camera: CameraConfig | undefined): number | undefined {
  return camera?.playback ? camera.playback.retentionDays * 86_400_000 : undefined;
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config } = opts;
  const log = opts.log ?? createLogger({ level: config.log.level, format: config.log.format });
  const cleanups: Array<() => Promise<void> | void> = [];
  /**
   * Runs the cleanups in reverse. With a deadline (epoch ms), a step still running when it
   * passes is logged and left behind so the next ones (the audit trail last) still run; each
   * step gets at least `LAST_STEP_MS` so a late one is not skipped outright.
   */
  const closeAll = async (deadline?: number) => {
    for (const fn of cleanups.reverse()) {
      try {
        const step = Promise.resolve().then(fn);
        if (deadline === undefined) {
          await step;
          continue;
        }
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), Math.max(LAST_STEP_MS, deadline - Date.now()));
        });
        const done = await Promise.race([step.then(() => "done" as const), late]).finally(() => clearTimeout(timer));
        if (done === "late") {
          log.warn("a shutdown step did not finish in time; going on without it", { step: fn.name || "anonymous" });
          step.catch((err: unknown) => log.warn("error while closing", { err }));
        }
      } catch (err) {
        log.warn("error while closing", { err });
      }
    }
  };

  const lifecycle = new SafeEmitter<GatewayLifecycleEvents>((event, err) => log.warn("lifecycle listener failed", { event, err }));
  try {
    // The audit trail opens first and closes last: everything that closes after it may still record.
    let audit: AuditLog | undefined;
    if (config.audit.enabled) {
      const a = await openAudit({ config: config.audit, dataDir: config.dataDir, log: log.child({ component: "audit" }) });
      audit = a;
      cleanups.push(() => a.close());
    }

    // The supervisor: restart policies, component states, the last events, the webhook.
    const sc = config.supervision;
    const supervisor = new Supervisor({
      policy: { maxRestarts: sc.maxRestarts, windowMs: sc.windowSeconds * 1000, backoffMinMs: sc.backoffMinMs, backoffMaxMs: sc.backoffMaxMs },
      eventsKept: sc.eventsKept,
      log: log.child({ component: "supervisor" }),
      timers: realTimers,
    });
    cleanups.push(() => supervisor.close());
    const webhook = sc.webhook ? new Webhook({ ...sc.webhook, log: log.child({ component: "supervisor-webhook" }) }) : undefined;
    if (webhook) {
      const w = webhook;
      supervisor.events.on("event", (e) => w.send(e));
      cleanups.push(() => w.close());
    }

    let cameras: readonly CameraConfig[] = config.cameras;
    let demo: DemoRecorder | undefined;
    const demoWanted = config.demo.enabled === true || (config.demo.enabled === "auto" && cameras.length === 0);
    if (demoWanted) {
      demo = await startDemoRecorder({ host: "127.0.0.1", port: config.demo.rtspPort, log: log.child({ component: "demo" }) });
      cleanups.push(() => demo!.close());
      cameras = [
        ...cameras,
        {
          id: DEMO_CAMERA_ID,
          name: "Demo camera",
          url: demo.url,
          transport: "tcp",
          alwaysOn: false,
          groups: ["demo"],
          tlsInsecure: false,
          ...demoPlayback(demo),
        },
      ];
      log.info("demo recorder running", { url: demo.url });
    }

    const bindAddress = config.media.bindAddress ?? config.server.host;
    const sfu = new Sfu({
      log: log.child({ component: "sfu" }),
      icePortRange: config.media.icePortRange,
      bindAddress,
      announcedAddress: config.media.announcedAddress,
      nackHistory: config.media.nackHistory,
      viewerQueuePackets: config.media.viewerQueuePackets,
      // A viewer that never connects gives its ICE port back after this long.
      connectTimeoutMs: config.media.viewers.connectTimeoutMs,
      gridStartHoldMs: config.media.grid.startHoldMs,
      remoteCandidates: {
        privateRanges: config.media.ice.privateCandidates,
        maxPerRequest: config.media.ice.maxCandidatesPerRequest,
        maxPerViewer: config.media.ice.maxCandidatesPerViewer,
      },
      // Media in worker threads (0 = one per core); signaling and ingest stay on this thread.
      workers: config.media.workers,
      // A worker that dies is replaced after a backoff; one that keeps dying is left stopped.
      workerRestarts: mediaWorkerPolicy(supervisor),
    });
    cleanups.push(() => sfu.close("gateway closing"));
    superviseMediaWorkers(supervisor, sfu);
    // A dead media worker's viewers are told to their pages at once (their event stream).
    const lostNotices = new ViewerLostNotices((err) => log.warn("viewer notice listener failed", { err }));

    // One user never holds more than half of the ICE ports: the rest stays for everybody else.
    const perUserCap = Math.max(1, Math.floor(sfu.viewerCapacity / 2));
    if (config.media.viewers.perUser > perUserCap)
      log.warn("media.viewers.perUser clamped to half of the ICE port range", { configured: config.media.viewers.perUser, used: perUserCap });
    const admission = new ViewerAdmission({
      perUser: Math.min(config.media.viewers.perUser, perUserCap),
      perSession: Math.min(config.media.viewers.perSession, perUserCap),
      retryAfterSeconds: Math.ceil(config.media.viewers.connectTimeoutMs / 1000),
    });

    const relayTaps = config.cluster ? createRelayTaps(config.cluster, log) : undefined;
    const registry = new CameraRegistry(cameras, { rtsp: config.rtsp, transcode: config.transcode, sfu, log: log.child({ component: "ingest" }), alwaysOnByLease: config.cluster !== undefined, ...(relayTaps ? { tap: relayTaps.wrap.bind(relayTaps) } : {}) });
    const recordings = new RetentionRecordings({ clock: Date.now, retentionOf: (id) => retentionOf(registry.configs().find((c) => c.id === id)) });
    cleanups.push(() => registry.close());
    cleanups.push(superviseCameras(supervisor, registry));
    const playbackAuditHook = audit ? playbackAudit(audit) : undefined;
    const gridAuditHook = audit ? gridAudit(audit) : undefined;
    const gridCounters = new GridCounters();
    const playback = new PlaybackService({
      sfu,
      settings: config.playback,
      rtsp: config.rtsp,
      log: log.child({ component: "playback" }),
      ...(playbackAuditHook ? { onEnd: playbackAuditHook.ended } : {}),
      onLearn: (id, range, present) => recordings.learn(id, range, present),
    });
    // Closed before the SFU (cleanups run in reverse): TEARDOWN at each recorder.
    cleanups.push(() => playback.close());

    const policy = opts.takenPorts ?? "fail";
    const takenPorts: TakenPort[] = [];

    // Door intercoms: SIP registrar + UAS and the demo door; the browser side is mounted under /api/intercom below.
    // Nothing reaches SIP through the relay: the TURN server (started below) names its own sockets.
    let turn: TurnServer | undefined;
    const { sip, demoDoor } = await startDoors({
      config,
      demoCamera: demo ? DEMO_CAMERA_ID : undefined,
      cameras: cameras.map((c) => c.id),
      policy,
      takenPorts,
      onClose: (fn) => cleanups.push(fn),
      lifecycle,
      isRelaySource: (address, port) => turn?.isRelaySource(address, port) ?? false,
      log,
    });
    const sipSup = sip?.ports.udp ? superviseSip(supervisor, sip, realTimers, log.child({ component: "supervisor" })) : undefined;
    if (sipSup) cleanups.push(() => sipSup.close());

    const tls = config.server.tls
      ? { cert: readFileSync(config.server.tls.cert), key: readFileSync(config.server.tls.key) }
      : undefined;

    // TURN first, so the front door can hand it TCP/TLS connections. The gateway's own media
    // addresses are the only private peers it relays to without an explicit allow-list, and on
    // the media ports only (never SIP, TURN or HTTP).
    // Parts made later that earlier ones call back: who may use the relay (made once the public
    // address is known, below) and sign-in.
    const late: { auth?: Auth; relay?: RelayAccess } = {};
    // In a cluster, credentials minted by another node for one of its sessions are good here too,
    // until the cluster says the session ended (the HMAC proves a node of the cluster minted them).
    let cluster: Cluster | undefined;
    let forwarding: Forwarding | undefined;
    let turnSup: TurnSupervision | undefined;
    if (config.turn.enabled) {
      const tc = config.turn;
      const anyPort = (l: typeof tc.udp) => l.map((x) => ({ ...x, port: 0 }));
      const fixed = [...tc.udp, ...tc.tcp, ...tc.tls].map((l) => l.port);
      turn = await startWithFallback("TURN", fixed, policy, log, takenPorts, (free) =>
        startTurnServer({
          config: free ? { ...tc, udp: anyPort(tc.udp), tcp: anyPort(tc.tcp), tls: anyPort(tc.tls) } : tc,
          log,
          allowedPeers: [config.media.announcedAddress ?? bindAddress],
          allowedPeerPorts: config.media.icePortRange,
          // Credentials of a sign-in session end with it, so they may last as long as it can.
          sessionCredentialLifetimeSeconds: Math.min(config.auth.session.maxAgeSeconds, 86_400),
          sessionActive: (ref) => late.relay?.sessionActive(ref) === true || (cluster !== undefined && !cluster.sessions.isRevoked(ref)),
          ...(tls ? { tls } : {}),
          onUdpListenerLost: (index, reason) => turnSup?.lost(index, reason),
        }),
      );
      const t = turn;
      cleanups.push(() => t.close("gateway closing"));
      // A UDP listener lost under the server is rebound on its port (the supervisor's policy).
      const ts = (turnSup = superviseTurn(supervisor, t, realTimers, log.child({ component: "supervisor" })));
      cleanups.push(() => ts.close());
    }

    // Listen first: the public URL (redirect URI of the sign-in flow) depends on the bound port.
    // One port carries HTTP(S), WebSocket and TURN over TCP/TLS: the front door tells them apart
    // by the first bytes of each connection (after TLS).
    const server = http.createServer();
    const door = await startWithFallback("front door", [config.server.port], policy, log, takenPorts, (free) =>
      startFrontDoor({
        host: config.server.host,
        port: free ? 0 : config.server.port,
        ...(tls ? { tls } : {}),
        http: server,
        ...(turn && config.turn.shareHttpsPort ? { turn } : {}),
        log: log.child({ component: "frontdoor" }),
        firstBytesTimeoutMs: config.server.firstBytesTimeoutMs,
        tlsHandshakeTimeoutMs: config.server.tlsHandshakeTimeoutMs,
        headersTimeoutMs: config.server.headersTimeoutMs,
        requestTimeoutMs: config.server.requestTimeoutMs,
        keepAliveTimeoutMs: config.server.keepAliveTimeoutMs,
        maxConnections: config.server.maxConnections,
        maxConnectionsPerSource: config.server.maxConnectionsPerSource,
        trustedProxies: new CidrList(config.server.trustProxy, "server.trustProxy"),
        ...(config.server.publicUrl?.startsWith("https:") ? { httpsOrigin: config.server.publicUrl } : {}),
      }),
    );
    cleanups.push(() => door.close());
    const port = door.port;
    const host = config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host;
    const url = (config.server.publicUrl ?? `${tls ? "https" : "http"}://${host}:${port}`).replace(/\/$/, "");
    const publicHost = new URL(url).hostname.replace(/^\[|\]$/g, "");
    const publicPort = Number(new URL(url).port || (tls ? 443 : 80));

    const relayAccess = new RelayAccess({
      turn,
      publicHost,
      publicPort,
      sharesHttpsPort: config.turn.shareHttpsPort,
      tls: tls !== undefined,
      credentialLifetimeSeconds: config.turn.credentialLifetimeSeconds,
    });
    late.relay = relayAccess;
    const iceServersFor = (user: RelayUser | undefined) => relayAccess.iceServersFor(user);

    // Several gateways as one: shared sessions, one pull per camera, announcements (gateway/cluster/).
    if (config.cluster) {
      const c = await startCluster({
        config: config.cluster,
        frontDoorUrl: `${tls ? "https" : "http"}://${host}:${port}`,
        port,
        sessionMaxAgeMs: config.auth.session.maxAgeSeconds * 1000,
        announce: () => ({
          endpoints: { whep: `${url}/whep`, turn: relayAccess.publicUris(), sip: [] },
          load: { viewers: sfu.viewerList().length, sessions: late.auth?.heldSessions().length ?? 0 },
          doors: sip ? sip.intercom.devices().filter((d) => d.bindings.length > 0).map((d) => d.id) : [],
        }),
        onRevoked: (ref) => relayAccess.sessionEnded(ref),
        log: log.child({ component: "cluster" }),
      });
      cluster = c;
      cleanups.push(() => c.close());
      forwarding = await startForwarding({ cluster: c, config: config.cluster.forward, host: config.server.host, taps: relayTaps!, sfu, cameras: registry, notices: lostNotices, timeoutMs: config.cluster.forwardTimeoutMs, log: log.child({ component: "cluster" }) });
      cleanups.push(() => forwarding?.close());
      // A camera this node stopped pulling goes back to the cluster; one taken over elsewhere ends here.
      registry.events.on("camera", (view) => {
        if (view.state === "idle" && view.viewers === 0) void c.leases.release(view.id);
      });
      c.leases.events.on("lost", (camera) => {
        for (const v of sfu.viewerList()) if (v.cameraId === camera) void v.close(ViewerCloseReasons.takenOver);
      });
      cleanups.push(keepAlwaysOnByLease({ leases: c.leases, link: c.link, cameras: cameras.filter((x) => x.alwaysOn).map((x) => x.id), pin: (id, on) => registry.keepPulling(id, on), intervalMs: config.cluster.leaseMs / 3, log: log.child({ component: "cluster" }) }));
    }

    const auth = await createAuth({
      config: config.auth,
      publicUrl: url,
      listenHost: config.server.host,
      cameras: () => registry.configs(),
      log: log.child({ component: "auth" }),
      ...(cluster ? { mirror: cluster.sessions } : {}),
    });
    late.auth = auth;
    cleanups.push(() => auth.close());
    cluster?.sessions.attach(auth);
    // Relay access ends with the session (sign-out, expiry, revocation, back-channel logout).
    auth.observer.on("sessionEnded", (e) => {
      relayAccess.sessionEnded(e.ref);
      // Sign-out, revocation, back-channel logout: every node of the cluster ends it too.
      cluster?.sessions.ended(e);
    });
    if (audit) cleanups.push(auditAuth(audit, auth.observer));

    // The intercom's call history comes from the audit trail (it survives restarts).
    const callLog = audit && sip ? await AuditCallLog.load(audit, sip.intercom, 1000, log.child({ component: "audit" })) : undefined;
    if (callLog) cleanups.push(() => callLog.close());
    const intercomAudit = audit && sip ? auditIntercom(audit, sip.intercom) : undefined;
    if (intercomAudit) cleanups.push(() => intercomAudit.close());

    // Doors registered with any node ring every node's pages; actions go to the node holding the call.
    const clusterIntercom = cluster && sip ? new ClusterIntercom({ link: cluster.link, nodes: cluster.nodes, nodeId: cluster.nodeId, key: cluster.forwardKey, intercom: sip.intercom, timeoutMs: config.cluster!.forwardTimeoutMs, callTimeoutMs: (config.sip.ringTimeoutSeconds + 10) * 1000, historyMax: config.cluster!.callHistoryMax, localHistory: () => callLog?.history() ?? sip.intercom.history(), log: log.child({ component: "cluster" }) }) : undefined;
    // Closed before the SIP server (cleanups run in reverse): event streams and talk peers first.
    const intercomWeb = sip
      ? createIntercomWeb({
          intercom: sip.intercom,
          auth,
          publicOrigin: new URL(url).origin,
          media: {
            bindAddress,
            icePortRange: config.media.icePortRange,
            announcedAddress: config.media.announcedAddress,
            // The browser's candidates follow the viewers' rules: IP literals only, no refused ranges.
            screenOffer: (sdp) => sfu.screenOfferCandidates(sdp),
          },
          iceServers: (req) => iceServersFor(req.user),
          cameraName: (id) => registry.configs().find((c) => c.id === id)?.name,
          log: log.child({ component: "intercom" }),
          ...(callLog ? { history: () => callLog.history() } : {}),
          ...clusterIntercom?.hooks(),
        })
      : undefined;
    if (intercomWeb) cleanups.push(() => intercomWeb.close("gateway closing"));
    if (clusterIntercom && intercomWeb) await clusterIntercom.attach(intercomWeb.service).then(() => cleanups.push(() => clusterIntercom.close()));

    // What /metrics reports, and what /readyz checks.
    let closingNow = false;
    const { checks, collectors } = wireReadiness({
      config,
      supervisor,
      webhook,
      sfu,
      registry,
      admission,
      door,
      turn,
      turnRestart: turnSup,
      sipRestart: sipSup,
      sip,
      audit,
      auth,
      cluster,
      gridCounters,
      forwarding,
      closing: () => closingNow,
      onClose: (fn) => cleanups.push(fn),
      log,
    });
    const scrapeToken = config.metrics.token;
    /** Base URL of the metrics-only listener, once it listens (below). */
    let metricsUrl: string | undefined;
    const serveMetrics = (authorize: (req: express.Request) => void) => metricsHandler({ collectors: () => collectors, authorize });

    /** The WHEP routes, built below (after sign-in's routes) and reached earlier by the cluster's internal link. */
    let whepLate: express.RequestHandler = (_req, _res, next) => next();
    const app = express();
    app.disable("x-powered-by");
    app.set("trust proxy", false);
    // req.ip is the one client address (server.trustProxy decides whether X-Forwarded-For counts).
    Object.defineProperty(app.request, "ip", { configurable: true, enumerable: true, get(this: express.Request) { return clientAddress(this); } });
    app.use(auth.securityHeaders);
    app.get("/healthz", healthzHandler);
    app.get("/readyz", readyzHandler(() => checks));
    app.get(
      "/.well-known/gatehouse",
      discoveryHandler(() => {
        const sipHost = config.sip.announcedAddress ?? publicHost;
        const ports = sip?.ports ?? {};
        return {
          service: "gatehouse",
          version: GATEHOUSE_VERSION,
          url,
          api: `${url}/api`,
          whep: `${url}/whep`,
          turn: relayAccess.publicUris(),
          sip: sip
            ? [
                ...(ports.udp ? [`sip:${config.sip.domain}@${sipHost}:${ports.udp};transport=udp`] : []),
                ...(ports.tcp ? [`sip:${config.sip.domain}@${sipHost}:${ports.tcp};transport=tcp`] : []),
                ...(ports.tls ? [`sips:${config.sip.domain}@${sipHost}:${ports.tls};transport=tls`] : []),
              ]
            : [],
          identityProvider: auth.issuer ?? null,
          signIn: `${url}/auth/login`,
          health: { live: `${url}/healthz`, ready: `${url}/readyz` },
          metrics: metricsUrl ? `${metricsUrl}/metrics` : `${url}/metrics`,
          ...(cluster ? { cluster: cluster.discovery() } : {}),
        };
      }),
    );
    // A scraper with the metrics token needs no session; anything else goes on to sign-in below.
    app.get("/metrics", (req, res, next) => (hasScrapeToken(req, scrapeToken) ? serveMetrics(() => {})(req, res, next) : next()));
    app.use("/auth", auth.router);
    // WHEP requests another node of the cluster forwarded (signed with the cluster's key; no cookie, no CSRF).
    if (forwarding) app.use(RELAY_PATH, forwarding.router);
    if (cluster) app.use(INTERNAL_WHEP, inboundRouter({ key: cluster.forwardKey, auth, log: log.child({ component: "cluster" }) }), (req, res, next) => whepLate(req, res, next));
    if (cluster && intercomWeb) app.use(INTERNAL_INTERCOM, inboundRouter({ key: cluster.forwardKey, auth, log: log.child({ component: "cluster" }) }), intercomWeb.router);
    // Refused live views are recorded too, including those refused at sign-in (401).
    if (audit) app.use("/whep", auditWhepRefusals(audit));
    if (gridAuditHook) app.use("/grid", gridAuditHook.refusals);
    if (playbackAuditHook) app.use("/whep", playbackAuditHook.refusals);
    // The web client's own files hold nothing secret and are served to anyone: a page opened before
    // sign-in then sends the browser to sign in with its whole address, the fragment included
    // (`/#camera=<id>`), which a redirect from here could not see. Its data stays behind sign-in.
    app.use(webAssets(WEB_ROOT).router);
    app.use(express.static(WEB_ROOT, { index: "index.html", fallthrough: true }));
    // Everything below needs a signed-in user; state-changing browser requests need CSRF proof.
    app.use(auth.requireUser, auth.csrf);
    const prefStore = new PreferenceStore(path.join(config.dataDir, "preferences.sqlite"), config.preferences.maxBytes);
    cleanups.push(() => prefStore.close());
    app.use("/api", preferencesRouter({ store: prefStore, maxBytes: config.preferences.maxBytes }));
    mountAdminRoutes(app, {
      config,
      registry,
      auth,
      audit,
      supervisor,
      webhook,
      turn,
      sip,
      cluster,
      relay: relayAccess,
      publicHost,
      publicPort,
      httpPort: port,
      tls: tls !== undefined,
      metricsUrl: () => metricsUrl,
      metrics: serveMetrics,
      log,
    });
    if (intercomWeb && intercomAudit) app.use("/api/intercom", intercomAudit.routes);
    if (intercomWeb && demoDoor)
      app.use(
        "/api/intercom/demo-door",
        demoDoorRouter({ door: demoDoor, deviceId: DEMO_DOOR_ID, mayRing: (req) => auth.can(req.user!, "demo", "admin") }),
      );
    if (clusterIntercom) app.use("/api/intercom", clusterIntercom.router());
    if (intercomWeb) app.use("/api/intercom", intercomWeb.router);
    // Without SIP the page still asks once: say so plainly instead of a 404 in every console.
    else app.get("/api/intercom", (_req, res) => res.set("Cache-Control", "no-store").json({ enabled: false }));
    app.use("/api", recordingsRouter({ recordings: recordingsCatalog(recordings, (id) => registry.config(id), log.child({ component: "playback" })), authorize: (req, id) => auth.authorizeCamera(req.user!, id, "playback") }));
    app.use(
      "/api",
      apiRouter({
        cameras: registry,
        canSee: (req, id) => auth.canSee(req.user!, id),
        actionsOf: (req, id) => auth.actions(req.user!, id),
        publicOrigin: new URL(url).origin,
        watch: (req, end) => auth.watch(req.user!, end),
        lifecycle,
        viewerLost: (req, send) => lostNotices.listen(ownerOfUser(req.user), send),
      }),
    );
    whepLate = mountMediaRoutes(app, {
      config,
      sfu,
      registry,
      auth,
      admission,
      relay: relayAccess,
      playback,
      audit,
      playbackAudit: playbackAuditHook,
      gridAudit: gridAuditHook,
      gridCounters,
      cluster,
      forwarding,
      lostNotices,
      log,
    });
    app.use(errorHandler(log));
    server.on("request", app);

    // Metrics on a listener of their own: /metrics, /healthz and /readyz only.
    if (config.metrics.listen) {
      const m = await startMetricsListener({ ...config.metrics.listen, token: scrapeToken, collectors: () => collectors, checks: () => checks });
      cleanups.push(() => m.close());
      metricsUrl = m.url;
      log.info("metrics listener", { url: metricsUrl, token: scrapeToken ? "required" : "none (loopback)" });
    }

    let closing: Promise<void> | undefined;
    const close = (reason = "closed", closeOpts: CloseOptions = {}) => {
      closing ??= (async () => {
        const started = Date.now();
        closingNow = true;
        log.info("gateway closing", { reason });
        // No new connections; the pages that are open hear why their streams end, and retry.
        door.stopAccepting();
        lifecycle.emit("closing", reason);
        await closeAll(closeOpts.timeoutMs !== undefined ? started + closeOpts.timeoutMs : undefined);
        log.info("gateway closed", { reason, ms: Date.now() - started });
      })();
      return closing;
    };
    return {
      url,
      httpPort: port,
      sfu,
      cameras: registry,
      demo,
      auth,
      turn,
      sip,
      frontDoor: door,
      metricsUrl,
      audit,
      supervisor,
      demoDoor,
      takenPorts,
      cluster,
      forwarding,
      recordings,
      playback,
      close,
      [Symbol.asyncDispose]: () => close("disposed"),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
