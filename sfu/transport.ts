/**
 * What a viewer needs from its secure transport once ICE and DTLS are up: send one
 * RTP packet, send one RTCP compound, hear RTCP back. sfu/werift-peer.ts implements it
 * twice: the owned path (our SRTP context and a direct socket write after werift's
 * ICE+DTLS) and werift's own SRTP session; sfu/viewer.ts sees no difference.
 */
import type { RtpHeaderFields } from "./rtp/packet.ts";

/** Connection states a viewer reacts to. */
export type TransportState = "connecting" | "connected" | "disconnected" | "failed" | "closed";

export interface ViewerTransport {
  /**
   * Protects and sends one RTP packet. Synchronous as far as the caller is concerned:
   * `payload` and `header` may be reused as soon as it returns (the datagram itself may
   * be written at the end of the current task, with the rest of its fan-out). False when
   * not sent (not connected, closed). `arrivalMs` > 0 (performance.now() at ingest) marks
   * a live packet: its ingest → socket time is recorded once it is written.
   */
  sendRtp(header: RtpHeaderFields, payload: Buffer, arrivalMs?: number): boolean;
  /** Protects and sends one RTCP compound packet (plain bytes in). */
  sendRtcp(compound: Buffer): boolean;
  /** Packets handed to the socket whose send has not completed: the socket's backpressure. */
  readonly inFlight: number;
  /** Release sockets and timers. Idempotent. */
  close(): Promise<void>;
  /**
   * Transport-wide sequence numbers stamped on the video this transport sends, when the
   * viewer negotiated them (sfu/transport-cc.ts): its `onSent` tells the estimator of each.
   */
  readonly transportCc?: { onSent: ((seq: number, payloadBytes: number, copy: boolean) => void) | undefined; copy: boolean } | undefined;
  /** What protects and carries the media, once connected (stats). */
  describe?(): TransportInfo | undefined;
}

/** How a connected transport sends (for stats and diagnostics). */
export interface TransportInfo {
  /** Negotiated DTLS-SRTP profile, e.g. "AEAD_AES_128_GCM". */
  srtpProfile: string;
  /** "owned": our SRTP context and socket writes; "werift": werift's SRTP session. */
  path: "owned" | "werift";
  /** Datagrams written through Node's UDP handle directly (no per-packet dgram overhead). */
  directWrites: boolean;
  /** RTP protected by the native fast path (sfu/native/) rather than node:crypto. */
  nativeSrtp: boolean;
  /** Datagrams libuv had to queue because the kernel send buffer was full. */
  sendsQueued: number;
  /** Datagrams the socket refused. */
  sendsFailed: number;
}

/** Callbacks from a transport to its viewer. Called on the event loop, never re-entrantly from send*. */
export interface TransportHandlers {
  /** One plain RTCP compound received from the viewer. */
  onRtcp(compound: Buffer): void;
  onState(state: TransportState, detail?: string): void;
}
