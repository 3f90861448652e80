/**
 * STUN message builder (RFC 8489 §5, §14). Writes into one growing buffer; the
 * integrity and fingerprint attributes are computed over what was written so far.
 * Control-path only: the relay hot path builds ChannelData and Data indications
 * with the dedicated functions in `turn/relay-encode.ts`.
 */
import { randomBytes } from "node:crypto";
import { Attr, Family, HEADER_LENGTH, MAGIC_COOKIE, REASON, type MessageClass } from "./constants.ts";
import { fingerprintOf, integrityHmac, type IntegrityAlgorithm } from "./integrity.ts";
import { messageType } from "./message.ts";
import { parseIp } from "./address.ts";

export class StunWriter {
  private buf: Buffer;
  private len = HEADER_LENGTH;
  /** Value written into padding bytes; RFC 5769's vectors use 0x20, everyone else 0. */
  padByte = 0;

  constructor(method: number, cls: MessageClass, transactionId: Uint8Array = randomBytes(12), capacity = 256) {
    if (transactionId.length !== 12) throw new RangeError("transaction id must be 12 bytes");
    this.buf = Buffer.allocUnsafe(Math.max(capacity, HEADER_LENGTH + 64));
    this.buf.writeUInt16BE(messageType(method, cls), 0);
    this.buf.writeUInt16BE(0, 2);
    this.buf.writeUInt32BE(MAGIC_COOKIE, 4);
    this.buf.set(transactionId, 8);
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + extra));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Append an attribute with a raw value, padded to 4 bytes. */
  bytes(type: number, value: Uint8Array): this {
    const pad = (4 - (value.length & 3)) & 3;
    if (value.length > 0xffff) throw new RangeError("attribute value too long");
    this.ensure(4 + value.length + pad);
    this.buf.writeUInt16BE(type, this.len);
    this.buf.writeUInt16BE(value.length, this.len + 2);
    this.buf.set(value, this.len + 4);
    this.buf.fill(this.padByte, this.len + 4 + value.length, this.len + 4 + value.length + pad);
    this.len += 4 + value.length + pad;
    this.buf.writeUInt16BE(this.len - HEADER_LENGTH, 2);
    return this;
  }

  string(type: number, s: string): this {
    return this.bytes(type, Buffer.from(s, "utf8"));
  }

  u32(type: number, v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v >>> 0, 0);
    return this.bytes(type, b);
  }

  /** ERROR-CODE (§14.8) with the standard reason phrase unless one is given. */
  errorCode(code: number, reason: string = REASON[code] ?? "Error"): this {
    const r = Buffer.from(reason.slice(0, 127), "utf8");
    const b = Buffer.allocUnsafe(4 + r.length);
    b.writeUInt16BE(0, 0);
    b[2] = Math.floor(code / 100) & 0x07;
    b[3] = code % 100;
    r.copy(b, 4);
    return this.bytes(Attr.ErrorCode, b);
  }

  /** UNKNOWN-ATTRIBUTES (§14.9): a list of 16-bit types. */
  unknownAttributes(types: readonly number[]): this {
    const b = Buffer.allocUnsafe(types.length * 2);
    types.forEach((t, i) => b.writeUInt16BE(t, i * 2));
    return this.bytes(Attr.UnknownAttributes, b);
  }

  /** An XOR-*-ADDRESS attribute (§14.2) from IP text and port. */
  xorAddress(type: number, address: string, port: number): this {
    const ip = parseIp(address);
    if (!ip) throw new RangeError(`not an IP address: ${address}`);
    const b = Buffer.allocUnsafe(4 + ip.length);
    b[0] = 0;
    b[1] = ip.length === 4 ? Family.IPv4 : Family.IPv6;
    b.writeUInt16BE((port ^ (MAGIC_COOKIE >>> 16)) & 0xffff, 2);
    const tid = this.buf.subarray(8, 20);
    const mask = [0x21, 0x12, 0xa4, 0x42];
    for (let i = 0; i < ip.length; i++) b[4 + i] = ip[i]! ^ (i < 4 ? mask[i]! : tid[i - 4]!);
    return this.bytes(type, b);
  }

  /** MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 over everything written so far. */
  integrity(key: Uint8Array, algo: IntegrityAlgorithm = "sha1"): this {
    const macLen = algo === "sha1" ? 20 : 32;
    const at = this.len;
    const mac = integrityHmac(algo, key, this.buf, at, at - HEADER_LENGTH + 4 + macLen);
    return this.bytes(algo === "sha1" ? Attr.MessageIntegrity : Attr.MessageIntegritySha256, mac);
  }

  /** FINGERPRINT (§14.7); must be the last attribute. */
  fingerprint(): this {
    this.ensure(8);
    const at = this.len;
    this.buf.writeUInt16BE(at - HEADER_LENGTH + 8, 2);
    const crc = fingerprintOf(this.buf, at);
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(crc, 0);
    return this.bytes(Attr.Fingerprint, b);
  }

  /** The finished message (a copy sized exactly). */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}
