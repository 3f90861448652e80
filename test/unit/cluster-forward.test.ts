/**
 * RTP forwarding between cluster nodes, below the gateway: the datagram codec (MAC, replay
 * window, tracks), the policy, and an owner's taps sending to a relay over two real UDP sockets on
 * loopback — tracks, sender reports and the cached keyframe first, live packets after, hostile
 * datagrams counted and dropped, a relay whose owner falls silent finding the owner again (and
 * taking the new owner's stream as a new upstream session), and an ended relay's SFU source
 * released once its last viewer has moved on.
 */
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import type { CameraId } from "../../config/ids.ts";
import { silentLogger } from "../../config/log.ts";
import { RelayEndpoint } from "../../gateway/cluster/forward-link.ts";
import { RelayReceivers, relaySourceId, type RelaySubscription } from "../../gateway/cluster/forward-receiver.ts";
import { chooseRoute } from "../../gateway/cluster/forward-relay.ts";
import { RelayTaps } from "../../gateway/cluster/forward-sender.ts";
import { decodeRelay, decodeTracks, encodeRelay, encodeTracks, relayLinkKey, RelayType, ReplayWindow } from "../../gateway/cluster/forward-wire.ts";
import type { SourceHandle, ViewerHandle } from "../../sfu/api.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";

