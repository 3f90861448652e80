import { describe, expect, it } from "vitest";
import { janusConfigFiles } from "../peers/janus.ts";
import { firstIpv4HostCandidate, h264CodecsOf } from "../peers/light-viewer.ts";

/** The video part of an offer Janus 1.1.2's streaming plugin sent for an RTSP mountpoint (captured). */
const JANUS_OFFER = [
  "v=0",
  "o=- 1795229452057932 1 IN IP4 192.0.2.2",
  "s=Mountpoint 1",
  "t=0 0",
  "a=group:BUNDLE v",
  "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
  "c=IN IP4 192.0.2.2",
  "a=sendonly",
  "a=mid:v",
  "a=rtpmap:96 H264/90000",
  "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LADdoFB+wFqDAwNSgAAAMACAAAAwGUeKFV,aM48gA==;profile-level-id=42c00d;level-asymmetry-allowed=1",
  "a=rtpmap:97 rtx/90000",
  "a=fmtp:97 apt=96",
  "a=candidate:2 1 udp 2015363583 fd00::2 54411 typ host",
  "a=candidate:1 1 udp 2015363327 192.0.2.2 54656 typ host",
  "a=end-of-candidates",
  "",
].join("\r\n");

describe("bench light viewer: SDP helpers", () => {
  it("takes the offer's H.264 codecs with their payload types and fmtp, not RTX", () => {
    const codecs = h264CodecsOf(JANUS_OFFER);
    expect(codecs).toHaveLength(1);
    expect(codecs[0]!.payloadType).toBe(96);
    expect(codecs[0]!.mimeType).toBe("video/H264");
    expect(codecs[0]!.parameters).toContain("profile-level-id=42c00d");
  });

  it("refuses an offer without H.264", () => {
    expect(() => h264CodecsOf("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 100\r\na=rtpmap:100 VP8/90000\r\n")).toThrow(/no H.264/);
  });

  it("finds the first IPv4 host candidate (skipping IPv6)", () => {
    expect(firstIpv4HostCandidate(JANUS_OFFER)).toBe("192.0.2.2");
    expect(firstIpv4HostCandidate("v=0\r\n")).toBeUndefined();
  });
});

describe("bench Janus launcher: generated configuration", () => {
  const base = {
    dir: "/tmp/x",
    httpPort: 18188,
    rtspUrl: 'rtsp://127.0.0.1:554/cam"1',
    videoBufferKf: true,
    audio: false,
    rtpPortRange: "50000-51999",
    debugLevel: 3,
  };

  it("writes event_loops only when asked (as packaged = one loop per handle)", () => {
    expect(janusConfigFiles({ ...base, eventLoops: 2 })["janus.jcfg"]).toMatch(/^\s*event_loops = 2$/m);
    expect(janusConfigFiles(base)["janus.jcfg"]).not.toMatch(/event_loops/);
  });

  it("loads only the streaming plugin and the HTTP transport, on 127.0.0.1", () => {
    const f = janusConfigFiles(base);
    const jcfg = f["janus.jcfg"]!;
    expect(jcfg).toMatch(/disable = ".*libjanus_videoroom\.so.*"/);
    expect(jcfg).not.toMatch(/disable = ".*libjanus_streaming\.so/);
    expect(jcfg).not.toMatch(/disable = ".*libjanus_http\.so/);
    expect(jcfg).toContain('configs_folder = "/tmp/x"');
    expect(f["janus.transport.http.jcfg"]).toMatch(/port = 18188/);
    expect(f["janus.transport.http.jcfg"]).toMatch(/ip = "127\.0\.0\.1"/);
  });

  it("declares one rtsp mountpoint with the keyframe buffer and a safely quoted URL", () => {
    const s = janusConfigFiles(base)["janus.plugin.streaming.jcfg"]!;
    expect(s).toMatch(/type = "rtsp"/);
    expect(s).toMatch(/id = 1$/m);
    expect(s).toMatch(/videobufferkf = true/);
    expect(s).toMatch(/audio = false/);
    expect(s).toContain('url = "rtsp://127.0.0.1:554/cam\\"1"');
    expect(janusConfigFiles({ ...base, videoBufferKf: false })["janus.plugin.streaming.jcfg"]).toMatch(/videobufferkf = false/);
  });

  it("declares one rtsp mountpoint per camera URL, ids 1…N, each with its own unique section and URL", () => {
    const urls = ["rtsp://127.0.0.1:5001/cam1", "rtsp://127.0.0.1:5002/cam2", "rtsp://127.0.0.1:5003/cam3"];
    const s = janusConfigFiles({ ...base, rtspUrls: urls })["janus.plugin.streaming.jcfg"]!;
    expect([...s.matchAll(/^(\w+): \{$/gm)].map((m) => m[1])).toEqual(["general", "bench", "bench2", "bench3"]);
    expect([...s.matchAll(/^\s*id = (\d+)$/gm)].map((m) => Number(m[1]))).toEqual([1, 2, 3]);
    expect([...s.matchAll(/^\s*url = "(.*)"$/gm)].map((m) => m[1])).toEqual(urls);
    expect(s.match(/type = "rtsp"/g)).toHaveLength(3);
    expect(s).not.toContain("cam\\\"1");
  });
});
