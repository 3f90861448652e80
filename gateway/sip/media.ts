/**
 * One call's audio plane: the device's G.711 RTP/RTCP into a MediaSink (the SFU), audio
 * from the application (the browser) back to the device, RFC 4733 DTMF and a ringback
 * tone in the same outgoing stream, and silence when the application sends nothing (so a
 * device's RTP timeout and the NAT binding both stay alive).
 *
 * Outgoing packets are re-stamped into one stream we own (our SSRC, contiguous sequence
 * numbers, timestamps continuous across sources), because the browser's stream, tones and
 * DTMF events must look like one source to the device (RFC 3550 §5.1, RFC 4733 §2.5).
 *
 * Incoming packets are accepted only from the device's addresses (SDP c= or the signalling
 * source); the first one latches the remote port (symmetric RTP through NAT, RFC 4961).
 */
import type dgram from "node:dgram";
import { randomInt } from "node:crypto";
import type { Logger } from "../../config/log.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import { DtmfReceiver, dtmfCode, writeDtmfPayload } from "./dtmf.ts";
import type { RtpPair } from "./rtp-ports.ts";
import { emptyRtpHeader, isRtcpPacket, readRtpHeader, writeRtpHeader, type RtpHeaderFields } from "../../sfu/rtp/packet.ts";
import { ringbackFrames, silenceFrame } from "./rtp.ts";
import type { AudioParams } from "./sdp.ts";

/** Packet time of everything we generate, ms (20 ms = 160 samples of G.711). */
const PTIME = 20;
const SAMPLES = 160;
/** Application audio older than this lets silence fill in, ms. */
const FILL_AFTER_MS = 100;

export interface MediaStats {
  packetsIn: number;
  bytesIn: number;
  rtcpIn: number;
  packetsOut: number;
  bytesOut: number;
  /** Silence / tone packets we generated. */
  generatedOut: number;
  dtmfIn: number;
  dtmfOut: number;
  dropped: { foreign: number; malformed: number; payloadType: number; notSending: number };
  lastPacketAt: number;
}

export type CallMediaEvents = {
  /** A DTMF digit from the device (RFC 4733 event). */
  dtmf: [digit: string];
  /** First RTP packet from the device. */
  flowing: [];
};

export interface CallMediaOptions {
  pair: RtpPair;
  /** Addresses RTP may come from (SDP c=, signalling source). */
  allowedSources: readonly string[];
  log: Logger;
  ticker: MediaTicker;
  /** Milliseconds (monotonic). */
  now: () => number;
}

interface DtmfJob {
  digits: string;
  index: number;
  durationSamples: number;
  /** Ticks sent of the current digit (0 = not started). */
  sent: number;
  endSent: number;
  gapTicks: number;
  eventTs: number;
  resolve: (ok: boolean) => void;
}

/** Drives every call's generated packets from one 20 ms timer. */
export class MediaTicker {
  private readonly members = new Set<CallMedia>();
  private timer: NodeJS.Timeout | undefined;

  add(m: CallMedia): void {
    this.members.add(m);
    if (!this.timer) {
      this.timer = setInterval(() => {
        for (const x of this.members) x.tick();
      }, PTIME);
      this.timer.unref();
    }
  }

