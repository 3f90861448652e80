/**
 * AAC over RTP, depacketized to access units with their RTP timestamps, and ADTS framing
 * for ffmpeg's decoder. Pure: bytes in, access units and counted drops out; never throws.
 *
 * - RFC 3640 (`MPEG4-GENERIC`, mode AAC-hbr / AAC-lbr): AU-headers section, several AUs per
 *   packet or one AU fragmented over packets (same timestamp, marker on the last).
 * - RFC 6416 (`MP4A-LATM`): an AudioMuxElement per packet (or fragmented, marker on the last),
 *   StreamMuxConfig from the SDP's `config` (cpresent=0) or in band (cpresent=1).
 *
 * Why we depacketize here instead of handing ffmpeg an SDP: we then know each AU's RTP
 * timestamp exactly, so the Opus coming back is stamped on the camera's own clock (and its
 * RTCP sender reports still hold), which is what lets a browser keep sound and picture in sync.
 */
import { BitReader } from "./bits.ts";

/** What the decoder needs of an AudioSpecificConfig (ISO 14496-3 §1.6.2.1). */
export interface AudioSpecificConfig {
  /** Audio object type of the core (2 = AAC-LC). */
  objectType: number;
  /** Core sampling frequency index (0–12) and rate, Hz. */
  frequencyIndex: number;
  sampleRate: number;
  /** Channel configuration 1–7 (0, a program config element, is refused). */
  channelConfig: number;
  /** Samples per frame: 1024, or 960 with frameLengthFlag. */
  frameLength: number;
  /** The explicit SBR/PS signalling (object type 5 or 29) was present. */
  sbr: boolean;
}

export interface AacStreamConfig {
  format: "MPEG4-GENERIC" | "MP4A-LATM";
  /** RTP clock rate, Hz. */
  clockRate: number;
  /** From `config` (MPEG4-GENERIC) or the StreamMuxConfig; undefined for LATM with cpresent=1 until one arrives. */
  asc: AudioSpecificConfig | undefined;
  // RFC 3640 §4.1 bit widths (0 = absent).
  sizeLength: number;
  indexLength: number;
  indexDeltaLength: number;
  ctsDeltaLength: number;
  dtsDeltaLength: number;
  randomAccessIndication: boolean;
  streamStateIndication: number;
  auxiliaryDataSizeLength: number;
  /** LATM: StreamMuxConfig in band. */
  cpresent: boolean;
}

const RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/** Parses `a=fmtp` parameters (case-insensitive names) into a map. */
function fmtpMap(fmtp: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of fmtp.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    m.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return m;
}

function intParam(m: Map<string, string>, key: string, max: number): number | string {
  const v = m.get(key);
  if (v === undefined || v === "") return 0;
  if (!/^\d{1,3}$/.test(v) || Number(v) > max) return `${key}=${v} is out of range`;
  return Number(v);
}

/** Reads an AudioSpecificConfig at the reader's position; a string says why it is unusable. */
export function readAudioSpecificConfig(r: BitReader): AudioSpecificConfig | string {
  const objectType = (): number => {
    const t = r.read(5);
    return t === 31 ? 32 + r.read(6) : t;
  };
  const frequency = (): { index: number; rate: number } => {
    const index = r.read(4);
    return index === 15 ? { index, rate: r.read(24) } : { index, rate: RATES[index] ?? 0 };
  };
  let aot = objectType();
  const freq = frequency();
  const channelConfig = r.read(4);
  let sbr = false;
  if (aot === 5 || aot === 29) {
    // Explicit SBR (HE-AAC) / PS: an extension rate, then the core's object type. ADTS carries the core.
    sbr = true;
    frequency();
    aot = objectType();
  }
  if (r.overrun) return "AudioSpecificConfig is truncated";
  if (aot !== 2 && aot !== 1 && aot !== 3 && aot !== 4) return `AAC object type ${aot} is not supported (AAC-LC only)`;
  if (freq.index > 12) return `AAC sampling rate ${freq.rate} Hz has no ADTS index`;
  if (channelConfig < 1 || channelConfig > 7) return `AAC channel configuration ${channelConfig} is not supported`;
  // GASpecificConfig (§4.4.1) for object types 1–4: read in full, so a StreamMuxConfig continues at the right bit.
  const frameLengthFlag = r.read(1);
  if (r.read(1)) r.skipBits(14); // dependsOnCoreCoder → coreCoderDelay
  if (r.read(1)) r.skipBits(1); // extensionFlag → extensionFlag3
  if (r.overrun) return "AudioSpecificConfig is truncated";
  // §1.6.5 backward-compatible SBR/PS signalling after the core config (GStreamer and many cameras write it).
  if (r.bitsLeft >= 16 && r.peek(11) === 0x2b7) {
    r.skipBits(11);
    if (r.read(5) === 5 && r.read(1)) {
      sbr = true;
      if (r.read(4) === 15) r.skipBits(24);
      if (r.bitsLeft >= 12 && r.peek(11) === 0x548) r.skipBits(12);
    }
  }
  return { objectType: aot, frequencyIndex: freq.index, sampleRate: freq.rate, channelConfig, frameLength: frameLengthFlag ? 960 : 1024, sbr };
}

