/**
 * The connection map of a deployment: every port it needs, computed from the configuration,
 * as a firewall table (source, destination, port or range, transport, purpose, direction).
 * Pure: no sockets, no name lookups (camera and provider host names are printed as written).
 * Used by `npm run ports -- --config FILE` (gateway/ports-cli.ts) and the administrators'
 * page (GET /api/admin/ports, web/ports.html), which passes the ports actually bound.
 */
import type { Config } from "../config/schema.ts";
import { serverOf } from "./audit/postgres.ts";

/** Which way the first packet goes, seen from the gateway. */
export type PortDirection = "inbound" | "outbound" | "both" | "local";

export interface PortRow {
  /** Who opens the connection or sends first. */
  readonly source: string;
  /** Where it goes (host as configured; never resolved). */
  readonly destination: string;
  /** One port or a range `first–last`. */
  readonly ports: string;
  readonly transport: "TCP" | "UDP" | "TCP (TLS)";
  readonly purpose: string;
  readonly direction: PortDirection;
  /** The configuration key the row comes from. */
  readonly key: string;
}

/** Ports bound at run time where the configuration said 0 or a taken port was replaced. */
export interface BoundPorts {
  http?: number;
  turnUdp?: readonly number[];
  sip?: { udp?: number | undefined; tcp?: number | undefined; tls?: number | undefined };
  metrics?: number;
}

const GATEWAY = "gateway";

function at(host: string): string {
  const any = host === "0.0.0.0" || host === "::";
  return any ? `${GATEWAY} (all interfaces)` : `${GATEWAY} ${host}`;
}

function range([a, b]: readonly [number, number]): string {
  return a === b ? String(a) : `${a}–${b}`;
}

function portOf(p: number): string {
  return p === 0 ? "any free port" : String(p);
}

/** Host and port of a URL as written (credentials left out); undefined when unreadable. */
function hostPort(url: string, defaults: Record<string, number>): { host: string; port: number; scheme: string } | undefined {
  try {
    const u = new URL(url);
    const scheme = u.protocol.replace(/:$/, "").toLowerCase();
    const port = u.port ? Number(u.port) : defaults[scheme];
    if (port === undefined) return undefined;
    return { host: u.hostname.replace(/^\[|\]$/g, ""), port, scheme };
  } catch {
    return undefined;
  }
}

