/**
 * Public surface of the TURN relay. The gateway imports from here; everything else in
 * turn/ is internal.
 */
export { startTurnServer, type TurnServer, type TurnServerOptions, type TurnTcpHandler } from "./server.ts";
export { mintTurnCredentials, restPassword, parseRestUsername, type TurnCredentials, type MintOptions } from "./credentials.ts";
export { turnIceServers, iceServerLinkHeader, type TurnIceServerOptions, type IceServer } from "./ice-servers.ts";
export { TurnMetrics } from "./metrics.ts";
export { PeerPolicy, type PeerVerdict } from "./policy.ts";
export type { TurnEvents, AllocationInfo, AllocationCloseReason } from "./core.ts";
