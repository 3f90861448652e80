import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { H264Depacketizer, type AccessUnit } from "../../sfu/h264/depacketizer.ts";
import { parseSps } from "../../sfu/h264/nal.ts";
import { parseRtpHeader } from "../../sfu/rtp/packet.ts";
import { GST_CAPTURE, rtpCapture } from "../fixtures/h264/fixtures.ts";

interface Pkt {
  payload: Buffer;
  seq: number;
  ts: number;
  marker: boolean;
}

function capture(): Pkt[] {
  return rtpCapture(GST_CAPTURE).map((p) => {
    const h = parseRtpHeader(p)!;
    return { payload: p.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength), seq: h.sequenceNumber, ts: h.timestamp, marker: h.marker };
  });
}

function run(d: H264Depacketizer, pkts: Pkt[]): AccessUnit[] {
  const out: AccessUnit[] = [];
  for (const p of pkts) out.push(...d.push(p.payload, p.seq, p.ts, p.marker));
  return out;
}

describe("H264Depacketizer on GStreamer's packets", () => {
  it("rebuilds 47 access units with 2 keyframes and a 320x240 SPS", () => {
    const d = new H264Depacketizer();
    const aus = run(d, capture());
    expect(aus).toHaveLength(47);
    expect(aus.filter((a) => a.keyframe)).toHaveLength(2);
    expect(aus.every((a) => a.complete)).toBe(true);
    const key = aus.find((a) => a.keyframe)!;
    expect(key.nals.map((n) => n[0]! & 0x1f)).toEqual([9, 7, 8, 6, 5, 5]); // AUD SPS PPS SEI and 2 IDR slices
    expect(parseSps(key.nals[1]!)).toMatchObject({ width: 320, height: 240 });
    expect(d.stats).toMatchObject({ packets: 158, accessUnits: 47, fuDropped: 0, lost: 0, late: 0, malformed: 0, unsupported: 0 });
  });

  it("copies NALs by default and aliases the payload with copy: false", () => {
    const payload = Buffer.from("4101020304", "hex");
    const copied = new H264Depacketizer().push(payload, 1, 0, true)[0]!.nals[0]!;
    const aliased = new H264Depacketizer({ copy: false }).push(payload, 1, 0, true)[0]!.nals[0]!;
    payload[1] = 0xff;
    expect(copied.toString("hex")).toBe("4101020304");
    expect(aliased.toString("hex")).toBe("41ff020304");
  });

  it("drops a fragmented NAL whose middle fragment was lost, and counts it", () => {
    const pkts = capture();
    // Packet 6 (index 6) is the middle FU-A fragment of the first IDR slice.
    expect(pkts[6]!.payload[0]! & 0x1f).toBe(28);
    expect(pkts[6]!.payload[1]! & 0xc0).toBe(0);
    const d = new H264Depacketizer();
    const aus = run(d, pkts.filter((_, i) => i !== 6));
    expect(d.stats.fuDropped).toBe(1);
    expect(d.stats.lost).toBe(1);
    expect(aus[0]!.complete).toBe(false);
    expect(aus[0]!.nals.map((n) => n[0]! & 0x1f)).toEqual([9, 7, 8, 6, 5]);
    expect(aus.slice(1).every((a) => a.complete)).toBe(true);
  });

  it("closes a unit whose marker packet was lost when the timestamp changes", () => {
    const pkts = capture();
    const markerIdx = pkts.findIndex((p) => p.marker);
    const d = new H264Depacketizer();
    const aus = run(d, pkts.filter((_, i) => i !== markerIdx));
    expect(aus).toHaveLength(47);
    expect(aus[0]!.complete).toBe(false);
    expect(d.stats.fuDropped).toBe(1); // the IDR slice's end fragment was the marker packet
  });

  it("drops late and duplicate packets", () => {
    const pkts = capture().slice(0, 12);
    const d = new H264Depacketizer();
    const reordered = [...pkts.slice(0, 3), pkts[4]!, pkts[3]!, pkts[4]!, ...pkts.slice(5)];
    const aus = run(d, reordered);
    expect(d.stats.late).toBe(2);
    expect(d.stats.lost).toBe(1);
    expect(aus[0]!.complete).toBe(false);
  });

  it("counts malformed and unsupported payloads", () => {
    const d = new H264Depacketizer();
    let seq = 0;
    const push = (hex: string, marker = false) => d.push(Buffer.from(hex, "hex"), seq++, 0, marker);
    push(""); // empty
    push("e1aa"); // forbidden bit
    push("18000567"); // STAP-A size overruns
    push("180000"); // STAP-A zero size
    push("7cc5aa"); // FU-A with S and E
    push("7c"); // FU-A too short
    push("19aa"); // STAP-B
    push("1daa"); // FU-B
    push("00aa"); // reserved type 0
    push("7c45aa"); // end fragment without a start: ignored
    const aus = push("4101", true);
    expect(d.stats.malformed).toBe(6);
    expect(d.stats.unsupported).toBe(3);
    expect(aus).toHaveLength(1);
    expect(aus[0]!.nals.map((n) => n.toString("hex"))).toEqual(["4101"]);
    expect(aus[0]!.complete).toBe(false);
  });

  it("returns two units when a timestamp change closes one and the next is a single marked packet", () => {
    const d = new H264Depacketizer();
    expect(d.push(Buffer.from("6501", "hex"), 1, 0, false)).toHaveLength(0);
    const aus = d.push(Buffer.from("4102", "hex"), 2, 3000, true);
    expect(aus.map((a) => [a.timestamp, a.keyframe, a.complete])).toEqual([
      [0, true, false],
      [3000, false, true],
    ]);
  });

  it("never throws under random loss, reordering and duplication, and never emits half NALs", () => {
    const pkts = capture();
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: pkts.length - 1 }), { minLength: 0, maxLength: 400 }), fc.double({ min: 0, max: 0.5, noNaN: true }), fc.integer(), (swaps, lossRate, seed) => {
        let s = seed >>> 0;
        const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
        const order = pkts.filter(() => rnd() >= lossRate);
        for (let i = 0; i + 1 < swaps.length; i += 2) {
          const a = swaps[i]! % Math.max(1, order.length);
          const b = swaps[i + 1]! % Math.max(1, order.length);
          if (order[a] && order[b]) [order[a], order[b]] = [order[b]!, order[a]!];
        }
        if (order.length) order.push(order[Math.floor(rnd() * order.length)]!); // a duplicate
        const d = new H264Depacketizer();
        const aus = run(d, order);
        for (const au of aus) {
          for (const n of au.nals) {
            expect(n.length).toBeGreaterThan(0);
            expect(n[0]! & 0x80).toBe(0);
            expect(n[0]! & 0x1f).toBeLessThan(24);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("never throws on random payloads", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 5 }), fc.boolean())), (list) => {
        const d = new H264Depacketizer({ copy: false });
        for (const [p, seq, ts, m] of list) d.push(p, seq, ts, m);
      }),
      { numRuns: 500 },
    );
  });
});
