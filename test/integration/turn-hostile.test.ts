/**
 * Hostile clients against the real server and its sockets: floods of unauthenticated
 * Allocates, garbage and truncated datagrams, oversized TCP frames, stalled TCP
 * connections, and relay requests into every denied range. The server answers or drops,
 * keeps serving honest clients, and its tables, timers and connections stay bounded.
 */
import dgram from "node:dgram";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startTurnServer, type TurnServer } from "../../turn/index.ts";
import { Attr, MessageClass, Method } from "../../turn/stun/constants.ts";
import { longTermKey } from "../../turn/stun/integrity.ts";
import { attrErrorCode, attrString, getAttr, parseStun, type StunMessage } from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

const SECRET = "hostile-test-secret-0123456789";
let turn: TurnServer;

beforeAll(async () => {
  turn = await startTurnServer({
    config: parseConfig({
      turn: {
        enabled: true,
        secret: SECRET,
        udp: [{ host: "127.0.0.1", port: 0 }],
        tcp: [{ host: "127.0.0.1", port: 0 }],
        relay: { address: "127.0.0.1", portRange: [0, 0] },
        handshakeTimeoutSeconds: 1,
      },
    }).turn,
    log: silentLogger,
  });
});

afterAll(async () => {
  await turn?.close();
});

/** A TURN client over a real UDP socket: request/response by transaction id. */
async function udpClient(): Promise<{
  request(method: number, add?: (w: StunWriter) => void): Promise<StunMessage>;
  raw(b: Buffer): void;
  close(): void;
}> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const waiting = new Map<string, (m: StunMessage) => void>();
  s.on("message", (b) => {
    const r = parseStun(b);
    if (r.ok) waiting.get(r.msg.transactionId.toString("hex"))?.(r.msg);
  });
  const creds = turn.mintCredentials("hostile");
  let nonce = "";
  const key = longTermKey(creds.username, "gatehouse", creds.password);
  const once = (method: number, add?: (w: StunWriter) => void): Promise<StunMessage> => {
    const w = new StunWriter(method, MessageClass.Request);
    add?.(w);
    if (nonce) w.string(Attr.Username, creds.username).string(Attr.Realm, "gatehouse").string(Attr.Nonce, nonce).integrity(key);
    const b = w.fingerprint().finish();
    const tid = b.subarray(8, 20).toString("hex");
    return new Promise((resolve, reject) => {
      // Retransmit like a real client (RFC 8489 §6.2.1): a flood may overflow the server's socket buffer.
      let tries = 0;
      const send = (): void => {
        if (tries++ === 7) {
          waiting.delete(tid);
          reject(new Error("no answer"));
          return;
        }
        s.send(b, turn.udp[0]!.port, "127.0.0.1");
        t = setTimeout(send, 250);
      };
      let t: NodeJS.Timeout;
      waiting.set(tid, (m) => {
        clearTimeout(t);
        waiting.delete(tid);
        resolve(m);
      });
      send();
    });
  };
  return {
    async request(method, add) {
      let m = await once(method, add);
      const code = getAttr(m, Attr.ErrorCode) ? attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)!.code : 0;
      if (code === 401 || code === 438) {
        nonce = attrString(m, getAttr(m, Attr.Nonce)!);
        m = await once(method, add);
      }
      return m;
    },
    raw: (b) => s.send(b, turn.udp[0]!.port, "127.0.0.1"),
    close: () => s.close(),
  };
}

const code = (m: StunMessage): number => (getAttr(m, Attr.ErrorCode) ? attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)!.code : 0);

