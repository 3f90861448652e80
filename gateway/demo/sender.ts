/**
 * Per-session, per-track RTP sending for the demo recorder: walks the clip's shared
 * packet schedule, stamps sequence number, timestamp and SSRC into a small header, and
 * hands header + shared payload to the transport. Loops with continuous timestamps and
 * sequence numbers. No timers here: the recorder's single tick calls `pump`.
 */

import type { RtpHeaderFields } from "../../sfu/rtp/packet.ts";
import { writeRtpHeader } from "../../sfu/rtp/packet.ts";
import { compound, serializeSdes, serializeSr, SdesItemType } from "../../sfu/rtp/rtcp.ts";
import { ntpFromUnixMs } from "../../sfu/rtp/ntp.ts";
import type { ClipTrack } from "./clip.ts";

/** Where a track's packets go (TCP interleaved or UDP). */
export interface TrackTransport {
  /** False while the transport is backed up: due packets are skipped, not queued. */
  writable(): boolean;
  /** Sends one RTP packet; `header` is only valid during the call. */
  rtp(header: Buffer, payload: Buffer): void;
  rtcp(packet: Buffer): void;
}

/**
 * Hands out never-reused header slices from 8 KiB slabs: a header queued in a socket
 * must not be overwritten, yet a fresh Buffer per packet is needless garbage.
 */
export class HeaderSlab {
  private slab = Buffer.allocUnsafe(8192);
  private used = 0;
  take(n: number): Buffer {
    if (this.used + n > this.slab.length) {
      this.slab = Buffer.allocUnsafe(8192);
      this.used = 0;
    }
    const b = this.slab.subarray(this.used, this.used + n);
    this.used += n;
    return b;
  }
}

export interface TrackSenderOptions {
  track: ClipTrack;
  ssrc: number;
  /** First sequence number (random per RFC 3550 §5.1). */
  seq: number;
  /** RTP timestamp at elapsed time 0 (random per RFC 3550 §5.1). */
  tsBase: number;
  cname: string;
}

export class TrackSender {
  readonly ssrc: number;
  /** Packets and payload octets sent (for SR, RFC 3550 §6.4.1). */
  packets = 0;
  octets = 0;
  /** Packets skipped because the transport was backed up. */
  skipped = 0;
  transport: TrackTransport | null = null;
  private readonly track: ClipTrack;
  private readonly tsBase: number;
  private readonly cname: string;
  private seq: number;
  private index = 0;
  private loop = 0;
  private waitKeyframe = false;
  private readonly fields: RtpHeaderFields;
  private readonly header = Buffer.alloc(12);
  private readonly loopMs: number;

  constructor(o: TrackSenderOptions) {
    this.track = o.track;
    this.ssrc = o.ssrc >>> 0;
    this.seq = o.seq & 0xffff;
    this.tsBase = o.tsBase >>> 0;
    this.cname = o.cname;
    this.loopMs = (o.track.loopTs * 1000) / o.track.clockRate;
    this.fields = { marker: false, payloadType: o.track.payloadType, sequenceNumber: 0, timestamp: 0, ssrc: this.ssrc };
  }

  /** The sequence number of the next packet (for RTP-Info). */
  nextSeq(): number {
    return this.seq;
  }

  /** The RTP timestamp of the next packet to send (for RTP-Info). */
  nextTimestamp(): number {
    const p = this.track.packets[this.index]!;
    return (this.tsBase + this.loop * this.track.loopTs + p.ts) >>> 0;
  }

  /** RTP time corresponding to `elapsedMs` of play time (for SR). */
  rtpTimeAt(elapsedMs: number): number {
    return (this.tsBase + Math.floor((elapsedMs * this.track.clockRate) / 1000)) >>> 0;
  }

  /** Sends every packet due by `elapsedMs` of play time. Returns how many were sent. */
  pump(elapsedMs: number): number {
    const t = this.transport;
    if (!t) return 0;
    const pkts = this.track.packets;
    let sent = 0;
    for (;;) {
      const p = pkts[this.index]!;
      if (this.loop * this.loopMs + p.atMs > elapsedMs) break;
      if (!t.writable()) {
        // Backed up: drop rather than queue, and resume video only at a keyframe.
        this.waitKeyframe = true;
        this.skipped++;
      } else if (this.waitKeyframe && !p.keyframe && this.track.clockRate === 90000) {
        this.skipped++;
      } else {
        this.waitKeyframe = false;
        const f = this.fields;
        f.marker = p.marker;
        f.sequenceNumber = this.seq;
        f.timestamp = (this.tsBase + this.loop * this.track.loopTs + p.ts) >>> 0;
        writeRtpHeader(this.header, f);
        t.rtp(this.header, p.payload);
        this.seq = (this.seq + 1) & 0xffff;
        this.packets++;
        this.octets += p.payload.length;
        sent++;
      }
      if (++this.index === pkts.length) {
        this.index = 0;
        this.loop++;
      }
    }
    return sent;
  }

  /** Sends SR + SDES(CNAME) (RFC 3550 §6.1 compound) describing `elapsedMs`, at wall time `wallMs`. */
  sendReport(elapsedMs: number, wallMs: number): void {
    if (!this.transport || this.packets === 0) return;
    const ntp = ntpFromUnixMs(wallMs);
    this.transport.rtcp(
      compound([
        serializeSr({
          ssrc: this.ssrc,
          ntpSeconds: ntp.seconds,
          ntpFraction: ntp.fraction,
          rtpTimestamp: this.rtpTimeAt(elapsedMs),
          packetCount: this.packets,
          octetCount: this.octets,
        }),
        serializeSdes([{ ssrc: this.ssrc, items: [{ type: SdesItemType.CNAME, value: this.cname }] }]),
      ]),
    );
  }
}
