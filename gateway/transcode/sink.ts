/**
 * Between a camera's ingest and its SFU source: tracks the SFU forwards as they are pass
 * straight through; AAC and H.265 tracks go through one ffmpeg each (aac-opus.ts,
 * h265-h264.ts) and reach the source as Opus and H.264 on the same track numbers the
 * source was told. ffmpeg runs only while someone watches (`setDemand`), stopping
 * `transcode.idleStopSeconds` after the last viewer left.
 *
 * The camera's RTCP sender reports are passed on for converted tracks too, their RTP
 * timestamp mapped onto the output clock, so the browser keeps sound and picture in sync.
 * The last one is passed on again after a converter's first packet: the SFU source takes
 * reports only from a track that has sent media, and a camera sends one every few seconds.
 *
 * A camera whose sound is converted has its picture held by the sound's delay (two AAC frames and
 * an Opus frame plus `transcode.aacDelayMarginMs`, raised only when sound keeps going out late; pacer.ts), so
 * both reach the browser in step and its lip sync has little to catch up.
 */
import type { Logger } from "../../config/log.ts";
import type { CameraTranscodeConfig, TranscodeConfig } from "../../config/sections/transcode.ts";
import { parseRtcp, serializeSr } from "../../sfu/rtp/rtcp.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import { realTimers, type TimerHandle, type Timers } from "../rtsp/timers.ts";
import type { ConvertibleCodecs } from "../rtsp/sdp.ts";
import { parseAacFmtp } from "./aac.ts";
import { AacToOpus, OPUS_PAYLOAD_TYPE, type TranscodeCounters } from "./aac-opus.ts";
import { H264_OUTPUT_FMTP, H264_PAYLOAD_TYPE, H265ToH264 } from "./h265-h264.ts";
import { FollowDelay, Pacer } from "./pacer.ts";
import { findExecutable, type ChildStatus, type SpawnFn } from "./supervisor.ts";

/** How one converted track is doing, for `/api/cameras/:id` and the tile. */
export interface TranscodeStatus {
  track: number;
  from: string;
  to: "OPUS" | "H264";
  /** The ffmpeg child: stopped (nobody watching), running, backoff (restarting), missing (executable not found). */
  ffmpeg: ChildStatus;
  counters: TranscodeCounters;
  /** Input dropped by the depacketizer, by reason. */
  drops: Record<string, number>;
}

export interface TranscodingSinkOptions {
  downstream: MediaSink;
  camera: CameraTranscodeConfig;
  global: TranscodeConfig;
  log: Logger;
  timers?: Timers;
  spawn?: SpawnFn;
  /** Resolves the ffmpeg executable (default: findExecutable on PATH). */
  findFfmpeg?: (command: string) => string | undefined;
  /** A converted track's ffmpeg changed state (started, failed, stopped). */
  onChange?: () => void;
}

type Converter = AacToOpus | H265ToH264;

interface Route {
  spec: TrackSpec;
  converter: Converter | undefined;
  /** An H.265 track converted to H.264: the source's track carrying the camera's H.265 as it is, for viewers that offered H.265. */
  raw: number | undefined;
  /** A video track passed as it is while the camera's sound is converted: held by the sound's delay. */
  hold: Pacer | undefined;
}

/** Video packets held at most while waiting for the sound's delay (a keyframe is a few hundred). */
const HOLD_MAX_PACKETS = 4096;

/** Words for a person when ffmpeg cannot be found. */
export function ffmpegMissing(what: "aac" | "h265", command: string): string {
  const where = command === "ffmpeg" ? "ffmpeg is not installed" : `ffmpeg was not found at ${command}`;
  return what === "aac"
    ? `AAC sound needs ffmpeg to play, and ${where}: install it (apt install ffmpeg) or set transcode.ffmpegPath`
    : `H.265 video needs ffmpeg to be converted to H.264, and ${where}: install it (apt install ffmpeg) or set transcode.ffmpegPath`;
}

export class TranscodingSink implements MediaSink {
  private readonly o: TranscodingSinkOptions;
  private readonly timers: Timers;
  private routes: Route[] = [];
  private viewers = 0;
  private wanted = false;
  private idleTimer: TimerHandle | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private ffmpeg: string | undefined;
  /** Per converted sound track: its last mapped sender report, and whether it is owed after the next packet. */
  private readonly lastSr = new Map<number, { sr: Buffer; owed: boolean }>();

