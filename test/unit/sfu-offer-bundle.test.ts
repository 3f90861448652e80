import { describe, expect, it } from "vitest";
import { normalizeBundleOnly, parseOffer, planAnswer } from "../../sfu/offer.ts";
import type { TrackSpec } from "../../sfu/types.ts";

/** The shape of Firefox's recvonly offer: audio after the first section is bundle-only with port 0. */
const FIREFOX_OFFER = [
  "v=0",
  "o=mozilla...THIS_IS_SDPARTA-99.0 4127339296338339525 0 IN IP4 0.0.0.0",
  "s=-",
  "t=0 0",
  "a=fingerprint:sha-256 1B:24:6B:0B:6F:7F:59:17:AC:0E:0F:38:F5:4E:1C:C9:2C:30:71:39:21:79:0D:C4:7E:CE:13:69:B5:1C:F4:55",
  "a=group:BUNDLE 0 1",
  "a=ice-options:trickle",
  "a=msid-semantic:WMS *",
  "m=video 9 UDP/TLS/RTP/SAVPF 126 97",
  "c=IN IP4 0.0.0.0",
  "a=recvonly",
  "a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1",
  "a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1",
  "a=ice-pwd:a8d8ba79c3ab2e8fe2b9e2d8c2b9e3f1",
  "a=ice-ufrag:2e9b3c1a",
  "a=mid:0",
  "a=rtcp-fb:126 nack",
  "a=rtcp-fb:126 nack pli",
  "a=rtcp-fb:126 ccm fir",
  "a=rtcp-mux",
  "a=rtpmap:126 H264/90000",
  "a=rtpmap:97 H264/90000",
  "a=setup:actpass",
  "m=audio 0 UDP/TLS/RTP/SAVPF 109 0 8",
  "c=IN IP4 0.0.0.0",
  "a=bundle-only",
  "a=recvonly",
  "a=ice-pwd:a8d8ba79c3ab2e8fe2b9e2d8c2b9e3f1",
  "a=ice-ufrag:2e9b3c1a",
  "a=mid:1",
  "a=rtcp-mux",
  "a=rtpmap:109 opus/48000/2",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:8 PCMA/8000",
  "a=setup:actpass",
  "",
].join("\r\n");

const TRACKS: TrackSpec[] = [
  { kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: 96, fmtp: "packetization-mode=1;profile-level-id=42e01e" },
  { kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" },
];

describe("bundle-only sections (Firefox offers)", () => {
  it("read as rejected without normalising: the answer would leave audio out", () => {
    const offer = parseOffer(FIREFOX_OFFER);
    expect(offer.media.find((m) => m.kind === "audio")?.port).toBe(0);
    expect(planAnswer(offer, TRACKS).audio).toBeUndefined();
  });

  it("become ordinary bundled sections, and the answer carries the source's audio", () => {
    const sdp = normalizeBundleOnly(FIREFOX_OFFER);
    expect(sdp).not.toContain("a=bundle-only");
    expect(sdp).toContain("m=audio 9 UDP/TLS/RTP/SAVPF 109 0 8\r\n");
    expect(sdp.split("\r\n").length).toBe(FIREFOX_OFFER.split("\r\n").length - 1);
    const plan = planAnswer(parseOffer(sdp), TRACKS);
    expect(plan.audio?.choices.map((c) => c.codec)).toEqual(["PCMU"]);
    expect(plan.audio?.choices[0]?.payloadType).toBe(0);
  });

  it("leaves a port-0 section outside every BUNDLE group rejected, and other offers untouched", () => {
    const outside = FIREFOX_OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    expect(normalizeBundleOnly(outside)).toContain("m=audio 0 ");
    const plain = FIREFOX_OFFER.replace("m=audio 0", "m=audio 9").replace("a=bundle-only\r\n", "");
    expect(normalizeBundleOnly(plain)).toBe(plain);
  });
});
