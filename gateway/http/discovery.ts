/**
 * `GET /.well-known/gatehouse`: this gateway's public endpoints, for clients (a mobile app finds
 * WHEP, TURN and sign-in from one URL) and for a load balancer or a second gateway. Public, like
 * `/healthz`: it lists only what any client is told anyway (no credentials, no camera list).
 */
import type { RequestHandler } from "express";
import type { ClusterDiscovery } from "../cluster/index.ts";

export interface DiscoveryDocument {
  service: "gatehouse";
  version: string;
  /** Base URL of the web client and API. */
  url: string;
  api: string;
  /** WHEP base: POST `<whep>/<camera>`. */
  whep: string;
  /** TURN URIs (credentials come with each WHEP answer, for signed-in users only). */
  turn: string[];
  /** SIP registrar URIs for door stations (when SIP is on). */
  sip: string[];
  /** The OpenID Connect issuer users sign in with (none with `auth.mode: none`). */
  identityProvider: string | null;
  signIn: string;
  health: { live: string; ready: string };
  metrics: string;
  /** The cluster this gateway belongs to (gateway/cluster/), with the nodes alive and their load. */
  cluster?: ClusterDiscovery;
}

export function discoveryHandler(doc: () => DiscoveryDocument): RequestHandler {
  return (_req, res) => {
    res.set("Cache-Control", "public, max-age=60").set("Access-Control-Allow-Origin", "*").json(doc());
  };
}
