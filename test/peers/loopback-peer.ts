import type { RTCIceServer, RTCPeerConnection, RTCPeerConnectionConfig } from "werift";
import { createPeerConnection } from "../../sfu/peer-connection.ts";

/**
 * A werift peer on loopback only, like the tests' other peers (and reachable through coturn's
 * loopback relay): werift binds to `iceInterfaceAddresses` but advertises the interfaces it finds
 * (loopback excluded), so those are turned off and the bound address advertised. No ICE servers
 * unless `config` names some.
 */
export function loopbackPeerConnection(config: Omit<RTCPeerConnectionConfig, "iceServers"> & { iceServers?: RTCIceServer[] }): RTCPeerConnection {
  return createPeerConnection({
    ...config,
    iceServers: config.iceServers ?? [],
    iceUseIpv4: false,
    iceUseIpv6: false,
    iceAdditionalHostAddresses: ["127.0.0.1"],
    iceInterfaceAddresses: { udp4: "127.0.0.1" },
  });
}
