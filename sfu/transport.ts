/**
 * What a viewer needs from its secure transport once ICE and DTLS are up: send one
 * RTP packet, send one RTCP compound, hear RTCP back. The werift adapter
 * (sfu/werift-peer.ts) implements it today; an owned SRTP + socket writer can replace
 * it later without touching the forwarding logic in sfu/viewer.ts.
 */
import type { RtpHeaderFields } from "./rtp/packet.ts";

/** Connection states a viewer reacts to. */
export type TransportState = "connecting" | "connected" | "disconnected" | "failed" | "closed";

export interface ViewerTransport {
  /**
   * Protects and sends one RTP packet. Synchronous as far as the caller is concerned:
   * `payload` and `header` may be reused as soon as it returns. False when not sent
   * (not connected, closed).
   */
  sendRtp(header: RtpHeaderFields, payload: Buffer): boolean;
  /** Protects and sends one RTCP compound packet (plain bytes in). */
  sendRtcp(compound: Buffer): boolean;
  /** Packets handed to the socket whose send has not completed: the socket's backpressure. */
  readonly inFlight: number;
  /** Release sockets and timers. Idempotent. */
  close(): Promise<void>;
}

/** Callbacks from a transport to its viewer. Called on the event loop, never re-entrantly from send*. */
export interface TransportHandlers {
  /** One plain RTCP compound received from the viewer. */
  onRtcp(compound: Buffer): void;
  onState(state: TransportState, detail?: string): void;
}