/** An AudioSpecificConfig from hex (RFC 3640 `config`). */
export function parseAscHex(hex: string): AudioSpecificConfig | string {
  if (!/^([0-9a-f]{2})+$/i.test(hex)) return "config is not hexadecimal";
  return readAudioSpecificConfig(new BitReader(Buffer.from(hex, "hex")));
}

/** What StreamMuxConfig (ISO 14496-3 §1.7.3) says, for the one program / one layer we accept. */
export interface StreamMux {
  asc: AudioSpecificConfig;
  numSubFrames: number;
  otherDataBits: number;
  crcPresent: boolean;
}

function latmValue(r: BitReader): number {
  const bytes = r.read(2) + 1;
  let v = 0;
  for (let i = 0; i < bytes; i++) v = v * 256 + r.read(8);
  return v;
}

/** Reads a StreamMuxConfig; a string says why it is unusable. */
export function readStreamMuxConfig(r: BitReader): StreamMux | string {
  const version = r.read(1);
  let versionA = 0;
  if (version === 1) versionA = r.read(1);
  if (versionA !== 0) return "LATM audioMuxVersionA=1 is not supported";
  if (version === 1) latmValue(r); // taraBufferFullness
  const sameTimeFraming = r.read(1);
  const numSubFrames = r.read(6);
  const numProgram = r.read(4);
  const numLayer = r.read(3);
  if (r.overrun) return "StreamMuxConfig is truncated";
  if (!sameTimeFraming || numProgram !== 0 || numLayer !== 0) return "LATM with several programs or layers is not supported";
  let asc: AudioSpecificConfig | string;
  if (version === 0) asc = readAudioSpecificConfig(r);
  else {
    const len = latmValue(r);
    const start = r.bit;
    asc = readAudioSpecificConfig(r);
    r.skipBits(Math.max(0, len - (r.bit - start)));
  }
  if (typeof asc === "string") return asc;
  const frameLengthType = r.read(3);
  if (r.overrun) return "StreamMuxConfig is truncated";
  if (frameLengthType !== 0) return `LATM frameLengthType ${frameLengthType} is not supported`;
  // Some encoders (GStreamer's rtpmp4apay) end the SDP's config before these last fields: absent means none.
  if (r.bitsLeft < 10) return { asc, numSubFrames, otherDataBits: 0, crcPresent: false };
  r.skipBits(8); // latmBufferFullness
  let otherDataBits = 0;
  if (r.read(1)) {
    if (version === 1) otherDataBits = latmValue(r);
    else {
      let esc = 1;
      while (esc && !r.overrun) {
        esc = r.read(1);
        otherDataBits = otherDataBits * 256 + r.read(8);
      }
    }
  }
  const crcPresent = r.read(1) === 1;
  if (crcPresent) r.skipBits(8);
  if (r.overrun) return "StreamMuxConfig is truncated";
  return { asc, numSubFrames, otherDataBits, crcPresent };
}

/**
 * The stream's configuration from its rtpmap and fmtp; a string says, in words a person can
 * act on, why the gateway cannot convert it.
 */
