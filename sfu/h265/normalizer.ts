/**
 * Per-stream H.265 forwarding to viewers that negotiated it (RFC 7798 passthrough): the
 * camera's RTP payloads are depacketized into access units, and each access unit is sent
 * again packetized to `maxPayload` (aggregation packets for small NAL units, fragmentation
 * units for large ones), so every packet fits the path MTU whatever the camera's own.
 *
 *  - Parameter sets: an IRAP picture not preceded in its access unit by a VPS, an SPS and a
 *    PPS gets the latest ones in front (learnt in band, else from the SDP's sprop-vps/sps/pps),
 *    so a viewer starting at any keyframe can decode it.
 *  - Keyframe starts: the first packet of an IRAP access unit.
 *  - A damaged access unit (a packet lost before or within it) is still sent; the output
 *    sequence then shows the gap (the caller's job) and the viewer asks for a keyframe.
 *
 * Output is one access unit late at most by a packet: the access unit is complete at its
 * marker bit (or when the next timestamp begins). Same output shape as the H.264 normalizer.
 */
import type { NormalizedPacket } from "../h264/normalizer.ts";
import { H265Depacketizer, type H265DropReason } from "./depacketizer.ts";
import { H265Type, h265Type, hasDonl, parseH265Sprops } from "./nal.ts";
import { H265_MIN_MAX_PAYLOAD, packetizeH265 } from "./packetizer.ts";

export interface H265NormalizerStats {
  packetsIn: number;
  packetsOut: number;
  accessUnits: number;
  keyframes: number;
  /** IRAP access units given parameter sets they lacked. */
  parameterSetsInserted: number;
  /** IRAP access units with no parameter sets known at all (sent as they are). */
  irapWithoutParameterSets: number;
  /** Input payloads larger than maxPayload (their NAL units were re-fragmented). */
  refragmented: number;
  dropped: Record<H265DropReason, number>;
}

export interface H265NormalizerOptions {
  /** Largest output payload, bytes. */
  maxPayload: number;
  /** The track's SDP fmtp (sprop-vps/sps/pps, sprop-max-don-diff). */
  fmtp?: string;
}

export class H265Normalizer {
  private readonly max: number;
  private depack: H265Depacketizer;
  /** Latest parameter sets, by type (VPS, SPS, PPS), in band overriding the SDP's. */
  private readonly sets = new Map<number, Buffer>();
  private readonly out: NormalizedPacket[] = [];
  private statsIn = { packetsIn: 0, packetsOut: 0, accessUnits: 0, keyframes: 0, parameterSetsInserted: 0, irapWithoutParameterSets: 0, refragmented: 0 };

  constructor(o: H265NormalizerOptions) {
    this.max = Math.max(H265_MIN_MAX_PAYLOAD, o.maxPayload);
    this.depack = new H265Depacketizer({ donl: hasDonl(o.fmtp ?? "") });
    this.setFmtp(o.fmtp ?? "");
  }

  get stats(): H265NormalizerStats {
    return { ...this.statsIn, dropped: { ...this.depack.drops } };
  }

  /** The SDP's parameter sets (a new DESCRIBE); those learnt in band since stay until replaced. */
  setFmtp(fmtp: string): void {
    for (const nal of parseH265Sprops(fmtp)) this.sets.set(h265Type(nal[0]!), nal);
    const donl = hasDonl(fmtp);
    const drops = this.depack.drops;
    this.depack = new H265Depacketizer({ donl });
    Object.assign(this.depack.drops, drops);
  }

  /** Forget a half-received access unit (upstream restarted); known parameter sets stay. */
  reset(): void {
    this.depack.reset();
  }

  /**
   * One RTP payload of the camera. `lost`: packets are missing before it. Returns the
   * payloads to send, in order (empty while an access unit is being received); the array is
   * reused by the next call.
   */
  push(payload: Buffer, marker: boolean, timestamp: number, lost = false): readonly NormalizedPacket[] {
    this.statsIn.packetsIn++;
    this.out.length = 0;
    if (payload.length > this.max) this.statsIn.refragmented++;
    for (const au of this.depack.push(payload, timestamp, marker, lost)) {
      this.statsIn.accessUnits++;
      let nals = au.nals;
      for (const n of nals) {
        const t = h265Type(n[0]!);
        if (t === H265Type.VPS || t === H265Type.SPS || t === H265Type.PPS) this.sets.set(t, n);
      }
      if (au.irap) {
        this.statsIn.keyframes++;
        const has = new Set(nals.map((n) => h265Type(n[0]!)));
        const missing = [H265Type.VPS, H265Type.SPS, H265Type.PPS].filter((t) => !has.has(t));
        if (missing.length > 0) {
          const add = missing.map((t) => this.sets.get(t)).filter((n): n is Buffer => n !== undefined);
          if (add.length < missing.length) this.statsIn.irapWithoutParameterSets++;
          if (add.length > 0) {
            this.statsIn.parameterSetsInserted++;
            nals = [...add, ...nals];
          }
        }
      }
      const payloads = packetizeH265(nals, this.max);
      for (let i = 0; i < payloads.length; i++) {
        this.out.push({ payload: payloads[i]!, marker: i === payloads.length - 1, timestamp: au.ts, keyframeStart: au.irap && i === 0 });
      }
    }
    this.statsIn.packetsOut += this.out.length;
    return this.out;
  }
}
