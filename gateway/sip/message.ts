/**
 * SIP messages (RFC 3261 §7, §20, §25): model, parser and serializer. Pure.
 *
 * Why our own parser and not sip.js's (`Core.Parser.parseMessage`, tried first):
 *  - for a Via header written as one comma-separated line it reports the LAST via-parm as
 *    the top Via, which routes responses and matches transactions wrongly on a server;
 *  - on any malformed header it returns `undefined`, so a server cannot answer 400 (it has
 *    no Via/Call-ID/CSeq left to build the response from);
 *  - it counts Content-Length in UTF-16 characters, and costs ~1.2 ms per INVITE on the
 *    reference machine (PEG interpreter), against tens of microseconds here.
 * Its transactions use global timers and lack Timers A/E/G, and its UserAgentCore answers
 * 404 to any Request-URI user but its own AOR; none of that suits a registrar/UAS, so the
 * transaction layer (transaction.ts) is ours as well.
 *
 * Bytes are decoded as latin1 so that one char is one byte: Content-Length counts bytes,
 * UTF-8 in display names round-trips unchanged, and serialization is the inverse.
 */
import { isToken, parseHeaderParams, parseSipUri, readQuoted, type Params, type SipUri } from "./uri.ts";

/** Compact header forms (RFC 3261 §7.3.3 and later RFCs) → canonical lower-case name. */
const COMPACT: Record<string, string> = {
  i: "call-id",
  m: "contact",
  e: "content-encoding",
  l: "content-length",
  c: "content-type",
  f: "from",
  s: "subject",
  k: "supported",
  t: "to",
  v: "via",
  o: "event",
  r: "refer-to",
  b: "referred-by",
  x: "session-expires",
  u: "allow-events",
  a: "accept-contact",
  j: "reject-contact",
  d: "request-disposition",
  y: "identity",
  n: "identity-info",
};

/** Display spelling for headers we write or commonly copy. */
const CANONICAL: Record<string, string> = {
  "call-id": "Call-ID",
  cseq: "CSeq",
  "www-authenticate": "WWW-Authenticate",
  "proxy-authenticate": "Proxy-Authenticate",
  "min-se": "Min-SE",
  "rack": "RAck",
  "rseq": "RSeq",
  "mime-version": "MIME-Version",
};

/** Headers whose values may be comma-separated lists (§7.3.1); others are never split. */
const LIST_HEADERS = new Set([
  "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require",
  "unsupported", "accept", "accept-encoding", "accept-language", "allow-events", "content-encoding",
  "in-reply-to", "warning", "error-info", "alert-info", "call-info", "path", "service-route",
]);

/** Headers that must appear at most once in a request (§7.3.1, RFC 4475 §3.3.8/§3.3.9). */
const SINGLE_HEADERS = ["from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type"];

/** Canonical lower-case key for a header name (compact forms expanded). */
export function headerKey(name: string): string {
  const k = name.toLowerCase();
  return COMPACT[k] ?? k;
}

function displayName(key: string): string {
  return CANONICAL[key] ?? key.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());
}

interface HeaderEntry {
  key: string;
  name: string;
  value: string;
}

/** Case-insensitive, order-preserving, multi-valued SIP headers; compact names are expanded. */
export class SipHeaders {
  private readonly list: HeaderEntry[] = [];

  /** First value of the header, or undefined. */
  get(name: string): string | undefined {
    const key = headerKey(name);
    for (const e of this.list) if (e.key === key) return e.value;
    return undefined;
  }

  /** Every header line's value, in order (not comma-split). */
  getAll(name: string): string[] {
    const key = headerKey(name);
    const out: string[] = [];
    for (const e of this.list) if (e.key === key) out.push(e.value);
    return out;
  }

  /**
   * Values of a list header (§7.3.1), comma-split outside quotes and angle brackets, in order.
   * Headers that are not lists (WWW-Authenticate, Date…) are returned line by line, unsplit.
   */
  getList(name: string): string[] {
    const all = this.getAll(name);
    if (!LIST_HEADERS.has(headerKey(name))) return all;
    const out: string[] = [];
    for (const v of all) for (const item of splitList(v)) out.push(item);
    return out;
  }

  has(name: string): boolean {
    const key = headerKey(name);
    return this.list.some((e) => e.key === key);
  }

  count(name: string): number {
    const key = headerKey(name);
    let n = 0;
    for (const e of this.list) if (e.key === key) n++;
    return n;
  }

