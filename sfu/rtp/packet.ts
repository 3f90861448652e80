/**
 * RTP fixed header (RFC 3550 §5.1): parse, validate and write.
 *
 * Pure and allocation-conscious: `readRtpHeader` fills a caller-owned object so the
 * per-packet path allocates nothing; `parseRtpHeader` is the convenient allocating form.
 */

/** The parsed RTP fixed header plus where the payload sits in the packet. */
export interface RtpHeader {
  marker: boolean;
  payloadType: number;
  /** 16-bit sequence number. */
  sequenceNumber: number;
  /** 32-bit RTP timestamp, in the track's clock rate. */
  timestamp: number;
  /** 32-bit SSRC (unsigned). */
  ssrc: number;
  /** Number of CSRC entries (0–15). */
  csrcCount: number;
  /** The X bit: a header extension follows the CSRC list. */
  extension: boolean;
  /** The P bit: padding octets end the packet (the last octet counts them). */
  padding: boolean;
  /** Bytes from the start of the packet to the payload (fixed header + CSRCs + extension). */
  headerLength: number;
  /** Offset of the payload in the packet (equals headerLength). */
  payloadOffset: number;
  /** Payload bytes, excluding padding. */
  payloadLength: number;
}

/** A fresh header object to reuse with `readRtpHeader`. */
export function emptyRtpHeader(): RtpHeader {
  return {
    marker: false,
    payloadType: 0,
    sequenceNumber: 0,
    timestamp: 0,
    ssrc: 0,
    csrcCount: 0,
    extension: false,
    padding: false,
    headerLength: 0,
    payloadOffset: 0,
    payloadLength: 0,
  };
}

/**
 * Parses `buf` into `out` without allocating. Returns false (and leaves `out` in an
 * unspecified state) when `buf` is not valid RTP: version ≠ 2, truncated fixed header,
 * CSRC list or extension, or a padding count of zero or larger than the payload.
 */
export function readRtpHeader(buf: Uint8Array, out: RtpHeader): boolean {
  const len = buf.length;
  if (len < 12) return false;
  const b0 = buf[0]!;
  if (b0 >> 6 !== 2) return false;
  const cc = b0 & 0x0f;
  let hl = 12 + 4 * cc;
  if (hl > len) return false;
  const ext = (b0 & 0x10) !== 0;
  if (ext) {
    // §5.3.1: 16-bit profile-defined field, 16-bit length in 32-bit words excluding this 4-byte header.
    if (hl + 4 > len) return false;
    const words = (buf[hl + 2]! << 8) | buf[hl + 3]!;
    hl += 4 + 4 * words;
    if (hl > len) return false;
  }
  const pad = (b0 & 0x20) !== 0;
  let padLen = 0;
  if (pad) {
    // §5.1: the last octet counts the padding octets, itself included, so it is ≥ 1.
    padLen = buf[len - 1]!;
    if (padLen === 0 || hl + padLen > len) return false;
  }
  const b1 = buf[1]!;
  out.marker = (b1 & 0x80) !== 0;
  out.payloadType = b1 & 0x7f;
  out.sequenceNumber = (buf[2]! << 8) | buf[3]!;
  out.timestamp = ((buf[4]! << 24) | (buf[5]! << 16) | (buf[6]! << 8) | buf[7]!) >>> 0;
  out.ssrc = ((buf[8]! << 24) | (buf[9]! << 16) | (buf[10]! << 8) | buf[11]!) >>> 0;
  out.csrcCount = cc;
  out.extension = ext;
  out.padding = pad;
  out.headerLength = hl;
  out.payloadOffset = hl;
  out.payloadLength = len - hl - padLen;
  return true;
}

/** Parses an RTP header; null when `buf` is not valid RTP (see `readRtpHeader`). */
export function parseRtpHeader(buf: Uint8Array): RtpHeader | null {
  const h = emptyRtpHeader();
  return readRtpHeader(buf, h) ? h : null;
}

