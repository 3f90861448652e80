/**
 * The little the talk peer needs to know about a browser's SDP offer before werift sees
 * it: does its first live audio m-section offer the door's G.711 codec, and under which
 * payload type. Pure; the offer is read by the SFU's parser (sfu/offer.ts), the full
 * offer/answer is werift's job.
 */
import { MAX_OFFER_CHARS, parseOffer, type ParsedOffer } from "../../sfu/offer.ts";

/** The G.711 variants a door speaks (RFC 3551 §4.5.14). */
export type G711Codec = "PCMU" | "PCMA";

export interface AudioOffer {
  /** Payload type the offer uses for each G.711 codec at 8000 Hz mono; absent: not offered. */
  readonly payloadTypes: ReadonlyMap<G711Codec, number>;
  /** a=sendrecv / sendonly / recvonly / inactive of the audio m-section (default sendrecv, RFC 4566 §6). */
  readonly direction: "sendrecv" | "sendonly" | "recvonly" | "inactive";
}

/** Offers longer than this are refused before parsing, characters (same bound as WHEP). */
export const MAX_TALK_OFFER_CHARS = MAX_OFFER_CHARS;

/**
 * The first audio m-section with a non-zero port, read with the SFU's offer parser (one reader of
 * browsers' offers), or undefined when the offer has none or is not a WebRTC offer. A codec is
 * taken only at 8000 Hz with one channel; static payload types count without an a=rtpmap.
 */
export function readAudioOffer(sdp: string): AudioOffer | undefined {
  let offer: ParsedOffer;
  try {
    offer = parseOffer(sdp);
  } catch {
    return undefined;
  }
  const audio = offer.media.find((m) => m.kind === "audio" && m.port !== 0);
  if (!audio) return undefined;
  const payloadTypes = new Map<G711Codec, number>();
  for (const c of audio.codecs) {
    const name = c.name.toUpperCase();
    if ((name === "PCMU" || name === "PCMA") && c.clockRate === 8000 && c.channels === 1 && !payloadTypes.has(name)) payloadTypes.set(name, c.payloadType);
  }
  return { payloadTypes, direction: audio.direction };
}

/** Writes `address` into every host candidate of `sdp` (1:1 NAT, RFC 8839 §5.1), as the SFU does for viewers. */
export function announceAddress(sdp: string, address: string): string {
  return sdp.replace(
    /^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)/gm,
    (_m, pre: string, _addr: string, post: string) => `${pre}${address}${post}`,
  );
}
