/**
 * The datagrams of the RTP forwarding link between two nodes of a cluster (pure: bytes and keys
 * in, typed results out; sockets live in forward-link.ts).
 *
 * The camera's owner forwards what its ingest pushes into the camera's source — the MediaSink
 * calls `setTracks`, `pushRtp`, `pushRtcp` (the recorder's sender reports included, so frame
 * times and lip sync survive), `upstreamDown` — to each node that relays the camera; the relaying
 * node sends keep-alives and keyframe requests back. One channel per (owner, relaying node,
 * stream), numbered by the owner.
 *
 *   0      magic "GR"             2  version (1)   3  type
 *   4      channel (u32)
 *   8      counter (u32, per sender and channel, strictly increasing: replays are dropped)
 *   12     track (u8)             13 epoch (u8: the owner's upstream session on this link)
 *   14     reserved (0)
 *   16     payload
 *   end-16 HMAC-SHA-256 of everything before it, first 16 bytes, under the link's key
 *
 * The link's key is derived from the cluster's shared forwarding key, the channel and a nonce
 * the relaying node chose when it subscribed; nothing secret crosses the link.
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import type { TrackSpec } from "../../sfu/types.ts";

export const RelayType = {
  /** owner → relay: one RTP packet of `track`. */
  rtp: 1,
  /** owner → relay: one RTCP packet (compound allowed) of `track`. */
  rtcp: 2,
  /** owner → relay: the upstream tracks (JSON `TrackSpec[]`) of `epoch`; repeated about once a second. */
  tracks: 3,
  /** owner → relay: the upstream session ended (payload: the reason, UTF-8). */
  down: 4,
  /** relay → owner: still watching; keep the link. */
  keep: 5,
  /** relay → owner: no decodable picture here; start a new epoch from the cached keyframe. */
  keyframe: 6,
  /** either way: the link ends. */
  bye: 7,
} as const;
export type RelayType = (typeof RelayType)[keyof typeof RelayType];

const MAGIC0 = 0x47; // G
const MAGIC1 = 0x52; // R
const VERSION = 1;
export const RELAY_HEADER = 16;
export const RELAY_MAC = 16;

export interface RelayHeader {
  type: RelayType;
  channel: number;
  counter: number;
  track: number;
  epoch: number;
}

/** Why a datagram was dropped (each counted). */
export type RelayDropReason =
  /** Shorter than a header and a MAC, wrong magic or version, unknown type. */
  | "malformed"
  /** No link with this channel (ended, or never made). */
  | "unknownChannel"
  /** The MAC does not verify under the link's key. */
  | "badAuth"
  /** A counter already seen, or too old for the window. */
  | "replay"
  /** Media of an epoch other than the link's current one, or before its tracks. */
  | "staleEpoch"
  /** A well-formed datagram that makes no sense in this direction or state. */
  | "unexpected";

export type RelayDecode = { ok: true; header: RelayHeader; payload: Buffer } | { ok: false; reason: RelayDropReason };

/** The key of one link. */
export function relayLinkKey(forwardKey: Buffer, channel: number, nonce: string): KeyObject {
  return createSecretKey(createHmac("sha256", forwardKey).update(`gatehouse relay link\n${channel >>> 0}\n${nonce}`).digest());
}

function mac(key: KeyObject, buf: Buffer, end: number): Buffer {
  return createHmac("sha256", key).update(buf.subarray(0, end)).digest();
}

/** One datagram. */
export function encodeRelay(key: KeyObject, h: RelayHeader, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RELAY_HEADER + payload.length + RELAY_MAC);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = VERSION;
  out[3] = h.type;
  out.writeUInt32BE(h.channel >>> 0, 4);
  out.writeUInt32BE(h.counter >>> 0, 8);
  out[12] = h.track & 0xff;
  out[13] = h.epoch & 0xff;
  out[14] = 0;
  out[15] = 0;
  out.set(payload, RELAY_HEADER);
  const end = RELAY_HEADER + payload.length;
  mac(key, out, end).copy(out, end, 0, RELAY_MAC);
  return out;
}

/** The channel of a datagram, or undefined when it is not one of ours (checked before the key is looked up). */
export function relayChannelOf(buf: Buffer): number | undefined {
  if (buf.length < RELAY_HEADER + RELAY_MAC || buf[0] !== MAGIC0 || buf[1] !== MAGIC1 || buf[2] !== VERSION) return undefined;
  const type = buf[3]!;
  if (type < RelayType.rtp || type > RelayType.bye) return undefined;
  return buf.readUInt32BE(4);
}

/** Checks a datagram under its link's key (after `relayChannelOf`). The payload is a view into `buf`. */
export function decodeRelay(buf: Buffer, key: KeyObject): RelayDecode {
  const channel = relayChannelOf(buf);
  if (channel === undefined) return { ok: false, reason: "malformed" };
  const end = buf.length - RELAY_MAC;
  const want = mac(key, buf, end).subarray(0, RELAY_MAC);
  if (!timingSafeEqual(want, buf.subarray(end))) return { ok: false, reason: "badAuth" };
  return {
    ok: true,
    header: { type: buf[3] as RelayType, channel, counter: buf.readUInt32BE(8), track: buf[12]!, epoch: buf[13]! },
    payload: buf.subarray(RELAY_HEADER, end),
  };
}

/**
 * Replay protection (RFC 4303 §3.4.3's sliding window, 64 counters): a counter is accepted once,
 * and not when it is 64 or more behind the highest accepted. Datagrams reordered within the
 * window are kept.
 */
export class ReplayWindow {
  private top = -1;
  private bits = 0n;

  accept(counter: number): boolean {
    if (counter > this.top) {
      const shift = counter - this.top;
      this.bits = shift >= 64 ? 1n : ((this.bits << BigInt(shift)) | 1n) & 0xffff_ffff_ffff_ffffn;
      this.top = counter;
      return true;
    }
    const back = this.top - counter;
    if (back >= 64) return false;
    const bit = 1n << BigInt(back);
    if (this.bits & bit) return false;
    this.bits |= bit;
    return true;
  }
}

/** The payload of a `tracks` datagram. */
export function encodeTracks(tracks: readonly TrackSpec[]): Buffer {
  return Buffer.from(JSON.stringify(tracks));
}

/** Reads a `tracks` payload; undefined when it is not a list of tracks. */
export function decodeTracks(payload: Buffer): TrackSpec[] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString("utf8"));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length > 16) return undefined;
  const out: TrackSpec[] = [];
  for (const t of v as unknown[]) {
    if (typeof t !== "object" || t === null) return undefined;
    const o = t as Record<string, unknown>;
    if ((o.kind !== "video" && o.kind !== "audio") || typeof o.codec !== "string" || typeof o.fmtp !== "string") return undefined;
    if (![o.clockRate, o.channels, o.payloadType].every((n) => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 1_000_000)) return undefined;
    out.push({
      kind: o.kind,
      codec: o.codec as TrackSpec["codec"],
      clockRate: o.clockRate as number,
      channels: o.channels as number,
      payloadType: o.payloadType as number,
      fmtp: o.fmtp,
    });
  }
  return out;
}
