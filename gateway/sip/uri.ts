/**
 * SIP and SIPS URIs (RFC 3261 §19.1) and the generic parameter lists that follow
 * header values (`;name=value`). Pure string functions; no allocation beyond results.
 *
 * Strings are latin1-decoded bytes (see message.ts), so percent-decoding yields
 * byte strings too; comparisons of users use the decoded form (§19.1.4).
 */

/** Header or URI parameters: lower-cased name → value (null for a flag such as `;lr`). */
export type Params = Map<string, string | null>;

export interface SipUri {
  readonly scheme: "sip" | "sips";
  /** Percent-decoded user part, or undefined when the URI has none. */
  readonly user: string | undefined;
  /** The user part as written (escaped). */
  readonly userRaw: string | undefined;
  readonly password: string | undefined;
  /** Host, lower-cased; IPv6 references keep their brackets (`[2001:db8::1]`). */
  readonly host: string;
  /** Port, or undefined when the URI has none (default 5060, 5061 for sips). */
  readonly port: number | undefined;
  /** URI parameters (`;transport=tcp`, `;lr`). */
  readonly params: Params;
  /** The `?headers` part as written, without the `?`; undefined when absent. */
  readonly headers: string | undefined;
}

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const IPV6_REF = /^\[[0-9A-Fa-f:.]+\]$/;
// user = 1*( unreserved / escaped / user-unreserved ) (§25.1); '%' checked separately.
const USER_CHARS = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$/;
const PASSWORD_CHARS = /^[A-Za-z0-9\-_.!~*'()&=+$,%]*$/;
const PARAM_CHARS = /^[A-Za-z0-9\-_.!~*'()[\]/:&+$%]+$/;

/** True for a token (RFC 3261 §25.1): methods, transport names, parameter names. */
export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

/** Percent-decode; undefined when an escape is malformed (`%Z1`). */
export function unescape(s: string): string | undefined {
  if (!s.includes("%")) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== "%") {
      out += c;
      continue;
    }
    const hex = s.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
    out += String.fromCharCode(parseInt(hex, 16));
    i += 2;
  }
  return out;
}

/** Validate a host (name, IPv4 or bracketed IPv6). */
export function isValidHost(host: string): boolean {
  if (IPV6_REF.test(host)) return true;
  const v4 = IPV4.exec(host);
  if (v4) return v4.slice(1).every((o) => Number(o) <= 255);
  return HOST_NAME.test(host);
}