/** The CSRC list of a packet already validated by `readRtpHeader`/`parseRtpHeader`. */
export function rtpCsrcs(buf: Uint8Array): number[] {
  const cc = buf[0]! & 0x0f;
  const out: number[] = [];
  for (let i = 0; i < cc; i++) {
    const o = 12 + 4 * i;
    out.push(((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0);
  }
  return out;
}

/**
 * RFC 5761 §4 demultiplexing of RTP and RTCP on one port: an RTCP packet's second
 * octet (the packet type) lies in 192–223, which RTP avoids by never using payload
 * types 64–95. Also requires version 2 and the 4-byte RTCP common header.
 */
export function isRtcpPacket(buf: Uint8Array): boolean {
  if (buf.length < 4) return false;
  if (buf[0]! >> 6 !== 2) return false;
  const pt = buf[1]!;
  return pt >= 192 && pt <= 223;
}

/** The fields written by `writeRtpHeader`. */
export interface RtpHeaderFields {
  marker: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  /**
   * Transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01 §2),
   * 16 bits, written in a one-byte header extension (RFC 8285 §4.2) with id
   * `transportCcId`; absent or negative: no header extension.
   */
  transportSeq?: number;
  /** The extension id negotiated for it (1–14). */
  transportCcId?: number;
}

/** Bytes of the header `writeRtpHeaderExtended` writes for `h`: 12, or 20 with the transport-wide sequence number. */
export function rtpHeaderLength(h: RtpHeaderFields): number {
  return h.transportSeq !== undefined && h.transportSeq >= 0 ? 20 : 12;
}

/**
 * Writes `h`'s header at `off`: the 12 fixed bytes, and when `h` carries a transport-wide
 * sequence number the RFC 8285 one-byte extension block (0xBEDE, one word: id and length 1,
 * the 16-bit number, one byte of padding). Returns the header length.
 */
export function writeRtpHeaderExtended(out: Uint8Array, h: RtpHeaderFields, off = 0): number {
  writeRtpHeader(out, h, off);
  const tw = h.transportSeq;
  if (tw === undefined || tw < 0) return 12;
  out[off] = 0x90; // X bit
  out[off + 12] = 0xbe;
  out[off + 13] = 0xde;
  out[off + 14] = 0;
  out[off + 15] = 1;
  out[off + 16] = (((h.transportCcId ?? 0) & 0x0f) << 4) | 1; // L = length − 1
  out[off + 17] = (tw >> 8) & 0xff;
  out[off + 18] = tw & 0xff;
  out[off + 19] = 0;
  return 20;
}

/**
 * Writes a 12-byte RTP header (version 2, no padding, extension or CSRCs) at `offset`.
 * Returns the header length (12). `out` must have 12 bytes from `offset`.
 */
export function writeRtpHeader(out: Uint8Array, h: RtpHeaderFields, offset = 0): number {
  out[offset] = 0x80;
  out[offset + 1] = (h.marker ? 0x80 : 0) | (h.payloadType & 0x7f);
  const seq = h.sequenceNumber & 0xffff;
  out[offset + 2] = seq >> 8;
  out[offset + 3] = seq & 0xff;
  const ts = h.timestamp >>> 0;
  out[offset + 4] = ts >>> 24;
  out[offset + 5] = (ts >>> 16) & 0xff;
  out[offset + 6] = (ts >>> 8) & 0xff;
  out[offset + 7] = ts & 0xff;
  const ssrc = h.ssrc >>> 0;
  out[offset + 8] = ssrc >>> 24;
  out[offset + 9] = (ssrc >>> 16) & 0xff;
  out[offset + 10] = (ssrc >>> 8) & 0xff;
  out[offset + 11] = ssrc & 0xff;
  return 12;
}

/** Rewrites only the sequence number of an RTP packet in place (for forwarding with a per-viewer sequence). */
export function setRtpSequenceNumber(packet: Uint8Array, seq: number): void {
  packet[2] = (seq >> 8) & 0xff;
  packet[3] = seq & 0xff;
}

/** Rewrites only the timestamp of an RTP packet in place. */
export function setRtpTimestamp(packet: Uint8Array, ts: number): void {
  const t = ts >>> 0;
  packet[4] = t >>> 24;
  packet[5] = (t >>> 16) & 0xff;
  packet[6] = (t >>> 8) & 0xff;
  packet[7] = t & 0xff;
}

/** Rewrites only the SSRC of an RTP packet in place. */
export function setRtpSsrc(packet: Uint8Array, ssrc: number): void {
  const s = ssrc >>> 0;
  packet[8] = s >>> 24;
  packet[9] = (s >>> 16) & 0xff;
  packet[10] = (s >>> 8) & 0xff;
  packet[11] = s & 0xff;
}
