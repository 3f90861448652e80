/**
 * ONVIF replay for the demo recorder (ONVIF Streaming Specification, "Playback" section): the
 * request headers a replay client sends with PLAY, the RTP header extension that carries each
 * frame's absolute time, and the demo recording's clock (which clip frame shows which moment).
 *
 * Pure: header values and times in, typed values and bytes out. The recorder's sessions
 * (`recorder.ts`) and the replay sender (`replay-sender.ts`) use it.
 */

import { BadInputError } from "../../config/errors.ts";
import { ntpFromUnixMs } from "../../sfu/rtp/ntp.ts";
import { ONVIF_EXTENSION_PROFILE, ONVIF_REPLAY, formatClockTime, parseClockTime, type OnvifFrameInfo } from "../playback/onvif.ts";

// The clock= format, the option tag and the extension's layout are the playback client's (one helper each way).
export { ONVIF_REPLAY, formatClockTime, parseClockTime, type OnvifFrameInfo };

/** What a replay PLAY asks for. */
export interface ReplayRequest {
  /** `Range: clock=<start>-…`, epoch ms; undefined: go on from the current position (resume). */
  start?: number;
  /** `Range: clock=…-<end>`, epoch ms; undefined: open-ended. */
  end?: number;
  /** `Scale`: playback speed, negative for reverse. Default 1. */
  scale: number;
  /** `Rate-Control: no` asks for data as fast as it can go (the client paces). Default true. */
  rateControl: boolean;
  /** `Immediate: yes`: drop what is queued and start at the new position at once. */
  immediate: boolean;
  /** `Frames`: all frames, key frames only (`intra`, optionally `/<ms>` between them), or no B-frames. */
  frames: "all" | "intra" | "predicted";
  /** `Frames: intra/<ms>`: least interval between the key frames sent, ms. */
  intraIntervalMs?: number;
}

/** Largest |Scale| the demo recorder plays. */
export const MAX_SCALE = 64;

/** Header access as RtspHeaders offers it (lower-case names). */
export interface HeaderSource {
  get(name: string): string | undefined;
}

/** True when a `Require` header value names onvif-replay (and nothing else we lack). */
export function requiresReplay(require: string | undefined): boolean {
  return require !== undefined && require.split(",").some((t) => t.trim().toLowerCase() === ONVIF_REPLAY);
}

/** The option tags of a `Require` value that this recorder does not support (for `Unsupported`, 551). */
export function unsupportedOptions(require: string): string[] {
  return require
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "" && t.toLowerCase() !== ONVIF_REPLAY);
}

/**
 * `Range: clock=<start>-[<end>]` → epoch ms. Other units (npt, smpte) and a missing start return
 * `{}` for npt=now-style "go on" requests; anything unreadable throws BadInputError (400).
 */
export function parseRangeClock(v: string): { start?: number; end?: number } {
  const value = v.trim();
  if (!/^clock\s*=/i.test(value)) {
    // `npt=now-` or `npt=0-` from a client resuming: no absolute position requested.
    if (/^npt\s*=\s*(now|0(\.0*)?)?\s*-\s*$/i.test(value)) return {};
    throw new BadInputError("replay Range must be clock=<start>-[<end>]");
  }
  const spec = value.replace(/^clock\s*=\s*/i, "").split(";")[0]!;
  const dash = spec.indexOf("-");
  if (dash < 0) throw new BadInputError("replay Range without '-'");
  const a = spec.slice(0, dash).trim();
  const b = spec.slice(dash + 1).trim();
  const out: { start?: number; end?: number } = {};
  if (a !== "") {
    const start = parseClockTime(a);
    if (start === undefined) throw new BadInputError("replay Range: unreadable start time");
    out.start = start;
  }
  if (b !== "") {
    const end = parseClockTime(b);
    if (end === undefined) throw new BadInputError("replay Range: unreadable end time");
    out.end = end;
  }
  return out;
}

/** `Scale` (RFC 2326 §12.34): a non-zero decimal, at most MAX_SCALE either way. */
export function parseScale(v: string | undefined): number {
  if (v === undefined || v.trim() === "") return 1;
  const t = v.trim();
  if (!/^[-+]?(\d+(\.\d*)?|\.\d+)$/.test(t)) throw new BadInputError("Scale is not a number");
  const s = Number(t);
  if (s === 0 || Math.abs(s) > MAX_SCALE) throw new BadInputError(`Scale must be non-zero and within ±${MAX_SCALE}`);
  return s;
}

/** `Frames: intra[/<ms>] | predicted | all` (ONVIF). */
export function parseFrames(v: string | undefined): { frames: ReplayRequest["frames"]; intraIntervalMs?: number } {
  if (v === undefined || v.trim() === "") return { frames: "all" };
  const t = v.trim().toLowerCase();
  if (t === "all") return { frames: "all" };
  if (t === "predicted") return { frames: "predicted" };
  const m = /^intra(?:\/(\d{1,7}))?$/.exec(t);
  if (!m) throw new BadInputError("Frames must be intra, intra/<ms>, predicted or all");
  return m[1] !== undefined ? { frames: "intra", intraIntervalMs: Number(m[1]) } : { frames: "intra" };
}

