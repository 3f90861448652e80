/**
 * The client address of an HTTP request: the one answer used by rate limits, logs and audit.
 *
 * Without trusted proxies (`server.trustProxy: []`, the default) it is the TCP peer, and
 * `X-Forwarded-For` is ignored: anyone can write that header. When the peer is a trusted
 * reverse proxy, the header is read from the right (the hop nearest to us) and the first
 * address that is not itself a trusted proxy is the client; a malformed entry stops the walk
 * at the last hop we could trust, so a client cannot smuggle an address past its own proxy.
 *
 * The front door stamps each request with its address as it reaches the HTTP server (before
 * any route runs); `clientAddress(req)` reads the stamp, or the TCP peer for requests that did
 * not come through a front door (tests of single routers).
 */
import type { IncomingMessage } from "node:http";
import { isIpLiteral, socketIp } from "../../config/net/ip.ts";
import type { CidrList } from "../../config/net/cidr.ts";

const STAMP = Symbol("gatehouse.clientAddress");

/** An address as one string per client: canonical, IPv4-mapped IPv6 as its IPv4 form. */
export function normalizeAddress(a: string): string {
  return socketIp(a) ?? a;
}

/** One X-Forwarded-For entry as an IP literal (ports and IPv6 brackets removed), or undefined. */
function forwardedEntry(raw: string): string | undefined {
  let a = raw.trim();
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracket) a = bracket[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(":"));
  return isIpLiteral(a) ? normalizeAddress(a) : undefined;
}

/** The client address of `req` given the trusted proxies (pure: the socket's peer and the header). */
export function resolveClientAddress(peer: string, forwardedFor: string | string[] | undefined, trusted: CidrList | undefined): string {
  let client = normalizeAddress(peer);
  if (!trusted || trusted.size === 0 || !trusted.has(client) || forwardedFor === undefined) return client;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor).split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = forwardedEntry(hops[i]!);
    if (hop === undefined) return client;
    client = hop;
    if (!trusted.has(hop)) return hop;
  }
  return client;
}

/** Records `req`'s client address (the front door calls this for every request and upgrade). */
export function stampClientAddress(req: IncomingMessage, trusted: CidrList | undefined): string {
  const a = resolveClientAddress(req.socket.remoteAddress ?? "unknown", req.headers["x-forwarded-for"], trusted);
  (req as unknown as Record<symbol, string>)[STAMP] = a;
  return a;
}

/** The client address used by rate limits, logs and audit. */
export function clientAddress(req: IncomingMessage): string {
  return (req as unknown as Record<symbol, string | undefined>)[STAMP] ?? normalizeAddress(req.socket?.remoteAddress ?? "unknown");
}
