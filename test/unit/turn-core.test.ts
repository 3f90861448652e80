/**
 * The TURN protocol core with an injected clock and fake relay sockets: lifetimes,
 * refresh, permissions, channels, nonces, credentials, error codes, policy, quotas and
 * hostile input. No sockets and no sleeping: time is a number we move.
 */
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import { createLogger, silentLogger } from "../../config/log.ts";
import type { ClientTuple, RelayEndpoint, RelayHandle } from "../../turn/allocation.ts";
import { TurnCore, type TurnAction, type TurnCoreOptions } from "../../turn/core.ts";
import { mintTurnCredentials } from "../../turn/credentials.ts";
import { PeerPolicy } from "../../turn/policy.ts";
import { addressKey, type IpFamily } from "../../turn/stun/address.ts";
import { Attr, MessageClass, Method } from "../../turn/stun/constants.ts";
import { fingerprintOk, longTermKey, verifyIntegrity } from "../../turn/stun/integrity.ts";
import { attrBytes, attrErrorCode, attrString, attrU32, attrXorAddress, getAttr, parseStun, type StunMessage } from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

const SECRET = "unit-test-secret-0123456789";
const REALM = "gatehouse.test";
const T0 = 1_800_000_000_000; // ms; an arbitrary "now"

class FakeRelay implements RelayHandle {
  readonly sent: { data: Buffer; port: number; address: string }[] = [];
  closed = false;
  send(data: Uint8Array, port: number, address: string): void {
    this.sent.push({ data: Buffer.from(data), port, address });
  }
  close(): void {
    this.closed = true;
  }
}

function endpoint(port: number, family: IpFamily = 4): RelayEndpoint {
  return { family, address: family === 4 ? "192.0.2.10" : "2001:db8::10", port, external: family === 4 ? "198.51.100.10" : "2001:db8::10", handle: new FakeRelay(), allocation: undefined };
}

function options(o: Partial<TurnCoreOptions> = {}): TurnCoreOptions {
  return {
    realm: REALM,
    secrets: [SECRET],
    nonceLifetimeSeconds: 600,
    lifetimes: { allocationSeconds: 600, maxAllocationSeconds: 3600, permissionSeconds: 300, channelSeconds: 600 },
    quotas: {
      allocationsPerUser: 10,
      totalAllocations: 1000,
      bandwidthBytesPerSecond: 0,
      authFailuresPerMinute: 20,
      permissionsPerAllocation: 64,
      channelsPerAllocation: 64,
    },
    policy: new PeerPolicy({ allow: [] }),
    families: { v4: true, v6: false },
    log: silentLogger,
    ...o,
  };
}

let nextPort = 40000;
function tuple(address = "203.0.113.7", port = nextPort++, transport: ClientTuple["transport"] = "udp"): ClientTuple & { out: Buffer[] } {
  const out: Buffer[] = [];
  return { transport, remote: { family: 4, address, port }, local: { family: 4, address: "192.0.2.1", port: 14049 }, key: addressKey(address, port), link: { send: (d) => out.push(d) }, out };
}

function parsed(b: Buffer): StunMessage {
  const r = parseStun(b);
  if (!r.ok) throw new Error(r.reason);
  return r.msg;
}

function replyOf(actions: TurnAction[]): StunMessage {
  const r = actions.find((a) => a.kind === "reply");
  if (!r || r.kind !== "reply") throw new Error(`no reply in ${JSON.stringify(actions.map((a) => a.kind))}`);
  return parsed(r.data);
}

function codeOf(m: StunMessage): number | undefined {
  const a = getAttr(m, Attr.ErrorCode);
  return a ? attrErrorCode(m, a)!.code : undefined;
}

interface Creds {
  username: string;
  password: string;
}

/** A minimal TURN client speaking to the core directly. */
class Client {
  nonce = "";
  realm = REALM;
  algo: "sha1" | "sha256" = "sha1";
  readonly core: TurnCore;
  readonly t: ReturnType<typeof tuple>;
  creds: Creds;
  now: () => number;
  constructor(core: TurnCore, now: () => number, creds: Creds, t = tuple()) {
    this.core = core;
    this.now = now;
    this.creds = creds;
    this.t = t;
  }
  get key(): Buffer {
    return longTermKey(this.creds.username, this.realm, this.creds.password);
  }
  build(method: number, add: (w: StunWriter) => void = () => {}, auth = true, tid?: Buffer): Buffer {
    const w = new StunWriter(method, MessageClass.Request, tid);
    add(w);
    if (auth) {
      w.string(Attr.Username, this.creds.username).string(Attr.Realm, this.realm).string(Attr.Nonce, this.nonce);
      w.integrity(this.key, this.algo);
    }
    return w.fingerprint().finish();
  }
  send(buf: Buffer): TurnAction[] {
    return this.core.handleStun(buf, this.t, this.now());
  }
  /** Send; on 401/438 take REALM and NONCE and retry once (what real clients do). */
  request(method: number, add?: (w: StunWriter) => void): TurnAction[] {
    let actions = this.send(this.build(method, add, this.nonce !== ""));
    const first = actions.find((a) => a.kind === "reply");
    if (first && first.kind === "reply") {
      const m = parsed(first.data);
      const code = codeOf(m);
      if (code === 401 || code === 438) {
        this.nonce = attrString(m, getAttr(m, Attr.Nonce)!);
        this.realm = attrString(m, getAttr(m, Attr.Realm)!);
        actions = this.send(this.build(method, add, true));
      }
    }
    return actions;
  }
  /** Allocate through the open-relay round trip. */
  allocate(add?: (w: StunWriter) => void, ep: RelayEndpoint[] = [endpoint(nextPort++)]): StunMessage {
    const actions = this.request(Method.Allocate, (w) => {
      w.u32(Attr.RequestedTransport, 17 << 24);
      add?.(w);
    });
    const open = actions.find((a) => a.kind === "open-relay");
    if (!open || open.kind !== "open-relay") return replyOf(actions);
    return replyOf(this.core.relayOpened(open.request.id, ep, undefined, this.now()));
  }
  peer(method: number, address: string, port: number, channel?: number): StunMessage {
    return replyOf(
      this.request(method, (w) => {
        if (channel !== undefined) w.u32(Attr.ChannelNumber, channel << 16);
        w.xorAddress(Attr.XorPeerAddress, address, port);
      }),
    );
  }
}

