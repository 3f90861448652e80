/**
 * Reception statistics for the receiver reports the RTSP client sends the recorder
 * (RFC 3550 §6.4.1, Appendix A.1/A.3/A.8), checked against figures worked out by hand.
 */
import { describe, expect, it } from "vitest";
import { RtpReception } from "../../gateway/rtsp/reception.ts";

function rtp(seq: number, ts: number, ssrc = 0xcafe0001): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x80;
  b[1] = 96;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

describe("RtpReception", () => {
  it("has nothing to report before the first packet", () => {
    expect(new RtpReception(90000).reportBlock(0)).toBeUndefined();
  });

  it("counts loss over the whole session and per interval, across a sequence wrap", () => {
    const r = new RtpReception(90000);
    // 65530 … 65535, 0 … 9 with 65534 and 3, 4 missing: 16 expected, 13 received.
    let t = 0;
    for (let s = 65530; s < 65546; s++) if (![65534, 65539, 65540].includes(s)) r.onRtp(rtp(s, s * 3600), (t += 40));
    const b = r.reportBlock(t)!;
    expect(b).toMatchObject({ ssrc: 0xcafe0001, highestSeq: 0x10000 + 9, cumulativeLost: 3, fractionLost: Math.floor((3 * 256) / 16) });
    // Next interval: 10 more, none lost; the cumulative figure stays.
    for (let s = 10; s < 20; s++) r.onRtp(rtp(s, s * 3600), (t += 40));
    expect(r.reportBlock(t)).toMatchObject({ highestSeq: 0x10000 + 19, cumulativeLost: 3, fractionLost: 0 });
  });

  it("counts late packets and duplicates without moving the highest sequence number", () => {
    const r = new RtpReception(8000);
    for (const s of [100, 101, 103, 102, 103, 104]) r.onRtp(rtp(s, s * 160), s);
    // 5 expected (100–104), 6 received (one duplicate): loss −1, fraction 0.
    expect(r.reportBlock(200)).toMatchObject({ highestSeq: 104, cumulativeLost: -1, fractionLost: 0 });
  });

  it("believes a large sequence jump only once the next packet follows it (the source restarted)", () => {
    const r = new RtpReception(90000);
    for (let s = 10; s < 20; s++) r.onRtp(rtp(s, s), s);
    r.onRtp(rtp(40_000, 0), 30); // a stray: not counted
    expect(r.reportBlock(31)).toMatchObject({ highestSeq: 19, cumulativeLost: 0 });
    r.onRtp(rtp(40_000, 0), 32);
    r.onRtp(rtp(40_001, 0), 33); // follows the jump: statistics start over there
    expect(r.reportBlock(34)).toMatchObject({ highestSeq: 40_001, cumulativeLost: 0 });
  });

  it("starts over for a new SSRC", () => {
    const r = new RtpReception(90000);
    for (let s = 0; s < 5; s++) r.onRtp(rtp(s, 0), s);
    r.onRtp(rtp(7000, 0, 0xbeef), 10);
    expect(r.reportBlock(11)).toMatchObject({ ssrc: 0xbeef, highestSeq: 7000, cumulativeLost: 0 });
  });

  it("measures interarrival jitter in timestamp units (A.8)", () => {
    const steady = new RtpReception(8000);
    for (let i = 0; i < 50; i++) steady.onRtp(rtp(i, i * 160), i * 20); // 20 ms per 160 samples: no jitter
    expect(steady.reportBlock(1000)!.jitter).toBe(0);
    const shaky = new RtpReception(8000);
    // Every other packet 5 ms late: |D| = 40 units each time; J → 40 (J += (40 − J)/16).
    for (let i = 0; i < 200; i++) shaky.onRtp(rtp(i, i * 160), i * 20 + (i % 2) * 5);
    expect(shaky.reportBlock(5000)!.jitter).toBe(39);
  });

  it("echoes the last sender report's NTP middle bits and the delay since it", () => {
    const r = new RtpReception(90000);
    r.onRtp(rtp(1, 0), 0);
    r.onSenderReport(0x1234, 0xdead0001, 0x80000000, 100); // another source: ignored
    expect(r.reportBlock(100)).toMatchObject({ lsr: 0, dlsr: 0 });
    r.onSenderReport(0xcafe0001, 0xdead0001, 0x80000000, 100);
    // LSR = low 16 bits of the seconds, high 16 of the fraction; DLSR 1.5 s in 1/65536 s.
    expect(r.reportBlock(1600)).toMatchObject({ lsr: 0x00018000, dlsr: 98304 });
  });
});
