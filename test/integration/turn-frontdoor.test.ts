/**
 * The front door: HTTP, HTTPS (keep-alive, large bodies, WebSocket upgrades) and TURN
 * over TCP and TLS on one port, told apart by their first bytes; slow or silent
 * connections are closed after the sniff timeout.
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startFrontDoor, type FrontDoor } from "../../gateway/frontdoor/index.ts";
import { startTurnServer, type TurnServer } from "../../turn/index.ts";
import { Attr, MessageClass, Method } from "../../turn/stun/constants.ts";
import { attrXorAddress, getAttr, parseStun } from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

let pems: { cert: string; private: string };
let turn: TurnServer;
let door: FrontDoor;
let httpServer: http.Server;
let wss: WebSocketServer;
let connections = 0;

beforeAll(async () => {
  pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  turn = await startTurnServer({
    config: parseConfig({ turn: { enabled: true, secret: "frontdoor-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { portRange: [0, 0] } } }).turn,
    log: silentLogger,
  });
  httpServer = http.createServer((req, res) => {
    let n = 0;
    req.on("data", (d: Buffer) => (n += d.length));
    req.on("end", () => res.end(JSON.stringify({ method: req.method, url: req.url, bytes: n, secure: !!(req.socket as tls.TLSSocket).encrypted })));
  });
  httpServer.on("connection", () => connections++);
  wss = new WebSocketServer({ server: httpServer });
  wss.on("connection", (ws) => ws.on("message", (m) => ws.send(`echo:${m.toString()}`)));
  door = await startFrontDoor({
    host: "127.0.0.1",
    port: 0,
    tls: { cert: pems.cert, key: pems.private },
    http: httpServer,
    turn,
    log: silentLogger,
    firstBytesTimeoutMs: 1000,
    tlsHandshakeTimeoutMs: 1000,
  });
});

afterAll(async () => {
  wss?.close();
  await door?.close();
  httpServer?.close();
  await turn?.close();
});

function request(mod: typeof http | typeof https, agent: http.Agent, path: string, body?: Buffer, port = door.port): Promise<{ method: string; url: string; bytes: number; secure: boolean }> {
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: "127.0.0.1", port, path, method: body ? "POST" : "GET", agent, rejectUnauthorized: false } as https.RequestOptions,
      (res) => {
        let b = "";
        res.on("data", (d: Buffer) => (b += d.toString()));
        res.on("end", () => resolve(JSON.parse(b)));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function closed(s: net.Socket): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error("not closed")), 5000);
    s.on("error", () => {});
    s.once("close", () => {
      clearTimeout(guard);
      resolve(Date.now() - t0);
    });
  });
}

/** One STUN Binding over a stream; resolves with the XOR-MAPPED-ADDRESS port. */
function bindingOver(s: net.Socket | tls.TLSSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 20 || buf.length < 20 + buf.readUInt16BE(2)) return;
      const r = parseStun(buf.subarray(0, 20 + buf.readUInt16BE(2)));
      if (!r.ok) return reject(new Error(r.reason));
      resolve(attrXorAddress(r.msg, getAttr(r.msg, Attr.XorMappedAddress)!)!.port);
      s.destroy();
    });
    s.on("error", reject);
    s.write(new StunWriter(Method.Binding, MessageClass.Request).fingerprint().finish());
  });
}

describe("front door on one port", () => {
  it("serves plain HTTP with keep-alive on a port without TLS: several requests, one connection", async () => {
    await using plainDoor = await startFrontDoor({ host: "127.0.0.1", port: 0, http: httpServer, turn, log: silentLogger });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = connections;
    const a = await request(http, agent, "/a", undefined, plainDoor.port);
    const b = await request(http, agent, "/b", Buffer.alloc(2_000_000, 7), plainDoor.port);
    const c = await request(http, agent, "/c", undefined, plainDoor.port);
    agent.destroy();
    expect([a.url, b.url, c.url]).toEqual(["/a", "/b", "/c"]);
    expect(b.bytes).toBe(2_000_000);
    expect(a.secure).toBe(false);
    expect(connections - before).toBe(1);
  });

  it("serves HTTPS with keep-alive and large bodies through the decrypted stream", async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    const before = connections;
    const a = await request(https, agent, "/x", Buffer.alloc(3_000_000, 1));
    const b = await request(https, agent, "/y");
    agent.destroy();
    expect(a).toEqual({ method: "POST", url: "/x", bytes: 3_000_000, secure: true });
    expect(b.url).toBe("/y");
    expect(connections - before).toBe(1);
  });

  it("upgrades WebSockets over TLS", async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${door.port}/events`, { rejectUnauthorized: false });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once("open", () => ws.send("ping"));
      ws.once("message", (m) => resolve(m.toString()));
      ws.once("error", reject);
    });
    ws.close();
    expect(reply).toBe("echo:ping");
  });

  it("hands STUN over plain TCP and over TLS to the TURN server", async () => {
    const plain = net.connect(door.port, "127.0.0.1");
    await new Promise((r) => plain.once("connect", r));
    const plainPort = plain.localPort;
    expect(await bindingOver(plain)).toBe(plainPort);
    const secure = tls.connect({ host: "127.0.0.1", port: door.port, rejectUnauthorized: false });
    await new Promise((r) => secure.once("secureConnect", r));
    const localPort = secure.localPort;
    expect(await bindingOver(secure)).toBe(localPort);
    expect(door.stats.turnTcp).toBeGreaterThanOrEqual(1);
    expect(door.stats.turnTls).toBeGreaterThanOrEqual(1);
  });

  it("closes silent connections, stalled ClientHellos and stalled TLS streams after the sniff timeout", async () => {
    const before = door.stats.timedOut;
    const silent = net.connect(door.port, "127.0.0.1");
    const half = net.connect(door.port, "127.0.0.1");
    half.once("connect", () => half.write(Buffer.from([0x16]))); // a lone TLS byte
    const stunStart = net.connect(door.port, "127.0.0.1");
    stunStart.once("connect", () => stunStart.write(Buffer.from([0x00, 0x01, 0x00]))); // undecided
    const quietTls = tls.connect({ host: "127.0.0.1", port: door.port, rejectUnauthorized: false }); // handshakes, then says nothing
    const times = await Promise.all([closed(silent), closed(half), closed(stunStart), closed(quietTls)]);
    for (const t of times) {
      expect(t).toBeGreaterThanOrEqual(900);
      expect(t).toBeLessThan(4000);
    }
    expect(door.stats.timedOut - before).toBe(4);
  });

  it("refuses plain connections when allowPlain is false, and close() ends everything", async () => {
    const strict = await startFrontDoor({
      host: "127.0.0.1",
      port: 0,
      tls: { cert: pems.cert, key: pems.private },
      allowPlain: false,
      http: httpServer,
      log: silentLogger,
    });
    const plain = net.connect(strict.port, "127.0.0.1");
    plain.once("connect", () => plain.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await closed(plain);
    expect(strict.stats.plainRefused).toBe(1);
    const agent = new https.Agent({ keepAlive: true, rejectUnauthorized: false });
    const r = await new Promise<number>((resolve, reject) =>
      https.get({ host: "127.0.0.1", port: strict.port, path: "/", agent }, (res) => resolve(res.statusCode!)).on("error", reject),
    );
    expect(r).toBe(200);
    expect(strict.connections).toBe(1); // kept alive
    await strict.close();
    expect(strict.connections).toBe(0);
    agent.destroy();
  });
});