let now = T0;
const clock = (): number => now;
// Long enough for the lifetime tests below; expiry has its own tests.
const creds = (subject = "alice", ttl = 86_400, session?: string): Creds => mintTurnCredentials({ secret: SECRET, subject, ttlSeconds: ttl, now, session });

beforeEach(() => {
  now = T0;
});

describe("Allocate (RFC 8656 §7)", () => {
  it("challenges without credentials: 401 with REALM and NONCE, no integrity", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const m = replyOf(c.send(c.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24), false)));
    expect(m.cls).toBe(MessageClass.Error);
    expect(codeOf(m)).toBe(401);
    expect(attrString(m, getAttr(m, Attr.Realm)!)).toBe(REALM);
    expect(getAttr(m, Attr.Nonce)).toBeDefined();
    expect(m.integrityAt).toBe(-1);
    expect(fingerprintOk(m)).toBe(true);
    expect(core.metrics.challenges).toBe(1);
    expect(core.metrics.authFailures).toBe(0);
  });

  it("allocates: XOR-RELAYED-ADDRESS (external), LIFETIME 600, XOR-MAPPED-ADDRESS, integrity and fingerprint", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const ep = endpoint(50000);
    const m = c.allocate(undefined, [ep]);
    expect(m.cls).toBe(MessageClass.Success);
    expect(attrXorAddress(m, getAttr(m, Attr.XorRelayedAddress)!)).toEqual({ family: 4, address: "198.51.100.10", port: 50000 });
    expect(attrU32(m, getAttr(m, Attr.Lifetime)!)).toBe(600);
    expect(attrXorAddress(m, getAttr(m, Attr.XorMappedAddress)!)).toEqual(c.t.remote);
    expect(verifyIntegrity(m, c.key)).toBe(true);
    expect(fingerprintOk(m)).toBe(true);
    expect(core.allocationCount).toBe(1);
    expect(ep.allocation).toBe(core.allocationFor(c.t.key));
  });

  it("answers a retransmitted Allocate with the same response, another transaction with 437", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.allocate();
    const tid = Buffer.alloc(12, 7);
    const req = c.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24), true, tid);
    const open = c.send(req).find((a) => a.kind === "open-relay");
    expect(open).toBeUndefined();
    const second = new Client(core, clock, c.creds, tuple());
    second.nonce = c.nonce;
    const first = second.send(second.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24), true, tid));
    const op = first.find((a) => a.kind === "open-relay")!;
    expect(op.kind).toBe("open-relay");
    // Retransmission while the relay is being opened: nothing, the answer comes once.
    expect(second.send(second.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24), true, tid))).toEqual([{ kind: "ignore", reason: "retransmission" }]);
    const ok = core.relayOpened((op as Extract<TurnAction, { kind: "open-relay" }>).request.id, [endpoint(50010)], undefined, now);
    const okBytes = (ok[0] as Extract<TurnAction, { kind: "reply" }>).data;
    const again = second.send(second.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24), true, tid));
    expect((again[0] as Extract<TurnAction, { kind: "reply" }>).data.equals(okBytes)).toBe(true);
    expect(codeOf(replyOf(second.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24))))).toBe(437);
  });

  it("refuses what it cannot do: 400, 442, 440, 420 (DONT-FRAGMENT, unknown attribute), 508 on bind failure", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    expect(codeOf(replyOf(c.request(Method.Allocate)))).toBe(400); // no REQUESTED-TRANSPORT
    expect(codeOf(replyOf(c.request(Method.Allocate, (w) => w.bytes(Attr.RequestedTransport, Buffer.from([6, 0, 0, 0])))))).toBe(442);
    const v6 = replyOf(c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.RequestedAddressFamily, Buffer.from([2, 0, 0, 0]))));
    expect(codeOf(v6)).toBe(440);
    const df = replyOf(c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.DontFragment, Buffer.alloc(0))));
    expect(codeOf(df)).toBe(420);
    expect([...attrBytes(df, getAttr(df, Attr.UnknownAttributes)!)]).toEqual([0x00, 0x1a]);
    expect(verifyIntegrity(df, c.key)).toBe(true); // errors after authentication are signed
    const unk = replyOf(c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).u32(0x7abc, 0)));
    expect(codeOf(unk)).toBe(420);
    // Unknown comprehension-optional attributes are ignored.
    const actions = c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).u32(0xc0de, 1));
    const open = actions.find((a) => a.kind === "open-relay") as Extract<TurnAction, { kind: "open-relay" }>;
    expect(open).toBeDefined();
    const fail = replyOf(core.relayFailed(open.request.id));
    expect(codeOf(fail)).toBe(508);
    expect(core.allocationCount).toBe(0);
    expect(core.tableSizes().subjects).toBe(0);
  });

  it("accepts MESSAGE-INTEGRITY-SHA256 and answers with it", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.algo = "sha256";
    const m = c.allocate();
    expect(m.cls).toBe(MessageClass.Success);
    expect(m.integrity256At).toBeGreaterThan(0);
    expect(m.integrityAt).toBe(-1);
    expect(verifyIntegrity(m, c.key)).toBe(true);
  });

  it("holds port+1 for EVEN-PORT R=1 and hands it out for the RESERVATION-TOKEN", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const actions = c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.EvenPort, Buffer.from([0x80])));
    const open = actions.find((a) => a.kind === "open-relay") as Extract<TurnAction, { kind: "open-relay" }>;
    expect(open.request).toMatchObject({ evenPort: true, reserveNext: true, families: [4] });
    const reserved = endpoint(50021);
    const m = replyOf(core.relayOpened(open.request.id, [endpoint(50020)], reserved, now));
    const token = attrBytes(m, getAttr(m, Attr.ReservationToken)!);
    expect(token.length).toBe(8);
    const d = new Client(core, clock, creds("bob"));
    const r = replyOf(d.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.ReservationToken, token)));
    expect(attrXorAddress(r, getAttr(r, Attr.XorRelayedAddress)!)!.port).toBe(50021);
    // A token works once; an unknown one gets 508.
    const e = new Client(core, clock, creds("carol"));
    expect(codeOf(replyOf(e.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.ReservationToken, token))))).toBe(508);
  });

  it("releases a reservation nobody claims after 30 s", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const actions = c.request(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24).bytes(Attr.EvenPort, Buffer.from([0x80])));
    const open = actions.find((a) => a.kind === "open-relay") as Extract<TurnAction, { kind: "open-relay" }>;
    const reserved = endpoint(50031);
    core.relayOpened(open.request.id, [endpoint(50030)], reserved, now);
    now += 29_000;
    expect(core.tick(now)).toEqual([]);
    now += 2_000;
    expect(core.tick(now)).toEqual([{ kind: "release-relay", endpoint: reserved }]);
  });
});

