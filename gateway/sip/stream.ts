/**
 * Framing of SIP over a byte stream (TCP/TLS, RFC 3261 §18.3): messages are delimited by
 * the empty line and Content-Length (mandatory on streams; absent means 0). Also handles
 * RFC 5626 §4.4.1 keep-alives: a CRLFCRLF "ping" between messages is answered with CRLF.
 * Pure: bytes in, framed chunks and events out.
 */

export type StreamEvent =
  | { readonly type: "message"; readonly data: Buffer }
  /** RFC 5626 double-CRLF ping: the adapter answers with a single CRLF ("pong"). */
  | { readonly type: "ping" }
  /** The stream cannot be re-synchronised (oversized header, bad Content-Length): close it. */
  | { readonly type: "error"; readonly reason: string };

export interface StreamFramerOptions {
  /** Largest header section, bytes. Default 65535. */
  maxHeaderBytes?: number;
  /** Largest body, bytes. Default 65535. */
  maxBodyBytes?: number;
}

const CRLF2 = Buffer.from("\r\n\r\n", "latin1");

export class SipStreamFramer {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxHeader: number;
  private readonly maxBody: number;
  private failed = false;

  constructor(opts: StreamFramerOptions = {}) {
    this.maxHeader = opts.maxHeaderBytes ?? 65535;
    this.maxBody = opts.maxBodyBytes ?? 65535;
  }

  /** Feed bytes; returns the complete messages (and pings) they finish. */
  push(chunk: Buffer): StreamEvent[] {
    if (this.failed) return [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: StreamEvent[] = [];
    for (;;) {
      // Leading CRLFs: keep-alive pings (CRLFCRLF) or stray line ends between messages (§7.5).
      let i = 0;
      let crlfs = 0;
      while (i + 1 < this.buf.length && this.buf[i] === 13 && this.buf[i + 1] === 10) {
        i += 2;
        crlfs++;
      }
      if (crlfs > 0) {
        if (crlfs >= 2) out.push({ type: "ping" });
        this.buf = this.buf.subarray(i);
      }
      if (this.buf.length === 0) break;
      if (this.buf.length === 1 && this.buf[0] === 13) break; // half a CRLF
      const end = this.buf.indexOf(CRLF2);
      if (end < 0) {
        if (this.buf.length > this.maxHeader) return this.fail(out, "header section too large");
        break;
      }
      if (end > this.maxHeader) return this.fail(out, "header section too large");
      const cl = findContentLength(this.buf, end);
      if (cl === "bad") return this.fail(out, "malformed Content-Length");
      const len = cl ?? 0;
      if (len > this.maxBody) return this.fail(out, "body too large");
      const total = end + 4 + len;
      if (this.buf.length < total) break;
      // Copy: the message outlives this chunk (transactions keep requests).
      out.push({ type: "message", data: Buffer.from(this.buf.subarray(0, total)) });
      this.buf = this.buf.subarray(total);
    }
    if (this.buf.length === 0) this.buf = Buffer.alloc(0);
    return out;
  }

  /** Bytes waiting for the rest of a message. */
  get pending(): number {
    return this.buf.length;
  }

  private fail(out: StreamEvent[], reason: string): StreamEvent[] {
    this.failed = true;
    this.buf = Buffer.alloc(0);
    out.push({ type: "error", reason });
    return out;
  }
}

/** Content-Length (or `l`) from the header section; undefined when absent. */
function findContentLength(buf: Buffer, end: number): number | undefined | "bad" {
  const head = buf.toString("latin1", 0, end);
  const m = /\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)/i.exec(head);
  if (!m) return undefined;
  const v = m[1]!.trim();
  if (!/^\d{1,10}$/.test(v)) return "bad";
  return Number(v);
}
