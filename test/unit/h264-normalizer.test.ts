import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { H264Normalizer, type NormalizedPacket } from "../../sfu/h264/normalizer.ts";
import { H264Depacketizer, type AccessUnit } from "../../sfu/h264/depacketizer.ts";
import { packetizeAccessUnit } from "../../sfu/h264/packetizer.ts";
import { parseSpropParameterSets, splitAnnexB } from "../../sfu/h264/nal.ts";
import { parseRtpHeader } from "../../sfu/rtp/packet.ts";
import { GST_CAPTURE, GST_SPROP, TESTSRC_H264, fixture, rtpCapture } from "../fixtures/h264/fixtures.ts";

interface Pkt {
  payload: Buffer;
  ts: number;
  marker: boolean;
}

function capture(): Pkt[] {
  return rtpCapture(GST_CAPTURE).map((p) => {
    const h = parseRtpHeader(p)!;
    return { payload: p.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength), ts: h.timestamp, marker: h.marker };
  });
}

/** Runs packets through a normalizer, copying each output (objects are reused between pushes). */
function normalize(n: H264Normalizer, pkts: Pkt[]): NormalizedPacket[] {
  const out: NormalizedPacket[] = [];
  for (const p of pkts) for (const o of n.push(p.payload, p.marker, p.ts)) out.push({ ...o });
  return out;
}

function depacketize(pkts: { payload: Buffer; ts?: number; timestamp?: number; marker: boolean }[]): AccessUnit[] {
  const d = new H264Depacketizer();
  const aus: AccessUnit[] = [];
  pkts.forEach((p, i) => aus.push(...d.push(p.payload, i & 0xffff, (p.ts ?? p.timestamp)!, p.marker)));
  return aus;
}

const isParamSet = (b: Buffer) => (b[0]! & 0x1f) === 7 || (b[0]! & 0x1f) === 8;

describe("H264Normalizer on GStreamer's packets (in-band SPS/PPS, 1400-byte MTU)", () => {
  it("re-fragments to ≤ 1200 bytes without changing the NAL units", () => {
    const n = new H264Normalizer();
    const input = capture();
    const out = normalize(n, input);
    expect(Math.max(...input.map((p) => p.payload.length))).toBeGreaterThan(1200);
    for (const o of out) expect(o.payload.length).toBeLessThanOrEqual(1200);
    expect(depacketize(out)).toEqual(depacketize(input));
    expect(n.stats.refragmented).toBe(input.filter((p) => p.payload.length > 1200).length);
    expect(n.stats.parameterSetsInserted).toBe(0); // SPS and PPS precede each IDR in band
    expect(n.stats.keyframes).toBe(2);
    // The keyframe starts on the in-band SPS packet, not on the IDR that follows.
    const starts = out.filter((o) => o.keyframeStart);
    expect(starts.map((o) => o.payload[0]! & 0x1f)).toEqual([7, 7]);
    // Exactly one marker per input marker, always on the last piece.
    expect(out.filter((o) => o.marker)).toHaveLength(input.filter((p) => p.marker).length);
  });

  it("passes small payloads through untouched (same buffer) and reuses its output objects", () => {
    const n = new H264Normalizer();
    const p = Buffer.from("4101", "hex");
    const a = n.push(p, true, 0);
    expect(a[0]!.payload).toBe(p);
    const first = a[0];
    const b = n.push(Buffer.from("4102", "hex"), true, 3000);
    expect(b[0]).toBe(first);
    expect(b).toBe(a);
  });
});

