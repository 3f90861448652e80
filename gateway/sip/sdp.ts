/**
 * SDP offer/answer for intercom audio (RFC 4566, RFC 3264): RTP/AVP with PCMU/PCMA and
 * telephone-event (RFC 4733). Pure. Door stations often offer video too; we refuse it
 * (port 0) because the door's picture comes from its camera over RTSP.
 */
import { BadInputError } from "../../config/errors.ts";

export type Direction = "sendrecv" | "sendonly" | "recvonly" | "inactive";
export type G711 = "PCMU" | "PCMA";

export interface SdpMedia {
  readonly type: string;
  readonly port: number;
  readonly proto: string;
  readonly formats: readonly string[];
  /** rtpmap by payload type: encoding name (upper-case), clock rate, channels. */
  readonly rtpmap: ReadonlyMap<number, { name: string; rate: number; channels: number }>;
  readonly fmtp: ReadonlyMap<number, string>;
  /** Media-level c= address, if any. */
  readonly address: string | undefined;
  readonly direction: Direction | undefined;
  /** a=rtcp port (RFC 3605), if any. */
  readonly rtcpPort: number | undefined;
  readonly ptime: number | undefined;
}

export interface SdpSession {
  readonly origin: { user: string; sessionId: string; version: string; address: string };
  readonly address: string | undefined;
  readonly direction: Direction | undefined;
  readonly media: readonly SdpMedia[];
}

/** Parse an SDP body. Throws BadInputError when it is not usable SDP. */
export function parseSdp(text: string): SdpSession {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines[0] !== "v=0") throw new BadInputError("SDP must start with v=0");
  let origin: SdpSession["origin"] | undefined;
  let sessionAddress: string | undefined;
  let sessionDirection: Direction | undefined;
  const media: SdpMedia[] = [];
  type Draft = {
    type: string; port: number; proto: string; formats: string[];
    rtpmap: Map<number, { name: string; rate: number; channels: number }>; fmtp: Map<number, string>;
    address?: string; direction?: Direction; rtcpPort?: number; ptime?: number;
  };
  let cur: Draft | undefined;
  const finish = (): void => {
    if (cur) {
      media.push({
        type: cur.type, port: cur.port, proto: cur.proto, formats: cur.formats, rtpmap: cur.rtpmap, fmtp: cur.fmtp,
        address: cur.address, direction: cur.direction, rtcpPort: cur.rtcpPort, ptime: cur.ptime,
      });
    }
  };
  for (const line of lines) {
    if (line[1] !== "=") throw new BadInputError(`malformed SDP line ${JSON.stringify(line.slice(0, 30))}`);
    const k = line[0];
    const v = line.slice(2);
    if (k === "o") {
      const p = v.split(" ");
      if (p.length < 6) throw new BadInputError("malformed o= line");
      origin = { user: p[0]!, sessionId: p[1]!, version: p[2]!, address: p[5]! };
    } else if (k === "c") {
      const p = v.split(" ");
      if (p.length < 3 || p[0] !== "IN" || (p[1] !== "IP4" && p[1] !== "IP6")) throw new BadInputError("malformed c= line");
      const addr = p[2]!.split("/")[0]!;
      if (cur) cur.address = addr;
      else sessionAddress = addr;
    } else if (k === "m") {
      finish();
      const p = v.split(" ");
      if (p.length < 4 || !/^\d{1,5}(\/\d+)?$/.test(p[1]!)) throw new BadInputError("malformed m= line");
      const port = Number(p[1]!.split("/")[0]);
      if (port > 65535) throw new BadInputError("m= port out of range");
      cur = { type: p[0]!, port, proto: p[2]!, formats: p.slice(3), rtpmap: new Map(), fmtp: new Map() };
    } else if (k === "a") {
      const colon = v.indexOf(":");
      const name = colon >= 0 ? v.slice(0, colon) : v;
      const value = colon >= 0 ? v.slice(colon + 1) : "";
      if (name === "sendrecv" || name === "sendonly" || name === "recvonly" || name === "inactive") {
        if (cur) cur.direction = name;
        else sessionDirection = name;
      } else if (cur && name === "rtpmap") {
        const m = /^(\d{1,3}) ([^/]+)\/(\d+)(?:\/(\d+))?/.exec(value);
        if (m) cur.rtpmap.set(Number(m[1]), { name: m[2]!.toUpperCase(), rate: Number(m[3]), channels: m[4] ? Number(m[4]) : 1 });
      } else if (cur && name === "fmtp") {
        const m = /^(\d{1,3}) (.*)$/.exec(value);
        if (m) cur.fmtp.set(Number(m[1]), m[2]!);
      } else if (cur && name === "rtcp") {
        const m = /^(\d{1,5})/.exec(value);
        if (m && Number(m[1]) <= 65535) cur.rtcpPort = Number(m[1]);
      } else if (cur && name === "ptime") {
        const n = Number(value);
        if (Number.isFinite(n) && n > 0) cur.ptime = n;
      }
    }
  }
  finish();
  if (!origin) throw new BadInputError("SDP without o= line");
  return { origin, address: sessionAddress, direction: sessionDirection, media };
}

