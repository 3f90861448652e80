/**
 * The ingest's packet path: validates what a recorder sends (interleaved channels or UDP
 * sockets) and pushes it, as-is, into the MediaSink. Pure: no sockets, no timers.
 *
 * It also keeps each track's reception statistics (reception.ts) for the receiver reports
 * the client sends back.
 *
 * Packets that arrive between SETUP and the PLAY answer (servers start sending as soon as
 * they have replied, and the first packets carry the keyframe) are copied into a bounded
 * queue and delivered right after `start()`, so the sink always sees setTracks first.
 */
import type { MediaSink } from "../../sfu/types.ts";
import { RtpReception } from "./reception.ts";

export interface RouterStats {
  /** Valid RTP packets received. */
  packetsIn: number;
  /** Bytes of those packets. */
  bytesIn: number;
  /** Valid RTCP packets received. */
  rtcpIn: number;
  /** Drops of malformed input (sum of the first three reasons below). */
  malformed: number;
  drops: {
    /** Interleaved frame on a channel no SETUP assigned. */
    unknownChannel: number;
    /** Not RTP: version ≠ 2, shorter than 12 bytes, or CSRC list past the end. */
    badRtp: number;
    /** Not RTCP: version ≠ 2, shorter than 8 bytes, or a non-RTCP packet type. */
    badRtcp: number;
    /** UDP datagram from an address other than the recorder's. */
    foreign: number;
    /** Queue before PLAY completed was full. */
    queueOverflow: number;
    /** The sink threw (a bug there; counted so the packet loop keeps going). */
    sinkError: number;
  };
}

const MAX_QUEUE_PACKETS = 2048;
const MAX_QUEUE_BYTES = 4 << 20;

export class MediaRouter {
  private readonly sink: Pick<MediaSink, "pushRtp" | "pushRtcp">;
  /** Interleaved channel → track index (-1 = unassigned) and whether it carries RTCP. */
  private readonly channelTrack = new Int16Array(256).fill(-1);
  private readonly channelRtcp = new Uint8Array(256);
  private delivering = false;
  private stopped = false;
  private queue: { track: number; rtcp: boolean; data: Buffer }[] = [];
  private queueBytes = 0;
  readonly stats: RouterStats = {
    packetsIn: 0,
    bytesIn: 0,
    rtcpIn: 0,
    malformed: 0,
    drops: { unknownChannel: 0, badRtp: 0, badRtcp: 0, foreign: 0, queueOverflow: 0, sinkError: 0 },
  };
  /** Called when the sink throws; for logging (rate-limit there). */
  onSinkError: (err: unknown) => void = () => {};
  /** Called when a track's RTCP carries a BYE (RFC 3550 §6.6): the recorder ended that stream. */
  onBye: (track: number) => void = () => {};
  private readonly receptions: (RtpReception | undefined)[] = [];
  private readonly rtcpChannels: number[] = [];
  private readonly now: () => number;

  constructor(sink: Pick<MediaSink, "pushRtp" | "pushRtcp">, now: () => number = () => performance.now()) {
    this.sink = sink;
    this.now = now;
  }

  /** Keeps reception statistics for `track`, whose RTP clock runs at `clockRate` Hz. */
  receive(track: number, clockRate: number): void {
    this.receptions[track] = new RtpReception(clockRate);
  }

  /** The reception statistics of `track` (see receive). */
  reception(track: number): RtpReception | undefined {
    return this.receptions[track];
  }

  /** The interleaved channel carrying `track`'s RTCP, or undefined (UDP, or not set up). */
  rtcpChannel(track: number): number | undefined {
    return this.rtcpChannels[track];
  }

  /** Assigns interleaved channels (RFC 2326 §12.39 `interleaved=rtp-rtcp`) to a track. */
  mapChannels(track: number, rtp: number, rtcp: number): void {
    this.channelTrack[rtp] = track;
    this.channelRtcp[rtp] = 0;
    this.channelTrack[rtcp] = track;
    this.channelRtcp[rtcp] = 1;
    this.rtcpChannels[track] = rtcp;
  }

