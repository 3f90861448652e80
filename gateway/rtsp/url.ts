/**
 * RTSP URLs (RFC 2326 §3.2): where to connect, the request URL without credentials,
 * and the credentials of the userinfo part, percent-decoded. Pure.
 */
import { BadInputError } from "../../config/errors.ts";
import { canonicalIp } from "../../config/net/ip.ts";

export interface RtspUrl {
  /** rtsps:// (TLS). */
  tls: boolean;
  /** Host to connect to: a name or an IP address (IPv6 without brackets). */
  host: string;
  /** TCP port; 554 for rtsp://, 322 for rtsps:// when not written (RFC 2326 §3.2). */
  port: number;
  /** The URL as sent in requests: no userinfo, no fragment. */
  href: string;
  username?: string;
  password?: string;
}

/** Parses an rtsp:// or rtsps:// URL. Throws BadInputError otherwise. */
export function parseRtspUrl(text: string): RtspUrl {
  let u: URL;
  try {
    u = new URL(text.trim());
  } catch {
    throw new BadInputError("not a valid RTSP URL");
  }
  const scheme = u.protocol.toLowerCase();
  if (scheme !== "rtsp:" && scheme !== "rtsps:") throw new BadInputError(`unsupported URL scheme ${u.protocol}`);
  const tls = scheme === "rtsps:";
  if (!u.hostname) throw new BadInputError("RTSP URL has no host");
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port ? Number(u.port) : tls ? 322 : 554;
  const out: RtspUrl = { tls, host, port, href: `${scheme}//${u.host}${u.pathname}${u.search}` };
  if (u.username) out.username = decode(u.username);
  if (u.username || u.password) out.password = decode(u.password);
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a stray '%' that is not an escape: take it literally
  }
}

/** Same host and port (case-insensitive host): whether credentials may follow a redirect. */
export function sameOrigin(a: RtspUrl, b: RtspUrl): boolean {
  return a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port && a.tls === b.tls;
}

/** A host as compared for redirects: IP literals in canonical form, names lower-case without a trailing dot. */
export function hostKey(host: string): string {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return canonicalIp(h) ?? h.toLowerCase().replace(/\.$/, "");
}

/**
 * May a recorder send us to `next`? Only to the camera's own host (any port: recorders move
 * streams between their own ports), or to a host the camera lists in `redirectHosts`. The
 * check is on the host as written: names are never resolved to decide.
 */
export function redirectAllowed(cameraHost: string, next: RtspUrl, allowedHosts: readonly string[] = []): boolean {
  const key = hostKey(next.host);
  return key === hostKey(cameraHost) || allowedHosts.some((h) => hostKey(h) === key);
}
