/**
 * Transport-wide congestion control, the sending side's bookkeeping
 * (draft-holmer-rmcat-transport-wide-cc-extensions-01): every RTP packet a viewer's
 * connection sends on a negotiated m-section gets the next transport-wide sequence number
 * in a header extension, whatever its stream (live, replayed, resent, or a probe's copy),
 * and the browser answers with RTCP feedback (sfu/rtp/rtcp.ts `twcc`) saying when each one
 * arrived. The estimator (sfu/adapt.ts) compares those arrivals with the send times it was
 * told of through `onSent`: a queue on the path shows within one feedback interval (about
 * 100 ms in Chromium) instead of at the next receiver report (about a second).
 */
import type { RtpHeaderFields } from "./rtp/packet.ts";

/** The header extension's URI in SDP (RFC 8285 `a=extmap`). */
export const TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

export class TransportCcStamper {
  /** The negotiated extension id (1–14, one-byte header form). */
  readonly id: number;
  private readonly ssrcs: ReadonlySet<number>;
  private next = 0;
  /**
   * Told of every stamped packet, as it is handed to the socket: its transport-wide sequence
   * number and payload bytes. Set by whoever estimates the link (the viewer's adaptation).
   */
  onSent: ((seq: number, payloadBytes: number, copy: boolean) => void) | undefined;
  /**
   * Set while the sender writes copies of packets it sent before (a probe's, a keyframe's
   * second copy): a receiver drops a copy whose original arrived before its feedback sees it.
   */
  copy = false;

  /** `ssrcs`: the outgoing streams whose m-section negotiated the extension (the others are not stamped). */
  constructor(id: number, ssrcs: Iterable<number>) {
    if (!Number.isInteger(id) || id < 1 || id > 14) throw new RangeError(`transport-cc extension id ${id} outside 1–14`);
    this.id = id;
    this.ssrcs = new Set([...ssrcs].map((s) => s >>> 0));
  }

  /**
   * Sets `h.transportSeq` (and its id) for a packet about to be written, or clears it for a
   * stream that did not negotiate the extension. Call `unstamp` once the header is written.
   */
  stamp(h: RtpHeaderFields, payloadBytes: number): void {
    if (!this.ssrcs.has(h.ssrc >>> 0)) {
      h.transportSeq = -1;
      return;
    }
    const seq = this.next;
    this.next = (seq + 1) & 0xffff;
    h.transportCcId = this.id;
    h.transportSeq = seq;
    this.onSent?.(seq, payloadBytes, this.copy);
  }

  /** The caller's header is reused for packets of other connections: no number left on it. */
  unstamp(h: RtpHeaderFields): void {
    h.transportSeq = -1;
  }
}
