/**
 * Relaying over real sockets, both address families: a client allocates an IPv6 relay
 * (REQUESTED-ADDRESS-FAMILY) and a dual-stack one (ADDITIONAL-ADDRESS-FAMILY) from an
 * IPv4 client address, and data flows both ways through Send/Data indications and
 * ChannelData to peers on ::1 and 127.0.0.1.
 */
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startTurnServer, type TurnServer } from "../../turn/index.ts";
import type { TransportAddress } from "../../turn/stun/address.ts";
import { Attr, MessageClass, Method } from "../../turn/stun/constants.ts";
import { longTermKey } from "../../turn/stun/integrity.ts";
import { attrBytes, attrErrorCode, attrString, attrXorAddress, getAttr, getAttrs, parseStun, type StunMessage } from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

let turn: TurnServer;

beforeAll(async () => {
  turn = await startTurnServer({
    config: parseConfig({
      turn: {
        enabled: true,
        secret: "relay-test-secret-0123456789",
        udp: [{ host: "127.0.0.1", port: 0 }],
        relay: { address: "127.0.0.1", address6: "::1", portRange: [0, 0] },
      },
    }).turn,
    log: silentLogger,
    allowedPeers: ["127.0.0.1", "::1"],
  });
});

afterAll(async () => {
  await turn?.close();
});

function next<T>(emitter: dgram.Socket, pick: (m: Buffer, r: dgram.RemoteInfo) => T | undefined, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off("message", on);
      reject(new Error(`timed out waiting for ${what}`));
    }, 3000);
    const on = (m: Buffer, r: dgram.RemoteInfo): void => {
      const v = pick(m, r);
      if (v === undefined) return;
      clearTimeout(t);
      emitter.off("message", on);
      resolve(v);
    };
    emitter.on("message", on);
  });
}

async function client(): Promise<{ s: dgram.Socket; request(method: number, add?: (w: StunWriter) => void): Promise<StunMessage> }> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const creds = turn.mintCredentials("relay-test");
  let nonce = "";
  const once = async (method: number, add?: (w: StunWriter) => void): Promise<StunMessage> => {
    const w = new StunWriter(method, MessageClass.Request);
    add?.(w);
    if (nonce) w.string(Attr.Username, creds.username).string(Attr.Realm, "gatehouse").string(Attr.Nonce, nonce).integrity(longTermKey(creds.username, "gatehouse", creds.password));
    const b = w.fingerprint().finish();
    const reply = next(s, (m) => (m.subarray(8, 20).equals(b.subarray(8, 20)) ? (parseStun(m) as { ok: true; msg: StunMessage }).msg : undefined), "a response");
    s.send(b, turn.udp[0]!.port, "127.0.0.1");
    return reply;
  };
  return {
    s,
    async request(method, add) {
      let m = await once(method, add);
      const e = getAttr(m, Attr.ErrorCode);
      if (e && attrErrorCode(m, e)!.code === 401) {
        nonce = attrString(m, getAttr(m, Attr.Nonce)!);
        m = await once(method, add);
      }
      return m;
    },
  };
}

async function peer(family: 4 | 6): Promise<dgram.Socket> {
  const p = dgram.createSocket(family === 4 ? "udp4" : "udp6");
  await new Promise<void>((r) => p.bind(0, family === 4 ? "127.0.0.1" : "::1", () => r()));
  return p;
}

