/**
 * The relay's hardening over real sockets, each test named after the finding it pins:
 * Refresh with lifetime 0 answered over TCP and TLS before the connection ends; credentials
 * bound to their sign-in session and refused once it ends or they expire; and no SIP (nor
 * TURN) through the relay, even when an explicit allow-list lets the relay reach the
 * gateway's address.
 */
import dgram from "node:dgram";
import { generate } from "selfsigned";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import { startTurnServer, type TurnServer } from "../../turn/index.ts";
import { MessageClass } from "../../turn/stun/constants.ts";
import { codeOf, reasonOf, relayedOf, TurnTestClient } from "../peers/turn-client.ts";

const SECRET = "hardening-test-secret-0123456789";
let pems: { cert: string; private: string };
let skew = 0;
const clock = (): number => Date.now() + skew;
const clients: TurnTestClient[] = [];
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
}, 30_000);

afterEach(async () => {
  skew = 0;
  for (const c of clients.splice(0)) c.close();
  for (const c of closers.splice(0).reverse()) await c();
});


async function turnServer(extra: Record<string, unknown> = {}, opts: { allowedPeers?: string[]; allowedPeerPorts?: [number, number] } = {}): Promise<TurnServer> {
  const t = await startTurnServer({
    config: parseConfig({
      turn: {
        enabled: true,
        secret: SECRET,
        udp: [{ host: "127.0.0.1", port: 0 }],
        tcp: [{ host: "127.0.0.1", port: 0 }],
        tls: [{ host: "127.0.0.1", port: 0 }],
        relay: { address: "127.0.0.1", portRange: [0, 0] },
        ...extra,
      },
    }).turn,
    log: silentLogger,
    clock,
    sweepMs: 50,
    tls: { cert: pems.cert, key: pems.private },
    ...(opts.allowedPeers ? { allowedPeers: opts.allowedPeers } : {}),
    ...(opts.allowedPeerPorts ? { allowedPeerPorts: opts.allowedPeerPorts } : {}),
  });
  closers.push(() => t.close());
  return t;
}

