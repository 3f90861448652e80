import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { RtpPacket } from "werift";
import {
  emptyRtpHeader,
  isRtcpPacket,
  parseRtpHeader,
  readRtpHeader,
  rtpCsrcs,
  setRtpSequenceNumber,
  setRtpSsrc,
  setRtpTimestamp,
  writeRtpHeader,
} from "../../sfu/rtp/packet.ts";
import { SeqUnwrapper, seqAdd, seqDiff, seqNewer, seqOlder, tsDiff, unwrapSeq } from "../../sfu/rtp/seq.ts";
import { msToDlsr, ntpFromUnixMs, ntpMiddle32, ntpToUnixMs, rttFromReport } from "../../sfu/rtp/ntp.ts";
import { GST_CAPTURE, GST_RTCP, fixture, rtpCapture } from "../fixtures/h264/fixtures.ts";

describe("parseRtpHeader", () => {
  it("parses a captured GStreamer packet", () => {
    const pkts = rtpCapture(GST_CAPTURE);
    const h = parseRtpHeader(pkts[0]!)!;
    expect(h).not.toBeNull();
    expect(h.payloadType).toBe(96);
    expect(h.ssrc).toBe(3708362951);
    expect(h.csrcCount).toBe(0);
    expect(h.headerLength).toBe(12);
    expect(h.payloadLength).toBe(pkts[0]!.length - 12);
    // Sequence numbers of the capture are contiguous and the marker ends every frame.
    let markers = 0;
    for (let i = 1; i < pkts.length; i++) {
      const prev = parseRtpHeader(pkts[i - 1]!)!;
      const cur = parseRtpHeader(pkts[i]!)!;
      expect(seqDiff(cur.sequenceNumber, prev.sequenceNumber)).toBe(1);
      expect(prev.marker).toBe(cur.timestamp !== prev.timestamp);
      if (prev.marker) markers++;
    }
    expect(markers).toBe(47); // 47 whole frames; the capture ends with the lone AUD of a 48th
  });

  it("handles CSRCs, a header extension and padding (RFC 3550 §5.1, §5.3.1)", () => {
    const b = Buffer.from([
      0xb2, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, // V=2 P=1 X=1 CC=2, M=1 PT=96
      0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0b, // two CSRCs
      0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0x00, 0x00, // one-byte extension header, 1 word
      0xaa, 0xbb, 0xcc, // payload
      0x00, 0x00, 0x03, // 3 padding octets
    ]);
    const h = parseRtpHeader(b)!;
    expect(h).toMatchObject({
      marker: true,
      payloadType: 96,
      sequenceNumber: 0x1234,
      timestamp: 0xdeadbeef,
      ssrc: 0x01020304,
      csrcCount: 2,
      extension: true,
      padding: true,
      headerLength: 28,
      payloadOffset: 28,
      payloadLength: 3,
    });
    expect(rtpCsrcs(b)).toEqual([10, 11]);
    // werift reads the same packet the same way.
    const w = RtpPacket.deSerialize(b);
    expect(w.header.sequenceNumber).toBe(0x1234);
    expect(w.payload).toEqual(Buffer.from([0xaa, 0xbb, 0xcc]));
  });

  it("rejects invalid packets", () => {
    const ok = Buffer.alloc(20);
    ok[0] = 0x80;
    expect(parseRtpHeader(ok)).not.toBeNull();
    expect(parseRtpHeader(ok.subarray(0, 11))).toBeNull(); // truncated
    const v1 = Buffer.from(ok);
    v1[0] = 0x40;
    expect(parseRtpHeader(v1)).toBeNull(); // version 1
    const cc = Buffer.from(ok);
    cc[0] = 0x83; // 3 CSRCs need 24 bytes
    expect(parseRtpHeader(cc)).toBeNull();
    const ext = Buffer.from(ok);
    ext[0] = 0x90;
    ext[14] = 0;
    ext[15] = 2; // 2 words after a 4-byte header: 12+4+8 > 20
    expect(parseRtpHeader(ext)).toBeNull();
    const pad0 = Buffer.from(ok);
    pad0[0] = 0xa0;
    pad0[19] = 0; // a padding count of 0 is invalid
    expect(parseRtpHeader(pad0)).toBeNull();
    const padBig = Buffer.from(ok);
    padBig[0] = 0xa0;
    padBig[19] = 9; // more padding than payload
    expect(parseRtpHeader(padBig)).toBeNull();
    padBig[19] = 8; // exactly the payload: valid, empty payload
    expect(parseRtpHeader(padBig)!.payloadLength).toBe(0);
  });

  it("never throws on random bytes and keeps offsets inside the packet", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const h = parseRtpHeader(bytes);
        if (h) {
          expect(h.payloadOffset + h.payloadLength).toBeLessThanOrEqual(bytes.length);
          expect(h.payloadLength).toBeGreaterThanOrEqual(0);
        }
      }),
    );
  });

  it("round-trips writeRtpHeader through parse and through werift", () => {
    fc.assert(
      fc.property(
        fc.record({
          marker: fc.boolean(),
          payloadType: fc.integer({ min: 0, max: 127 }),
          sequenceNumber: fc.integer({ min: 0, max: 0xffff }),
          timestamp: fc.integer({ min: 0, max: 0xffffffff }),
          ssrc: fc.integer({ min: 0, max: 0xffffffff }),
        }),
        (f) => {
          const b = Buffer.alloc(16);
          expect(writeRtpHeader(b, f)).toBe(12);
          const h = emptyRtpHeader();
          expect(readRtpHeader(b, h)).toBe(true);
          expect(h).toMatchObject({ ...f, headerLength: 12, payloadLength: 4 });
          const w = RtpPacket.deSerialize(b).header;
          expect([w.marker, w.payloadType, w.sequenceNumber, w.timestamp, w.ssrc]).toEqual([
            f.marker,
            f.payloadType,
            f.sequenceNumber,
            f.timestamp,
            f.ssrc,
          ]);
        },
      ),
    );
  });

  it("rewrites seq, timestamp and SSRC in place", () => {
    const b = Buffer.alloc(12);
    writeRtpHeader(b, { marker: true, payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3 });
    setRtpSequenceNumber(b, 0xfffe);
    setRtpTimestamp(b, 0xfffffffe);
    setRtpSsrc(b, 0x80000001);
    expect(parseRtpHeader(b)).toMatchObject({ marker: true, sequenceNumber: 0xfffe, timestamp: 0xfffffffe, ssrc: 0x80000001 });
  });
});