/** Parse a `sip:` or `sips:` URI; undefined for any other scheme or a malformed URI. */
export function parseSipUri(text: string): SipUri | undefined {
  const colon = text.indexOf(":");
  if (colon <= 0) return undefined;
  const scheme = text.slice(0, colon).toLowerCase();
  if (scheme !== "sip" && scheme !== "sips") return undefined;
  let rest = text.slice(colon + 1);
  if (rest.length === 0 || /[\s<>"]/.test(rest)) return undefined;

  let headers: string | undefined;
  let user: string | undefined;
  let userRaw: string | undefined;
  let password: string | undefined;
  // '@' never appears unescaped after the userinfo (params, headers and passwords exclude it).
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const pc = userinfo.indexOf(":");
    userRaw = pc >= 0 ? userinfo.slice(0, pc) : userinfo;
    if (pc >= 0) {
      password = userinfo.slice(pc + 1);
      if (!PASSWORD_CHARS.test(password)) return undefined;
    }
    if (userRaw.length === 0 || !USER_CHARS.test(userRaw)) return undefined;
    user = unescape(userRaw);
    if (user === undefined) return undefined;
  }
  const q = rest.indexOf("?");
  if (q >= 0) {
    headers = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const semi = rest.indexOf(";");
  const hostport = semi >= 0 ? rest.slice(0, semi) : rest;
  const params = semi >= 0 ? parseUriParams(rest.slice(semi + 1)) : new Map<string, string | null>();
  if (!params) return undefined;

  let host: string;
  let port: number | undefined;
  if (hostport.startsWith("[")) {
    const close = hostport.indexOf("]");
    if (close < 0) return undefined;
    host = hostport.slice(0, close + 1);
    const after = hostport.slice(close + 1);
    if (after) {
      if (!after.startsWith(":")) return undefined;
      port = parsePort(after.slice(1));
      if (port === undefined) return undefined;
    }
  } else {
    const pc = hostport.indexOf(":");
    host = pc >= 0 ? hostport.slice(0, pc) : hostport;
    if (pc >= 0) {
      port = parsePort(hostport.slice(pc + 1));
      if (port === undefined) return undefined;
    }
  }
  if (!isValidHost(host)) return undefined;
  return { scheme, user, userRaw, password, host: host.toLowerCase(), port, params, headers };
}

function parsePort(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parseUriParams(s: string): Params | undefined {
  const out: Params = new Map();
  for (const part of s.split(";")) {
    if (part.length === 0) return undefined; // ";;" is an empty parameter (RFC 4475 §3.1.2.1)
    const eq = part.indexOf("=");
    const name = eq >= 0 ? part.slice(0, eq) : part;
    const value = eq >= 0 ? part.slice(eq + 1) : null;
    if (!PARAM_CHARS.test(name) || (value !== null && value !== "" && !PARAM_CHARS.test(value))) return undefined;
    const dn = unescape(name);
    const dv = value === null ? null : unescape(value);
    if (dn === undefined || dv === undefined) return undefined;
    out.set(dn.toLowerCase(), dv);
  }
  return out;
}

/** Serialize a URI. `withHeaders: false` drops `?headers` (not allowed in a Request-URI, §19.1.5). */
export function formatSipUri(u: SipUri, opts: { withHeaders?: boolean; withParams?: boolean } = {}): string {
  let s = `${u.scheme}:`;
  if (u.userRaw !== undefined) s += u.userRaw + (u.password !== undefined ? `:${u.password}` : "") + "@";
  s += u.host;
  if (u.port !== undefined) s += `:${u.port}`;
  if (opts.withParams !== false) for (const [k, v] of u.params) s += v === null ? `;${k}` : `;${k}=${v}`;
  if (opts.withHeaders !== false && u.headers !== undefined) s += `?${u.headers}`;
  return s;
}

/** Escape a user name for the user part of a URI (RFC 3261 §25.1 `user`). */
export function escapeUser(user: string): string {
  return user.replace(/[^A-Za-z0-9\-_.!~*'()&=+$,;?/]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0"));
}

/** Host without IPv6 brackets, for sockets. */
export function socketHost(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Host as written in a URI or Via (IPv6 gets brackets). */
export function uriHost(address: string): string {
  return address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
}

/**
 * Parse `;name=value` parameters that follow a header value, allowing LWS around
 * `;` and `=` and quoted-string values (RFC 3261 §7.3.1, generic-param).
 * Returns undefined on a syntax error (unterminated quote, bad name).
 */
export function parseHeaderParams(s: string): Params | undefined {
  const out: Params = new Map();
  let i = 0;
  const n = s.length;
  const skipWs = (): void => {
    while (i < n && (s[i] === " " || s[i] === "\t")) i++;
  };
  skipWs();
  while (i < n) {
    if (s[i] !== ";") return undefined;
    i++;
    skipWs();
    const nameStart = i;
    while (i < n && s[i] !== "=" && s[i] !== ";" && s[i] !== " " && s[i] !== "\t") i++;
    const name = s.slice(nameStart, i);
    // An empty parameter (";;") is malformed (RFC 4475 §3.1.2.1).
    if (name.length === 0 || !isToken(name)) return undefined;
    skipWs();
    let value: string | null = null;
    if (i < n && s[i] === "=") {
      i++;
      skipWs();
      if (s[i] === '"') {
        const q = readQuoted(s, i);
        if (!q) return undefined;
        value = q.value;
        i = q.end;
      } else {
        const vs = i;
        while (i < n && s[i] !== ";" && s[i] !== " " && s[i] !== "\t") i++;
        value = s.slice(vs, i);
        if (value.length === 0 || !/^[A-Za-z0-9\-.!%*_+`'~:[\]]+$/.test(value)) return undefined;
      }
      skipWs();
    }
    out.set(name.toLowerCase(), value);
  }
  return out;
}

/** Read a quoted-string starting at `start` (which holds `"`); returns the unescaped value and the index after it. */
export function readQuoted(s: string, start: number): { value: string; end: number } | undefined {
  let out = "";
  for (let i = start + 1; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\") {
      // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F) (§25.1)
      if (i + 1 >= s.length) return undefined;
      out += s[i + 1];
      i++;
    } else if (c === '"') {
      return { value: out, end: i + 1 };
    } else {
      out += c;
    }
  }
  return undefined;
}

/** Quote a string for a header (display names, digest parameters). */
export function quote(s: string): string {
  return `"${s.replace(/["\\]/g, (c) => "\\" + c)}"`;
}

/** Format parameters back to `;a=b;c`. */
export function formatParams(p: Params): string {
  let s = "";
  for (const [k, v] of p) s += v === null ? `;${k}` : `;${k}=${needsQuote(v) ? quote(v) : v}`;
  return s;
}

function needsQuote(v: string): boolean {
  return v.length === 0 || !/^[A-Za-z0-9\-.!%*_+`'~:[\]]+$/.test(v);
}
