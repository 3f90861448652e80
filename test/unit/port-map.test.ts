/**
 * The firewall table (gateway/port-map.ts) for config/example.yaml and variants, and the
 * `npm run ports` command on the example file (secrets unset).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseConfig } from "../../config/load.ts";
import { formatPortTable, portMap, type PortRow } from "../../gateway/port-map.ts";

const SECRETS = { LOBBY_RTSP_PASSWORD: "x".repeat(12), TURN_SECRET: "s".repeat(32), LOBBY_DOOR_SIP_PASSWORD: "d".repeat(12), OIDC_CLIENT_SECRET: "c".repeat(20) };
const example = () => parse(readFileSync("config/example.yaml", "utf8")) as Record<string, Record<string, unknown>>;

function row(rows: PortRow[], key: string): PortRow {
  const r = rows.find((x) => x.key === key);
  if (!r) throw new Error(`no row for ${key}: ${rows.map((x) => x.key).join(", ")}`);
  return r;
}

describe("port map of config/example.yaml", () => {
  const rows = portMap(parseConfig(example(), SECRETS));

  it("lists the front door with TURN over TCP sharing it, and the provider both ways", () => {
    expect(row(rows, "server.port")).toMatchObject({ source: "browsers", destination: "gateway (all interfaces)", ports: "8443", transport: "TCP", direction: "inbound" });
    expect(row(rows, "server.port").purpose).toMatch(/TURN over TCP on the same port/);
    expect(row(rows, "auth.issuer")).toMatchObject({ destination: "identity provider idp.example.com", ports: "443", transport: "TCP (TLS)", direction: "outbound" });
    expect(rows.filter((r) => r.source === "identity provider idp.example.com")).toHaveLength(1);
  });

  it("lists TURN UDP, the relay range (local), the media range and the SIP ports and audio", () => {
    expect(row(rows, "turn.udp[0]")).toMatchObject({ ports: "14049", transport: "UDP", direction: "inbound" });
    expect(row(rows, "turn.relay.portRange")).toMatchObject({ ports: "49152–49999", transport: "UDP", direction: "local" });
    expect(row(rows, "media.icePortRange")).toMatchObject({ ports: "40000–40999", transport: "UDP", direction: "both" });
    expect(row(rows, "sip.udp.port")).toMatchObject({ source: "door stations", ports: "5060", transport: "UDP", direction: "inbound" });
    expect(row(rows, "sip.tcp.port")).toMatchObject({ ports: "5060", transport: "TCP" });
    expect(row(rows, "sip.rtpPortRange")).toMatchObject({ destination: "gateway 192.0.2.10", ports: "10000–10999", direction: "both" });
  });

  it("lists each camera outbound at its own host and port, never with its credentials, and RTP over UDP inbound", () => {
    expect(row(rows, "cameras[lobby].url")).toMatchObject({ destination: "camera lobby at 192.0.2.20", ports: "554", transport: "TCP", direction: "outbound" });
    expect(row(rows, "cameras[loading-dock].url")).toMatchObject({ destination: "camera loading-dock at nvr.example.internal", ports: "322", transport: "TCP (TLS)" });
    expect(row(rows, "rtsp.clientPortRange")).toMatchObject({ ports: "3556–4556", transport: "UDP", direction: "inbound" });
    expect(row(rows, "rtsp.clientPortRange").source).toContain("loading-dock");
    expect(row(rows, "rtsp.clientPortRange").source).not.toContain("lobby"); // transport tcp
    expect(JSON.stringify(rows)).not.toMatch(/xxxxxxxx|ssssssss|viewer@/);
    expect(rows.some((r) => r.key.startsWith("audit") || r.key.startsWith("metrics"))).toBe(false);
  });

  it("adds PostgreSQL and the metrics listener when configured; TURN and SIP go when disabled", () => {
    const cfg = example();
    cfg.audit = { backend: "postgres", postgres: { connectionString: "postgres://gh:pw@db.internal:6432/audit" } };
    cfg.metrics = { token: "t".repeat(24), listen: { host: "10.0.0.5", port: 9464 } };
    cfg.cluster = { redis: { url: "redis://:secretpw@redis.internal:6380/2" } };
    cfg.turn!.enabled = false;
    cfg.sip!.enabled = false;
    const r2 = portMap(parseConfig(cfg, SECRETS));
    expect(row(r2, "audit.postgres.connectionString")).toMatchObject({ destination: "PostgreSQL db.internal", ports: "6432", transport: "TCP", direction: "outbound" });
    expect(JSON.stringify(r2)).not.toContain("pw@");
    expect(row(r2, "cluster.redis.url")).toMatchObject({ destination: "Redis redis.internal", ports: "6380", direction: "outbound" });
    expect(JSON.stringify(r2)).not.toContain("secretpw");
    expect(row(r2, "metrics.listen")).toMatchObject({ destination: "gateway 10.0.0.5", ports: "9464", direction: "inbound" });
    expect(r2.some((r) => r.key.startsWith("turn.") || r.key.startsWith("sip."))).toBe(false);
    expect(row(r2, "server.port").purpose).not.toMatch(/TURN/);
  });

  it("uses the ports actually bound when given (port 0 in the file)", () => {
    const r3 = portMap(parseConfig({ server: { port: 0 }, turn: { enabled: true, secret: "s".repeat(32), udp: [{ host: "127.0.0.1", port: 0 }] } }), { http: 41234, turnUdp: [41235] });
    expect(row(r3, "server.port").ports).toBe("41234");
    expect(row(r3, "turn.udp[0]").ports).toBe("41235");
    expect(row(r3, "demo.rtspPort").direction).toBe("local");
  });

  it("formats an aligned table and RFC 4180 CSV", () => {
    const table = formatPortTable(rows).split("\n");
    expect(table[0]).toMatch(/^Source\s+Destination\s+Port\(s\)\s+Transport\s+Purpose\s+Direction\s+Config key$/);
    expect(table[2]!.indexOf("8443")).toBe(table[0]!.indexOf("Port(s)"));
    const csv = formatPortTable(rows, "csv").split("\r\n");
    expect(csv[0]).toBe("Source,Destination,Port(s),Transport,Purpose,Direction,Config key");
    expect(csv).toContain('browsers,gateway (all interfaces),8443,TCP,"HTTP: web client, API, WHEP signalling; TURN over TCP on the same port",inbound,server.port');
  });
});

describe("npm run ports", () => {
  it("prints the table for the example file without its secrets set", () => {
    const env = { ...process.env };
    for (const k of Object.keys(SECRETS)) delete env[k];
    const out = execFileSync(process.execPath, ["gateway/ports-cli.ts", "--config", "config/example.yaml"], { encoding: "utf8", env });
    const lines = out.split("\n");
    expect(lines[0]).toMatch(/^Source\s+Destination/);
    expect(lines.find((l) => l.includes("turn.udp[0]"))).toMatch(/browsers\s+gateway \(all interfaces\)\s+14049\s+UDP/);
    expect(lines.find((l) => l.includes("cameras[lobby].url"))).toMatch(/gateway\s+camera lobby at 192\.0\.2\.20\s+554\s+TCP/);
    expect(out).toMatch(/not set here, not needed for the table: .*TURN_SECRET/);
    const json = JSON.parse(execFileSync(process.execPath, ["gateway/ports-cli.ts", "--config", "config/example.yaml", "--format", "json"], { encoding: "utf8", env })) as PortRow[];
    expect(json.map((r) => r.key)).toContain("sip.rtpPortRange");
  });

  it("refuses a bad configuration with status 2", () => {
    let status = 0;
    try {
      execFileSync(process.execPath, ["gateway/ports-cli.ts", "--config", "/nonexistent/gatehouse.yaml"], { encoding: "utf8", stdio: "pipe" });
    } catch (err) {
      status = (err as { status: number }).status;
    }
    expect(status).toBe(2);
  });
});
