/**
 * The recorder's DESCRIBE answer: SDP (RFC 4566) as RTSP uses it (RFC 2326 Appendix C),
 * and the mapping of its media to the tracks the SFU can forward.
 *
 * Pure. `parseSdp` throws only BadInputError, and only when the text is not SDP at all;
 * odd lines and attributes are skipped and reported in `warnings`.
 */
import { BadInputError } from "../../config/errors.ts";
import type { CodecName, TrackSpec } from "../../sfu/types.ts";
import { parseAacFmtp } from "../transcode/aac.ts";

export interface RtpMap {
  /** Encoding name as written (case preserved), e.g. "H264", "PCMU", "opus". */
  encoding: string;
  /** Hz. */
  clockRate: number;
  /** Audio channels; 1 when not written. */
  channels: number;
}

export interface SdpMedia {
  /** Position among the m= lines, from 0. */
  index: number;
  /** "video", "audio", "application", … */
  type: string;
  port: number;
  /** Transport protocol, e.g. "RTP/AVP". */
  proto: string;
  /** Payload types as written on the m= line. */
  formats: string[];
  /** The media-level a=control value, if any. */
  control: string | undefined;
  rtpmap: Map<number, RtpMap>;
  /** a=fmtp parameters as written (after the payload type). */
  fmtp: Map<number, string>;
  /** sendrecv, sendonly, recvonly or inactive: media-level, else session-level, else sendrecv. */
  direction: "sendrecv" | "sendonly" | "recvonly" | "inactive";
  /** Every a= line of the section, in order (value undefined for flags). */
  attributes: [string, string | undefined][];
}

export interface NptRange {
  /** Seconds, or "now" for a live stream. */
  start: number | "now";
  /** Seconds; undefined = open-ended (live). */
  end: number | undefined;
}

export interface SdpSession {
  /** Session name (s=). */
  name: string;
  /** The session-level a=control value, if any ("*" = the base URL). */
  control: string | undefined;
  /** a=range as written, and parsed when it is npt (RFC 2326 C.1.5). */
  range: { raw: string; npt: NptRange | undefined } | undefined;
  attributes: [string, string | undefined][];
  media: SdpMedia[];
  /** Lines skipped as malformed. */
  warnings: string[];
}

const DIRECTIONS = new Set(["sendrecv", "sendonly", "recvonly", "inactive"]);
const MAX_MEDIA = 64;

/** Parses SDP text. Throws BadInputError when it does not start with `v=0`. */
export function parseSdp(text: string): SdpSession {
  const lines = text.split(/\r?\n|\r/);
  let i = 0;
  while (i < lines.length && lines[i]!.trim() === "") i++;
  if (lines[i]?.trim() !== "v=0") throw new BadInputError("not an SDP description (no v=0 line)");
  const session: SdpSession = { name: "", control: undefined, range: undefined, attributes: [], media: [], warnings: [] };
  let sessionDirection: SdpMedia["direction"] | undefined;
  let media: SdpMedia | undefined;
  let mediaDirection: SdpMedia["direction"] | undefined;
  const finish = (): void => {
    if (media) media.direction = mediaDirection ?? sessionDirection ?? "sendrecv";
  };
  for (i++; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    if (line.length < 2 || line[1] !== "=" || !/[a-z]/.test(line[0]!)) {
      warn(session, `malformed line ${JSON.stringify(line.slice(0, 60))}`);
      continue;
    }
    const kind = line[0]!;
    const value = line.slice(2).trim();
    if (kind === "m") {
      finish();
      mediaDirection = undefined;
      media = undefined;
      const m = /^(\S+) (\d+)(?:\/\d+)? (\S+)(?: (.*))?$/.exec(value);
      if (!m || session.media.length >= MAX_MEDIA) {
        warn(session, m ? `more than ${MAX_MEDIA} media sections` : `malformed m= line ${JSON.stringify(value.slice(0, 60))}`);
        // Attributes until the next m= must not land on the previous media: park them in a throwaway section.
        media = emptyMedia(-1, "invalid");
        continue;
      }
      media = emptyMedia(session.media.length, m[1]!);
      media.port = Number(m[2]);
      media.proto = m[3]!;
      media.formats = (m[4] ?? "").split(" ").filter((f) => f.length > 0);
      session.media.push(media);
    } else if (kind === "s" && !media) {
      session.name = value;
    } else if (kind === "a") {
      const colon = value.indexOf(":");
      const name = colon < 0 ? value : value.slice(0, colon);
      const val = colon < 0 ? undefined : value.slice(colon + 1).trim();
      if (media) {
        media.attributes.push([name, val]);
        if (DIRECTIONS.has(name)) mediaDirection = name as SdpMedia["direction"];
        else if (name === "control" && val !== undefined) media.control ??= val;
        else if (name === "rtpmap" && val !== undefined) parseRtpmap(session, media, val);
        else if (name === "fmtp" && val !== undefined) {
          const f = /^(\d{1,3})(?:\s+(.*))?$/.exec(val);
          if (f) media.fmtp.set(Number(f[1]), (f[2] ?? "").trim());
          else warn(session, `malformed fmtp ${JSON.stringify(val.slice(0, 60))}`);
        }
      } else {
        session.attributes.push([name, val]);
        if (DIRECTIONS.has(name)) sessionDirection = name as SdpMedia["direction"];
        else if (name === "control" && val !== undefined) session.control ??= val;
        else if (name === "range" && val !== undefined) session.range ??= { raw: val, npt: parseNpt(val) };
      }
    }
  }
  finish();
  return session;
}

