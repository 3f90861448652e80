/**
 * STUN message parsing (RFC 8489 §5, §14) without copying: a parsed message keeps the
 * received buffer and records where each attribute's value lies.
 *
 * Why not werift's codec: it stores attributes in a map by name (a CreatePermission
 * with several XOR-PEER-ADDRESS loses all but one), cannot verify or produce
 * MESSAGE-INTEGRITY-SHA256, does not ignore attributes after MESSAGE-INTEGRITY as
 * §14.5 requires, always pads with zeros (so the RFC 5769 vectors cannot be rebuilt
 * byte for byte), and copies the message several times per serialisation.
 */
import { Attr, CHANNEL_MAX, CHANNEL_MIN, Family, HEADER_LENGTH, KNOWN_REQUIRED_ATTRS, MAGIC_COOKIE, type MessageClass } from "./constants.ts";
import { formatIp, type TransportAddress } from "./address.ts";

export interface StunAttribute {
  readonly type: number;
  /** Offset of the value in `StunMessage.raw`. */
  readonly offset: number;
  readonly length: number;
}

export interface StunMessage {
  /** Exactly the message's bytes (header + attributes). */
  readonly raw: Buffer;
  readonly method: number;
  readonly cls: MessageClass;
  /** 12 bytes, a view into `raw`. */
  readonly transactionId: Buffer;
  /** Attributes in order, excluding MESSAGE-INTEGRITY(-SHA256), FINGERPRINT and anything §14.5 says to ignore. */
  readonly attrs: readonly StunAttribute[];
  /** Offset of the MESSAGE-INTEGRITY attribute header, or -1. */
  readonly integrityAt: number;
  /** Offset of the MESSAGE-INTEGRITY-SHA256 attribute header, or -1. */
  readonly integrity256At: number;
  /** Length of the MESSAGE-INTEGRITY-SHA256 value (16..32, multiple of 4). */
  readonly integrity256Length: number;
  /** Offset of the FINGERPRINT attribute header, or -1. */
  readonly fingerprintAt: number;
  /** Comprehension-required attribute types we do not understand (for 420). */
  readonly unknownRequired: readonly number[];
}

/** Why bytes were not accepted as a STUN message; each is a counted drop. */
export type StunParseFailure =
  | "too-short"
  | "not-stun" // first two bits not zero
  | "bad-cookie"
  | "bad-length" // length field not a multiple of 4 or not matching the bytes
  | "bad-attribute" // an attribute runs past the message
  | "after-fingerprint"; // FINGERPRINT is not the last attribute

export type ParseResult = { ok: true; msg: StunMessage } | { ok: false; reason: StunParseFailure };

/** True when `b` could start a STUN message (RFC 8489 §5: top two bits zero, magic cookie). */
export function looksLikeStun(b: Uint8Array, offset = 0): boolean {
  return (
    b.length - offset >= 8 &&
    (b[offset]! & 0xc0) === 0 &&
    b[offset + 4] === 0x21 &&
    b[offset + 5] === 0x12 &&
    b[offset + 6] === 0xa4 &&
    b[offset + 7] === 0x42
  );
}

/** Split a 14-bit message type into method and class (RFC 8489 §5, Figure 3). */
export function splitType(t: number): { method: number; cls: MessageClass } {
  const method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
  const cls = (((t & 0x0010) >> 4) | ((t & 0x0100) >> 7)) as MessageClass;
  return { method, cls };
}

/** Join method and class into the 14-bit message type. */
export function messageType(method: number, cls: MessageClass): number {
  return (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7);
}

/** Parse one complete STUN message; `buf` must hold exactly the message (UDP datagram or TCP frame). */
export function parseStun(buf: Buffer): ParseResult {
  if (buf.length < HEADER_LENGTH) return { ok: false, reason: "too-short" };
  if ((buf[0]! & 0xc0) !== 0) return { ok: false, reason: "not-stun" };
  if (buf.readUInt32BE(4) !== MAGIC_COOKIE) return { ok: false, reason: "bad-cookie" };
  const len = buf.readUInt16BE(2);
  if ((len & 3) !== 0 || HEADER_LENGTH + len !== buf.length) return { ok: false, reason: "bad-length" };
  const { method, cls } = splitType(buf.readUInt16BE(0));
  const attrs: StunAttribute[] = [];
  const unknownRequired: number[] = [];
  let integrityAt = -1;
  let integrity256At = -1;
  let integrity256Length = 0;
  let fingerprintAt = -1;
  let pos = HEADER_LENGTH;
  while (pos < buf.length) {
    if (fingerprintAt >= 0) return { ok: false, reason: "after-fingerprint" };
    if (pos + 4 > buf.length) return { ok: false, reason: "bad-attribute" };
    const type = buf.readUInt16BE(pos);
    const alen = buf.readUInt16BE(pos + 2);
    const end = pos + 4 + alen;
    if (end > buf.length) return { ok: false, reason: "bad-attribute" };
    if (type === Attr.Fingerprint) {
      if (alen !== 4) return { ok: false, reason: "bad-attribute" };
      fingerprintAt = pos;
    } else if (type === Attr.MessageIntegritySha256) {
      // §14.6: after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts.
      if (integrity256At < 0) {
        if (alen < 16 || alen > 32 || (alen & 3) !== 0) return { ok: false, reason: "bad-attribute" };
        integrity256At = pos;
        integrity256Length = alen;
      }
    } else if (type === Attr.MessageIntegrity) {
      // §14.5: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow it.
      if (integrityAt < 0 && integrity256At < 0) {
        if (alen !== 20) return { ok: false, reason: "bad-attribute" };
        integrityAt = pos;
      }
    } else if (integrityAt < 0 && integrity256At < 0) {
      attrs.push({ type, offset: pos + 4, length: alen });
      if (type < 0x8000 && !KNOWN_REQUIRED_ATTRS.has(type) && !unknownRequired.includes(type)) unknownRequired.push(type);
    }
    pos = end + ((4 - (alen & 3)) & 3);
  }
  if (pos !== buf.length) return { ok: false, reason: "bad-attribute" };
  return {
    ok: true,
    msg: {
      raw: buf,
      method,
      cls,
      transactionId: buf.subarray(8, 20),
      attrs,
      integrityAt,
      integrity256At,
      integrity256Length,
      fingerprintAt,
      unknownRequired,
    },
  };
}

