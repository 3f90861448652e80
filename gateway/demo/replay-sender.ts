/**
 * One replay session's video sender for the demo recorder: walks the demo recording (the clip
 * looped against the wall clock, `replay.ts`) from a requested time at a requested speed, in
 * either direction, and stamps every packet with the ONVIF header extension carrying its
 * frame's recorded time. No timers: the recorder's tick calls `pump`.
 *
 * What it does, as an ONVIF recorder would:
 *  - a start time lands on the key frame at or before it (the picture must be decodable);
 *  - forward at any speed sends every frame (`Frames: intra` sends key frames only);
 *  - reverse sends key frames only, going back (a P-frame cannot be decoded backwards);
 *  - `Rate-Control: no` sends as fast as the connection takes it, otherwise frames are paced at
 *    their recorded spacing divided by the speed;
 *  - the recording ends at "now": forward play catches up with the live edge and then follows it;
 *  - the first frame after a (re)start carries D (discontinuity), the last of a range T (terminal).
 * Replay never drops a frame: when the connection backs up it waits.
 */

import { writeRtpHeader, type RtpHeaderFields } from "../../sfu/rtp/packet.ts";
import { compound, serializeSdes, serializeSr, SdesItemType } from "../../sfu/rtp/rtcp.ts";
import { ntpFromUnixMs } from "../../sfu/rtp/ntp.ts";
import type { ClipTrack } from "./clip.ts";
import { ONVIF_EXTENSION_BYTES, setExtensionBit, writeOnvifExtension, type DemoRecording, type ReplayRequest } from "./replay.ts";
import type { TrackTransport } from "./sender.ts";

/** Most frames one `pump` sends (Rate-Control: no, or catching up after a stall). */
const MAX_FRAMES_PER_PUMP = 50;

export interface ReplaySenderOptions {
  /** The clip's video track; its frames in order are the recording's loop. */
  track: ClipTrack;
  recording: DemoRecording;
  ssrc: number;
  seq: number;
  /** RTP timestamp of the first frame played. */
  tsBase: number;
  cname: string;
}

/** Where a PLAY put the sender. */
export interface ReplayPosition {
  /** Recorded time of the first frame to be sent, epoch ms. */
  startMs: number;
  /** First sequence number and RTP timestamp (RTP-Info). */
  seq: number;
  rtptime: number;
}

export class ReplaySender {
  readonly ssrc: number;
  packets = 0;
  octets = 0;
  /** True once the last frame of the requested range has gone (T set). */
  done = false;
  transport: TrackTransport | null = null;
  private readonly track: ClipTrack;
  private readonly rec: DemoRecording;
  private readonly tsBase: number;
  private readonly cname: string;
  /** First packet index of each clip frame, plus one past the end. */
  private readonly frameStart: number[] = [];
  private seq: number;
  private readonly header = Buffer.alloc(12 + ONVIF_EXTENSION_BYTES);
  private readonly fields: RtpHeaderFields;
  /** Frame number that RTP timestamp `tsBase` stands for (set at the first PLAY). */
  private baseFrame: number | null = null;
  /** Next frame number to send. */
  private next = 0;
  private started = false;
  private anchorNow = 0;
  private anchorFrame = 0;
  private scale = 1;
  private rateControl = true;
  private intraOnly = false;
  private intraIntervalMs = 0;
  private endMs: number | undefined;
  private cseq = 0;
  private discontinuity = true;
  /** Last frame sent, for sender reports. */
  private lastFrame: number | null = null;

  constructor(o: ReplaySenderOptions) {
    this.track = o.track;
    this.rec = o.recording;
    this.ssrc = o.ssrc >>> 0;
    this.seq = o.seq & 0xffff;
    this.tsBase = o.tsBase >>> 0;
    this.cname = o.cname;
    this.fields = { marker: false, payloadType: o.track.payloadType, sequenceNumber: 0, timestamp: 0, ssrc: this.ssrc };
    let lastTs = -1;
    o.track.packets.forEach((p, i) => {
      if (p.ts !== lastTs) this.frameStart.push(i);
      lastTs = p.ts;
    });
    this.frameStart.push(o.track.packets.length);
  }

  /** Frames in the clip (one loop of the recording). */
  get frames(): number {
    return this.frameStart.length - 1;
  }

  /** Playback speed of the current PLAY. */
  get speed(): number {
    return this.scale;
  }

