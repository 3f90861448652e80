import { describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import { answerOffer, createOffer, extractSdp, parseSdp, readAnswer, type LocalMedia } from "../../gateway/sip/sdp.ts";
import { dtmfRelayBody, parseDtmfInfo, DtmfReceiver, writeDtmfPayload } from "../../gateway/sip/dtmf.ts";
import { alawToLinear, linearToAlaw, linearToUlaw, ringbackFrames, ulawToLinear } from "../../gateway/sip/rtp.ts";

const local: LocalMedia = { address: "192.0.2.10", rtpPort: 10002, rtcpPort: 10003, sessionId: "42", version: 1 };
const sdp = (s: string): string => s.replace(/\n/g, "\r\n");

const DOOR_OFFER = sdp(`v=0
o=door 1 1 IN IP4 192.168.1.50
s=call
c=IN IP4 192.168.1.50
t=0 0
m=audio 4000 RTP/AVP 9 8 0 101
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
m=video 4002 RTP/AVP 96
a=rtpmap:96 H264/90000
`);

describe("sdp offer/answer", () => {
  it("accepts the door's first G.711 codec, keeps telephone-event, refuses video with port 0", () => {
    const a = answerOffer(parseSdp(DOOR_OFFER), local);
    expect(a.ok).toBe(true);
    if (!a.ok) return;
    expect(a.audio).toMatchObject({ codec: "PCMA", payloadType: 8, dtmfPayloadType: 101, remoteAddress: "192.168.1.50", remoteRtpPort: 4000, remoteRtcpPort: 4001, direction: "sendrecv" });
    const answer = parseSdp(a.sdp);
    expect(answer.media).toHaveLength(2);
    expect(answer.media[0]).toMatchObject({ type: "audio", port: 10002, proto: "RTP/AVP", formats: ["8", "101"] });
    expect(answer.media[1]).toMatchObject({ type: "video", port: 0 });
    expect(answer.address).toBe("192.0.2.10");
  });

  it("answers a static-payload-only offer and mirrors the direction", () => {
    const a = answerOffer(parseSdp(sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5000 RTP/AVP 0\na=sendonly\n")), local);
    expect(a.ok && a.audio).toMatchObject({ codec: "PCMU", payloadType: 0, dtmfPayloadType: undefined, direction: "recvonly" });
    expect(a.ok && a.sdp).toContain("a=recvonly");
  });

  it("refuses offers without G.711 or over SRTP, and rejects garbage", () => {
    expect(answerOffer(parseSdp(sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5000 RTP/AVP 9 18\n")), local).ok).toBe(false);
    expect(answerOffer(parseSdp(sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5000 RTP/SAVP 0\n")), local).ok).toBe(false);
    expect(() => parseSdp("hello")).toThrow(BadInputError);
    expect(() => parseSdp("v=0\r\nm=audio x RTP/AVP 0\r\n")).toThrow(BadInputError);
  });

  it("honours a=rtcp (RFC 3605) and writes one when our RTCP port is not RTP+1", () => {
    const a = answerOffer(parseSdp(sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5000 RTP/AVP 0\na=rtcp:6001\n")), { ...local, rtcpPort: 20001 });
    expect(a.ok && a.audio.remoteRtcpPort).toBe(6001);
    expect(a.ok && a.sdp).toContain("a=rtcp:20001");
  });

  it("creates an offer and reads the device's answer", () => {
    const offer = parseSdp(createOffer(local));
    expect(offer.media[0]!.formats).toEqual(["0", "8", "101"]);
    const ans = readAnswer(parseSdp(sdp("v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 7000 RTP/AVP 8 101\na=rtpmap:101 telephone-event/8000\n")));
    expect(ans.ok && ans.audio).toMatchObject({ codec: "PCMA", payloadType: 8, dtmfPayloadType: 101, remoteAddress: "10.0.0.9", remoteRtpPort: 7000 });
  });

  it("finds SDP inside multipart/mixed", () => {
    const body = Buffer.from("--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nx\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n", "latin1");
    expect(extractSdp("multipart/mixed", "b1", body)).toBe("v=0\r\nx");
    expect(extractSdp("application/unknownformat", undefined, body)).toBeUndefined();
  });
});

describe("dtmf and G.711", () => {
  it("reads dtmf-relay and application/dtmf INFO bodies", () => {
    expect(parseDtmfInfo("application/dtmf-relay", dtmfRelayBody("#", 160))).toBe("#");
    expect(parseDtmfInfo("application/dtmf-relay", "Signal= 5\r\nDuration= 100\r\n")).toBe("5");
    expect(parseDtmfInfo("application/dtmf", "7")).toBe("7");
    expect(parseDtmfInfo("application/dtmf-relay", "Signal=Z\r\n")).toBeUndefined();
    expect(parseDtmfInfo("text/plain", "Signal=1")).toBeUndefined();
  });

  it("reports one digit per RFC 4733 event despite repeated and end packets", () => {
    const r = new DtmfReceiver();
    const p = Buffer.alloc(4);
    const seen: (string | undefined)[] = [];
    for (const [ts, end] of [[1000, false], [1000, false], [1000, true], [1000, true], [1000, true], [2000, false]] as const) {
      writeDtmfPayload(p, 0, ts === 1000 ? 1 : 11, end, 10, 400);
      seen.push(r.push(ts, p, 0, 4));
    }
    expect(seen.filter(Boolean)).toEqual(["1", "#"]);
  });

  it("encodes G.711 within the codec's quantisation error", () => {
    for (const x of [-32000, -1000, -10, 0, 10, 1000, 32000]) {
      expect(Math.abs(ulawToLinear(linearToUlaw(x)) - x)).toBeLessThanOrEqual(Math.max(8, Math.abs(x) / 16));
      expect(Math.abs(alawToLinear(linearToAlaw(x)) - x)).toBeLessThanOrEqual(Math.max(16, Math.abs(x) / 16));
    }
    expect(linearToUlaw(0)).toBe(0xff);
    expect(linearToAlaw(0)).toBe(0xd5);
  });

  it("builds a 1 s on / 4 s off ringback in 20 ms frames", () => {
    const frames = ringbackFrames("PCMU");
    expect(frames).toHaveLength(250);
    const energy = (b: Buffer): number => b.reduce((s, v) => s + Math.abs(ulawToLinear(v)), 0);
    expect(energy(frames[10]!)).toBeGreaterThan(100_000);
    expect(energy(frames[100]!)).toBe(0);
  });
});