describe("lifetimes with the injected clock", () => {
  it("an allocation lives 600 s by default and is released when it expires", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const ep = endpoint(50100);
    c.allocate(undefined, [ep]);
    now = T0 + 599_999;
    expect(core.tick(now)).toEqual([]);
    now = T0 + 600_000;
    expect(core.tick(now)).toEqual([{ kind: "release-relay", endpoint: ep }]);
    expect(core.allocationCount).toBe(0);
    expect(core.metrics.allocationsExpired).toBe(1);
    expect(codeOf(replyOf(c.request(Method.Refresh)))).toBe(437);
  });

  it("Refresh: default 600 when absent or lower, the asked value up to 3600, and 0 deletes", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const ep = endpoint(50110);
    c.allocate(undefined, [ep]);
    const lifetime = (v?: number): number | undefined => {
      const m = replyOf(c.request(Method.Refresh, (w) => (v === undefined ? w : w.u32(Attr.Lifetime, v))));
      expect(verifyIntegrity(m, c.key)).toBe(true);
      return attrU32(m, getAttr(m, Attr.Lifetime)!);
    };
    expect(lifetime()).toBe(600);
    expect(lifetime(30)).toBe(600);
    expect(lifetime(1200)).toBe(1200);
    expect(lifetime(100_000)).toBe(3600);
    // The refreshed allocation survives its original 600 s.
    now = T0 + 3_000_000;
    expect(core.tick(now)).toEqual([]);
    const actions = c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0));
    expect(attrU32(replyOf(actions), getAttr(replyOf(actions), Attr.Lifetime)!)).toBe(0);
    expect(actions).toContainEqual({ kind: "release-relay", endpoint: ep });
    expect(core.allocationCount).toBe(0);
    expect(core.metrics.allocationsDeleted).toBe(1);
  });

  it("permissions last 300 s; peer data is dropped after that and CreatePermission renews them", () => {
    const core = new TurnCore(options({ policy: new PeerPolicy() }));
    const c = new Client(core, clock, creds());
    const ep = endpoint(50120);
    c.allocate(undefined, [ep]);
    expect(c.peer(Method.CreatePermission, "198.18.0.1", 0).cls).toBe(MessageClass.Error); // benchmarking range: 403
    const ok = c.peer(Method.CreatePermission, "8.8.8.8", 0);
    expect(ok.cls).toBe(MessageClass.Success);
    const payload = Buffer.from("hello client");
    now = T0 + 299_000;
    const di = core.fromPeer(ep, payload, "8.8.8.8", 5353, now)!;
    const m = parsed(di);
    expect([m.method, m.cls]).toEqual([Method.Data, MessageClass.Indication]);
    expect(attrXorAddress(m, getAttr(m, Attr.XorPeerAddress)!)).toEqual({ family: 4, address: "8.8.8.8", port: 5353 });
    expect(attrBytes(m, getAttr(m, Attr.Data)!).equals(payload)).toBe(true);
    expect(core.fromPeer(ep, payload, "8.8.4.4", 5353, now)).toBeUndefined(); // other IP: no permission
    now = T0 + 300_001;
    expect(core.fromPeer(ep, payload, "8.8.8.8", 5353, now)).toBeUndefined();
    expect(core.metrics.dropNoPermission).toBe(2);
    expect(c.peer(Method.CreatePermission, "8.8.8.8", 0).cls).toBe(MessageClass.Success);
    expect(core.fromPeer(ep, payload, "8.8.8.8", 5353, now)).toBeDefined();
  });

  it("channels last 600 s and keep number and peer tied for 5 more minutes", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const ep = endpoint(50130);
    c.allocate(undefined, [ep]);
    c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 3600)); // the allocation outlives this test
    expect(c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x4001).cls).toBe(MessageClass.Success);
    const frame = Buffer.from([0x40, 0x01, 0x00, 0x03, 0x61, 0x62, 0x63]);
    const ch = core.channelDataFromClient(c.t.key, frame, now)!;
    expect(ch.peer).toEqual({ family: 4, address: "8.8.8.8", port: 53 });
    expect(ch.relay).toBe(ep);
    // Peer → client over UDP: ChannelData, unpadded.
    const out = core.fromPeer(ep, Buffer.from("xyz12"), "8.8.8.8", 53, now)!;
    expect([...out]).toEqual([0x40, 0x01, 0x00, 0x05, ...Buffer.from("xyz12")]);
    // Keep the permission alive (300 s each) without touching the channel.
    now = T0 + 250_000;
    c.peer(Method.CreatePermission, "8.8.8.8", 0);
    now = T0 + 500_000;
    c.peer(Method.CreatePermission, "8.8.8.8", 0);
    now = T0 + 599_999;
    expect(core.channelDataFromClient(c.t.key, frame, now)).toBeDefined();
    now = T0 + 600_001;
    expect(core.channelDataFromClient(c.t.key, frame, now)).toBeUndefined();
    // With the channel gone but the permission alive, the peer's data arrives as a Data indication.
    const di = parsed(core.fromPeer(ep, Buffer.from("late"), "8.8.8.8", 53, now)!);
    expect(di.method).toBe(Method.Data);
    // And the permission matters on its own: once it lapses, nothing passes.
    now = T0 + 800_001;
    expect(core.fromPeer(ep, Buffer.from("late"), "8.8.8.8", 53, now)).toBeUndefined();
    core.tick(now);
    // During the cool-down the number cannot go to another peer, nor the peer to another number.
    expect(codeOf(c.peer(Method.ChannelBind, "8.8.4.4", 53, 0x4001))).toBe(400);
    expect(codeOf(c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x4002))).toBe(400);
    // After the cool-down both are free again.
    now += 300_001;
    core.tick(now);
    expect(c.peer(Method.ChannelBind, "8.8.4.4", 53, 0x4001).cls).toBe(MessageClass.Success);
    expect(core.metrics.channels).toBe(1);
  });

  it("rejects channel numbers outside 0x4000-0x7FFF and rebinding a live channel elsewhere", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.allocate();
    expect(codeOf(c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x3fff))).toBe(400);
    expect(codeOf(c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x8000))).toBe(400);
    expect(c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x6050).cls).toBe(MessageClass.Success); // coturn's client uses these
    expect(codeOf(c.peer(Method.ChannelBind, "8.8.8.8", 54, 0x6050))).toBe(400);
  });

  it("pads ChannelData to 4 bytes towards TCP/TLS clients (RFC 8656 §12.5)", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds(), tuple("203.0.113.9", 1, "tcp"));
    const ep = endpoint(50140);
    c.allocate(undefined, [ep]);
    c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x4000);
    const out = core.fromPeer(ep, Buffer.from("abcde"), "8.8.8.8", 53, now)!;
    expect(out.length).toBe(12);
    expect(out.readUInt16BE(2)).toBe(5);
    expect([...out.subarray(9)]).toEqual([0, 0, 0]);
  });
});