function emptyMedia(index: number, type: string): SdpMedia {
  return {
    index,
    type,
    port: 0,
    proto: "",
    formats: [],
    control: undefined,
    rtpmap: new Map(),
    fmtp: new Map(),
    direction: "sendrecv",
    attributes: [],
  };
}

function warn(s: SdpSession, w: string): void {
  if (s.warnings.length < 32) s.warnings.push(w);
}

function parseRtpmap(s: SdpSession, m: SdpMedia, val: string): void {
  // RFC 4566 §6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
  const r = /^(\d{1,3})\s+([^/\s]+)\/(\d{1,7})(?:\/(\d{1,2}))?\s*$/.exec(val);
  if (!r || Number(r[1]) > 127 || Number(r[3]) === 0) {
    warn(s, `malformed rtpmap ${JSON.stringify(val.slice(0, 60))}`);
    return;
  }
  m.rtpmap.set(Number(r[1]), { encoding: r[2]!, clockRate: Number(r[3]), channels: r[4] ? Math.max(1, Number(r[4])) : 1 });
}

/** `npt=<start>-[<end>]` (RFC 2326 §3.6); undefined for other range kinds or garbage. */
export function parseNpt(range: string): NptRange | undefined {
  const m = /^npt\s*=\s*(now|[\d:.]+)?\s*-\s*([\d:.]+)?\s*$/i.exec(range.trim());
  if (!m) return undefined;
  const start = m[1] === undefined ? 0 : m[1].toLowerCase() === "now" ? "now" : nptSeconds(m[1]);
  const end = m[2] === undefined ? undefined : nptSeconds(m[2]);
  if (start === undefined || (m[2] !== undefined && end === undefined)) return undefined;
  return { start, end };
}

function nptSeconds(s: string): number | undefined {
  // npt-sec = 1*DIGIT [ "." *DIGIT ] | npt-hhmmss = npt-hh ":" npt-mm ":" npt-ss [ "." *DIGIT ]
  const hms = /^(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)$/.exec(s);
  if (hms) return Number(hms[1]) * 3600 + Number(hms[2]) * 60 + Number(hms[3]);
  return /^\d+(?:\.\d*)?$/.test(s) ? Number(s) : undefined;
}

/**
 * The base URL for relative control URLs (RFC 2326 C.1.1): Content-Base, else
 * Content-Location, else the DESCRIBE request URL. Bad header values fall through to the next.
 */
