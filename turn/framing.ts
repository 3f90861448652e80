/**
 * Framing of STUN and ChannelData over a byte stream (RFC 8656 §12.5, RFC 8489 §6.2.2):
 * a STUN message is 20 + its length field; ChannelData is 4 + its length, padded to a
 * multiple of 4 over TCP/TLS. A stream that starts anything else cannot be resynchronised
 * and is closed.
 *
 * Complete frames inside a chunk are handed out as views without copying; only a
 * frame split across chunks is assembled.
 */

export type FrameKind = "stun" | "channel";

export type FrameError = "bad-frame" | "too-large";

export interface FrameSink {
  /** One whole frame; `frame` is only valid during the call (it may view a reused buffer). */
  frame(kind: FrameKind, frame: Buffer): void;
}

/** Largest STUN message accepted over a stream, bytes (the 16-bit length field allows 65555). */
export const MAX_STUN_FRAME = 20 + 8192;

export class StreamFramer {
  private pending: Buffer | undefined;
  private readonly sink: FrameSink;

  constructor(sink: FrameSink) {
    this.sink = sink;
  }

  /** Bytes waiting for the rest of their frame. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }

  /** Feed a chunk; returns an error when the stream is not TURN (the caller closes it). */
  push(chunk: Buffer): FrameError | undefined {
    let buf = chunk;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let off = 0;
    const end = buf.length;
    while (end - off >= 4) {
      const b0 = buf[off]!;
      const len = (buf[off + 2]! << 8) | buf[off + 3]!;
      let size: number;
      let kind: FrameKind;
      if ((b0 & 0xc0) === 0) {
        if ((len & 3) !== 0) return "bad-frame";
        size = 20 + len;
        if (size > MAX_STUN_FRAME) return "too-large";
        kind = "stun";
      } else if ((b0 & 0xc0) === 0x40) {
        size = (4 + len + 3) & ~3;
        kind = "channel";
      } else return "bad-frame";
      if (end - off < size) break;
      this.sink.frame(kind, buf.subarray(off, off + size));
      off += size;
    }
    if (off < end) this.pending = Buffer.from(buf.subarray(off));
    return undefined;
  }
}
