import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  GenericNack,
  PictureLossIndication,
  RtcpPacketConverter,
  RtcpPayloadSpecificFeedback,
  RtcpReceiverInfo,
  RtcpRrPacket,
  RtcpSenderInfo,
  RtcpSourceDescriptionPacket,
  RtcpSrPacket,
  RtcpTransportLayerFeedback,
  SourceDescriptionChunk,
  SourceDescriptionItem,
} from "werift";
import {
  compound,
  nackItemsToSeqs,
  parseRtcp,
  seqsToNackItems,
  serializeBye,
  serializeFir,
  serializeNack,
  serializePli,
  serializeRr,
  serializeSdes,
  serializeSr,
  type ReportBlock,
  type RtcpItem,
} from "../../sfu/rtp/rtcp.ts";
import { isRtcpPacket } from "../../sfu/rtp/packet.ts";
import { BadInputError } from "../../config/errors.ts";
import { GST_RTCP, fixture } from "../fixtures/h264/fixtures.ts";

const block: ReportBlock = { ssrc: 0x11223344, fractionLost: 25, cumulativeLost: -3, highestSeq: 0x0001fffe, jitter: 90, lsr: 0xb7052000, dlsr: 0x54000 };

function only<T extends RtcpItem["type"]>(items: RtcpItem[], type: T): Extract<RtcpItem, { type: T }> {
  expect(items.map((i) => i.type)).toEqual([type]);
  return items[0] as Extract<RtcpItem, { type: T }>;
}

describe("parseRtcp on captured bytes", () => {
  it("reads GStreamer's SR + SDES + BYE compound", () => {
    const items = parseRtcp(fixture(GST_RTCP));
    expect(items.map((i) => i.type)).toEqual(["sr", "sdes", "bye"]);
    const sr = items[0] as Extract<RtcpItem, { type: "sr" }>;
    expect(sr.ssrc).toBe(0x8ba5aeaa);
    expect(sr.reports).toEqual([]);
    expect(sr.ntpSeconds).toBe(0xeeab81ca);
    expect(sr.packetCount).toBe(0xf4);
    expect(sr.octetCount).toBe(0x1af78);
    const sdes = items[1] as Extract<RtcpItem, { type: "sdes" }>;
    expect(sdes.chunks).toHaveLength(1);
    expect(sdes.chunks[0]!.ssrc).toBe(0x8ba5aeaa);
    expect(sdes.chunks[0]!.items[0]).toEqual({ type: 1, value: "user3546152193@host-997d4169" });
    expect(sdes.chunks[0]!.items[1]).toEqual({ type: 6, value: "GStreamer" });
    expect(items[2]).toEqual({ type: "bye", ssrcs: [0x8ba5aeaa] });
  });
});