describe("relaying over real sockets", () => {
  it("IPv6 relay: Send indication out, Data indication back, then ChannelData both ways", async () => {
    const c = await client();
    const p = await peer(6);
    const alloc = await c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.RequestedAddressFamily, Buffer.from([2, 0, 0, 0])));
    expect(alloc.cls).toBe(MessageClass.Success);
    const relay = attrXorAddress(alloc, getAttr(alloc, Attr.XorRelayedAddress)!)!;
    expect(relay.family).toBe(6);
    expect(relay.address).toBe("::1");
    const peerAddr = { address: "::1", port: p.address().port };
    expect((await c.request(Method.CreatePermission, (w) => w.xorAddress(Attr.XorPeerAddress, peerAddr.address, peerAddr.port))).cls).toBe(MessageClass.Success);

    // Client → peer through a Send indication; the peer sees the relay as the source.
    const atPeer = next(p, (m, r) => ({ data: m.toString(), from: { address: r.address, port: r.port } }), "data at the peer");
    c.s.send(
      new StunWriter(Method.Send, MessageClass.Indication).xorAddress(Attr.XorPeerAddress, peerAddr.address, peerAddr.port).bytes(Attr.Data, Buffer.from("hello v6")).finish(),
      turn.udp[0]!.port,
      "127.0.0.1",
    );
    expect(await atPeer).toEqual({ data: "hello v6", from: { address: "::1", port: relay.port } });

    // Peer → client as a Data indication naming the peer.
    const atClient = next(c.s, (m) => {
      const r = parseStun(m);
      return r.ok && r.msg.method === Method.Data ? r.msg : undefined;
    }, "a Data indication");
    p.send("back", relay.port, "::1");
    const di = await atClient;
    expect(attrXorAddress(di, getAttr(di, Attr.XorPeerAddress)!)).toEqual({ family: 6, ...peerAddr });
    expect(attrBytes(di, getAttr(di, Attr.Data)!).toString()).toBe("back");

    // Bind a channel: both directions switch to ChannelData.
    expect((await c.request(Method.ChannelBind, (w) => w.u32(Attr.ChannelNumber, 0x4abc << 16).xorAddress(Attr.XorPeerAddress, peerAddr.address, peerAddr.port))).cls).toBe(
      MessageClass.Success,
    );
    const cd = next(c.s, (m) => (m[0] === 0x4a && m[1] === 0xbc ? m : undefined), "ChannelData");
    p.send("via channel", relay.port, "::1");
    const frame = await cd;
    expect(frame.readUInt16BE(2)).toBe(11);
    expect(frame.subarray(4, 15).toString()).toBe("via channel");
    const atPeer2 = next(p, (m) => m.toString(), "ChannelData payload at the peer");
    c.s.send(Buffer.concat([Buffer.from([0x4a, 0xbc, 0, 3]), Buffer.from("abc")]), turn.udp[0]!.port, "127.0.0.1");
    expect(await atPeer2).toBe("abc");

    await c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0));
    c.s.close();
    p.close();
  });

  it("dual allocation: one relay per family, each reaching its own peers", async () => {
    const c = await client();
    const p4 = await peer(4);
    const p6 = await peer(6);
    const alloc = await c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.AdditionalAddressFamily, Buffer.from([2, 0, 0, 0])));
    const relays = getAttrs(alloc, Attr.XorRelayedAddress).map((a) => attrXorAddress(alloc, a)!) as TransportAddress[];
    expect(relays.map((r) => r.family)).toEqual([4, 6]);
    for (const [p, fam] of [[p4, 4], [p6, 6]] as const) {
      const addr = fam === 4 ? "127.0.0.1" : "::1";
      await c.request(Method.CreatePermission, (w) => w.xorAddress(Attr.XorPeerAddress, addr, p.address().port));
      const got = next(p, (m, r) => `${m.toString()} from ${r.address}`, "data at the peer");
      c.s.send(new StunWriter(Method.Send, MessageClass.Indication).xorAddress(Attr.XorPeerAddress, addr, p.address().port).bytes(Attr.Data, Buffer.from(`v${fam}`)).finish(), turn.udp[0]!.port, "127.0.0.1");
      expect(await got).toBe(`v${fam} from ${addr}`);
    }
    await c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0));
    expect(turn.relaySockets).toBe(0);
    c.s.close();
    p4.close();
    p6.close();
  });
});