async function client(turn: TurnServer, transport: "udp" | "tcp" | "tls", creds: { username: string; password: string }): Promise<TurnTestClient> {
  const port = transport === "udp" ? turn.udp[0]!.port : transport === "tcp" ? turn.tcp[0]!.port : turn.tls[0]!.port;
  const c = await TurnTestClient.connect({ transport, host: "127.0.0.1", port, ...creds });
  clients.push(c);
  return c;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

describe("Refresh with lifetime 0 over TCP or TLS gets no answer", () => {
  for (const transport of ["tcp", "tls"] as const) {
    it(`over ${transport.toUpperCase()}: the success response arrives, then the connection ends and the relay is gone`, async () => {
      const turn = await turnServer();
      const c = await client(turn, transport, turn.mintCredentials("dora"));
      expect((await c.allocate()).cls).toBe(MessageClass.Success);
      expect(turn.core.allocationCount).toBe(1);
      const bye = await c.refresh(0);
      expect(bye.cls).toBe(MessageClass.Success);
      await within(c.closed, 3000, "the server ends the connection");
      expect(turn.core.allocationCount).toBe(0);
      expect(turn.relaySockets).toBe(0);
    });
  }
});

describe("relay access outlives the session", () => {
  it("ending the session closes its allocations on every transport and refuses its credentials, for a new Allocate too", async () => {
    const turn = await turnServer({}, { allowedPeers: ["127.0.0.1"] });
    const ref = "Sess1onRefAbCdEf";
    const creds = turn.mintCredentials("alice", 3600, ref);
    const other = turn.mintCredentials("alice", 3600, "Sess2onRefAbCdEf"); // the same user, signed in elsewhere
    const udp = await client(turn, "udp", creds);
    const tcp = await client(turn, "tcp", creds);
    const elsewhere = await client(turn, "udp", other);
    for (const c of [udp, tcp, elsewhere]) expect((await c.allocate()).cls).toBe(MessageClass.Success);
    expect((await udp.createPermission("127.0.0.1")).cls).toBe(MessageClass.Success);

    turn.closeSession(ref);
    await within(tcp.closed, 3000, "the TCP allocation's connection ends");
    expect(turn.core.listAllocations().map((a) => a.session)).toEqual(["Sess2onRefAbCdEf"]);
    for (const m of [await udp.refresh(), await udp.createPermission("127.0.0.1"), await udp.channelBind(0x4000, "127.0.0.1", 9)]) {
      expect(codeOf(m)).toBe(401);
      expect(reasonOf(m)).toBe("Session Ended");
    }
    const again = await client(turn, "udp", creds);
    const m = await again.allocate();
    expect([codeOf(m), reasonOf(m)]).toEqual([401, "Session Ended"]);
    expect(turn.core.allocationCount).toBe(1);
    expect((await elsewhere.refresh()).cls).toBe(MessageClass.Success);
  });

  it("expired credentials cannot Refresh, CreatePermission or ChannelBind (an allocation is not extended forever)", async () => {
    const turn = await turnServer();
    const c = await client(turn, "udp", turn.mintCredentials("bob", 60));
    expect((await c.allocate()).cls).toBe(MessageClass.Success);
    expect((await c.refresh()).cls).toBe(MessageClass.Success);
    skew = 120_000; // the credentials expired a minute ago
    for (const m of [await c.refresh(), await c.createPermission("127.0.0.1"), await c.channelBind(0x4000, "127.0.0.1", 9)]) {
      expect([codeOf(m), reasonOf(m)]).toEqual([401, "Credentials Expired"]);
    }
    // The client may still give the allocation back.
    expect((await c.refresh(0)).cls).toBe(MessageClass.Success);
    expect(turn.core.allocationCount).toBe(0);
  });
});

describe("the relay reaches every UDP port of the gateway's media address", () => {
  it("a SIP message arriving from a relay socket is refused, even from an allow-listed door address; TURN refuses its own relays too", async () => {
    // The worst case of the finding: an explicit allow-list lets the relay reach 127.0.0.1,
    // and a door is allow-listed at 127.0.0.1 (it may call without registering).
    const turn = await turnServer({ peers: { allow: ["127.0.0.1"] } });
    const base = 20000 + 2 * Math.floor(Math.random() * 9000);
    const sip: SipServer = await startSipServer({
      config: parseConfig({
        sip: {
          enabled: true,
          udp: { port: 0 },
          tcp: { enabled: false },
          keepAliveSeconds: 0,
          rtpPortRange: [base, base + 9],
          devices: [{ id: "lobby", username: "lobby", allow: ["127.0.0.1"] }],
        },
      }).sip,
      log: silentLogger,
      refuseSource: (a, p) => turn.isRelaySource(a, p),
    });
    closers.push(() => sip.close());
    let rings = 0;
    sip.intercom.events.on("ring", () => rings++);
    const sipPort = sip.ports.udp!;
    const options = (branch: string): Buffer =>
      Buffer.from(
        `OPTIONS sip:gate@127.0.0.1:${sipPort} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK${branch};rport\r\nMax-Forwards: 70\r\n` +
          `From: <sip:lobby@gatehouse>;tag=f${branch}\r\nTo: <sip:gate@gatehouse>\r\nCall-ID: ${branch}@relay\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`,
        "latin1",
      );

    // Control: the same request from a plain socket on 127.0.0.1 is answered.
    const direct = dgram.createSocket("udp4");
    closers.push(() => new Promise<void>((r) => direct.close(() => r())));
    await new Promise<void>((r) => direct.bind(0, "127.0.0.1", () => r()));
    const answered = new Promise<string>((resolve) => direct.once("message", (m) => resolve(m.toString("latin1").split("\r\n")[0]!)));
    direct.send(options("direct1"), sipPort, "127.0.0.1");
    expect(await within(answered, 3000, "an answer to the direct OPTIONS")).toMatch(/^SIP\/2\.0 200/);
    const before = sip.stats().requests.OPTIONS ?? 0;

    // Through the relay: a Send indication and a ChannelData message to the SIP port.
    const c = await client(turn, "udp", turn.mintCredentials("mallory"));
    const alloc = await c.allocate();
    expect(alloc.cls).toBe(MessageClass.Success);
    const relay = relayedOf(alloc);
    expect((await c.createPermission("127.0.0.1")).cls).toBe(MessageClass.Success);
    c.send("127.0.0.1", sipPort, options("relayed1"));
    expect((await c.channelBind(0x4001, "127.0.0.1", sipPort)).cls).toBe(MessageClass.Success);
    c.channelData(0x4001, options("relayed2"));
    // The TURN listener itself: relaying to our own UDP port.
    expect((await c.channelBind(0x4002, "127.0.0.1", turn.udp[0]!.port)).cls).toBe(MessageClass.Success);
    c.channelData(0x4002, Buffer.from("0001000c2112a442000000000000000000000000", "hex"));

    const t0 = Date.now();
    while ((sip.stats().transport.refusedSources < 2 || turn.metrics.fromRelayRefused < 1) && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    expect(turn.isRelaySource("127.0.0.1", relay.port)).toBe(true);
    expect(sip.stats().transport.refusedSources).toBe(2);
    expect(turn.metrics.fromRelayRefused).toBe(1);
    expect(sip.stats().requests.OPTIONS ?? 0).toBe(before);
    expect(rings).toBe(0);
    expect(c.received.length).toBe(0); // no SIP answer came back through the relay
  });
});
