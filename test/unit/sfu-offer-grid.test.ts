/**
 * planGridAnswer (sfu/offer.ts): the answer of a multi-camera session, from offers built
 * section by section like a browser's grid offer (N recvonly video transceivers, one audio).
 */
import { describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import { parseOffer, planGridAnswer, type Direction } from "../../sfu/offer.ts";

interface Section {
  kind: "video" | "audio";
  direction?: Direction;
  /** 0 rejects the section (RFC 3264 §6). */
  port?: number;
  /** `a=rtpmap` values with their `a=fmtp` (undefined: none). */
  codecs?: { pt: number; rtpmap: string; fmtp?: string }[];
}

/** Chromium's H.264 list in the order it offers it: 42001f (mode 1, 0), 42e01f (1, 0), 4d001f, 64001f; VP8 first. */
const CHROMIUM_VIDEO = [
  { pt: 96, rtpmap: "VP8/90000" },
  { pt: 103, rtpmap: "H264/90000", fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f" },
  { pt: 104, rtpmap: "H264/90000", fmtp: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f" },
  { pt: 107, rtpmap: "H264/90000", fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" },
  { pt: 108, rtpmap: "H264/90000", fmtp: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f" },
  { pt: 109, rtpmap: "H264/90000", fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f" },
  { pt: 112, rtpmap: "H264/90000", fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f" },
];
const CHROMIUM_AUDIO = [
  { pt: 111, rtpmap: "opus/48000/2", fmtp: "minptime=10;useinbandfec=1" },
  { pt: 63, rtpmap: "red/48000/2", fmtp: "111/111" },
  { pt: 9, rtpmap: "G722/8000" },
  { pt: 0, rtpmap: "PCMU/8000" },
  { pt: 8, rtpmap: "PCMA/8000" },
];

/** An offer of these sections, mids 0…n-1, every non-rejected one in one BUNDLE group unless `bundle` says otherwise (one group, or several). */
function offer(sections: Section[], bundle?: string[] | string[][]): string {
  const mids = sections.map((_, i) => String(i));
  const groups = bundle === undefined ? [mids.filter((_, i) => sections[i]!.port !== 0)] : Array.isArray(bundle[0]) ? (bundle as string[][]) : [bundle as string[]];
  const lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", ...groups.map((g) => `a=group:BUNDLE ${g.join(" ")}`)];
  sections.forEach((s, i) => {
    const codecs = s.codecs ?? (s.kind === "video" ? CHROMIUM_VIDEO : CHROMIUM_AUDIO);
    lines.push(
      `m=${s.kind} ${s.port ?? 9} UDP/TLS/RTP/SAVPF ${codecs.map((c) => c.pt).join(" ")}`,
      "c=IN IP4 0.0.0.0",
      "a=ice-ufrag:abcd",
      "a=ice-pwd:abcdefghijklmnopqrstuvwx",
      "a=fingerprint:sha-256 FB:B2:40:B0:7D:7C:96:C5:03:1C:30:E5:91:D6:EA:DB:9A:82:39:9F:E1:B2:C7:F6:E7:E0:E6:D2:38:7F:EE:24",
      "a=setup:actpass",
      `a=mid:${i}`,
      `a=${s.direction ?? "recvonly"}`,
      "a=rtcp-mux",
    );
    for (const c of codecs) {
      lines.push(`a=rtpmap:${c.pt} ${c.rtpmap}`);
      if (c.fmtp) lines.push(`a=fmtp:${c.pt} ${c.fmtp}`);
      if (c.rtpmap.startsWith("H264")) lines.push(`a=rtcp-fb:${c.pt} nack`, `a=rtcp-fb:${c.pt} nack pli`, `a=rtcp-fb:${c.pt} ccm fir`);
    }
  });
  return lines.join("\r\n") + "\r\n";
}

const videos = (n: number, s: Omit<Section, "kind"> = {}): Section[] => Array.from({ length: n }, () => ({ kind: "video" as const, ...s }));
const plan = (sdp: string, max = 16) => planGridAnswer(parseOffer(sdp), max);

function expectBadInput(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(BadInputError);
  expect((caught as Error).message).toMatch(pattern);
}

describe("planGridAnswer", () => {
  it("answers N video sections as N slots in offer order with one H.264 payload type (constrained baseline 42e01f), and the audio section with every forwardable codec", () => {
    const p = plan(offer([...videos(4), { kind: "audio" }]));
    expect(p.videoSlots).toEqual([0, 1, 2, 3].map((i) => ({ mid: String(i), index: i })));
    // The first receiving video section is the plan's video; every slot is sent with its choice.
    expect(p.video).toMatchObject({ mid: "0", index: 0 });
    expect(p.video!.choice).toMatchObject({ payloadType: 107, profileLevelId: "42e01f" });
    expect(p.video!.choice.fmtp).toContain("packetization-mode=1");
    expect(p.video!.choice.rtcpFeedback).toEqual(expect.arrayContaining([{ type: "nack", parameter: "pli" }]));
    // Audio: the camera is not known yet, so Opus, PCMU and PCMA with the viewer's payload types (not RED, not G.722).
    expect(p.audio).toMatchObject({ mid: "4", index: 4 });
    expect(p.audio!.choices.map((c) => [c.codec, c.payloadType])).toEqual([
      ["OPUS", 111],
      ["PCMU", 0],
      ["PCMA", 8],
    ]);
  });

  it("answers an audio section per tile (the i-th with the i-th video slot's sound), no more than video slots, each offering the session's codecs", () => {
    const p = plan(offer([...videos(3), { kind: "audio" }, { kind: "audio" }, { kind: "audio" }]));
    expect(p.audioSlots).toEqual([3, 4, 5].map((i) => ({ mid: String(i), index: i })));
    expect(plan(offer(videos(2))).audioSlots).toEqual([]);
    expectBadInput(() => plan(offer([...videos(1), { kind: "audio" }, { kind: "audio" }])), /more audio sections than video slots/);
    expectBadInput(() => plan(offer([...videos(2), { kind: "audio" }, { kind: "audio", codecs: [CHROMIUM_AUDIO[0]!] }])), /does not offer the session's/);
    // Every section in the one BUNDLE group.
    expectBadInput(() => plan(offer([...videos(2), { kind: "audio" }, { kind: "audio" }], ["0", "1", "2"])), /BUNDLE every section/);
  });

  it("takes any constrained baseline, then baseline, then the first mode-1 H.264 when 42e01f is not offered; never a mode-0 one", () => {
    const only = (codecs: Section["codecs"]) => plan(offer(videos(2, { codecs }))).video!.choice;
    expect(only([CHROMIUM_VIDEO[1]!, CHROMIUM_VIDEO[5]!, { pt: 120, rtpmap: "H264/90000", fmtp: "packetization-mode=1;profile-level-id=4d801f" }])).toMatchObject({ payloadType: 120, profileLevelId: "4d801f" });
    expect(only([CHROMIUM_VIDEO[6]!, CHROMIUM_VIDEO[5]!, CHROMIUM_VIDEO[1]!])).toMatchObject({ payloadType: 103, profileLevelId: "42001f" });
    expect(only([CHROMIUM_VIDEO[4]!, CHROMIUM_VIDEO[6]!, CHROMIUM_VIDEO[5]!])).toMatchObject({ payloadType: 112, profileLevelId: "64001f" });
    // packetization-mode absent means 0 (RFC 6184 §8.1): not servable.
    expectBadInput(() => only([{ pt: 102, rtpmap: "H264/90000", fmtp: "profile-level-id=42e01f" }]), /no common video codec/);
  });

  it("serves a grid without audio: no audio section, or an audio section with nothing forwardable", () => {
    expect(plan(offer(videos(3))).audio).toBeUndefined();
    const p = plan(offer([...videos(2), { kind: "audio", codecs: [CHROMIUM_AUDIO[2]!] }]));
    expect(p.videoSlots).toHaveLength(2);
    expect(p.audio).toBeUndefined();
  });

  it("refuses an offer with no receiving video section: audio only, video only inactive, sendonly or rejected", () => {
    expectBadInput(() => plan(offer([{ kind: "audio" }])), /at least one receiving video section/);
    expectBadInput(() => plan(offer([...videos(2, { direction: "inactive" }), { kind: "audio" }])), /at least one receiving video section/);
    expectBadInput(() => plan(offer([...videos(1, { direction: "sendonly" }), { kind: "audio" }])), /at least one receiving video section/);
    expectBadInput(() => plan(offer([...videos(2, { port: 0 }), { kind: "audio" }])), /at least one receiving video section/);
    // Nothing that receives at all.
    expectBadInput(() => plan(offer(videos(2, { direction: "inactive" }))), /receives neither audio nor video/);
  });

  it("leaves inactive, sendonly and rejected video sections out of the slots (and out of the slot count)", () => {
    const sections: Section[] = [
      { kind: "video", direction: "inactive" },
      { kind: "video" },
      { kind: "video", port: 0 },
      { kind: "video", direction: "sendrecv" },
      { kind: "video", direction: "sendonly" },
      { kind: "audio" },
    ];
    const p = plan(offer(sections), 2);
    expect(p.videoSlots).toEqual([
      { mid: "1", index: 1 },
      { mid: "3", index: 3 },
    ]);
    expect(p.video).toMatchObject({ mid: "1", index: 1 });
    expect(p.audio).toMatchObject({ mid: "5", index: 5 });
  });

  it("takes up to media.grid.slotsPerSession video sections and refuses one more", () => {
    expect(plan(offer([...videos(16), { kind: "audio" }]), 16).videoSlots).toHaveLength(16);
    expectBadInput(() => plan(offer([...videos(17), { kind: "audio" }]), 16), /at most 16 video slots/);
    expect(plan(offer(videos(1)), 1).videoSlots).toEqual([{ mid: "0", index: 0 }]);
    expectBadInput(() => plan(offer(videos(2)), 1), /at most 1 video slots/);
  });

  it("uses the first receiving audio section only", () => {
    const p = plan(offer([{ kind: "audio", direction: "inactive" }, ...videos(2), { kind: "audio" }, { kind: "audio" }]));
    expect(p.audio).toMatchObject({ mid: "3", index: 3 });
    expect(p.videoSlots.map((s) => s.mid)).toEqual(["1", "2"]);
  });

  it("refuses video sections that are not offered alike: the chosen payload type missing, another codec or profile behind it", () => {
    const without107 = CHROMIUM_VIDEO.filter((c) => c.pt !== 107);
    expectBadInput(() => plan(offer([...videos(2), { kind: "video", codecs: without107 }])), /video section 2 does not offer the session's H.264 payload type 107/);
    // Payload type 107 present but VP8 behind it, or another H.264 profile, or mode 0.
    const swapped = (rtpmap: string, fmtp?: string) => [...without107, { pt: 107, rtpmap, ...(fmtp ? { fmtp } : {}) }];
    expectBadInput(() => plan(offer([...videos(1), { kind: "video", codecs: swapped("VP8/90000") }])), /video section 1 does not offer/);
    expectBadInput(() => plan(offer([...videos(1), { kind: "video", codecs: swapped("H264/90000", "packetization-mode=1;profile-level-id=64001f") }])), /video section 1 does not offer/);
    expectBadInput(() => plan(offer([...videos(1), { kind: "video", codecs: swapped("H264/90000", "packetization-mode=0;profile-level-id=42e01f") }])), /video section 1 does not offer/);
    // A section offering nothing servable at all is refused the same way, whatever its place.
    expectBadInput(() => plan(offer([...videos(3), { kind: "video", codecs: [CHROMIUM_VIDEO[0]!] }])), /video section 3 does not offer/);
    // An inactive section is not a slot: what it offers does not matter.
    expect(plan(offer([...videos(2), { kind: "video", direction: "inactive", codecs: [CHROMIUM_VIDEO[0]!] }])).videoSlots).toHaveLength(2);
  });

  it("refuses slots outside the BUNDLE group (one transport for the whole session)", () => {
    expectBadInput(() => plan(offer([...videos(3), { kind: "audio" }], ["0", "1", "3"])), /BUNDLE every section/);
    expectBadInput(() => plan(offer([...videos(3), { kind: "audio" }], ["0", "1", "2"])), /BUNDLE audio and video/);
    expect(plan(offer([...videos(3), { kind: "audio" }], ["3", "2", "1", "0"])).videoSlots).toHaveLength(3);
    // Two groups, the audio bundled with the first video section only, the slots in the other:
    // two transports, not one.
    expectBadInput(() => plan(offer([...videos(3), { kind: "audio" }], [["0", "3"], ["0", "1", "2"]])), /BUNDLE every section/);
    expectBadInput(() => plan(offer([...videos(3), { kind: "audio" }], [["0", "1", "2"], ["3"]])), /BUNDLE/);
  });
});