  /** Whether an interleaved channel is already assigned. */
  channelInUse(channel: number): boolean {
    return this.channelTrack[channel]! >= 0;
  }

  /** PLAY succeeded and the sink knows the tracks: flush the queue, then deliver directly. */
  start(): void {
    if (this.stopped || this.delivering) return;
    this.delivering = true;
    const q = this.queue;
    this.queue = [];
    this.queueBytes = 0;
    for (const p of q) this.deliver(p.track, p.rtcp, p.data);
  }

  /** Stop delivering (the session ended); later packets are ignored. */
  stop(): void {
    this.stopped = true;
    this.delivering = false;
    this.queue = [];
    this.queueBytes = 0;
  }

  onInterleaved(channel: number, data: Buffer): void {
    const track = this.channelTrack[channel]!;
    if (track < 0) {
      this.stats.drops.unknownChannel++;
      this.stats.malformed++;
      return;
    }
    if (this.channelRtcp[channel]) this.onRtcp(track, data);
    else this.onRtp(track, data);
  }

  onRtp(track: number, data: Buffer): void {
    const len = data.length;
    // RFC 5761 §4: a second byte of 192–223 (payload types 64–95) is RTCP multiplexed onto the RTP path.
    if (len >= 2 && data[1]! >= 192 && data[1]! <= 223) {
      this.onRtcp(track, data);
      return;
    }
    if (len < 12 || data[0]! >> 6 !== 2 || 12 + 4 * (data[0]! & 0x0f) > len) {
      this.stats.drops.badRtp++;
      this.stats.malformed++;
      return;
    }
    this.stats.packetsIn++;
    this.stats.bytesIn += len;
    this.receptions[track]?.onRtp(data, this.now());
    this.route(track, false, data);
  }

  onRtcp(track: number, data: Buffer): void {
    // RFC 3550 §6.4.1 / RFC 5761 §4: version 2, packet types 192–223, at least a header and SSRC.
    if (data.length < 8 || data[0]! >> 6 !== 2 || data[1]! < 192 || data[1]! > 223) {
      this.stats.drops.badRtcp++;
      this.stats.malformed++;
      return;
    }
    this.stats.rtcpIn++;
    // A compound starts with its SR (§6.1): its NTP time is what our next report echoes as LSR.
    if (data[1] === 200 && data.length >= 20) this.receptions[track]?.onSenderReport(data.readUInt32BE(4), data.readUInt32BE(8), data.readUInt32BE(12), this.now());
    const bye = this.delivering && hasBye(data);
    this.route(track, true, data);
    if (bye) this.onBye(track);
  }

  /** A UDP datagram from a foreign address was dropped. */
  foreign(): void {
    this.stats.drops.foreign++;
  }

  private route(track: number, rtcp: boolean, data: Buffer): void {
    if (this.delivering) {
      this.deliver(track, rtcp, data);
      return;
    }
    if (this.stopped) return;
    if (this.queue.length >= MAX_QUEUE_PACKETS || this.queueBytes + data.length > MAX_QUEUE_BYTES) {
      this.stats.drops.queueOverflow++;
      return;
    }
    this.queue.push({ track, rtcp, data: Buffer.from(data) }); // the caller's buffer is only valid now
    this.queueBytes += data.length;
  }

  private deliver(track: number, rtcp: boolean, data: Buffer): void {
    try {
      if (rtcp) this.sink.pushRtcp(track, data);
      else this.sink.pushRtp(track, data);
    } catch (err) {
      this.stats.drops.sinkError++;
      this.onSinkError(err);
    }
  }
}

/** Whether an RTCP compound holds a BYE (packet type 203), walking its length fields (RFC 3550 §6.1). */
export function hasBye(data: Buffer): boolean {
  let off = 0;
  while (off + 4 <= data.length) {
    if (data[off]! >> 6 !== 2) return false;
    if (data[off + 1] === 203) return true;
    off += 4 * (data.readUInt16BE(off + 2) + 1);
  }
  return false;
}
