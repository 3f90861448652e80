import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  NalType,
  formatSpropParameterSets,
  h264PayloadIsKeyframeStart,
  parseFmtp,
  parseSpropParameterSets,
  parseSps,
  profileLevelIdFromSps,
  splitAnnexB,
  unescapeRbsp,
} from "../../sfu/h264/nal.ts";
import { GST_SPROP, TESTSRC_H264, fixture } from "../fixtures/h264/fixtures.ts";

const types = (nals: Buffer[]): number[] => nals.map((n) => n[0]! & 0x1f);

describe("splitAnnexB", () => {
  it("splits the x264 clip into its NAL units", () => {
    const nals = splitAnnexB(fixture(TESTSRC_H264));
    // x264: SPS, PPS, SEI (version string), IDR, then 4 P slices; IDR again at frame 5 with SPS/PPS.
    expect(types(nals)).toEqual([7, 8, 6, 5, 1, 1, 1, 1, 7, 8, 5, 1, 1, 1, 1]);
    expect(nals.reduce((n, x) => n + x.length, 0)).toBeLessThan(fixture(TESTSRC_H264).length);
    for (const n of nals) expect(n[0]! & 0x80).toBe(0);
  });

  it("handles 3- and 4-byte start codes, trailing zeros and garbage before the first start code", () => {
    const b = Buffer.from("ffff00000001670102000001680300000000016501020000", "hex");
    expect(splitAnnexB(b).map((n) => n.toString("hex"))).toEqual(["670102", "6803", "650102"]);
    expect(splitAnnexB(Buffer.alloc(0))).toEqual([]);
    expect(splitAnnexB(Buffer.from("000001", "hex"))).toEqual([]);
  });
});

describe("parseSps", () => {
  it("reads 640x360 constrained baseline from the x264 clip", () => {
    const sps = splitAnnexB(fixture(TESTSRC_H264))[0]!;
    expect(parseSps(sps)).toMatchObject({ width: 640, height: 360, profileIdc: 66, profile: "Constrained Baseline", levelIdc: 30, frameMbsOnly: true });
    expect(profileLevelIdFromSps(sps)).toBe("42c01e");
  });

  it("reads the GStreamer sprop SPS: 320x240", () => {
    const { sps, pps } = parseSpropParameterSets(GST_SPROP);
    expect(sps).toHaveLength(1);
    expect(pps).toHaveLength(1);
    expect(parseSps(sps[0]!)).toMatchObject({ width: 320, height: 240, profileIdc: 66, levelIdc: 13 });
  });

  it("reads high profile with cropping and emulation prevention: 1920x1080", () => {
    const sps = Buffer.from("67640028acd940780227e5c044000003000400000300c83c60c658", "hex");
    expect(unescapeRbsp(sps).length).toBe(sps.length - 2);
    expect(parseSps(sps)).toMatchObject({ width: 1920, height: 1080, profile: "High", chromaFormatIdc: 1, levelIdc: 40 });
  });

  it("reads an interlaced SPS (frame_mbs_only_flag = 0): 720x576", () => {
    const sps = Buffer.from("6764001eacd940b424d8088000000300800000190f8a14cb", "hex");
    expect(parseSps(sps)).toMatchObject({ width: 720, height: 576, frameMbsOnly: false });
  });

  it("reads a high 4:4:4 SPS (GStreamer x264enc with Y444 input): 320x240", () => {
    const sps = Buffer.from("Z/QADZDZaBQfsBagwMDIAAADAAgAAAMBlHihVQ==", "base64");
    expect(parseSps(sps)).toMatchObject({ width: 320, height: 240, chromaFormatIdc: 3, profileIdc: 244 });
  });

  it("returns null for non-SPS, truncated or random input, never throws", () => {
    expect(parseSps(Buffer.from("6801", "hex"))).toBeNull();
    const sps = splitAnnexB(fixture(TESTSRC_H264))[0]!;
    for (let n = 0; n < 8; n++) expect(parseSps(sps.subarray(0, n))).toBeNull();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        const bytes = Buffer.from(b);
        if (bytes.length) bytes[0] = 0x67;
        const r = parseSps(bytes);
        if (r) expect(r.width).toBeGreaterThan(0);
      }),
      { numRuns: 3000 },
    );
  });
});

describe("fmtp and sprop-parameter-sets", () => {
  it("parses an fmtp line", () => {
    const m = parseFmtp("96 packetization-mode=1; profile-level-id=42C01E ;sprop-parameter-sets=Z0LADdoFB+wFqDAwNSgAAAMACAAAAwGUeKFV,aM48gA==");
    expect(m.get("packetization-mode")).toBe("1");
    expect(m.get("profile-level-id")).toBe("42C01E");
    expect(m.get("sprop-parameter-sets")).toBe(GST_SPROP);
  });

  it("decodes sprop from a full fmtp or a bare value and round-trips", () => {
    const a = parseSpropParameterSets(`packetization-mode=1;sprop-parameter-sets=${GST_SPROP}`);
    const b = parseSpropParameterSets(GST_SPROP);
    expect(a).toEqual(b);
    expect(formatSpropParameterSets(a)).toBe(GST_SPROP);
    expect(parseSpropParameterSets("sprop-parameter-sets=,!!,aM48gA==")).toEqual({ sps: [], pps: [Buffer.from("aM48gA==", "base64")] });
    expect(parseSpropParameterSets("")).toEqual({ sps: [], pps: [] });
  });
});

describe("h264PayloadIsKeyframeStart", () => {
  it("recognises IDR, SPS, STAP-A with SPS and the first IDR fragment only", () => {
    const yes = ["65aa", "6742", "7c85aa", "1800026742000268ce", "7c87aa"];
    const no = ["41aa", "6800", "7c05aa", "7c45aa", "7c81aa", "18000268ce", "1800ff67", "", "7c", "09f0"];
    for (const h of yes) expect(h264PayloadIsKeyframeStart(Buffer.from(h, "hex")), h).toBe(true);
    for (const h of no) expect(h264PayloadIsKeyframeStart(Buffer.from(h, "hex")), h).toBe(false);
    expect(NalType.FU_A).toBe(28);
  });
});
