/**
 * One camera's H.265 video converted to H.264 by ONE ffmpeg child, while wanted.
 *
 * In: the camera's RTP, depacketized (sfu/h265/) into access units written to ffmpeg's stdin
 * as Annex-B, from an IRAP picture on (and again from the next IRAP after a loss, so ffmpeg's
 * decoder never drops a frame and its output stays one frame per input frame).
 * Out: ffmpeg's own RTP packetization of the H.264 (RFC 6184 mode 1) on a loopback UDP socket
 * we bound; each new ffmpeg timestamp is the next frame, which takes the camera timestamp of
 * the oldest frame written and not yet out (display order). So the output is on the camera's
 * 90 kHz clock and its RTCP sender reports apply unchanged.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import type { Logger } from "../../config/log.ts";
import type { CameraTranscodeConfig } from "../../config/sections/transcode.ts";
import { H265Depacketizer, type H265DropReason } from "../../sfu/h265/depacketizer.ts";
import { h265Type, hasDonl, isParameterSet, parseH265Sprops, toAnnexB } from "../../sfu/h265/nal.ts";
import { emptyRtpHeader, readRtpHeader, setRtpSequenceNumber, setRtpSsrc, setRtpTimestamp } from "../../sfu/rtp/packet.ts";
import type { Timers } from "../rtsp/timers.ts";
import type { TranscodeCounters } from "./aac-opus.ts";
import { ChildSupervisor, type ChildStatus, type SpawnFn } from "./supervisor.ts";

/** The payload type of the H.264 output (what the SFU source is told). */
export const H264_PAYLOAD_TYPE = 96;

/** fmtp of the H.264 output: libx264's constrained baseline, mode 1. */
export const H264_OUTPUT_FMTP = "packetization-mode=1;profile-level-id=42e01f;level-asymmetry-allowed=1";

export interface H265ToH264Options {
  fmtp: string;
  ffmpeg: string;
  settings: CameraTranscodeConfig;
  out: (packet: Buffer) => void;
  log: Logger;
  supervisor: { restartMinMs: number; restartMaxMs: number; stableMs: number; stderrLines: number; onChange?: (() => void) | undefined };
  maxPendingBytes: number;
  timers?: Timers;
  spawn?: SpawnFn;
}

/** Frames written to ffmpeg and not yet out, beyond which the oldest are forgotten. */
const MAX_PENDING_FRAMES = 256;