describe("credentials and nonces", () => {
  it("438 Stale Nonce with a fresh nonce after the nonce lifetime; the client recovers", () => {
    const core = new TurnCore(options({ nonceLifetimeSeconds: 60 }));
    const c = new Client(core, clock, creds());
    c.allocate();
    const old = c.nonce;
    now += 61_000;
    const stale = replyOf(c.send(c.build(Method.Refresh)));
    expect(codeOf(stale)).toBe(438);
    expect(attrString(stale, getAttr(stale, Attr.Realm)!)).toBe(REALM);
    expect(attrString(stale, getAttr(stale, Attr.Nonce)!)).not.toBe(old);
    expect(replyOf(c.request(Method.Refresh)).cls).toBe(MessageClass.Success);
    expect(core.metrics.staleNonces).toBeGreaterThanOrEqual(1);
  });

  it("a nonce replayed from another address, or forged, is stale there", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.allocate();
    const thief = new Client(core, clock, creds("mallory"), tuple("198.51.100.99"));
    thief.nonce = c.nonce;
    expect(codeOf(replyOf(thief.send(thief.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))))).toBe(438);
    thief.nonce = "AAAAAAAAAAAAAAAAAAAAAAA";
    expect(codeOf(replyOf(thief.send(thief.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))))).toBe(438);
  });

  it("401 for bad integrity, wrong realm, a username not in REST form; counted as failures", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, { username: creds().username, password: "wrong" });
    expect(codeOf(c.allocate())).toBe(401);
    const r = new Client(core, clock, creds());
    r.request(Method.Binding); // no-op: Binding needs no auth
    r.nonce = c.nonce;
    r.realm = "other.realm";
    expect(codeOf(replyOf(r.send(r.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))))).toBe(401);
    const plain = new Client(core, clock, { username: "alice", password: "x" });
    plain.nonce = c.nonce;
    expect(codeOf(replyOf(plain.send(plain.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))))).toBe(401);
    expect(core.metrics.authFailures).toBe(3);
    expect(core.allocationCount).toBe(0);
  });

  it("relay access outlives the session: expired credentials can neither allocate nor Refresh, CreatePermission or ChannelBind", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds("alice", 60));
    c.allocate();
    expect(c.peer(Method.CreatePermission, "8.8.8.8", 0).cls).toBe(MessageClass.Success);
    now += 120_000; // credentials expired a minute ago
    for (const m of [replyOf(c.request(Method.Refresh)), c.peer(Method.CreatePermission, "8.8.8.8", 0), c.peer(Method.ChannelBind, "8.8.8.8", 5000, 0x4001)]) {
      expect(codeOf(m)).toBe(401);
      expect(attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)!.reason).toBe("Credentials Expired");
    }
    const late = new Client(core, clock, c.creds);
    const m = late.allocate();
    expect(codeOf(m)).toBe(401);
    expect(attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)!.reason).toBe("Credentials Expired");
    // Genuine but stale credentials do not count against the source's failure budget.
    for (let i = 0; i < 30; i++) expect(codeOf(replyOf(c.request(Method.Refresh)))).toBe(401);
    expect(core.metrics.authRateLimited).toBe(0);
    // Giving the allocation back (LIFETIME 0) is still taken.
    expect(replyOf(c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0))).cls).toBe(MessageClass.Success);
    expect(core.allocationCount).toBe(0);
  });

  it("relay access outlives the session: ending the session closes its allocations and refuses its credentials", () => {
    const core = new TurnCore(options());
    const ref = "sessionRefAAAAAA";
    const other = "sessionRefBBBBBB";
    const c = new Client(core, clock, creds("alice", 3600, ref));
    const ep = endpoint(50500);
    c.allocate(undefined, [ep]);
    const d = new Client(core, clock, creds("alice", 3600, other)); // the same user signed in elsewhere
    d.allocate();
    expect(core.listAllocations().map((a) => a.session).sort()).toEqual([ref, other]);
    expect(core.closeSession(ref, now)).toEqual([{ kind: "release-relay", endpoint: ep }]);
    expect(core.allocationCount).toBe(1); // the other session keeps its relay
    for (const m of [replyOf(c.request(Method.Refresh)), c.peer(Method.CreatePermission, "8.8.8.8", 0)]) {
      expect(codeOf(m)).toBe(401);
      expect(attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)!.reason).toBe("Session Ended");
    }
    const again = new Client(core, clock, c.creds);
    expect(attrErrorCode(again.allocate(), getAttr(again.allocate(), Attr.ErrorCode)!)!.reason).toBe("Session Ended");
    expect(core.metrics.sessionEndedRefusals).toBeGreaterThan(0);
    expect(d.peer(Method.CreatePermission, "8.8.8.8", 0).cls).toBe(MessageClass.Success);
    // The memory of ended sessions is bounded in time.
    now += 86_400_000 + 1;
    core.tick(now);
    expect(core.allocationCount).toBe(0); // d expired meanwhile
  });

  it("441 when another user's credentials speak for an allocation", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds("alice"));
    c.allocate();
    c.creds = creds("bob");
    expect(codeOf(replyOf(c.request(Method.Refresh)))).toBe(441);
  });

  it("accepts credentials minted under a previous secret (rotation)", () => {
    const core = new TurnCore(options({ secrets: ["the-new-secret-0123456789", SECRET] }));
    const c = new Client(core, clock, creds());
    expect(c.allocate().cls).toBe(MessageClass.Success);
  });

  it("drops requests from a source after too many failed authentications, for a minute", () => {
    const core = new TurnCore(options());
    const bad = new Client(core, clock, { username: creds().username, password: "nope" }, tuple("203.0.113.66", 1000));
    expect(codeOf(bad.allocate())).toBe(401); // challenge, then the first failure
    for (let i = 0; i < 19; i++) expect(codeOf(replyOf(bad.send(bad.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))))).toBe(401);
    expect(core.metrics.authFailures).toBe(20);
    expect(bad.send(bad.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))).toEqual([{ kind: "ignore", reason: "rate-limited" }]);
    // Same IP, right credentials: still dropped while limited; other sources are unaffected.
    const good = new Client(core, clock, creds(), tuple("203.0.113.66", 1001));
    good.nonce = bad.nonce;
    expect(good.send(good.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24)))[0]).toEqual({ kind: "ignore", reason: "rate-limited" });
    expect(new Client(core, clock, creds(), tuple("203.0.113.67")).allocate().cls).toBe(MessageClass.Success);
    now += 60_001;
    expect(good.allocate().cls).toBe(MessageClass.Success);
    expect(core.metrics.authRateLimited).toBe(2);
  });
});

