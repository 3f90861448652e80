import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BadInputError } from "../../config/errors.ts";
import { parseCandidate, type CandidateRules } from "../../sfu/candidates.ts";
import { h264ProfileOf, offersH265, parseOffer, planAnswer, readOffer } from "../../sfu/offer.ts";
import type { TrackSpec } from "../../sfu/types.ts";

/** Chromium 156's recvonly offer (video + audio transceivers), as captured before ICE gathering. */
const CHROMIUM_OFFER = `v=0
o=- 9030281468466844740 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 35 36 37 38 102 103 104 107 108 109 114 115 116 117 39 40 41 42 43 44 45 46 47 48 118 119 120 49
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:hvcn
a=ice-pwd:nq/Y0fztqqQPBc1bOyLRdI95
a=ice-options:trickle
a=fingerprint:sha-256 FB:B2:40:B0:7D:7C:96:C5:03:1C:30:E5:91:D6:EA:DB:9A:82:39:9F:E1:B2:C7:F6:E7:E0:E6:D2:38:7F:EE:24
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 urn:3gpp:video-orientation
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtcp-xr:rcvr-rtt=all
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 goog-remb
a=rtcp-fb:98 transport-cc
a=rtcp-fb:98 ccm fir
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=rtcp-fb:100 goog-remb
a=rtcp-fb:100 transport-cc
a=rtcp-fb:100 ccm fir
a=rtcp-fb:100 nack
a=rtcp-fb:100 nack pli
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:35 VP9/90000
a=rtcp-fb:35 goog-remb
a=rtcp-fb:35 transport-cc
a=rtcp-fb:35 ccm fir
a=rtcp-fb:35 nack
a=rtcp-fb:35 nack pli
a=fmtp:35 profile-id=1
a=rtpmap:36 rtx/90000
a=fmtp:36 apt=35
a=rtpmap:37 VP9/90000
a=rtcp-fb:37 goog-remb
a=rtcp-fb:37 transport-cc
a=rtcp-fb:37 ccm fir
a=rtcp-fb:37 nack
a=rtcp-fb:37 nack pli
a=fmtp:37 profile-id=3
a=rtpmap:38 rtx/90000
a=fmtp:38 apt=37
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
a=rtcp-fb:104 goog-remb
a=rtcp-fb:104 transport-cc
a=rtcp-fb:104 ccm fir
a=rtcp-fb:104 nack
a=rtcp-fb:104 nack pli
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=104
a=rtpmap:108 H264/90000
a=rtcp-fb:108 goog-remb
a=rtcp-fb:108 transport-cc
a=rtcp-fb:108 ccm fir
a=rtcp-fb:108 nack
a=rtcp-fb:108 nack pli
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:114 H264/90000
a=rtcp-fb:114 goog-remb
a=rtcp-fb:114 transport-cc
a=rtcp-fb:114 ccm fir
a=rtcp-fb:114 nack
a=rtcp-fb:114 nack pli
a=fmtp:114 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:115 rtx/90000
a=fmtp:115 apt=114
a=rtpmap:116 H264/90000
a=rtcp-fb:116 goog-remb
a=rtcp-fb:116 transport-cc
a=rtcp-fb:116 ccm fir
a=rtcp-fb:116 nack
a=rtcp-fb:116 nack pli
a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:39 H264/90000
a=rtcp-fb:39 goog-remb
a=rtcp-fb:39 transport-cc
a=rtcp-fb:39 ccm fir
a=rtcp-fb:39 nack
a=rtcp-fb:39 nack pli
a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f
a=rtpmap:40 rtx/90000
a=fmtp:40 apt=39
a=rtpmap:41 H264/90000
a=rtcp-fb:41 goog-remb
a=rtcp-fb:41 transport-cc
a=rtcp-fb:41 ccm fir
a=rtcp-fb:41 nack
a=rtcp-fb:41 nack pli
a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f4001f
a=rtpmap:42 rtx/90000
a=fmtp:42 apt=41
a=rtpmap:43 H264/90000
a=rtcp-fb:43 goog-remb
a=rtcp-fb:43 transport-cc
a=rtcp-fb:43 ccm fir
a=rtcp-fb:43 nack
a=rtcp-fb:43 nack pli
a=fmtp:43 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=f4001f
a=rtpmap:44 rtx/90000
a=fmtp:44 apt=43
a=rtpmap:45 AV1/90000
a=rtcp-fb:45 goog-remb
a=rtcp-fb:45 transport-cc
a=rtcp-fb:45 ccm fir
a=rtcp-fb:45 nack
a=rtcp-fb:45 nack pli
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=rtpmap:47 AV1/90000
a=rtcp-fb:47 goog-remb
a=rtcp-fb:47 transport-cc
a=rtcp-fb:47 ccm fir
a=rtcp-fb:47 nack
a=rtcp-fb:47 nack pli
a=fmtp:47 level-idx=5;profile=1;tier=0
a=rtpmap:48 rtx/90000
a=fmtp:48 apt=47
a=rtpmap:118 red/90000
a=rtpmap:119 rtx/90000
a=fmtp:119 apt=118
a=rtpmap:120 ulpfec/90000
a=rtpmap:49 flexfec-03/90000
a=rtcp-fb:49 goog-remb
a=rtcp-fb:49 transport-cc
a=fmtp:49 repair-window=10000000
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:hvcn
a=ice-pwd:nq/Y0fztqqQPBc1bOyLRdI95
a=ice-options:trickle
a=fingerprint:sha-256 FB:B2:40:B0:7D:7C:96:C5:03:1C:30:E5:91:D6:EA:DB:9A:82:39:9F:E1:B2:C7:F6:E7:E0:E6:D2:38:7F:EE:24
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtcp-xr:rcvr-rtt=all
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
`;