describe("parameter-set insertion", () => {
  const strip = (pkts: Pkt[]) => pkts.filter((p) => !isParamSet(p.payload));

  it("inserts STAP-A(SPS, PPS) from sprop before each IDR when the camera sends none in band", () => {
    const n = new H264Normalizer({ parameterSets: parseSpropParameterSets(GST_SPROP) });
    const out = normalize(n, strip(capture()));
    expect(n.stats.parameterSetsInserted).toBe(2);
    const stapIdx = out.flatMap((o, i) => ((o.payload[0]! & 0x1f) === 24 ? [i] : []));
    expect(stapIdx).toHaveLength(2);
    for (const i of stapIdx) {
      expect(out[i]!.keyframeStart).toBe(true);
      expect(out[i]!.marker).toBe(false);
      expect(out[i]!.timestamp).toBe(out[i + 1]!.timestamp);
      // Right before the IDR's first packet (after the AUD and SEI of the unit).
      const next = out[i + 1]!.payload;
      expect((next[0]! & 0x1f) === 5 || ((next[0]! & 0x1f) === 28 && (next[1]! & 0x9f) === 0x85)).toBe(true);
    }
    expect(out.filter((o) => o.keyframeStart)).toHaveLength(2);
    const keyUnits = depacketize(out).filter((a) => a.keyframe);
    expect(keyUnits).toHaveLength(2);
    const sprop = parseSpropParameterSets(GST_SPROP);
    for (const au of keyUnits) {
      const t = au.nals.map((x) => x[0]! & 0x1f);
      expect(t.slice(t.indexOf(7), t.indexOf(7) + 3)).toEqual([7, 8, 5]);
      expect(au.nals[t.indexOf(7)]).toEqual(sprop.sps[0]);
      expect(au.nals[t.indexOf(8)]).toEqual(sprop.pps[0]);
    }
  });

  it("inserts exactly when missing: only before the IDR whose in-band sets were removed, using the learned ones", () => {
    const input = capture();
    const idrStarts = input.flatMap((p, i) => ((p.payload[0]! & 0x1f) === 7 ? [i] : []));
    expect(idrStarts).toHaveLength(2);
    // Remove the second keyframe's SPS and PPS only (no sprop given).
    const second = input.filter((p, i) => !(i >= idrStarts[1]! && i <= idrStarts[1]! + 1));
    const n = new H264Normalizer();
    const out = normalize(n, second);
    expect(n.stats.parameterSetsInserted).toBe(1);
    expect(n.stats.idrWithoutParameterSets).toBe(0);
    const stap = out.find((o) => (o.payload[0]! & 0x1f) === 24)!;
    expect(stap.payload.subarray(3, 3 + stap.payload.readUInt16BE(1))).toEqual(input[idrStarts[0]!]!.payload);
    expect(out.filter((o) => o.keyframeStart).map((o) => o.payload[0]! & 0x1f)).toEqual([7, 24]);
  });

  it("counts IDRs it cannot fix when no parameter sets are known", () => {
    const n = new H264Normalizer();
    const out = normalize(n, strip(capture()));
    expect(n.stats.parameterSetsInserted).toBe(0);
    expect(n.stats.idrWithoutParameterSets).toBe(2);
    expect(n.hasParameterSets()).toBe(false);
    // The IDR itself is still reported as the keyframe start.
    expect(out.filter((o) => o.keyframeStart)).toHaveLength(2);
  });

  it("inserts once per IDR access unit, not per IDR slice, and adds the PPS when only the SPS came in band", () => {
    const sets = parseSpropParameterSets(GST_SPROP);
    const n = new H264Normalizer({ parameterSets: sets });
    const idr1 = Buffer.from("6588aa", "hex");
    const idr2 = Buffer.from("6588bb", "hex");
    expect(n.push(idr1, false, 1000).map((o) => [o.payload[0]! & 0x1f, o.keyframeStart])).toEqual([
      [24, true],
      [5, false],
    ]);
    expect(n.push(idr2, true, 1000).map((o) => o.payload[0]! & 0x1f)).toEqual([5]);
    expect(n.push(Buffer.from("4101", "hex"), true, 4000)).toHaveLength(1);
    // SPS in band, PPS missing: the SPS starts the keyframe, a STAP-A still precedes the IDR.
    expect(n.push(sets.sps[0]!, false, 7000).map((o) => o.keyframeStart)).toEqual([true]);
    expect(n.push(idr1, true, 7000).map((o) => [o.payload[0]! & 0x1f, o.keyframeStart])).toEqual([
      [24, false],
      [5, false],
    ]);
    // An IDR right after another IDR unit (all-intra) is a new keyframe.
    expect(n.push(idr1, true, 10000).map((o) => [o.payload[0]! & 0x1f, o.keyframeStart])).toEqual([
      [24, true],
      [5, false],
    ]);
    expect(n.stats.parameterSetsInserted).toBe(3);
    expect(n.stats.keyframes).toBe(3);
  });

  it("takes the sets from a STAP-A that carries them with the IDR", () => {
    const sets = parseSpropParameterSets(GST_SPROP);
    const n = new H264Normalizer();
    const stap = packetizeAccessUnit([sets.sps[0]!, sets.pps[0]!])[0]!;
    const out = n.push(stap, false, 0);
    expect(out.map((o) => o.keyframeStart)).toEqual([true]);
    expect(n.push(Buffer.from("6588", "hex"), true, 0).map((o) => o.payload[0]! & 0x1f)).toEqual([5]);
    expect(n.hasParameterSets()).toBe(true);
    expect(n.stats.parameterSetsInserted).toBe(0);
  });
});

