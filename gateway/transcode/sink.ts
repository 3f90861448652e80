/**
 * Between a camera's ingest and its SFU source: tracks the SFU forwards as they are pass
 * straight through; AAC and H.265 tracks go through one ffmpeg each (aac-opus.ts,
 * h265-h264.ts) and reach the source as Opus and H.264 on the same track numbers the
 * source was told. ffmpeg runs only while someone watches (`setDemand`), stopping
 * `transcode.idleStopSeconds` after the last viewer left.
 *
 * The camera's RTCP sender reports are passed on for converted tracks too, their RTP
 * timestamp mapped onto the output clock, so the browser keeps sound and picture in sync.
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
}

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
    for (const [i, spec] of tracks.entries()) {
      const prev = this.routes[i];
      const same = prev && prev.spec.codec === spec.codec && prev.spec.fmtp === spec.fmtp && prev.spec.clockRate === spec.clockRate;
      if (prev && !same) void prev.converter?.close();
      let converter = same ? prev.converter : undefined;
      if (converter) converter.resetSession();
      else converter = this.makeConverter(i, spec);
      let raw: number | undefined;
      if (converter instanceof H265ToH264) raw = tracks.length + raws.push(spec) - 1;
      next.push({ spec, converter, raw });
      if (converter instanceof AacToOpus) out.push({ kind: "audio", codec: "OPUS", clockRate: 48000, channels: 2, payloadType: OPUS_PAYLOAD_TYPE, fmtp: "minptime=10;useinbandfec=1" });
      else if (converter instanceof H265ToH264) out.push({ kind: "video", codec: "H264", clockRate: 90000, channels: 1, payloadType: H264_PAYLOAD_TYPE, fmtp: H264_OUTPUT_FMTP });
      else out.push(spec);
    }
    for (let i = tracks.length; i < this.routes.length; i++) void this.routes[i]!.converter?.close();
    this.routes = next;
    this.o.downstream.setTracks([...out, ...raws]);
    this.applyWanted();
  }

  pushRtp(track: number, packet: Buffer): void {
    const r = this.routes[track];
    if (r?.raw !== undefined) this.o.downstream.pushRtp(r.raw, packet);
    if (r?.converter) r.converter.push(packet);
    else this.o.downstream.pushRtp(track, packet);
  }

  pushRtcp(track: number, packet: Buffer): void {
    const r = this.routes[track];
    if (!r?.converter) {
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
      this.o.downstream.pushRtcp(
        track,
        serializeSr({ ssrc: item.ssrc, ntpSeconds: item.ntpSeconds, ntpFraction: item.ntpFraction, rtpTimestamp: conv.mapTimestamp(item.rtpTimestamp), packetCount: item.packetCount, octetCount: item.octetCount }),
      );
    }
  }

  upstreamDown(reason: string): void {
    for (const r of this.routes) r.converter?.resetSession();
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
    await Promise.all(routes.map((r) => r.converter?.close()));
  }

  private applyWanted(): void {
    for (const r of this.routes) r.converter?.setWanted(this.wanted);
  }

  private makeConverter(track: number, spec: TrackSpec): Converter | undefined {
    const g = this.o.global;
    const ffmpeg = this.ffmpeg ?? this.o.global.ffmpegPath;
    const supervisor = { restartMinMs: g.restartMinMs, restartMaxMs: g.restartMaxMs, stableMs: g.stableMs, stderrLines: g.stderrLines, onChange: this.o.onChange };
    const log = this.o.log.child({ transcode: track });
    const out = (packet: Buffer): void => {
      if (!this.closed) this.o.downstream.pushRtp(track, packet);
    };
    if (spec.codec === "MPEG4-GENERIC" || spec.codec === "MP4A-LATM") {
      const stream = parseAacFmtp(spec.codec, spec.clockRate, spec.fmtp);
      if (typeof stream === "string") return undefined; // planTracks refused it already
      return new AacToOpus({ stream, ffmpeg, opusBitrateKbps: g.opusBitrateKbps, out, log, supervisor, maxPendingBytes: g.maxPendingBytes, timers: this.o.timers, spawn: this.o.spawn });
    }
    if (spec.codec === "H265") {
      return new H265ToH264({ fmtp: spec.fmtp, ffmpeg, settings: this.o.camera, out, log, supervisor, maxPendingBytes: g.maxPendingBytes, timers: this.o.timers, spawn: this.o.spawn });
    }
    return undefined;
  }
}
