/**
 * The viewer's SDP offer (a browser's recvonly offer, RFC 8829 / WHEP) read just far
 * enough to choose what the SFU answers: which H.264 payload type, which audio codecs.
 *
 * Pure: text in, a typed plan out, BadInputError with a reason a client can show.
 * werift applies the plan (sfu/werift-peer.ts); this module never touches it.
 */
import { BadInputError } from "../config/errors.ts";
import { screenCandidates, type CandidateDrops, type CandidateRules } from "./candidates.ts";
import { parseFmtp } from "./h264/nal.ts";
import type { CodecName, TrackSpec } from "./types.ts";

/** One `a=rtpmap` (+ `a=fmtp`, `a=rtcp-fb`) entry of an m-section. */
export interface OfferedCodec {
  payloadType: number;
  /** Encoding name as written (case kept). */
  name: string;
  clockRate: number;
  /** Audio channels; 1 when the rtpmap gives none. */
  channels: number;
  /** The `a=fmtp` parameter string, "" when absent. */
  fmtp: string;
  rtcpFeedback: { type: string; parameter?: string }[];
}

export type Direction = "sendrecv" | "sendonly" | "recvonly" | "inactive";

export interface OfferedMedia {
  /** Position of the m-section in the offer (0-based). */
  index: number;
  kind: string;
  port: number;
  protocol: string;
  mid: string | undefined;
  /** The offerer's direction (defaults to sendrecv, RFC 3264 §5.1). */
  direction: Direction;
  codecs: OfferedCodec[];
}

export interface ParsedOffer {
  media: OfferedMedia[];
  /** Mids of each `a=group:BUNDLE` (RFC 8843). */
  bundles: string[][];
  /** The offerer's ICE ufrag (session level, else the first m-section's). */
  iceUfrag: string | undefined;
  /** The offerer's DTLS role (RFC 8842 `a=setup`, session level or the first m-section's). */
  dtlsSetup: "actpass" | "active" | "passive" | undefined;
  /** Every `a=candidate` line: its index among the lines and the attribute value (`candidate:…`). */
  candidates: { line: number; value: string }[];
}

/**
 * An offer read once, at the SFU's boundary (Sfu.createViewer), and handed on as is to
 * wherever the viewer's media runs: nothing after this reads the offer's text again but werift.
 * Plain data (it crosses to media workers by structured clone).
 */
export interface Offer {
  /** The text werift applies: bundle-only sections normalized, only accepted candidates, each rewritten plainly. */
  readonly sdp: string;
  readonly parsed: ParsedOffer;
  /** Mids of the sections that are not rejected (trickled candidates must name one). */
  readonly mids: readonly string[];
  /** Candidates kept. */
  readonly candidates: number;
  /** Candidates dropped, by reason. */
  readonly dropped: CandidateDrops;
}

/** The H.264 payload type the SFU will send to this viewer. */
export interface VideoChoice {
  payloadType: number;
  /** As offered (the answer echoes it). */
  fmtp: string;
  /** Six lower-case hex digits, e.g. "42e01f". */
  profileLevelId: string;
  rtcpFeedback: { type: string; parameter?: string }[];
}

/** An audio codec the SFU may send to this viewer, with the viewer's payload type for it. */
export interface AudioChoice {
  codec: CodecName;
  payloadType: number;
  clockRate: number;
  channels: number;
  fmtp: string;
}

/** An H.265 payload type (RFC 7798) the viewer offered, answered beside the H.264 one. */
export interface H265Choice {
  payloadType: number;
  /** As offered (the answer echoes it: profile, tier, level). */
  fmtp: string;
  rtcpFeedback: { type: string; parameter?: string }[];
}

export interface AnswerPlan {
  /**
   * Undefined when the offer has no video section that can receive. `h265`: the viewer offered
   * H.265 and the source may send it (its video is H.265, or not known yet): the camera's H.265
   * is then passed through, the H.264 payload type serving a source that has only H.264.
   */
  video: { mid: string; index: number; choice: VideoChoice; h265?: H265Choice | undefined } | undefined;
  /**
   * A multi-camera session (planGridAnswer): every receiving video section, in offer order,
   * each answered with `video.choice`. Undefined for a one-camera viewer (one video section).
   */
  videoSlots?: readonly { mid: string; index: number }[] | undefined;
  /**
   * A multi-camera session's receiving audio sections, in offer order, each answered with
   * `audio.choices`: the i-th carries the sound of the camera on the i-th video slot.
   */
  audioSlots?: readonly { mid: string; index: number }[] | undefined;
  /** Undefined when the offer has no audio section we can serve (it is then rejected). */
  audio: { mid: string; index: number; choices: AudioChoice[] } | undefined;
}

