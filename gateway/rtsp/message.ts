/**
 * RTSP 1.0 messages (RFC 2326 §4–§7) and the byte stream that carries them.
 *
 * Pure: bytes in, typed messages out. One `RtspStreamParser` per TCP/TLS connection
 * demultiplexes RTSP requests/responses from `$`-prefixed interleaved binary frames
 * (RFC 2326 §10.12). The parser never throws on bad input: it returns `error` events,
 * and after a `fatal` one the stream cannot be resynchronised (the caller closes it).
 */
import { BadInputError } from "../../config/errors.ts";

/** Case-insensitive, order-preserving, multi-valued header list. */
export class RtspHeaders {
  private readonly list: [string, string][] = [];

  constructor(init?: Iterable<readonly [string, string]> | Record<string, string>) {
    if (!init) return;
    const pairs = Symbol.iterator in init ? (init as Iterable<readonly [string, string]>) : Object.entries(init);
    for (const [k, v] of pairs) this.append(k, v);
  }

  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined {
    const n = name.toLowerCase();
    for (const [k, v] of this.list) if (k.toLowerCase() === n) return v;
    return undefined;
  }

  getAll(name: string): string[] {
    const n = name.toLowerCase();
    const out: string[] = [];
    for (const [k, v] of this.list) if (k.toLowerCase() === n) out.push(v);
    return out;
  }

  /** Replaces every value of `name` with `v`, keeping the position of the first one. */
  set(name: string, v: string): void {
    const n = name.toLowerCase();
    const i = this.list.findIndex(([k]) => k.toLowerCase() === n);
    if (i < 0) {
      this.list.push([name, v]);
      return;
    }
    this.list[i] = [name, v];
    for (let j = this.list.length - 1; j > i; j--) if (this.list[j]![0].toLowerCase() === n) this.list.splice(j, 1);
  }

  append(name: string, v: string): void {
    this.list.push([name, v]);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  delete(name: string): void {
    const n = name.toLowerCase();
    for (let j = this.list.length - 1; j >= 0; j--) if (this.list[j]![0].toLowerCase() === n) this.list.splice(j, 1);
  }

  /** A copy of the [name, value] pairs in order, names as first written. */
  entries(): [string, string][] {
    return this.list.map(([k, v]) => [k, v]);
  }

  clone(): RtspHeaders {
    return new RtspHeaders(this.list);
  }
}

export interface RtspRequest {
  method: string;
  uri: string;
  headers: RtspHeaders;
  body: Buffer;
}

export interface RtspResponse {
  status: number;
  reason: string;
  headers: RtspHeaders;
  body: Buffer;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header values and reason phrases: no CR, LF, NUL or other controls (HT allowed), so no header injection. */
function hasCtl(s: string, allowTab = true): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && !(allowTab && c === 0x09)) || c === 0x7f) return true;
  }
  return false;
}
const EMPTY = Buffer.alloc(0);

/** Serializes a request; sets Content-Length when the body is non-empty. Throws BadInputError on header injection. */
export function serializeRequest(r: RtspRequest): Buffer {
  if (!TOKEN.test(r.method)) throw new BadInputError(`invalid RTSP method ${JSON.stringify(r.method)}`);
  if (r.uri.length === 0 || r.uri.includes(" ") || hasCtl(r.uri, false)) throw new BadInputError("invalid RTSP request URI");
  return serialize(`${r.method} ${r.uri} RTSP/1.0`, r.headers, r.body);
}

/** Serializes a response; sets Content-Length when the body is non-empty. Throws BadInputError on header injection. */
export function serializeResponse(r: RtspResponse): Buffer {
  if (!Number.isInteger(r.status) || r.status < 100 || r.status > 999)
    throw new BadInputError(`invalid RTSP status ${r.status}`);
  if (hasCtl(r.reason)) throw new BadInputError("invalid RTSP reason phrase");
  return serialize(`RTSP/1.0 ${r.status} ${r.reason}`, r.headers, r.body);
}

function serialize(startLine: string, headers: RtspHeaders, body: Buffer): Buffer {
  let head = startLine + "\r\n";
  for (const [k, v] of headers.entries()) {
    if (k.toLowerCase() === "content-length") continue; // always computed from the body
    if (!TOKEN.test(k)) throw new BadInputError(`invalid RTSP header name ${JSON.stringify(k)}`);
    if (hasCtl(v)) throw new BadInputError(`invalid characters in RTSP header ${k}`);
    head += `${k}: ${v}\r\n`;
  }
  if (body.length > 0) head += `Content-Length: ${body.length}\r\n`;
  head += "\r\n";
  const h = Buffer.from(head, "latin1");
  return body.length > 0 ? Buffer.concat([h, body]) : h;
}