  constructor(o: TranscodingSinkOptions) {
    this.o = o;
    this.timers = o.timers ?? realTimers;
  }

  /** What the RTSP client may pull for this camera now (ffmpeg looked up again each time). */
  convertible(): ConvertibleCodecs {
    const find = this.o.findFfmpeg ?? findExecutable;
    this.ffmpeg = find(this.o.global.ffmpegPath);
    const cmd = this.o.global.ffmpegPath;
    const c: ConvertibleCodecs = {};
    if (this.o.camera.aac === "off") c.aac = "AAC sound is switched off for this camera (transcode.aac: off)";
    else c.aac = this.ffmpeg ? true : ffmpegMissing("aac", cmd);
    if (this.o.camera.h265 === "off")
      c.h265 = this.o.camera.h265Passthrough
        ? "H.265 video plays only in browsers that decode H.265: configure an H.264 stream on the camera, or set its transcode.h265 to h264 (converts with ffmpeg)"
        : "H.265 video cannot be played by this browser: configure an H.264 stream on the camera, or set its transcode.h265 to h264 (converts with ffmpeg)";
    else c.h265 = this.ffmpeg ? true : ffmpegMissing("h265", cmd);
    if (this.o.camera.h265Passthrough) c.h265Passthrough = true;
    return c;
  }

  setTracks(tracks: readonly TrackSpec[]): void {
    if (this.closed) return;
    const next: Route[] = [];
    const out: TrackSpec[] = [];
    // The camera's H.265 of a converted track, after every track: viewers that offered H.265 get it as it is.
    const raws: TrackSpec[] = [];
    for (const r of this.routes) r.hold?.close();
    for (const [i, spec] of tracks.entries()) {
      const prev = this.routes[i];
      const same = prev && prev.spec.codec === spec.codec && prev.spec.fmtp === spec.fmtp && prev.spec.clockRate === spec.clockRate;
      if (prev && !same) void prev.converter?.close();
      let converter = same ? prev.converter : undefined;
      if (converter) converter.resetSession();
      else converter = this.makeConverter(i, spec);
      let raw: number | undefined;
      if (converter instanceof H265ToH264) raw = tracks.length + raws.push(spec) - 1;
      next.push({ spec, converter, raw, hold: undefined });
      if (converter instanceof AacToOpus) out.push({ kind: "audio", codec: "OPUS", clockRate: 48000, channels: 2, payloadType: OPUS_PAYLOAD_TYPE, fmtp: "minptime=10;useinbandfec=1" });
      else if (converter instanceof H265ToH264) out.push({ kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: H264_PAYLOAD_TYPE, fmtp: H264_OUTPUT_FMTP });
      else out.push(spec);
    }
    for (let i = tracks.length; i < this.routes.length; i++) void this.routes[i]!.converter?.close();
    const sound = next.find((r) => r.converter instanceof AacToOpus)?.converter as AacToOpus | undefined;
    if (sound) {
      for (const [i, r] of next.entries()) {
        if (r.converter || r.spec.kind !== "video") continue;
        r.hold = new Pacer({
          plan: new FollowDelay(() => sound.paceDelayMs()),
          timers: this.timers,
          maxQueue: HOLD_MAX_PACKETS,
          send: (packet) => this.deliver(i, packet),
        });
      }
    }
    this.routes = next;
    this.o.downstream.setTracks([...out, ...raws]);
    this.applyWanted();
  }

  pushRtp(track: number, packet: Buffer): void {
    const r = this.routes[track];
    if (r?.raw !== undefined) this.o.downstream.pushRtp(r.raw, packet);
    if (r?.converter) r.converter.push(packet);
    else if (r?.hold) r.hold.push(packet, this.timers.now());
    else this.o.downstream.pushRtp(track, packet);
  }