/** Largest offer accepted, in characters. Chromium's recvonly offer is about 6 kB. */
export const MAX_OFFER_CHARS = 64 * 1024;

/**
 * Turns `bundle-only` m-sections (RFC 8843 §7.3.3: port 0 + `a=bundle-only`, offered by
 * Firefox for every section but the first) into ordinary bundled sections (port 9), so
 * that neither our parser nor werift, which knows no bundle-only, reads them as rejected.
 * A port-0 section outside every BUNDLE group stays rejected. Pure; the text is otherwise unchanged.
 */
export function normalizeBundleOnly(sdp: string): string {
  if (!sdp.includes("a=bundle-only")) return sdp;
  const eol = sdp.includes("\r\n") ? "\r\n" : "\n";
  const lines = sdp.split(/\r?\n/);
  const bundled = new Set<string>();
  for (const l of lines) if (l.startsWith("a=group:BUNDLE ")) for (const mid of l.slice(15).trim().split(/\s+/)) bundled.add(mid);
  // Split into sections: [session, m1, m2, ...] by line index.
  const starts: number[] = [];
  lines.forEach((l, i) => l.startsWith("m=") && starts.push(i));
  const drop = new Set<number>();
  for (let k = 0; k < starts.length; k++) {
    const from = starts[k]!;
    const to = starts[k + 1] ?? lines.length;
    const section = lines.slice(from, to);
    const mid = section.find((l) => l.startsWith("a=mid:"))?.slice(6).trim();
    const only = section.findIndex((l) => l.trim() === "a=bundle-only");
    const parts = lines[from]!.split(" ");
    if (only < 0 || parts[1] !== "0" || mid === undefined || !bundled.has(mid)) continue;
    parts[1] = "9";
    lines[from] = parts.join(" ");
    drop.add(from + only);
  }
  return lines.filter((_l, i) => !drop.has(i)).join(eol);
}

/**
 * Reads the parts of an SDP offer the SFU needs. Throws BadInputError naming the
 * first problem found: not SDP, no media, missing ICE credentials or DTLS fingerprint
 * (RFC 8839 §5.4, RFC 8842 §5), m-sections without a mid while BUNDLE is needed.
 */
export function parseOffer(sdp: string): ParsedOffer {
  return parseLines(splitOffer(sdp));
}

