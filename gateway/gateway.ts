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
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import express from "express";
import type { Config, CameraConfig } from "../config/schema.ts";
import { createLogger, type Logger } from "../config/log.ts";
import { Sfu } from "../sfu/sfu.ts";
import { authCloseReason, ViewerCloseReasons } from "../sfu/api.ts";
import { CameraRegistry } from "./cameras.ts";
import { startDemoRecorder, type DemoRecorder } from "./demo/recorder.ts";
import { apiRouter } from "./http/api.ts";
import { recordingsRouter } from "./http/recordings.ts";
import { preferencesRouter } from "./http/preferences.ts";
import { PreferenceStore } from "./preferences/store.ts";
import { RetentionRecordings, type RecordingIndex } from "./playback/recordings.ts";
import { errorHandler } from "./http/errors.ts";
import { ViewerAdmission } from "./http/viewer-admission.ts";
import { iceServerLinks, whepRouter } from "./http/whep.ts";
import { gridRouter } from "./http/grid.ts";
import { createAuth, sessionRef, type Auth } from "./auth/index.ts";
import { adminRouter } from "./http/admin.ts";
import { hasScrapeToken, metricsHandler, processRegistry, type Collector } from "./http/metrics.ts";
import { healthzHandler, readyzHandler, type ReadinessCheck } from "./http/health.ts";
import { discoveryHandler } from "./http/discovery.ts";
import { admissionCollector, auditCollector, cameraCollector, frontDoorCollector, sfuCollector, SfuMetricsWindow } from "./metrics.ts";
import { AuthError } from "../config/errors.ts";
import type { SessionId } from "../config/ids.ts";
import { startTurnServer, turnIceServers, type TurnServer } from "../turn/index.ts";
import { canonicalIp } from "../config/net/ip.ts";
import { parseCandidate } from "../sfu/candidates.ts";
import { CidrList } from "../config/net/cidr.ts";
import { clientAddress, startFrontDoor, type FrontDoor } from "./frontdoor/index.ts";
import { sipCollector, turnCollector } from "./metrics.ts";
import { startSipServer, type SipServer } from "./sip/index.ts";
import { createIntercomWeb } from "./intercom/index.ts";
import { AuditCallLog, auditAdmin, callerOf, auditAuth, auditIntercom, auditRouter, auditWhepRefusals, gridAudit, openAudit, whepAudit, type AuditLog } from "./audit/index.ts";
import type { SipConfig, SipDeviceConfig } from "../config/sections/sip.ts";
import { DemoDoor } from "./demo/door.ts";
import { demoDoorRouter } from "./demo/routes.ts";
import { startWithFallback, type TakenPort, type TakenPortPolicy } from "./ports.ts";
import { SafeEmitter } from "../config/events.ts";
import { clusterAdminHandler, forwardingRouter, inboundRouter, INTERNAL_WHEP, keepAlwaysOnByLease, startCluster, type Cluster } from "./cluster/index.ts";
import { realTimers } from "./rtsp/timers.ts";
import { providerFetch } from "./auth/fetch.ts";
import { Supervisor } from "./supervision/supervisor.ts";
import { Webhook } from "./supervision/webhook.ts";
import { supervisionRouter } from "./supervision/routes.ts";
import { discoveryProbe, localTarget, sipOptionsProbe, stunProbe } from "./supervision/probes.ts";
import {
  componentReadiness,
  mediaWorkerPolicy,
  superviseCameras,
  superviseMediaWorkers,
  supervisionCollector,
  supervisionReadiness,
  watchHealth,
  type HealthCheck,
} from "./supervision/wiring.ts";
import { portMap } from "./port-map.ts";
import { PlaybackService } from "./playback/service.ts";
import { playbackRouter } from "./playback/routes.ts";
import { playbackAudit } from "./audit/hooks.ts";

/**
 * The relayed addresses a viewer's offer names (`a=candidate:… typ relay`): the allocations its
 * peer connection made with our TURN server. Unreadable lines are skipped (the SFU judges them).
 */
