/**
 * One camera's AAC sound converted to Opus by ONE ffmpeg child, while wanted.
 *
 * RTP in (the camera's), RTP out (Opus, 48 kHz, the camera's SSRC, timestamps on the
 * camera's clock through a ClockMap), so the camera's RTCP sender reports, translated by the
 * same map, still tie sound to picture. ffmpeg reads ADTS on stdin and writes Ogg Opus on
 * stdout (one 20 ms packet per page); see aac.ts for why we depacketize ourselves.
 *
 * ffmpeg gives its output back in bursts (every Opus packet of an AAC frame at once, one
 * to two frames late): each packet is held until a steady delay after its content reached us
 * (pacer.ts), so the browser receives sound at the camera's own cadence. The delay is two AAC
 * frames and one Opus frame plus `delayMarginMs` (ffmpeg's lag on a quiet machine), raised to ffmpeg's
 * measured lag plus the margin, at most `delayMs`, only when sound keeps going out late: the
 * browser takes any change of it for a change of the network's delay.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import type { Logger } from "../../config/log.ts";
import { emptyRtpHeader, readRtpHeader, writeRtpHeader } from "../../sfu/rtp/packet.ts";
import { AacDepacketizer, adtsHeader, type AacDropReason, type AacStreamConfig } from "./aac.ts";
import { ClockMap, OggReader, opusHeadPreSkip, opusPacketSamples, OpusStamper } from "./ogg-opus.ts";
import { FollowDelay, LagWatch, Pacer } from "./pacer.ts";
import { ChildSupervisor, type ChildStatus, type SpawnFn } from "./supervisor.ts";
import { realTimers, type Timers } from "../rtsp/timers.ts";

/**
 * Until ffmpeg has caught up after its start (an Opus packet whose input reached us at most
 * STARTUP_MAX_LAG_MS before), older output is dropped: ffmpeg's start-up delay would otherwise
 * come out as a burst of old sound that the browser's jitter buffer keeps as extra delay for
 * many seconds (sound a second or two behind the picture). Past STARTUP_GIVE_UP_MS of output
 * the lag is accepted as it is.
 */
const STARTUP_MAX_LAG_MS = 250;
const STARTUP_GIVE_UP_MS = 10_000;

/** ffmpeg's lag is judged over windows this long, ms. */
const LAG_WINDOW_MS = 10_000;
/** The delay is raised after a window in which more than this share of the sound went out late. */
const LATE_SHARE = 0.05;
/** A raised delay is reached at this much of the time passed (50 ms a second), so the picture does not jump. */
const DELAY_RISE = 0.05;
/**
 * For this long after ffmpeg caught up (ms) its lag is not measured, and output later than the
 * pace delay is dropped: it still hands back what piled up while it started, in bursts.
 */
const WARMUP_MS = 500;
/**
 * Sound that would leave more than this long after its time is dropped, not sent (ms). Late
 * sound is useless to a listener, and worse: a burst of it (this process or ffmpeg held up by
 * a busy machine for a few hundred ms) made Chromium raise its sound buffer from 200 to 560 ms
 * and left the sound 300–400 ms behind the picture for ten seconds. Dropped, it is a short gap
 * that the browser conceals, and the sound stays where the picture is.
 */
const LATE_DROP_MS = 80;

/** Opus frame duration asked of ffmpeg, ms. */
const OPUS_FRAME_MS = 20;

/** The payload type the Opus output carries (what the SFU source is told). */
export const OPUS_PAYLOAD_TYPE = 111;

export interface AacToOpusOptions {
  stream: AacStreamConfig;
  ffmpeg: string;
  opusBitrateKbps: number;
  /** Receives each Opus RTP packet (valid during the call). */
  out: (packet: Buffer) => void;
  log: Logger;
  supervisor: { restartMinMs: number; restartMaxMs: number; stableMs: number; stderrLines: number; onChange?: (() => void) | undefined };
  /** Encoded input waiting for ffmpeg, bytes, past which input is dropped. */
  maxPendingBytes: number;
  /** Each output packet leaves at most this long after its content reached us, ms (later output is sent at once). */
  delayMs: number;
  /** Added to ffmpeg's measured lag to make the delay, ms. */
  delayMarginMs: number;
  timers?: Timers;
  spawn?: SpawnFn;
}

