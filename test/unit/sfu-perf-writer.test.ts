/**
 * The pieces of the forwarding hot path that are not SRTP: the direct UDP writer, the
 * per-fan-out send batch and the latency histogram. Real loopback sockets, no timing
 * assertions: what is checked is what arrives, in which order, and who owns a buffer.
 */
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { LatencyHistogram } from "../../sfu/latency.ts";
import { SendBatch, SendResult, UdpWriter } from "../../sfu/udp-writer.ts";

const sockets: dgram.Socket[] = [];
afterEach(async () => {
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r())).catch(() => {})));
});

async function socket(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
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

describe("SendBatch", () => {
  it("writes a fan-out in order at the end of the task, reuses buffers, and records live packets' latency", async () => {
    const rx = await socket();
    const tx = await socket();
    const latency = new LatencyHistogram();
    const batch = new SendBatch({ limit: 4, latency });
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