function relayedAddressesIn(sdp: string): { family: 4 | 6; address: string; port: number }[] {
  const out: { family: 4 | 6; address: string; port: number }[] = [];
  for (const line of sdp.split(/\r?\n/)) {
    if (!line.startsWith("a=candidate:") || out.length >= 64) continue;
    try {
      const c = parseCandidate(line.slice(2));
      const address = canonicalIp(c.address);
      if (c.type === "relay" && c.transport === "udp" && address !== undefined) out.push({ family: address.includes(":") ? 6 : 4, address, port: c.port });
    } catch {
      // not a candidate we can read: nothing of ours
    }
  }
  return out;
}

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
export const DEMO_DOOR_ID = "demo-door";

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
  /** What each camera's recorder holds (the timeline); the playback engine tells it what it learns. */
  readonly recordings: RecordingIndex & Pick<RetentionRecordings, "ranges" | "window">;
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

    // One user never holds more than half of the ICE ports: the rest stays for everybody else.
    const perUserCap = Math.max(1, Math.floor(sfu.viewerCapacity / 2));
    if (config.media.viewers.perUser > perUserCap)
      log.warn("media.viewers.perUser clamped to half of the ICE port range", { configured: config.media.viewers.perUser, used: perUserCap });
    const admission = new ViewerAdmission({
      perUser: Math.min(config.media.viewers.perUser, perUserCap),
      perSession: Math.min(config.media.viewers.perSession, perUserCap),
      retryAfterSeconds: Math.ceil(config.media.viewers.connectTimeoutMs / 1000),
    });

    const registry = new CameraRegistry(cameras, { rtsp: config.rtsp, transcode: config.transcode, sfu, log: log.child({ component: "ingest" }), alwaysOnByLease: config.cluster !== undefined });
    const recordings = new RetentionRecordings({ clock: Date.now, retentionOf: (id) => retentionOf(registry.configs().find((c) => c.id === id)) });
    cleanups.push(() => registry.close());
    cleanups.push(superviseCameras(supervisor, registry));
    const playbackAuditHook = audit ? playbackAudit(audit) : undefined;
    const gridAuditHook = audit ? gridAudit(audit) : undefined;
    const playback = new PlaybackService({
      sfu,
      settings: config.playback,
      rtsp: config.rtsp,
      log: log.child({ component: "playback" }),
      ...(playbackAuditHook ? { onEnd: playbackAuditHook.ended } : {}),
    });
    // Closed before the SFU (cleanups run in reverse): TEARDOWN at each recorder.
    cleanups.push(() => playback.close());

    const policy = opts.takenPorts ?? "fail";
    const takenPorts: TakenPort[] = [];

    // The built-in demo door station: a SIP device of its own, at the demo camera, with a
    // password made for this run (it lives in this process, nobody else needs it).
    let demoDoorDevice: SipDeviceConfig | undefined;
    if (config.demo.door.enabled && demo && config.sip.enabled) {
      if (!config.sip.udp.enabled) log.warn("demo door not started: it needs sip.udp");
      else if (config.sip.devices.some((d) => d.id === DEMO_DOOR_ID || d.username.toLowerCase() === DEMO_DOOR_ID))
        log.warn(`demo door not started: a configured SIP device is already called "${DEMO_DOOR_ID}"`);
      else
        demoDoorDevice = {
          id: DEMO_DOOR_ID,
          name: config.demo.door.name,
          username: DEMO_DOOR_ID,
          password: randomBytes(18).toString("base64url"),
          camera: "demo",
          answerers: { users: [], groups: [] },
          dtmf: { openDoor: "#", method: "rfc4733", durationMs: 160 },
          allow: [],
          digestAlgorithms: ["SHA-256", "MD5"],
          authenticateCalls: true,
        };
    }

    // Door intercoms: SIP registrar + UAS; the browser side is mounted under /api/intercom below.
    let sip: SipServer | undefined;
    // Nothing reaches SIP through the relay: the TURN server (started below) names its own sockets.
    let turn: TurnServer | undefined;
    if (config.sip.enabled) {
      const sipConfig: SipConfig = demoDoorDevice ? { ...config.sip, devices: [...config.sip.devices, demoDoorDevice] } : config.sip;
      const anyPort = (c: SipConfig): SipConfig => ({ ...c, udp: { ...c.udp, port: 0 }, tcp: { ...c.tcp, port: 0 }, ...(c.tls ? { tls: { ...c.tls, port: 0 } } : {}) });
      sip = await startWithFallback("SIP", [sipConfig.udp.port, sipConfig.tcp.port, sipConfig.tls?.port ?? 0], policy, log, takenPorts, (free) =>
        startSipServer({
          config: free ? anyPort(sipConfig) : sipConfig,
          log: log.child({ component: "sip" }),
          cameras: cameras.map((c) => c.id),
          ...(config.server.tls ? { tlsFallback: config.server.tls } : {}),
          refuseSource: (address, port) => turn?.isRelaySource(address, port) ?? false,
        }),
      );
      const s = sip;
      cleanups.push(() => s.close("gateway closing"));
      // Calls end first (BYE to answered ones, 480 to ringing ones), while the audit hooks and
      // the browsers' streams still listen, so the end is recorded and shown.
      lifecycle.on("closing", () => s.intercom.close());
    }

    // The demo door registers like any door; if it cannot, the rest runs without it.
    let demoDoor: DemoDoor | undefined;
    if (sip && demoDoorDevice && sip.ports.udp) {
      const bind = config.sip.bindAddress;
      try {
        demoDoor = await DemoDoor.start({
          sip: config.sip,
          registrar: { address: bind === "0.0.0.0" ? "127.0.0.1" : bind === "::" ? "::1" : bind, port: sip.ports.udp },
          username: demoDoorDevice.username,
          password: demoDoorDevice.password!,
          displayName: config.demo.door.name,
          answerAfterMs: config.demo.door.answerAfterMs,
          log: log.child({ component: "demo-door" }),
        });
        const d = demoDoor;
        // Closed before the SIP server (cleanups run in reverse): it hangs up and unregisters.
        cleanups.push(() => d.close("gateway closing"));
        log.info("demo door registered", { device: DEMO_DOOR_ID, aor: demoDoor.aor });
      } catch (err) {
        log.warn("demo door not started", { err });
      }
    }

    const tls = config.server.tls
      ? { cert: readFileSync(config.server.tls.cert), key: readFileSync(config.server.tls.key) }
      : undefined;

    // TURN first, so the front door can hand it TCP/TLS connections. The gateway's own media
    // addresses are the only private peers it relays to without an explicit allow-list, and on
    // the media ports only (never SIP, TURN or HTTP).
    // Sessions whose relay credentials were minted, by reference; a session leaves when it ends.
    // After a restart the set is empty: old credentials are refused until the page fetches new ones.
    const turnSessions = new Set<string>();
    // In a cluster, credentials minted by another node for one of its sessions are good here too,
    // until the cluster says the session ended (the HMAC proves a node of the cluster minted them).
    let cluster: Cluster | undefined;
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
          sessionActive: (ref) => turnSessions.has(ref) || (cluster !== undefined && !cluster.sessions.isRevoked(ref)),
          ...(tls ? { tls } : {}),
        }),
      );
      const t = turn;
      cleanups.push(() => t.close("gateway closing"));
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

    /**
     * ICE servers for one signed-in user: our TURN. Credentials of a session carry its reference:
     * ending the session (sign-out, expiry, revocation, back-channel logout) closes their
     * allocations and refuses them. Others (bearer tokens) end with the token at the latest.
     */
    /** TURN URIs of this node, without credentials (discovery, node announcements). */
    const publicTurnUris = (): string[] =>
      turn
        ? turnIceServers({ host: publicHost, ...(turn.udp[0] ? { udpPort: turn.udp[0].port } : {}), ...(config.turn.shareHttpsPort ? { httpsPort: publicPort, tls: tls !== undefined } : {}), credentials: { username: "", password: "" } }).flatMap((s) => s.urls)
        : [];

    const iceServersFor = (user: { sub: string; expiresAt: number; sessionId?: SessionId | undefined } | undefined) => {
      if (!turn || !user) return [];
      let credentials;
      if (user.sessionId !== undefined) {
        const ref = sessionRef(user.sessionId);
        turnSessions.add(ref);
        credentials = turn.mintCredentials(user.sub, undefined, ref);
      } else {
        const remaining = Math.floor((user.expiresAt - Date.now()) / 1000);
        credentials = turn.mintCredentials(user.sub, Math.max(30, Math.min(config.turn.credentialLifetimeSeconds, remaining)));
      }
      return turnIceServers({
        host: publicHost,
        ...(turn.udp[0] ? { udpPort: turn.udp[0].port } : {}),
        ...(config.turn.shareHttpsPort ? { httpsPort: publicPort, tls: tls !== undefined } : {}),
        credentials,
      });
    };

    // Several gateways as one: shared sessions, one pull per camera, announcements (gateway/cluster/).
    const late: { auth?: Auth } = {};
    if (config.cluster) {
      const c = await startCluster({
        config: config.cluster,
        frontDoorUrl: `${tls ? "https" : "http"}://${host}:${port}`,
        port,
        sessionMaxAgeMs: config.auth.session.maxAgeSeconds * 1000,
        announce: () => ({
          endpoints: { whep: `${url}/whep`, turn: turn ? publicTurnUris() : [], sip: [] },
          load: { viewers: sfu.viewerList().length, sessions: late.auth?.heldSessions().length ?? 0 },
        }),
        onRevoked: (ref) => {
          turnSessions.delete(ref);
          turn?.closeSession(ref);
        },
        log: log.child({ component: "cluster" }),
      });
      cluster = c;
      cleanups.push(() => c.close());
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
      turnSessions.delete(e.ref);
      turn?.closeSession(e.ref);
      // Sign-out, revocation, back-channel logout: every node of the cluster ends it too.
      cluster?.sessions.ended(e);
    });
    if (audit) cleanups.push(auditAuth(audit, auth.observer));

    // The intercom's call history comes from the audit trail (it survives restarts).
    const callLog = audit && sip ? await AuditCallLog.load(audit, sip.intercom, 1000, log.child({ component: "audit" })) : undefined;
    if (callLog) cleanups.push(() => callLog.close());
    const intercomAudit = audit && sip ? auditIntercom(audit, sip.intercom) : undefined;
    if (intercomAudit) cleanups.push(() => intercomAudit.close());

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
        })
      : undefined;
    if (intercomWeb) cleanups.push(() => intercomWeb.close("gateway closing"));

    // What /metrics reports, and what /readyz checks. The process's own figures start now.
    processRegistry();
    const sfuWindow = new SfuMetricsWindow(sfu, config.metrics.windowSeconds);
    cleanups.push(() => sfuWindow.close());
    const collectors: Collector[] = [cameraCollector(registry), sfuCollector(sfu, sfuWindow), admissionCollector(admission, sfu), frontDoorCollector(door), supervisionCollector(supervisor, webhook)];
    if (turn) collectors.push(turnCollector(turn));
    if (sip) collectors.push(sipCollector(sip));
    let closingNow = false;
    const up = (what: string) => () => (closingNow ? { ready: false, detail: "closing" } : { ready: true, detail: what });
    const checks: ReadinessCheck[] = [
      { name: "http", check: up("listening") },
      {
        name: "sfu",
        check: () => {
          if (closingNow) return { ready: false, detail: "closing" };
          const slots = sfu.workerSlots();
          const running = slots.filter((w) => w.state === "running").length;
          if (slots.length > 0 && running === 0) return { ready: false, detail: "no media worker running" };
          return { ready: true, detail: slots.length > 0 ? `${running} of ${slots.length} media workers running` : "media on the main thread" };
        },
      },
      supervisionReadiness(supervisor),
      { name: "auth", check: up(config.auth.mode) },
      {
        name: "cameras",
        required: false,
        check: () => {
          const failed = registry.configs().filter((c) => registry.status(c.id)?.state === "failed").length;
          return { ready: failed === 0, detail: `${registry.configs().length} configured, ${failed} failed` };
        },
      },
    ];
    if (audit) {
      const a = audit;
      checks.push({ name: "audit", check: () => (a.healthy ? { ready: true, detail: a.store.kind } : { ready: false, detail: `${a.store.kind} store failing; ${a.stats.queued} records waiting` }) });
      collectors.push(auditCollector(a));
    }
    // Health checks of what has no restart of its own to report: TURN, SIP, the audit store, the identity provider.
    const timeoutMs = sc.checkTimeoutMs;
    const health: HealthCheck[] = [];
    if (turn?.udp[0]) {
      const l = turn.udp[0];
      health.push({ id: "turn", kind: "turn", name: "TURN", probe: () => stunProbe(localTarget(l.address), l.port, timeoutMs) });
    }
    if (sip?.ports.udp) {
      const p = sip.ports.udp;
      health.push({ id: "sip", kind: "sip", name: "SIP", probe: () => sipOptionsProbe(localTarget(config.sip.bindAddress), p, timeoutMs) });
    }
    if (audit) {
      const a = audit;
      health.push({ id: "audit", kind: "audit", name: "Audit store", probe: () => (a.healthy ? { ok: true, reason: `${a.store.kind} store writes` } : { ok: false, reason: `${a.store.kind} store failing; ${a.stats.queued} records waiting` }) });
    }
    if (auth.issuer && config.auth.mode !== "none") {
      const issuer = auth.issuer;
      const idpFetch = providerFetch({ ca: config.auth.issuerCaFile ? readFileSync(config.auth.issuerCaFile, "utf8") : undefined, timeoutMs });
      cleanups.push(() => idpFetch.close());
      health.push({ id: "identity-provider", kind: "identity-provider", name: "Identity provider", probe: () => discoveryProbe(issuer, idpFetch, timeoutMs) });
      // Signed-in users keep working while the provider is away; new sign-ins fail.
      checks.push(componentReadiness(supervisor, "identity-provider", "identity-provider", false));
    }
    cleanups.push(watchHealth(supervisor, health, sc.checkIntervalSeconds * 1000, log.child({ component: "supervisor" })));
    if (turn) checks.push(turn.udp[0] ? componentReadiness(supervisor, "turn", "turn") : { name: "turn", check: up("listening") });
    if (sip) checks.push(sip.ports.udp ? componentReadiness(supervisor, "sip", "sip") : { name: "sip", check: up("listening") });
    if (cluster) {
      const c = cluster;
      // Not required: without Redis a node still serves what it serves (a balancer keeps it).
      checks.push({
        name: "cluster",
        required: false,
        check: () => (c.link.available ? { ready: true, detail: `${c.nodes.nodes.length} nodes` } : { ready: false, detail: "Redis unreachable: serving what this node serves" }),
      });
    }
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
          turn: turn ? publicTurnUris() : [],
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
    if (cluster) app.use(INTERNAL_WHEP, inboundRouter({ key: cluster.forwardKey, auth, log: log.child({ component: "cluster" }) }), (req, res, next) => whepLate(req, res, next));
    // Refused live views are recorded too, including those refused at sign-in (401).
    if (audit) app.use("/whep", auditWhepRefusals(audit));
    if (gridAuditHook) app.use("/grid", gridAuditHook.refusals);
    if (playbackAuditHook) app.use("/whep", playbackAuditHook.refusals);
    // The web client's own files hold nothing secret and are served to anyone: a page opened before
    // sign-in then sends the browser to sign in with its whole address, the fragment included
    // (`/#camera=<id>`), which a redirect from here could not see. Its data stays behind sign-in.
    app.use(express.static(WEB_ROOT, { index: "index.html", fallthrough: true }));
    // Everything below needs a signed-in user; state-changing browser requests need CSRF proof.
    app.use(auth.requireUser, auth.csrf);
    const prefStore = new PreferenceStore(path.join(config.dataDir, "preferences.sqlite"), config.preferences.maxBytes);
    cleanups.push(() => prefStore.close());
    app.use("/api", preferencesRouter({ store: prefStore, maxBytes: config.preferences.maxBytes }));
    // Operational figures and other users' sessions cover every camera: only an administrator of all of them.
    const requireGlobalAdmin = (req: express.Request, what: string) => {
      if (!registry.configs().every((c) => auth.can(req.user!, c.id, "admin"))) throw new AuthError("FORBIDDEN", `${what} need the admin right on every camera`);
    };
    app.get("/metrics", serveMetrics((req) => requireGlobalAdmin(req, "metrics")));
    if (audit) {
      app.use(
        "/api/admin/audit",
        auditRouter({ audit, authorize: (req) => requireGlobalAdmin(req, "the audit trail"), exportMaxRows: config.audit.exportMaxRows }),
      );
      app.use("/api/admin", auditAdmin(audit));
    }
    // Each node's internal URL and what it pulls: for administrators only (the public document omits them).
    if (cluster) app.get("/api/admin/cluster", clusterAdminHandler(cluster, (req) => requireGlobalAdmin(req, "the cluster's nodes")));
    // What the connectivity test page needs: this user's ICE servers (relay credentials) and the
    // addresses to name in its advice. Nothing here is beyond what a live view's answer reveals.
    app.get("/api/connectivity", (req, res) => {
      res.set("Cache-Control", "no-store").json({
        host: publicHost,
        httpsPort: publicPort,
        tls: tls !== undefined,
        media: { ports: config.media.icePortRange },
        turn: turn ? { udpPort: turn.udp[0]?.port ?? null, sharesHttpsPort: config.turn.shareHttpsPort } : null,
        iceServers: iceServersFor(req.user),
      });
    });
    // The firewall table of this deployment, with the ports actually bound.
    app.get("/api/admin/ports", (req, res) => {
      requireGlobalAdmin(req, "the port map");
      const rows = portMap(config, {
        http: port,
        ...(turn ? { turnUdp: turn.udp.map((a) => a.port) } : {}),
        ...(sip ? { sip: sip.ports } : {}),
        ...(metricsUrl ? { metrics: Number(new URL(metricsUrl).port) } : {}),
      });
      res.set("Cache-Control", "no-store").json({ rows });
    });
    app.use(
      "/api/admin/supervision",
      supervisionRouter({
        supervisor,
        webhook,
        authorize: (req) => requireGlobalAdmin(req, "supervision"),
        // Enabling a disabled camera or media worker is an administrator's action: audited.
        ...(audit
          ? {
              onEnabled: (req: express.Request, component: string) =>
                audit.record({
                  action: "admin_component_enable",
                  outcome: "success",
                  ...callerOf(req),
                  ...(component.startsWith("camera:") ? { camera: component.slice("camera:".length) } : {}),
                  detail: JSON.stringify({ component }),
                }),
            }
          : {}),
        log: log.child({ component: "admin" }),
      }),
    );
    app.use(
      "/api/admin",
      adminRouter({
        auth,
        authorize: (req) => requireGlobalAdmin(req, "sessions"),
        onUserRevoked: (sub) => turn?.closeSubject(sub),
        log: log.child({ component: "admin" }),
      }),
    );
    if (intercomWeb && intercomAudit) app.use("/api/intercom", intercomAudit.routes);
    if (intercomWeb && demoDoor)
      app.use(
        "/api/intercom/demo-door",
        demoDoorRouter({ door: demoDoor, deviceId: DEMO_DOOR_ID, mayRing: (req) => auth.can(req.user!, "demo", "admin") }),
      );
    if (intercomWeb) app.use("/api/intercom", intercomWeb.router);
    // Without SIP the page still asks once: say so plainly instead of a 404 in every console.
    else app.get("/api/intercom", (_req, res) => res.set("Cache-Control", "no-store").json({ enabled: false }));
    app.use("/api", recordingsRouter({ recordings, authorize: (req, id) => auth.authorizeCamera(req.user!, id, "playback") }));
    app.use(
      "/api",
      apiRouter({
        cameras: registry,
        canSee: (req, id) => auth.canSee(req.user!, id),
        actionsOf: (req, id) => auth.actions(req.user!, id),
        publicOrigin: new URL(url).origin,
        watch: (req, end) => auth.watch(req.user!, end),
        lifecycle,
      }),
    );
    // Playback first: the live routes answer 405 to any other path of two segments.
    app.use(
      "/whep",
      playbackRouter({
        service: playback,
        camera: (id) => registry.config(id),
        authorize: (req, id) => auth.authorizeCamera(req.user!, id, "playback"),
        ownerOf: (req) => {
          const user = req.user?.sub ?? "";
          return { user, session: req.user ? (req.user.sessionId ?? `${req.user.via}:${req.user.sub}`) : "" };
        },
        // A playback ends when its session is revoked, lapses, or loses the right.
        onStarted: (req, entry) => {
          const stop = auth.watch(req.user!, (reason) => void playback.end(entry, `auth: ${reason}`), { cameraId: entry.cameraId, action: "playback" });
          entry.viewer.on("closed", stop);
          playbackAuditHook?.started(req, entry);
        },
        setIceLinks: (req, res) => {
          for (const l of iceServerLinks(iceServersFor(req.user))) res.append("Link", l);
        },
        log: log.child({ component: "playback" }),
      }),
    );
    const whep = whepRouter({
        sfu,
        cameraExists: (id) => registry.has(id),
        streamSource: (id, stream) => registry.streamSource(id, stream),
        // Auto: the SFU moves the viewer along the camera's streams as its network allows; else it stays put.
        onStreamChoice: (viewer, id, stream) => viewer.setStreams(registry.streamSources(id), stream === "auto"),
        authorize: (req, id) => auth.authorizeCamera(req.user!, id, "live"),
        userOf: (req) => req.user?.sub,
        // Viewers belong to the session that made them (a bearer token's user counts as one session).
        sessionOf: (req) => (req.user ? (req.user.sessionId ?? `${req.user.via}:${req.user.sub}`) : undefined),
        admission,
        // A viewer's stream ends when its session is revoked, lapses, or loses the right.
        onViewer: (req, viewer) => {
          const user = req.user!;
          const sub = user.sub;
          const stop = auth.watch(user, (reason) => {
            void viewer.close(authCloseReason(reason));
            // A session's relays end with the session (above); a bearer caller's with its token.
            if (user.sessionId === undefined) turn?.closeSubject(sub);
          }, {
            cameraId: viewer.cameraId,
            action: "live",
          });
          // The relays this viewer's peer connection allocated (named in its offer) go with it,
          // so a closed page does not hold the user's relay quota until the allocations expire.
          const relayed = turn && typeof req.body === "string" ? relayedAddressesIn(req.body) : [];
          viewer.on("closed", () => {
            stop();
            if (relayed.length > 0) turn?.closeClientOf(sub, relayed);
          });
        },
        iceServers: (req) => iceServersFor(req.user),
        ...(audit ? { audit: whepAudit(audit) } : {}),
        log: log.child({ component: "whep" }),
      });
    if (cluster) {
      const c = cluster;
      // Viewers of a camera another node pulls are answered through that node.
      app.use(
        "/whep",
        forwardingRouter({
          nodeId: c.nodeId,
          leases: c.leases,
          nodes: c.nodes,
          key: c.forwardKey,
          cameraExists: (id) => registry.has(id),
          authorize: (req, id) => auth.authorizeCamera(req.user!, id, "live"),
          timeoutMs: config.cluster!.forwardTimeoutMs,
          leaseSeconds: Math.ceil(config.cluster!.leaseMs / 1000),
          log: log.child({ component: "cluster" }),
        }),
      );
    }
    app.use("/whep", whep);
    whepLate = whep;
    app.use(
      "/grid",
      gridRouter({
        sfu,
        limits: config.media.grid,
        cameraExists: (id) => registry.has(id),
        streamSource: (id, stream) => registry.streamSource(id, stream),
        authorize: (req, id) => auth.authorizeCamera(req.user!, id, "live"),
        userOf: (req) => req.user?.sub,
        sessionOf: (req) => (req.user ? (req.user.sessionId ?? `${req.user.via}:${req.user.sub}`) : undefined),
        admission,
        // The whole session ends with the caller's sign-in session (as live viewers do), its relays with it.
        onSession: (req, session) => {
          const user = req.user!;
          const sub = user.sub;
          const stop = auth.watch(user, (reason) => {
            void session.close(`auth: ${reason}`);
            if (user.sessionId === undefined) turn?.closeSubject(sub);
          });
          const relayed = turn && typeof req.body === "string" ? relayedAddressesIn(req.body) : [];
          session.once("closed", () => {
            stop();
            if (relayed.length > 0) turn?.closeClientOf(sub, relayed);
          });
        },
        // Each binding ends when the right to its camera is withdrawn; the session stays.
        onBinding: (req, _session, mid, camera, end) => {
          const stop = auth.watch(req.user!, (reason) => end(authCloseReason(reason)), { cameraId: camera, action: "live" });
          return () => stop();
        },
        ...(gridAuditHook ? { audit: gridAuditHook } : {}),
        iceServers: (req) => iceServersFor(req.user),
        log: log.child({ component: "grid" }),
      }),
    );
    app.use(errorHandler(log));
    server.on("request", app);

    // Metrics on a listener of their own: /metrics, /healthz and /readyz only. With a token
    // configured a scraper must send it; without one the listener is loopback-only (config/sections/metrics.ts).
    if (config.metrics.listen) {
      const mapp = express();
      mapp.disable("x-powered-by");
      mapp.get("/healthz", healthzHandler);
      mapp.get("/readyz", readyzHandler(() => checks));
      mapp.get(
        "/metrics",
        serveMetrics((req) => {
          if (scrapeToken && !hasScrapeToken(req, scrapeToken)) throw new AuthError("UNAUTHORIZED", "the metrics token is required");
        }),
      );
      mapp.use((_req, res) => void res.status(404).json({ error: "not_found" }));
      const mserver = http.createServer(mapp);
      await new Promise<void>((resolve, reject) => {
        mserver.once("error", reject);
        mserver.listen(config.metrics.listen!.port, config.metrics.listen!.host, () => resolve());
      });
      cleanups.push(() => new Promise<void>((resolve) => { mserver.closeAllConnections(); mserver.close(() => resolve()); }));
      const a = mserver.address() as { address: string; port: number };
      metricsUrl = `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}`;
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
      recordings,
      close,
      [Symbol.asyncDispose]: () => close("disposed"),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