/** An interleaved binary frame: `$`, channel (0–255), 16-bit big-endian length, payload (RFC 2326 §10.12). */
export function interleavedFrame(channel: number, payload: Buffer): Buffer {
  if (!Number.isInteger(channel) || channel < 0 || channel > 255)
    throw new BadInputError(`interleaved channel ${channel} out of range 0..255`);
  if (payload.length > 0xffff) throw new BadInputError(`interleaved payload of ${payload.length} bytes exceeds 65535`);
  const out = Buffer.allocUnsafe(4 + payload.length);
  out[0] = 0x24;
  out[1] = channel;
  out.writeUInt16BE(payload.length, 2);
  payload.copy(out, 4);
  return out;
}

export type RtspStreamEvent =
  | { type: "request"; message: RtspRequest }
  | { type: "response"; message: RtspResponse }
  | { type: "interleaved"; channel: number; data: Buffer }
  /**
   * Malformed input: the caller counts/logs, then decides. When `fatal` the byte
   * stream lost its framing: later pushes yield nothing and the connection should close.
   */
  | { type: "error"; error: BadInputError; fatal: boolean };

export interface RtspStreamParserOptions {
  /** Largest start line + header block accepted, bytes. Default 32768. */
  maxHeaderBytes?: number;
  /** Largest Content-Length accepted, bytes. Default 1048576. */
  maxBodyBytes?: number;
}

const DOLLAR = 0x24;
const LF = 0x0a;
const CR = 0x0d;

/**
 * Incremental parser for one TCP/TLS connection carrying RTSP messages and `$` interleaved frames.
 * Interleaved `data` and message bodies may alias the pushed chunks: treat them as read-only.
 */
export class RtspStreamParser {
  private readonly maxHeader: number;
  private readonly maxBody: number;
  private chunks: Buffer[] = [];
  private total = 0;
  /** What the bytes at the head of the queue are. */
  private state: "start" | "header" | "body" | "frame" | "dead" = "start";
  /** Header scan progress: bytes already searched for the blank line, and whether the current line is empty so far. */
  private scanned = 0;
  private lineEmpty = false;
  /** Bytes the current body/frame needs, and the parsed message waiting for its body. */
  private need = 0;
  private pending: { msg: RtspRequest | RtspResponse; kind: "request" | "response" } | { error: BadInputError } | null =
    null;

  constructor(opts: RtspStreamParserOptions = {}) {
    this.maxHeader = opts.maxHeaderBytes ?? 32768;
    this.maxBody = opts.maxBodyBytes ?? 1048576;
  }

  /** True once a fatal error was reported; the connection should be closed. */
  get failed(): boolean {
    return this.state === "dead";
  }

  /** Bytes received but not yet returned as an event. */
  get buffered(): number {
    return this.total;
  }

  push(chunk: Buffer): RtspStreamEvent[] {
    const out: RtspStreamEvent[] = [];
    if (this.state === "dead" || chunk.length === 0) return out;
    this.chunks.push(chunk);
    this.total += chunk.length;
    for (;;) {
      if (this.state === "start") {
        // Tolerate stray CR/LF between messages (some servers send an extra CRLF after a body).
        while (this.total > 0) {
          const b = this.chunks[0]![0]!;
          if (b !== CR && b !== LF) break;
          this.discard(1);
        }
        if (this.total === 0) return out;
        const b = this.chunks[0]![0]!;
        if (b === DOLLAR) {
          if (this.total < 4) return out;
          this.need = 4 + ((this.byteAt(2) << 8) | this.byteAt(3));
          this.state = "frame";
        } else if (isTokenByte(b)) {
          this.state = "header";
          this.scanned = 0;
          this.lineEmpty = false;
        } else {
          return this.die(out, `unexpected byte 0x${b.toString(16).padStart(2, "0")} at start of RTSP message`);
        }
      } else if (this.state === "frame") {
        if (this.total < this.need) return out;
        const frame = this.take(this.need);
        out.push({ type: "interleaved", channel: frame[1]!, data: frame.subarray(4) });
        this.state = "start";
      } else if (this.state === "header") {
        const end = this.scanHeaderEnd();
        if (end < 0) {
          if (this.total > this.maxHeader)
            return this.die(out, `RTSP header block exceeds ${this.maxHeader} bytes without ending`);
          return out;
        }
        if (end > this.maxHeader) return this.die(out, `RTSP header block of ${end} bytes exceeds ${this.maxHeader}`);
        const parsed = parseHead(this.take(end).toString("latin1"));
        const cl = contentLength(parsed.headers, this.maxBody);
        if (typeof cl === "string") return this.die(out, cl);
        this.pending = parsed.error ? { error: parsed.error } : { msg: parsed.msg!, kind: parsed.kind! };
        this.need = cl;
        this.state = "body";
      } else if (this.state === "body") {
        if (this.total < this.need) return out;
        const body = this.need > 0 ? this.take(this.need) : EMPTY;
        const p = this.pending!;
        this.pending = null;
        this.state = "start";
        if ("error" in p) out.push({ type: "error", error: p.error, fatal: false });
        else {
          p.msg.body = body;
          if (p.kind === "request") out.push({ type: "request", message: p.msg as RtspRequest });
          else out.push({ type: "response", message: p.msg as RtspResponse });
        }
      } else {
        return out;
      }
    }
  }

