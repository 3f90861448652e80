/**
 * RFC 7798: H.265 depacketization (single NAL, AP, FU, DONL) and packetization to a path MTU,
 * round trip, and malformed input as counted drops.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { H265Depacketizer } from "../../sfu/h265/depacketizer.ts";
import { h265Type, parseH265Sprops, toAnnexB } from "../../sfu/h265/nal.ts";
import { H265Normalizer } from "../../sfu/h265/normalizer.ts";
import { buildAp, packetizeH265 } from "../../sfu/h265/packetizer.ts";

/** A NAL unit of `type` (layer 0, TID 1) and `size` bytes. */
function nal(type: number, size: number, fill = 0xab): Buffer {
  const b = Buffer.alloc(size, fill);
  b[0] = type << 1;
  b[1] = 1;
  return b;
}

describe("H.265 packetizer", () => {
  it("aggregates small NALs, sends fitting ones alone, fragments large ones, all within the MTU", () => {
    const vps = nal(32, 24);
    const sps = nal(33, 40);
    const pps = nal(34, 8);
    const idr = nal(19, 5000);
    const out = packetizeH265([vps, sps, pps, idr], 1200);
    expect(h265Type(out[0]![0]!)).toBe(48); // AP with the three parameter sets
    for (const p of out) expect(p.length).toBeLessThanOrEqual(1200);
    const fus = out.slice(1);
    expect(fus.every((p) => h265Type(p[0]!) === 49)).toBe(true);
    expect(fus[0]![2]! & 0x80).toBe(0x80);
    expect(fus.at(-1)![2]! & 0x40).toBe(0x40);
  });

  it("round-trips through the depacketizer for any NAL sizes and MTU (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.constantFrom(1, 19, 32, 33, 34, 39), size: fc.integer({ min: 3, max: 4000 }) }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 4, max: 1400 }),
        (spec, mtu) => {
          const nals = spec.map((s, i) => nal(s.type, s.size, i));
          const payloads = packetizeH265(nals, mtu);
          for (const p of payloads) expect(p.length).toBeLessThanOrEqual(mtu);
          const d = new H265Depacketizer();
          const aus = payloads.flatMap((p, i) => d.push(p, 90, i === payloads.length - 1, false));
          const vcl = spec.some((s) => s.type < 32);
          if (!vcl) return; // parameter sets alone wait for their picture
          expect(aus).toHaveLength(1);
          expect(aus[0]!.nals).toEqual(nals);
          expect(aus[0]!.irap).toBe(spec.some((s) => s.type === 19));
          expect(d.drops).toEqual({ malformed: 0, fragmentLost: 0, tooLarge: 0, unsupported: 0 });
        },
      ),
    );
  });
});