export function parseAacFmtp(encoding: string, clockRate: number, fmtp: string): AacStreamConfig | string {
  const m = fmtpMap(fmtp);
  const enc = encoding.toUpperCase();
  const base = {
    clockRate,
    sizeLength: 0,
    indexLength: 0,
    indexDeltaLength: 0,
    ctsDeltaLength: 0,
    dtsDeltaLength: 0,
    randomAccessIndication: false,
    streamStateIndication: 0,
    auxiliaryDataSizeLength: 0,
    cpresent: false,
  };
  if (!(clockRate > 0)) return "AAC stream has no clock rate";
  if (enc === "MPEG4-GENERIC") {
    const mode = (m.get("mode") ?? "").toLowerCase();
    if (mode !== "aac-hbr" && mode !== "aac-lbr") return `MPEG4-GENERIC mode ${m.get("mode") ?? "(none)"} is not AAC (AAC-hbr or AAC-lbr)`;
    const asc = parseAscHex(m.get("config") ?? "");
    if (typeof asc === "string") return asc;
    const widths: Record<string, number> = {};
    for (const k of ["sizelength", "indexlength", "indexdeltalength", "ctsdeltalength", "dtsdeltalength", "streamstateindication", "auxiliarydatasizelength"]) {
      const v = intParam(m, k, 32);
      if (typeof v === "string") return v;
      widths[k] = v;
    }
    if (!widths.sizelength) return "MPEG4-GENERIC without sizelength is not supported";
    return {
      ...base,
      format: "MPEG4-GENERIC",
      asc,
      sizeLength: widths.sizelength!,
      indexLength: widths.indexlength!,
      indexDeltaLength: widths.indexdeltalength!,
      ctsDeltaLength: widths.ctsdeltalength!,
      dtsDeltaLength: widths.dtsdeltalength!,
      randomAccessIndication: m.get("randomaccessindication") === "1",
      streamStateIndication: widths.streamstateindication!,
      auxiliaryDataSizeLength: widths.auxiliarydatasizelength!,
    };
  }
  if (enc === "MP4A-LATM") {
    const cpresent = (m.get("cpresent") ?? "1") !== "0";
    let asc: AudioSpecificConfig | undefined;
    const hex = m.get("config");
    if (hex !== undefined) {
      if (!/^([0-9a-f]{2})+$/i.test(hex)) return "config is not hexadecimal";
      const smc = readStreamMuxConfig(new BitReader(Buffer.from(hex, "hex")));
      if (typeof smc === "string") return smc;
      asc = smc.asc;
    }
    if (!cpresent && !asc) return "MP4A-LATM with cpresent=0 needs a config parameter";
    return { ...base, format: "MP4A-LATM", asc, cpresent };
  }
  return `${encoding} is not AAC`;
}

/** One access unit and the RTP timestamp of its first sample. `data` is owned by the caller. */
export interface AccessUnit {
  data: Buffer;
  ts: number;
}

export type AacDropReason = "malformed" | "fragmentLost" | "tooLarge" | "noConfig" | "unsupported";

/** Largest AU an ADTS frame can carry (13-bit frame length minus the 7-byte header). */
export const MAX_AU_BYTES = 8191 - 7;

/**
 * Turns RTP payloads into access units. Feed every payload in arrival order with `lost` when
 * packets are missing before it (the sequence number jumped): a fragmented AU that lost a
 * piece is dropped, never passed on half.
 */
export class AacDepacketizer {
  readonly drops: Record<AacDropReason, number> = { malformed: 0, fragmentLost: 0, tooLarge: 0, noConfig: 0, unsupported: 0 };
  private cfg: AacStreamConfig;
  private mux: StreamMux | undefined;
  private frag: Buffer[] = [];
  private fragBytes = 0;
  private fragTs = 0;
  private fragExpected = 0;
  private fragBroken = false;
  private lastTs = -1;
  private lastMarker = true;
  private skipUntilMarker = false;

  constructor(cfg: AacStreamConfig) {
    this.cfg = cfg;
    if (cfg.format === "MP4A-LATM" && cfg.asc) this.mux = { asc: cfg.asc, numSubFrames: 0, otherDataBits: 0, crcPresent: false };
  }