  /** Forget everything buffered and any failure (e.g. when reusing the parser for a new connection). */
  reset(): void {
    this.chunks = [];
    this.total = 0;
    this.state = "start";
    this.pending = null;
  }

  private die(out: RtspStreamEvent[], why: string): RtspStreamEvent[] {
    out.push({ type: "error", error: new BadInputError(why), fatal: true });
    this.state = "dead";
    this.chunks = [];
    this.total = 0;
    this.pending = null;
    return out;
  }

  /**
   * Searches new bytes for the blank line ending the header block; lines end in LF with
   * an optional CR (RFC 2326 §4: recipients should accept either). Returns its end offset or -1.
   */
  private scanHeaderEnd(): number {
    let base = 0;
    for (const c of this.chunks) {
      const from = Math.max(0, this.scanned - base);
      for (let i = from; i < c.length; i++) {
        const b = c[i]!;
        if (b === LF) {
          if (this.lineEmpty) return base + i + 1;
          this.lineEmpty = true;
        } else if (b !== CR) this.lineEmpty = false;
      }
      base += c.length;
      if (base > this.scanned) this.scanned = base;
      if (base > this.maxHeader + 1) break;
    }
    return -1;
  }

  private byteAt(i: number): number {
    for (const c of this.chunks) {
      if (i < c.length) return c[i]!;
      i -= c.length;
    }
    return 0;
  }

  private discard(n: number): void {
    this.take(n);
  }

  /** Removes and returns the first n bytes, without copying when they lie in one chunk. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    this.total -= n;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

function isTokenByte(b: number): boolean {
  return b > 0x20 && b < 0x7f && b !== DOLLAR;
}

const STATUS_LINE = /^RTSP\/1\.\d+ (\d{3})(?: (.*))?$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) RTSP\/1\.\d+$/;

interface Head {
  kind?: "request" | "response";
  msg?: RtspRequest | RtspResponse;
  headers: RtspHeaders;
  error?: BadInputError;
}

/** Parses the start line and header fields of one message (text decoded as latin1). */
function parseHead(text: string): Head {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const pairs: [string, string][] = [];
  let error: BadInputError | undefined;
  let folding = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line[0] === " " || line[0] === "\t") {
      // Obsolete line folding (RFC 2326 §4.2 via HTTP/1.1 §2.2): continue the previous value.
      const prev = pairs.at(-1);
      if (folding && prev) prev[1] = (prev[1] + " " + line.trim()).trim();
      else error ??= new BadInputError("RTSP header block starts with a continuation line");
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).trim() : "";
    folding = TOKEN.test(name);
    if (!folding) {
      error ??= new BadInputError(`malformed RTSP header line ${JSON.stringify(line.slice(0, 80))}`);
      continue;
    }
    pairs.push([name, line.slice(colon + 1).trim()]);
  }
  const headers = new RtspHeaders(pairs);
  const start = lines[0] ?? "";
  let m = STATUS_LINE.exec(start);
  if (m) {
    if (error) return { headers, error };
    return { kind: "response", headers, msg: { status: Number(m[1]), reason: m[2] ?? "", headers, body: EMPTY } };
  }
  m = REQUEST_LINE.exec(start);
  if (m) {
    if (error) return { headers, error };
    return { kind: "request", headers, msg: { method: m[1]!, uri: m[2]!, headers, body: EMPTY } };
  }
  return { headers, error: new BadInputError(`malformed RTSP start line ${JSON.stringify(start.slice(0, 80))}`) };
}

/** The body length per RFC 2326 §4.3 (absent = empty); a string is a fatal framing problem. */
function contentLength(h: RtspHeaders, max: number): number | string {
  const all = h.getAll("content-length");
  if (all.length === 0) return 0;
  const first = all[0]!;
  if (!/^\d{1,12}$/.test(first) || all.some((v) => v !== first))
    return `invalid Content-Length ${JSON.stringify(all.join(", ").slice(0, 40))}`;
  const n = Number(first);
  if (n > max) return `Content-Length ${n} exceeds the limit of ${max} bytes`;
  return n;
}