describe("peer policy (closed by default)", () => {
  const denied = [
    "0.0.0.0",
    "0.1.2.3",
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "100.127.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:8.8.8.8",
    "::127.0.0.1",
    "64:ff9b::a00:1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "2001:db8::1",
    "2002:7f00:1::1",
    "2001::1",
    "fec0::1",
    "100::1",
  ];

  it.each(denied)("refuses %s with 403 in CreatePermission and ChannelBind", (ip) => {
    const core = new TurnCore(options({ families: { v4: true, v6: true } }));
    const c = new Client(core, clock, creds());
    const v6 = ip.includes(":");
    c.allocate(v6 ? (w) => w.bytes(Attr.RequestedAddressFamily, Buffer.from([2, 0, 0, 0])) : undefined, [endpoint(nextPort++, v6 ? 6 : 4)]);
    const cp = c.peer(Method.CreatePermission, ip, 9);
    expect(codeOf(cp)).toBe(403);
    expect(verifyIntegrity(cp, c.key)).toBe(true);
    expect(codeOf(c.peer(Method.ChannelBind, ip, 9, 0x4000))).toBe(403);
    expect(core.metrics.peerDenials).toBe(2);
  });

  it("allows allow-listed peers and the gateway's own media addresses", () => {
    const policy = new PeerPolicy({ allow: ["127.0.0.1", "10.0.0.0/8"], gatewayAddresses: ["192.168.7.7"] });
    const core = new TurnCore(options({ policy }));
    const c = new Client(core, clock, creds());
    c.allocate();
    for (const ip of ["127.0.0.1", "10.9.8.7", "192.168.7.7"]) expect(c.peer(Method.CreatePermission, ip, 1).cls).toBe(MessageClass.Success);
    expect(codeOf(c.peer(Method.CreatePermission, "127.0.0.2", 1))).toBe(403);
    expect(codeOf(c.peer(Method.CreatePermission, "192.168.7.8", 1))).toBe(403);
    policy.setGatewayAddresses(["192.168.7.8"]);
    expect(c.peer(Method.CreatePermission, "192.168.7.8", 1).cls).toBe(MessageClass.Success);
  });

  it("a CreatePermission with one bad address installs none (atomic)", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const ep = endpoint(50200);
    c.allocate(undefined, [ep]);
    const m = replyOf(c.request(Method.CreatePermission, (w) => w.xorAddress(Attr.XorPeerAddress, "8.8.8.8", 1).xorAddress(Attr.XorPeerAddress, "10.0.0.1", 1)));
    expect(codeOf(m)).toBe(403);
    expect(core.fromPeer(ep, Buffer.from("x"), "8.8.8.8", 1, now)).toBeUndefined();
  });

  it("443 for a public peer of the other address family", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.allocate();
    expect(codeOf(c.peer(Method.CreatePermission, "2a00:1450:4001::1", 1))).toBe(443);
  });

  it("the relay reaches every UDP port of the gateway's media address: only its media ports, for ChannelBind and Send", () => {
    const policy = new PeerPolicy({ allowPublic: false, gatewayAddresses: ["192.168.7.7"], gatewayPorts: [40000, 40999] });
    const core = new TurnCore(options({ policy }));
    const c = new Client(core, clock, creds());
    const ep = endpoint(50300);
    c.allocate(undefined, [ep]);
    // Permissions are per IP: the gateway's address may be permitted…
    expect(c.peer(Method.CreatePermission, "192.168.7.7", 0).cls).toBe(MessageClass.Success);
    // …but a channel or a Send indication reaches only its media ports, never SIP (5060) or TURN (14049).
    expect(c.peer(Method.ChannelBind, "192.168.7.7", 40500, 0x4000).cls).toBe(MessageClass.Success);
    for (const port of [5060, 14049, 443, 39999, 41000]) {
      const m = c.peer(Method.ChannelBind, "192.168.7.7", port, 0x4001);
      expect(codeOf(m)).toBe(403);
      expect(attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)!.reason).toBe("Peer port-not-allowed");
      const send = new StunWriter(Method.Send, MessageClass.Indication).xorAddress(Attr.XorPeerAddress, "192.168.7.7", port).bytes(Attr.Data, Buffer.from("INVITE")).finish();
      expect(c.send(send)).toEqual([{ kind: "ignore", reason: "indication-dropped" }]);
    }
    const ok = new StunWriter(Method.Send, MessageClass.Indication).xorAddress(Attr.XorPeerAddress, "192.168.7.7", 40001).bytes(Attr.Data, Buffer.from("media")).finish();
    expect(c.send(ok)[0]!.kind).toBe("send-peer");
  });

  it("allowPublic: false leaves only allow-listed peers", () => {
    const core = new TurnCore(options({ policy: new PeerPolicy({ allowPublic: false, gatewayAddresses: ["93.184.216.34"] }) }));
    const c = new Client(core, clock, creds());
    c.allocate();
    expect(codeOf(c.peer(Method.CreatePermission, "8.8.8.8", 1))).toBe(403);
    expect(c.peer(Method.CreatePermission, "93.184.216.34", 1).cls).toBe(MessageClass.Success);
  });
});