  /** Replace all values of `name` with one value, at the position of the first (or at the end). */
  set(name: string, value: string): this {
    const key = headerKey(name);
    const i = this.list.findIndex((e) => e.key === key);
    this.delete(name);
    const entry = { key, name: displayName(key), value };
    if (i >= 0) this.list.splice(i, 0, entry);
    else this.list.push(entry);
    return this;
  }

  append(name: string, value: string): this {
    const key = headerKey(name);
    this.list.push({ key, name: displayName(key), value });
    return this;
  }

  /** Insert before every existing header (used for the top Via). */
  prepend(name: string, value: string): this {
    const key = headerKey(name);
    this.list.unshift({ key, name: displayName(key), value });
    return this;
  }

  delete(name: string): this {
    const key = headerKey(name);
    for (let i = this.list.length - 1; i >= 0; i--) if (this.list[i]!.key === key) this.list.splice(i, 1);
    return this;
  }

  /** Replace the first comma-item of the first line of a list header (the top Via). */
  replaceFirstItem(name: string, value: string): void {
    const key = headerKey(name);
    const e = this.list.find((x) => x.key === key);
    if (!e) return;
    const items = splitList(e.value);
    items[0] = value;
    e.value = items.join(", ");
  }

  entries(): [string, string][] {
    return this.list.map((e) => [e.name, e.value]);
  }

  clone(): SipHeaders {
    const h = new SipHeaders();
    for (const e of this.list) h.list.push({ ...e });
    return h;
  }

  /** Internal: parser appends with the name as written. */
  _raw(key: string, name: string, value: string): void {
    this.list.push({ key, name: COMPACT[name.toLowerCase()] ? displayName(key) : name, value });
  }
}

export interface SipRequest {
  readonly kind: "request";
  method: string;
  uri: string;
  headers: SipHeaders;
  body: Buffer;
}

export interface SipResponse {
  readonly kind: "response";
  status: number;
  reason: string;
  headers: SipHeaders;
  body: Buffer;
}

export type SipMessage = SipRequest | SipResponse;

/** Outcome of parsing one message. Never throws. */
export type ParseResult =
  | { readonly kind: "request"; readonly message: SipRequest }
  | { readonly kind: "response"; readonly message: SipResponse }
  /** A request we can answer with `status` (400, 416, 505…): the headers needed for the response are kept. */
  | { readonly kind: "reject"; readonly message: SipRequest; readonly status: number; readonly reason: string }
  /** Not answerable (garbage, a malformed response): count and drop. */
  | { readonly kind: "invalid"; readonly reason: string };

export interface ParseOptions {
  /** Largest accepted header section, bytes. Default 65535. */
  maxHeaderBytes?: number;
  /** Largest accepted body, bytes. Default 65535. */
  maxBodyBytes?: number;
  /**
   * Stream transports frame messages by Content-Length before parsing (stream.ts); a datagram
   * may carry bytes past the body, which are discarded (§18.3).
   */
  datagram?: boolean;
}

const REQUEST_LINE = /^([^ ]+) ([^ ]+) ([^ ]+)$/;
const STATUS_LINE = /^SIP\/2\.0 (\d{3})(?: (.*))?$/;

/**
 * Parse one SIP message from a datagram or a framed stream chunk. Validates what a UAS
 * relies on (§8.2, RFC 4475): start line, Via, From, To, Call-ID, CSeq (and its method),
 * Max-Forwards, Content-Length; everything else is parsed lazily by the accessors below.
 */
