/**
 * coturn's real TURN client (`turnutils_uclient`) against our TURN server, with
 * `turnutils_peer` as the echo peer on loopback, using time-limited credentials
 * (`-W secret`): over UDP, over TCP and over TLS on the front door's shared port,
 * while HTTPS keeps answering on that same port. Loopback is a special-purpose range,
 * so the server only relays to it because this test allow-lists 127.0.0.1.
 */
import http from "node:http";
import https from "node:https";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startFrontDoor, type FrontDoor } from "../../gateway/frontdoor/index.ts";
import { startTurnServer, type TurnServer } from "../../turn/index.ts";
import { runUclient, startTurnutilsPeer, type TurnutilsPeer, type UclientResult } from "../peers/coturn.ts";

const SECRET = "uclient-test-secret-0123456789";

let turn: TurnServer;
let peer: TurnutilsPeer;
let door: FrontDoor;
let httpServer: http.Server;
let httpsHits = 0;

function turnConfig(extra: Record<string, unknown> = {}) {
  return parseConfig({
    turn: {
      enabled: true,
      secret: SECRET,
      realm: "gatehouse.test",
      udp: [{ host: "127.0.0.1", port: 0 }],
      relay: { address: "127.0.0.1", portRange: [0, 0] },
      peers: { allow: ["127.0.0.1"] },
      ...extra,
    },
  }).turn;
}

beforeAll(async () => {
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  peer = await startTurnutilsPeer();
  turn = await startTurnServer({ config: turnConfig(), log: silentLogger });
  httpServer = http.createServer((_req, res) => {
    httpsHits++;
    res.end("hello over the shared port");
  });
  door = await startFrontDoor({
    host: "127.0.0.1",
    port: 0,
    tls: { cert: pems.cert, key: pems.private },
    http: httpServer,
    turn,
    log: silentLogger,
  });
});

afterAll(async () => {
  await door?.close();
  httpServer?.close();
  await turn?.close();
  await peer?.close();
});

function expectLossless(r: UclientResult, messages: number): void {
  expect(r.exitCode, r.tail).toBe(0);
  expect(r.sentMessages, r.tail).toBe(messages);
  expect(r.receivedMessages, r.tail).toBe(messages);
  expect(r.lostPackets, r.tail).toBe(0);
  expect(r.lossPercent, r.tail).toBe(0);
}

function httpsGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: "127.0.0.1", port, path: "/", rejectUnauthorized: false, agent: false }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

describe("turnutils_uclient against our TURN server", () => {
  it("relays over UDP with 0 % loss (ChannelData)", async () => {
    const before = turn.metrics.packetsToPeer;
    const r = await runUclient({ transport: "udp", port: turn.udp[0]!.port, secret: SECRET, peerPort: peer.port, clients: 2, messages: 200, intervalMs: 2 });
    expectLossless(r, 400);
    expect(turn.metrics.packetsToPeer - before).toBeGreaterThanOrEqual(400);
    expect(turn.metrics.packetsToClient).toBeGreaterThanOrEqual(400);
  });

  it("relays over UDP with Send/Data indications", async () => {
    const r = await runUclient({ transport: "udp", port: turn.udp[0]!.port, secret: SECRET, peerPort: peer.port, messages: 100, intervalMs: 2, sendIndications: true });
    expectLossless(r, 100);
  });

  it("relays over TCP on the shared HTTPS port while HTTPS keeps answering", async () => {
    const run = runUclient({ transport: "tcp", port: door.port, secret: SECRET, peerPort: peer.port, clients: 2, messages: 200, intervalMs: 5 });
    const bodies = await Promise.all([httpsGet(door.port), httpsGet(door.port)]);
    const r = await run;
    expectLossless(r, 400);
    expect(bodies).toEqual(["hello over the shared port", "hello over the shared port"]);
    expect(door.stats.turnTcp).toBeGreaterThanOrEqual(2);
  });

  it("relays over TLS on the shared HTTPS port", async () => {
    const hitsBefore = httpsHits;
    const run = runUclient({ transport: "tls", port: door.port, secret: SECRET, peerPort: peer.port, clients: 2, messages: 200, intervalMs: 5 });
    expect(await httpsGet(door.port)).toBe("hello over the shared port");
    const r = await run;
    expectLossless(r, 400);
    expect(door.stats.turnTls).toBeGreaterThanOrEqual(2);
    expect(httpsHits).toBe(hitsBefore + 1);
  });

  it("ends TCP/TLS allocations with their connections; only uclient's unreleased UDP probes remain", async () => {
    // uclient releases its data allocations with Refresh(lifetime 0) and closes its TCP/TLS
    // connections, but leaves the first "probe" allocation of each client to expire.
    const settled = (): boolean => turn.connections === 0 && turn.core.listAllocations().every((a) => a.transport === "udp");
    const deadline = Date.now() + 5000;
    while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(turn.connections).toBe(0);
    const left = turn.core.listAllocations();
    expect(left.map((a) => a.transport)).toEqual(left.map(() => "udp"));
    expect(turn.relaySockets).toBe(left.length);
    expect(turn.metrics.allocationsDeleted).toBeGreaterThanOrEqual(8);
  });
});

describe("the relay refuses loopback peers unless allow-listed", () => {
  it("uclient fails against a server without the allow-list entry", async () => {
    await using closed = await startTurnServer({ config: turnConfig({ peers: { allow: [] } }), log: silentLogger });
    const r = await runUclient({ transport: "udp", port: closed.udp[0]!.port, secret: SECRET, peerPort: peer.port, messages: 5, timeoutMs: 15_000 });
    expect(r.exitCode, r.tail).not.toBe(0);
    expect(r.receivedMessages || 0).toBe(0);
    expect(closed.metrics.peerDenials).toBeGreaterThan(0);
  });

  it("uclient fails with the wrong secret", async () => {
    const failuresBefore = turn.metrics.authFailures;
    const r = await runUclient({ transport: "udp", port: turn.udp[0]!.port, secret: "not-the-secret-at-all", peerPort: peer.port, messages: 5, timeoutMs: 4000 });
    expect(r.exitCode, r.tail).not.toBe(0);
    expect(r.receivedMessages || 0).toBe(0);
    expect(turn.metrics.authFailures).toBeGreaterThan(failuresBefore);
  });
});