describe("RTCP against werift's codec", () => {
  it("parses werift's SR and RR; werift parses ours", () => {
    const wsr = new RtcpSrPacket({
      ssrc: 1234,
      senderInfo: new RtcpSenderInfo({ ntpTimestamp: (0xeeab81can << 32n) | 0x12345678n, rtpTimestamp: 90000, packetCount: 10, octetCount: 12000 }),
      reports: [new RtcpReceiverInfo({ ssrc: block.ssrc, fractionLost: 25, packetsLost: 3, highestSequence: block.highestSeq, jitter: 90, lsr: block.lsr, dlsr: block.dlsr })],
    }).serialize();
    const sr = only(parseRtcp(wsr), "sr");
    expect(sr).toMatchObject({ ssrc: 1234, ntpSeconds: 0xeeab81ca, ntpFraction: 0x12345678, rtpTimestamp: 90000, packetCount: 10, octetCount: 12000 });
    expect(sr.reports[0]).toEqual({ ...block, cumulativeLost: 3 });

    const ours = serializeSr({ ssrc: 99, ntpSeconds: 0xeeab81ca, ntpFraction: 0x80000000, rtpTimestamp: 3000, packetCount: 7, octetCount: 700, reports: [block] });
    const back = RtcpPacketConverter.deSerialize(ours)[0] as RtcpSrPacket;
    expect(back.ssrc).toBe(99);
    expect(back.senderInfo.ntpTimestamp).toBe((0xeeab81can << 32n) | 0x80000000n);
    expect(back.senderInfo.rtpTimestamp).toBe(3000);
    expect(back.reports[0]!.highestSequence).toBe(block.highestSeq);
    expect(back.reports[0]!.lsr).toBe(block.lsr);

    const wrr = new RtcpRrPacket({ ssrc: 5, reports: [new RtcpReceiverInfo({ ssrc: 6, fractionLost: 1, packetsLost: 2, highestSequence: 3, jitter: 4, lsr: 5, dlsr: 6 })] }).serialize();
    expect(only(parseRtcp(wrr), "rr")).toEqual({ type: "rr", ssrc: 5, reports: [{ ssrc: 6, fractionLost: 1, cumulativeLost: 2, highestSeq: 3, jitter: 4, lsr: 5, dlsr: 6 }] });
    const ourRr = serializeRr({ ssrc: 5, reports: [{ ssrc: 6, fractionLost: 1, cumulativeLost: 2, highestSeq: 3, jitter: 4, lsr: 5, dlsr: 6 }] });
    expect(ourRr).toEqual(wrr);
  });

  it("generic NACK (RFC 4585 §6.2.1) both ways", () => {
    const lost = [100, 101, 105, 116, 117, 200];
    const w = new RtcpTransportLayerFeedback({ feedback: new GenericNack({ senderSsrc: 1, mediaSourceSsrc: 2, lost }) }).serialize();
    const n = only(parseRtcp(w), "nack");
    expect(n.senderSsrc).toBe(1);
    expect(n.mediaSsrc).toBe(2);
    expect(nackItemsToSeqs(n.items)).toEqual(lost);

    const ours = serializeNack({ senderSsrc: 1, mediaSsrc: 2, items: seqsToNackItems(lost) });
    const back = (RtcpPacketConverter.deSerialize(ours)[0] as RtcpTransportLayerFeedback).feedback as GenericNack;
    expect(back.lost).toEqual(lost);
    // 100 with bits for 101, 105, 116; 117 alone; 200 alone.
    expect(seqsToNackItems(lost)).toEqual([
      { pid: 100, blp: (1 << 0) | (1 << 4) | (1 << 15) },
      { pid: 117, blp: 0 },
      { pid: 200, blp: 0 },
    ]);
  });

  it("PLI and FIR (RFC 5104 §4.3.1) both ways", () => {
    const wp = new RtcpPayloadSpecificFeedback({ feedback: new PictureLossIndication({ senderSsrc: 7, mediaSsrc: 8 }) }).serialize();
    expect(only(parseRtcp(wp), "pli")).toEqual({ type: "pli", senderSsrc: 7, mediaSsrc: 8 });
    expect(serializePli({ senderSsrc: 7, mediaSsrc: 8 })).toEqual(wp);

    // RFC 5104 §4.3.1: PSFB FMT 4, sender SSRC, media SSRC 0, then SSRC + seq nr + 3 reserved bytes.
    const wf = Buffer.from("84ce0004" + "00000007" + "00000000" + "00000009" + "03000000", "hex");
    expect(only(parseRtcp(wf), "fir")).toEqual({ type: "fir", senderSsrc: 7, mediaSsrc: 0, entries: [{ ssrc: 9, seqNr: 3 }] });
    const ourFir = serializeFir({ senderSsrc: 7, entries: [{ ssrc: 9, seqNr: 3 }, { ssrc: 10, seqNr: 255 }] });
    const back = (RtcpPacketConverter.deSerialize(ourFir)[0] as RtcpPayloadSpecificFeedback).feedback as unknown as { fir: unknown };
    expect(back.fir).toEqual([{ ssrc: 9, sequenceNumber: 3 }, { ssrc: 10, sequenceNumber: 255 }]);
  });

  it("SDES both ways", () => {
    // werift ends this chunk on a word boundary without the END octet RFC 3550 §6.5 asks for: accepted.
    const w = new RtcpSourceDescriptionPacket({
      chunks: [new SourceDescriptionChunk({ source: 42, items: [new SourceDescriptionItem({ type: 1, text: "gatehouse@demo" })] })],
    }).serialize();
    expect(w.length).toBe(24);
    expect(only(parseRtcp(w), "sdes").chunks).toEqual([{ ssrc: 42, items: [{ type: 1, value: "gatehouse@demo" }] }]);
    const ours = serializeSdes([{ ssrc: 42, items: [{ type: 1, value: "gatehouse@demo" }] }, { ssrc: 43, items: [] }]);
    expect(ours.length % 4).toBe(0);
    const back = RtcpPacketConverter.deSerialize(ours)[0] as RtcpSourceDescriptionPacket;
    expect(back.chunks[0]!.items[0]!.text).toBe("gatehouse@demo");
    expect(only(parseRtcp(ours), "sdes").chunks).toEqual([
      { ssrc: 42, items: [{ type: 1, value: "gatehouse@demo" }] },
      { ssrc: 43, items: [] },
    ]);
  });
});