export function parseMessage(buf: Buffer, opts: ParseOptions = {}): ParseResult {
  const maxHeader = opts.maxHeaderBytes ?? 65535;
  const maxBody = opts.maxBodyBytes ?? 65535;
  let start = 0;
  // RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives, stream leftovers).
  while (start + 1 < buf.length && buf[start] === 13 && buf[start + 1] === 10) start += 2;
  let headEnd = buf.indexOf("\r\n\r\n", start, "latin1");
  let sepLen = 4;
  if (headEnd < 0) {
    // A message with no body and no final empty line (tolerated for datagrams).
    const lf = buf.indexOf("\n\n", start, "latin1");
    if (lf >= 0) {
      headEnd = lf;
      sepLen = 2;
    } else {
      headEnd = buf.length;
      sepLen = 0;
    }
  }
  if (headEnd - start > maxHeader) return { kind: "invalid", reason: "header section too large" };
  const head = buf.toString("latin1", start, headEnd);
  const lines = head.split(/\r?\n/);
  const first = lines[0] ?? "";
  const headers = new SipHeaders();

  // Unfold (§7.3.1: a line starting with whitespace continues the previous one) and split names.
  let badHeader: string | undefined;
  let current: { name: string; value: string } | undefined;
  const flush = (): void => {
    if (!current) return;
    headers._raw(headerKey(current.name), current.name, current.value.trim());
    current = undefined;
  };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    if (line[0] === " " || line[0] === "\t") {
      if (current) current.value += " " + line.trim();
      else badHeader ??= "continuation line without a header";
      continue;
    }
    flush();
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).trimEnd() : "";
    if (colon <= 0 || !isToken(name)) {
      badHeader ??= `malformed header line ${JSON.stringify(line.slice(0, 40))}`;
      continue;
    }
    current = { name, value: line.slice(colon + 1) };
  }
  flush();

  const bodyStart = Math.min(buf.length, headEnd + sepLen);
  let body = buf.subarray(bodyStart);

  const sl = STATUS_LINE.exec(first);
  if (first.startsWith("SIP/")) {
    if (!sl) return { kind: "invalid", reason: "malformed status line" };
    const status = Number(sl[1]);
    if (status < 100 || status > 699) return { kind: "invalid", reason: "status code out of range" };
    if (badHeader) return { kind: "invalid", reason: badHeader };
    const cl = contentLength(headers);
    if (typeof cl === "string") return { kind: "invalid", reason: cl };
    if (cl !== undefined) {
      if (cl > body.length) return { kind: "invalid", reason: "Content-Length exceeds the message" };
      body = body.subarray(0, cl);
    }
    if (body.length > maxBody) return { kind: "invalid", reason: "body too large" };
    const res: SipResponse = { kind: "response", status, reason: sl[2] ?? "", headers, body };
    const v = validateCommon(res);
    if (v) return { kind: "invalid", reason: v };
    return { kind: "response", message: res };
  }

  const rl = REQUEST_LINE.exec(first);
  if (!rl) {
    // No usable start line: answerable only if it still looks like a request with a Via.
    if (headers.has("via") && /^[A-Za-z]+ /.test(first)) {
      const method = first.slice(0, first.indexOf(" "));
      return reject(method, "", headers, body, 400, "Malformed Request-Line");
    }
    return { kind: "invalid", reason: "not a SIP message" };
  }
  const [, method, uri, version] = rl as unknown as [string, string, string, string];
  if (!isToken(method)) return reject(method, uri, headers, body, 400, "Bad Method");
  if (badHeader) return reject(method, uri, headers, body, 400, "Malformed Header");
  const cl = contentLength(headers);
  if (typeof cl === "string") return reject(method, uri, headers, body, 400, cl);
  if (cl !== undefined) {
    // §18.3: a datagram shorter than Content-Length is an error (400 for requests);
    // bytes beyond it are discarded.
    if (cl > body.length) return reject(method, uri, headers, Buffer.alloc(0), 400, "Content-Length Exceeds Message");
    body = body.subarray(0, cl);
  }
  if (body.length > maxBody) return reject(method, uri, headers, Buffer.alloc(0), 413, "Request Entity Too Large");
  if (version !== "SIP/2.0") {
    // RFC 4475 §3.1.2.16: answer 505 even though the Via carries the same unknown version.
    if (/^SIP\/\d+\.\d+$/i.test(version)) return reject(method, uri, headers, body, 505, "Version Not Supported");
    return reject(method, uri, headers, body, 400, "Malformed Request-Line");
  }
  const req: SipRequest = { kind: "request", method, uri, headers, body };
  const common = validateCommon(req);
  if (common) return reject(method, uri, headers, body, 400, common);
  for (const h of SINGLE_HEADERS) if (headers.count(h) > 1) return reject(method, uri, headers, body, 400, `Multiple ${displayName(h)}`);
  const cseq = parseCSeq(headers.get("cseq")!)!;
  // §8.2 / RFC 4475 §3.1.2.17: the CSeq method must match the Request-Line method.
  if (cseq.method !== method) return reject(method, uri, headers, body, 400, "CSeq Method Mismatch");
  const mf = headers.get("max-forwards");
  // Leading zeros are legal (RFC 4475 §3.1.1.1: "0068"); the value is 0–255 (§20.22).
  if (mf !== undefined && !/^\d{1,10}$/.test(mf.trim())) return reject(method, uri, headers, body, 400, "Bad Max-Forwards");
  if (mf !== undefined && Number(mf) > 255) return reject(method, uri, headers, body, 400, "Bad Max-Forwards");
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri);
  if (!scheme) return reject(method, uri, headers, body, 400, "Malformed Request-URI");
  const sch = scheme[1]!.toLowerCase();
  if (sch !== "sip" && sch !== "sips") return reject(method, uri, headers, body, 416, "Unsupported URI Scheme");
  const ruri = parseSipUri(uri);
  if (!ruri) return reject(method, uri, headers, body, 400, "Malformed Request-URI");
  // §19.1.5 / RFC 4475 §3.1.2.11: header components are not allowed in a Request-URI.
  if (ruri.headers !== undefined) return reject(method, uri, headers, body, 400, "Headers In Request-URI");
  return { kind: "request", message: req };
}

