/**
 * RTCIceServer entries for our TURN server, and the WHEP `Link` header form of them
 * (draft-ietf-wish-whep §4.6: `<turn:host:port?transport=udp>; rel="ice-server";
 * username="…"; credential="…"; credential-type="password"`).
 */
import type { TurnCredentials } from "./credentials.ts";

/** The shape browsers take in `RTCPeerConnection({ iceServers })`. */
export interface IceServer {
  urls: string[];
  username: string;
  credential: string;
}

export interface TurnIceServerOptions {
  /** Host name (or IP) the browser can reach: the public name of the gateway. */
  host: string;
  /** UDP TURN port (turn.udp[0].port, 14049 in production); omit to leave UDP out. */
  udpPort?: number;
  /** The gateway's HTTPS port, where TURN over TCP and TLS share the listener; omit to leave them out. */
  httpsPort?: number;
  /** Offer `turn:…?transport=tcp` on the HTTPS port (plain TCP sniffed before TLS). Default true. */
  tcp?: boolean;
  /** Offer `turns:…?transport=tcp` on the HTTPS port. Default true. */
  tls?: boolean;
  credentials: Pick<TurnCredentials, "username" | "password">;
}

/** One RTCIceServer listing every transport the gateway offers, most preferred first. */
export function turnIceServers(o: TurnIceServerOptions): IceServer[] {
  const host = o.host.includes(":") && !o.host.startsWith("[") ? `[${o.host}]` : o.host;
  const urls: string[] = [];
  if (o.udpPort !== undefined) urls.push(`turn:${host}:${o.udpPort}?transport=udp`);
  if (o.httpsPort !== undefined) {
    if (o.tcp !== false) urls.push(`turn:${host}:${o.httpsPort}?transport=tcp`);
    if (o.tls !== false) urls.push(`turns:${host}:${o.httpsPort}?transport=tcp`);
  }
  if (urls.length === 0) return [];
  return [{ urls, username: o.credentials.username, credential: o.credentials.password }];
}

/** WHEP `Link` header values, one per URL. */
export function iceServerLinkHeader(servers: readonly IceServer[]): string[] {
  const q = (s: string): string => `"${s.replace(/["\\]/g, "\\$&")}"`;
  const out: string[] = [];
  for (const s of servers) {
    for (const url of s.urls) {
      out.push(`<${url}>; rel="ice-server"; username=${q(s.username)}; credential=${q(s.credential)}; credential-type="password"`);
    }
  }
  return out;
}