const video = (fmtp: string): TrackSpec => ({ kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: 96, fmtp });
const audio = (codec: "PCMU" | "PCMA" | "OPUS"): TrackSpec => ({
  kind: "audio",
  codec,
  clockRate: codec === "OPUS" ? 48000 : 8000,
  channels: codec === "OPUS" ? 2 : 1,
  payloadType: codec === "PCMU" ? 0 : codec === "PCMA" ? 8 : 97,
  fmtp: "",
});

function expectBadInput(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BadInputError);
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error("expected BadInputError");
}

describe("parseOffer", () => {
  it("reads Chromium's recvonly offer", () => {
    const o = parseOffer(CHROMIUM_OFFER);
    expect(o.media.map((m) => [m.kind, m.mid, m.direction])).toEqual([
      ["video", "0", "recvonly"],
      ["audio", "1", "recvonly"],
    ]);
    const h264 = o.media[0]!.codecs.filter((c) => c.name === "H264");
    expect(h264.map((c) => c.payloadType)).toEqual([102, 104, 108, 114, 116, 39, 41, 43]);
    expect(o.media[0]!.codecs.find((c) => c.payloadType === 108)!.rtcpFeedback).toContainEqual({ type: "nack", parameter: "pli" });
    expect(o.media[1]!.codecs.map((c) => c.name)).toEqual(["opus", "red", "G722", "PCMU", "PCMA", "CN", "telephone-event", "telephone-event"]);
  });

  it("accepts CRLF line endings", () => {
    expect(parseOffer(CHROMIUM_OFFER.replace(/\n/g, "\r\n")).media).toHaveLength(2);
  });

  it("rejects what is not an SDP offer, with a reason", () => {
    expectBadInput(() => parseOffer(""), /empty/);
    expectBadInput(() => parseOffer("hello"), /v=0/);
    expectBadInput(() => parseOffer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"), /no media/);
    expectBadInput(() => parseOffer(CHROMIUM_OFFER.replace(/a=fingerprint:.*\n/g, "")), /fingerprint/);
    expectBadInput(() => parseOffer(CHROMIUM_OFFER.replace(/a=ice-pwd:.*\n/g, "")), /ufrag\/pwd/);
    expectBadInput(() => parseOffer(CHROMIUM_OFFER.replace("a=rtpmap:108 H264/90000", "a=rtpmap:108 H264")), /rtpmap/);
    expectBadInput(() => parseOffer("v=0\nbogus line\n"), /line 2/);
    expectBadInput(() => parseOffer("v=0\n" + "a=x\n".repeat(20000)), /larger than/);
  });

  it("never throws anything but BadInputError (fuzzed lines)", () => {
    const line = fc.oneof(
      fc.constantFrom(...CHROMIUM_OFFER.split("\n")),
      fc.string({ maxLength: 40 }),
      fc.string({ maxLength: 20 }).map((s) => `a=rtpmap:${s}`),
      fc.string({ maxLength: 20 }).map((s) => `m=video ${s}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 60 }), (lines) => {
        try {
          const offer = parseOffer(["v=0", ...lines].join("\n"));
          planAnswer(offer, undefined);
        } catch (err) {
          if (!(err instanceof BadInputError)) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("planAnswer", () => {
  it("prefers constrained baseline 42e01f with packetization-mode=1 when the source is unknown", () => {
    const plan = planAnswer(parseOffer(CHROMIUM_OFFER), undefined);
    expect(plan.video).toMatchObject({ mid: "0", choice: { payloadType: 108, profileLevelId: "42e01f" } });
    // Unknown source: every forwardable audio codec the browser offered, in its order.
    expect(plan.audio?.choices.map((c) => [c.codec, c.payloadType])).toEqual([
      ["OPUS", 111],
      ["PCMU", 0],
      ["PCMA", 8],
    ]);
  });

  it("matches the source: its H.264 profile and exactly its audio codec", () => {
    const offer = parseOffer(CHROMIUM_OFFER);
    const main = planAnswer(offer, [video("packetization-mode=1;profile-level-id=4d0029"), audio("PCMA")]);
    expect(main.video?.choice).toMatchObject({ payloadType: 116, profileLevelId: "4d001f" });
    expect(main.audio?.choices.map((c) => c.codec)).toEqual(["PCMA"]);
    const baseline = planAnswer(offer, [video("profile-level-id=42C01E;packetization-mode=1"), audio("OPUS")]);
    expect(baseline.video?.choice.payloadType).toBe(108);
    expect(baseline.audio?.choices.map((c) => [c.codec, c.payloadType])).toEqual([["OPUS", 111]]);
    // High profile is not offered by this Chromium: fall back to constrained baseline (it decodes anyway).
    const high = planAnswer(offer, [video("packetization-mode=1;profile-level-id=640028")]);
    expect(high.video?.choice.payloadType).toBe(108);
    // A source without audio: the audio section is left out (werift rejects it with port 0).
    expect(high.audio).toBeUndefined();
  });

  it("answers H.265 beside H.264 when the viewer offers it and the source may send it (RFC 7798 passthrough)", () => {
    // Safari-like: H.265 offered (payload type 123) in the video section, before H.264.
    const hevcOffer = CHROMIUM_OFFER.replace(/^(m=video 9 UDP\/TLS\/RTP\/SAVPF) (.*)$/m, "$1 123 $2").replace(
      /^(a=rtpmap:96 VP8\/90000)$/m,
      "a=rtpmap:123 H265/90000\na=fmtp:123 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST\na=rtcp-fb:123 nack pli\n$1",
    );
    const offer = parseOffer(hevcOffer);
    // Source unknown (pulled on demand): both, the H.265 one used if the camera turns out to send it.
    expect(planAnswer(offer, undefined).video).toMatchObject({ choice: { payloadType: 108 }, h265: { payloadType: 123, fmtp: "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST" } });
    expect(planAnswer(offer, [{ ...video(""), codec: "H265" }]).video?.h265?.payloadType).toBe(123);
    // An H.264 source: H.264 only.
    expect(planAnswer(offer, [video("packetization-mode=1;profile-level-id=42e01f")]).video?.h265).toBeUndefined();
    // No H.265 offered (Chromium): H.264 only, whatever the source.
    expect(planAnswer(parseOffer(CHROMIUM_OFFER), [{ ...video(""), codec: "H265" }]).video?.h265).toBeUndefined();
    expect(offersH265(hevcOffer)).toBe(true);
    expect(offersH265(CHROMIUM_OFFER)).toBe(false);
  });

  it("rejects an offer without usable H.264", () => {
    const vp8only = CHROMIUM_OFFER.replace(/^m=video 9 UDP\/TLS\/RTP\/SAVPF .*$/m, "m=video 9 UDP/TLS/RTP/SAVPF 96 97");
    expectBadInput(() => planAnswer(parseOffer(vp8only), undefined), /no common video codec/);
    const mode0only = CHROMIUM_OFFER.replace(/^m=video 9 UDP\/TLS\/RTP\/SAVPF .*$/m, "m=video 9 UDP/TLS/RTP/SAVPF 104 114");
    expectBadInput(() => planAnswer(parseOffer(mode0only), undefined), /no common video codec/);
  });

  it("requires audio and video in one BUNDLE group", () => {
    expect(parseOffer(CHROMIUM_OFFER).bundles).toEqual([["0", "1"]]);
    const unbundled = CHROMIUM_OFFER.replace(/a=group:BUNDLE.*\n/, "");
    expectBadInput(() => planAnswer(parseOffer(unbundled), undefined), /BUNDLE/);
  });

  it("serves audio-only offers and refuses offers that receive nothing", () => {
    const audioOnly = CHROMIUM_OFFER.slice(0, CHROMIUM_OFFER.indexOf("m=video")) + CHROMIUM_OFFER.slice(CHROMIUM_OFFER.indexOf("m=audio"));
    const plan = planAnswer(parseOffer(audioOnly), [audio("PCMU")]);
    expect(plan.video).toBeUndefined();
    expect(plan.audio?.choices.map((c) => c.codec)).toEqual(["PCMU"]);
    const sendonly = CHROMIUM_OFFER.replace(/a=recvonly/g, "a=sendonly");
    expectBadInput(() => planAnswer(parseOffer(sendonly), undefined), /neither audio nor video/);
  });

  it("classifies H.264 profiles (RFC 6184 Table 5)", () => {
    expect(h264ProfileOf("42e01f")).toBe("constrained-baseline");
    expect(h264ProfileOf("42c00d")).toBe("constrained-baseline");
    expect(h264ProfileOf("42001f")).toBe("baseline");
    expect(h264ProfileOf("4d001f")).toBe("main");
    expect(h264ProfileOf("4d801f")).toBe("constrained-baseline");
    expect(h264ProfileOf("640c1f")).toBe("high");
    expect(h264ProfileOf("f4001f")).toBe("other");
    expect(h264ProfileOf("zz")).toBeUndefined();
  });
});

const RULES: CandidateRules = { loopback: false, privateRanges: true, maxPerRequest: 8, maxPerViewer: 6 };

/** The Chromium offer with `cands` (attribute values) in each section, after its a=mid, as Chromium writes them. */
function withCandidates(cands: string[], eoc = true): string {
  const extra = cands.map((c) => `a=${c}\n`).join("") + (eoc ? "a=end-of-candidates\n" : "");
  return CHROMIUM_OFFER.replace(/^(a=mid:\d+\n)/gm, `$1${extra}`);
}

describe("readOffer: one reading for the whole path", () => {
  it("keeps literal candidates in allowed ranges, rewritten plainly, and drops and counts the others", () => {
    const sdp = withCandidates([
      "candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host generation 0 network-id 1 network-cost 10",
      "candidate:2 1 udp 1686052607 198.18.0.1 50001 typ srflx raddr 0.0.0.0 rport 0",
      "candidate:3 1 udp 1686052607 93.184.216.34  50002 typ srflx raddr 192.168.1.20 rport 50000",
      "candidate:4 1 udp 2122260223 3c2b7f0e-8f3a-4f5e-9f54-3a1d2c4b5e6f.local 50003 typ host",
      "candidate:5 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active",
      "candidate:6 1 udp 2122260223 127.0.0.1 50004 typ host",
      "candidate:7 1 udp 2122260223 169.254.169.254 80 typ host",
    ]);
    const o = readOffer(sdp, RULES);
    expect(o.candidates).toBe(2);
    expect(o.dropped).toEqual({ name: 1, range: 3, unsupported: 1, excess: 0 });
    const lines = o.sdp.split("\n").filter((l) => l.startsWith("a=candidate:"));
    // Once per section (bundled sections repeat them), in werift's single-space form, known extensions only.
    expect(lines).toEqual([
      "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host generation 0",
      "a=candidate:3 1 udp 1686052607 93.184.216.34 50002 typ srflx raddr 192.168.1.20 rport 50000",
      "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host generation 0",
      "a=candidate:3 1 udp 1686052607 93.184.216.34 50002 typ srflx raddr 192.168.1.20 rport 50000",
    ]);
    // Something was left out: "that was all" no longer holds (the viewer's own checks still reach us).
    expect(o.sdp).not.toContain("a=end-of-candidates");
    expect(o.mids).toEqual(["0", "1"]);
    expect(o.parsed.iceUfrag).toBe("hvcn");
    expect(o.parsed.dtlsSetup).toBe("actpass");
    // The rewritten text reads the same way again.
    const again = readOffer(o.sdp, RULES);
    expect([again.sdp, again.candidates, again.dropped]).toEqual([o.sdp, 2, { name: 0, range: 0, unsupported: 0, excess: 0 }]);
  });

  it("keeps end-of-candidates when nothing was dropped, and loopback only when the media is bound there", () => {
    const sdp = withCandidates(["candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"]);
    expect(readOffer(sdp, RULES).dropped.range).toBe(1);
    const o = readOffer(sdp, { ...RULES, loopback: true });
    expect(o.candidates).toBe(1);
    expect(o.sdp.match(/a=end-of-candidates/g)).toHaveLength(2);
  });

  it("drops private ranges when told to", () => {
    const sdp = withCandidates(["candidate:1 1 udp 2122260223 10.1.2.3 50000 typ host", "candidate:2 1 udp 2122260223 fd00::5 50000 typ host"]);
    expect(readOffer(sdp, RULES).candidates).toBe(2);
    expect(readOffer(sdp, { ...RULES, privateRanges: false }).dropped.range).toBe(2);
  });

  it("bounds candidates per offer (400) and per viewer (dropped as excess)", () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => `candidate:${i} 1 udp 2122260223 8.8.${i}.1 5000 typ host`);
    expectBadInput(() => readOffer(withCandidates(many(9)), RULES), /too many ICE candidates \(at most 8\)/);
    const o = readOffer(withCandidates(many(8)), RULES);
    expect([o.candidates, o.dropped.excess]).toEqual([6, 2]);
  });

  it("refuses sections without a mid, duplicate mids and malformed candidates", () => {
    expectBadInput(() => readOffer(CHROMIUM_OFFER.replace("a=mid:1\n", ""), RULES), /^SDP offer: m-section 1 has no a=mid$/);
    expectBadInput(() => readOffer(CHROMIUM_OFFER.replace("a=mid:1\n", "a=mid:0\n"), RULES), /duplicate a=mid/);
    expectBadInput(() => readOffer(withCandidates(["candidate:1 1 udp 1 1.2.3.4 99999 typ host"]), RULES), /malformed ICE candidate: port/);
    expectBadInput(() => readOffer(withCandidates(["candidate:garbage"]), RULES), /malformed ICE candidate/);
    expectBadInput(() => readOffer(CHROMIUM_OFFER.replace("a=setup:actpass", "a=setup:sideways"), RULES), /bad a=setup/);
  });

  it("never throws anything but BadInputError, and what it accepts carries only candidates the rules take (fuzzed)", () => {
    const base = withCandidates(["candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host", "candidate:2 1 udp 2122260223 x.local 50001 typ host"]).split("\n");
    const candidateText = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc
        .tuple(
          fc.stringMatching(/^[A-Za-z0-9+/]{1,34}$/),
          fc.integer({ min: -1, max: 300 }),
          fc.constantFrom("udp", "UDP", "tcp", "sctp"),
          fc.integer({ min: 0, max: 2 ** 32 + 5 }),
          fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain(), fc.constantFrom("0.0.0.0", "::1", "fe80::1%eth0", "::ffff:10.0.0.1", "a b")),
          fc.integer({ min: -1, max: 70000 }),
          fc.constantFrom("host", "srflx", "prflx", "relay", "bogus"),
          fc.constantFrom("", " raddr 0.0.0.0 rport 0", " generation 0", " tcptype active", " raddr", " ufrag a/b+"),
        )
        .map(([f, comp, tr, prio, addr, port, typ, ext]) => `candidate:${f} ${comp} ${tr} ${prio} ${addr} ${port} typ ${typ}${ext}`),
    );
    const edit = fc.oneof(
      fc.record({ at: fc.nat(base.length), line: candidateText.map((c) => `a=${c}`) }),
      fc.record({ at: fc.nat(base.length), line: fc.constantFrom(...base) }),
      fc.record({ at: fc.nat(base.length), line: fc.string({ maxLength: 30 }) }),
      fc.record({ at: fc.nat(base.length), line: fc.constant(null) }),
    );
    fc.assert(
      fc.property(fc.array(edit, { maxLength: 6 }), (edits) => {
        const lines = [...base];
        for (const e of edits) {
          if (e.line === null) lines.splice(Math.min(e.at, lines.length - 1), 1);
          else lines.splice(Math.min(e.at, lines.length), 0, e.line);
        }
        let o;
        try {
          o = readOffer(lines.join("\n"), RULES);
          planAnswer(o.parsed, undefined);
        } catch (err) {
          if (!(err instanceof BadInputError)) throw err;
          return;
        }
        const kept = o.sdp.split("\n").filter((l) => l.startsWith("a=candidate:"));
        expect(new Set(kept).size).toBe(o.candidates);
        expect(o.candidates).toBeLessThanOrEqual(RULES.maxPerViewer);
        for (const l of kept) {
          const c = parseCandidate(l.slice(2));
          expect(c.transport).toBe("udp");
          expect(c.address).toMatch(/^[0-9a-f.:]+$/);
        }
        expect(readOffer(o.sdp, RULES).sdp).toBe(o.sdp);
      }),
      { numRuns: 1000 },
    );
  });
});