export function baseUrl(requestUrl: string, contentBase?: string, contentLocation?: string): string {
  for (const c of [contentBase, contentLocation]) {
    if (c === undefined) continue;
    const v = c.trim();
    if (/^rtsps?:\/\//i.test(v) && URL.canParse(v)) return v;
    if (v.length > 0 && URL.canParse(v, requestUrl)) return new URL(v, requestUrl).href;
  }
  return requestUrl;
}

/**
 * The URL a control attribute designates (RFC 2326 C.1.1). "*" or absent = the base itself.
 * A relative value is appended to the base with a "/" separator rather than resolved per
 * RFC 3986, because that is what recorders expect (a base "rtsp://h/live" plus "trackID=1"
 * means "rtsp://h/live/trackID=1", not "rtsp://h/trackID=1").
 */
export function resolveControl(base: string, control: string | undefined): string {
  if (control === undefined || control === "*" || control === "") return base;
  if (/^rtsps?:\/\//i.test(control)) return control;
  if (control.startsWith("/")) {
    const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(base);
    return (origin ? origin[0] : "") + control;
  }
  return base.endsWith("/") ? base + control : `${base}/${control}`;
}

/** A media section the gateway will SETUP and forward. */
export interface IngestTrack {
  /** What the SFU gets (index in the `tracks` array = the track number pushed to the sink). */
  spec: TrackSpec;
  /** Absolute URL for this track's SETUP. */
  controlUrl: string;
  /** Index of the m= section. */
  mediaIndex: number;
}

export interface UnsupportedMedia {
  mediaIndex: number;
  type: string;
  /** Human-readable, e.g. "H.265 cannot be played by browsers". */
  reason: string;
  /** Pulled all the same, for the viewers that can play it (H.265 passed through to those that offered it). */
  passthrough?: "H265";
}

export interface TrackPlan {
  tracks: IngestTrack[];
  unsupported: UnsupportedMedia[];
  /** URL for aggregate PLAY/TEARDOWN/keep-alive: the session control resolved, else the base. */
  aggregateUrl: string;
}

/** Static payload types with fixed meaning (RFC 3551 §6) that may appear without rtpmap. */
const STATIC_PT: Record<number, RtpMap> = {
  0: { encoding: "PCMU", clockRate: 8000, channels: 1 },
  8: { encoding: "PCMA", clockRate: 8000, channels: 1 },
};

/**
 * Codecs the gateway can only convert (gateway/transcode/): `true` when this camera converts
 * them, so their tracks are pulled; otherwise the words shown on the tile saying why they are
 * not (e.g. ffmpeg is missing). Absent: not converted.
 */
export interface ConvertibleCodecs {
  aac?: true | string;
  h265?: true | string;
  /**
   * H.265 not converted is pulled anyway, passed through to viewers that offered H.265
   * (`h265` then holds the words for the other viewers, reported as unsupported with `passthrough`).
   */
  h265Passthrough?: boolean;
}

const H265_WORDS = "H.265 video cannot be played by this browser (configure an H.264 stream, or set the camera's transcode.h265 to h264)";

/** Decides which media sections to pull and how the SFU sees them. Never throws. */
export function planTracks(sdp: SdpSession, base: string, convert: ConvertibleCodecs = {}): TrackPlan {
  const aggregateUrl = resolveControl(base, sdp.control);
  const tracks: IngestTrack[] = [];
  const unsupported: UnsupportedMedia[] = [];
  const only = sdp.media.length === 1;
  for (const m of sdp.media) {
    const skip = (reason: string): void => void unsupported.push({ mediaIndex: m.index, type: m.type, reason });
    if (m.type !== "video" && m.type !== "audio") {
      skip(`${m.type} media is not forwarded`);
      continue;
    }
    if (!/^RTP\/AVPF?$/i.test(m.proto)) {
      skip(`transport ${m.proto} is not supported (plain RTP/AVP only)`);
      continue;
    }
    // In RTSP DESCRIBE answers the direction is written from the client's side: cameras mark
    // what we receive "recvonly", and ONVIF marks its audio backchannel (client → camera)
    // "sendonly" (ONVIF Streaming Spec §5.3; GStreamer's rtspsrc skips it the same way).
    if (m.direction === "sendonly" || m.direction === "inactive") {
      skip(`${m.direction}: ${m.direction === "sendonly" ? "a backchannel to the recorder" : "not sent"}`);
      continue;
    }
    if (m.control === undefined && !only) {
      skip("no a=control attribute in a multi-media description");
      continue;
    }
    const reasons: string[] = [];
    let spec: TrackSpec | undefined;
    for (const f of m.formats) {
      const pt = /^\d{1,3}$/.test(f) ? Number(f) : -1;
      const result = mapFormat(m, pt, convert);
      if (typeof result === "string") reasons.push(result);
      else {
        spec = result;
        break;
      }
    }
    if (!spec) {
      skip([...new Set(reasons)].join("; ") || "no payload format");
      continue;
    }
    if (spec.codec === "H265" && convert.h265 !== true) {
      unsupported.push({ mediaIndex: m.index, type: m.type, reason: convert.h265 ?? H265_WORDS, passthrough: "H265" });
    }
    tracks.push({ spec, controlUrl: resolveControl(base, m.control), mediaIndex: m.index });
  }
  return { tracks, unsupported, aggregateUrl };
}

/** A TrackSpec for one payload type of a media section, or why it cannot be forwarded. */
function mapFormat(m: SdpMedia, pt: number, convert: ConvertibleCodecs): TrackSpec | string {
  if (pt < 0 || pt > 127) return "invalid payload type";
  const map = m.rtpmap.get(pt) ?? STATIC_PT[pt];
  if (!map) return `payload type ${pt} has no rtpmap`;
  const enc = map.encoding.toUpperCase();
  const fmtp = m.fmtp.get(pt) ?? "";
  let codec: CodecName;
  if (m.type === "video") {
    if (enc === "H265" || enc === "HEVC") {
      if (convert.h265 !== true && !convert.h265Passthrough) return convert.h265 ?? H265_WORDS;
      if (map.clockRate !== 90000) return `H.265 clock rate ${map.clockRate} is not 90000`;
      return { kind: "video", codec: "H265", clockRate: 90000, channels: 1, payloadType: pt, fmtp };
    }
    if (enc !== "H264") return `video codec ${map.encoding} is not supported (H.264 only)`;
    const mode = /(?:^|;)\s*packetization-mode\s*=\s*(\d+)/i.exec(fmtp);
    if (mode && mode[1] !== "0" && mode[1] !== "1") return `H.264 packetization-mode=${mode[1]} is not supported`;
    if (map.clockRate !== 90000) return `H.264 clock rate ${map.clockRate} is not 90000`;
    codec = "H264";
  } else {
    if (enc === "PCMU" && map.clockRate === 8000) codec = "PCMU";
    else if (enc === "PCMA" && map.clockRate === 8000) codec = "PCMA";
    else if (enc === "OPUS" && map.clockRate === 48000) codec = "OPUS";
    else if (enc === "MPEG4-GENERIC" || enc === "MP4A-LATM") {
      if (convert.aac !== true) return convert.aac ?? "AAC sound is not converted for this camera (set its transcode.aac to opus)";
      const aac = parseAacFmtp(enc, map.clockRate, fmtp);
      if (typeof aac === "string") return `AAC sound cannot be converted: ${aac}`;
      return { kind: "audio", codec: enc, clockRate: map.clockRate, channels: map.channels || 1, payloadType: pt, fmtp };
    }
    else return `audio codec ${map.encoding}/${map.clockRate} is not supported (PCMU, PCMA, Opus only)`;
  }
  return {
    kind: m.type as "video" | "audio",
    codec,
    clockRate: map.clockRate,
    channels: m.type === "video" ? 1 : codec === "OPUS" ? 2 : map.channels,
    payloadType: pt,
    fmtp,
  };
}