function reject(method: string, uri: string, headers: SipHeaders, body: Buffer, status: number, reason: string): ParseResult {
  return { kind: "reject", message: { kind: "request", method, uri, headers, body }, status, reason };
}

function contentLength(h: SipHeaders): number | undefined | string {
  const all = h.getAll("content-length");
  if (all.length === 0) return undefined;
  if (all.length > 1) return "Multiple Content-Length";
  const v = all[0]!.trim();
  if (!/^\d{1,10}$/.test(v)) return "Bad Content-Length";
  return Number(v);
}

/** Checks shared by requests and responses: the headers every transaction needs. */
function validateCommon(m: SipMessage): string | undefined {
  const h = m.headers;
  const vias = h.getList("via");
  if (vias.length === 0) return "Missing Via";
  for (const v of vias) if (!parseVia(v)) return "Malformed Via";
  const callId = h.get("call-id");
  if (!callId || /\s/.test(callId)) return "Missing or Malformed Call-ID";
  const cseq = h.get("cseq");
  if (!cseq || !parseCSeq(cseq)) return "Missing or Malformed CSeq";
  const from = h.get("from");
  const to = h.get("to");
  if (!from || !parseNameAddr(from)) return "Missing or Malformed From";
  if (!to || !parseNameAddr(to)) return "Missing or Malformed To";
  return undefined;
}

/** Split a list header value at commas outside quoted strings and `<…>`. */
export function splitList(v: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let inQuote = false;
  let start = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (inQuote) {
      if (c === "\\") i++;
      else if (c === '"') inQuote = false;
    } else if (c === '"') inQuote = true;
    else if (c === "<") depth++;
    else if (c === ">") depth = Math.max(0, depth - 1);
    else if (c === "," && depth === 0) {
      const item = v.slice(start, i).trim();
      if (item) out.push(item);
      start = i + 1;
    }
  }
  const last = v.slice(start).trim();
  if (last) out.push(last);
  return out;
}

// ---------------------------------------------------------------- header values

export interface Via {
  /** Transport token, upper-cased (UDP, TCP, TLS, WS…). */
  readonly transport: string;
  /** sent-by host as written (lower-cased; IPv6 with brackets). */
  readonly host: string;
  readonly port: number | undefined;
  readonly branch: string | undefined;
  /** `received` parameter (§18.2.1). */
  readonly received: string | undefined;
  /** RFC 3581: `true` when `rport` is present without a value, the number once filled. */
  readonly rport: number | true | undefined;
  readonly params: Params;
}

const VIA_RE = /^SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*(\d{1,5}))?\s*(;.*)?$/i;

/** Parse one via-parm (§20.42), tolerating LWS around `/`, `:` and `;` (RFC 4475 §3.1.1.1). */
export function parseVia(v: string): Via | undefined {
  const m = VIA_RE.exec(v.trim());
  if (!m) return undefined;
  const port = m[3] !== undefined ? Number(m[3]) : undefined;
  if (port !== undefined && (port === 0 || port > 65535)) return undefined;
  const params = m[4] ? parseHeaderParams(m[4]) : new Map<string, string | null>();
  if (!params) return undefined;
  const rp = params.get("rport");
  let rport: number | true | undefined;
  if (rp === null) rport = true;
  else if (rp !== undefined) {
    if (!/^\d{1,5}$/.test(rp)) return undefined;
    rport = Number(rp);
  }
  return {
    transport: m[1]!.toUpperCase(),
    host: m[2]!.toLowerCase(),
    port,
    branch: params.get("branch") ?? undefined,
    received: params.get("received") ?? undefined,
    rport,
    params,
  };
}

