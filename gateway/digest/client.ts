/**
 * Client-side HTTP authentication as RTSP and SIP use it (RFC 2326 §D.2, RFC 3261 §22 →
 * RFC 2617/7616 Digest, RFC 7617 Basic); `digestResponse` is also the server's arithmetic
 * (./server.ts). Pure: challenges in, `Authorization` values out; the cnonce source is
 * injected so tests reproduce the RFC examples byte for byte.
 */
import { createHash, randomBytes } from "node:crypto";

export interface Credentials {
  username: string;
  password: string;
}

/** Digest algorithms we can answer (RFC 7616 §3.2), weakest first. */
const ALGORITHMS = ["MD5", "SHA-256", "SHA-512-256"] as const;
export type DigestAlgorithm = (typeof ALGORITHMS)[number];
const HASH: Record<DigestAlgorithm, string> = { MD5: "md5", "SHA-256": "sha256", "SHA-512-256": "sha512-256" };

export interface Challenge {
  /** Lower-case scheme, e.g. "digest", "basic". */
  scheme: string;
  /** Parameters with lower-case names, values unquoted. */
  params: Map<string, string>;
}

/**
 * Parses every challenge of one or more `WWW-Authenticate` values (RFC 7235 §4.1:
 * a value may hold several comma-separated challenges). Never throws; garbage yields fewer challenges.
 */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const v of values) {
    let cur: Challenge | undefined;
    const lx = new Lexer(v);
    while (!lx.done()) {
      lx.skipOver(" \t,");
      const name = lx.token();
      if (!name) {
        lx.advance(); // not a token character: step over it
        continue;
      }
      lx.skipOver(" \t");
      if (lx.peek() === "=" && cur) {
        lx.advance();
        lx.skipOver(" \t");
        const value = lx.peek() === '"' ? lx.quoted() : lx.token68();
        if (!cur.params.has(name.toLowerCase())) cur.params.set(name.toLowerCase(), value);
      } else if (lx.peek() === "=") {
        lx.token68(); // a parameter before any scheme: ignore
      } else {
        cur = { scheme: name.toLowerCase(), params: new Map() };
        out.push(cur);
        // token68 form (e.g. "Negotiate abc=="): consume it so it is not taken for a parameter.
        lx.skipOver(" \t");
        const save = lx.pos;
        const t = lx.token68();
        lx.skipOver(" \t");
        if (!t || !(lx.done() || lx.peek() === ",")) lx.pos = save;
      }
    }
  }
  return out;
}