/** What one call's audio uses, as agreed by offer/answer. */
export interface AudioParams {
  readonly codec: G711;
  readonly payloadType: number;
  /** RTP clock rate, Hz (8000 for G.711). */
  readonly clockRate: number;
  /** telephone-event payload type, when both sides support RFC 4733. */
  readonly dtmfPayloadType: number | undefined;
  /** Where to send RTP (before symmetric-RTP latching); address 0.0.0.0 means on hold. */
  readonly remoteAddress: string;
  readonly remoteRtpPort: number;
  readonly remoteRtcpPort: number;
  /** Our direction (what we may do), derived from the peer's. */
  readonly direction: Direction;
  /** Packet time the peer asked for, ms. */
  readonly ptime: number;
}

export interface LocalMedia {
  /** Address written in o= and c=. */
  readonly address: string;
  readonly rtpPort: number;
  readonly rtcpPort: number;
  /** Session id and version for o= (version bumps only when our SDP changes, RFC 3264 §8). */
  readonly sessionId: string;
  readonly version: number;
}

const STATIC: Record<number, G711> = { 0: "PCMU", 8: "PCMA" };
/** Our telephone-event payload type in offers. */
export const DTMF_PT = 101;

function reverse(d: Direction | undefined): Direction {
  switch (d) {
    case "sendonly":
      return "recvonly";
    case "recvonly":
      return "sendonly";
    case "inactive":
      return "inactive";
    default:
      return "sendrecv";
  }
}

function codecOf(m: SdpMedia, pt: number): G711 | undefined {
  const map = m.rtpmap.get(pt);
  if (map) return (map.name === "PCMU" || map.name === "PCMA") && map.rate === 8000 && map.channels === 1 ? (map.name as G711) : undefined;
  return STATIC[pt];
}

function dtmfOf(m: SdpMedia): number | undefined {
  for (const f of m.formats) {
    const pt = Number(f);
    const map = m.rtpmap.get(pt);
    if (map && map.name === "TELEPHONE-EVENT" && map.rate === 8000) return pt;
  }
  return undefined;
}

function ipVersion(a: string): "IP4" | "IP6" {
  return a.includes(":") ? "IP6" : "IP4";
}

/** Header lines common to our offers and answers. */
function sessionHeader(local: LocalMedia): string {
  return (
    `v=0\r\n` +
    `o=gatehouse ${local.sessionId} ${local.version} IN ${ipVersion(local.address)} ${local.address}\r\n` +
    `s=Gatehouse\r\n` +
    `c=IN ${ipVersion(local.address)} ${local.address}\r\n` +
    `t=0 0\r\n`
  );
}

function audioLines(local: LocalMedia, codecs: { pt: number; codec: G711 }[], dtmfPt: number | undefined, dir: Direction): string {
  const pts = codecs.map((c) => c.pt);
  if (dtmfPt !== undefined) pts.push(dtmfPt);
  let s = `m=audio ${local.rtpPort} RTP/AVP ${pts.join(" ")}\r\n`;
  if (local.rtcpPort !== local.rtpPort + 1) s += `a=rtcp:${local.rtcpPort}\r\n`;
  for (const c of codecs) s += `a=rtpmap:${c.pt} ${c.codec}/8000\r\n`;
  if (dtmfPt !== undefined) s += `a=rtpmap:${dtmfPt} telephone-event/8000\r\na=fmtp:${dtmfPt} 0-15\r\n`;
  s += `a=ptime:20\r\n`;
  s += `a=${dir}\r\n`;
  return s;
}

