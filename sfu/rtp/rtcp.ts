/**
 * RTCP (RFC 3550 §6) compound packets: parse into typed items and serialize the ones
 * the media plane sends. Covers SR, RR, SDES, BYE, APP, generic NACK (RFC 4585
 * §6.2.1), PLI (RFC 4585 §6.3.1), FIR (RFC 5104 §4.3.1) and REMB (typed, not acted on).
 *
 * Parsing never throws: a malformed packet becomes an `error` item and ends the
 * compound (its length field can no longer be trusted to find the next packet).
 */

import { BadInputError } from "../../config/errors.ts";
import { seqDiff } from "./seq.ts";

/** RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1). */
export const RtcpType = {
  SR: 200,
  RR: 201,
  SDES: 202,
  BYE: 203,
  APP: 204,
  RTPFB: 205,
  PSFB: 206,
} as const;

/** One reception report block (RFC 3550 §6.4.1). */
export interface ReportBlock {
  /** SSRC of the source this block reports on. */
  ssrc: number;
  /** Fraction lost since the previous report, 0–255 (= lost/expected × 256). */
  fractionLost: number;
  /** Cumulative packets lost, signed 24-bit (duplicates can make it negative). */
  cumulativeLost: number;
  /** Extended highest sequence number received. */
  highestSeq: number;
  /** Interarrival jitter, in RTP timestamp units. */
  jitter: number;
  /** Middle 32 bits of the last SR's NTP time, 0 if none. */
  lsr: number;
  /** Delay since that SR, in 1/65536 s. */
  dlsr: number;
}

export interface SenderReport {
  type: "sr";
  ssrc: number;
  /** NTP seconds since 1900 (high word). */
  ntpSeconds: number;
  /** NTP fraction (low word, 2^-32 s). */
  ntpFraction: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  reports: ReportBlock[];
}

export interface ReceiverReport {
  type: "rr";
  ssrc: number;
  reports: ReportBlock[];
}

/** SDES item types (RFC 3550 §6.5). */
export const SdesItemType = { END: 0, CNAME: 1, NAME: 2, EMAIL: 3, PHONE: 4, LOC: 5, TOOL: 6, NOTE: 7, PRIV: 8 } as const;

export interface SdesChunk {
  ssrc: number;
  items: { type: number; value: string }[];
}

export interface SourceDescription {
  type: "sdes";
  chunks: SdesChunk[];
}

export interface Goodbye {
  type: "bye";
  ssrcs: number[];
  reason?: string;
}

export interface AppPacket {
  type: "app";
  subtype: number;
  ssrc: number;
  /** Four ASCII characters. */
  name: string;
  data: Buffer;
}

/** One generic NACK FCI entry: PID plus a bitmask of the 16 following sequence numbers. */
export interface NackItem {
  pid: number;
  blp: number;
}

export interface GenericNack {
  type: "nack";
  senderSsrc: number;
  mediaSsrc: number;
  items: NackItem[];
}

export interface PictureLossIndication {
  type: "pli";
  senderSsrc: number;
  mediaSsrc: number;
}

export interface FirEntry {
  ssrc: number;
  /** Command sequence number, 0–255; a repeat with the same number is a retransmission. */
  seqNr: number;
}

export interface FullIntraRequest {
  type: "fir";
  senderSsrc: number;
  /** Always 0 on the wire per RFC 5104 §4.3.1.2; kept for diagnostics. */
  mediaSsrc: number;
  entries: FirEntry[];
}

/** Receiver-estimated max bitrate (draft-alvestrand-rmcat-remb): parsed so it is recognised, not acted on. */
export interface Remb {
  type: "remb";
  senderSsrc: number;
  /** Bits per second. */
  bitrate: number;
  ssrcs: number[];
}

/**
 * Transport-wide congestion control feedback (RTPFB FMT 15,
 * draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1): for `count` packets from
 * transport-wide sequence number `baseSeq` on, when each arrived on the receiver's clock.
 */