/** First attribute of `type`, or undefined. */
export function getAttr(msg: StunMessage, type: number): StunAttribute | undefined {
  for (const a of msg.attrs) if (a.type === type) return a;
  return undefined;
}

/** Every attribute of `type` in order (CreatePermission may carry several XOR-PEER-ADDRESS). */
export function getAttrs(msg: StunMessage, type: number): StunAttribute[] {
  return msg.attrs.filter((a) => a.type === type);
}

export function hasAttr(msg: StunMessage, type: number): boolean {
  return getAttr(msg, type) !== undefined;
}

export function attrBytes(msg: StunMessage, a: StunAttribute): Buffer {
  return msg.raw.subarray(a.offset, a.offset + a.length);
}

export function attrString(msg: StunMessage, a: StunAttribute): string {
  return msg.raw.toString("utf8", a.offset, a.offset + a.length);
}

/** A 32-bit attribute value, or undefined when the length is not 4. */
export function attrU32(msg: StunMessage, a: StunAttribute): number | undefined {
  return a.length === 4 ? msg.raw.readUInt32BE(a.offset) : undefined;
}

/** CHANNEL-NUMBER (RFC 8656 §18.1): a 16-bit number followed by RFFU; undefined if malformed. */
export function attrChannelNumber(msg: StunMessage, a: StunAttribute): number | undefined {
  if (a.length !== 4) return undefined;
  const n = msg.raw.readUInt16BE(a.offset);
  return n >= CHANNEL_MIN && n <= CHANNEL_MAX ? n : undefined;
}

/** ERROR-CODE value (class*100 + number), or undefined. */
export function attrErrorCode(msg: StunMessage, a: StunAttribute): { code: number; reason: string } | undefined {
  if (a.length < 4) return undefined;
  const cls = msg.raw[a.offset + 2]! & 0x07;
  const num = msg.raw[a.offset + 3]!;
  return { code: cls * 100 + num, reason: msg.raw.toString("utf8", a.offset + 4, a.offset + a.length) };
}

/** Decode an XOR-*-ADDRESS attribute (RFC 8489 §14.2); undefined if malformed. */
export function attrXorAddress(msg: StunMessage, a: StunAttribute): TransportAddress | undefined {
  return decodeXorAddress(msg.raw, a.offset, a.length, msg.transactionId);
}

export function decodeXorAddress(raw: Uint8Array, off: number, len: number, tid: Uint8Array): TransportAddress | undefined {
  if (len < 4) return undefined;
  const fam = raw[off + 1];
  const port = ((raw[off + 2]! << 8) | raw[off + 3]!) ^ (MAGIC_COOKIE >>> 16);
  if (fam === Family.IPv4) {
    if (len !== 8) return undefined;
    const b = new Uint8Array(4);
    b[0] = raw[off + 4]! ^ 0x21;
    b[1] = raw[off + 5]! ^ 0x12;
    b[2] = raw[off + 6]! ^ 0xa4;
    b[3] = raw[off + 7]! ^ 0x42;
    return { family: 4, address: formatIp(b), port };
  }
  if (fam === Family.IPv6) {
    if (len !== 20) return undefined;
    const b = new Uint8Array(16);
    const mask = [0x21, 0x12, 0xa4, 0x42];
    for (let i = 0; i < 16; i++) b[i] = raw[off + 4 + i]! ^ (i < 4 ? mask[i]! : tid[i - 4]!);
    return { family: 6, address: formatIp(b), port };
  }
  return undefined;
}

/** Decode a plain (non-XOR) MAPPED-ADDRESS-style value. */
export function decodeAddress(raw: Uint8Array, off: number, len: number): TransportAddress | undefined {
  if (len < 4) return undefined;
  const fam = raw[off + 1];
  const port = (raw[off + 2]! << 8) | raw[off + 3]!;
  if (fam === Family.IPv4 && len === 8) return { family: 4, address: formatIp(raw.subarray(off + 4, off + 8)), port };
  if (fam === Family.IPv6 && len === 20) return { family: 6, address: formatIp(raw.subarray(off + 4, off + 20)), port };
  return undefined;
}
