import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { H264Depacketizer, type AccessUnit } from "../../sfu/h264/depacketizer.ts";
import { DEFAULT_MAX_PAYLOAD, buildStapA, packetizeAccessUnit } from "../../sfu/h264/packetizer.ts";
import { splitAnnexB } from "../../sfu/h264/nal.ts";
import { BadInputError } from "../../config/errors.ts";
import { TESTSRC_H264, fixture } from "../fixtures/h264/fixtures.ts";

/** Groups the x264 clip's NALs into access units: a new unit starts at a slice after a slice, or at SPS/AUD. */
function accessUnits(nals: Buffer[]): Buffer[][] {
  const aus: Buffer[][] = [];
  let cur: Buffer[] = [];
  let sawSlice = false;
  for (const n of nals) {
    const t = n[0]! & 0x1f;
    const isSlice = t === 1 || t === 5;
    if (cur.length && (isSlice ? sawSlice : sawSlice && (t === 7 || t === 9 || t === 6))) {
      aus.push(cur);
      cur = [];
      sawSlice = false;
    }
    cur.push(n);
    if (isSlice) sawSlice = true;
  }
  if (cur.length) aus.push(cur);
  return aus;
}

/** Sends payloads as RTP (seq from `seq0`, one timestamp per unit, marker on the last) through a depacketizer. */
function roundTrip(aus: Uint8Array[][], maxPayload: number, seq0 = 65000): AccessUnit[] {
  const d = new H264Depacketizer();
  const out: AccessUnit[] = [];
  let seq = seq0;
  aus.forEach((au, i) => {
    const payloads = packetizeAccessUnit(au, { maxPayload });
    payloads.forEach((p, j) => {
      expect(p.length).toBeLessThanOrEqual(maxPayload);
      out.push(...d.push(p, seq++ & 0xffff, i * 3600, j === payloads.length - 1));
    });
  });
  expect(d.stats.fuDropped + d.stats.malformed + d.stats.lost + d.stats.late).toBe(0);
  return out;
}

describe("packetizeAccessUnit", () => {
  it("packetizes the x264 clip: STAP-A(SPS,PPS), single NALs and FU-A, ≤ 1200 bytes", () => {
    const aus = accessUnits(splitAnnexB(fixture(TESTSRC_H264)));
    expect(aus).toHaveLength(10);
    const first = packetizeAccessUnit(aus[0]!);
    expect(first[0]![0]! & 0x1f).toBe(24); // STAP-A
    expect(first[0]!.readUInt16BE(1)).toBe(aus[0]![0]!.length);
    expect(first[1]![0]! & 0x1f).toBe(6); // SEI alone
    expect(first.slice(2).every((p) => (p[0]! & 0x1f) === 28)).toBe(true); // IDR as FU-A
    expect(first[2]![1]! & 0x9f).toBe(0x85); // S bit + IDR
    expect(first[first.length - 1]![1]! & 0x5f).toBe(0x45); // E bit + IDR
    for (const p of first) expect(p.length).toBeLessThanOrEqual(DEFAULT_MAX_PAYLOAD);
    const back = roundTrip(aus, DEFAULT_MAX_PAYLOAD);
    expect(back.map((a) => a.nals)).toEqual(aus);
    expect(back.map((a) => a.keyframe)).toEqual([true, false, false, false, false, true, false, false, false, false]);
    expect(back.every((a) => a.complete)).toBe(true);
  });

  it("returns a NAL that fits as is (no copy)", () => {
    const nal = Buffer.from("4101020304", "hex");
    expect(packetizeAccessUnit([nal])[0]).toBe(nal);
  });

  it("keeps SPS and PPS apart when they do not fit one STAP-A, and skips empty NALs", () => {
    const sps = Buffer.alloc(40, 0x11);
    sps[0] = 0x67;
    const pps = Buffer.alloc(10, 0x22);
    pps[0] = 0x68;
    expect(packetizeAccessUnit([sps, pps], { maxPayload: 1 + 2 + 40 + 2 + 10 })).toEqual([buildStapA([sps, pps])]);
    const split = packetizeAccessUnit([sps, Buffer.alloc(0), pps], { maxPayload: 50 });
    expect(split.map((p) => p[0]! & 0x1f)).toEqual([7, 8]);
    expect(packetizeAccessUnit([sps, pps], { aggregateParameterSets: false }).map((p) => p[0]! & 0x1f)).toEqual([7, 8]);
  });

  it("rejects a maxPayload too small for FU-A", () => {
    expect(() => packetizeAccessUnit([Buffer.from([0x41])], { maxPayload: 2 })).toThrow(BadInputError);
  });

  it("round-trips random NALs (1..20000 bytes) at random max payloads", () => {
    const nal = fc.integer({ min: 1, max: 20000 }).chain((len) =>
      fc.tuple(fc.constantFrom(0x01, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0c), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 })).map(([type, nri, fill]) => {
        const b = Buffer.alloc(len, fill);
        b[0] = (nri << 5) | type;
        return b;
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.array(nal, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 64, max: 1500 }), fc.integer({ min: 0, max: 0xffff }), (aus, max, seq0) => {
        const back = roundTrip(aus, max, seq0);
        expect(back.map((a) => a.nals)).toEqual(aus);
      }),
      { numRuns: 150 },
    );
  });

  it("round-trips with the smallest ceilings", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 3, max: 8 }), (bytes, max) => {
        const nal = Buffer.from(bytes);
        nal[0] = (nal[0]! & 0x60) | 0x01;
        expect(roundTrip([[nal]], max)[0]!.nals).toEqual([nal]);
      }),
      { numRuns: 200 },
    );
  });
});
