import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { CameraId } from "../../config/ids.ts";
import { SourceProxy, type SourceChannel } from "../../sfu/worker-pool/source-proxy.ts";
import { forEachRecord, type ToWorker } from "../../sfu/worker-protocol.ts";

/** A pool stand-in that keeps what the proxy broadcasts: control messages and media batches (records decoded). */
function recordingChannel() {
  const sent: Array<{ t: string; records?: Array<{ kind: number; track: number; first: number }> }> = [];
  const channel: SourceChannel = {
    broadcast(m: ToWorker, data?: { buffer: ArrayBuffer; length: number }) {
      if (!data) {
        sent.push({ t: m.t });
        return;
      }
      const records: Array<{ kind: number; track: number; first: number }> = [];
      forEachRecord(new Uint8Array(data.buffer, 0, data.length), (kind, track, packet) => records.push({ kind, track, first: packet[0]! }));
      sent.push({ t: m.t, records });
    },
    replicaStats: () => undefined,
  };
  return { channel, sent };
}

const packet = (tag: number) => Buffer.from([tag, 0x60, 0, tag, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa]);
const camera = "cam1" as CameraId;

describe("SourceProxy ingest batching (main thread → media workers)", () => {
  // Over RTSP/UDP every datagram is its own I/O callback, and Node runs the microtask queue
  // after each one: flushing on a microtask posted one message per packet to every worker
  // (measured with 4 cameras at 2 Mbit/s: 25,638 posts for ~25,000 packets; per turn of
  // the loop: 2,784). Packets of one turn of the event loop go out as one batch.
  it("sends packets pushed from separate callbacks of one loop turn as one batch, in order", async () => {
    const { channel, sent } = recordingChannel();
    const proxy = new SourceProxy(camera, channel);
    for (let i = 1; i <= 5; i++) {
      proxy.pushRtp(0, packet(i));
      // What Node does between two I/O callbacks: drain the microtask queue.
      await Promise.resolve();
      await Promise.resolve();
    }
    proxy.pushRtcp(0, packet(6));
    expect(sent).toEqual([]);
    await nextTurn();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.t).toBe("media");
    expect(sent[0]!.records!.map((r) => r.first)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(sent[0]!.records!.map((r) => r.kind)).toEqual([0, 0, 0, 0, 0, 1]);
  });

  it("still sends the packets before a change of tracks or an upstream loss ahead of it", async () => {
    const { channel, sent } = recordingChannel();
    const proxy = new SourceProxy(camera, channel);
    proxy.pushRtp(0, packet(1));
    proxy.upstreamDown("recorder gone");
    proxy.pushRtp(0, packet(2));
    proxy.setTracks([]);
    proxy.pushRtp(0, packet(3));
    await nextTurn();
    expect(sent.map((s) => (s.records ? `media ${s.records.map((r) => r.first).join(",")}` : s.t))).toEqual([
      "media 1",
      "down",
      "media 2",
      "tracks",
      "media 3",
    ]);
    // Nothing is left to send on a later turn.
    await nextTurn();
    expect(sent).toHaveLength(5);
  });

  it("counts every packet it was given", async () => {
    const { channel } = recordingChannel();
    const proxy = new SourceProxy(camera, channel);
    for (let i = 0; i < 40; i++) proxy.pushRtp(0, packet(i));
    await nextTurn();
    expect(proxy.stats().packetsIn).toBe(40);
  });
});