  pushRtcp(track: number, packet: Buffer): void {
    const r = this.routes[track];
    if (!r?.converter) {
      if (r?.hold) this.noteSr(track, packet);
      this.o.downstream.pushRtcp(track, packet);
      return;
    }
    if (r.converter instanceof H265ToH264) {
      this.o.downstream.pushRtcp(track, packet); // same 90 kHz clock, same SSRC
      if (r.raw !== undefined) this.o.downstream.pushRtcp(r.raw, packet);
      return;
    }
    const conv = r.converter;
    for (const item of parseRtcp(packet)) {
      if (item.type !== "sr") continue;
      const sr = serializeSr({ ssrc: item.ssrc, ntpSeconds: item.ntpSeconds, ntpFraction: item.ntpFraction, rtpTimestamp: conv.mapTimestamp(item.rtpTimestamp), packetCount: item.packetCount, octetCount: item.octetCount });
      this.noteSr(track, sr);
      this.o.downstream.pushRtcp(track, sr);
    }
  }

  upstreamDown(reason: string): void {
    for (const r of this.routes) {
      r.converter?.resetSession();
      r.hold?.reset(); // held packets belong to the session that ended
    }
    this.lastSr.clear(); // a new session may bring a new clock
    this.o.downstream.upstreamDown(reason);
  }

  /** Viewer count of the camera: ffmpeg runs while it is above 0 (and a little after). */
  setDemand(viewers: number): void {
    if (this.closed) return;
    this.viewers = Math.max(0, viewers);
    if (this.viewers > 0) {
      this.timers.clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
      this.wanted = true;
      this.applyWanted();
    } else if (this.wanted && this.idleTimer === undefined) {
      this.idleTimer = this.timers.setTimeout(() => {
        this.idleTimer = undefined;
        if (this.viewers > 0) return;
        this.wanted = false;
        this.applyWanted();
      }, this.o.global.idleStopSeconds * 1000);
    }
  }

  status(): TranscodeStatus[] {
    const out: TranscodeStatus[] = [];
    for (const [i, r] of this.routes.entries()) {
      const c = r.converter;
      if (!c) continue;
      out.push({ track: i, from: r.spec.codec, to: c instanceof AacToOpus ? "OPUS" : "H264", ffmpeg: c.status(), counters: { ...c.counters }, drops: { ...c.drops() } });
    }
    return out;
  }

  /** Stops every ffmpeg; every caller gets the same promise. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    this.timers.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const routes = this.routes;
    this.routes = [];
    for (const r of routes) r.hold?.close();
    await Promise.all(routes.map((r) => r.converter?.close()));
  }

  /** A converted or held track's packet to the source, then the sender report it is owed, if any. */
  private deliver(track: number, packet: Buffer): void {
    if (this.closed) return;
    this.o.downstream.pushRtp(track, packet);
    const last = this.lastSr.get(track);
    if (last?.owed) {
      last.owed = false;
      this.o.downstream.pushRtcp(track, last.sr);
    }
  }

  /** An NTP/RTP pair stays true later (both sides move on together), so it can be given again. */
  private noteSr(track: number, rtcp: Buffer): void {
    const prev = this.lastSr.get(track);
    this.lastSr.set(track, { sr: Buffer.from(rtcp), owed: prev?.owed ?? true });
  }

  private applyWanted(): void {
    for (const r of this.routes) r.converter?.setWanted(this.wanted);
  }

  private makeConverter(track: number, spec: TrackSpec): Converter | undefined {
    const g = this.o.global;
    const ffmpeg = this.ffmpeg ?? this.o.global.ffmpegPath;
    const supervisor = { restartMinMs: g.restartMinMs, restartMaxMs: g.restartMaxMs, stableMs: g.stableMs, stderrLines: g.stderrLines, onChange: this.o.onChange };
    const log = this.o.log.child({ transcode: track });
    const out = (packet: Buffer): void => this.deliver(track, packet);
    if (spec.codec === "MPEG4-GENERIC" || spec.codec === "MP4A-LATM") {
      const stream = parseAacFmtp(spec.codec, spec.clockRate, spec.fmtp);
      if (typeof stream === "string") return undefined; // planTracks refused it already
      return new AacToOpus({ stream, ffmpeg, opusBitrateKbps: g.opusBitrateKbps, out, log, supervisor, maxPendingBytes: g.maxPendingBytes, delayMs: g.aacDelayMs, delayMarginMs: g.aacDelayMarginMs, timers: this.o.timers, spawn: this.o.spawn });
    }
    if (spec.codec === "H265") {
      return new H265ToH264({ fmtp: spec.fmtp, ffmpeg, settings: this.o.camera, out, log, supervisor, maxPendingBytes: g.maxPendingBytes, timers: this.o.timers, spawn: this.o.spawn });
    }
    return undefined;
  }
}