describe("compound round trips", () => {
  it("serializes and parses SR + SDES + BYE with reason, and a feedback compound", () => {
    const c = compound([
      serializeSr({ ssrc: 1, ntpSeconds: 2, ntpFraction: 3, rtpTimestamp: 4, packetCount: 5, octetCount: 6 }),
      serializeSdes([{ ssrc: 1, items: [{ type: 1, value: "x" }] }]),
      serializeBye({ ssrcs: [1, 2], reason: "teardown" }),
    ]);
    expect(isRtcpPacket(c)).toBe(true);
    const items = parseRtcp(c);
    expect(items.map((i) => i.type)).toEqual(["sr", "sdes", "bye"]);
    expect(items[2]).toEqual({ type: "bye", ssrcs: [1, 2], reason: "teardown" });

    const fb = parseRtcp(compound([serializeRr({ ssrc: 1 }), serializePli({ senderSsrc: 1, mediaSsrc: 2 }), serializeNack({ senderSsrc: 1, mediaSsrc: 2, items: [{ pid: 65535, blp: 1 }] })]));
    expect(fb.map((i) => i.type)).toEqual(["rr", "pli", "nack"]);
    expect(nackItemsToSeqs((fb[2] as Extract<RtcpItem, { type: "nack" }>).items)).toEqual([65535, 0]);
  });

  it("types REMB and unknown feedback without acting on them", () => {
    const remb = Buffer.from("8fce0005000000010000000052454d4201" + "0a" + "ffff" + "00000009", "hex");
    // exp = 0x0a >> 2 = 2, mantissa = ((0x0a & 3) << 16) | 0xffff = 0x2ffff
    expect(only(parseRtcp(remb), "remb")).toEqual({ type: "remb", senderSsrc: 1, bitrate: 0x2ffff * 4, ssrcs: [9] });
    const twcc = Buffer.from("8fcd0002000000010000000a", "hex"); // RTPFB FMT 15 (transport-cc) with an empty body: malformed
    expect(only(parseRtcp(twcc), "error").error.message).toMatch(/transport-cc feedback shorter than its header/);
    const tmmbr = Buffer.from("83cd0002000000010000000a", "hex"); // RTPFB FMT 3 (TMMBR)
    expect(only(parseRtcp(tmmbr), "unknown")).toEqual({ type: "unknown", packetType: 205, fmt: 3, length: 12 });
    const xr = Buffer.from("80cf000100000001", "hex"); // XR (207)
    expect(only(parseRtcp(xr), "unknown").packetType).toBe(207);
  });

  it("honours padding on the last packet", () => {
    const rr = serializeRr({ ssrc: 77 });
    const padded = Buffer.concat([rr, Buffer.from([0, 0, 0, 4])]);
    padded[0]! |= 0x20;
    padded.writeUInt16BE(padded.length / 4 - 1, 2);
    expect(only(parseRtcp(padded), "rr").ssrc).toBe(77);
  });
});

