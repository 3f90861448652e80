/**
 * Every werift RTCPeerConnection we create comes from `createPeerConnection` (the SFU's
 * viewers in the media workers, the intercom's talk peers, and the tests' werift peers);
 * lint refuses `new RTCPeerConnection` anywhere else.
 *
 * Why: werift's ICE agent falls back to a public STUN server (stun.l.google.com:19302)
 * whenever it has no STUN server of its own, even with `iceServers: []`. Every peer then
 * asks the system resolver for that name and sends a binding request to the internet; on a
 * closed video network the lookup alone can hold a viewer's set-up for seconds, and the
 * gateway must never contact an address its configuration does not name. Importing this
 * module makes "no STUN server" mean none, for every werift agent in the thread (werift
 * derives the agent's servers in one method, which we correct here). Servers that are
 * named (our own TURN, for a test's relayed peer) are used as given.
 */
import { Connection, RTCPeerConnection, type RTCIceServer, type RTCPeerConnectionConfig } from "werift";

/** The fields of werift's ICE agent this module reads and corrects. */
interface AgentServers {
  options: { stunServer?: unknown };
  stunServer?: unknown;
}

const FIXED = Symbol.for("gatehouse.werift.noDefaultStun");

function installNoDefaultStun(): void {
  const proto = Connection.prototype as unknown as Record<PropertyKey, unknown>;
  if (proto[FIXED]) return;
  const derive = proto["applyStunTurnServersFromOptions"];
  // A werift upgrade that moves this must fail loudly here, not quietly reach the internet.
  if (typeof derive !== "function") {
    throw new Error("werift's ICE agent no longer has applyStunTurnServersFromOptions: re-check its default STUN server before upgrading");
  }
  proto["applyStunTurnServersFromOptions"] = function (this: AgentServers): void {
    (derive as (this: AgentServers) => void).call(this);
    if (this.options.stunServer === undefined) this.stunServer = undefined;
  };
  proto[FIXED] = true;
}
installNoDefaultStun();

/** Configuration of a werift peer; ICE servers must be named (an empty list: host candidates only). */
export type PeerConnectionConfig = RTCPeerConnectionConfig & { iceServers: RTCIceServer[] };

/** A werift RTCPeerConnection that contacts only the ICE servers it is given. */
export function createPeerConnection(config: PeerConnectionConfig): RTCPeerConnection {
  return new RTCPeerConnection(config);
}

/** The STUN server a werift ICE agent would query, for tests of the fix (undefined: none). */
export function agentStunServer(agent: Connection): unknown {
  return (agent as unknown as AgentServers).stunServer;
}