describe("quotas", () => {
  it("486 past 10 allocations per user, 508 past the total", () => {
    const core = new TurnCore(options({ quotas: { ...options().quotas, totalAllocations: 12 } }));
    for (let i = 0; i < 10; i++) expect(new Client(core, clock, creds("alice")).allocate().cls).toBe(MessageClass.Success);
    expect(codeOf(new Client(core, clock, creds("alice")).allocate())).toBe(486);
    expect(new Client(core, clock, creds("bob")).allocate().cls).toBe(MessageClass.Success);
    expect(new Client(core, clock, creds("bob")).allocate().cls).toBe(MessageClass.Success);
    expect(codeOf(new Client(core, clock, creds("carol")).allocate())).toBe(508);
    expect(core.metrics.quotaRejections).toBe(2);
  });

  it("normal use exceeds the per-user quota: refusals are logged (once per user and reason in a window) and counted", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "info", write: (l) => lines.push(l), format: "json" });
    const core = new TurnCore(options({ log, quotas: { ...options().quotas, allocationsPerUser: 2 } }));
    const refused: string[] = [];
    core.events.on("refused", (subject, reason) => refused.push(`${subject}:${reason}`));
    for (let i = 0; i < 2; i++) expect(new Client(core, clock, creds("alice")).allocate().cls).toBe(MessageClass.Success);
    for (let i = 0; i < 5; i++) expect(codeOf(new Client(core, clock, creds("alice")).allocate())).toBe(486);
    expect(core.metrics.quotaRejections).toBe(5);
    expect(refused).toEqual(Array(5).fill("alice:user-quota"));
    const logged = lines.filter((l) => l.includes("turn request refused"));
    expect(logged).toHaveLength(1);
    expect(JSON.parse(logged[0]!)).toMatchObject({ level: "warn", subject: "alice", reason: "user-quota", allocations: 2, limit: 2 });
    now += 11_000;
    core.tick(now);
    expect(codeOf(new Client(core, clock, creds("alice")).allocate())).toBe(486);
    expect(lines.filter((l) => l.includes("turn request refused"))).toHaveLength(2);
  });

  it("drops relayed data over the per-allocation bandwidth", () => {
    const core = new TurnCore(options({ quotas: { ...options().quotas, bandwidthBytesPerSecond: 10_000 } }));
    const c = new Client(core, clock, creds());
    c.allocate();
    c.peer(Method.ChannelBind, "8.8.8.8", 53, 0x4000);
    const frame = Buffer.concat([Buffer.from([0x40, 0x00, 0x03, 0xe8]), Buffer.alloc(1000)]);
    let passed = 0;
    for (let i = 0; i < 20; i++) if (core.channelDataFromClient(c.t.key, frame, now)) passed++;
    expect(passed).toBe(10);
    now += 500; // half a second refills half the budget
    passed = 0;
    for (let i = 0; i < 20; i++) if (core.channelDataFromClient(c.t.key, frame, now)) passed++;
    expect(passed).toBe(5);
    expect(core.metrics.dropBandwidth).toBe(25);
  });

  it("bounds permissions and channels per allocation", () => {
    const core = new TurnCore(options({ quotas: { ...options().quotas, permissionsPerAllocation: 2, channelsPerAllocation: 1 } }));
    const c = new Client(core, clock, creds());
    c.allocate();
    expect(c.peer(Method.CreatePermission, "8.8.8.8", 1).cls).toBe(MessageClass.Success);
    expect(c.peer(Method.CreatePermission, "8.8.4.4", 1).cls).toBe(MessageClass.Success);
    expect(codeOf(c.peer(Method.CreatePermission, "1.1.1.1", 1))).toBe(508);
    expect(c.peer(Method.ChannelBind, "8.8.8.8", 1, 0x4000).cls).toBe(MessageClass.Success);
    expect(codeOf(c.peer(Method.ChannelBind, "8.8.4.4", 1, 0x4001))).toBe(508);
  });
});

