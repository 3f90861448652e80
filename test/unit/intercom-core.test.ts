/**
 * The browser intercom's pure parts: reading the browser's audio offer, the door → browser
 * RTP re-stamping (continuity across SSRC changes, loss, reordering, wrap-around), SSE
 * framing, and the talk peers' choice of ICE ports.
 */
import dgram from "node:dgram";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RtpRestamper, type RestampOut } from "../../gateway/intercom/restamp.ts";
import { announceAddress, readAudioOffer } from "../../gateway/intercom/sdp.ts";
import { sseFrame } from "../../gateway/http/sse.ts";
import { talkPortRange } from "../../gateway/intercom/talk-peer.ts";

const CHROMIUM_OFFER = [
  "v=0",
  "o=- 4611 2 IN IP4 127.0.0.1",
  "s=-",
  "t=0 0",
  "a=group:BUNDLE 0",
  "a=ice-ufrag:abcd",
  "a=ice-pwd:0123456789abcdefghijkl",
  `a=fingerprint:sha-256 ${"AB:".repeat(31)}AB`,
  "a=setup:actpass",
  "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
  "c=IN IP4 0.0.0.0",
  "a=mid:0",
  "a=sendrecv",
  "a=rtpmap:111 opus/48000/2",
  "a=rtpmap:63 red/48000/2",
  "a=rtpmap:9 G722/8000",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:8 PCMA/8000",
  "a=rtpmap:13 CN/8000",
  "a=rtpmap:110 telephone-event/48000",
  "a=rtpmap:126 telephone-event/8000",
  "",
].join("\r\n");

/** A WebRTC offer around the given m-sections (each gets its mid; ICE and DTLS at session level). */
function webrtc(...sections: string[][]): string {
  const head = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijkl", `a=fingerprint:sha-256 ${"AB:".repeat(31)}AB`, "a=setup:actpass"];
  return [...head, ...sections.flatMap((lines, i) => [lines[0]!, `a=mid:${i}`, ...lines.slice(1)]), ""].join("\r\n");
}

describe("readAudioOffer", () => {
  it("finds PCMU and PCMA in a Chromium offer", () => {
    const o = readAudioOffer(CHROMIUM_OFFER)!;
    expect([...o.payloadTypes]).toEqual([
      ["PCMU", 0],
      ["PCMA", 8],
    ]);
    expect(o.direction).toBe("sendrecv");
  });

  it("takes static payload types without rtpmap, and dynamic ones by name", () => {
    expect([...readAudioOffer(webrtc(["m=audio 9 UDP/TLS/RTP/SAVPF 8 0"]))!.payloadTypes]).toEqual([
      ["PCMA", 8],
      ["PCMU", 0],
    ]);
    const o = readAudioOffer(webrtc(["m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 pcmu/8000", "a=recvonly"]))!;
    expect(o.payloadTypes.get("PCMU")).toBe(96);
    expect(o.direction).toBe("recvonly");
  });

  it("ignores rejected sections, other rates and channel counts, and other media", () => {
    expect(readAudioOffer(webrtc(["m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 H264/90000"]))).toBeUndefined();
    const sdp = webrtc(["m=audio 0 UDP/TLS/RTP/SAVPF 0"], ["m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 H264/90000"], ["m=audio 9 UDP/TLS/RTP/SAVPF 97 98", "a=rtpmap:97 PCMU/16000", "a=rtpmap:98 PCMA/8000/2"]);
    expect(readAudioOffer(sdp)!.payloadTypes.size).toBe(0);
    // A static number redefined by rtpmap is what the rtpmap says.
    expect(readAudioOffer(webrtc(["m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=rtpmap:0 opus/48000/2"]))!.payloadTypes.size).toBe(0);
    // Not a WebRTC offer (no ICE credentials, no mid): nothing to read.
    expect(readAudioOffer("m=audio 9 RTP/AVP 8 0\r\n")).toBeUndefined();
  });

  it("never throws on garbage", () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => void readAudioOffer(s)));
  });
});

describe("announceAddress", () => {
  it("rewrites host candidates only", () => {
    const sdp = "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=candidate:2 1 udp 1694498815 1.2.3.4 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n";
    expect(announceAddress(sdp, "203.0.113.7")).toBe(
      "a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host\r\na=candidate:2 1 udp 1694498815 1.2.3.4 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n",
    );
  });
});