/** The replay headers of a PLAY request. Throws BadInputError on a malformed value. */
export function parseReplayRequest(h: HeaderSource): ReplayRequest {
  const range = h.get("range");
  const r: ReplayRequest = {
    ...(range !== undefined ? parseRangeClock(range) : {}),
    scale: parseScale(h.get("scale")),
    rateControl: (h.get("rate-control") ?? "yes").trim().toLowerCase() !== "no",
    immediate: (h.get("immediate") ?? "no").trim().toLowerCase() === "yes",
    ...parseFrames(h.get("frames")),
  };
  return r;
}

// ------------------------------------------------------------------------------------
// The RTP header extension (ONVIF Streaming Specification, "RTP header extension")

/** Bytes the extension adds after the 12-byte fixed header: 4 (profile, length) + 12 (data). */
export const ONVIF_EXTENSION_BYTES = 16;

/**
 * Writes the extension at `offset` (right after a 12-byte fixed header with no CSRCs; the caller
 * sets the X bit, see `setExtensionBit`):
 *
 *   0xABAC | length = 3 (32-bit words)
 *   NTP timestamp, 64 bits
 *   C E D T mbz(4) | CSeq (8) | padding (16)
 *
 * Returns the bytes written (16).
 */
export function writeOnvifExtension(out: Uint8Array, offset: number, f: OnvifFrameInfo): number {
  out[offset] = ONVIF_EXTENSION_PROFILE >> 8;
  out[offset + 1] = ONVIF_EXTENSION_PROFILE & 0xff;
  out[offset + 2] = 0;
  out[offset + 3] = 3;
  const ntp = ntpFromUnixMs(f.time);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(offset + 4, ntp.seconds >>> 0);
  view.setUint32(offset + 8, ntp.fraction >>> 0);
  out[offset + 12] = (f.cleanPoint ? 0x80 : 0) | (f.end ? 0x40 : 0) | (f.discontinuity ? 0x20 : 0) | (f.terminal ? 0x10 : 0);
  out[offset + 13] = f.cseq & 0xff;
  out[offset + 14] = 0;
  out[offset + 15] = 0;
  return ONVIF_EXTENSION_BYTES;
}

/** Sets the X (extension) bit of an RTP header written at `offset`. */
export function setExtensionBit(out: Uint8Array, offset = 0): void {
  out[offset] = out[offset]! | 0x10;
}

// ------------------------------------------------------------------------------------
// The demo recording's clock

export interface DemoRecordingOptions {
  /** Frames in the clip. */
  frames: number;
  /** Frames per second. */
  fps: number;
  /** Which clip frames are key frames (IDR), one entry per frame; the first must be one. */
  keyFrames: readonly boolean[];
  /** How far back the recording reaches, ms (the window ends at now). */
  windowMs: number;
}

/**
 * The demo recording: the clip loops against the wall clock, anchored at the Unix epoch, so the
 * frame shown for recorded time t is frame ⌊(t mod loop) / frame⌋. With the committed 60 s clip,
 * whose frames show their own second and frame number, the picture of time t shows t's seconds
 * (the `ss.ff` burned into it) — a seek can be checked by eye and by pixels.
 */
export class DemoRecording {
  readonly frameMs: number;
  readonly loopMs: number;
  readonly windowMs: number;
  private readonly frames: number;
  /** For each clip index, the distance back to its key frame, frames. */
  private readonly sinceKey: Int32Array;

  constructor(o: DemoRecordingOptions) {
    if (o.frames <= 0 || o.fps <= 0 || o.windowMs <= 0) throw new BadInputError("demo recording: frames, fps and window must be positive");
    if (o.keyFrames.length !== o.frames || !o.keyFrames[0]) throw new BadInputError("demo recording: the clip must start with a key frame");
    this.frames = o.frames;
    this.frameMs = 1000 / o.fps;
    this.loopMs = o.frames * this.frameMs;
    this.windowMs = o.windowMs;
    this.sinceKey = new Int32Array(o.frames);
    let last = 0;
    for (let i = 0; i < o.frames; i++) {
      if (o.keyFrames[i]) last = i;
      this.sinceKey[i] = i - last;
    }
  }

  /** What the recording holds at wall time `now`: [now − window, now], epoch ms. */
  window(now: number): { from: number; to: number } {
    return { from: now - this.windowMs, to: now };
  }

  /** Number of the frame (from the epoch) showing time `t`. */
  frameNumber(t: number): number {
    return Math.floor(t / this.frameMs + 1e-6);
  }

  /** The recorded time of frame number `n`, epoch ms. */
  timeOf(n: number): number {
    return n * this.frameMs;
  }

  /** Index in the clip of frame number `n`. */
  clipIndex(n: number): number {
    return ((n % this.frames) + this.frames) % this.frames;
  }

  isKey(n: number): boolean {
    return this.sinceKey[this.clipIndex(n)] === 0;
  }

  /** Frame number of the key frame at or before frame `n`. */
  keyAtOrBefore(n: number): number {
    return n - this.sinceKey[this.clipIndex(n)]!;
  }

  /** Frame number of the first key frame after frame `n`. */
  keyAfter(n: number): number {
    let k = n + 1;
    for (let i = 0; i < this.frames && !this.isKey(k); i++) k++;
    return k;
  }
}