function splitOffer(sdp: string): string[] {
  if (typeof sdp !== "string" || sdp.length === 0) throw new BadInputError("empty SDP offer");
  if (sdp.length > MAX_OFFER_CHARS) throw new BadInputError(`SDP offer larger than ${MAX_OFFER_CHARS} characters`);
  const lines = sdp.split(/\r?\n/).map((l) => l.trimEnd());
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function parseLines(lines: readonly string[]): ParsedOffer {
  if (lines[0] !== "v=0") throw new BadInputError("not an SDP offer (first line must be v=0)");

  let sessionUfrag = false;
  let sessionPwd = false;
  let sessionFingerprint = false;
  let sessionDirection: Direction | undefined;
  let iceUfrag: string | undefined;
  let dtlsSetup: ParsedOffer["dtlsSetup"];
  const candidates: ParsedOffer["candidates"] = [];
  const bundles: string[][] = [];
  const media: OfferedMedia[] = [];
  const perMedia: { ufrag: boolean; pwd: boolean; fingerprint: boolean }[] = [];
  let cur: OfferedMedia | undefined;
  const fmtps = new Map<OfferedMedia, Map<number, string>>();
  const fbs = new Map<OfferedMedia, Map<number, { type: string; parameter?: string }[]>>();
  const rtpmaps = new Map<OfferedMedia, Map<number, { name: string; clockRate: number; channels: number }>>();
  const orders = new Map<OfferedMedia, number[]>();

  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length < 2 || line[1] !== "=") throw new BadInputError(`SDP line ${i + 1} is not "<type>=<value>"`);
    const type = line[0];
    const value = line.slice(2);
    if (type === "m") {
      // RFC 8866 §5.14: m=<media> <port> <proto> <fmt> ...
      const parts = value.split(" ");
      if (parts.length < 3) throw new BadInputError(`SDP line ${i + 1}: malformed m= line`);
      const port = Number(parts[1]!.split("/")[0]);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BadInputError(`SDP line ${i + 1}: bad port`);
      cur = {
        index: media.length,
        kind: parts[0]!,
        port,
        protocol: parts[2]!,
        mid: undefined,
        direction: sessionDirection ?? "sendrecv",
        codecs: [],
      };
      const order = parts.slice(3).map(Number).filter((n) => Number.isInteger(n) && n >= 0 && n <= 127);
      media.push(cur);
      perMedia.push({ ufrag: false, pwd: false, fingerprint: false });
      fmtps.set(cur, new Map());
      fbs.set(cur, new Map());
      rtpmaps.set(cur, new Map());
      orders.set(cur, order);
      continue;
    }
    if (type !== "a") continue;
    const colon = value.indexOf(":");
    const name = colon < 0 ? value : value.slice(0, colon);
    const arg = colon < 0 ? "" : value.slice(colon + 1);
    const flags = cur ? perMedia[perMedia.length - 1]! : undefined;
    switch (name) {
      case "ice-ufrag":
        if (flags) flags.ufrag = true;
        else sessionUfrag = true;
        // Session level comes first in the text; else the first section's (all bundled sections share it).
        iceUfrag ??= arg.trim();
        break;
      case "setup": {
        const role = arg.trim();
        if (role !== "actpass" && role !== "active" && role !== "passive") throw new BadInputError(`SDP line ${i + 1}: bad a=setup`);
        dtlsSetup ??= role;
        break;
      }
      case "candidate":
        candidates.push({ line: i, value });
        break;
      case "ice-pwd":
        if (flags) flags.pwd = true;
        else sessionPwd = true;
        break;
      case "fingerprint":
        if (flags) flags.fingerprint = true;
        else sessionFingerprint = true;
        break;
      case "sendrecv":
      case "sendonly":
      case "recvonly":
      case "inactive":
        if (cur) cur.direction = name;
        else sessionDirection = name;
        break;
      case "mid": {
        if (!cur) break;
        const mid = arg.trim();
        // RFC 5888 §4: an identification-tag token, unique in the description.
        if (!/^[!#$%&'*+\-.^_`{|}~A-Za-z0-9]{1,32}$/.test(mid)) throw new BadInputError(`SDP line ${i + 1}: bad a=mid`);
        if (cur.mid !== undefined || media.some((m) => m.mid === mid)) throw new BadInputError(`SDP line ${i + 1}: duplicate a=mid`);
        cur.mid = mid;
        break;
      }
      case "group": {
        const [semantics, ...mids] = arg.trim().split(/\s+/);
        if (!cur && semantics === "BUNDLE") bundles.push(mids);
        break;
      }
      case "rtpmap": {
        if (!cur) break;
        // a=rtpmap:<pt> <name>/<clock>[/<channels>] (RFC 8866 §6.6)
        const m = /^(\d{1,3})\s+([^/\s]+)\/(\d+)(?:\/(\d+))?$/.exec(arg.trim());
        if (!m) throw new BadInputError(`SDP line ${i + 1}: malformed a=rtpmap`);
        rtpmaps.get(cur)!.set(Number(m[1]), {
          name: m[2]!,
          clockRate: Number(m[3]),
          channels: m[4] ? Number(m[4]) : 1,
        });
        break;
      }
      case "fmtp": {
        if (!cur) break;
        const m = /^(\d{1,3})\s+(.*)$/.exec(arg.trim());
        if (m) fmtps.get(cur)!.set(Number(m[1]), m[2]!.trim());
        break;
      }
      case "rtcp-fb": {
        if (!cur) break;
        const m = /^(\d{1,3}|\*)\s+(\S+)(?:\s+(\S+))?/.exec(arg.trim());
        if (!m) break;
        const pt = m[1] === "*" ? -1 : Number(m[1]);
        const list = fbs.get(cur)!.get(pt) ?? [];
        list.push(m[3] ? { type: m[2]!, parameter: m[3] } : { type: m[2]! });
        fbs.get(cur)!.set(pt, list);
        break;
      }
      default:
        break;
    }
  }

  if (media.length === 0) throw new BadInputError("SDP offer has no media sections");
  for (const [i, m] of media.entries()) {
    const f = perMedia[i]!;
    if (m.port === 0) continue; // rejected/bundled-only sections need no credentials of their own
    if (!(f.ufrag || sessionUfrag) || !(f.pwd || sessionPwd)) {
      throw new BadInputError(`SDP offer: m-section ${i} has no ICE ufrag/pwd`);
    }
    if (!(f.fingerprint || sessionFingerprint)) {
      throw new BadInputError(`SDP offer: m-section ${i} has no DTLS fingerprint`);
    }
    // JSEP (RFC 8829 §5.2.1) writes a mid in every section; BUNDLE and trickle name sections by it.
    if (m.mid === undefined) throw new BadInputError(`SDP offer: m-section ${i} has no a=mid`);
    const order = orders.get(m) ?? [];
    const maps = rtpmaps.get(m)!;
    const wildcardFb = fbs.get(m)!.get(-1) ?? [];
    for (const pt of order) {
      const rm = maps.get(pt) ?? staticPayloadType(pt);
      if (!rm) continue;
      m.codecs.push({
        payloadType: pt,
        name: rm.name,
        clockRate: rm.clockRate,
        channels: rm.channels,
        fmtp: fmtps.get(m)!.get(pt) ?? "",
        rtcpFeedback: [...wildcardFb, ...(fbs.get(m)!.get(pt) ?? [])],
      });
    }
  }
  return { media, bundles, iceUfrag, dtlsSetup, candidates };
}

/**
 * Reads a viewer's offer once, for everything after it: parses it (see parseOffer), and
 * keeps only the candidates the rules accept (sfu/candidates.ts), rewritten plainly; the
 * others are left out of the text werift gets (with `a=end-of-candidates`), and counted.
 * More distinct candidates than `maxPerRequest` is bad input.
 */
export function readOffer(sdp: string, rules: CandidateRules): Offer {
  if (typeof sdp === "string" && sdp.length > MAX_OFFER_CHARS) throw new BadInputError(`SDP offer larger than ${MAX_OFFER_CHARS} characters`);
  const lines = splitOffer(normalizeBundleOnly(sdp));
  const parsed = parseLines(lines);
  const screened = screenCandidates(lines, parsed.candidates.map((c) => c.line), rules);
  const eol = sdp.includes("\r\n") ? "\r\n" : "\n";
  const mids = parsed.media.filter((m) => m.port !== 0 && m.mid !== undefined).map((m) => m.mid!);
  return { sdp: screened.lines.join(eol) + eol, parsed, mids, candidates: screened.kept, dropped: screened.dropped };
}

/** RFC 3551 §6 static payload types the SFU can forward, for offers that omit their rtpmap. */
function staticPayloadType(pt: number): { name: string; clockRate: number; channels: number } | undefined {
  if (pt === 0) return { name: "PCMU", clockRate: 8000, channels: 1 };
  if (pt === 8) return { name: "PCMA", clockRate: 8000, channels: 1 };
  return undefined;
}


/** H.264 profile family from a profile-level-id (RFC 6184 §8.1, H.264 Annex A). */
export type H264Profile = "constrained-baseline" | "baseline" | "main" | "high" | "other";

/** The profile family of a 6-hex-digit profile-level-id; undefined when malformed. */
export function h264ProfileOf(profileLevelId: string): H264Profile | undefined {
  if (!/^[0-9a-fA-F]{6}$/.test(profileLevelId)) return undefined;
  const idc = parseInt(profileLevelId.slice(0, 2), 16);
  const iop = parseInt(profileLevelId.slice(2, 4), 16);
  // Constraint_set1_flag (0x40) on Baseline or Main means Constrained Baseline (RFC 6184 Table 5).
  if (idc === 0x42) return iop & 0x40 ? "constrained-baseline" : "baseline";
  if (idc === 0x4d) return iop & 0x80 ? "constrained-baseline" : "main";
  if (idc === 0x58 && (iop & 0xc0) === 0xc0) return "constrained-baseline";
  if (idc === 0x64) return "high";
  return "other";
}

function isH264Mode1(c: OfferedCodec): boolean {
  if (c.name.toUpperCase() !== "H264" || c.clockRate !== 90000) return false;
  // packetization-mode absent means 0 (RFC 6184 §8.1): FU-A is not allowed then.
  return parseFmtp(c.fmtp).get("packetization-mode") === "1";
}

function profileLevelIdOf(c: OfferedCodec): string {
  // RFC 6184 §8.1: absent profile-level-id means 420010 (Baseline, level 1.0).
  return (parseFmtp(c.fmtp).get("profile-level-id") ?? "420010").toLowerCase();
}

/** Audio codec name of an offered codec when the SFU can forward it as is. */
function audioCodecOf(c: OfferedCodec): CodecName | undefined {
  const n = c.name.toUpperCase();
  if (n === "PCMU" && c.clockRate === 8000) return "PCMU";
  if (n === "PCMA" && c.clockRate === 8000) return "PCMA";
  if (n === "OPUS" && c.clockRate === 48000) return "OPUS";
  return undefined;
}

/** Does the offerer want to receive on this section (RFC 3264 §6.1)? */
function receives(m: OfferedMedia): boolean {
  return m.port !== 0 && (m.direction === "recvonly" || m.direction === "sendrecv");
}

/** The source's H.264 profile-level-id from its TrackSpec fmtp, when written there. */
export function sourceProfileLevelId(track: TrackSpec | undefined): string | undefined {
  if (!track || track.codec !== "H264") return undefined;
  const v = parseFmtp(track.fmtp).get("profile-level-id");
  return v && /^[0-9a-fA-F]{6}$/.test(v) ? v.toLowerCase() : undefined;
}

/**
 * Chooses the answer: one H.264 packetization-mode=1 payload type (the source's profile
 * when offered, else constrained baseline 42e01f, else any baseline, else the first), and
 * the audio codecs the SFU may send — exactly the source's codec when it is known,
 * otherwise every forwardable codec offered, so the answer stays valid whatever the
 * recorder turns out to send (RFC 3264 §6.1 lets the sender pick any answered format).
 *
 * `tracks` is the source's current track list, or undefined when it is not known yet
 * (on-demand cameras start pulling only after the first viewer arrives).
 * Throws BadInputError "no common video codec" when a receiving video section offers
 * no usable H.264, and when nothing at all can be received.
 */
export function planAnswer(offer: ParsedOffer, tracks: readonly TrackSpec[] | undefined): AnswerPlan {
  const videoSection = offer.media.find((m) => m.kind === "video" && receives(m));
  const audioSection = offer.media.find((m) => m.kind === "audio" && receives(m));
  if (!videoSection && !audioSection) throw new BadInputError("offer receives neither audio nor video");

  let video: AnswerPlan["video"];
  if (videoSection) {
    const candidates = videoSection.codecs.filter(isH264Mode1);
    if (candidates.length === 0) throw new BadInputError("no common video codec (need H.264 packetization-mode=1)");
    if (videoSection.mid === undefined) throw new BadInputError("video m-section has no a=mid");
    const wanted = sourceProfileLevelId(tracks?.find((t) => t.kind === "video"));
    const wantedProfile = wanted ? h264ProfileOf(wanted) : undefined;
    const pick =
      (wantedProfile && candidates.find((c) => h264ProfileOf(profileLevelIdOf(c)) === wantedProfile)) ||
      candidates.find((c) => profileLevelIdOf(c) === "42e01f") ||
      candidates.find((c) => h264ProfileOf(profileLevelIdOf(c)) === "constrained-baseline") ||
      candidates.find((c) => h264ProfileOf(profileLevelIdOf(c)) === "baseline") ||
      candidates[0]!;
    const hevc = videoSection.codecs.find((c) => c.name.toUpperCase() === "H265" && c.clockRate === 90000);
    const sourceHevc = tracks === undefined || tracks.some((t) => t.kind === "video" && t.codec === "H265");
    video = {
      mid: videoSection.mid,
      index: videoSection.index,
      choice: {
        payloadType: pick.payloadType,
        fmtp: pick.fmtp,
        profileLevelId: profileLevelIdOf(pick),
        rtcpFeedback: pick.rtcpFeedback,
      },
      h265: hevc && sourceHevc ? { payloadType: hevc.payloadType, fmtp: hevc.fmtp, rtcpFeedback: hevc.rtcpFeedback } : undefined,
    };
  }

  let audio: AnswerPlan["audio"];
  if (audioSection && audioSection.mid !== undefined) {
    const sourceAudio = tracks?.find((t) => t.kind === "audio");
    const offered: AudioChoice[] = [];
    for (const c of audioSection.codecs) {
      const codec = audioCodecOf(c);
      if (!codec || offered.some((o) => o.codec === codec)) continue;
      offered.push({ codec, payloadType: c.payloadType, clockRate: c.clockRate, channels: c.channels, fmtp: c.fmtp });
    }
    const choices = tracks === undefined ? offered : offered.filter((o) => o.codec === sourceAudio?.codec);
    if (choices.length > 0) audio = { mid: audioSection.mid, index: audioSection.index, choices };
  }
  if (video && audio && !offer.bundles.some((g) => g.includes(video.mid) && g.includes(audio.mid))) {
    // One transport per viewer: audio and video must share it (RFC 8843; every browser offers this).
    throw new BadInputError("offer must BUNDLE audio and video (a=group:BUNDLE)");
  }
  return { video, audio };
}

/**
 * The answer of a multi-camera session (one peer connection, many cameras): every receiving
 * video section becomes a slot sent with the same H.264 payload type (chosen as planAnswer
 * does for a source of unknown profile: constrained baseline first), and every receiving audio
 * section an audio slot with every forwardable codec offered in the first (the camera bound to
 * it is not known yet), the i-th paired with the i-th video slot. Sections must be offered
 * alike: a section without the chosen payload types is bad input. At most `maxVideoSlots`
 * video sections, and no more audio sections than video ones.
 */
export function planGridAnswer(
  offer: ParsedOffer,
  maxVideoSlots: number,
): AnswerPlan & { videoSlots: readonly { mid: string; index: number }[]; audioSlots: readonly { mid: string; index: number }[] } {
  const full = planAnswer(offer, undefined);
  // Grid slots are sent H.264 (the cameras' substreams); H.265 passthrough is for one camera opened large.
  const plan: AnswerPlan = { ...full, video: full.video && { ...full.video, h265: undefined } };
  const sections = offer.media.filter((m) => m.kind === "video" && receives(m));
  if (!plan.video || sections.length === 0) throw new BadInputError("a multi-camera session needs at least one receiving video section");
  if (sections.length > maxVideoSlots) throw new BadInputError(`at most ${maxVideoSlots} video slots per session`);
  const pt = plan.video.choice.payloadType;
  const slots: { mid: string; index: number }[] = [];
  for (const m of sections) {
    const c = m.codecs.find((x) => x.payloadType === pt);
    if (!c || !isH264Mode1(c) || profileLevelIdOf(c) !== plan.video.choice.profileLevelId) {
      throw new BadInputError(`video section ${m.mid ?? m.index} does not offer the session's H.264 payload type ${pt}`);
    }
    slots.push({ mid: m.mid!, index: m.index });
  }
  const audioSlots: { mid: string; index: number }[] = [];
  if (plan.audio) {
    const sounds = offer.media.filter((m) => m.kind === "audio" && receives(m));
    if (sounds.length > slots.length) throw new BadInputError("more audio sections than video slots");
    for (const m of sounds) {
      for (const c of plan.audio.choices) {
        if (!m.codecs.some((x) => x.payloadType === c.payloadType && audioCodecOf(x) === c.codec)) {
          throw new BadInputError(`audio section ${m.mid ?? m.index} does not offer the session's ${c.codec} payload type ${c.payloadType}`);
        }
      }
      audioSlots.push({ mid: m.mid!, index: m.index });
    }
  }
  // One transport for the whole session: every slot in ONE BUNDLE group (an offer naming a
  // section in two groups, e.g. audio with the first video only, would need two).
  const bundled = [...slots, ...audioSlots].map((s) => s.mid);
  if (!offer.bundles.some((g) => bundled.every((mid) => g.includes(mid)))) {
    throw new BadInputError("offer must BUNDLE every section (a=group:BUNDLE)");
  }
  return { ...plan, videoSlots: slots, audioSlots };
}

/** Whether an offer lists H.265 (RFC 7798 `H265/90000`), read before the offer is parsed to choose a camera's stream. */
export function offersH265(sdp: string): boolean {
  return /^a=rtpmap:\d{1,3} H265\/90000\s*$/im.test(sdp);
}