class Lexer {
  pos = 0;
  private readonly s: string;
  constructor(s: string) {
    this.s = s;
  }
  done(): boolean {
    return this.pos >= this.s.length;
  }
  peek(): string {
    return this.s[this.pos] ?? "";
  }
  advance(): void {
    this.pos++;
  }
  skipOver(chars: string): void {
    while (!this.done() && chars.includes(this.s[this.pos]!)) this.pos++;
  }
  token(): string {
    const m = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(this.s.slice(this.pos));
    if (!m) return "";
    this.pos += m[0].length;
    return m[0];
  }
  /** A token or token68 (RFC 7235 §2.1): letters, digits and -._~+/ then '=' padding. */
  token68(): string {
    const m = /^[!#$%&'*+\-.^_`|~0-9A-Za-z/]+=*/.exec(this.s.slice(this.pos));
    if (!m) return "";
    this.pos += m[0].length;
    return m[0];
  }
  /** A quoted-string with backslash escapes (RFC 7230 §3.2.6); an unterminated one runs to the end. */
  quoted(): string {
    let out = "";
    this.pos++; // opening quote
    while (!this.done()) {
      const c = this.s[this.pos++]!;
      if (c === '"') return out;
      if (c === "\\" && !this.done()) out += this.s[this.pos++]!;
      else out += c;
    }
    return out;
  }
}

interface DigestChallengeInfo {
  algorithm: DigestAlgorithm;
  sess: boolean;
  realm: string;
  nonce: string;
  opaque: string | undefined;
  qop: "auth" | "auth-int" | undefined;
  stale: boolean;
  userhash: boolean;
  /** The challenge named its algorithm (else MD5 by default, RFC 2617 §3.2.1). */
  named: boolean;
}

/** The usable digest parameters of a challenge, or undefined when we cannot answer it. */
function digestInfo(c: Challenge): DigestChallengeInfo | undefined {
  if (c.scheme !== "digest") return undefined;
  const realm = c.params.get("realm");
  const nonce = c.params.get("nonce");
  if (realm === undefined || !nonce) return undefined;
  const alg = (c.params.get("algorithm") ?? "MD5").toUpperCase();
  const sess = alg.endsWith("-SESS");
  const base = (sess ? alg.slice(0, -5) : alg) as DigestAlgorithm;
  if (!ALGORITHMS.includes(base)) return undefined;
  let qop: DigestChallengeInfo["qop"];
  const qops = c.params.has("qop") ? c.params.get("qop")!.split(",").map((q) => q.trim().toLowerCase()) : undefined;
  if (qops) {
    // RFC 7616 §3.3: prefer auth; auth-int only when it is all the server offers.
    if (qops.includes("auth")) qop = "auth";
    else if (qops.includes("auth-int")) qop = "auth-int";
    else return undefined;
  }
  // -sess needs a cnonce, which RFC 2617 §3.2.2 only lets us send along with qop.
  if (sess && !qop) return undefined;
  return {
    algorithm: base,
    sess,
    realm,
    nonce,
    opaque: c.params.get("opaque"),
    qop,
    stale: c.params.get("stale")?.toLowerCase() === "true",
    userhash: c.params.get("userhash")?.toLowerCase() === "true",
    named: c.params.has("algorithm"),
  };
}

/** True when the challenge says only the nonce expired (RFC 7616 §3.3 stale=true): retry, credentials were fine. */
export function isStale(c: Challenge): boolean {
  return c.scheme === "digest" && c.params.get("stale")?.toLowerCase() === "true";
}

/** Rank of a challenge we can answer: stronger digest algorithms first, Basic last; -1 = unusable. */
function strength(c: Challenge): number {
  if (c.scheme === "basic") return 0;
  const d = digestInfo(c);
  return d ? 1 + ALGORITHMS.indexOf(d.algorithm) : -1;
}

/** Picks the strongest challenge we can answer (RFC 7616 §3.7: client chooses the best-supported algorithm). */
export function pickChallenge(challenges: readonly Challenge[]): Challenge | undefined {
  let best: Challenge | undefined;
  let bestRank = -1;
  for (const c of challenges) {
    const r = strength(c);
    if (r > bestRank) {
      best = c;
      bestRank = r;
    }
  }
  return best;
}

/** Produces `Authorization` header values for requests; keeps the nonce count for digest. */
export interface Authorizer {
  /** "basic" or e.g. "digest SHA-256". For logs; never contains secrets. */
  readonly description: string;
  /** The `Authorization` value for one request (method and request-URI as sent; body for qop=auth-int). */
  authorize(method: string, uri: string, body?: Buffer): string;
}

export interface AuthorizerOptions {
  /** Returns a fresh client nonce. Default: 16 random bytes, hex. */
  cnonce?: () => string;
}

/** An authorizer answering `challenge` with `creds`; undefined when the challenge is not usable. */
export function createAuthorizer(
  challenge: Challenge,
  creds: Credentials,
  opts: AuthorizerOptions = {},
): Authorizer | undefined {
  if (challenge.scheme === "basic") {
    const token = Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64");
    return { description: "basic", authorize: () => `Basic ${token}` };
  }
  const d = digestInfo(challenge);
  if (!d) return undefined;
  return new DigestAuthorizer(d, creds, opts.cnonce ?? (() => randomBytes(16).toString("hex")));
}

class DigestAuthorizer implements Authorizer {
  readonly description: string;
  private readonly d: DigestChallengeInfo;
  private readonly creds: Credentials;
  private readonly cnonceFn: () => string;
  private nc = 0;
  /** -sess: the session key is fixed by the first cnonce (RFC 7616 §3.4.2). */
  private sessCnonce: string | undefined;

