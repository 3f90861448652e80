/**
 * What one outgoing stream of a viewer sent, by its sequence number: where each packet's
 * payload lives (the source's ring, which may have changed since), its timestamp and when it
 * was last resent. For RFC 4585 generic NACK answers and a switch keyframe's copies
 * (sfu/viewer.ts): a packet is resent byte for byte with the viewer's own header.
 */
import type { PacketRing } from "./ring.ts";
import { SlotFlag } from "./ring.ts";
import type { RtpHeaderFields } from "./rtp/packet.ts";
import type { ViewerTransport } from "./transport.ts";

export class SentHistory {
  /** Packets remembered (indexed by sequence number modulo it). */
  readonly size: number;
  private readonly seqs: Int32Array;
  private readonly exts: Float64Array;
  private readonly tss: Uint32Array;
  private readonly resentAt: Float64Array;
  private readonly rings: (PacketRing | undefined)[];

  constructor(size: number) {
    this.size = size;
    this.seqs = new Int32Array(size).fill(-1);
    this.exts = new Float64Array(size);
    this.tss = new Uint32Array(size);
    this.resentAt = new Float64Array(size).fill(-Infinity);
    this.rings = new Array<PacketRing | undefined>(size).fill(undefined);
  }

  /** Packet `seq` went out: source packet `ext` of `ring`, with timestamp `ts`. */
  record(seq: number, ext: number, ts: number, ring: PacketRing): void {
    const i = seq % this.size;
    this.seqs[i] = seq;
    this.exts[i] = ext;
    this.tss[i] = ts;
    this.resentAt[i] = -Infinity;
    this.rings[i] = ring;
  }

  /** Is packet `seq` still remembered, and its payload still in its ring? */
  has(seq: number): boolean {
    const i = seq % this.size;
    const ring = this.rings[i];
    return ring !== undefined && this.seqs[i] === seq && ring.has(this.exts[i]!);
  }

  /** When packet `seq` was last resent (−∞: never), if `has(seq)`. */
  lastResentAt(seq: number): number {
    return this.resentAt[seq % this.size]!;
  }

  /**
   * Resends packet `seq` (check `has` first) through `tr` with `payloadType` and `ssrc`, in
   * `header` (reused); returns the bytes sent (RTP header and payload), 0 when not sent.
   * `now` (ms), when given, is remembered as its last resend (a NACK answer; not a copy).
   */
  resend(tr: ViewerTransport, header: RtpHeaderFields, seq: number, payloadType: number, ssrc: number, now?: number): number {
    const i = seq % this.size;
    const ring = this.rings[i]!;
    const ext = this.exts[i]!;
    const payload = ring.payload(ext);
    header.marker = (ring.flags(ext) & SlotFlag.MARKER) !== 0;
    header.payloadType = payloadType;
    header.sequenceNumber = seq;
    header.timestamp = this.tss[i]!;
    header.ssrc = ssrc;
    if (!tr.sendRtp(header, payload)) return 0;
    if (now !== undefined) this.resentAt[i] = now;
    return payload.length + 12;
  }
}