export class H265ToH264 {
  readonly counters: TranscodeCounters & { awaitingIrap: number } = { unitsIn: 0, packetsOut: 0, notRunning: 0, backlog: 0, untimed: 0, startupLate: 0, late: 0, awaitingIrap: 0 };
  private readonly o: H265ToH264Options;
  private readonly depack: H265Depacketizer;
  private readonly sprops: Buffer[];
  private readonly supervisor: ChildSupervisor;
  private readonly hdr = emptyRtpHeader();
  private stdin: ChildProcessWithoutNullStreams["stdin"] | undefined;
  private socket: Socket | undefined;
  private port = 0;
  private lastSeq = -1;
  private ssrc = 0;
  private seq = Math.floor(Math.random() * 0x10000);
  private needIrap = true;
  /** Camera timestamps of frames written, ascending. */
  private pending: number[] = [];
  private ffTs: number | undefined;
  private curTs = 0;
  private lastAuTs: number | undefined;
  private frameTicks = 3600;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(o: H265ToH264Options) {
    this.o = o;
    this.depack = new H265Depacketizer({ donl: hasDonl(o.fmtp) });
    this.sprops = parseH265Sprops(o.fmtp);
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

  drops(): Record<H265DropReason, number> {
    return this.depack.drops;
  }

  status(): ChildStatus {
    return this.supervisor.status();
  }

  /** Wanted: bind the output socket, then start ffmpeg. */
  setWanted(wanted: boolean): void {
    if (this.closed) return;
    if (!wanted) {
      this.supervisor.setWanted(false);
      return;
    }
    if (this.socket) {
      this.supervisor.setWanted(true);
      return;
    }
    const socket = createSocket("udp4");
    this.socket = socket;
    socket.on("error", (err) => this.o.log.warn("transcode socket error", { err }));
    socket.on("message", (msg, rinfo) => {
      if (rinfo.address !== "127.0.0.1") return; // only ffmpeg, on loopback
      this.onRtp(msg);
    });
    socket.bind(0, "127.0.0.1", () => {
      if (this.closed || this.socket !== socket) return;
      this.port = socket.address().port;
      try {
        socket.setRecvBufferSize(4 * 1024 * 1024);
      } catch {
        // the kernel's cap applies
      }
      this.supervisor.setWanted(true);
    });
  }

  resetSession(): void {
    this.depack.reset();
    this.lastSeq = -1;
    this.needIrap = true;
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
    for (const au of aus) {
      if (this.lastAuTs !== undefined) {
        const d = (au.ts - this.lastAuTs) | 0;
        if (d > 0 && d < 90000) this.frameTicks = d;
      }
      this.lastAuTs = au.ts;
      const stdin = this.stdin;
      if (!stdin) {
        this.counters.notRunning++;
        continue;
      }
      if (au.damaged) this.needIrap = true;
      if (this.needIrap && !au.irap) {
        this.counters.awaitingIrap++;
        continue;
      }
      if (stdin.writableLength > this.o.maxPendingBytes) {
        this.counters.backlog++;
        this.needIrap = true; // a skipped frame breaks references: start again at an IRAP
        continue;
      }
      let nals = au.nals;
      if (this.needIrap && !nals.some((n) => isParameterSet(h265Type(n[0]!))) && this.sprops.length > 0) nals = [...this.sprops, ...nals];
      this.needIrap = false;
      this.insertPending(au.ts);
      stdin.write(toAnnexB(nals));
      this.counters.unitsIn++;
    }
  }

  /** Stops ffmpeg and closes its socket once; every caller gets the same promise. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.supervisor.close();
      this.socket?.close();
      this.socket = undefined;
    })();
    return this.closing;
  }

  private insertPending(ts: number): void {
    const p = this.pending;
    let i = p.length;
    while (i > 0 && ((p[i - 1]! - ts) | 0) > 0) i--;
    p.splice(i, 0, ts);
    if (p.length > MAX_PENDING_FRAMES) p.shift();
  }

  private args(): string[] {
    const s = this.o.settings;
    const fps = Math.max(1, Math.min(120, Math.round(90000 / this.frameTicks)));
    const gop = Math.max(1, Math.round(fps * s.keyframeSeconds));
    return [
      "-hide_banner", "-loglevel", "warning",
      "-fflags", "+nobuffer", "-flags", "low_delay", "-probesize", "32768", "-analyzeduration", "0",
      "-f", "hevc", "-framerate", String(fps), "-i", "pipe:0",
      "-an",
      // Scale down only, keeping the aspect ratio, to even sizes (4:2:0).
      "-vf", `scale='min(iw,${s.maxWidth})':'min(ih,${s.maxHeight})':force_original_aspect_ratio=decrease:force_divisible_by=2`,
      "-fps_mode", "passthrough",
      "-c:v", "libx264", "-preset", s.preset, "-tune", "zerolatency", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
      "-b:v", `${s.bitrateKbps}k`, "-maxrate", `${s.bitrateKbps}k`, "-bufsize", `${s.bitrateKbps}k`,
      "-g", String(gop), "-bf", "0", "-x264-params", "repeat-headers=1",
      "-f", "rtp", "-payload_type", String(H264_PAYLOAD_TYPE), `rtp://127.0.0.1:${this.port}?pkt_size=1200`,
    ];
  }

  private wire(child: ChildProcessWithoutNullStreams): void {
    this.stdin = child.stdin;
    this.needIrap = true;
    this.pending = [];
    this.ffTs = undefined;
    child.stdout.resume(); // ffmpeg prints the SDP of its RTP output there; not needed
  }

  private unwire(): void {
    this.stdin = undefined;
    this.pending = [];
    this.ffTs = undefined;
  }

  private onRtp(msg: Buffer): void {
    const h = this.hdr;
    if (!this.stdin || !readRtpHeader(msg, h) || h.payloadType !== H264_PAYLOAD_TYPE) return;
    if (h.timestamp !== this.ffTs) {
      this.ffTs = h.timestamp;
      const next = this.pending.shift();
      if (next === undefined) {
        this.counters.untimed++;
        this.ffTs = undefined;
        return;
      }
      this.curTs = next;
    }
    this.seq = (this.seq + 1) & 0xffff;
    setRtpSequenceNumber(msg, this.seq);
    setRtpTimestamp(msg, this.curTs);
    setRtpSsrc(msg, this.ssrc);
    this.counters.packetsOut++;
    try {
      this.o.out(msg);
    } catch (err) {
      this.o.log.warn("h264 output failed", { err });
    }
  }
}