describe("re-fragmentation", () => {
  it("splits a large single NAL, a large FU-A fragment and a large STAP-A", () => {
    const n = new H264Normalizer({ maxPayload: 100 });
    const big = Buffer.alloc(350, 7);
    big[0] = 0x41;
    const a = n.push(big, true, 0).map((o) => ({ ...o }));
    expect(a.map((o) => o.payload.length)).toEqual([100, 100, 100, 57]); // 349 data bytes in pieces of 98
    expect(a.map((o) => o.payload[1]! & 0xc0)).toEqual([0x80, 0, 0, 0x40]);
    expect(a.map((o) => o.marker)).toEqual([false, false, false, true]);

    // A middle FU-A fragment of 250 bytes: neither piece gets S or E.
    const mid = Buffer.alloc(250, 9);
    mid[0] = 0x7c;
    mid[1] = 0x01;
    const b = n.push(mid, false, 3000).map((o) => ({ ...o }));
    expect(b.map((o) => [o.payload[0], o.payload[1], o.payload.length])).toEqual([
      [0x7c, 0x01, 100],
      [0x7c, 0x01, 100],
      [0x7c, 0x01, 54],
    ]);

    const stap = packetizeAccessUnit([Buffer.alloc(60, 0x67), Buffer.alloc(60, 0x68)], { maxPayload: 200 })[0]!;
    expect(stap[0]! & 0x1f).toBe(24);
    const c = n.push(stap, false, 6000).map((o) => ({ ...o }));
    expect(c.map((o) => [o.payload[0]! & 0x1f, o.payload.length, o.keyframeStart])).toEqual([
      [7, 60, true],
      [8, 60, false],
    ]);
  });

  it("never outputs more than maxPayload and keeps the NAL units, for random streams", () => {
    const nal = fc.tuple(fc.constantFrom(1, 5, 6, 7, 8, 9), fc.integer({ min: 1, max: 6000 }), fc.integer({ min: 0, max: 255 })).map(([type, len, fill]) => {
      const b = Buffer.alloc(len, fill);
      b[0] = 0x60 | type;
      return b;
    });
    fc.assert(
      fc.property(fc.array(fc.array(nal, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1201, max: 9000 }), fc.integer({ min: 3, max: 1200 }), (aus, upstreamMtu, max) => {
        const input: Pkt[] = [];
        aus.forEach((au, i) => {
          const ps = packetizeAccessUnit(au, { maxPayload: upstreamMtu });
          ps.forEach((p, j) => input.push({ payload: p, ts: i * 3000, marker: j === ps.length - 1 }));
        });
        const n = new H264Normalizer({ maxPayload: max });
        const out = normalize(n, input);
        for (const o of out) expect(o.payload.length).toBeLessThanOrEqual(max);
        // Inserted parameter sets aside, the stream carries the same NAL units.
        const strip = (units: AccessUnit[]) => units.map((u) => u.nals);
        expect(strip(depacketize(out)).map((u) => u.filter((x) => !isParamSet(x)))).toEqual(
          strip(depacketize(input)).map((u) => u.filter((x) => !isParamSet(x))),
        );
      }),
      { numRuns: 150 },
    );
  });
});

describe("drops", () => {
  it("drops empty, malformed and interleaved-mode payloads and counts them", () => {
    const n = new H264Normalizer();
    for (const hex of ["", "7c05", "18000567", "180000", "19aa", "1aaa", "1baa", "1daa", "00aa", "1eaa", "1faa"]) {
      expect(n.push(Buffer.from(hex, "hex"), false, 0)).toHaveLength(0);
    }
    expect(n.stats).toMatchObject({ droppedEmpty: 1, droppedMalformed: 3, droppedUnsupported: 7, packetsOut: 0 });
  });

  it("never throws on random payloads", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ maxLength: 3000 }), fc.boolean(), fc.integer({ min: 0, max: 3 }))), fc.integer({ min: 3, max: 1500 }), (list, max) => {
        const n = new H264Normalizer({ maxPayload: max, parameterSets: parseSpropParameterSets(GST_SPROP) });
        for (const [p, m, ts] of list) for (const o of n.push(Buffer.from(p), m, ts)) expect(o.payload.length).toBeLessThanOrEqual(max);
      }),
      { numRuns: 300 },
    );
  });
});

describe("x264 clip through packetizer (1400) and normalizer (1200)", () => {
  it("keeps SPS/PPS in band without insertion and flags both keyframes", () => {
    const nals = splitAnnexB(fixture(TESTSRC_H264));
    const n = new H264Normalizer();
    let ts = 0;
    let keyframes = 0;
    let au: Buffer[] = [];
    const flush = () => {
      const ps = packetizeAccessUnit(au, { maxPayload: 1400 });
      ps.forEach((p, j) => {
        for (const o of n.push(p, j === ps.length - 1, ts)) {
          expect(o.payload.length).toBeLessThanOrEqual(1200);
          if (o.keyframeStart) keyframes++;
        }
      });
      ts += 3600;
      au = [];
    };
    for (const x of nals) {
      const t = x[0]! & 0x1f;
      if ((t === 7 || t === 1 || (t === 5 && au.every((y) => (y[0]! & 0x1f) !== 5))) && au.some((y) => [1, 5].includes(y[0]! & 0x1f))) flush();
      au.push(x);
    }
    flush();
    expect(keyframes).toBe(2);
    expect(n.stats.parameterSetsInserted).toBe(0);
    expect(n.stats.refragmented).toBeGreaterThan(0);
  });
});