  /**
   * Starts, repositions (a PLAY with a Range) or resumes (a PLAY without one) at `now` (monotonic
   * ms), with the recording window of wall time `wallNow`.
   */
  play(req: ReplayRequest, cseq: number, now: number, wallNow: number): ReplayPosition {
    const win = this.rec.window(wallNow);
    const turned = this.started && Math.sign(req.scale) !== Math.sign(this.scale);
    const intraOnly = req.frames === "intra" || req.scale < 0;
    let n: number;
    let repositioned = true;
    if (req.start !== undefined || !this.started) {
      // No position asked before: the beginning of the recording.
      const start = Math.min(Math.max(req.start ?? win.from, win.from), win.to);
      n = this.rec.keyAtOrBefore(this.rec.frameNumber(start));
      if (this.rec.timeOf(n) < win.from) n = this.rec.keyAfter(n); // the window starts mid-GOP
    } else if (turned || (intraOnly && !this.rec.isKey(this.next))) {
      n = this.rec.keyAtOrBefore(this.next);
    } else {
      // Resume, or a new speed in the same direction: go on with the next frame, no jump.
      n = this.next;
      repositioned = false;
    }
    this.baseFrame ??= n;
    this.next = n;
    this.started = true;
    this.anchorNow = now;
    this.anchorFrame = n;
    this.scale = req.scale;
    this.rateControl = req.rateControl;
    this.intraOnly = intraOnly;
    this.intraIntervalMs = req.intraIntervalMs ?? 0;
    this.endMs = req.end;
    this.cseq = cseq & 0xff;
    this.done = false;
    if (repositioned) this.discontinuity = true;
    return { startMs: this.rec.timeOf(n), seq: this.seq, rtptime: this.timestampOf(n) };
  }

  /** The RTP timestamp of frame number `n` (90 kHz, from the recorded time). */
  timestampOf(n: number): number {
    const base = this.baseFrame ?? n;
    return (this.tsBase + Math.round((this.rec.timeOf(n) - this.rec.timeOf(base)) * 90)) >>> 0;
  }

  /** Sends the frames due at `now` (monotonic ms) with the recording window of `wallNow`. Returns packets sent. */
  pump(now: number, wallNow: number): number {
    const t = this.transport;
    if (!t || !this.started || this.done) return 0;
    let sent = 0;
    const win = this.rec.window(wallNow);
    for (let i = 0; i < MAX_FRAMES_PER_PUMP; i++) {
      const at = this.rec.timeOf(this.next);
      if (this.scale > 0 && at > win.to) break; // the live edge: wait for it to be recorded
      if (this.rateControl) {
        const due = Math.abs(at - this.rec.timeOf(this.anchorFrame)) / Math.abs(this.scale);
        if (due > now - this.anchorNow) break;
      }
      if (!t.writable()) break; // replay waits rather than drop
      const following = this.advance(this.next);
      const fAt = this.rec.timeOf(following);
      const terminal = this.scale > 0 ? this.endMs !== undefined && fAt > this.endMs : fAt < Math.max(win.from, this.endMs ?? -Infinity);
      sent += this.sendFrame(this.next, terminal);
      this.next = following;
      if (terminal) {
        this.done = true;
        break;
      }
    }
    return sent;
  }

  /** The frame after `n` in the current direction and frame selection. */
  private advance(n: number): number {
    if (this.scale > 0 && !this.intraOnly) return n + 1;
    let k = n;
    const from = this.rec.timeOf(n);
    // Key frames only; `Frames: intra/<ms>` spaces them at least that far apart in recorded time.
    for (let guard = 0; guard < 100_000; guard++) {
      k = this.scale > 0 ? this.rec.keyAfter(k) : this.rec.keyAtOrBefore(k - 1);
      if (Math.abs(this.rec.timeOf(k) - from) >= this.intraIntervalMs) break;
    }
    return k;
  }

  private sendFrame(n: number, terminal: boolean): number {
    const t = this.transport!;
    const idx = this.rec.clipIndex(n);
    const first = this.frameStart[idx]!;
    const last = this.frameStart[idx + 1]!;
    const pkts = this.track.packets;
    const f = this.fields;
    f.timestamp = this.timestampOf(n);
    const timeMs = this.rec.timeOf(n);
    const clean = this.rec.isKey(n);
    for (let i = first; i < last; i++) {
      const p = pkts[i]!;
      f.marker = p.marker;
      f.sequenceNumber = this.seq;
      writeRtpHeader(this.header, f);
      setExtensionBit(this.header);
      // ONVIF: every packet of the access unit carries its time; D on the first after a jump, T and E on the last.
      writeOnvifExtension(this.header, 12, {
        time: timeMs,
        cleanPoint: clean,
        discontinuity: this.discontinuity,
        end: terminal && i === last - 1,
        terminal: terminal && i === last - 1,
        cseq: this.cseq,
      });
      t.rtp(this.header, p.payload);
      this.seq = (this.seq + 1) & 0xffff;
      this.packets++;
      this.octets += p.payload.length;
    }
    this.discontinuity = false;
    this.lastFrame = n;
    return last - first;
  }

  /** The sequence number of the next packet. */
  nextSeq(): number {
    return this.seq;
  }

  /**
   * SR + SDES (RFC 3550 §6.4.1). Its NTP time is the recorded time of the last frame sent and its
   * RTP time that frame's timestamp: in replay, the pair maps the stream to the recording's clock.
   */
  sendReport(): void {
    if (!this.transport || this.lastFrame === null) return;
    const ntp = ntpFromUnixMs(this.rec.timeOf(this.lastFrame));
    this.transport.rtcp(
      compound([
        serializeSr({ ssrc: this.ssrc, ntpSeconds: ntp.seconds, ntpFraction: ntp.fraction, rtpTimestamp: this.timestampOf(this.lastFrame), packetCount: this.packets, octetCount: this.octets }),
        serializeSdes([{ ssrc: this.ssrc, items: [{ type: SdesItemType.CNAME, value: this.cname }] }]),
      ]),
    );
  }
}
