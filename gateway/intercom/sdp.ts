/**
 * The little the talk peer needs to know about a browser's SDP offer before werift sees
 * it: does its first live audio m-section offer the door's G.711 codec, and under which
 * payload type. Pure; the full offer/answer is werift's job.
 */

/** The G.711 variants a door speaks (RFC 3551 §4.5.14). */
export type G711Codec = "PCMU" | "PCMA";

/** RFC 3551 Table 4: static payload types, valid even without an a=rtpmap line. */
const STATIC_PT: Record<G711Codec, number> = { PCMU: 0, PCMA: 8 };

export interface AudioOffer {
  /** Payload type the offer uses for each G.711 codec at 8000 Hz mono; absent: not offered. */
  readonly payloadTypes: ReadonlyMap<G711Codec, number>;
  /** a=sendrecv / sendonly / recvonly / inactive of the audio m-section (default sendrecv, RFC 4566 §6). */
  readonly direction: "sendrecv" | "sendonly" | "recvonly" | "inactive";
}

/** Offers longer than this are refused before parsing, characters (same bound as WHEP). */
export const MAX_TALK_OFFER_CHARS = 64 * 1024;

/**
 * The first audio m-section with a non-zero port, or undefined when the offer has none.
 * Unknown lines are ignored; a codec is taken only at 8000 Hz with one channel.
 */
export function readAudioOffer(sdp: string): AudioOffer | undefined {
  const lines = sdp.split(/\r?\n/);
  let inAudio = false;
  let found = false;
  let formats: number[] = [];
  const rtpmap = new Map<number, string>();
  let direction: AudioOffer["direction"] = "sendrecv";
  for (const raw of lines) {
    const line = raw.trim();
    if (line.startsWith("m=")) {
      if (found) break; // only the first live audio section counts
      const m = /^m=(\S+) (\d+)(?:\/\d+)? (\S+)((?: \S+)*)$/.exec(line);
      inAudio = m !== null && m[1] === "audio" && m[2] !== "0";
      if (inAudio) {
        found = true;
        formats = m![4]!.trim().split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n >= 0 && n <= 127);
      }
      continue;
    }
    if (!inAudio) continue;
    const map = /^a=rtpmap:(\d+) ([^/\s]+)\/(\d+)(?:\/(\d+))?$/.exec(line);
    if (map) {
      const channels = map[4] === undefined ? 1 : Number(map[4]);
      rtpmap.set(Number(map[1]), `${map[2]!.toUpperCase()}/${map[3]}/${channels}`);
      continue;
    }
    if (line === "a=sendrecv" || line === "a=sendonly" || line === "a=recvonly" || line === "a=inactive") {
      direction = line.slice(2) as AudioOffer["direction"];
    }
  }
  if (!found) return undefined;
  const payloadTypes = new Map<G711Codec, number>();
  for (const pt of formats) {
    const desc = rtpmap.get(pt);
    for (const codec of ["PCMU", "PCMA"] as const) {
      if (payloadTypes.has(codec)) continue;
      if (desc === `${codec}/8000/1` || (desc === undefined && pt === STATIC_PT[codec])) payloadTypes.set(codec, pt);
    }
  }
  return { payloadTypes, direction };
}

/** Writes `address` into every host candidate of `sdp` (1:1 NAT, RFC 8839 §5.1), as the SFU does for viewers. */
export function announceAddress(sdp: string, address: string): string {
  return sdp.replace(
    /^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)/gm,
    (_m, pre: string, _addr: string, post: string) => `${pre}${address}${post}`,
  );
}