describe("isRtcpPacket (RFC 5761 §4)", () => {
  it("separates captured RTP from captured RTCP", () => {
    for (const p of rtpCapture(GST_CAPTURE)) expect(isRtcpPacket(p)).toBe(false);
    expect(isRtcpPacket(fixture(GST_RTCP))).toBe(true);
  });
  it("uses the 192–223 range of the second octet", () => {
    const b = Buffer.from([0x80, 0, 0, 0]);
    for (let pt = 0; pt < 256; pt++) {
      b[1] = pt;
      expect(isRtcpPacket(b)).toBe(pt >= 192 && pt <= 223);
    }
    expect(isRtcpPacket(Buffer.from([0x80, 200]))).toBe(false);
    expect(isRtcpPacket(Buffer.from([0x40, 200, 0, 0]))).toBe(false);
  });
});

describe("sequence numbers", () => {
  it("compares across the wrap", () => {
    expect(seqDiff(0, 65535)).toBe(1);
    expect(seqDiff(65535, 0)).toBe(-1);
    expect(seqNewer(3, 65530)).toBe(true);
    expect(seqOlder(65530, 3)).toBe(true);
    expect(seqDiff(100, 100)).toBe(0);
    expect(seqAdd(65535, 2)).toBe(1);
    expect(tsDiff(5, 0xfffffffb)).toBe(10);
    expect(unwrapSeq(2, 65534)).toBe(65538);
    expect(unwrapSeq(65534, 65538)).toBe(65534);
    expect(unwrapSeq(65535, 0)).toBe(65535); // never negative
  });

  it("extends a stream with wraparound and reordering", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 1, max: 200_000 }), fc.array(fc.integer({ min: -100, max: 100 })), (start, len, jitter) => {
        const u = new SeqUnwrapper();
        let maxExt = -1;
        // The first packet defines cycle 0: expected values are relative to its cycle.
        const first = start + (jitter[0] ?? 0) + 100;
        const cycle0 = first - (first & 0xffff);
        for (let i = 0; i < Math.min(len, 300); i++) {
          const ext = start + i * 250 + (jitter[i % Math.max(1, jitter.length)] ?? 0) + 100 - cycle0;
          const got = u.push(ext & 0xffff);
          expect(got).toBe(ext);
          maxExt = Math.max(maxExt, ext);
          expect(u.highest).toBe(maxExt);
        }
      }),
    );
  });
});

describe("NTP helpers", () => {
  it("converts Unix time and back", () => {
    const ms = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
    const n = ntpFromUnixMs(ms);
    expect(n.seconds).toBe(Math.floor(ms / 1000) + 2_208_988_800);
    expect(Math.abs(ntpToUnixMs(n.seconds, n.fraction) - ms)).toBeLessThan(0.001);
    expect(ntpFromUnixMs(1500).fraction).toBe(0x80000000);
  });

  it("computes LSR and round-trip time (RFC 3550 §6.4.1 example)", () => {
    // The RFC's example: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000 (46853.125 s), DLSR = 0x0005:4000 (5.250 s).
    expect(ntpMiddle32(0x0000b710, 0x80000000)).toBe(0xb7108000);
    expect(rttFromReport(0xb7108000, 0xb7052000, 0x00054000)).toBeCloseTo(6125, 6);
    expect(msToDlsr(5250)).toBe(0x00054000);
    expect(rttFromReport(0xb7108000, 0, 0)).toBe(-1);
  });
});