export interface TranscodeCounters {
  /** Access units (or frames) handed to ffmpeg. */
  unitsIn: number;
  /** Packets produced for viewers. */
  packetsOut: number;
  /** Input dropped while ffmpeg was not running (nobody watching, restarting). */
  notRunning: number;
  /** Input dropped because ffmpeg did not keep up. */
  backlog: number;
  /** Output dropped because it could not be timed (nothing fed, malformed). */
  untimed: number;
  /** Output dropped because ffmpeg's start-up made it late. */
  startupLate: number;
  /** Output dropped because it would have left more than `LATE_DROP_MS` after its time (ffmpeg or this process held up). */
  late: number;
}

export class AacToOpus {
  readonly counters: TranscodeCounters = { unitsIn: 0, packetsOut: 0, notRunning: 0, backlog: 0, untimed: 0, startupLate: 0, late: 0 };
  private startedAt = 0;
  private caughtUp = false;
  private caughtUpAt = 0;
  private readonly o: AacToOpusOptions;
  private readonly depack: AacDepacketizer;
  private readonly clock: ClockMap;
  private readonly supervisor: ChildSupervisor;
  private readonly hdr = emptyRtpHeader();
  private stamper: OpusStamper | undefined;
  private ogg: OggReader | undefined;
  private stdin: ChildProcessWithoutNullStreams["stdin"] | undefined;
  private lastSeq = -1;
  private ssrc = 0;
  private seq = Math.floor(Math.random() * 0x10000);
  private readonly outBuf = Buffer.allocUnsafe(12 + 1500);
  private readonly timers: Timers;
  private readonly pacer: Pacer;
  private readonly paceClock: FollowDelay;
  private readonly lag: LagWatch;

  constructor(o: AacToOpusOptions) {
    this.o = o;
    this.timers = o.timers ?? realTimers;
    // The first delay, before any lag was measured: ffmpeg hands an AAC frame's sound back once
    // the next frame is in (one frame), a frame's last sample reached us with its first (one
    // more), and an Opus packet leaves once its 20 ms are in. Measured lag here: 95th percentile
    // 87 ms for 44.1 kHz (two AAC frames are 46 ms), 99th percentile 138 ms for 16 kHz (128 ms).
    const asc = o.stream.asc;
    const frameMs = asc ? (1000 * asc.frameLength) / asc.sampleRate : (1000 * 1024) / o.stream.clockRate;
    const initialMs = Math.min(o.delayMs, Math.round(2 * frameMs + OPUS_FRAME_MS + o.delayMarginMs));
    this.lag = new LagWatch({ windowMs: LAG_WINDOW_MS, marginMs: o.delayMarginMs, maxMs: o.delayMs, initialMs, lateShare: LATE_SHARE });
    this.paceClock = new FollowDelay(() => this.lag.delayMs(), { riseSlew: DELAY_RISE, initialMs });
    this.pacer = new Pacer({
      plan: this.paceClock,
      maxQueue: 256,
      timers: this.timers,
      dropLateMs: LATE_DROP_MS,
      onLate: () => void this.counters.late++,
      send: (packet) => {
        try {
          o.out(packet);
        } catch (err) {
          o.log.warn("opus output failed", { err });
        }
      },
    });
    this.depack = new AacDepacketizer(o.stream);
    this.clock = new ClockMap(o.stream.clockRate);
    this.supervisor = new ChildSupervisor({
      ...o.supervisor,
      command: o.ffmpeg,
      args: () => this.args(),
      log: o.log,
      timers: o.timers,
      spawn: o.spawn,
      onStart: (child) => this.wire(child),
      onEnd: () => this.unwire(),
    });
  }

  /** The delay the output is paced at, ms (kept while ffmpeg is not running, so a restart does not move the picture). */
  paceDelayMs(): number {
    return this.paceClock.delayMs;
  }

  /** The camera's RTP timestamp on the Opus clock (for its sender reports). */
  mapTimestamp(ts: number): number {
    return this.clock.map(ts);
  }

  drops(): Record<AacDropReason, number> {
    return this.depack.drops;
  }

  status(): ChildStatus {
    return this.supervisor.status();
  }

  setWanted(wanted: boolean): void {
    this.supervisor.setWanted(wanted);
  }

  /** A new upstream session: forget fragments and sequence state (the clock map stays). */
  resetSession(): void {
    this.depack.resetSession();
    this.lastSeq = -1;
  }