export interface TransportCcFeedback {
  type: "twcc";
  senderSsrc: number;
  mediaSsrc: number;
  /** Transport-wide sequence number of the first packet covered (16 bits). */
  baseSeq: number;
  /** Packets covered: baseSeq … baseSeq + count − 1 (mod 2^16). */
  count: number;
  /** The feedback packet's own counter (8 bits). */
  fbCount: number;
  /** Arrival time of each packet covered, ms on the receiver's clock (reference time + deltas); NaN: not received. */
  arrivalsMs: Float64Array;
}

/** A well-formed packet of a type or feedback format we do not interpret. */
export interface UnknownRtcp {
  type: "unknown";
  packetType: number;
  /** The count/FMT field (5 bits). */
  fmt: number;
  /** Packet length in bytes, header included. */
  length: number;
}

/** A malformed packet; parsing of the compound stopped here. */
export interface RtcpError {
  type: "error";
  error: BadInputError;
  /** Byte offset of the offending packet in the compound. */
  offset: number;
}

export type RtcpItem =
  | SenderReport
  | ReceiverReport
  | SourceDescription
  | Goodbye
  | AppPacket
  | GenericNack
  | PictureLossIndication
  | FullIntraRequest
  | Remb
  | TransportCcFeedback
  | UnknownRtcp
  | RtcpError;

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function readReportBlocks(b: Uint8Array, o: number, count: number, end: number): ReportBlock[] | null {
  if (o + count * 24 > end) return null;
  const out: ReportBlock[] = [];
  for (let i = 0; i < count; i++, o += 24) {
    const lost = (b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!;
    out.push({
      ssrc: u32(b, o),
      fractionLost: b[o + 4]!,
      cumulativeLost: lost & 0x800000 ? lost - 0x1000000 : lost,
      highestSeq: u32(b, o + 8),
      jitter: u32(b, o + 12),
      lsr: u32(b, o + 16),
      dlsr: u32(b, o + 20),
    });
  }
  return out;
}

function fail(reason: string, offset: number): RtcpError {
  return { type: "error", error: new BadInputError(`RTCP: ${reason}`), offset };
}

/**
 * Parses one RTCP compound packet (or a single packet) into typed items. Never throws;
 * a malformed packet yields an `error` item and ends parsing.
 */
export function parseRtcp(buf: Uint8Array): RtcpItem[] {
  const items: RtcpItem[] = [];
  let off = 0;
  const total = buf.length;
  if (total < 4) {
    items.push(fail("shorter than the 4-byte common header", 0));
    return items;
  }
  while (off < total) {
    if (off + 4 > total) {
      items.push(fail("trailing bytes after the last packet", off));
      break;
    }
    const b0 = buf[off]!;
    if (b0 >> 6 !== 2) {
      items.push(fail(`version ${b0 >> 6}, expected 2`, off));
      break;
    }
    const count = b0 & 0x1f;
    const pt = buf[off + 1]!;
    const len = (u16(buf, off + 2) + 1) * 4; // §6.4.1: length in 32-bit words minus one
    if (off + len > total) {
      items.push(fail(`length ${len} overruns the compound (${total - off} bytes left)`, off));
      break;
    }
    let end = off + len;
    if (b0 & 0x20) {
      // §6.4.1 P bit: the last octet counts padding octets including itself.
      const pad = buf[end - 1]!;
      if (pad === 0 || pad > len - 4) {
        items.push(fail(`bad padding count ${pad}`, off));
        break;
      }
      end -= pad;
    }
    const item = parseOne(buf, off, end, count, pt, len);
    items.push(item);
    if (item.type === "error") break;
    off += len;
  }
  return items;
}

function parseOne(b: Uint8Array, off: number, end: number, count: number, pt: number, len: number): RtcpItem {
  const body = off + 4;
  switch (pt) {
    case RtcpType.SR: {
      if (body + 24 > end) return fail("SR shorter than its sender info", off);
      const reports = readReportBlocks(b, body + 24, count, end);
      if (!reports) return fail(`SR with ${count} report blocks is truncated`, off);
      return {
        type: "sr",
        ssrc: u32(b, body),
        ntpSeconds: u32(b, body + 4),
        ntpFraction: u32(b, body + 8),
        rtpTimestamp: u32(b, body + 12),
        packetCount: u32(b, body + 16),
        octetCount: u32(b, body + 20),
        reports,
      };
    }
    case RtcpType.RR: {
      if (body + 4 > end) return fail("RR without sender SSRC", off);
      const reports = readReportBlocks(b, body + 4, count, end);
      if (!reports) return fail(`RR with ${count} report blocks is truncated`, off);
      return { type: "rr", ssrc: u32(b, body), reports };
    }
    case RtcpType.SDES:
      return parseSdes(b, off, end, count);
    case RtcpType.BYE: {
      if (body + count * 4 > end) return fail(`BYE with ${count} SSRCs is truncated`, off);
      const ssrcs: number[] = [];
      for (let i = 0; i < count; i++) ssrcs.push(u32(b, body + 4 * i));
      const r = body + count * 4;
      if (r < end) {
        const rl = b[r]!;
        if (r + 1 + rl > end) return fail("BYE reason overruns the packet", off);
        return { type: "bye", ssrcs, reason: Buffer.from(b.buffer, b.byteOffset + r + 1, rl).toString("utf8") };
      }
      return { type: "bye", ssrcs };
    }
    case RtcpType.APP: {
      if (body + 8 > end) return fail("APP shorter than SSRC and name", off);
      return {
        type: "app",
        subtype: count,
        ssrc: u32(b, body),
        name: Buffer.from(b.buffer, b.byteOffset + body + 4, 4).toString("latin1"),
        data: Buffer.from(b.subarray(body + 8, end)),
      };
    }
    case RtcpType.RTPFB:
    case RtcpType.PSFB: {
      // RFC 4585 §6.1: common feedback header = sender SSRC + media SSRC, then FCI.
      if (body + 8 > end) return fail("feedback packet shorter than its two SSRCs", off);
      const senderSsrc = u32(b, body);
      const mediaSsrc = u32(b, body + 4);
      const fci = body + 8;
      if (pt === RtcpType.RTPFB && count === 1) {
        // §6.2.1 generic NACK: one or more 4-byte PID+BLP entries.
        const n = (end - fci) >> 2;
        if (n === 0) return fail("generic NACK without FCI entries", off);
        const items: NackItem[] = [];
        for (let i = 0; i < n; i++) items.push({ pid: u16(b, fci + 4 * i), blp: u16(b, fci + 4 * i + 2) });
        return { type: "nack", senderSsrc, mediaSsrc, items };
      }
      if (pt === RtcpType.RTPFB && count === 15) return parseTransportCc(b, senderSsrc, mediaSsrc, fci, end, off);
      if (pt === RtcpType.PSFB && count === 1) return { type: "pli", senderSsrc, mediaSsrc };
      if (pt === RtcpType.PSFB && count === 4) {
        // RFC 5104 §4.3.1.1: 8-byte entries of SSRC, command seq nr, 24 reserved bits.
        const n = (end - fci) >> 3;
        if (n === 0) return fail("FIR without FCI entries", off);
        const entries: FirEntry[] = [];
        for (let i = 0; i < n; i++) entries.push({ ssrc: u32(b, fci + 8 * i), seqNr: b[fci + 8 * i + 4]! });
        return { type: "fir", senderSsrc, mediaSsrc, entries };
      }
      if (pt === RtcpType.PSFB && count === 15 && fci + 8 <= end && u32(b, fci) === 0x52454d42 /* "REMB" */) {
        const num = b[fci + 4]!;
        const exp = b[fci + 5]! >> 2;
        const mantissa = ((b[fci + 5]! & 3) << 16) | u16(b, fci + 6);
        if (fci + 8 + 4 * num > end) return fail("REMB SSRC list overruns the packet", off);
        const ssrcs: number[] = [];
        for (let i = 0; i < num; i++) ssrcs.push(u32(b, fci + 8 + 4 * i));
        return { type: "remb", senderSsrc, bitrate: mantissa * 2 ** exp, ssrcs };
      }
      return { type: "unknown", packetType: pt, fmt: count, length: len };
    }
    default:
      return { type: "unknown", packetType: pt, fmt: count, length: len };
  }
}

/** Largest status count a feedback packet may claim (a 1500-byte packet of one-bit vectors covers about 11,000). */
const MAX_TWCC_STATUS = 16384;

/**
 * draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1: base sequence number, status
 * count, 24-bit signed reference time (64 ms units) and feedback count; packet status
 * chunks (run-length: T=0, 2-bit symbol, 13-bit run; status vector: T=1, then fourteen
 * 1-bit or seven 2-bit symbols), then one receive delta per received packet (symbol 1: one
 * unsigned byte, symbol 2: two signed bytes, in 250 µs units, from the previous packet's
 * arrival or, for the first, the reference time).
 */
function parseTransportCc(b: Uint8Array, senderSsrc: number, mediaSsrc: number, fci: number, end: number, off: number): RtcpItem {
  if (fci + 8 > end) return fail("transport-cc feedback shorter than its header", off);
  const baseSeq = u16(b, fci);
  const count = u16(b, fci + 2);
  let ref = (b[fci + 4]! << 16) | (b[fci + 5]! << 8) | b[fci + 6]!;
  if (ref & 0x800000) ref -= 0x1000000;
  const fbCount = b[fci + 7]!;
  if (count === 0 || count > MAX_TWCC_STATUS) return fail(`transport-cc feedback with status count ${count}`, off);
  const symbols = new Uint8Array(count);
  let p = fci + 8;
  let n = 0;
  while (n < count) {
    if (p + 2 > end) return fail("transport-cc status chunks overrun the packet", off);
    const c = u16(b, p);
    p += 2;
    if ((c & 0x8000) === 0) {
      const sym = (c >> 13) & 3;
      const run = c & 0x1fff;
      if (run === 0) return fail("transport-cc run-length chunk of length 0", off);
      for (let i = 0; i < run && n < count; i++) symbols[n++] = sym;
    } else if ((c & 0x4000) === 0) {
      for (let i = 13; i >= 0 && n < count; i--) symbols[n++] = (c >> i) & 1;
    } else {
      for (let i = 12; i >= 0 && n < count; i -= 2) symbols[n++] = (c >> i) & 3;
    }
  }
  const arrivalsMs = new Float64Array(count);
  let t = ref * 64;
  for (let i = 0; i < count; i++) {
    const sym = symbols[i]!;
    if (sym === 0) {
      arrivalsMs[i] = NaN;
      continue;
    }
    if (sym === 1) {
      if (p + 1 > end) return fail("transport-cc receive deltas overrun the packet", off);
      t += b[p]! / 4;
      p += 1;
    } else if (sym === 2) {
      if (p + 2 > end) return fail("transport-cc receive deltas overrun the packet", off);
      const d = u16(b, p);
      t += (d & 0x8000 ? d - 0x10000 : d) / 4;
      p += 2;
    } else return fail("transport-cc status symbol 3 (reserved)", off);
    arrivalsMs[i] = t;
  }
  return { type: "twcc", senderSsrc, mediaSsrc, baseSeq, count, fbCount, arrivalsMs };
}

function parseSdes(b: Uint8Array, off: number, end: number, count: number): RtcpItem {
  const chunks: SdesChunk[] = [];
  let p = off + 4;
  for (let c = 0; c < count; c++) {
    if (p + 4 > end) return fail(`SDES chunk ${c} truncated`, off);
    const chunk: SdesChunk = { ssrc: u32(b, p), items: [] };
    p += 4;
    // §6.5: items until a null octet, then pad the chunk to a 32-bit boundary.
    while (true) {
      if (p >= end) {
        // §6.5 requires a null octet after the items; some stacks (werift) omit it when
        // the items end on a word boundary. Accept that for the last chunk only.
        if (p === end && c === count - 1) break;
        return fail(`SDES chunk ${c} lacks its END item`, off);
      }
      const t = b[p]!;
      if (t === SdesItemType.END) {
        p = (p + 4) & ~3;
        break;
      }
      if (p + 2 > end) return fail(`SDES item truncated`, off);
      const l = b[p + 1]!;
      if (p + 2 + l > end) return fail(`SDES item overruns the packet`, off);
      chunk.items.push({ type: t, value: Buffer.from(b.buffer, b.byteOffset + p + 2, l).toString("utf8") });
      p += 2 + l;
    }
    chunks.push(chunk);
  }
  return { type: "sdes", chunks };
}

// ---------------------------------------------------------------------------------
// Serialization

function header(buf: Buffer, count: number, pt: number): void {
  buf[0] = 0x80 | (count & 0x1f);
  buf[1] = pt;
  buf.writeUInt16BE(buf.length / 4 - 1, 2);
}

function writeReportBlocks(buf: Buffer, o: number, reports: readonly ReportBlock[]): void {
  for (const r of reports) {
    buf.writeUInt32BE(r.ssrc >>> 0, o);
    buf[o + 4] = r.fractionLost & 0xff;
    const lost = Math.max(-0x800000, Math.min(0x7fffff, r.cumulativeLost)) & 0xffffff;
    buf[o + 5] = lost >> 16;
    buf[o + 6] = (lost >> 8) & 0xff;
    buf[o + 7] = lost & 0xff;
    buf.writeUInt32BE(r.highestSeq >>> 0, o + 8);
    buf.writeUInt32BE(r.jitter >>> 0, o + 12);
    buf.writeUInt32BE(r.lsr >>> 0, o + 16);
    buf.writeUInt32BE(r.dlsr >>> 0, o + 20);
    o += 24;
  }
}

function tooMany(what: string, n: number, max: number): void {
  if (n > max) throw new BadInputError(`RTCP: ${n} ${what}, at most ${max} fit one packet`);
}

/** Serializes a sender report (RFC 3550 §6.4.1). Throws BadInputError for more than 31 report blocks. */
export function serializeSr(sr: Omit<SenderReport, "type" | "reports"> & { reports?: readonly ReportBlock[] }): Buffer {
  const reports = sr.reports ?? [];
  tooMany("report blocks", reports.length, 31);
  const buf = Buffer.alloc(28 + 24 * reports.length);
  header(buf, reports.length, RtcpType.SR);
  buf.writeUInt32BE(sr.ssrc >>> 0, 4);
  buf.writeUInt32BE(sr.ntpSeconds >>> 0, 8);
  buf.writeUInt32BE(sr.ntpFraction >>> 0, 12);
  buf.writeUInt32BE(sr.rtpTimestamp >>> 0, 16);
  buf.writeUInt32BE(sr.packetCount >>> 0, 20);
  buf.writeUInt32BE(sr.octetCount >>> 0, 24);
  writeReportBlocks(buf, 28, reports);
  return buf;
}

/** Serializes a receiver report (RFC 3550 §6.4.2). Throws BadInputError for more than 31 report blocks. */
export function serializeRr(rr: { ssrc: number; reports?: readonly ReportBlock[] }): Buffer {
  const reports = rr.reports ?? [];
  tooMany("report blocks", reports.length, 31);
  const buf = Buffer.alloc(8 + 24 * reports.length);
  header(buf, reports.length, RtcpType.RR);
  buf.writeUInt32BE(rr.ssrc >>> 0, 4);
  writeReportBlocks(buf, 8, reports);
  return buf;
}

/** Serializes an SDES packet (RFC 3550 §6.5); values longer than 255 UTF-8 bytes are truncated. */
export function serializeSdes(chunks: readonly SdesChunk[]): Buffer {
  tooMany("SDES chunks", chunks.length, 31);
  const parts: Buffer[] = [];
  let size = 4;
  for (const c of chunks) {
    const items = c.items.map((i) => ({ type: i.type, value: Buffer.from(i.value, "utf8").subarray(0, 255) }));
    let n = 4;
    for (const i of items) n += 2 + i.value.length;
    n = (n + 1 + 3) & ~3; // END octet, then pad to 32 bits
    const chunk = Buffer.alloc(n);
    chunk.writeUInt32BE(c.ssrc >>> 0, 0);
    let p = 4;
    for (const i of items) {
      chunk[p] = i.type;
      chunk[p + 1] = i.value.length;
      i.value.copy(chunk, p + 2);
      p += 2 + i.value.length;
    }
    parts.push(chunk);
    size += n;
  }
  const buf = Buffer.alloc(size);
  header(buf, chunks.length, RtcpType.SDES);
  let o = 4;
  for (const p of parts) {
    p.copy(buf, o);
    o += p.length;
  }
  return buf;
}

/** Serializes a BYE (RFC 3550 §6.6) with an optional reason (truncated to 255 bytes). */
export function serializeBye(bye: { ssrcs: readonly number[]; reason?: string }): Buffer {
  tooMany("BYE SSRCs", bye.ssrcs.length, 31);
  const reason = bye.reason !== undefined ? Buffer.from(bye.reason, "utf8").subarray(0, 255) : null;
  let n = 4 + 4 * bye.ssrcs.length;
  if (reason) n = (n + 1 + reason.length + 3) & ~3;
  const buf = Buffer.alloc(n);
  header(buf, bye.ssrcs.length, RtcpType.BYE);
  bye.ssrcs.forEach((s, i) => buf.writeUInt32BE(s >>> 0, 4 + 4 * i));
  if (reason) {
    const r = 4 + 4 * bye.ssrcs.length;
    buf[r] = reason.length;
    reason.copy(buf, r + 1);
  }
  return buf;
}

/** Serializes a generic NACK (RFC 4585 §6.2.1). Throws BadInputError for an empty item list. */
export function serializeNack(n: { senderSsrc: number; mediaSsrc: number; items: readonly NackItem[] }): Buffer {
  if (n.items.length === 0) throw new BadInputError("RTCP: generic NACK needs at least one item");
  const buf = Buffer.alloc(12 + 4 * n.items.length);
  header(buf, 1, RtcpType.RTPFB);
  buf.writeUInt32BE(n.senderSsrc >>> 0, 4);
  buf.writeUInt32BE(n.mediaSsrc >>> 0, 8);
  let o = 12;
  for (const it of n.items) {
    buf.writeUInt16BE(it.pid & 0xffff, o);
    buf.writeUInt16BE(it.blp & 0xffff, o + 2);
    o += 4;
  }
  return buf;
}

/** Serializes a picture loss indication (RFC 4585 §6.3.1). */
export function serializePli(p: { senderSsrc: number; mediaSsrc: number }): Buffer {
  const buf = Buffer.alloc(12);
  header(buf, 1, RtcpType.PSFB);
  buf.writeUInt32BE(p.senderSsrc >>> 0, 4);
  buf.writeUInt32BE(p.mediaSsrc >>> 0, 8);
  return buf;
}

/** Serializes a full intra request (RFC 5104 §4.3.1); the media SSRC field is written as 0 as the RFC requires. */
export function serializeFir(f: { senderSsrc: number; entries: readonly FirEntry[] }): Buffer {
  if (f.entries.length === 0) throw new BadInputError("RTCP: FIR needs at least one entry");
  const buf = Buffer.alloc(12 + 8 * f.entries.length);
  header(buf, 4, RtcpType.PSFB);
  buf.writeUInt32BE(f.senderSsrc >>> 0, 4);
  let o = 12;
  for (const e of f.entries) {
    buf.writeUInt32BE(e.ssrc >>> 0, o);
    buf[o + 4] = e.seqNr & 0xff;
    o += 8;
  }
  return buf;
}

/**
 * Transport-wide feedback (the inverse of parsing it, for tests and peers): arrivals in ms
 * on the receiver's clock, NaN for a packet not received; written as two-bit status vector
 * chunks, the reference time the first arrival rounded down to 64 ms. Deltas must fit
 * the two-byte form (±8 s).
 */
export function serializeTransportCc(f: { senderSsrc: number; mediaSsrc: number; baseSeq: number; fbCount: number; arrivalsMs: ArrayLike<number> }): Buffer {
  const n = f.arrivalsMs.length;
  let first = NaN;
  for (let i = 0; i < n && Number.isNaN(first); i++) first = f.arrivalsMs[i]!;
  const ref = Number.isNaN(first) ? 0 : Math.floor(first / 64);
  const symbols: number[] = [];
  const deltas: number[] = [];
  let t = ref * 64;
  for (let i = 0; i < n; i++) {
    const a = f.arrivalsMs[i]!;
    if (Number.isNaN(a)) {
      symbols.push(0);
      continue;
    }
    const d = Math.round((a - t) * 4);
    t += d / 4;
    symbols.push(d >= 0 && d <= 255 ? 1 : 2);
    deltas.push(d);
  }
  const chunks = Math.ceil(n / 7);
  let deltaBytes = 0;
  for (const d of deltas) deltaBytes += d >= 0 && d <= 255 ? 1 : 2;
  const buf = Buffer.alloc(4 + Math.ceil((16 + chunks * 2 + deltaBytes) / 4) * 4);
  header(buf, 15, RtcpType.RTPFB);
  buf.writeUInt32BE(f.senderSsrc >>> 0, 4);
  buf.writeUInt32BE(f.mediaSsrc >>> 0, 8);
  buf.writeUInt16BE(f.baseSeq & 0xffff, 12);
  buf.writeUInt16BE(n, 14);
  buf.writeUIntBE(ref & 0xffffff, 16, 3);
  buf[19] = f.fbCount & 0xff;
  let p = 20;
  for (let c = 0; c < chunks; c++) {
    let v = 0xc000;
    for (let k = 0; k < 7; k++) v |= (symbols[c * 7 + k] ?? 0) << (12 - 2 * k);
    buf.writeUInt16BE(v, p);
    p += 2;
  }
  for (const d of deltas) {
    if (d >= 0 && d <= 255) buf[p++] = d;
    else {
      buf.writeInt16BE(d, p);
      p += 2;
    }
  }
  return buf;
}

/** Concatenates serialized packets into one compound packet (RFC 3550 §6.1). */
export function compound(packets: readonly Buffer[]): Buffer {
  return Buffer.concat(packets);
}

// ---------------------------------------------------------------------------------
// Generic NACK helpers

/** Expands NACK items into the sequence numbers they request, in order (RFC 4585 §6.2.1). */
export function nackItemsToSeqs(items: readonly NackItem[]): number[] {
  const out: number[] = [];
  for (const { pid, blp } of items) {
    out.push(pid & 0xffff);
    for (let i = 0; i < 16; i++) if (blp & (1 << i)) out.push((pid + i + 1) & 0xffff);
  }
  return out;
}

/**
 * The fewest NACK items that request exactly `seqs` (any order, duplicates and
 * wraparound allowed). Seqs are ordered relative to the first one, so the list
 * should span less than half the sequence space.
 */
export function seqsToNackItems(seqs: readonly number[]): NackItem[] {
  if (seqs.length === 0) return [];
  const ref = seqs[0]! & 0xffff;
  const rel = seqs.map((s) => seqDiff(s & 0xffff, ref)).sort((a, b) => a - b);
  const items: NackItem[] = [];
  let cur: NackItem | null = null;
  let base = 0;
  for (const r of rel) {
    if (cur && r === base) continue; // duplicate of the PID
    if (cur && r - base <= 16) {
      cur.blp |= 1 << (r - base - 1);
      continue;
    }
    base = r;
    cur = { pid: (ref + r) & 0xffff, blp: 0 };
    items.push(cur);
  }
  return items;
}