  constructor(d: DigestChallengeInfo, creds: Credentials, cnonce: () => string) {
    this.d = d;
    this.creds = creds;
    this.cnonceFn = cnonce;
    this.description = `digest ${d.algorithm}${d.sess ? "-sess" : ""}${d.qop ? " qop=" + d.qop : ""}`;
  }

  authorize(method: string, uri: string, body: Buffer = Buffer.alloc(0)): string {
    const { d } = this;
    const cnonce = d.qop ? (d.sess ? (this.sessCnonce ??= this.cnonceFn()) : this.cnonceFn()) : undefined;
    const nc = (++this.nc).toString(16).padStart(8, "0");
    const response = digestResponse({
      algorithm: d.algorithm,
      sess: d.sess,
      username: this.creds.username,
      password: this.creds.password,
      realm: d.realm,
      nonce: d.nonce,
      method,
      uri,
      qop: d.qop,
      nc,
      cnonce,
      body,
    });
    const h = (s: string): string => createHash(HASH[d.algorithm]).update(s, "utf8").digest("hex");
    const user = d.userhash ? h(`${this.creds.username}:${d.realm}`) : this.creds.username;
    const parts = [
      `username=${quote(user)}`,
      `realm=${quote(d.realm)}`,
      `nonce=${quote(d.nonce)}`,
      `uri=${quote(uri)}`,
      `response=${quote(response)}`,
    ];
    // Echo algorithm only when the server named one (RFC 2617 servers may not expect it).
    if (d.named) parts.push(`algorithm=${d.algorithm}${d.sess ? "-sess" : ""}`);
    if (d.opaque !== undefined) parts.push(`opaque=${quote(d.opaque)}`);
    if (d.qop) parts.push(`qop=${d.qop}`, `nc=${nc}`, `cnonce=${quote(cnonce!)}`);
    if (d.userhash) parts.push("userhash=true");
    return `Digest ${parts.join(", ")}`;
  }
}

function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, "\\$&")}"`;
}

export interface DigestInput {
  algorithm: DigestAlgorithm;
  sess?: boolean | undefined;
  username: string;
  password: string;
  realm: string;
  nonce: string;
  method: string;
  uri: string;
  /** undefined = RFC 2069 compatibility (no qop). */
  qop: "auth" | "auth-int" | undefined;
  /** 8 hex digits; with qop. */
  nc?: string | undefined;
  /** With qop or -sess. */
  cnonce?: string | undefined;
  /** Entity body, for qop=auth-int. */
  body?: Buffer;
}

/** The `response` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1). Also usable to verify a client's answer. */
export function digestResponse(i: DigestInput): string {
  const H = (s: string | Buffer): string => createHash(HASH[i.algorithm]).update(s).digest("hex");
  let ha1 = H(`${i.username}:${i.realm}:${i.password}`);
  if (i.sess) ha1 = H(`${ha1}:${i.nonce}:${i.cnonce ?? ""}`); // RFC 7616 §3.4.2
  const a2 = i.qop === "auth-int" ? `${i.method}:${i.uri}:${H(i.body ?? Buffer.alloc(0))}` : `${i.method}:${i.uri}`;
  const ha2 = H(a2);
  if (i.qop === undefined) return H(`${ha1}:${i.nonce}:${ha2}`); // RFC 2069 / RFC 2617 §3.2.2.1 without qop
  return H(`${ha1}:${i.nonce}:${i.nc ?? "00000001"}:${i.cnonce ?? ""}:${i.qop}:${ha2}`);
}
