/**
 * What an RTP receiver tells the sender about one source (RFC 3550 §6.4.1): the
 * reception statistics of one pulled track, kept as packets arrive, for the RTCP
 * receiver reports the RTSP client sends back to the recorder.
 *
 * Sequence tracking is Appendix A.1 (a jump of more than MAX_DROPOUT ahead, or of more
 * than MAX_MISORDER behind, is believed only when the next packet follows it: the
 * source restarted), loss is A.3, jitter A.8. The probation of new sources (A.1's
 * MIN_SEQUENTIAL) is left out: the source of an RTSP session is the one we asked for,
 * not a stranger on a multicast group. A new SSRC starts the statistics over.
 *
 * Pure: arrival times are passed in (ms on any monotonic clock).
 */
import type { ReportBlock } from "../../sfu/rtp/rtcp.ts";

const RTP_SEQ_MOD = 0x10000;
const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;

export class RtpReception {
  private readonly clockRate: number;
  private ssrc = -1;
  private maxSeq = 0;
  private cycles = 0;
  private baseSeq = 0;
  private badSeq = RTP_SEQ_MOD + 1;
  private received = 0;
  private expectedPrior = 0;
  private receivedPrior = 0;
  private transit = 0;
  private jitter = 0;
  private hasTransit = false;
  private lsr = 0;
  private lsrAtMs = 0;

  /** `clockRate`: the track's RTP clock, Hz (for jitter in timestamp units). */
  constructor(clockRate: number) {
    this.clockRate = clockRate;
  }

  /** A valid RTP packet (the router checked version and length) arrived at `arrivalMs`. */
  onRtp(packet: Uint8Array, arrivalMs: number): void {
    const seq = (packet[2]! << 8) | packet[3]!;
    const ts = ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0;
    const ssrc = ((packet[8]! << 24) | (packet[9]! << 16) | (packet[10]! << 8) | packet[11]!) >>> 0;
    if (ssrc !== this.ssrc) {
      this.ssrc = ssrc;
      this.restart(seq);
      this.hasTransit = false;
      this.jitter = 0;
      this.lsr = 0;
    } else if (!this.updateSeq(seq)) return;
    this.received++;
    // A.8: transit time in timestamp units; its change between packets feeds the jitter.
    const arrival = Math.round((arrivalMs * this.clockRate) / 1000);
    const transit = (arrival - ts) | 0;
    if (this.hasTransit) {
      const d = Math.abs((transit - this.transit) | 0);
      this.jitter += (d - this.jitter) / 16;
    }
    this.transit = transit;
    this.hasTransit = true;
  }

  /** An RTCP sender report from `ssrc` with NTP time `ntpSeconds`.`ntpFraction` arrived at `arrivalMs`. */
  onSenderReport(ssrc: number, ntpSeconds: number, ntpFraction: number, arrivalMs: number): void {
    if (ssrc >>> 0 !== this.ssrc) return;
    this.lsr = (((ntpSeconds & 0xffff) << 16) | (ntpFraction >>> 16)) >>> 0;
    this.lsrAtMs = arrivalMs;
  }

  /** The report block for now, or undefined before the first packet. Starts a new report interval. */
  reportBlock(nowMs: number): ReportBlock | undefined {
    if (this.ssrc < 0) return undefined;
    const extendedMax = this.cycles + this.maxSeq;
    const expected = extendedMax - this.baseSeq + 1;
    // A.3: cumulative loss, clamped to the signed 24-bit field (duplicates make it negative).
    const lost = Math.max(-0x800000, Math.min(0x7fffff, expected - this.received));
    const expectedInterval = expected - this.expectedPrior;
    const receivedInterval = this.received - this.receivedPrior;
    this.expectedPrior = expected;
    this.receivedPrior = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fractionLost = expectedInterval === 0 || lostInterval <= 0 ? 0 : Math.min(255, Math.floor((lostInterval * 256) / expectedInterval));
    return {
      ssrc: this.ssrc,
      fractionLost,
      cumulativeLost: lost,
      highestSeq: extendedMax >>> 0,
      jitter: Math.floor(this.jitter) >>> 0,
      lsr: this.lsr,
      // Delay since that SR in 1/65536 s (§6.4.1); 0 when none came.
      dlsr: this.lsr === 0 ? 0 : Math.max(0, Math.min(0xffffffff, Math.round(((nowMs - this.lsrAtMs) * 65536) / 1000))),
    };
  }

  /** A.1 init_seq. */
  private restart(seq: number): void {
    this.baseSeq = seq;
    this.maxSeq = seq;
    this.badSeq = RTP_SEQ_MOD + 1;
    this.cycles = 0;
    this.received = 0;
    this.receivedPrior = 0;
    this.expectedPrior = 0;
  }

  /** A.1 update_seq: false when the packet is not counted (a jump not yet believed). */
  private updateSeq(seq: number): boolean {
    const udelta = (seq - this.maxSeq) & 0xffff;
    if (udelta < MAX_DROPOUT) {
      // In order, with a permissible gap.
      if (seq < this.maxSeq) this.cycles += RTP_SEQ_MOD;
      this.maxSeq = seq;
    } else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
      // A very large jump: believe it when the next packet follows it (the source restarted).
      if (seq !== this.badSeq) {
        this.badSeq = (seq + 1) & 0xffff;
        return false;
      }
      this.restart(seq);
    }
    // Otherwise a duplicate or a packet reordered by up to MAX_MISORDER: counted, nothing moves.
    return true;
  }
}
