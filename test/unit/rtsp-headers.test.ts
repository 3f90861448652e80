import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { BadInputError, AuthError } from "../../config/errors.ts";
import { formatTransport, parsePublic, parseRtpInfo, parseSession, parseTransport } from "../../gateway/rtsp/headers.ts";
import { RtspStreamParser, type RtspResponse } from "../../gateway/rtsp/message.ts";
import { parseRtspUrl, sameOrigin } from "../../gateway/rtsp/url.ts";
import { isPermanent, responseError, RtspStatusError, UnplayableError } from "../../gateway/rtsp/status.ts";

describe("Transport (RFC 2326 §12.39)", () => {
  it("reads GStreamer's TCP answer, ssrc and quoted mode included", () => {
    expect(parseTransport('RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=D4E0BD5D;mode="PLAY"')).toEqual({
      protocol: "RTP", profile: "AVP", lower: "TCP", unicast: true, interleaved: [0, 1], ssrc: 0xd4e0bd5d, mode: "PLAY",
    });
  });

  it("reads a UDP answer with server ports and source; single port means a pair", () => {
    expect(parseTransport("RTP/AVP;unicast;client_port=3556-3557;server_port=6970;source=10.0.0.5;ssrc=1A2b")).toMatchObject({
      lower: "UDP", clientPort: [3556, 3557], serverPort: [6970, 6971], source: "10.0.0.5", ssrc: 0x1a2b,
    });
    expect(parseTransport("RTP/AVP/UDP;multicast;destination=232.0.0.1;port=5000-5001")).toMatchObject({ lower: "UDP", unicast: false });
  });

  it("takes the first of several specs and ignores bad parameters", () => {
    const t = parseTransport("RTP/AVP/TCP;interleaved=300-301;server_port=0-1, RTP/AVP;unicast");
    expect(t).toEqual({ protocol: "RTP", profile: "AVP", lower: "TCP", unicast: true });
    expect(parseTransport("garbage")).toBeUndefined();
    expect(parseTransport("")).toBeUndefined();
  });

  it("formats requests", () => {
    expect(formatTransport({ lower: "TCP", interleaved: [2, 3] })).toBe("RTP/AVP/TCP;unicast;interleaved=2-3");
    expect(formatTransport({ lower: "UDP", clientPort: [3556, 3557] })).toBe("RTP/AVP;unicast;client_port=3556-3557");
  });

  it("never throws and round-trips what it formats (property)", () => {
    fc.assert(fc.property(fc.string({ maxLength: 100 }), (s) => void parseTransport(s)), { numRuns: 500 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 127 }), (n) => {
        const t = parseTransport(formatTransport({ lower: "TCP", interleaved: [2 * n, 2 * n + 1] }));
        expect(t?.interleaved).toEqual([2 * n, 2 * n + 1]);
      }),
    );
  });
});

describe("Session, Public, RTP-Info", () => {
  it("parses Session with and without timeout (default 60 s)", () => {
    expect(parseSession("x1s3F2M-Zdc.s-ui")).toEqual({ id: "x1s3F2M-Zdc.s-ui", timeout: 60, explicitTimeout: false });
    expect(parseSession("12345678;timeout=30")).toEqual({ id: "12345678", timeout: 30, explicitTimeout: true });
    expect(parseSession(" abc ; timeout = 5 ")).toMatchObject({ id: "abc", timeout: 5 });
    expect(parseSession("")).toBeUndefined();
    expect(parseSession("a b")).toBeUndefined();
    expect(parseSession("abc;timeout=0")).toMatchObject({ timeout: 60 });
  });

  it("parses Public and RTP-Info from GStreamer's answers (captured)", () => {
    const bytes = readFileSync(new URL("../fixtures/rtsp/gst-tcp-digest.bin", import.meta.url));
    const responses = new RtspStreamParser()
      .push(bytes)
      .flatMap((e) => (e.type === "response" ? [e.message] : [])) as RtspResponse[];
    expect(responses.map((r) => r.status)).toEqual([200, 401, 200, 200, 200, 200, 200]);
    const pub = parsePublic(responses[0]!.headers.get("Public"));
    expect(pub.has("GET_PARAMETER")).toBe(true);
    expect(pub.has("TEARDOWN")).toBe(true);
    const setup = parseTransport(responses[3]!.headers.get("Transport")!);
    expect(setup).toMatchObject({ lower: "TCP", interleaved: [0, 1], mode: "PLAY" });
    const info = parseRtpInfo(responses[5]!.headers.get("RTP-Info")!);
    expect(info).toHaveLength(2);
    expect(info[0]!.url).toMatch(/\/test\/stream=0$/);
    expect(info[0]!.seq).toBeTypeOf("number");
    expect(responses[1]!.headers.get("WWW-Authenticate")).toMatch(/^Digest realm="GStreamer RTSP Server", nonce="[0-9a-f]+"$/);
  });
});

describe("URLs", () => {
  it("splits credentials off, percent-decoded, with default ports", () => {
    expect(parseRtspUrl("rtsp://adm%40in:p%3Aw%20d@cam.local/Streaming/101?x=1#frag")).toEqual({
      tls: false, host: "cam.local", port: 554, href: "rtsp://cam.local/Streaming/101?x=1", username: "adm@in", password: "p:w d",
    });
    expect(parseRtspUrl("rtsps://[::1]:8322/a")).toEqual({ tls: true, host: "::1", port: 8322, href: "rtsps://[::1]:8322/a" });
    expect(parseRtspUrl("RTSPS://h/a")).toMatchObject({ tls: true, port: 322 });
    expect(parseRtspUrl("rtsp://user@h/a")).toMatchObject({ username: "user", password: "" });
    expect(parseRtspUrl("rtsp://u:100%@h/a").password).toBe("100%");
  });

  it("rejects other schemes and garbage with BadInputError", () => {
    expect(() => parseRtspUrl("http://h/a")).toThrow(BadInputError);
    expect(() => parseRtspUrl("not a url")).toThrow(BadInputError);
    expect(() => parseRtspUrl("rtsp:///nohost")).toThrow(BadInputError);
  });

  it("compares origins for credential forwarding", () => {
    expect(sameOrigin(parseRtspUrl("rtsp://H:554/a"), parseRtspUrl("rtsp://h/b"))).toBe(true);
    expect(sameOrigin(parseRtspUrl("rtsp://h/a"), parseRtspUrl("rtsp://h:8554/a"))).toBe(false);
    expect(sameOrigin(parseRtspUrl("rtsp://h/a"), parseRtspUrl("rtsp://other/a"))).toBe(false);
  });
});

describe("status mapping", () => {
  it("maps answers to error categories in one place", () => {
    expect(responseError("DESCRIBE", 401, "Unauthorized")).toBeInstanceOf(AuthError);
    expect(responseError("DESCRIBE", 403, "")).toMatchObject({ code: "FORBIDDEN" });
    const nf = responseError("DESCRIBE", 404, "");
    expect(nf).toBeInstanceOf(RtspStatusError);
    expect(nf.message).toBe("DESCRIBE: recorder answered 404 Not Found");
    expect(isPermanent(nf)).toBe(true);
    expect(isPermanent(responseError("SETUP", 503, "Busy"))).toBe(false);
    expect(isPermanent(new UnplayableError("no playable track"))).toBe(true);
    expect(isPermanent(responseError("PLAY", 401, ""))).toBe(true);
  });
});