/** Every port the configured deployment needs, front door first. */
export function portMap(config: Readonly<Config>, bound: BoundPorts = {}): PortRow[] {
  const rows: PortRow[] = [];
  const httpPort = bound.http ?? config.server.port;
  const tls = config.server.tls !== undefined;
  const front = at(config.server.host);
  const turnOnFront = config.turn.enabled && config.turn.shareHttpsPort;

  rows.push({
    source: "browsers",
    destination: front,
    ports: portOf(httpPort),
    transport: tls ? "TCP (TLS)" : "TCP",
    purpose: `${tls ? "HTTPS" : "HTTP"}: web client, API, WHEP signalling${turnOnFront ? `; TURN over ${tls ? "TLS" : "TCP"} on the same port` : ""}`,
    direction: "inbound",
    key: "server.port",
  });

  // Sign-in.
  if (config.auth.mode === "oidc" && config.auth.issuer) {
    const idp = hostPort(config.auth.issuer, { https: 443, http: 80 });
    if (idp) {
      rows.push({
        source: GATEWAY,
        destination: `identity provider ${idp.host}`,
        ports: String(idp.port),
        transport: idp.scheme === "https" ? "TCP (TLS)" : "TCP",
        purpose: "OpenID Connect: discovery, token exchange, JWKS",
        direction: "outbound",
        key: "auth.issuer",
      });
      rows.push({
        source: `identity provider ${idp.host}`,
        destination: front,
        ports: portOf(httpPort),
        transport: tls ? "TCP (TLS)" : "TCP",
        purpose: "back-channel logout (POST /auth/backchannel-logout), when the provider sends it",
        direction: "inbound",
        key: "server.port",
      });
    }
  } else if (config.auth.mode === "dev") {
    rows.push({
      source: GATEWAY,
      destination: `${GATEWAY} 127.0.0.1`,
      ports: "any free port",
      transport: "TCP",
      purpose: "development identity provider (auth.mode dev; never in production)",
      direction: "local",
      key: "auth.mode",
    });
  }

  // TURN.
  if (config.turn.enabled) {
    config.turn.udp.forEach((l, i) => {
      rows.push({
        source: "browsers",
        destination: at(l.host),
        ports: portOf(bound.turnUdp?.[i] ?? l.port),
        transport: "UDP",
        purpose: "TURN/STUN relay for browsers that cannot reach the media ports directly",
        direction: "inbound",
        key: `turn.udp[${i}]`,
      });
    });
    config.turn.tcp.forEach((l, i) =>
      rows.push({ source: "browsers", destination: at(l.host), ports: portOf(l.port), transport: "TCP", purpose: "TURN over TCP (own listener)", direction: "inbound", key: `turn.tcp[${i}]` }),
    );
    config.turn.tls.forEach((l, i) =>
      rows.push({ source: "browsers", destination: at(l.host), ports: portOf(l.port), transport: "TCP (TLS)", purpose: "TURN over TLS (own listener)", direction: "inbound", key: `turn.tls[${i}]` }),
    );
    const relay = config.turn.relay;
    rows.push({
      source: `${GATEWAY} ${relay.address} (TURN relay sockets)`,
      destination: `${GATEWAY} media ports`,
      ports: relay.portRange[0] === 0 ? "any free port" : range(relay.portRange),
      transport: "UDP",
      purpose: "relayed media: relay sockets talk only to the gateway's own media ports, so no opening is needed between networks",
      direction: "local",
      key: "turn.relay.portRange",
    });
  }

  // WebRTC media to viewers.
  const media = config.media.announcedAddress ?? config.media.bindAddress ?? config.server.host;
  rows.push({
    source: "browsers",
    destination: at(media),
    ports: range(config.media.icePortRange),
    transport: "UDP",
    purpose: "WebRTC media to viewers (ICE, DTLS-SRTP); answers go back from the same ports",
    direction: "both",
    key: "media.icePortRange",
  });

  // Cameras and recorders: RTSP control (and interleaved RTP) out; RTP in when over UDP.
  const udpCameras: string[] = [];
  for (const cam of config.cameras) {
    const hp = hostPort(cam.url, { rtsp: 554, rtsps: 322 });
    rows.push({
      source: GATEWAY,
      destination: hp ? `camera ${cam.id} at ${hp.host}` : `camera ${cam.id}`,
      ports: hp ? String(hp.port) : "?",
      transport: hp?.scheme === "rtsps" ? "TCP (TLS)" : "TCP",
      purpose: `${hp?.scheme === "rtsps" ? "RTSPS" : "RTSP"} control${cam.transport !== "udp" ? " and RTP interleaved over TCP" : ""} (transport ${cam.transport})`,
      direction: "outbound",
      key: `cameras[${cam.id}].url`,
    });
    if (cam.transport !== "tcp") udpCameras.push(cam.transport === "auto" ? `${cam.id} (if it refuses TCP)` : cam.id);
  }
  if (udpCameras.length > 0) {
    rows.push({
      source: `recorders: ${udpCameras.join(", ")}`,
      destination: at(config.server.host),
      ports: range(config.rtsp.clientPortRange),
      transport: "UDP",
      purpose: "RTP/RTCP from recorders over UDP (two ports per stream)",
      direction: "inbound",
      key: "rtsp.clientPortRange",
    });
  }
  const demo = config.demo.enabled === true || (config.demo.enabled === "auto" && config.cameras.length === 0);
  if (demo) {
    rows.push({ source: GATEWAY, destination: `${GATEWAY} 127.0.0.1 (demo recorder)`, ports: portOf(config.demo.rtspPort), transport: "TCP", purpose: "built-in demo camera (RTSP)", direction: "local", key: "demo.rtspPort" });
  }

  // Door intercoms.
  if (config.sip.enabled) {
    const sip = at(config.sip.bindAddress);
    if (config.sip.udp.enabled)
      rows.push({ source: "door stations", destination: sip, ports: portOf(bound.sip?.udp ?? config.sip.udp.port), transport: "UDP", purpose: "SIP registrations and calls", direction: "inbound", key: "sip.udp.port" });
    if (config.sip.tcp.enabled)
      rows.push({ source: "door stations", destination: sip, ports: portOf(bound.sip?.tcp ?? config.sip.tcp.port), transport: "TCP", purpose: "SIP registrations and calls", direction: "inbound", key: "sip.tcp.port" });
    if (config.sip.tls)
      rows.push({ source: "door stations", destination: sip, ports: portOf(bound.sip?.tls ?? config.sip.tls.port), transport: "TCP (TLS)", purpose: "SIP over TLS", direction: "inbound", key: "sip.tls.port" });
    rows.push({
      source: "door stations",
      destination: at(config.sip.announcedAddress ?? config.sip.bindAddress),
      ports: range(config.sip.rtpPortRange),
      transport: "UDP",
      purpose: "call audio (RTP/RTCP), both ways",
      direction: "both",
      key: "sip.rtpPortRange",
    });
  }

  // Databases.
  if (config.audit.enabled && config.audit.backend === "postgres" && config.audit.postgres) {
    const where = serverOf(config.audit.postgres.connectionString);
    const socket = where.includes("unix socket");
    const m = /^(.*):(\d+)$/.exec(where);
    rows.push({
      source: GATEWAY,
      destination: socket ? `PostgreSQL ${where}` : `PostgreSQL ${m ? m[1] : where}`,
      ports: socket ? "unix socket" : m ? m[2]! : "5432",
      transport: "TCP",
      purpose: "audit trail",
      direction: socket ? "local" : "outbound",
      key: "audit.postgres.connectionString",
    });
  }

  if (config.cluster) {
    const r = hostPort(config.cluster.redis.url, { redis: 6379, rediss: 6379 });
    rows.push({
      source: GATEWAY,
      destination: r ? `Redis ${r.host}` : "Redis",
      ports: r ? String(r.port) : "6379",
      transport: r?.scheme === "rediss" ? "TCP (TLS)" : "TCP",
      purpose: "cluster: node listing, camera ownership, forwarding",
      direction: "outbound",
      key: "cluster.redis.url",
    });
    rows.push({
      source: "other gateways of the cluster",
      destination: front,
      ports: portOf(httpPort),
      transport: tls ? "TCP (TLS)" : "TCP",
      purpose: "cluster: live views forwarded to the node that owns the camera",
      direction: "both",
      key: "cluster.publicUrl",
    });
  }

  // Monitoring.
  if (config.metrics.listen) {
    rows.push({
      source: "monitoring server (Prometheus)",
      destination: at(config.metrics.listen.host),
      ports: portOf(bound.metrics ?? config.metrics.listen.port),
      transport: "TCP",
      purpose: "metrics scrapes (/metrics, /healthz, /readyz only)",
      direction: "inbound",
      key: "metrics.listen",
    });
  }
  return rows;
}

const COLUMNS = [
  ["source", "Source"],
  ["destination", "Destination"],
  ["ports", "Port(s)"],
  ["transport", "Transport"],
  ["purpose", "Purpose"],
  ["direction", "Direction"],
  ["key", "Config key"],
] as const;

/** The rows as an aligned text table (for a terminal) or CSV (RFC 4180). */
export function formatPortTable(rows: readonly PortRow[], format: "table" | "csv" = "table"): string {
  const cells = [COLUMNS.map(([, h]) => h as string), ...rows.map((r) => COLUMNS.map(([k]) => r[k]))];
  if (format === "csv") return cells.map((line) => line.map((c) => (/[",\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(",")).join("\r\n") + "\r\n";
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  const fmt = (line: string[]) => line.map((c, i) => (i === line.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [fmt(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(fmt)].join("\n") + "\n";
}
