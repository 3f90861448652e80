/**
 * ONVIF Streaming Specification replay (§6: "Playback"), without I/O: the headers of a
 * replay PLAY, the absolute-time ranges it carries, and the RTP header extension a
 * recorder puts on every packet with the frame's recorded time.
 */
import { BadInputError } from "../../config/errors.ts";
import { ntpToUnixMs } from "../../sfu/rtp/ntp.ts";

/** The RTSP option tag of ONVIF replay (ONVIF Streaming §6.2): `Require: onvif-replay`. */
export const ONVIF_REPLAY = "onvif-replay";

/** The "defined by profile" value of the ONVIF replay header extension (Streaming §6.3). */
export const ONVIF_EXTENSION_PROFILE = 0xabac;

/** Fastest and slowest rates a session may ask for (absolute value). */
export const MAX_RATE = 32;
export const MIN_RATE = 1 / 8;

/**
 * `YYYYMMDDTHHMMSS.sssZ`, the absolute time of RFC 2326 §3.7 `clock=` ranges (ISO 8601
 * basic format, UTC), with milliseconds as ONVIF recorders accept them.
 */
export function formatClockTime(unixMs: number): string {
  if (!Number.isFinite(unixMs)) throw new BadInputError("time is not a number");
  const d = new Date(Math.round(unixMs));
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return (
    `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}Z`
  );
}

/** Parses a `clock=` time (`YYYYMMDDTHHMMSS[.fff]Z`) into Unix ms; undefined when it is not one. */
export function parseClockTime(text: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z$/.exec(text.trim());
  if (!m) return undefined;
  const ms = m[7] ? Math.round(Number(`0.${m[7]}`) * 1000) : 0;
  const t = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, ms);
  return Number.isFinite(t) ? t : undefined;
}

/** The start of a `Range: clock=<start>-[<end>]` answer, Unix ms; undefined otherwise. */
export function parseClockRangeStart(range: string | undefined): number | undefined {
  const m = /(?:^|;)\s*clock\s*=\s*([0-9TZ.]+)\s*-/i.exec(range ?? "");
  return m ? parseClockTime(m[1]!) : undefined;
}

/** What one replay PLAY asks for. */
export interface ReplayRequest {
  /** Where to start, Unix ms (for reverse play: where to start going back from). */
  start: number;
  /** Playback rate: 1 = real time, 4 = four times, −1 = reverse real time. */
  rate: number;
  /**
   * `Rate-Control: no` (ONVIF Streaming §6.4): the recorder sends as fast as it can and
   * the client paces. False asks the recorder to pace (the default of the spec).
   */
  clientPaces: boolean;
  /** Key frames only (`Frames: intra`, §6.5), for high speeds. */
  intraOnly: boolean;
  /** `Immediate: yes` (§6.6): a PLAY on a playing session replaces the stream at once. */
  immediate: boolean;
}

/** The headers of an ONVIF replay PLAY. */
export function replayPlayHeaders(r: ReplayRequest): Record<string, string> {
  checkRate(r.rate);
  const h: Record<string, string> = {
    Require: ONVIF_REPLAY,
    // §6.2: an open range plays to the end of the recording.
    Range: `clock=${formatClockTime(r.start)}-`,
  };
  // RFC 2326 §12.34: Scale 1 is the default; recorders that refuse Scale still play 1×.
  if (r.rate !== 1) h.Scale = formatScale(r.rate);
  if (r.clientPaces) h["Rate-Control"] = "no";
  if (r.intraOnly) h.Frames = "intra";
  if (r.immediate) h.Immediate = "yes";
  return h;
}

/** The headers of a PLAY on a URL-template recorder: `Range: npt=<offset>-` (RFC 2326 §3.6) and Scale. */
export function nptPlayHeaders(offsetSeconds: number, rate: number): Record<string, string> {
  checkRate(rate);
  if (!(offsetSeconds >= 0) || !Number.isFinite(offsetSeconds)) throw new BadInputError("npt offset must be ≥ 0 seconds");
  const h: Record<string, string> = { Range: `npt=${offsetSeconds.toFixed(3)}-` };
  if (rate !== 1) h.Scale = formatScale(rate);
  return h;
}

/** A rate as an RTSP Scale value: up to three decimals, no exponent. */
export function formatScale(rate: number): string {
  return String(Math.round(rate * 1000) / 1000);
}

/** Throws BadInputError unless |rate| ∈ [1/8, 32]. */
export function checkRate(rate: number): void {
  const a = Math.abs(rate);
  if (!Number.isFinite(rate) || a < MIN_RATE - 1e-9 || a > MAX_RATE + 1e-9)
    throw new BadInputError(`rate must be between ${MIN_RATE} and ${MAX_RATE} (negative for reverse)`);
}

/** The ONVIF replay header extension of one RTP packet (Streaming §6.3). */
export interface OnvifFrameInfo {
  /** The recorded (absolute) time of the frame, Unix ms. */
  time: number;
  /** C: a clean point (a key frame starts here). */
  cleanPoint: boolean;
  /** E: the last packet of an access unit. */
  end: boolean;
  /** D: a discontinuity (a gap in the recording, or a new PLAY) precedes this packet. */
  discontinuity: boolean;
  /** T: the last packet of the recorded range (the stream ends). */
  terminal: boolean;
  /** The low byte of the CSeq of the PLAY this packet answers. */
  cseq: number;
}

/**
 * Reads the ONVIF replay extension of an RTP packet, or undefined when it has none (no
 * X bit, another profile, fewer than 3 words, or a truncated packet). Allocates only the
 * result. Layout: profile 0xABAC, length ≥ 3, NTP seconds, NTP fraction, then
 * `C E D T mbz(4)`, CSeq, padding(2).
 */
export function readOnvifExtension(packet: Uint8Array): OnvifFrameInfo | undefined {
  if (packet.length < 12 || packet[0]! >> 6 !== 2 || (packet[0]! & 0x10) === 0) return undefined;
  const at = 12 + 4 * (packet[0]! & 0x0f);
  if (at + 16 > packet.length) return undefined;
  const profile = (packet[at]! << 8) | packet[at + 1]!;
  const words = (packet[at + 2]! << 8) | packet[at + 3]!;
  if (profile !== ONVIF_EXTENSION_PROFILE || words < 3 || at + 4 + 4 * words > packet.length) return undefined;
  const sec = readU32(packet, at + 4);
  const frac = readU32(packet, at + 8);
  const flags = packet[at + 12]!;
  return {
    time: ntpToUnixMs(sec, frac),
    cleanPoint: (flags & 0x80) !== 0,
    end: (flags & 0x40) !== 0,
    discontinuity: (flags & 0x20) !== 0,
    terminal: (flags & 0x10) !== 0,
    cseq: packet[at + 13]!,
  };
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}