describe("Send indications and hostile input", () => {
  it("relays a Send indication only with a permission, silently drops otherwise", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    const ep = endpoint(50300);
    c.allocate(undefined, [ep]);
    const send = (ip: string): TurnAction[] => {
      const w = new StunWriter(Method.Send, MessageClass.Indication);
      w.xorAddress(Attr.XorPeerAddress, ip, 4000).bytes(Attr.Data, Buffer.from("payload"));
      return c.send(w.finish());
    };
    expect(send("8.8.8.8")).toEqual([{ kind: "ignore", reason: "indication-dropped" }]);
    c.peer(Method.CreatePermission, "8.8.8.8", 0);
    const [a] = send("8.8.8.8");
    expect(a).toMatchObject({ kind: "send-peer", relay: ep, peer: { address: "8.8.8.8", port: 4000 } });
    expect((a as Extract<TurnAction, { kind: "send-peer" }>).data.toString()).toBe("payload");
  });

  it("unauthenticated Allocate floods from many sources leave no state behind", () => {
    const core = new TurnCore(options());
    const req = new StunWriter(Method.Allocate, MessageClass.Request).u32(Attr.RequestedTransport, 17 << 24).finish();
    for (let i = 0; i < 20_000; i++) {
      const t = tuple(`198.51.${(i >> 8) & 255}.${i & 255}`, 1024 + (i % 60000));
      const [a] = core.handleStun(req, t, now);
      expect(a!.kind).toBe("reply");
    }
    expect(Object.values(core.tableSizes()).every((n) => n === 0)).toBe(true);
    expect(core.metrics.challenges).toBe(20_000);
  });

  it("bad-integrity floods from many sources keep the limiter bounded", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, { username: creds().username, password: "bad" });
    c.allocate();
    const body = c.build(Method.Allocate, (w) => w.u32(Attr.RequestedTransport, 17 << 24));
    // The nonce is bound to c's address, so replaying it from elsewhere is 438 (no limiter entry);
    // failures from c's address itself count once per source.
    for (let i = 0; i < 30_000; i++) core.handleStun(body, tuple(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1), now);
    expect(core.tableSizes().limiter).toBeLessThanOrEqual(16_384);
  });

  it("truncated, oversized and garbage messages are counted drops, never exceptions", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.allocate();
    const good = c.build(Method.Refresh);
    const cases = [
      Buffer.alloc(0),
      Buffer.from([0x00]),
      good.subarray(0, 19),
      good.subarray(0, good.length - 1),
      Buffer.concat([good, Buffer.alloc(65536)]),
      Buffer.from("GET / HTTP/1.1\r\n\r\n"),
    ];
    for (const b of cases) expect(core.handleStun(b, c.t, now)[0]!.kind).toBe("ignore");
    const badFp = Buffer.from(good);
    badFp[badFp.length - 1] = badFp[badFp.length - 1]! ^ 0xff;
    expect(core.handleStun(badFp, c.t, now)).toEqual([{ kind: "ignore", reason: "bad-fingerprint" }]);
    expect(core.channelDataFromClient(c.t.key, Buffer.from([0x40, 0x00, 0xff, 0xff, 1]), now)).toBeUndefined();
    expect(core.metrics.malformed).toBe(cases.length + 2);
  });

  it("survives arbitrary bytes and arbitrary attribute soups from an authenticated client", () => {
    const core = new TurnCore(options());
    const c = new Client(core, clock, creds());
    c.allocate();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const out = core.handleStun(Buffer.from(bytes), c.t, now);
        expect(Array.isArray(out)).toBe(true);
        core.channelDataFromClient(c.t.key, Buffer.from(bytes), now);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.constantFrom(Method.Allocate, Method.Refresh, Method.CreatePermission, Method.ChannelBind, Method.Binding, 0x00b),
        fc.array(fc.record({ type: fc.integer({ min: 0, max: 0xffff }), value: fc.uint8Array({ maxLength: 24 }) }), { maxLength: 6 }),
        (method, attrs) => {
          const buf = c.build(method, (w) => {
            for (const a of attrs) if (![Attr.MessageIntegrity, Attr.MessageIntegritySha256, Attr.Fingerprint].includes(a.type as never)) w.bytes(a.type, a.value);
          });
          const out = core.handleStun(buf, c.t, now);
          expect(out.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it("a closed TCP connection takes its allocation with it; closeSubject revokes a user", () => {
    const core = new TurnCore(options());
    const t = tuple("203.0.113.20", 5, "tcp");
    const c = new Client(core, clock, creds("dave"), t);
    const ep = endpoint(50400);
    c.allocate(undefined, [ep]);
    expect(core.transportClosed(t.key)).toEqual([{ kind: "release-relay", endpoint: ep }]);
    const d = new Client(core, clock, creds("erin"));
    const ep2 = endpoint(50401);
    d.allocate(undefined, [ep2]);
    expect(core.closeSubject("erin")).toEqual([{ kind: "release-relay", endpoint: ep2 }]);
    expect(core.allocationCount).toBe(0);
    expect(core.close()).toEqual([]);
    expect(core.handleStun(c.build(Method.Refresh), t, now)).toEqual([{ kind: "ignore", reason: "closed" }]);
  });

  it("Refresh with lifetime 0 over TCP or TLS gets no answer: the success comes before the connection is ended", () => {
    for (const transport of ["tcp", "tls"] as const) {
      const core = new TurnCore(options());
      const t = tuple("203.0.113.21", 7, transport);
      const c = new Client(core, clock, creds("dave"), t);
      const ep = endpoint(50410);
      c.allocate(undefined, [ep]);
      const actions = c.request(Method.Refresh, (w) => w.u32(Attr.Lifetime, 0));
      expect(actions.map((a) => a.kind)).toEqual(["reply", "release-relay", "end-client"]);
      expect(replyOf(actions).cls).toBe(MessageClass.Success);
    }
  });

  it("a WHEP viewer that closes takes the allocations of its peer connection along (every transport), and no one else's", () => {
    const core = new TurnCore(options());
    const tile = creds("alice", 3600, "sessionRefAAAAAA");
    const [udp, tcp, tls] = [endpoint(50600), endpoint(50601), endpoint(50602)];
    new Client(core, clock, tile).allocate(undefined, [udp]);
    new Client(core, clock, tile, tuple("203.0.113.30", 9, "tcp")).allocate(undefined, [tcp]);
    new Client(core, clock, tile, tuple("203.0.113.30", 10, "tls")).allocate(undefined, [tls]);
    now += 1000; // another tile, other credentials
    const otherTile = new Client(core, clock, creds("alice", 3600, "sessionRefAAAAAA"));
    otherTile.allocate();
    const mallory = new Client(core, clock, creds("mallory"));
    const mal = endpoint(50603);
    mallory.allocate(undefined, [mal]);
    // Someone else naming alice's relay cannot close it.
    expect(core.closeClientOf("mallory", [{ family: 4, address: udp.external, port: udp.port }]).length).toBe(0);
    const out = core.closeClientOf("alice", [{ family: 4, address: udp.external, port: udp.port }]);
    expect(out.filter((a) => a.kind === "release-relay").length).toBe(3);
    expect(out.filter((a) => a.kind === "end-client").length).toBe(2);
    expect(core.allocationCount).toBe(2);
  });

  it("a viewer whose page named its credentials (no relay in its offer) takes that peer connection's allocations along, and no one else's", () => {
    const core = new TurnCore(options());
    const tile = creds("alice", 3600, "sessionRefAAAAAA");
    new Client(core, clock, tile).allocate(undefined, [endpoint(50610)]);
    new Client(core, clock, tile, tuple("203.0.113.31", 9, "tcp")).allocate(undefined, [endpoint(50611)]);
    new Client(core, clock, creds("alice", 3600, "sessionRefAAAAAA")).allocate(undefined, [endpoint(50612)]);
    const mallory = creds("mallory");
    new Client(core, clock, mallory).allocate(undefined, [endpoint(50613)]);
    // Naming someone else's credentials closes nothing of theirs.
    expect(core.closeClientOf("alice", [], [mallory.username]).length).toBe(0);
    expect(core.closeClientOf("mallory", [], [tile.username]).length).toBe(0);
    const out = core.closeClientOf("alice", [], [tile.username]);
    expect(out.filter((a) => a.kind === "release-relay").length).toBe(2);
    expect(core.allocationCount).toBe(2);
  });

  it("Binding requests get the reflexive address without credentials", () => {
    const core = new TurnCore(options());
    const t = tuple("203.0.113.77", 6000);
    const m = replyOf(core.handleStun(new StunWriter(Method.Binding, MessageClass.Request).finish(), t, now));
    expect(attrXorAddress(m, getAttr(m, Attr.XorMappedAddress)!)).toEqual({ family: 4, address: "203.0.113.77", port: 6000 });
  });
});