describe("hostile input against the real server", () => {
  it("refuses relays into every denied range with 403 (0.0.0.0, [::], [::1], ::ffff:127.0.0.1, metadata…)", async () => {
    const c = await udpClient();
    const alloc = await c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24));
    expect(alloc.cls).toBe(MessageClass.Success);
    for (const ip of ["0.0.0.0", "127.0.0.1", "10.0.0.1", "172.16.5.5", "192.168.0.1", "169.254.169.254", "100.64.1.1", "224.0.0.251", "255.255.255.255", "::", "::1", "::ffff:127.0.0.1", "fe80::1", "fd00::1"]) {
      const cp = await c.request(Method.CreatePermission, (w) => w.xorAddress(Attr.XorPeerAddress, ip, 5000));
      expect(code(cp), ip).toBe(403);
      const cb = await c.request(Method.ChannelBind, (w) => w.u32(Attr.ChannelNumber, 0x4000 << 16).xorAddress(Attr.XorPeerAddress, ip, 5000));
      expect(code(cb), ip).toBe(403);
    }
    await c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0));
    c.close();
  });

  it("survives a flood of unauthenticated Allocates and garbage datagrams; no state, timers or sockets accumulate", async () => {
    const resourcesBefore = process.getActiveResourcesInfo().length;
    // Answers come back in bursts (the server writes a batch per read): room for all of them.
    const s = dgram.createSocket({ type: "udp4", recvBufferSize: 8 << 20 });
    await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
    let answers = 0;
    let enough: () => void = () => {};
    const thousand = new Promise<void>((r) => (enough = r));
    s.on("message", () => {
      if (++answers === 1001) enough();
    });
    const allocate = new StunWriter(Method.Allocate, MessageClass.Request).u32(Attr.RequestedTransport, 17 << 24).finish();
    const junk = [Buffer.alloc(0), Buffer.from([0]), allocate.subarray(0, 19), allocate.subarray(0, 30), Buffer.alloc(60_000, 0x00), Buffer.from([0x40, 0, 0xff, 0xff]), Buffer.alloc(1500, 0xff)];
    const port = turn.udp[0]!.port;
    const malformedBefore = turn.metrics.malformed;
    for (let i = 0; i < 5000; i++) {
      s.send(allocate, port, "127.0.0.1");
      if (i % 10 === 0) s.send(junk[(i / 10) % junk.length]!, port, "127.0.0.1");
      if (i % 500 === 0) await new Promise((r) => setImmediate(r)); // let the server keep up
    }
    // Honest clients are still served during and after the flood.
    const c = await udpClient();
    expect((await c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24))).cls).toBe(MessageClass.Success);
    await c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0));
    c.close();
    await thousand; // the test's own socket may still be reading the last burst
    expect(answers).toBeGreaterThan(1000);
    expect(turn.metrics.malformed).toBeGreaterThan(malformedBefore);
    const sizes = turn.core.tableSizes();
    expect(sizes.allocations + sizes.pending + sizes.reservations).toBe(0);
    expect(turn.relaySockets).toBe(0);
    s.close();
    await new Promise((r) => setImmediate(r));
    expect(process.getActiveResourcesInfo().length).toBeLessThanOrEqual(resourcesBefore + 1);
  });

  it("closes TCP connections that send oversized frames, non-TURN bytes, or stall without allocating", async () => {
    const port = turn.tcp[0]!.port;
    const connect = (data?: Buffer): Promise<number> =>
      new Promise((resolve, reject) => {
        const t0 = Date.now();
        const s = net.connect(port, "127.0.0.1", () => data && s.write(data));
        s.on("error", () => {});
        s.once("close", () => resolve(Date.now() - t0));
        setTimeout(() => reject(new Error("not closed")), 5000).unref();
      });
    const oversized = Buffer.from([0x00, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42]); // STUN claiming 65 KB
    const notTurn = Buffer.from([0x80, 1, 2, 3]);
    const stalled = new StunWriter(Method.Binding, MessageClass.Request).finish().subarray(0, 10);
    const times = await Promise.all([connect(oversized), connect(notTurn), connect(stalled), connect()]);
    expect(times[0]).toBeLessThan(900); // framing errors close at once
    expect(times[1]).toBeLessThan(900);
    expect(times[2]).toBeGreaterThanOrEqual(900); // the rest wait out the 1 s handshake timeout
    expect(times[3]).toBeGreaterThanOrEqual(900);
    // The server's side of each connection closes once the FIN exchange completes.
    const deadline = Date.now() + 3000;
    while (turn.connections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(turn.connections).toBe(0);
  });

  it("answers unknown comprehension-required attributes with 420 and UNKNOWN-ATTRIBUTES", async () => {
    const c = await udpClient();
    const m = await c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).u32(0x7f00, 1).bytes(Attr.DontFragment, Buffer.alloc(0)));
    expect(code(m)).toBe(420);
    c.close();
  });
});
