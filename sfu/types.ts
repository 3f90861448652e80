/**
 * The media plane's public contract with the gateway.
 *
 * Media enters the SFU only through a MediaSink: the gateway's RTSP ingest (or the
 * SIP intercom) pushes RTP into it. Nothing in sfu/ knows where the packets came from.
 */

/** Codecs the SFU forwards without transcoding (H.265 only to viewers that offered it). */
export type ForwardedCodec = "H264" | "H265" | "PCMU" | "PCMA" | "OPUS";

/**
 * Codecs a recorder may send: the forwarded ones, and those the gateway converts before the
 * SFU sees them (gateway/transcode/: AAC in RTP `MPEG4-GENERIC` / `MP4A-LATM`; H.265 to H.264
 * for the other viewers when the camera is configured for it).
 */
export type CodecName = ForwardedCodec | "MPEG4-GENERIC" | "MP4A-LATM";

/** One upstream track, as described by the recorder's SDP. */
export interface TrackSpec {
  readonly kind: "video" | "audio";
  readonly codec: CodecName;
  /** RTP clock rate, Hz (90000 for video, 8000 for G.711, 48000 for Opus). */
  readonly clockRate: number;
  /** Audio channels; 1 for video. */
  readonly channels: number;
  /** The upstream's dynamic or static payload type. */
  readonly payloadType: number;
  /** The `a=fmtp` parameters as written in the SDP (for H.264: sprop-parameter-sets, packetization-mode…), or "". */
  readonly fmtp: string;
}

/** Where an upstream pushes media. Implemented by an SFU source. */
export interface MediaSink {
  /**
   * Called after each successful SETUP+PLAY, including after a reconnect, with the
   * tracks that will be pushed (codecs the SFU cannot forward are left out by the caller).
   */
  setTracks(tracks: readonly TrackSpec[]): void;
  /** One RTP packet of track `track` (index into the last setTracks). Valid only during the call: copy to keep. */
  pushRtp(track: number, packet: Buffer): void;
  /** One RTCP packet (compound allowed) of track `track`. Valid only during the call. */
  pushRtcp(track: number, packet: Buffer): void;
  /** The upstream session ended; a new setTracks follows if it comes back (new SSRC, sequence and timestamps expected). */
  upstreamDown(reason: string): void;
}
