/**
 * Where a SIP message came from or goes to, and the RFC 3261 §18.2 / RFC 3581 rules
 * that turn a request's top Via and source into the address of its responses.
 */
import { formatVia, type SipRequest, type Via } from "./message.ts";
import { socketHost } from "./uri.ts";

export type SipTransport = "udp" | "tcp" | "tls";

/** A transport address; for TCP/TLS `flow` names the connection a message came in on. */
export interface Endpoint {
  readonly transport: SipTransport;
  readonly address: string;
  readonly port: number;
  /** TCP/TLS connection id, preferred over opening a new connection (§18.2.2, RFC 5626 flows). */
  readonly flow?: number | undefined;
}

export function isReliable(t: SipTransport): boolean {
  return t !== "udp";
}

export function endpointKey(e: Endpoint): string {
  return `${e.transport}:${e.address}:${e.port}`;
}

export function defaultPort(t: SipTransport): number {
  return t === "tls" ? 5061 : 5060;
}

/** Via transport token for our transport. */
export function viaTransport(t: SipTransport): string {
  return t.toUpperCase();
}

/**
 * §18.2.1 + RFC 3581 §4: on receipt, add `received` when the sent-by host differs from the
 * packet source (always when `rport` is present) and fill in an empty `rport`.
 * Rewrites the request's top Via in place; returns the updated Via.
 */
export function stampReceived(req: SipRequest, via: Via, source: Endpoint): Via {
  const addRport = via.rport === true;
  const hostDiffers = socketHost(via.host) !== source.address;
  if (!addRport && !hostDiffers) return via;
  const params = new Map(via.params);
  params.set("received", source.address);
  if (addRport) params.set("rport", String(source.port));
  const updated: Via = { ...via, params, received: source.address, rport: addRport ? source.port : via.rport };
  req.headers.replaceFirstItem("via", formatVia(updated));
  return updated;
}

/**
 * §18.2.2 + RFC 3581 §4: where responses to a request go. Reliable transports reuse the
 * request's connection (the transport falls back to connecting to received:port);
 * UDP goes to `received` (or sent-by) at `rport` (or the sent-by port, or the default).
 * `maddr` is not honoured: we never multicast responses.
 */
export function responseDestination(via: Via | undefined, source: Endpoint): Endpoint {
  if (!via) return source;
  const address = via.received ?? socketHost(via.host);
  const port = typeof via.rport === "number" ? via.rport : via.port ?? defaultPort(source.transport);
  return { transport: source.transport, address, port, flow: source.flow };
}
