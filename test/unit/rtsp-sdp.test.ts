import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { BadInputError } from "../../config/errors.ts";
import { baseUrl, parseNpt, parseSdp, planTracks, resolveControl } from "../../gateway/rtsp/sdp.ts";

const fixture = (name: string) => readFileSync(new URL(`../fixtures/rtsp/${name}`, import.meta.url), "utf8");

describe("GStreamer's DESCRIBE answer (captured)", () => {
  it("maps H.264 and PCMU with controls resolved against Content-Base", () => {
    const sdp = parseSdp(fixture("gst-tcp-digest.sdp"));
    expect(sdp.name).toBe("Session streamed with GStreamer");
    expect(sdp.control).toBe("*");
    expect(sdp.range?.npt).toEqual({ start: "now", end: undefined });
    expect(sdp.media.map((m) => [m.type, m.formats, m.control])).toEqual([
      ["video", ["96"], "stream=0"],
      ["audio", ["0"], "stream=1"],
    ]);
    const plan = planTracks(sdp, baseUrl("rtsp://127.0.0.1:8554/test", "rtsp://127.0.0.1:8554/test/"));
    expect(plan.aggregateUrl).toBe("rtsp://127.0.0.1:8554/test/");
    expect(plan.unsupported).toEqual([]);
    expect(plan.tracks.map((t) => t.controlUrl)).toEqual([
      "rtsp://127.0.0.1:8554/test/stream=0",
      "rtsp://127.0.0.1:8554/test/stream=1",
    ]);
    expect(plan.tracks[0]!.spec).toMatchObject({ kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: 96 });
    expect(plan.tracks[0]!.spec.fmtp).toMatch(/^packetization-mode=1;sprop-parameter-sets=Z0LADdoF[^ ]+;profile-level-id=42c00d/);
    expect(plan.tracks[1]!.spec).toEqual({ kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" });
  });
});

// Shapes seen from common recorders (hand-written from their documented formats).
const hikvisionLike = `v=0
o=- 1109162014219182 1109162014219192 IN IP4 x.y.z.w
s=Media Presentation
e=NONE
b=AS:5050
t=0 0
a=control:rtsp://10.0.0.5:554/Streaming/Channels/101/
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
b=AS:5000
a=recvonly
a=x-dimensions:1920,1080
a=control:rtsp://10.0.0.5:554/Streaming/Channels/101/trackID=1
a=rtpmap:96 H265/90000
m=audio 0 RTP/AVP 8
c=IN IP4 0.0.0.0
b=AS:50
a=recvonly
a=control:rtsp://10.0.0.5:554/Streaming/Channels/101/trackID=2
a=rtpmap:8 PCMA/8000
m=application 0 RTP/AVP 107
a=control:trackID=3
a=rtpmap:107 vnd.onvif.metadata/90000
`.replace(/\n/g, "\r\n");

describe("planTracks", () => {
  it("reports H.265 and metadata as unsupported without failing audio (recvonly = what we receive)", () => {
    const sdp = parseSdp(hikvisionLike);
    const plan = planTracks(sdp, baseUrl("rtsp://10.0.0.5:554/Streaming/Channels/101"));
    expect(plan.aggregateUrl).toBe("rtsp://10.0.0.5:554/Streaming/Channels/101/");
    expect(plan.tracks.map((t) => [t.spec.codec, t.controlUrl])).toEqual([
      ["PCMA", "rtsp://10.0.0.5:554/Streaming/Channels/101/trackID=2"],
    ]);
    expect(plan.unsupported.map((u) => [u.mediaIndex, u.type])).toEqual([
      [0, "video"],
      [2, "application"],
    ]);
    expect(plan.unsupported[0]!.reason).toMatch(/H\.265/);
  });

  it("skips an ONVIF backchannel (sendonly) and inactive media", () => {
    const sdp = parseSdp("v=0\r\ns=x\r\nm=audio 0 RTP/AVP 0\r\na=control:back\r\na=sendonly\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:v\r\na=recvonly\r\nm=audio 0 RTP/AVP 8\r\na=control:off\r\na=inactive\r\n");
    const plan = planTracks(sdp, "rtsp://h/s");
    expect(plan.tracks.map((t) => t.controlUrl)).toEqual(["rtsp://h/s/v"]);
    expect(plan.unsupported.map((u) => u.reason)).toEqual(["sendonly: a backchannel to the recorder", "inactive: not sent"]);
  });

  it("resolves a Dahua-style query base and Axis-style absolute controls", () => {
    const dahua = parseSdp(
      "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=Media Server\na=control:*\nm=video 0 RTP/AVP 96\na=control:trackID=0\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\nm=audio 0 RTP/AVP 8\na=control:trackID=1\na=rtpmap:8 PCMA/8000\n",
    );
    const base = baseUrl(
      "rtsp://10.0.0.9:554/cam/realmonitor?channel=1&subtype=0",
      "rtsp://10.0.0.9:554/cam/realmonitor?channel=1&subtype=0/",
    );
    expect(planTracks(dahua, base).tracks.map((t) => t.controlUrl)).toEqual([
      "rtsp://10.0.0.9:554/cam/realmonitor?channel=1&subtype=0/trackID=0",
      "rtsp://10.0.0.9:554/cam/realmonitor?channel=1&subtype=0/trackID=1",
    ]);
    const axis = parseSdp(
      "v=0\ns=Session\na=control:rtsp://cam/axis-media/media.amp?videocodec=h264\nm=video 0 RTP/AVP 96\na=control:rtsp://cam/axis-media/media.amp/trackID=1?videocodec=h264\na=rtpmap:96 H264/90000\n",
    );
    const plan = planTracks(axis, "rtsp://cam/axis-media/media.amp?videocodec=h264");
    expect(plan.aggregateUrl).toBe("rtsp://cam/axis-media/media.amp?videocodec=h264");
    expect(plan.tracks[0]!.controlUrl).toBe("rtsp://cam/axis-media/media.amp/trackID=1?videocodec=h264");
  });

  it("uses the base for a single media without control, and rejects that with several", () => {
    const one = parseSdp("v=0\ns=-\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\n");
    expect(planTracks(one, "rtsp://h/a").tracks[0]!.controlUrl).toBe("rtsp://h/a");
    const two = parseSdp("v=0\ns=-\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\nm=audio 0 RTP/AVP 0\n");
    const plan = planTracks(two, "rtsp://h/a");
    expect(plan.tracks).toEqual([]);
    expect(plan.unsupported.map((u) => u.reason)).toEqual([
      "no a=control attribute in a multi-media description",
      "no a=control attribute in a multi-media description",
    ]);
  });

  it("maps Opus, static PCMU, and picks the first supported format", () => {
    const sdp = parseSdp(
      "v=0\ns=-\nm=audio 0 RTP/AVP 97 111 0\na=control:a\na=rtpmap:97 MPEG4-GENERIC/16000/1\na=rtpmap:111 opus/48000/2\na=fmtp:111 minptime=10;useinbandfec=1\n" +
        "m=audio 0 RTP/AVP 0\na=control:b\nm=audio 0 RTP/AVP 97\na=control:c\na=rtpmap:97 MPEG4-GENERIC/16000/1\n",
    );
    const plan = planTracks(sdp, "rtsp://h/a/");
    expect(plan.tracks.map((t) => t.spec)).toEqual([
      { kind: "audio", codec: "OPUS", clockRate: 48000, channels: 2, payloadType: 111, fmtp: "minptime=10;useinbandfec=1" },
      { kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" },
    ]);
    expect(plan.unsupported).toEqual([
      { mediaIndex: 2, type: "audio", reason: "AAC sound is not converted for this camera (set its transcode.aac to opus)" },
    ]);
  });

  it("pulls AAC and H.265 only for a camera that converts them, and says why not otherwise", () => {
    const sdp = parseSdp(
      "v=0\ns=-\nm=video 0 RTP/AVP 96\na=control:v\na=rtpmap:96 H265/90000\na=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwBdlZgJ\n" +
        "m=audio 0 RTP/AVP 97\na=control:a\na=rtpmap:97 MPEG4-GENERIC/16000/1\na=fmtp:97 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;indexdeltalength=3\n" +
        "m=audio 0 RTP/AVP 98\na=control:b\na=rtpmap:98 MP4A-LATM/44100/2\na=fmtp:98 cpresent=0;config=400024203fc0\n" +
        "m=audio 0 RTP/AVP 99\na=control:c\na=rtpmap:99 MPEG4-GENERIC/48000/2\na=fmtp:99 mode=AAC-hbr;config=2990;sizelength=13\n",
    );
    const yes = planTracks(sdp, "rtsp://h/a/", { aac: true, h265: true });
    expect(yes.tracks.map((t) => [t.spec.kind, t.spec.codec, t.spec.clockRate])).toEqual([
      ["video", "H265", 90000],
      ["audio", "MPEG4-GENERIC", 16000],
      ["audio", "MP4A-LATM", 44100],
    ]);
    // config=2990: object type 5 (HE-AAC) whose core is not AAC-LC, refused with the reason.
    expect(yes.unsupported.map((u) => u.mediaIndex)).toEqual([3]);
    expect(yes.unsupported[0]!.reason).toMatch(/^AAC sound cannot be converted: /);
    const no = planTracks(sdp, "rtsp://h/a/", { aac: "install ffmpeg", h265: "no H.265 here" });
    expect(no.tracks).toEqual([]);
    expect(no.unsupported.map((u) => u.reason)).toEqual(["no H.265 here", "install ffmpeg", "install ffmpeg", "install ffmpeg"]);
    // Passed through: pulled for viewers that offer H.265, and still named for the others.
    const pass = planTracks(sdp, "rtsp://h/a/", { aac: "install ffmpeg", h265: "only where H.265 decodes", h265Passthrough: true });
    expect(pass.tracks.map((t) => [t.spec.kind, t.spec.codec])).toEqual([["video", "H265"]]);
    expect(pass.unsupported[0]).toEqual({ mediaIndex: 0, type: "video", reason: "only where H.265 decodes", passthrough: "H265" });
    // Converted to H.264: nothing to say to anyone.
    expect(planTracks(sdp, "rtsp://h/a/", { aac: true, h265: true, h265Passthrough: true }).unsupported.some((u) => u.type === "video")).toBe(false);
  });

  it("refuses H.264 packetization-mode=2, SRTP profiles and unknown dynamic types", () => {
    const sdp = parseSdp(
      "v=0\ns=-\nm=video 0 RTP/AVP 96\na=control:1\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=2\n" +
        "m=video 0 RTP/SAVP 96\na=control:2\na=rtpmap:96 H264/90000\nm=video 0 RTP/AVP 98\na=control:3\n",
    );
    const reasons = planTracks(sdp, "rtsp://h/").unsupported.map((u) => u.reason);
    expect(reasons).toEqual([
      "H.264 packetization-mode=2 is not supported",
      "transport RTP/SAVP is not supported (plain RTP/AVP only)",
      "payload type 98 has no rtpmap",
    ]);
  });
});

describe("parseSdp", () => {
  it("throws BadInputError on text that is not SDP", () => {
    expect(() => parseSdp("<html>")).toThrow(BadInputError);
    expect(() => parseSdp("")).toThrow(BadInputError);
  });

  it("skips malformed lines and attributes with warnings", () => {
    const sdp = parseSdp("v=0\nthis is junk\nm=video abc\na=control:lost\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264\na=rtpmap:96 H264/90000\na=fmtp:x y\n");
    expect(sdp.media).toHaveLength(1);
    expect(sdp.media[0]!.control).toBeUndefined(); // the broken m= section's control is not inherited
    expect(sdp.media[0]!.rtpmap.get(96)).toEqual({ encoding: "H264", clockRate: 90000, channels: 1 });
    expect(sdp.warnings).toHaveLength(4);
  });

  it("inherits a session-level direction", () => {
    const sdp = parseSdp("v=0\na=sendonly\nm=video 0 RTP/AVP 96\nm=audio 0 RTP/AVP 0\na=inactive\n");
    expect(sdp.media.map((m) => m.direction)).toEqual(["sendonly", "inactive"]);
  });
});

describe("URLs (RFC 2326 C.1.1)", () => {
  it("prefers Content-Base, then Content-Location, then the request URL", () => {
    expect(baseUrl("rtsp://h/a", "rtsp://h/b/", "rtsp://h/c/")).toBe("rtsp://h/b/");
    expect(baseUrl("rtsp://h/a", undefined, "rtsp://h/c/")).toBe("rtsp://h/c/");
    expect(baseUrl("rtsp://h/a", "  ", "/rel/")).toBe("rtsp://h/rel/");
    expect(baseUrl("rtsp://h/a")).toBe("rtsp://h/a");
  });

  it("resolves controls", () => {
    expect(resolveControl("rtsp://h:554/a", "*")).toBe("rtsp://h:554/a");
    expect(resolveControl("rtsp://h:554/a", "track1")).toBe("rtsp://h:554/a/track1");
    expect(resolveControl("rtsp://h:554/a/", "track1")).toBe("rtsp://h:554/a/track1");
    expect(resolveControl("rtsp://h:554/a/", "/x/track1")).toBe("rtsp://h:554/x/track1");
    expect(resolveControl("rtsp://h:554/a/", "RTSPS://o/t")).toBe("RTSPS://o/t");
  });

  it("parses npt ranges", () => {
    expect(parseNpt("npt=0-")).toEqual({ start: 0, end: undefined });
    expect(parseNpt("npt=now-")).toEqual({ start: "now", end: undefined });
    expect(parseNpt("npt=1.5-0:01:10.25")).toEqual({ start: 1.5, end: 70.25 });
    expect(parseNpt("clock=19961108T142300Z-")).toBeUndefined();
    expect(parseNpt("npt=a-b")).toBeUndefined();
  });
});

describe("properties", () => {
  const sdpLine = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom("m=video 0 RTP/AVP 96", "m=audio 0 RTP/AVP 0 8", "a=rtpmap:96 H264/90000", "a=control:*", "a=control:t", "a=fmtp:96 packetization-mode=1", "a=recvonly", "a=range:npt=0-"),
    fc.tuple(fc.constantFrom("m=", "a=rtpmap:", "a=fmtp:", "a=control:", "a=range:"), fc.string({ maxLength: 30 })).map(([a, b]) => a + b),
  );

  it("never throws anything but BadInputError, and planning never throws", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(sdpLine, { maxLength: 25 }), fc.constantFrom("\r\n", "\n"), (withV, lines, eol) => {
        const text = (withV ? ["v=0", ...lines] : lines).join(eol);
        let sdp;
        try {
          sdp = parseSdp(text);
        } catch (e) {
          expect(e).toBeInstanceOf(BadInputError);
          return;
        }
        const plan = planTracks(sdp, "rtsp://h/s");
        expect(plan.tracks.length + plan.unsupported.length).toBeLessThanOrEqual(sdp.media.length);
        for (const t of plan.tracks) {
          expect(t.controlUrl.startsWith("rtsp")).toBe(true);
          expect(t.spec.payloadType).toBeLessThanOrEqual(127);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("a relative control always extends the base", () => {
    fc.assert(
      fc.property(fc.webPath(), fc.stringMatching(/^[A-Za-z0-9=_.-]{1,20}$/), (path, ctl) => {
        const base = `rtsp://h:554${path}`;
        const url = resolveControl(base, ctl);
        expect(url.startsWith(base)).toBe(true);
        expect(url.endsWith(ctl)).toBe(true);
      }),
    );
  });
});
