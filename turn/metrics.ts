/**
 * TURN counters. Plain numeric fields on one object so the relay path can bump them
 * without a map lookup; `snapshot()` copies them for export.
 */

export class TurnMetrics {
  /** Live allocations (gauge). */
  allocations = 0;
  allocationsCreated = 0;
  allocationsExpired = 0;
  allocationsDeleted = 0;
  /** Successful Refresh requests (lifetime > 0). */
  refreshes = 0;
  /** Live permissions and channel bindings (gauges). */
  permissions = 0;
  channels = 0;
  /** Client → peer. */
  packetsToPeer = 0;
  bytesToPeer = 0;
  /** Peer → client. */
  packetsToClient = 0;
  bytesToClient = 0;
  /** 401 challenges answered to requests without credentials (not failures). */
  challenges = 0;
  /** Requests with credentials that did not check (bad integrity, wrong realm, expired, unknown user). */
  authFailures = 0;
  /** Requests refused because the session their credentials were minted for has ended. */
  sessionEndedRefusals = 0;
  /** Client datagrams or connections refused because they came from one of our own relay sockets. */
  fromRelayRefused = 0;
  /** 438 answers. */
  staleNonces = 0;
  /** Requests dropped because their source exceeded the failed-auth rate. */
  authRateLimited = 0;
  /** Peers refused by the address policy (403). */
  peerDenials = 0;
  /** 486/508 answers for quota reasons. */
  quotaRejections = 0;
  /** Other error responses sent (400, 420, 437, 440, 441, 442, 443). */
  errorResponses = 0;
  /** Datagrams or frames that were not STUN/ChannelData or failed parsing/FINGERPRINT. */
  malformed = 0;
  /** Relay data dropped: no allocation for the 5-tuple, no channel/permission, or over bandwidth. */
  dropNoAllocation = 0;
  dropNoPermission = 0;
  dropBandwidth = 0;
  /** Peer data dropped because the client's TCP connection was backed up. */
  dropBackpressure = 0;
  /** UDP datagrams dropped by the native sockets: longer than a receive slot, or the send buffer was full. */
  dropUdp = 0;

  snapshot(): Readonly<Record<string, number>> {
    return Object.freeze({ ...(this as unknown as Record<string, number>) });
  }
}
