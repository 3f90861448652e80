/**
 * DTMF both ways: RFC 4733 telephone-events carried in the call's RTP stream, and SIP INFO
 * with `application/dtmf-relay` bodies (the de-facto format many door stations use). Pure.
 */

const DIGITS = "0123456789*#ABCD";

/** RFC 4733 §3.2 event code of a digit, or undefined. */
export function dtmfCode(digit: string): number | undefined {
  const i = DIGITS.indexOf(digit.toUpperCase());
  return i >= 0 ? i : undefined;
}

export function dtmfDigit(code: number): string | undefined {
  return code >= 0 && code < 16 ? DIGITS[code] : undefined;
}

/** Write the 4-byte event payload (RFC 4733 §2.3): event, E bit, volume, duration in timestamp units. */
export function writeDtmfPayload(out: Buffer, offset: number, code: number, end: boolean, volume: number, duration: number): void {
  out[offset] = code;
  out[offset + 1] = (end ? 0x80 : 0) | (volume & 0x3f);
  out.writeUInt16BE(Math.min(0xffff, duration), offset + 2);
}

export interface DtmfEvent {
  readonly digit: string;
  /** Duration in timestamp units (8000 Hz → 8 per ms). */
  readonly duration: number;
  readonly end: boolean;
}

/** Read an event payload; undefined when too short or not a DTMF event (codes ≥ 16 are other tones). */
export function readDtmfPayload(b: Buffer, offset: number, length: number): DtmfEvent | undefined {
  if (length < 4) return undefined;
  const digit = dtmfDigit(b[offset]!);
  if (digit === undefined) return undefined;
  return { digit, end: (b[offset + 1]! & 0x80) !== 0, duration: b.readUInt16BE(offset + 2) };
}

/**
 * Turns a stream of event packets into digits: one per event, reported on its first packet
 * (the same timestamp marks the same event; end packets are sent three times, §2.5.1.4).
 */
export class DtmfReceiver {
  private lastTimestamp = -1;
  private lastCode = -1;

  /** Returns the digit when this packet starts a new event, else undefined. */
  push(timestamp: number, b: Buffer, offset: number, length: number): string | undefined {
    const ev = readDtmfPayload(b, offset, length);
    if (!ev) return undefined;
    const code = dtmfCode(ev.digit)!;
    if (timestamp === this.lastTimestamp && code === this.lastCode) return undefined;
    this.lastTimestamp = timestamp;
    this.lastCode = code;
    return ev.digit;
  }
}

/** `application/dtmf-relay` body for one digit. */
export function dtmfRelayBody(digit: string, durationMs: number): string {
  return `Signal=${digit}\r\nDuration=${durationMs}\r\n`;
}

/** Parse an `application/dtmf-relay` (or `application/dtmf`) INFO body; undefined when it has no signal. */
export function parseDtmfInfo(contentType: string, body: string): string | undefined {
  if (contentType === "application/dtmf") {
    const d = body.trim();
    return d.length === 1 && dtmfCode(d) !== undefined ? d.toUpperCase() : undefined;
  }
  if (contentType !== "application/dtmf-relay") return undefined;
  const m = /^\s*signal\s*=\s*(\S)/im.exec(body);
  if (!m) return undefined;
  const d = m[1]!;
  return dtmfCode(d) !== undefined ? d.toUpperCase() : undefined;
}
