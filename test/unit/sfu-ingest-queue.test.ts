/**
 * The media worker's ingest queue: arrival order across media and control items, work
 * cut into slices with the event loop given a turn between them, and the backlog bound
 * (oldest media dropped whole, counted). Fake clock and scheduler: no timing involved.
 */
import { describe, expect, it } from "vitest";
import { IngestQueue } from "../../sfu/ingest-queue.ts";
import { encodeRecord, RecordKind } from "../../sfu/worker-protocol.ts";

/** A media batch of `n` RTP records whose first payload byte is `first`, `first + 1`, … */
function batch(first: number, n: number, size = 100): Uint8Array {
  const out = Buffer.alloc(n * (12 + size));
  let off = 0;
  for (let i = 0; i < n; i++) off = encodeRecord(out, off, RecordKind.RTP, 0, Buffer.alloc(size, first + i), 1000 + i);
  return out;
}

function rig(o: { sliceMs?: number; maxBytes?: number; costMs?: number } = {}) {
  let now = 0;
  const pending: Array<() => void> = [];
  const seen: string[] = [];
  const dropped: Array<[string, number]> = [];
  const errors: unknown[] = [];
  const q = new IngestQueue({
    onRecord: (cam, kind, _track, packet) => {
      if (packet[0] === 0xee) throw new Error("bad record");
      now += o.costMs ?? 1; // each record "takes" this long
      seen.push(`${cam}:${kind === RecordKind.RTP ? "rtp" : "rtcp"}:${packet[0]}`);
    },
    onDropped: (cam, n) => dropped.push([cam, n]),
    onError: (err) => errors.push(err),
    now: () => now,
    cpuNow: () => now,
    schedule: (fn) => pending.push(fn),
    ...(o.sliceMs !== undefined ? { sliceMs: o.sliceMs } : {}),
    ...(o.maxBytes !== undefined ? { maxBytes: o.maxBytes } : {}),
  });
  /** Runs scheduled turns until none is left; returns how many there were. */
  const turns = () => {
    let n = 0;
    while (pending.length > 0) {
      pending.shift()!();
      n++;
    }
    return n;
  };
  return { q, seen, dropped, errors, turns, pending };
}

describe("IngestQueue", () => {
  it("fans out a short batch at once, in order", () => {
    const r = rig();
    r.q.push({ t: "media", cam: "a", data: batch(1, 3) });
    expect(r.seen).toEqual(["a:rtp:1", "a:rtp:2", "a:rtp:3"]);
    expect(r.pending).toHaveLength(0);
    expect(r.q.backlogBytes).toBe(0);
  });

  it("gives the event loop a turn after each slice and resumes where it stopped", () => {
    const r = rig({ sliceMs: 8, costMs: 3 });
    r.q.push({ t: "media", cam: "a", data: batch(1, 10) });
    // 3 ms a record: the slice ends after the 3rd record (9 ms > 8 ms).
    expect(r.seen).toHaveLength(3);
    expect(r.pending).toHaveLength(1);
    // Meanwhile more arrives: it waits behind the rest, and so does a control step.
    r.q.push({ t: "control", cam: "a", run: () => r.seen.push("a:tracks") });
    r.q.push({ t: "media", cam: "b", data: batch(50, 2) });
    expect(r.seen).toHaveLength(3);
    expect(r.turns()).toBeGreaterThanOrEqual(3);
    expect(r.seen).toEqual([...Array.from({ length: 10 }, (_, i) => `a:rtp:${i + 1}`), "a:tracks", "b:rtp:50", "b:rtp:51"]);
    expect(r.q.yields).toBeGreaterThanOrEqual(3);
    expect(r.q.backlogBytes).toBe(0);
  });

  it("drops the oldest media whole past its bound, counts it, and keeps control steps", () => {
    const one = batch(1, 10).byteLength; // 1120 bytes
    const r = rig({ sliceMs: 1, costMs: 2, maxBytes: 2.5 * one });
    r.q.push({ t: "media", cam: "a", data: batch(1, 10) }); // 1 record done, 9 waiting
    r.q.push({ t: "control", cam: "a", run: () => r.seen.push("a:down") });
    r.q.push({ t: "media", cam: "a", data: batch(20, 10) });
    expect(r.dropped).toEqual([]);
    r.q.push({ t: "media", cam: "b", data: batch(40, 10) }); // 3 batches > 2.5: the oldest goes
    expect(r.dropped).toEqual([["a", 9]]); // what was left of it
    r.turns();
    expect(r.seen).toEqual(["a:rtp:1", "a:down", ...Array.from({ length: 10 }, (_, i) => `a:rtp:${20 + i}`), ...Array.from({ length: 10 }, (_, i) => `b:rtp:${40 + i}`)]);
    expect(r.q.backlogBytes).toBe(0);
  });

  it("measures its longest slice, writes queued during the slice included", async () => {
    const r = rig({ sliceMs: 100, costMs: 3 });
    r.q.push({ t: "media", cam: "a", data: batch(1, 2) });
    await Promise.resolve();
    expect(r.q.sliceMaxMs).toBe(6);
    r.q.push({ t: "media", cam: "a", data: batch(3, 1) });
    await Promise.resolve();
    expect(r.q.sliceMaxMs).toBe(6); // the longest, not the last
    r.q.resetMeasurements();
    expect(r.q.sliceMaxMs).toBe(0);
  });

  it("reports a record that throws and goes on with the next batch", () => {
    const r = rig();
    const bad = Buffer.alloc(12 + 10);
    encodeRecord(bad, 0, RecordKind.RTP, 0, Buffer.alloc(10, 0xee), 1);
    r.q.push({ t: "media", cam: "a", data: bad });
    r.q.push({ t: "media", cam: "a", data: batch(5, 1) });
    expect(r.errors).toHaveLength(1);
    expect(r.seen).toEqual(["a:rtp:5"]);
    expect(r.q.backlogBytes).toBe(0);
  });
});