/** Format a Via value. */
export function formatVia(v: { transport: string; host: string; port?: number | undefined; params: Params }): string {
  let s = `SIP/2.0/${v.transport} ${v.host}${v.port !== undefined ? `:${v.port}` : ""}`;
  for (const [k, val] of v.params) s += val === null ? `;${k}` : `;${k}=${val}`;
  return s;
}

export interface NameAddr {
  /** Unquoted display name, or undefined. */
  readonly display: string | undefined;
  /** The URI text (without `<>`). Use parseSipUri for SIP URIs. */
  readonly uri: string;
  /** Header parameters (`tag`, `expires`, `q`…). */
  readonly params: Params;
  /** True for `Contact: *`. */
  readonly star: boolean;
}

/**
 * Parse a name-addr or addr-spec with header parameters (§20.10 Contact, §20.20 From, §20.39 To,
 * Route): `"Display" <uri>;p=v`, `Display Tokens <uri>;p`, or `uri;p` (where `;…` belongs to the
 * header, not the URI, §20.10). Undefined on syntax errors (unbalanced quote, unquoted display
 * name with non-token characters, LWS inside `<>`, `?` or `,` in a bare addr-spec).
 */
export function parseNameAddr(v: string): NameAddr | undefined {
  const s = v.trim();
  if (s === "*") return { display: undefined, uri: "*", params: new Map(), star: true };
  let display: string | undefined;
  let i = 0;
  if (s[0] === '"') {
    const q = readQuoted(s, 0);
    if (!q) return undefined;
    display = q.value;
    i = q.end;
    while (s[i] === " " || s[i] === "\t") i++;
    if (s[i] !== "<") return undefined;
  }
  const lt = s.indexOf("<", i);
  let uri: string;
  let rest: string;
  if (lt >= 0) {
    if (display === undefined) {
      const d = s.slice(0, lt).trim();
      if (d) {
        // display-name = *(token LWS) (§25.1)
        if (!d.split(/[ \t]+/).every(isToken)) return undefined;
        display = d;
      }
    }
    const gt = s.indexOf(">", lt);
    if (gt < 0) return undefined;
    uri = s.slice(lt + 1, gt);
    if (uri.length === 0 || /[\s<]/.test(uri)) return undefined;
    rest = s.slice(gt + 1);
  } else {
    if (display !== undefined) return undefined;
    const semi = s.indexOf(";");
    uri = (semi >= 0 ? s.slice(0, semi) : s).trim();
    rest = semi >= 0 ? s.slice(semi) : "";
    // §20.10: a URI with ',', ';' or '?' must be in name-addr form.
    if (uri.length === 0 || /[\s,?<>"]/.test(uri)) return undefined;
  }
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(uri)) return undefined;
  const params = parseHeaderParams(rest);
  if (!params) return undefined;
  return { display, uri, params, star: false };
}

/** Format a name-addr. */
export function formatNameAddr(n: { display?: string | undefined; uri: string; params?: Params }): string {
  let s = n.display !== undefined ? `"${n.display.replace(/["\\]/g, (c) => "\\" + c)}" ` : "";
  s += `<${n.uri}>`;
  if (n.params) for (const [k, v] of n.params) s += v === null ? `;${k}` : `;${k}=${v}`;
  return s;
}

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

/** Parse CSeq (§20.16): a 32-bit sequence number below 2^31 and a method token. */
export function parseCSeq(v: string): CSeq | undefined {
  const m = /^\s*(\d{1,10})\s+(\S+)\s*$/.exec(v);
  if (!m) return undefined;
  const seq = Number(m[1]);
  if (seq >= 2 ** 31 || !isToken(m[2]!)) return undefined;
  return { seq, method: m[2]! };
}

// ---------------------------------------------------------------- convenience accessors

/** Top Via of a message (validated at parse time, so present for parsed messages). */
export function topVia(m: SipMessage): Via | undefined {
  const first = m.headers.getList("via")[0];
  return first !== undefined ? parseVia(first) : undefined;
}

export function cseqOf(m: SipMessage): CSeq {
  return parseCSeq(m.headers.get("cseq") ?? "") ?? { seq: 0, method: "" };
}

export function callIdOf(m: SipMessage): string {
  return (m.headers.get("call-id") ?? "").trim();
}

export function fromOf(m: SipMessage): NameAddr | undefined {
  const v = m.headers.get("from");
  return v !== undefined ? parseNameAddr(v) : undefined;
}

export function toOf(m: SipMessage): NameAddr | undefined {
  const v = m.headers.get("to");
  return v !== undefined ? parseNameAddr(v) : undefined;
}

export function tagOf(n: NameAddr | undefined): string | undefined {
  const t = n?.params.get("tag");
  return t === null ? undefined : t;
}

/** Contacts of a message; undefined if any is malformed. */
export function contactsOf(m: SipMessage): NameAddr[] | undefined {
  const out: NameAddr[] = [];
  for (const c of m.headers.getList("contact")) {
    const n = parseNameAddr(c);
    if (!n) return undefined;
    out.push(n);
  }
  return out;
}

/** The SIP URI of a name-addr, if it is one. */
export function sipUriOf(n: NameAddr | undefined): SipUri | undefined {
  return n && !n.star ? parseSipUri(n.uri) : undefined;
}

/** Lower-cased option tags of Require / Supported / Unsupported. */
export function optionTags(m: SipMessage, name: "require" | "supported" | "proxy-require" | "unsupported"): string[] {
  return m.headers.getList(name).map((t) => t.trim().toLowerCase());
}

/** The Content-Type media type without parameters, lower-cased, or undefined. */
export function contentType(m: SipMessage): { type: string; params: Params } | undefined {
  const v = m.headers.get("content-type");
  if (!v) return undefined;
  const semi = v.indexOf(";");
  const type = (semi >= 0 ? v.slice(0, semi) : v).trim().toLowerCase();
  const params = semi >= 0 ? parseHeaderParams(v.slice(semi)) ?? new Map() : new Map<string, string | null>();
  return { type, params };
}

// ---------------------------------------------------------------- serialization

/** Serialize; Content-Length is always written from the body's byte length (§18.3, §20.14). */
export function serializeMessage(m: SipMessage): Buffer {
  let head = m.kind === "request" ? `${m.method} ${m.uri} SIP/2.0\r\n` : `SIP/2.0 ${m.status} ${m.reason}\r\n`;
  for (const [name, value] of m.headers.entries()) {
    if (name.toLowerCase() === "content-length" || name === "l") continue;
    head += `${name}: ${value}\r\n`;
  }
  head += `Content-Length: ${m.body.length}\r\n\r\n`;
  if (m.body.length === 0) return Buffer.from(head, "latin1");
  const h = Buffer.from(head, "latin1");
  return Buffer.concat([h, m.body], h.length + m.body.length);
}

/** Standard reason phrases for the codes we send. */
export const REASONS: Record<number, string> = {
  100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
  200: "OK", 202: "Accepted",
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
  406: "Not Acceptable", 408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
  416: "Unsupported URI Scheme", 420: "Bad Extension", 422: "Session Interval Too Small", 423: "Interval Too Brief",
  480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
  486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
  500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
  505: "Version Not Supported", 513: "Message Too Large", 603: "Decline",
};

export interface ResponseOptions {
  reason?: string;
  /** To-tag to add when the request's To has none (§8.2.6.2; not for 100). */
  toTag?: string;
  headers?: [string, string][];
  body?: Buffer;
  contentType?: string;
}

/**
 * Build a response to `req` (§8.2.6): copies Via (all, in order), From, To, Call-ID and CSeq.
 * Missing headers are left out (a 400 to a request without them still reaches the sender,
 * which the transport addresses by the packet's source).
 */
export function makeResponse(req: SipRequest, status: number, opts: ResponseOptions = {}): SipResponse {
  const h = new SipHeaders();
  for (const v of req.headers.getAll("via")) h.append("Via", v);
  const from = req.headers.get("from");
  if (from !== undefined) h.append("From", from);
  const to = req.headers.get("to");
  if (to !== undefined) {
    const parsed = parseNameAddr(to);
    const needsTag = opts.toTag !== undefined && status > 100 && parsed && !parsed.params.has("tag");
    h.append("To", needsTag ? `${to};tag=${opts.toTag}` : to);
  }
  const callId = req.headers.get("call-id");
  if (callId !== undefined) h.append("Call-ID", callId);
  const cseq = req.headers.get("cseq");
  if (cseq !== undefined) h.append("CSeq", cseq);
  for (const [k, v] of opts.headers ?? []) h.append(k, v);
  const body = opts.body ?? Buffer.alloc(0);
  if (body.length > 0 && opts.contentType) h.append("Content-Type", opts.contentType);
  return { kind: "response", status, reason: opts.reason ?? REASONS[status] ?? "Unknown", headers: h, body };
}

/** RFC 3261 §8.1.1.7: branch ids start with the magic cookie. */
export const MAGIC_COOKIE = "z9hG4bK";