describe("RtpRestamper", () => {
  const out = (): RestampOut => ({ sequenceNumber: 0, timestamp: 0, marker: false });

  it("continues one stream across an SSRC change, in step with real time", () => {
    const r = new RtpRestamper({ initialSeq: 65534, initialTs: 4294967000 });
    const o = out();
    const seen: Array<[number, number, boolean]> = [];
    for (let i = 0; i < 3; i++) {
      expect(r.map(100 + i, 1000 + 160 * i, 0xaaaa, i * 20, o)).toBe(true);
      seen.push([o.sequenceNumber, o.timestamp, o.marker]);
    }
    // New source 500 ms after the last packet: next sequence number, timestamp 500 ms later.
    expect(r.map(7, 99, 0xbbbb, 540, o)).toBe(true);
    seen.push([o.sequenceNumber, o.timestamp, o.marker]);
    expect(seen).toEqual([
      [65534, 4294967000, true],
      [65535, 4294967160, false],
      [0, 24, false], // both wrapped
      [1, (24 + 4000) >>> 0, true],
    ]);
    expect(r.stats).toMatchObject({ forwarded: 4, resyncs: 1 });
  });

  it("keeps loss visible, forwards reordering, drops duplicates and stale packets", () => {
    const r = new RtpRestamper({ initialSeq: 10, initialTs: 0 });
    const o = out();
    r.map(1000, 0, 1, 0, o);
    expect(r.map(1003, 480, 1, 60, o)).toBe(true); // two lost
    expect(o.sequenceNumber).toBe(13);
    expect(r.map(1002, 320, 1, 61, o)).toBe(true); // late but useful
    expect(o).toMatchObject({ sequenceNumber: 12, timestamp: 320, marker: false });
    expect(r.map(1003, 480, 1, 62, o)).toBe(false);
    expect(r.map(900, 0, 1, 63, o)).toBe(false);
    expect(r.stats).toMatchObject({ duplicates: 1, tooLate: 1 });
  });

  it("re-anchors on a counter restart and after resync()", () => {
    const r = new RtpRestamper({ initialSeq: 0, initialTs: 0 });
    const o = out();
    r.map(100, 1000, 1, 0, o);
    r.map(30000, 5, 1, 20, o); // a jump no loss explains
    expect(o).toMatchObject({ sequenceNumber: 1, timestamp: 160, marker: true });
    r.resync();
    r.map(30001, 165, 1, 40, o);
    expect(o).toMatchObject({ sequenceNumber: 2, timestamp: 320, marker: true });
  });

  it("property: in-order input from any sources gives strictly consecutive sequence numbers and forward timestamps", () => {
    const packet = fc.record({ source: fc.integer({ min: 0, max: 2 }), gapMs: fc.integer({ min: 0, max: 200 }), restart: fc.boolean() });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.array(packet, { minLength: 1, maxLength: 200 }), (seq0, ts0, packets) => {
        const r = new RtpRestamper({ initialSeq: seq0, initialTs: ts0 });
        const o = out();
        const state = [0, 0, 0].map((_, i) => ({ seq: i * 20000, ts: i * 1e6 }));
        let now = 0;
        let prev: RestampOut | undefined;
        for (const p of packets) {
          now += p.gapMs;
          const s = state[p.source]!;
          if (p.restart) s.seq = (s.seq + 30000) & 0xffff;
          s.seq = (s.seq + 1) & 0xffff;
          s.ts = (s.ts + 160) >>> 0;
          if (!r.map(s.seq, s.ts, 0x100 + p.source, now, o)) return false;
          if (prev) {
            if (o.sequenceNumber !== ((prev.sequenceNumber + 1) & 0xffff)) return false;
            const dt = (o.timestamp - prev.timestamp) >>> 0;
            if (dt === 0 || dt > 0x7fffffff) return false;
          }
          prev = { ...o };
        }
        return true;
      }),
    );
  });
});

describe("sseFrame", () => {
  it("writes one event with its id and single-line JSON data", () => {
    expect(sseFrame("ring", { a: "x\ny" }, 3)).toBe('id: 3\nevent: ring\ndata: {"a":"x\\ny"}\n\n');
    expect(() => sseFrame("bad\nevent", {})).toThrow();
  });
});

describe("talkPortRange", () => {
  it("starts at the highest free port of the top of the range, and skips busy ones", async () => {
    const probe = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => probe.bind(0, "127.0.0.1", resolve));
    const top = probe.address().port;
    try {
      // `top` is busy: the range starts below it (werift scans upward from the start).
      const [lo, hi] = await talkPortRange([top - 100, top], "127.0.0.1");
      expect(hi).toBe(top);
      expect(lo).toBeLessThan(top);
      expect(lo).toBeGreaterThanOrEqual(top - 63);
    } finally {
      probe.close();
    }
  });
});
