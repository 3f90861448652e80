/**
 * Typed views of the RTSP-specific header fields the client reads and writes:
 * Transport (RFC 2326 §12.39), Session (§12.37), Public (§12.28), RTP-Info (§12.33).
 * Pure; parsers return undefined (never throw) on values they cannot make sense of.
 */

export type PortPair = readonly [number, number];

export interface TransportSpec {
  /** "RTP" */
  protocol: string;
  /** "AVP" (or "AVPF", "SAVP"…) */
  profile: string;
  /** Lower transport; UDP when not written (RFC 2326 §12.39). */
  lower: "TCP" | "UDP";
  unicast: boolean;
  /** Interleaved channels (TCP). */
  interleaved?: PortPair;
  /** Client RTP/RTCP ports (UDP). */
  clientPort?: PortPair;
  /** Server RTP/RTCP ports (UDP). */
  serverPort?: PortPair;
  /** Synchronization source the server will use. */
  ssrc?: number;
  /** Address the server sends from, when not the RTSP server's address. */
  source?: string;
  destination?: string;
  mode?: string;
}

/** Parses a Transport value; the first transport-spec of the list is returned. */
export function parseTransport(value: string): TransportSpec | undefined {
  const first = splitOutsideQuotes(value, ",")[0];
  if (!first) return undefined;
  const parts = splitOutsideQuotes(first, ";").map((p) => p.trim());
  const head = /^([A-Za-z0-9]+)\/([A-Za-z0-9]+)(?:\/(TCP|UDP))?$/i.exec(parts[0] ?? "");
  if (!head) return undefined;
  const spec: TransportSpec = {
    protocol: head[1]!.toUpperCase(),
    profile: head[2]!.toUpperCase(),
    lower: head[3]?.toUpperCase() === "TCP" ? "TCP" : "UDP",
    unicast: true,
  };
  for (const p of parts.slice(1)) {
    const eq = p.indexOf("=");
    const name = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
    const val = eq < 0 ? "" : unquote(p.slice(eq + 1).trim());
    switch (name) {
      case "unicast":
        spec.unicast = true;
        break;
      case "multicast":
        spec.unicast = false;
        break;
      case "interleaved": {
        const r = range(val, 0, 255);
        if (r) spec.interleaved = r;
        break;
      }
      case "client_port": {
        const r = range(val, 1, 65535);
        if (r) spec.clientPort = r;
        break;
      }
      case "server_port": {
        const r = range(val, 1, 65535);
        if (r) spec.serverPort = r;
        break;
      }
      case "ssrc":
        // RFC 2326: 8*8(HEX); some servers write fewer digits or a decimal-looking value.
        if (/^[0-9a-f]{1,8}$/i.test(val)) spec.ssrc = parseInt(val, 16) >>> 0;
        break;
      case "source":
        if (val) spec.source = val;
        break;
      case "destination":
        if (val) spec.destination = val;
        break;
      case "mode":
        if (val) spec.mode = val.toUpperCase();
        break;
    }
  }
  return spec;
}

/** `a-b`, or `a` meaning `a-(a+1)` (RFC 2326 §12.39 port/channel ranges). */
function range(v: string, min: number, max: number): PortPair | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(v.trim());
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a + 1 : Number(m[2]);
  if (a < min || a > max || b < min || b > max) return undefined;
  return [a, b];
}

/** Formats the Transport value of a SETUP request. */
export function formatTransport(t: { lower: "TCP"; interleaved: PortPair } | { lower: "UDP"; clientPort: PortPair }): string {
  return t.lower === "TCP"
    ? `RTP/AVP/TCP;unicast;interleaved=${t.interleaved[0]}-${t.interleaved[1]}`
    : `RTP/AVP;unicast;client_port=${t.clientPort[0]}-${t.clientPort[1]}`;
}

export interface SessionHeader {
  id: string;
  /** Seconds; 60 when not written (RFC 2326 §12.37). */
  timeout: number;
  /** Whether the server wrote a timeout. */
  explicitTimeout: boolean;
}

/** Parses `Session: id[;timeout=seconds]`. */
export function parseSession(value: string): SessionHeader | undefined {
  const [idPart, ...params] = value.split(";");
  const id = (idPart ?? "").trim();
  // session-id = 1*( ALPHA | DIGIT | safe ), safe = $-_.+ ; be lenient but refuse separators and controls.
  if (!/^[\x21-\x7e]{1,256}$/.test(id) || /[;,"]/.test(id)) return undefined;
  let timeout = 60;
  let explicit = false;
  for (const p of params) {
    const m = /^\s*timeout\s*=\s*(\d{1,6})\s*$/i.exec(p);
    if (m && Number(m[1]) > 0) {
      timeout = Number(m[1]);
      explicit = true;
    }
  }
  return { id, timeout, explicitTimeout: explicit };
}

/** Upper-cased method names of a Public (or Allow) value. */
export function parsePublic(value: string | undefined): Set<string> {
  const out = new Set<string>();
  for (const m of (value ?? "").split(",")) {
    const t = m.trim().toUpperCase();
    if (t) out.add(t);
  }
  return out;
}

export interface RtpInfo {
  url: string;
  seq?: number;
  rtptime?: number;
}

/** Parses RTP-Info (for logs and diagnostics). */
export function parseRtpInfo(value: string): RtpInfo[] {
  const out: RtpInfo[] = [];
  for (const item of value.split(",")) {
    const info: RtpInfo = { url: "" };
    for (const p of item.split(";")) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const k = p.slice(0, eq).trim().toLowerCase();
      const v = p.slice(eq + 1).trim();
      if (k === "url") info.url = v;
      else if (k === "seq" && /^\d{1,5}$/.test(v)) info.seq = Number(v) & 0xffff;
      else if (k === "rtptime" && /^\d{1,10}$/.test(v)) info.rtptime = Number(v) >>> 0;
    }
    if (info.url) out.push(info);
  }
  return out;
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (const c of s) {
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}
