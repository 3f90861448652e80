/**
 * The pieces of the forwarding hot path that are not SRTP: the direct UDP writer, the
 * per-fan-out send batch and the latency histogram. Real loopback sockets, no timing
 * assertions: what is checked is what arrives, in which order, and who owns a buffer.
 */
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { SrtpSession } from "werift";
import { LatencyHistogram } from "../../sfu/latency.ts";
import { fastPath } from "../../sfu/native/index.ts";
import { SrtpSender } from "../../sfu/srtp/context.ts";
import { deriveSrtpSessionKeys, SrtpProfile, srtpProfileParams } from "../../sfu/srtp/kdf.ts";
import { SendBatch, SendResult, UdpWriter } from "../../sfu/udp-writer.ts";

const sockets: dgram.Socket[] = [];
afterEach(async () => {
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r())).catch(() => {})));
});

async function socket(type: "udp4" | "udp6" = "udp4"): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, type === "udp4" ? "127.0.0.1" : "::1", () => r()));
  return s;
}

/** Resolves with the first `n` datagrams `s` receives. */
function receive(s: dgram.Socket, n: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} datagrams`)), 5000);
    s.on("message", (m) => {
      got.push(m);
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

describe("UdpWriter", () => {
  it("writes through Node's UDP handle synchronously, so the buffer is free again at once", async () => {
    const rx = await socket();
    const tx = await socket();
    const w = new UdpWriter(tx, rx.address().port, "127.0.0.1");
    expect(w.direct).toBe(true);
    const buf = Buffer.alloc(100);
    const arrived = receive(rx, 3);
    for (let i = 0; i < 3; i++) {
      buf.fill(i + 1);
      expect(w.send(buf, 10 + i)).toBe(SendResult.SENT); // the next fill cannot touch what was sent
    }
    const got = await arrived;
    expect(got.map((b) => [b.length, b[0]])).toEqual([
      [10, 1],
      [11, 2],
      [12, 3],
    ]);
    expect(w.stats).toEqual({ sync: 3, queued: 0, failed: 0 });
    expect(w.inFlight).toBe(0);
  });

  it("refuses, without throwing, once the socket is closed", async () => {
    const rx = await socket();
    const tx = dgram.createSocket("udp4");
    await new Promise<void>((r) => tx.bind(0, "127.0.0.1", () => r()));
    const w = new UdpWriter(tx, rx.address().port, "127.0.0.1");
    await new Promise<void>((r) => tx.close(() => r()));
    expect(w.send(Buffer.alloc(20), 20)).toBe(SendResult.FAILED);
    expect(w.stats.failed).toBe(1);
  });
});

describe.each([
  ["native", true],
  ["Node's handle", false],
])("SendBatch through %s", (_name, native) => {
  it("writes a fan-out in order at the end of the task, reuses buffers, and records live packets' latency", async () => {
    const rx = await socket();
    const tx = await socket();
    const latency = new LatencyHistogram();
    const batch = new SendBatch({ limit: 4, latency, native });
    const w = new UdpWriter(tx, rx.address().port, "127.0.0.1");
    const arrived = receive(rx, 6);
    const used = new Set<Buffer>();
    for (let i = 0; i < 6; i++) {
      const b = batch.take();
      used.add(b);
      b.fill(i);
      // Live packets carry their ingest time; i = 5 is a retransmission (0: not measured).
      batch.add(w, b, 50, i === 5 ? 0 : performance.now() - 1);
    }
    // The 4th add flushed (limit); the last two wait for the end of this task.
    expect(w.stats.sync).toBe(4);
    await Promise.resolve();
    expect(w.stats.sync).toBe(6);
    expect((await arrived).map((b) => b[0])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(latency.count).toBe(5);
    expect(latency.percentile(50)).toBeGreaterThanOrEqual(1);
    // Buffers went back to the pool: the next fan-out takes the same ones.
    expect(used.has(batch.take())).toBe(true);
  });

  it("delivers interleaved fan-outs to many sockets byte for byte, each socket's packets in order", async () => {
    const viewers = 5;
    const perViewer = 70; // more than one GSO send (64 segments) per socket
    const rxs = await Promise.all(Array.from({ length: viewers }, () => socket()));
    const txs = await Promise.all(Array.from({ length: viewers }, () => socket()));
    const ws = txs.map((tx, v) => new UdpWriter(tx, rxs[v]!.address().port, "127.0.0.1"));
    const arrived = rxs.map((rx) => receive(rx, perViewer));
    const batch = new SendBatch({ limit: 1024, native });
    const expected: string[][] = ws.map(() => []);
    // Packet-major, like a fan-out: packet p to every viewer, then p + 1. Runs of equal
    // sizes (GSO candidates) broken by shorter packets, as a frame's last fragment is.
    for (let p = 0; p < perViewer; p++) {
      const size = p % 9 === 8 ? 300 + p : 1228;
      for (let v = 0; v < viewers; v++) {
        const b = batch.take();
        for (let i = 0; i < size; i++) b[i] = (p * 31 + v * 7 + i) & 0xff;
        expected[v]!.push(b.subarray(0, size).toString("hex"));
        batch.add(ws[v]!, b, size, 0);
      }
    }
    batch.flush();
    for (let v = 0; v < viewers; v++) {
      const got = await arrived[v]!;
      expect(got.map((b) => b.toString("hex"))).toEqual(expected[v]);
      expect(ws[v]!.stats).toEqual({ sync: perViewer, queued: 0, failed: 0 });
    }
    if (native) expect(fastPath!.gso()).toBe(true);
  });

  it("counts datagrams for a socket closed before the flush as failed and keeps the others", async () => {
    const rx = await socket();
    const good = await socket();
    const gone = dgram.createSocket("udp4");
    await new Promise<void>((r) => gone.bind(0, "127.0.0.1", () => r()));
    const wGood = new UdpWriter(good, rx.address().port, "127.0.0.1");
    const wGone = new UdpWriter(gone, rx.address().port, "127.0.0.1");
    const arrived = receive(rx, 3);
    const batch = new SendBatch({ limit: 64, native });
    for (let i = 0; i < 3; i++) {
      batch.add(wGone, batch.take().fill(0xee), 40, 0);
      batch.add(wGood, batch.take().fill(i), 40, 0);
    }
    await new Promise<void>((r) => gone.close(() => r()));
    batch.flush();
    expect((await arrived).map((b) => b[0])).toEqual([0, 1, 2]);
    expect(wGone.stats).toEqual({ sync: 0, queued: 0, failed: 3 });
    expect(wGood.stats.sync).toBe(3);
  });

  it("writes to IPv6 peers", async () => {
    const rx = await socket("udp6");
    const tx = await socket("udp6");
    const w = new UdpWriter(tx, rx.address().port, "::1");
    if (native) expect(w.fd).toBeGreaterThanOrEqual(0);
    const arrived = receive(rx, 2);
    const batch = new SendBatch({ native });
    batch.add(w, batch.take().fill(6), 1200, 0);
    batch.add(w, batch.take().fill(7), 1200, 0);
    batch.flush();
    expect((await arrived).map((b) => [b.length, b[0]])).toEqual([
      [1200, 6],
      [1200, 7],
    ]);
  });
});

/** Our sender and werift's session that decrypts what it sends. */
function srtpPair(profile: SrtpProfile, native: boolean): { sender: SrtpSender; werift: SrtpSession } {
  const p = srtpProfileParams(profile)!;
  const key = randomBytes(p.keyLength);
  const salt = randomBytes(p.saltLength);
  const other = { key: randomBytes(p.keyLength), salt: randomBytes(p.saltLength) };
  return {
    sender: new SrtpSender(deriveSrtpSessionKeys(profile, key, salt), { native }),
    werift: new SrtpSession({
      keys: { localMasterKey: other.key, localMasterSalt: other.salt, remoteMasterKey: key, remoteMasterSalt: salt },
      profile,
    }),
  };
}

describe.each([
  ["sealed natively in one call", true],
  ["protected one by one in JavaScript", false],
])("SendBatch.addRtp, %s", (_name, native) => {
  it("every viewer's packets arrive in order and decrypt with werift, whatever each viewer's keys", async () => {
    // GCM and CM with native keys, GCM keyed in JavaScript (sealContext null): one batch.
    const viewers = [
      srtpPair(SrtpProfile.AEAD_AES_128_GCM, true),
      srtpPair(SrtpProfile.AES128_CM_HMAC_SHA1_80, true),
      srtpPair(SrtpProfile.AEAD_AES_128_GCM, false),
      srtpPair(SrtpProfile.AES128_CM_HMAC_SHA1_80, false),
    ];
    const perViewer = 70; // more than one GSO send per socket, and more than the batch limit in all
    const rxs = await Promise.all(viewers.map(() => socket()));
    const txs = await Promise.all(viewers.map(() => socket()));
    const ws = txs.map((tx, v) => new UdpWriter(tx, rxs[v]!.address().port, "127.0.0.1"));
    const arrived = rxs.map((rx) => receive(rx, perViewer));
    const latency = new LatencyHistogram();
    const batch = new SendBatch({ limit: 128, latency, native });
    const sent: Array<Array<{ seq: number; payload: Buffer }>> = viewers.map(() => []);
    for (let p = 0; p < perViewer; p++) {
      // Packet-major like a fan-out; a frame's last fragment is shorter.
      const payload = randomBytes(p % 9 === 8 ? 200 + p : 1188);
      for (let v = 0; v < viewers.length; v++) {
        const seq = (0xfff0 + p) & 0xffff; // wraps: the ROC must follow
        batch.addRtp(ws[v]!, viewers[v]!.sender, { marker: p % 9 === 8, payloadType: 96, sequenceNumber: seq, timestamp: p * 3000, ssrc: 0x1000 + v }, payload, performance.now());
        sent[v]!.push({ seq, payload });
      }
    }
    batch.flush();
    for (let v = 0; v < viewers.length; v++) {
      const got = (await arrived[v]!).map((d) => viewers[v]!.werift.decrypt(d));
      expect(got.map((d) => d.readUInt16BE(2))).toEqual(sent[v]!.map((x) => x.seq));
      expect(got.every((d, i) => d.subarray(12).equals(sent[v]![i]!.payload))).toBe(true);
      expect(ws[v]!.stats).toEqual({ sync: perViewer, queued: 0, failed: 0 });
    }
    expect(latency.count).toBe(viewers.length * perViewer);
  });

  it("a transport-wide sequence number goes in a header extension left in the clear, and werift decrypts each packet, in both profiles", async () => {
    const viewers = [srtpPair(SrtpProfile.AEAD_AES_128_GCM, true), srtpPair(SrtpProfile.AES128_CM_HMAC_SHA1_80, true), srtpPair(SrtpProfile.AEAD_AES_128_GCM, false)];
    const rxs = await Promise.all(viewers.map(() => socket()));
    const ws = await Promise.all(viewers.map(async (_, v) => new UdpWriter(await socket(), rxs[v]!.address().port, "127.0.0.1")));
    const arrived = rxs.map((rx) => receive(rx, 10));
    const batch = new SendBatch({ native });
    const payloads = Array.from({ length: 10 }, (_, i) => randomBytes(300 + 97 * i));
    for (let i = 0; i < 10; i++) {
      for (let v = 0; v < viewers.length; v++) {
        // Every other packet stamped (an audio stream would not be), the number wrapping.
        const h = { marker: false, payloadType: 96, sequenceNumber: i, timestamp: 0, ssrc: 5, transportSeq: i % 2 === 0 ? (0xfffe + i) & 0xffff : -1, transportCcId: 3 };
        batch.addRtp(ws[v]!, viewers[v]!.sender, h, payloads[i]!, 0);
      }
    }
    batch.flush();
    for (let v = 0; v < viewers.length; v++) {
      const wire = await arrived[v]!;
      // The extension is authenticated, not encrypted (RFC 3711 §3.1): readable on the wire.
      expect(wire.map((d) => (d[0]! & 0x10 ? d.subarray(12, 20).toString("hex") : ""))).toEqual(
        payloads.map((_, i) => (i % 2 === 0 ? `bede0001${"31"}${((0xfffe + i) & 0xffff).toString(16).padStart(4, "0")}00` : "")),
      );
      const got = wire.map((d) => viewers[v]!.werift.decrypt(d));
      expect(got.every((d, i) => d.subarray(i % 2 === 0 ? 20 : 12).equals(payloads[i]!))).toBe(true);
    }
  });

  it("a viewer whose route refused batched writes gets its packets sealed here and written through its socket's handle, in order", async () => {
    const v = srtpPair(SrtpProfile.AEAD_AES_128_GCM, true);
    const rx = await socket();
    const w = new UdpWriter(await socket(), rx.address().port, "127.0.0.1");
    w.nativeRefused = true; // as after EMSGSIZE from a GSO write
    const arrived = receive(rx, 20);
    const batch = new SendBatch({ native });
    const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(100 + i));
    payloads.forEach((p, i) => batch.addRtp(w, v.sender, { marker: false, payloadType: 96, sequenceNumber: i, timestamp: 0, ssrc: 9 }, p, 0));
    batch.flush();
    const got = (await arrived).map((d) => v.werift.decrypt(d));
    expect(got.map((d) => d.subarray(12).equals(payloads[d.readUInt16BE(2)]!))).toEqual(payloads.map(() => true));
    expect(got.map((d) => d.readUInt16BE(2))).toEqual(payloads.map((_, i) => i));
    expect(w.stats).toEqual({ sync: 20, queued: 0, failed: 0 });
  });

  it("a viewer whose keys were released before the flush loses its packets, counted; the others are untouched", async () => {
    const a = srtpPair(SrtpProfile.AEAD_AES_128_GCM, true);
    const b = srtpPair(SrtpProfile.AEAD_AES_128_GCM, true);
    const rxA = await socket();
    const rx = await socket();
    const wa = new UdpWriter(await socket(), rxA.address().port, "127.0.0.1");
    const wb = new UdpWriter(await socket(), rx.address().port, "127.0.0.1");
    const arrived = receive(rx, 3);
    const batch = new SendBatch({ native });
    for (let i = 0; i < 3; i++) {
      const h = { marker: false, payloadType: 96, sequenceNumber: i, timestamp: 0, ssrc: 7 };
      batch.addRtp(wa, a.sender, h, Buffer.alloc(100, i), 0);
      batch.addRtp(wb, b.sender, h, Buffer.alloc(100, i), 0);
    }
    a.sender.release(); // the viewer closed within the same task
    batch.flush();
    const got = (await arrived).map((d) => b.werift.decrypt(d));
    expect(got.map((d) => d[12])).toEqual([0, 1, 2]);
    expect(wb.stats.sync).toBe(3);
    // Native: nothing sealed with a freed key. JavaScript: protected before the release, so sent.
    expect(native ? wa.stats : { sync: wa.stats.sync }).toEqual(native ? { sync: 0, queued: 0, failed: 3 } : { sync: 3 });
  });
});

describe("native fast path: sealSend", () => {
  it("writes a run that cannot go natively through nobody (fd −1): sealed in the stage, result 0", async () => {
    const { sender, werift } = srtpPair(SrtpProfile.AEAD_AES_128_GCM, true);
    const stage = Buffer.alloc(2 * 2048);
    const payload = randomBytes(300);
    const rocs = new Uint32Array(2);
    rocs[0] = sender.stageRtp(stage, 0, { marker: true, payloadType: 100, sequenceNumber: 9, timestamp: 1, ssrc: 5 }, payload);
    const lens = new Int32Array([12 + 300, 0]);
    const results = new Int32Array(1);
    const n = fastPath!.sealSend(stage, 2048, lens, rocs, new Int32Array([0]), [sender.sealContext], [Buffer.alloc(16)], new Int32Array([-1]), new Int32Array([1]), 1, results);
    expect([n, results[0], lens[0]]).toEqual([0, 0, 12 + 300 + 16]);
    expect(werift.decrypt(stage.subarray(0, lens[0])).subarray(12).equals(payload)).toBe(true);
  });

  it("refuses inconsistent batches before sealing anything", () => {
    const { sender } = srtpPair(SrtpProfile.AEAD_AES_128_GCM, true);
    const stage = Buffer.alloc(2048).fill(0xab);
    const before = Buffer.from(stage);
    const args = (o: { slot?: number; lens?: number[]; order?: number[]; ends?: number[]; addr?: Buffer; ctx?: unknown }) =>
      fastPath!.sealSend(
        stage,
        o.slot ?? 2048,
        new Int32Array(o.lens ?? [100]),
        new Uint32Array(1),
        new Int32Array(o.order ?? [0]),
        [(o.ctx ?? sender.sealContext) as never],
        [o.addr ?? fastPath!.sockaddr("127.0.0.1", 9)],
        new Int32Array([-1]),
        new Int32Array(o.ends ?? [1]),
        1,
        new Int32Array(4),
      );
    expect(() => args({ order: [1] })).toThrow(/out of bounds/); // a slot past the stage
    expect(() => args({ lens: [2040] })).toThrow(/out of bounds/); // no room for the tag
    expect(() => args({ lens: [5] })).toThrow(/out of bounds/); // shorter than a header
    expect(() => args({ ends: [9] })).toThrow(/larger|order/);
    expect(() => args({ slot: 8 })).toThrow(/slot/);
    expect(() => args({ addr: Buffer.alloc(3) })).toThrow(/address/);
    expect(() => args({ ctx: {} })).toThrow(/expected kind/);
    expect(stage.equals(before)).toBe(true);
  });

  // Sealed twice, a slot grows by a second tag past the bound checked for it and the tag lands
  // beyond the slot's end (here: on the next packet).
  it("regression: refuses a slot listed twice in order, before sealing anything", () => {
    const { sender } = srtpPair(SrtpProfile.AEAD_AES_128_GCM, true);
    const stage = Buffer.alloc(2 * 2048).fill(0xab);
    const before = Buffer.from(stage);
    const lens = new Int32Array([2048 - 16, 100]);
    const call = (order: number[]) =>
      fastPath!.sealSend(
        stage,
        2048,
        lens,
        new Uint32Array(2),
        new Int32Array(order),
        [sender.sealContext, sender.sealContext],
        [fastPath!.sockaddr("127.0.0.1", 9), fastPath!.sockaddr("127.0.0.1", 9)],
        new Int32Array([-1, -1]),
        new Int32Array(order.length === 2 ? [1, 2] : [order.length]),
        order.length === 2 ? 2 : 1,
        new Int32Array(4),
      );
    expect(() => call([0, 0])).toThrow(/listed twice/); // two runs (two viewers) naming one slot
    expect(() => call([1, 0, 1])).toThrow(/listed twice/); // within one run
    expect(stage.equals(before)).toBe(true);
    expect([...lens]).toEqual([2048 - 16, 100]);
    // Each slot once is fine: both sealed, each within its slot.
    expect(call([1, 0])).toBe(0);
    expect([...lens]).toEqual([2048, 116]);
    expect(stage.subarray(2048 + 116).equals(before.subarray(2048 + 116))).toBe(true);
  });
});

describe("native fast path: socket addresses", () => {
  it("encodes IPv4 and IPv6 literals and refuses anything else", () => {
    const a4 = fastPath!.sockaddr("192.0.2.7", 5004);
    expect(a4.length).toBe(16);
    expect([a4.readUInt16LE(0), a4.readUInt16BE(2), [...a4.subarray(4, 8)]]).toEqual([2, 5004, [192, 0, 2, 7]]);
    const a6 = fastPath!.sockaddr("2001:db8::1%eth0", 443);
    expect(a6.length).toBe(28);
    expect([a6.readUInt16LE(0), a6.readUInt16BE(2), a6.subarray(8, 24).toString("hex")]).toEqual([10, 443, "20010db8000000000000000000000001"]);
    expect(() => fastPath!.sockaddr("localhost", 1)).toThrow(/not an IP address/);
    expect(() => fastPath!.sockaddr("1.2.3.4", 70000)).toThrow(/port/);
  });

  it("refuses inconsistent batches without touching any socket", async () => {
    const tx = await socket();
    const fd = new UdpWriter(tx, 9, "127.0.0.1").fd;
    const addr = fastPath!.sockaddr("127.0.0.1", 9);
    const r = new Int32Array(2);
    expect(() => fastPath!.sendBatch(new Int32Array([fd]), [Buffer.alloc(10)], new Int32Array([11]), [addr], 1, r)).toThrow(/past its buffer/);
    expect(() => fastPath!.sendBatch(new Int32Array([fd]), [Buffer.alloc(10)], new Int32Array([10]), [Buffer.alloc(3)], 1, r)).toThrow(/address/);
    expect(() => fastPath!.sendBatch(new Int32Array([fd]), [Buffer.alloc(10)], new Int32Array([10]), [addr], 2, r)).toThrow(/larger/);
  });
});

describe("LatencyHistogram", () => {
  it("reports percentiles within its bucket width, merges, and round-trips through JSON", () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 100); // 0.01 … 10 ms
    expect(h.count).toBe(1000);
    // 100 µs buckets above 2 ms: the upper edge of the value's bucket.
    expect(h.percentile(50)).toBeGreaterThanOrEqual(5);
    expect(h.percentile(50)).toBeLessThanOrEqual(5.1);
    expect(h.percentile(99)).toBeGreaterThanOrEqual(9.9);
    expect(h.percentile(99)).toBeLessThanOrEqual(10);
    expect(h.percentile(10)).toBeLessThanOrEqual(1.01); // 10 µs buckets below 2 ms
    expect(h.summary().max).toBe(10);
    const other = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(h.toJSON())) as ReturnType<LatencyHistogram["toJSON"]>);
    other.record(1500);
    h.merge(other);
    expect(h.count).toBe(2001);
    expect(h.summary().max).toBe(1500);
    h.reset();
    expect(h.summary()).toEqual({ count: 0, p50: 0, p99: 0, max: 0, mean: 0 });
  });
});
