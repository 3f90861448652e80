/**
 * Who may use this gateway's TURN relay, and with which credentials: the ICE servers handed to a
 * signed-in user (in WHEP `Link` headers, the intercom's and the connectivity page's answers),
 * the sessions whose credentials were minted, and the relays a viewer's offer names, so they end
 * with the viewer. Nothing here starts or stops the TURN server itself (turn/).
 */
import type { SessionId } from "../config/ids.ts";
import { canonicalIp } from "../config/net/ip.ts";
import { parseCandidate } from "../sfu/candidates.ts";
import { parseRestUsername, turnIceServers, type IceServer, type TurnServer } from "../turn/index.ts";
import { sessionRef } from "./auth/index.ts";

/** The caller an answer is for: a sign-in session's user, or a bearer token's. */
export interface RelayUser {
  readonly sub: string;
  readonly expiresAt: number;
  readonly sessionId?: SessionId | undefined;
}

export interface RelayAccessOptions {
  /** Undefined when TURN is off: every user gets no ICE servers. */
  readonly turn: TurnServer | undefined;
  /** The host name or address browsers reach this gateway at. */
  readonly publicHost: string;
  /** The front door's public port, announced for TURN over TCP/TLS when the relay shares it. */
  readonly publicPort: number;
  readonly sharesHttpsPort: boolean;
  readonly tls: boolean;
  /** Upper bound for credentials minted for bearer callers (their token's end is the other). */
  readonly credentialLifetimeSeconds: number;
}

export class RelayAccess {
  readonly #o: RelayAccessOptions;
  /**
   * Sessions whose relay credentials were minted, by reference; a session leaves when it ends.
   * After a restart the set is empty: old credentials are refused until the page fetches new ones.
   */
  readonly #sessions = new Set<string>();

  constructor(o: RelayAccessOptions) {
    this.#o = o;
  }

  /** Whether credentials minted for this session reference are still good here. */
  sessionActive(ref: string): boolean {
    return this.#sessions.has(ref);
  }

  /** A session ended (sign-out, expiry, revocation, back-channel logout): its relays end with it. */
  sessionEnded(ref: string): void {
    this.#sessions.delete(ref);
    this.#o.turn?.closeSession(ref);
  }

  /** TURN URIs of this node, without credentials (discovery, node announcements). */
  publicUris(): string[] {
    return this.#servers({ username: "", password: "" }).flatMap((s) => s.urls);
  }

  /**
   * ICE servers for one signed-in user: our TURN. Credentials of a session carry its reference:
   * ending the session closes their allocations and refuses them. Others (bearer tokens) end
   * with the token at the latest.
   */
  iceServersFor(user: RelayUser | undefined): IceServer[] {
    const turn = this.#o.turn;
    if (!turn || !user) return [];
    let credentials;
    if (user.sessionId !== undefined) {
      const ref = sessionRef(user.sessionId);
      this.#sessions.add(ref);
      credentials = turn.mintCredentials(user.sub, undefined, ref);
    } else {
      const remaining = Math.floor((user.expiresAt - Date.now()) / 1000);
      credentials = turn.mintCredentials(user.sub, Math.max(30, Math.min(this.#o.credentialLifetimeSeconds, remaining)));
    }
    return this.#servers(credentials);
  }

  /**
   * Ties a peer connection's relays to its life: the allocations its offer names, and those made
   * with the credentials its page names (`RELAY_USERNAME_HEADER`, see `namedRelayUsers`), are
   * closed when `release` runs, so a closed page does not hold the user's relay quota until they
   * expire. Only `sub`'s own allocations are ever closed.
   */
  relaysOf(sub: string, offer: unknown, usernames: readonly string[] = []): () => void {
    const turn = this.#o.turn;
    const relayed = turn && typeof offer === "string" ? relayedAddressesIn(offer) : [];
    return () => {
      if (relayed.length > 0 || usernames.length > 0) turn?.closeClientOf(sub, relayed, usernames);
    };
  }

  /** A bearer caller's relays end with its token (a session's end with the session, above). */
  callerLost(user: RelayUser): void {
    if (user.sessionId === undefined) this.#o.turn?.closeSubject(user.sub);
  }

  #servers(credentials: { username: string; password: string }): IceServer[] {
    const turn = this.#o.turn;
    if (!turn) return [];
    return turnIceServers({
      host: this.#o.publicHost,
      ...(turn.udp[0] ? { udpPort: turn.udp[0].port } : {}),
      ...(this.#o.sharesHttpsPort ? { httpsPort: this.#o.publicPort, tls: this.#o.tls } : {}),
      credentials,
    });
  }
}

/**
 * The header in which a page names the TURN credentials its peer connection uses (the usernames
 * of the ICE servers it was given), comma-separated. A page that offers before its relay
 * candidates are gathered (web/whep.js `gatherCandidates`) names its allocations this way.
 */
export const RELAY_USERNAME_HEADER = "Gatehouse-Relay-Username";

/** Most usernames taken from one request (a page names one per TURN server set it was given). */
const MAX_NAMED_USERNAMES = 4;

/**
 * The usernames a request names in `RELAY_USERNAME_HEADER` that are `sub`'s own, minted here
 * (REST form with our session tail); anything else is ignored. The TURN server closes only `sub`'s
 * allocations in any case: naming someone else's credentials could not close theirs.
 */
export function namedRelayUsers(header: string | string[] | undefined, sub: string): string[] {
  const value = Array.isArray(header) ? header.join(",") : header;
  if (!value || value.length > 2048) return [];
  const out: string[] = [];
  for (const part of value.split(",")) {
    const name = part.trim();
    const parsed = name ? parseRestUsername(name) : undefined;
    if (parsed?.minted && parsed.subject === sub && !out.includes(name)) out.push(name);
    if (out.length >= MAX_NAMED_USERNAMES) break;
  }
  return out;
}

/**
 * The relayed addresses a viewer's offer names (`a=candidate:… typ relay`): the allocations its
 * peer connection made with our TURN server. Unreadable lines are skipped (the SFU judges them).
 */
export function relayedAddressesIn(sdp: string): { family: 4 | 6; address: string; port: number }[] {
  const out: { family: 4 | 6; address: string; port: number }[] = [];
  for (const line of sdp.split(/\r?\n/)) {
    if (!line.startsWith("a=candidate:") || out.length >= 64) continue;
    try {
      const c = parseCandidate(line.slice(2));
      const address = canonicalIp(c.address);
      if (c.type === "relay" && c.transport === "udp" && address !== undefined) out.push({ family: address.includes(":") ? 6 : 4, address, port: c.port });
    } catch {
      // not a candidate we can read: nothing of ours
    }
  }
  return out;
}