export type AnswerResult =
  | { readonly ok: true; readonly sdp: string; readonly audio: AudioParams }
  | { readonly ok: false; readonly reason: string };

/**
 * Answer an offer (RFC 3264 §6): one answer m-line per offer m-line in the same order;
 * the first RTP/AVP audio stream with PCMU or PCMA is accepted (the offerer's preference
 * order wins), everything else is refused with port 0.
 */
export function answerOffer(offer: SdpSession, local: LocalMedia): AnswerResult {
  let chosen: { index: number; codec: G711; pt: number; dtmf: number | undefined } | undefined;
  offer.media.forEach((m, index) => {
    if (chosen || m.type !== "audio" || m.proto !== "RTP/AVP" || m.port === 0) return;
    for (const f of m.formats) {
      const pt = Number(f);
      if (!Number.isInteger(pt)) continue;
      const codec = codecOf(m, pt);
      if (codec) {
        chosen = { index, codec, pt, dtmf: dtmfOf(m) };
        return;
      }
    }
  });
  if (!chosen) return { ok: false, reason: "no RTP/AVP audio stream with PCMU or PCMA" };
  const c = chosen;
  const m = offer.media[c.index]!;
  const dir = reverse(m.direction ?? offer.direction);
  let sdp = sessionHeader(local);
  offer.media.forEach((om, i) => {
    if (i === c.index) sdp += audioLines(local, [{ pt: c.pt, codec: c.codec }], c.dtmf, dir);
    else sdp += `m=${om.type} 0 ${om.proto} ${om.formats.join(" ") || "0"}\r\n`;
  });
  const remoteAddress = m.address ?? offer.address ?? "0.0.0.0";
  return {
    ok: true,
    sdp,
    audio: {
      codec: c.codec,
      payloadType: c.pt,
      clockRate: 8000,
      dtmfPayloadType: c.dtmf,
      remoteAddress,
      remoteRtpPort: m.port,
      remoteRtcpPort: m.rtcpPort ?? m.port + 1,
      direction: dir,
      ptime: m.ptime ?? 20,
    },
  };
}

/** Our offer (outgoing calls, offerless INVITEs): PCMU, PCMA, telephone-event. */
export function createOffer(local: LocalMedia, prefer: readonly G711[] = ["PCMU", "PCMA"]): string {
  const codecs = prefer.map((codec) => ({ codec, pt: codec === "PCMU" ? 0 : 8 }));
  return sessionHeader(local) + audioLines(local, codecs, DTMF_PT, "sendrecv");
}

/** Read the peer's answer to `createOffer` (RFC 3264 §7). */
export function readAnswer(answer: SdpSession): AnswerResult {
  const m = answer.media.find((x) => x.type === "audio" && x.port !== 0 && x.proto === "RTP/AVP");
  if (!m) return { ok: false, reason: "answer accepted no audio" };
  for (const f of m.formats) {
    const pt = Number(f);
    const codec = codecOf(m, pt);
    if (codec && (pt === 0 || pt === 8 || m.rtpmap.has(pt))) {
      return {
        ok: true,
        sdp: "",
        audio: {
          codec,
          payloadType: pt,
          clockRate: 8000,
          dtmfPayloadType: dtmfOf(m),
          remoteAddress: m.address ?? answer.address ?? "0.0.0.0",
          remoteRtpPort: m.port,
          remoteRtcpPort: m.rtcpPort ?? m.port + 1,
          direction: reverse(m.direction ?? answer.direction),
          ptime: m.ptime ?? 20,
        },
      };
    }
  }
  return { ok: false, reason: "answer has no PCMU or PCMA" };
}

/** An SDP body out of a message body: plain application/sdp, or the SDP part of multipart/mixed (RFC 4475 §3.1.1.11). */
export function extractSdp(contentType: string | undefined, boundary: string | undefined, body: Buffer): string | undefined {
  if (!contentType) return body.length > 0 ? undefined : undefined;
  if (contentType === "application/sdp") return body.toString("latin1");
  if (contentType.startsWith("multipart/") && boundary) {
    const text = body.toString("latin1");
    for (const part of text.split(`--${boundary}`)) {
      const sep = part.indexOf("\r\n\r\n");
      if (sep < 0) continue;
      const head = part.slice(0, sep);
      if (/content-type[ \t]*:[ \t]*application\/sdp/i.test(head)) return part.slice(sep + 4).replace(/\r\n$/, "");
    }
  }
  return undefined;
}