  /** The configuration in force (LATM cpresent=1 learns it from the stream). */
  get asc(): AudioSpecificConfig | undefined {
    return this.mux?.asc ?? this.cfg.asc;
  }

  /** RTP timestamp units per AU. */
  auDuration(): number {
    const asc = this.asc;
    if (!asc) return 1024;
    return Math.round((asc.frameLength * this.cfg.clockRate) / asc.sampleRate);
  }

  reset(): void {
    this.frag = [];
    this.fragBytes = 0;
    this.fragBroken = false;
  }

  /** A new upstream session: nothing carries over. */
  resetSession(): void {
    this.reset();
    this.lastTs = -1;
    this.lastMarker = true;
    this.skipUntilMarker = false;
  }

  push(payload: Buffer, ts: number, marker: boolean, lost: boolean): AccessUnit[] {
    try {
      return this.cfg.format === "MPEG4-GENERIC" ? this.pushGeneric(payload, ts, marker, lost) : this.pushLatm(payload, ts, marker, lost);
    } catch {
      // Belt and braces: the readers do not throw, but nothing may escape into the packet path.
      this.drops.malformed++;
      this.reset();
      return [];
    }
  }

  // RFC 3640 §3.2
  private pushGeneric(payload: Buffer, ts: number, marker: boolean, lost: boolean): AccessUnit[] {
    const c = this.cfg;
    if (lost && this.frag.length > 0) this.breakFragment();
    if (payload.length < 2) {
      this.drops.malformed++;
      return [];
    }
    const headersBits = payload.readUInt16BE(0);
    const headersBytes = (headersBits + 7) >> 3;
    if (2 + headersBytes > payload.length) {
      this.drops.malformed++;
      return [];
    }
    const r = new BitReader(payload, 16, 16 + headersBits);
    const sizes: number[] = [];
    const indexes: number[] = [];
    let index = 0;
    while (r.bitsLeft > 0) {
      const size = r.read(c.sizeLength);
      const idx = r.read(sizes.length === 0 ? c.indexLength : c.indexDeltaLength);
      index = sizes.length === 0 ? idx : index + idx + 1;
      if (c.ctsDeltaLength && r.read(1)) r.skipBits(c.ctsDeltaLength);
      if (c.dtsDeltaLength && r.read(1)) r.skipBits(c.dtsDeltaLength);
      if (c.randomAccessIndication) r.skipBits(1);
      r.skipBits(c.streamStateIndication);
      if (r.overrun) break;
      sizes.push(size);
      indexes.push(index);
    }
    if (r.overrun || sizes.length === 0) {
      this.drops.malformed++;
      this.reset();
      return [];
    }
    let off = 2 + headersBytes;
    if (c.auxiliaryDataSizeLength) {
      const ar = new BitReader(payload, off * 8);
      const auxBits = ar.read(c.auxiliaryDataSizeLength);
      off += (c.auxiliaryDataSizeLength + auxBits + 7) >> 3;
    }
    const data = payload.subarray(off);
    const dur = this.auDuration();
    // §3.2.3: one AU larger than the packet → fragments with the same timestamp, marker on the last.
    if (sizes.length === 1 && sizes[0]! > data.length) return this.fragment(data, sizes[0]!, ts, marker);
    if (this.frag.length > 0) this.breakFragment();
    const out: AccessUnit[] = [];
    let p = 0;
    for (let i = 0; i < sizes.length; i++) {
      const size = sizes[i]!;
      if (p + size > data.length) {
        this.drops.malformed++;
        break;
      }
      const au = data.subarray(p, p + size);
      p += size;
      if (size === 0) continue;
      if (size > MAX_AU_BYTES) {
        this.drops.tooLarge++;
        continue;
      }
      out.push({ data: Buffer.from(au), ts: (ts + indexes[i]! * dur) >>> 0 });
    }
    return out;
  }