const KEY = Buffer.alloc(32, 7);
const TRACKS: TrackSpec[] = [
  { kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: 96, fmtp: "packetization-mode=1" },
  { kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" },
];

function rtp(seq: number, payload: number[]): Buffer {
  const b = Buffer.alloc(12 + payload.length);
  b[0] = 0x80;
  b[1] = 96;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(seq * 3000, 4);
  b.writeUInt32BE(0x1234, 8);
  Buffer.from(payload).copy(b, 12);
  return b;
}
const IDR = [0x65, 1, 2, 3];
const P = [0x41, 9, 9];
const SR = Buffer.concat([Buffer.from([0x80, 200, 0, 6]), Buffer.alloc(24, 1)]);

/** What a relay source received, in order. */
class RecordingSource implements MediaSink {
  readonly log: string[] = [];
  viewerCount = 1;
  keyframe = false;
  setTracks(t: readonly TrackSpec[]): void {
    this.log.push(`tracks ${t.length}`);
  }
  pushRtp(track: number, p: Buffer): void {
    if (p[12] === 0x65) this.keyframe = true;
    this.log.push(`rtp ${track} ${p.readUInt16BE(2)}`);
  }
  pushRtcp(track: number, p: Buffer): void {
    this.log.push(`rtcp ${track} ${p[1]}`);
  }
  upstreamDown(reason: string): void {
    this.log.push(`down ${reason}`);
  }
  stats() {
    return { hasKeyframe: this.keyframe };
  }
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("forwarding datagrams", () => {
  it("verify under the link's key only, and the payload comes back unchanged", () => {
    const key = relayLinkKey(KEY, 42, "ab".repeat(16));
    const d = encodeRelay(key, { type: RelayType.rtp, channel: 42, counter: 9, track: 1, epoch: 3 }, Buffer.from("hello"));
    const ok = decodeRelay(d, key);
    expect(ok).toMatchObject({ ok: true, header: { type: RelayType.rtp, channel: 42, counter: 9, track: 1, epoch: 3 } });
    expect(ok.ok && ok.payload.toString()).toBe("hello");
    // Another nonce (another link), a flipped payload bit, a truncated datagram, a foreign one.
    expect(decodeRelay(d, relayLinkKey(KEY, 42, "cd".repeat(16)))).toEqual({ ok: false, reason: "badAuth" });
    const flipped = Buffer.from(d);
    flipped[17]! ^= 1;
    expect(decodeRelay(flipped, key)).toEqual({ ok: false, reason: "badAuth" });
    expect(decodeRelay(d.subarray(0, 20), key)).toEqual({ ok: false, reason: "malformed" });
    expect(decodeRelay(Buffer.alloc(64), key)).toEqual({ ok: false, reason: "malformed" });
  });

  it("a counter is accepted once, reordering within 64 is kept, older is refused", () => {
    const w = new ReplayWindow();
    expect([1, 2, 5, 3, 5, 2].map((c) => w.accept(c))).toEqual([true, true, true, true, false, false]);
    expect(w.accept(200)).toBe(true);
    expect(w.accept(137)).toBe(true);
    expect(w.accept(136)).toBe(false);
    expect(w.accept(137)).toBe(false);
  });

  it("tracks round-trip; anything else is refused", () => {
    expect(decodeTracks(encodeTracks(TRACKS))).toEqual(TRACKS);
    for (const bad of ["{", "{}", '[{"kind":"data"}]', '[{"kind":"video","codec":"H264","fmtp":"","clockRate":-1,"channels":1,"payloadType":96}]'])
      expect(decodeTracks(Buffer.from(bad))).toBeUndefined();
  });

  it("the policy answers through the owner until `above` viewers, then relays (and keeps relaying)", () => {
    expect(chooseRoute({ mode: "answer", above: 0, relayedHere: true, answeredHere: 9 })).toBe("answer");
    expect(chooseRoute({ mode: "forward", above: 0, relayedHere: false, answeredHere: 0 })).toBe("forward");
    expect(chooseRoute({ mode: "forward", above: 2, relayedHere: false, answeredHere: 1 })).toBe("answer");
    expect(chooseRoute({ mode: "forward", above: 2, relayedHere: false, answeredHere: 2 })).toBe("forward");
    expect(chooseRoute({ mode: "forward", above: 2, relayedHere: true, answeredHere: 0 })).toBe("forward");
  });
});

describe("an owner's tap forwarding to a relay over loopback UDP", () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0).reverse()) c();
  });

  async function setup(o: { ownerSelf?: () => boolean; owner?: () => Promise<{ self: boolean; node: string }>; silenceMs?: number } = {}) {
    const silenceMs = o.silenceMs ?? 400;
    const ownerEp = await RelayEndpoint.bind({ address: "127.0.0.1", port: 0, log: silentLogger });
    const relayEp = await RelayEndpoint.bind({ address: "127.0.0.1", port: 0, log: silentLogger });
    closers.push(() => ownerEp.close(), () => relayEp.close());
    const taps = new RelayTaps({ silenceMs, maxLinks: 4, log: silentLogger });
    closers.push(() => taps.close());
    taps.attach(ownerEp);
    const local: string[] = [];
    const demand: number[] = [];
    const tap = taps.wrap("cam" as CameraId, { setTracks: () => local.push("tracks"), pushRtp: () => local.push("rtp"), pushRtcp: () => local.push("rtcp"), upstreamDown: () => local.push("down") }, (n) =>
      demand.push(n),
    );
    const source = new RecordingSource();
    const switched: string[] = [];
    const onSwitched: ((info: { from: string; to: string; ok: boolean; reason: string }) => void)[] = [];
    const viewer = {
      id: "v1",
      state: "connected",
      sourceId: relaySourceId("cam" as CameraId),
      switchSource: (to: string) => switched.push(to),
      on: (event: string, fn: (typeof onSwitched)[number]) => {
        if (event === "switched") onSwitched.push(fn);
        return () => onSwitched.splice(onSwitched.indexOf(fn), 1);
      },
      once: () => () => {},
    } as unknown as ViewerHandle;
    let subscriptions = 0;
    const released: string[] = [];
    const sfu = {
      source: () => source as unknown as SourceHandle,
      findSource: () => source as unknown as SourceHandle,
      watchersOf: (id: CameraId) => (viewer.sourceId === id ? [{ kind: "viewer" as const, viewer }] : []),
      releaseSource: (id: CameraId) => source.viewerCount === 0 && released.push(id) > 0,
    };
    const receivers = new RelayReceivers({
      endpoint: relayEp,
      sfu,
      subscribe: async (_camera, _stream, node): Promise<RelaySubscription> => {
        subscriptions++;
        const channel = 1000 + subscriptions;
        const nonce = "0f".repeat(16);
        taps.open({ source: "cam" as CameraId, node, channel, key: relayLinkKey(KEY, channel, nonce), address: "127.0.0.1", port: relayEp.address.port });
        return { channel, key: relayLinkKey(KEY, channel, nonce), address: "127.0.0.1", port: ownerEp.address.port };
      },
      owner: o.owner ?? (async () => ({ self: o.ownerSelf?.() ?? false, node: "owner" })),
      localSource: (camera) => camera as CameraId,
      silenceMs,
      log: silentLogger,
    });
    closers.push(() => receivers.close());
    const switchEnded = (info: { from: string; to: string; ok: boolean; reason: string }) => {
      for (const fn of [...onSwitched]) fn(info);
    };
    return { ownerEp, relayEp, taps, tap, local, demand, source, receivers, switched, switchEnded, released, subscriptions: () => subscriptions };
  }

  it("a new relay gets tracks, the last sender report and the cached keyframe first, then live packets; its link is demand", async () => {
    const s = await setup();
    s.tap.setTracks(TRACKS);
    s.tap.pushRtp(0, rtp(1, P)); // before any keyframe: not cached
    s.tap.pushRtp(0, rtp(2, IDR));
    s.tap.pushRtp(0, rtp(3, P));
    s.tap.pushRtcp(0, SR);
    // The local source got everything, as without a tap.
    expect(s.local).toEqual(["tracks", "rtp", "rtp", "rtp", "rtcp"]);

    // Two viewers at once: one subscription.
    const [first, second] = await Promise.all([s.receivers.ensure("cam", "main", "owner"), s.receivers.ensure("cam", "main", "owner")]);
    expect([first, second]).toEqual(["cam@relay", "cam@relay"]);
    expect(s.subscriptions()).toBe(1);
    expect(s.demand).toEqual([1]);
    await until("the replay", () => s.source.log.length >= 4);
    expect(s.source.log.slice(0, 4)).toEqual(["tracks 2", "rtcp 0 200", "rtp 0 2", "rtp 0 3"]);
    s.tap.pushRtp(0, rtp(4, P));
    s.tap.pushRtp(1, rtp(5, [1, 2]));
    await until("live packets", () => s.source.log.length >= 6);
    expect(s.source.log.slice(4, 6)).toEqual(["rtp 0 4", "rtp 1 5"]);
    expect(s.relayEp.drops).toMatchObject({ badAuth: 0, replay: 0, staleEpoch: 0 });

    // The upstream session ends and starts again: the relay follows.
    s.tap.upstreamDown("recorder gone");
    s.tap.setTracks(TRACKS);
    s.tap.pushRtp(0, rtp(100, IDR));
    await until("the new session", () => s.source.log.includes("rtp 0 100"));
    expect(s.source.log.slice(6)).toEqual(["down at the camera's node: recorder gone", "tracks 2", "rtp 0 100"]);
  });

  it("hostile datagrams are counted and dropped, the link goes on", async () => {
    const s = await setup();
    s.tap.setTracks(TRACKS);
    s.tap.pushRtp(0, rtp(1, IDR));
    await s.receivers.ensure("cam", "main", "owner");
    await until("the keyframe", () => s.source.keyframe);
    const sock = dgram.createSocket("udp4");
    closers.push(() => sock.close());
    const to = s.relayEp.address.port;
    const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, to, "127.0.0.1", () => r()));
    const forged = encodeRelay(relayLinkKey(KEY, 1001, "00".repeat(16)), { type: RelayType.rtp, channel: 1001, counter: 99, track: 0, epoch: 1 }, rtp(50, IDR));
    const strange = encodeRelay(relayLinkKey(KEY, 777, "00".repeat(16)), { type: RelayType.rtp, channel: 777, counter: 1, track: 0, epoch: 1 }, rtp(51, IDR));
    await send(Buffer.from("not a relay datagram at all"));
    await send(forged);
    await send(strange);
    const received = s.relayEp.received;
    await until("three drops", () => s.relayEp.received >= received && s.relayEp.drops.malformed + s.relayEp.drops.badAuth + s.relayEp.drops.unknownChannel >= 3);
    expect(s.relayEp.drops).toMatchObject({ malformed: 1, badAuth: 1, unknownChannel: 1 });
    expect(s.source.log).not.toContain("rtp 0 50");
    s.tap.pushRtp(0, rtp(2, P));
    await until("the link goes on", () => s.source.log.includes("rtp 0 2"));
  });

  it("a relay whose owner falls silent subscribes again, and moves its viewers to the local pull once it owns the camera", async () => {
    let self = false;
    const s = await setup({ ownerSelf: () => self });
    s.tap.setTracks(TRACKS);
    s.tap.pushRtp(0, rtp(1, IDR));
    await s.receivers.ensure("cam", "main", "owner");
    await until("the keyframe", () => s.source.keyframe);
    // The owner's socket goes (a frozen or killed process): nothing more comes, not even a bye.
    s.ownerEp.close();
    await until("a second subscription", () => s.subscriptions() >= 2, 5000);
    expect(s.switched).toEqual([]);
    // Now the lease is this node's: no subscription, the viewers move.
    self = true;
    await until("the viewers moved to the local source", () => s.switched.length > 0, 5000);
    expect(s.switched[0]).toBe("cam");
    expect(s.receivers.count).toBe(0);
    // The local pull's first keyframe came too late for the switch: it is asked again (else the
    // viewer would stay on a relay that sends nothing any more), until it is made.
    s.switchEnded({ from: "cam@relay", to: "cam", ok: false, reason: "no keyframe in time" });
    expect(s.switched).toEqual(["cam", "cam"]);
    s.switchEnded({ from: "cam@relay", to: "cam", ok: true, reason: "this node pulls the camera now" });
    s.switchEnded({ from: "cam@relay", to: "cam", ok: false, reason: "no keyframe in time" });
    expect(s.switched).toEqual(["cam", "cam"]);
    // Its source stays while the viewer is still on it (its switch waits for a keyframe), then goes.
    expect(s.released).toEqual([]);
    s.source.viewerCount = 0;
    await until("the relay source released", () => s.released.length === 1, 5000);
    expect(s.released).toEqual(["cam@relay"]);
    expect(s.receivers.counters.released).toBe(1);
  });

  it("a relay that cannot find its owner tries again every tick (a quarter of the silence), not every silence", async () => {
    // The dead owner is still announced (or holds its lease) for a while after its death: every
    // try fails until then. A try a whole silence after each failure would add up to a silence
    // to the takeover; the tries come one tick apart.
    const tries: number[] = [];
    let found = false;
    const s = await setup({
      silenceMs: 1000,
      owner: async () => {
        tries.push(performance.now());
        if (!found) throw new Error("the camera's node owner does not answer");
        return { self: true, node: "me" };
      },
    });
    s.tap.setTracks(TRACKS);
    s.tap.pushRtp(0, rtp(1, IDR));
    await s.receivers.ensure("cam", "main", "owner");
    await until("the keyframe", () => s.source.keyframe);
    s.ownerEp.close();
    await until("five tries", () => tries.length >= 5, 10_000);
    const gaps = tries.slice(1).map((t, i) => t - tries[i]!);
    // A tick (250 ms) apart, not a silence (1000 ms) or more, and never faster than the tick.
    for (const g of gaps) {
      expect(g).toBeLessThan(900);
      expect(g).toBeGreaterThanOrEqual(200);
    }
    // Found at last (the lease lapsed): the viewers move to the local pull.
    found = true;
    await until("the viewers moved to the local source", () => s.switched.length > 0, 5000);
  });

  it("a relay nobody watches any more ends and releases its source", async () => {
    const s = await setup();
    s.tap.setTracks(TRACKS);
    s.tap.pushRtp(0, rtp(1, IDR));
    await s.receivers.ensure("cam", "main", "owner");
    s.source.viewerCount = 0;
    await until("released", () => s.released.length === 1, 5000);
    expect(s.receivers.count).toBe(0);
    expect(s.receivers.has("cam", "main")).toBe(false);
  });

  it("re-subscribed to a new owner, the relay takes its stream as a new upstream session even when both links are at the same epoch", async () => {
    // Regression: every link starts at epoch 1, and the new owner's first tracks were taken for
    // the dead link's once-a-second repeat: the source kept the dead owner's pictures as live.
    const relayEp = await RelayEndpoint.bind({ address: "127.0.0.1", port: 0, log: silentLogger });
    closers.push(() => relayEp.close());
    const owners = new Map<string, { ep: RelayEndpoint; taps: RelayTaps; tap: MediaSink }>();
    for (const node of ["a", "b"]) {
      const ep = await RelayEndpoint.bind({ address: "127.0.0.1", port: 0, log: silentLogger });
      const taps = new RelayTaps({ silenceMs: 400, maxLinks: 4, log: silentLogger });
      taps.attach(ep);
      closers.push(() => ep.close(), () => taps.close());
      const noop = { setTracks: () => {}, pushRtp: () => {}, pushRtcp: () => {}, upstreamDown: () => {} };
      owners.set(node, { ep, taps, tap: taps.wrap("cam" as CameraId, noop, () => {}) });
    }
    const source = new RecordingSource();
    let channel = 2000;
    let current = "a";
    const receivers = new RelayReceivers({
      endpoint: relayEp,
      sfu: { source: () => source as unknown as SourceHandle, findSource: () => undefined, watchersOf: () => [], releaseSource: () => false },
      subscribe: async (_camera, _stream, node): Promise<RelaySubscription> => {
        const o = owners.get(node)!;
        const ch = ++channel;
        const nonce = "1e".repeat(16);
        o.taps.open({ source: "cam" as CameraId, node: "relay", channel: ch, key: relayLinkKey(KEY, ch, nonce), address: "127.0.0.1", port: relayEp.address.port });
        return { channel: ch, key: relayLinkKey(KEY, ch, nonce), address: "127.0.0.1", port: o.ep.address.port };
      },
      owner: async () => ({ self: false, node: current }),
      localSource: (camera) => camera as CameraId,
      silenceMs: 400,
      log: silentLogger,
    });
    closers.push(() => receivers.close());
    const a = owners.get("a")!;
    a.tap.setTracks(TRACKS);
    a.tap.pushRtp(0, rtp(1, IDR));
    await receivers.ensure("cam", "main", "a");
    await until("a's keyframe", () => source.log.includes("rtp 0 1"));
    // Owner a dies; b pulls the camera now (its own session: other sequence numbers).
    a.ep.close();
    current = "b";
    const b = owners.get("b")!;
    b.tap.setTracks(TRACKS);
    b.tap.pushRtp(0, rtp(500, IDR));
    await until("b's keyframe at the relay", () => source.log.includes("rtp 0 500"), 5000);
    const after = source.log.slice(source.log.indexOf("rtp 0 1") + 1);
    expect(after).toEqual(["down the camera moved to b", "tracks 2", "rtp 0 500"]);
  });
});