describe("malformed RTCP becomes an error item", () => {
  const cases: [string, string][] = [
    ["too short", "80c8"],
    ["bad version", "40c9000100000001"],
    ["length overruns", "80c9000500000001"],
    ["RR block truncated", "81c9000100000001"],
    ["SR without sender info", "80c8000100000001"],
    ["NACK without items", "81cd000200000001000000002"],
    ["FIR without entries", "84ce00020000000100000000"],
    ["SDES without END", "81ca000200000001010178"],
    ["padding count 0", "a0c9000100000000"],
    ["BYE reason overruns", "81cb0002000000010a616263"],
  ];
  it.each(cases)("%s", (_name, hex) => {
    const items = parseRtcp(Buffer.from(hex.length % 2 ? hex + "0" : hex, "hex"));
    const last = items[items.length - 1]!;
    expect(last.type).toBe("error");
    if (last.type === "error") {
      expect(last.error).toBeInstanceOf(BadInputError);
      expect(last.error.code).toBe("BAD_INPUT");
    }
  });

  it("keeps the good packets before a bad one", () => {
    const c = Buffer.concat([serializePli({ senderSsrc: 1, mediaSsrc: 2 }), Buffer.from("81c9000100000001", "hex")]);
    const items = parseRtcp(c);
    expect(items.map((i) => i.type)).toEqual(["pli", "error"]);
    expect((items[1] as Extract<RtcpItem, { type: "error" }>).offset).toBe(12);
  });

  it("never throws on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const items = parseRtcp(bytes);
        expect(items.length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws on mutated valid compounds", () => {
    const base = compound([
      serializeSr({ ssrc: 1, ntpSeconds: 2, ntpFraction: 3, rtpTimestamp: 4, packetCount: 5, octetCount: 6, reports: [block] }),
      serializeSdes([{ ssrc: 1, items: [{ type: 1, value: "cname" }] }]),
      serializeNack({ senderSsrc: 1, mediaSsrc: 2, items: [{ pid: 1, blp: 2 }] }),
      serializeFir({ senderSsrc: 1, entries: [{ ssrc: 2, seqNr: 1 }] }),
      serializeBye({ ssrcs: [1], reason: "bye" }),
    ]);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(base.length), (muts, cut) => {
        const b = Buffer.from(base.subarray(0, cut));
        for (const [i, v] of muts) if (i < b.length) b[i] = v;
        parseRtcp(b);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("NACK helpers", () => {
  it("seqsToNackItems → nackItemsToSeqs gives back the set, across the wrap, with the fewest items", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.uniqueArray(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 200 }), (base, offs) => {
        const seqs = offs.map((o) => (base + o) & 0xffff);
        const items = seqsToNackItems(seqs);
        const back = nackItemsToSeqs(items);
        expect(new Set(back)).toEqual(new Set(seqs));
        expect(back.length).toBe(seqs.length);
        // Greedy from the lowest is optimal for covering points with windows of 17.
        const sorted = [...offs].sort((a, b) => a - b);
        let need = 0;
        let end = -Infinity;
        for (const o of sorted) if (o > end) { need++; end = o + 16; }
        expect(items.length).toBe(need);
      }),
    );
  });

  it("handles duplicates and empty input", () => {
    expect(seqsToNackItems([])).toEqual([]);
    expect(seqsToNackItems([5, 5, 6])).toEqual([{ pid: 5, blp: 1 }]);
  });

  it("refuses to serialize an empty NACK", () => {
    expect(() => serializeNack({ senderSsrc: 1, mediaSsrc: 1, items: [] })).toThrow(BadInputError);
  });
});