  private fragment(data: Buffer, total: number, ts: number, marker: boolean): AccessUnit[] {
    if (this.frag.length > 0 && (this.fragTs !== ts || this.fragExpected !== total)) this.breakFragment();
    if (this.frag.length === 0) {
      this.fragTs = ts;
      this.fragExpected = total;
      this.fragBroken = false;
    }
    this.frag.push(Buffer.from(data));
    this.fragBytes += data.length;
    if (this.fragBytes > total || total > MAX_AU_BYTES) {
      this.drops[total > MAX_AU_BYTES ? "tooLarge" : "malformed"]++;
      this.reset();
      this.fragBroken = true;
      return [];
    }
    if (!marker && this.fragBytes < total) return [];
    const whole = Buffer.concat(this.frag);
    const broken = this.fragBroken || whole.length !== total;
    this.reset();
    if (broken) {
      this.drops.fragmentLost++;
      return [];
    }
    return [{ data: whole, ts }];
  }

  private breakFragment(): void {
    this.drops.fragmentLost++;
    this.reset();
  }

  // RFC 6416 §6.1: a (possibly fragmented) AudioMuxElement.
  private pushLatm(payload: Buffer, ts: number, marker: boolean, lost: boolean): AccessUnit[] {
    const prevTs = this.lastTs;
    const prevMarker = this.lastMarker;
    this.lastTs = ts;
    this.lastMarker = marker;
    if (this.skipUntilMarker) {
      if (marker) this.skipUntilMarker = false;
      return [];
    }
    if (lost) {
      const hadFragment = this.frag.length > 0;
      if (hadFragment) this.breakFragment();
      // The rest of an element whose start was lost has its timestamp and no length prefix of its own.
      if (!prevMarker && ts === prevTs) {
        if (!hadFragment) this.drops.fragmentLost++;
        if (!marker) this.skipUntilMarker = true;
        return [];
      }
    }
    if (this.frag.length > 0 && this.fragTs !== ts) this.breakFragment();
    if (this.frag.length === 0) this.fragTs = ts;
    this.frag.push(Buffer.from(payload));
    this.fragBytes += payload.length;
    if (this.fragBytes > 64 * 1024) {
      this.drops.tooLarge++;
      this.reset();
      return [];
    }
    if (!marker) return [];
    const element = this.frag.length === 1 ? this.frag[0]! : Buffer.concat(this.frag);
    this.reset();
    return this.audioMuxElement(element, ts);
  }

  private audioMuxElement(buf: Buffer, ts: number): AccessUnit[] {
    const r = new BitReader(buf);
    if (this.cfg.cpresent) {
      const useSame = r.read(1);
      if (!useSame) {
        const smc = readStreamMuxConfig(r);
        if (typeof smc === "string") {
          this.drops.unsupported++;
          return [];
        }
        this.mux = smc;
      }
    }
    const mux = this.mux;
    if (!mux) {
      this.drops.noConfig++;
      return [];
    }
    const out: AccessUnit[] = [];
    const dur = this.auDuration();
    for (let i = 0; i <= mux.numSubFrames; i++) {
      // PayloadLengthInfo, frameLengthType 0: bytes of 255 continue the length.
      let len = 0;
      for (;;) {
        const b = r.read(8);
        len += b;
        if (b !== 255 || r.overrun) break;
      }
      const au = r.bytes(len);
      if (!au || r.overrun) {
        this.drops.malformed++;
        return out;
      }
      if (len === 0) continue;
      if (len > MAX_AU_BYTES) {
        this.drops.tooLarge++;
        continue;
      }
      out.push({ data: au, ts: (ts + i * dur) >>> 0 });
    }
    return out;
  }
}

/** The 7-byte ADTS header (ISO 14496-3 §1.A.2.2, no CRC) for one AU of `auBytes`. */
export function adtsHeader(asc: AudioSpecificConfig, auBytes: number): Buffer {
  const len = auBytes + 7;
  const h = Buffer.allocUnsafe(7);
  h[0] = 0xff;
  h[1] = 0xf1; // MPEG-4, layer 0, protection absent
  h[2] = (((asc.objectType - 1) & 3) << 6) | ((asc.frequencyIndex & 15) << 2) | ((asc.channelConfig >> 2) & 1);
  h[3] = ((asc.channelConfig & 3) << 6) | ((len >> 11) & 3);
  h[4] = (len >> 3) & 0xff;
  h[5] = ((len & 7) << 5) | 0x1f;
  h[6] = 0xfc;
  return h;
}