  delete(m: CallMedia): void {
    this.members.delete(m);
    if (this.members.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  close(): void {
    this.members.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export class CallMedia {
  readonly events: SafeEmitter<CallMediaEvents>;
  readonly localRtpPort: number;
  readonly localRtcpPort: number;
  private readonly pair: RtpPair;
  private readonly log: Logger;
  private readonly ticker: MediaTicker;
  private readonly now: () => number;
  private allowed: Set<string>;
  private audio: AudioParams | undefined;
  private sink: MediaSink | null = null;
  private remoteRtp: { address: string; port: number } | undefined;
  private remoteRtcp: { address: string; port: number } | undefined;
  private latched = false;
  private readonly fields = emptyRtpHeader();
  /** Reused for every packet we send. */
  private readonly outHeader: RtpHeaderFields = { marker: false, payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0 };
  private readonly dtmfIn = new DtmfReceiver();
  private closed = false;

  // Our outgoing stream.
  private readonly ssrc = randomInt(1, 0xffffffff);
  private seq = randomInt(0, 0xffff);
  private ts = randomInt(0, 0x7fffffff);
  private lastOutAt = -Infinity;
  private lastAppAt = -Infinity;
  private appSsrc = -1;
  private tsOffset = 0;
  private resync = true;
  private filling = false;
  private lastReportAt = -Infinity;
  private sending = false;
  private tone: Buffer[] | undefined;
  private toneIndex = 0;
  private silence: Buffer | undefined;
  private dtmfQueue: DtmfJob[] = [];

  readonly stats: MediaStats = {
    packetsIn: 0, bytesIn: 0, rtcpIn: 0, packetsOut: 0, bytesOut: 0, generatedOut: 0, dtmfIn: 0, dtmfOut: 0,
    dropped: { foreign: 0, malformed: 0, payloadType: 0, notSending: 0 },
    lastPacketAt: 0,
  };

  constructor(opts: CallMediaOptions) {
    this.pair = opts.pair;
    this.log = opts.log;
    this.ticker = opts.ticker;
    this.now = opts.now;
    this.allowed = new Set(opts.allowedSources);
    this.localRtpPort = opts.pair.rtpPort;
    this.localRtcpPort = opts.pair.rtcpPort;
    this.events = new SafeEmitter((event, err) => this.log.error("sip media: listener threw", { event, err }));
    this.pair.rtp.on("message", (b, rinfo) => this.onRtp(b, rinfo));
    this.pair.rtcp.on("message", (b, rinfo) => this.onRtcp(b, rinfo));
    const onError = (err: Error): void => this.log.debug("sip media: socket error", { err });
    this.pair.rtp.on("error", onError);
    this.pair.rtcp.on("error", onError);
  }

  /** The negotiated audio (after offer/answer); RTP is sent only once this is set. */
  get params(): AudioParams | undefined {
    return this.audio;
  }

  /** Apply (re-)negotiated parameters. A new remote address resets latching. */
  configure(audio: AudioParams, extraSources: readonly string[] = []): void {
    const prev = this.audio;
    this.audio = audio;
    for (const s of extraSources) this.allowed.add(s);
    const hold = audio.remoteAddress === "0.0.0.0" || audio.remoteAddress === "::" || audio.remoteRtpPort === 0;
    if (!hold) this.allowed.add(audio.remoteAddress);
    const moved = !prev || prev.remoteAddress !== audio.remoteAddress || prev.remoteRtpPort !== audio.remoteRtpPort;
    if (moved) {
      this.latched = false;
      this.remoteRtp = hold ? undefined : { address: audio.remoteAddress, port: audio.remoteRtpPort };
      this.remoteRtcp = hold ? undefined : { address: audio.remoteAddress, port: audio.remoteRtcpPort };
    }
    this.silence = silenceFrame(audio.codec);
    if (this.tone) this.tone = ringbackFrames(audio.codec);
    if (!prev || prev.codec !== audio.codec || prev.payloadType !== audio.payloadType) this.announceTracks();
  }

  /** Where the device's audio goes; null detaches. The sink gets setTracks at once when media is negotiated. */
  setSink(sink: MediaSink | null): void {
    if (this.sink && this.sink !== sink) this.sink.upstreamDown("detached");
    this.sink = sink;
    this.announceTracks();
  }

  /** The track pushed into the sink (index 0). */
  track(): TrackSpec | undefined {
    if (!this.audio) return undefined;
    return { kind: "audio", codec: this.audio.codec, clockRate: 8000, channels: 1, payloadType: this.audio.payloadType, fmtp: "" };
  }

  private announceTracks(): void {
    const t = this.track();
    if (this.sink && t) this.sink.setTracks([t]);
  }

  /** Start sending: silence fill, tones, DTMF and application audio. */
  start(): void {
    if (this.closed || this.sending) return;
    this.sending = true;
    this.ticker.add(this);
  }

  /** Play the ringback tone (early media) until stopTone or application audio. */
  startTone(): void {
    if (!this.audio) return;
    this.tone = ringbackFrames(this.audio.codec);
    this.toneIndex = 0;
    this.start();
  }

  stopTone(): void {
    this.tone = undefined;
  }

  /**
   * Audio from the application to the device: an RTP packet (any SSRC/sequence/timestamp)
   * whose payload is in the negotiated codec. Re-stamped into our stream; the buffer is
   * copied, so the caller may reuse it. Dropped while a DTMF digit is playing.
   */
  sendRtp(packet: Buffer): void {
    if (this.closed || !this.audio || !readRtpHeader(packet, this.fields)) return;
    if (this.fields.payloadLength === 0) return;
    if (this.dtmfQueue.length > 0 && this.dtmfQueue[0]!.sent > 0) return;
    const now = this.now();
    this.tone = undefined;
    if (this.fields.ssrc !== this.appSsrc || this.resync) {
      // A new source or a gap we filled: continue our timeline from where it is now.
      const elapsed = Math.max(SAMPLES, Math.round(((now - this.lastOutAt) * 8) / SAMPLES) * SAMPLES);
      const next = this.lastOutAt === -Infinity ? this.ts : (this.ts + elapsed) >>> 0;
      this.tsOffset = (next - this.fields.timestamp) >>> 0;
      this.appSsrc = this.fields.ssrc;
    }
    const ts = (this.fields.timestamp + this.tsOffset) >>> 0;
    const marker = this.resync || this.fields.marker;
    this.resync = false;
    this.filling = false;
    this.lastAppAt = now;
    const out = Buffer.allocUnsafe(12 + this.fields.payloadLength);
    packet.copy(out, 12, this.fields.payloadOffset, this.fields.payloadOffset + this.fields.payloadLength);
    this.emit(out, this.audio.payloadType, marker, ts, now);
  }

  /**
   * Send digits as RFC 4733 events (resolves when the last end packet went out). Requires a
   * negotiated telephone-event payload type; returns false when there is none.
   */
  sendDtmf(digits: string, durationMs: number): Promise<boolean> {
    if (this.closed || !this.audio || this.audio.dtmfPayloadType === undefined) return Promise.resolve(false);
    for (const d of digits) if (dtmfCode(d) === undefined) return Promise.resolve(false);
    this.start();
    return new Promise((resolve) => {
      this.dtmfQueue.push({
        digits,
        index: 0,
        durationSamples: Math.max(SAMPLES, Math.round(durationMs * 8)),
        sent: 0,
        endSent: 0,
        gapTicks: 0,
        eventTs: 0,
        resolve,
      });
    });
  }

  /** Called every 20 ms by the ticker: DTMF events, tone or silence fill. */
  tick(): void {
    if (this.closed || !this.audio) return;
    const now = this.now();
    const job = this.dtmfQueue[0];
    if (job) {
      this.dtmfTick(job, now);
      return;
    }
    if (now - this.lastAppAt < FILL_AFTER_MS) return;
    let payload: Buffer | undefined;
    if (this.tone) {
      payload = this.tone[this.toneIndex]!;
      this.toneIndex = (this.toneIndex + 1) % this.tone.length;
    } else payload = this.silence;
    if (!payload) return;
    const ts = this.lastOutAt === -Infinity ? this.ts : (this.ts + SAMPLES) >>> 0;
    const out = Buffer.allocUnsafe(12 + payload.length);
    payload.copy(out, 12);
    this.stats.generatedOut++;
    // RFC 3551 §4.1: the marker bit starts a talkspurt (first generated packet after other audio).
    this.emit(out, this.audio.payloadType, !this.filling, ts, now);
    this.filling = true;
    this.resync = true; // the application's next packet re-anchors its timestamps
    this.maybeSendReport(now);
  }

  /** RTCP sender report + SDES CNAME every 5 s while we send (RFC 3550 §6.4.1, §6.5.1). */
  private maybeSendReport(now: number): void {
    if (!this.remoteRtcp || now - this.lastReportAt < 5000) return;
    this.lastReportAt = now;
    const cname = Buffer.from("gatehouse", "latin1");
    const sdesLen = 4 + 4 + 2 + cname.length;
    const sdesPadded = (sdesLen + 3) & ~3;
    const out = Buffer.alloc(28 + sdesPadded);
    out[0] = 0x80;
    out[1] = 200; // SR
    out.writeUInt16BE(6, 2);
    out.writeUInt32BE(this.ssrc, 4);
    const wall = Date.now() / 1000 + 2208988800; // NTP epoch
    out.writeUInt32BE(Math.floor(wall) >>> 0, 8);
    out.writeUInt32BE(Math.floor((wall % 1) * 2 ** 32) >>> 0, 12);
    out.writeUInt32BE(this.ts >>> 0, 16);
    out.writeUInt32BE(this.stats.packetsOut >>> 0, 20);
    out.writeUInt32BE(Math.max(0, this.stats.bytesOut - 12 * this.stats.packetsOut) >>> 0, 24);
    out[28] = 0x81;
    out[29] = 202; // SDES
    out.writeUInt16BE(sdesPadded / 4 - 1, 30);
    out.writeUInt32BE(this.ssrc, 32);
    out[36] = 1; // CNAME
    out[37] = cname.length;
    cname.copy(out, 38);
    this.pair.rtcp.send(out, this.remoteRtcp.port, this.remoteRtcp.address);
  }

  private dtmfTick(job: DtmfJob, now: number): void {
    const pt = this.audio!.dtmfPayloadType!;
    if (job.gapTicks > 0) {
      // Inter-digit pause: keep the stream alive with silence.
      job.gapTicks--;
      if (this.silence && now - this.lastAppAt >= FILL_AFTER_MS) {
        const out = Buffer.allocUnsafe(12 + this.silence.length);
        this.silence.copy(out, 12);
        this.emit(out, this.audio!.payloadType, false, (this.ts + SAMPLES) >>> 0, now);
      }
      return;
    }
    const code = dtmfCode(job.digits[job.index]!)!;
    if (job.sent === 0) job.eventTs = this.lastOutAt === -Infinity ? this.ts : (this.ts + SAMPLES) >>> 0;
    const out = Buffer.allocUnsafe(16);
    if (job.sent * SAMPLES < job.durationSamples) {
      job.sent++;
      writeDtmfPayload(out, 12, code, false, 10, job.sent * SAMPLES);
      // §2.5.1.2: the first packet of an event carries the marker bit; all share its timestamp.
      this.emitAt(out, pt, job.sent === 1, job.eventTs, now);
      return;
    }
    // §2.5.1.4: the end packet is sent three times.
    writeDtmfPayload(out, 12, code, true, 10, job.durationSamples);
    this.emitAt(out, pt, false, job.eventTs, now);
    job.endSent++;
    if (job.endSent < 3) return;
    this.stats.dtmfOut++;
    // Move our timeline past the event.
    this.ts = (job.eventTs + job.durationSamples) >>> 0;
    job.index++;
    job.sent = 0;
    job.endSent = 0;
    this.resync = true;
    if (job.index >= job.digits.length) {
      this.dtmfQueue.shift();
      job.resolve(true);
    } else job.gapTicks = 4; // 80 ms between digits
  }

  /** Send a packet at an explicit timestamp without advancing the audio timeline (DTMF events). */
  private emitAt(out: Buffer, pt: number, marker: boolean, ts: number, now: number): void {
    const saved = this.ts;
    this.emit(out, pt, marker, ts, now);
    this.ts = saved;
  }

  private emit(out: Buffer, pt: number, marker: boolean, ts: number, now: number): void {
    const dest = this.remoteRtp;
    // On hold (c=0.0.0.0, or the device asked us not to send): nothing goes out.
    if (!dest || !this.audio || this.audio.direction === "recvonly" || this.audio.direction === "inactive") {
      this.stats.dropped.notSending++;
      return;
    }
    this.seq = (this.seq + 1) & 0xffff;
    const h = this.outHeader;
    h.payloadType = pt;
    h.marker = marker;
    h.sequenceNumber = this.seq;
    h.timestamp = ts;
    h.ssrc = this.ssrc;
    writeRtpHeader(out, h);
    this.ts = ts;
    this.lastOutAt = now;
    this.stats.packetsOut++;
    this.stats.bytesOut += out.length;
    this.pair.rtp.send(out, dest.port, dest.address);
  }

  private onRtp(b: Buffer, rinfo: dgram.RemoteInfo): void {
    if (!this.allowed.has(rinfo.address)) {
      this.stats.dropped.foreign++;
      return;
    }
    if (isRtcpPacket(b)) {
      // rtcp-mux from a device that did not negotiate it: still useful to the SFU.
      this.stats.rtcpIn++;
      this.sink?.pushRtcp(0, b);
      return;
    }
    if (!this.audio || !readRtpHeader(b, this.fields)) {
      this.stats.dropped.malformed++;
      return;
    }
    if (!this.latched || this.remoteRtp?.port !== rinfo.port || this.remoteRtp.address !== rinfo.address) {
      // Symmetric RTP: send where the device sends from (NAT), once per change.
      if (!this.latched && (this.remoteRtp?.address !== rinfo.address || this.remoteRtp.port !== rinfo.port)) {
        this.log.debug("sip media: latched remote RTP", { address: rinfo.address, port: rinfo.port });
      }
      this.remoteRtp = { address: rinfo.address, port: rinfo.port };
      if (!this.latched) this.events.emit("flowing");
      this.latched = true;
    }
    this.stats.packetsIn++;
    this.stats.bytesIn += b.length;
    this.stats.lastPacketAt = this.now();
    const pt = this.fields.payloadType;
    if (pt === this.audio.payloadType) {
      this.sink?.pushRtp(0, b);
      return;
    }
    if (pt === this.audio.dtmfPayloadType) {
      const d = this.dtmfIn.push(this.fields.timestamp, b, this.fields.payloadOffset, this.fields.payloadLength);
      if (d) {
        this.stats.dtmfIn++;
        this.events.emit("dtmf", d);
      }
      return;
    }
    // Comfort noise (13) and anything not negotiated are dropped, counted.
    this.stats.dropped.payloadType++;
  }

  private onRtcp(b: Buffer, rinfo: dgram.RemoteInfo): void {
    if (!this.allowed.has(rinfo.address)) {
      this.stats.dropped.foreign++;
      return;
    }
    if (b.length < 8 || b[0]! >> 6 !== 2) {
      this.stats.dropped.malformed++;
      return;
    }
    this.remoteRtcp = { address: rinfo.address, port: rinfo.port };
    this.stats.rtcpIn++;
    this.sink?.pushRtcp(0, b);
  }

  /** Stop sending, close the sockets, tell the sink. Idempotent. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ticker.delete(this);
    for (const j of this.dtmfQueue) j.resolve(false);
    this.dtmfQueue = [];
    this.pair.release();
    this.sink?.upstreamDown(reason);
    this.sink = null;
    this.events.removeAllListeners();
  }
}