  /** One camera RTP packet (valid only during the call). Never throws. */
  push(packet: Buffer): void {
    const h = this.hdr;
    if (!readRtpHeader(packet, h)) {
      this.depack.drops.malformed++;
      return;
    }
    const lost = this.lastSeq >= 0 && ((h.sequenceNumber - this.lastSeq) & 0xffff) !== 1;
    this.lastSeq = h.sequenceNumber;
    this.ssrc = h.ssrc;
    const aus = this.depack.push(packet.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength), h.timestamp, h.marker, lost);
    if (aus.length === 0) return;
    const stdin = this.stdin;
    const asc = this.depack.asc;
    if (!stdin || !this.stamper || !asc) {
      this.counters.notRunning += aus.length;
      return;
    }
    const dur = this.depack.auDuration();
    const now = this.timers.now();
    for (const au of aus) {
      if (stdin.writableLength > this.o.maxPendingBytes) {
        this.counters.backlog++;
        continue;
      }
      this.stamper.input(au.ts, dur, now);
      stdin.write(Buffer.concat([adtsHeader(asc, au.data.length), au.data]));
      this.counters.unitsIn++;
    }
  }

  close(): Promise<void> {
    this.pacer.close();
    return this.supervisor.close();
  }

  private args(): string[] {
    const channels = Math.min(2, this.depack.asc?.channelConfig ?? 2) || 2;
    return [
      "-hide_banner", "-loglevel", "warning",
      // Start at once: no probing beyond the first frames of a stream we describe ourselves.
      "-fflags", "+nobuffer", "-probesize", "32", "-analyzeduration", "0",
      "-f", "aac", "-i", "pipe:0",
      "-vn", "-ac", String(channels), "-ar", "48000",
      "-c:a", "libopus", "-b:a", `${this.o.opusBitrateKbps}k`, "-frame_duration", String(OPUS_FRAME_MS), "-application", "audio",
      "-f", "ogg", "-page_duration", "20000", "-flush_packets", "1", "pipe:1",
    ];
  }

  private wire(child: ChildProcessWithoutNullStreams): void {
    this.stamper = new OpusStamper(this.clock, this.o.stream.clockRate);
    this.startedAt = this.timers.now();
    this.pacer.reset();
    this.lag.reset();
    this.caughtUp = false;
    this.ogg = new OggReader();
    this.stdin = child.stdin;
    const stamper = this.stamper;
    const ogg = this.ogg;
    child.stdout.on("data", (chunk: Buffer) => {
      if (this.stamper !== stamper) return;
      for (const p of ogg.push(chunk)) this.onOpus(stamper, p.data);
    });
  }

  private unwire(): void {
    this.stdin = undefined;
    this.stamper = undefined;
    this.ogg = undefined;
    this.pacer.reset();
  }

  private onOpus(stamper: OpusStamper, data: Buffer): void {
    const pre = opusHeadPreSkip(data);
    if (pre !== undefined) {
      stamper.setPreSkip(pre);
      return;
    }
    if (data.length >= 8 && data.toString("latin1", 0, 8) === "OpusTags") return;
    const samples = opusPacketSamples(data);
    const ts = samples > 0 ? stamper.output(samples) : undefined;
    if (ts === undefined || data.length > 1500) {
      this.counters.untimed++;
      return;
    }
    const now = this.timers.now();
    const lag = now - stamper.lastInputAt;
    if (!this.caughtUp) {
      if (lag <= STARTUP_MAX_LAG_MS) this.caughtUp = true;
      else if (now - this.startedAt < STARTUP_GIVE_UP_MS) {
        this.counters.startupLate++;
        return;
      } else {
        this.caughtUp = true;
        this.o.log.warn("ffmpeg's sound stays late", { lagMs: Math.round(lag) });
      }
      this.caughtUpAt = now;
    }
    if (now - this.caughtUpAt >= WARMUP_MS) this.lag.note(lag, now);
    else if (lag > this.paceClock.delayMs) {
      this.counters.startupLate++;
      return;
    }
    const buf = this.outBuf;
    this.seq = (this.seq + 1) & 0xffff;
    writeRtpHeader(buf, { marker: false, payloadType: OPUS_PAYLOAD_TYPE, sequenceNumber: this.seq, timestamp: ts, ssrc: this.ssrc });
    data.copy(buf, 12);
    this.counters.packetsOut++;
    this.pacer.push(buf.subarray(0, 12 + data.length), stamper.lastInputAt);
  }
}