describe("H.265 depacketizer", () => {
  it("reads APs and FUs with DONL", () => {
    const d = new H265Depacketizer({ donl: true });
    const a = nal(32, 10);
    const b = nal(33, 12);
    // AP: header, DONL, size+NAL, DOND, size+NAL
    const ap = Buffer.concat([Buffer.from([48 << 1, 1, 0, 5, 0, a.length]), a, Buffer.from([0, 0, b.length]), b]);
    expect(d.push(ap, 1, false, false)).toEqual([]);
    const slice = nal(1, 50);
    const fu = (start: boolean, end: boolean, data: Buffer) => Buffer.concat([Buffer.from([49 << 1, 1, (start ? 0x80 : 0) | (end ? 0x40 : 0) | 1, 0, 6]), data]);
    d.push(fu(true, false, slice.subarray(2, 20)), 1, false, false);
    const out = d.push(fu(false, true, slice.subarray(20)), 1, true, false);
    expect(out).toHaveLength(1);
    expect(out[0]!.nals).toEqual([a, b, slice]);
  });

  it("drops a fragmented NAL that lost a piece, marks the AU damaged, and never throws (property)", () => {
    const d = new H265Depacketizer();
    const slice = nal(1, 3000);
    const payloads = packetizeH265([slice], 1000);
    d.push(payloads[0]!, 7, false, false);
    const out = d.push(payloads[2]!, 7, true, true);
    expect(out).toEqual([]);
    expect(d.drops.fragmentLost).toBeGreaterThan(0);
    // The picture after a loss may reference what was lost: damaged too; the one after it is clean.
    expect(d.push(nal(1, 10), 8, true, false)[0]!.damaged).toBe(true);
    expect(d.push(nal(1, 10), 9, true, false)[0]!.damaged).toBe(false);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), fc.boolean(), (bytes, marker, lost) => {
        for (const au of d.push(Buffer.from(bytes), 9, marker, lost)) expect(au.nals.length).toBeGreaterThan(0);
      }),
    );
    expect(d.drops.malformed).toBeGreaterThan(0);
  });

  it("refuses F-bit NALs, PACI and a truncated AP, counting each", () => {
    const d = new H265Depacketizer();
    d.push(Buffer.from([0x80 | (1 << 1), 1, 0]), 1, false, false);
    d.push(Buffer.from([50 << 1, 1, 0, 0]), 1, false, false);
    d.push(Buffer.from([48 << 1, 1, 0, 40, 1, 2]), 1, true, false);
    expect(d.drops).toMatchObject({ malformed: 2, unsupported: 1 });
  });

  it("reads sprop-vps/sps/pps and writes Annex-B", () => {
    const vps = nal(32, 6);
    const fmtp = `sprop-vps=${vps.toString("base64")};sprop-sps=!!;sprop-pps=${nal(34, 4).toString("base64")}`;
    expect(parseH265Sprops(fmtp).map((n) => h265Type(n[0]!))).toEqual([32, 34]);
    expect(toAnnexB([vps]).subarray(0, 4)).toEqual(Buffer.from([0, 0, 0, 1]));
    expect(h265Type(buildAp([vps, vps])[0]!)).toBe(48);
  });
});

describe("H.265 normalizer (passthrough to viewers)", () => {
  it("re-packetizes access units to the MTU, puts parameter sets before an IRAP that lacks them, and flags the keyframe start", () => {
    const vps = nal(32, 20, 1);
    const sps = nal(33, 30, 2);
    const pps = nal(34, 8, 3);
    const fmtp = `sprop-vps=${vps.toString("base64")};sprop-sps=${sps.toString("base64")};sprop-pps=${pps.toString("base64")}`;
    const n = new H265Normalizer({ maxPayload: 1000, fmtp });
    // The camera sends 1400-byte packets (its own MTU) and no parameter sets in band.
    const idr = nal(19, 5000, 4);
    const cam = packetizeH265([idr], 1400);
    const out = cam.flatMap((p, i) => n.push(p, i === cam.length - 1, 3000).map((o) => ({ ...o })));
    expect(out.every((o) => o.payload.length <= 1000)).toBe(true);
    expect(out[0]!.keyframeStart).toBe(true);
    expect(out.slice(1).some((o) => o.keyframeStart)).toBe(false);
    expect(out.map((o) => o.marker)).toEqual(out.map((_o, i) => i === out.length - 1));
    const d = new H265Depacketizer();
    const aus = out.flatMap((o) => d.push(o.payload, o.timestamp, o.marker, false));
    expect(aus).toHaveLength(1);
    expect(aus[0]!.nals).toEqual([vps, sps, pps, idr]);
    expect(n.stats).toMatchObject({ parameterSetsInserted: 1, keyframes: 1, refragmented: cam.filter((p) => p.length > 1000).length });

    // In-band sets replace the SDP's; a non-IRAP picture gets none; packets wait for their access unit.
    const sps2 = nal(33, 31, 9);
    const p1 = packetizeH265([vps, sps2, pps, nal(19, 300, 5)], 1400);
    for (const p of p1.slice(0, -1)) expect(n.push(p, false, 6000)).toHaveLength(0);
    n.push(p1.at(-1)!, true, 6000);
    const next = n.push(nal(1, 200, 6), true, 9000).map((o) => ({ ...o }));
    expect(next).toHaveLength(1);
    expect(next[0]!.keyframeStart).toBe(false);
    const idr2 = packetizeH265([nal(19, 100, 7)], 1400);
    const again = n.push(idr2[0]!, true, 12000);
    expect(new H265Depacketizer().push(again[0]!.payload, 1, true, false)[0]!.nals.slice(0, 3)).toEqual([vps, sps2, pps]);
  });
});
