/**
 * One viewer's playback of one camera's recording: a personal RTSP replay session at the
 * recorder (ONVIF replay, or a URL template with `Range: npt=`), re-timed (retimer.ts) and
 * paced into a MediaSink (the SFU source this session alone feeds), with the controls a
 * guard uses: seek, pause, resume, speed, step, jump.
 *
 *   const s = new PlaybackSession({ camera, start, sink, ... });
 *   const tracks = await s.open();          // RTSP up, first PLAY sent; setTracks done
 *   await s.control({ action: "speed", rate: 4 });
 *   s.events.on("segment", (seg) => …);     // send time → recorded time, for the page
 *   await s.close("viewer left");
 *
 * Controls are serialised (one RTSP request at a time) and answer as soon as the
 * recorder has: they never wait for media.
 */
import { ClosedError, UpstreamError, WrongStateError, BadInputError, type GatehouseError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import { expandUrlTemplate } from "../../config/url-template.ts";
import { h264PayloadIsKeyframeStart } from "../../sfu/h264/nal.ts";
import { emptyRtpHeader, readRtpHeader } from "../../sfu/rtp/packet.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import type { UdpPortPool } from "../ingest/udp-ports.ts";
import { RtspClient, type RtspClientOptions } from "../rtsp/client.ts";
import type { RtspResponse } from "../rtsp/message.ts";
import { realTimers, type TimerHandle, type Timers } from "../rtsp/timers.ts";
import { checkRate, nptPlayHeaders, ONVIF_REPLAY, parseClockRangeStart, readOnvifExtension, replayPlayHeaders } from "./onvif.ts";
import { Retimer, type RetimerStats, type Segment } from "./retimer.ts";
import { GapLearner, type Learned } from "./gaps.ts";
import { RtspStatusError } from "../rtsp/status.ts";

/** A control request, as the page sends it. */
export type PlaybackControl =
  | { action: "seek"; time: number }
  | { action: "pause" }
  | { action: "resume" }
  | { action: "speed"; rate: number }
  | { action: "step" }
  | { action: "jump"; seconds: number };

/** What a control answers. */
export interface PlaybackState {
  /** Recorded time of the frame last sent (or the position asked for, before it is), Unix ms. */
  position: number;
  paused: boolean;
  rate: number;
  /** The recording ended (the recorder said so); a seek starts again. */
  ended: boolean;
}

export type PlaybackEvents = {
  /** A new mapping from send time to recorded time. */
  segment: [Segment];
  /** The state changed (pause, rate, end of the recording). */
  state: [PlaybackState];
  /** The recorder session died; the session is closed. */
  closed: [reason: string];
  /** What the recorder's answers taught about the recording (a gap, a stretch it delivered). */
  learned: [Learned];
};

export interface PlaybackSessionOptions {
  camera: Pick<CameraConfig, "url" | "username" | "password" | "transport" | "tlsInsecure" | "basicOverPlainRtsp" | "redirectHosts" | "playback">;
  /** Where to start, Unix ms. */
  start: number;
  /** The SFU source this session feeds (nobody else does). */
  sink: Pick<MediaSink, "setTracks" | "pushRtp">;
  requestTimeoutMs: number;
  mediaTimeoutMs: number;
  ports?: UdpPortPool | undefined;
  /** Held before the first frame after a start, seek or speed change, ms. */
  startDelayMs: number;
  /** Most packets buffered while pacing. */
  bufferPackets: number;
  /**
   * A speed change the recorder has not answered within this is undone: the session reopens at
   * the recorder at the previous position and speed (same viewer) and the control answers 409, ms.
   * Default 3000.
   */
  speedChangeTimeoutMs?: number;
  /** Tries to reopen the recording after an unanswered speed change before the session ends. Default 3. */
  reopenAttempts?: number;
  /** The shortest jump in recorded time learned as a gap, ms. Default 1000. */
  minGapMs?: number;
  /** Wall clock, Unix ms (the end of a gap learned from a refusal). Default Date.now. */
  wallClock?: () => number;
  log: Logger;
  timers?: Timers;
  /** Builds the RTSP client (tests). */
  createClient?: (o: RtspClientOptions) => RtspClient;
}

export interface PlaybackSessionStats {
  retimer: RetimerStats;
  /** Video frames sent to the viewer. */
  framesOut: number;
  /** Packets dropped because they belonged to the stream before a seek. */
  stale: number;
}

/** RTSP statuses meaning "this recorder cannot do that" (RFC 2326 §7.1.1): 451, 457, 458, 459, 501, 551. */
const UNSUPPORTED = new Set([451, 457, 458, 459, 501, 551]);

export class PlaybackSession {
  readonly events: SafeEmitter<PlaybackEvents>;
  private readonly o: PlaybackSessionOptions;
  private readonly timers: Timers;
  private readonly log: Logger;
  private readonly onvif: boolean;
  private client: RtspClient | undefined;
  private retimer: Retimer | undefined;
  private specs: TrackSpec[] = [];
  private rate = 1;
  private paused = false;
  private ended = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Position before the first frame of the current stream is sent. */
  private target: number;
  private lastSent: number | undefined;
  /** Packets are from a stream we asked to replace: dropped until the PLAY answer. */
  private gate = true;
  /**
   * The recorder marks the first packet of each new stream with the ONVIF D bit (learned from
   * the first stream): after a seek, packets before it are the old stream's, still in flight
   * after the PLAY answer (a server may send queued media after its answer).
   */
  private marksDiscont: boolean | undefined;
  private awaitDiscont = false;
  /** Pause again once the first frame at or after `target` has been sent (seek or step while paused). */
  private holdAfterFrame = false;
  /** Recorded time of a stream without the ONVIF extension: first packet's ts and the time it stands for. */
  private tsAnchor: (number | undefined)[] = [];
  private timer: TimerHandle | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private framesOut = 0;
  private stale = 0;
  /** The recorder refused these: answered 409 without asking again. */
  private refusedRates = new Set<number>();
  /** The recorder refused or ignored a reverse speed: every reverse speed answers 409. */
  private noReverse = false;
  /** A reopen after an unanswered speed change, under way. */
  private reopening: Promise<void> | undefined;
  /** URL mode: the recording URL's time origin (npt 0). */
  private urlOrigin = 0;
  /** Gaps and recorded stretches, from the recorder's answers (ONVIF replay only: it alone gives frame times). */
  private readonly gaps: GapLearner;

  constructor(opts: PlaybackSessionOptions) {
    this.o = opts;
    this.timers = opts.timers ?? realTimers;
    this.log = opts.log;
    this.events = new SafeEmitter<PlaybackEvents>((event, err) => this.log.error("playback listener failed", { event, err }));
    this.onvif = (opts.camera.playback?.mode ?? "onvif") === "onvif";
    this.target = opts.start;
    this.gaps = new GapLearner({ minGapMs: opts.minGapMs ?? 1000 });
  }

  /** Connects to the recorder and starts replay at `start`; resolves with the tracks (already set on the sink). */
  async open(): Promise<TrackSpec[]> {
    if (this.client) throw new WrongStateError("playback session already opened");
    const pb = this.o.camera.playback;
    let url: string;
    let playHeaders: Record<string, string>;
    if (this.onvif) {
      url = pb?.url ?? this.o.camera.url;
      playHeaders = replayPlayHeaders(this.request(this.o.start, false));
    } else {
      url = expandUrlTemplate(pb!.url!, this.o.start);
      this.urlOrigin = this.o.start;
      playHeaders = nptPlayHeaders(0, 1);
    }
    const client = this.createClient(url, playHeaders, (s) => {
      this.specs = s.specs;
      this.retimer = new Retimer({
        tracks: s.specs.map((x) => ({ kind: x.kind, clockRate: x.clockRate })),
        startDelayMs: this.o.startDelayMs,
        maxPackets: this.o.bufferPackets,
      });
      this.retimer.onSegment((seg) => this.events.emit("segment", seg));
      this.retimer.reset(1, this.o.start);
      this.o.sink.setTracks(s.specs);
      this.learn(this.gaps.restart(this.o.start, 1, this.request(this.o.start, false).intraOnly));
      const at = parseClockRangeStart(s.playAnswer?.get("Range"));
      if (at !== undefined && this.onvif) {
        this.target = Math.max(at, this.o.start);
        this.learn(this.gaps.answered(at));
      }
      this.gate = false;
    });
    this.client = client;
    if (this.closed) throw new ClosedError("playback closed while opening");
    try {
      await client.start();
    } catch (err) {
      // An open range refused as out of range: the recorder holds nothing from the start on.
      if (this.onvif && err instanceof RtspStatusError && err.method === "PLAY" && (err.status === 457 || err.status === 404))
        this.learn(this.gaps.refused(this.o.start, (this.o.wallClock ?? Date.now)()));
      throw err;
    }
    return this.specs;
  }

  /** An RTSP client whose media, answers and end count only while it is this session's current one. */
  private createClient(url: string, playHeaders: Record<string, string>, onPlay: NonNullable<RtspClientOptions["onPlay"]>): RtspClient {
    const client: RtspClient = (this.o.createClient ?? ((x) => new RtspClient(x)))({
      url,
      username: this.o.camera.username,
      password: this.o.camera.password,
      transport: this.o.camera.transport === "udp" ? "udp" : "tcp",
      tlsInsecure: this.o.camera.tlsInsecure,
      basicOverPlainRtsp: this.o.camera.basicOverPlainRtsp,
      redirectHosts: this.o.camera.redirectHosts,
      requestTimeoutMs: this.o.requestTimeoutMs,
      mediaTimeoutMs: this.o.mediaTimeoutMs,
      ports: this.o.ports,
      log: this.log,
      timers: this.timers,
      require: this.onvif ? ONVIF_REPLAY : undefined,
      playHeaders,
      sink: {
        pushRtp: (t, p) => {
          if (client === this.client) this.onRtp(t, p);
        },
        pushRtcp: () => {},
      },
      onPlay: (s) => {
        if (client === this.client || this.client === undefined) onPlay(s);
      },
    });
    client.events.on("ended", (err) => {
      if (client === this.client) this.fail(err);
    });
    return client;
  }

  /**
   * A new RTSP session at the recorder from `time` at `rate`, feeding the same viewer (same
   * re-timer, so the browser sees one continuous stream): what is left when the recorder no
   * longer answers on the old one (a speed it cannot play and never refuses).
   */
  private async reopen(time: number, rate: number, paused: boolean): Promise<void> {
    const old = this.client!;
    const retimer = this.retimer!;
    this.timers.clearTimeout(this.timer);
    this.gate = true;
    this.awaitDiscont = false;
    let url: string;
    let playHeaders: Record<string, string>;
    if (this.onvif) {
      url = this.o.camera.playback?.url ?? this.o.camera.url;
      playHeaders = replayPlayHeaders(this.request(time, true, rate));
    } else {
      url = expandUrlTemplate(this.o.camera.playback!.url!, time);
      this.urlOrigin = time;
      playHeaders = nptPlayHeaders(0, rate);
    }
    retimer.reset(rate, time);
    this.tsAnchor = [];
    this.target = time;
    this.lastSent = undefined;
    this.rate = rate;
    this.ended = false;
    this.holdAfterFrame = paused;
    this.paused = false;
    const client = this.createClient(url, playHeaders, (s) => {
      const at = this.onvif ? parseClockRangeStart(s.playAnswer?.get("Range")) : undefined;
      if (at !== undefined && rate > 0 && at > time) this.target = at;
      this.gate = false;
    });
    this.client = client;
    void old.close("speed change not answered by the recorder");
    if (this.closed) throw new ClosedError("playback closed while reopening");
    await client.start();
    this.pump();
  }

  /** `reopen`, tried `reopenAttempts` times (each bounded by the request timeout); then the session ends. */
  private async reopenRetrying(time: number, rate: number, paused: boolean): Promise<void> {
    const attempts = this.o.reopenAttempts ?? 3;
    try {
      for (let i = 1; !this.closed; i++) {
        try {
          await this.reopen(time, rate, paused);
          this.log.info("playback reopened at the recorder after an unanswered speed change", { attempt: i });
          this.events.emit("state", this.state());
          return;
        } catch (err) {
          if (this.closed) return;
          if (i >= attempts) {
            void this.close(`recorder did not answer after a speed change (${(err as Error).message})`);
            return;
          }
          this.log.info("playback reopen failed; trying again", { attempt: i, err });
        }
      }
    } finally {
      this.reopening = undefined;
    }
  }

  state(): PlaybackState {
    return { position: this.lastSent ?? this.target, paused: this.paused || this.holdAfterFrame, rate: this.rate, ended: this.ended };
  }

  stats(): PlaybackSessionStats {
    return {
      retimer: this.retimer ? { ...this.retimer.stats, dropped: { ...this.retimer.stats.dropped } } : emptyRetimerStats(),
      framesOut: this.framesOut,
      stale: this.stale,
    };
  }

  /**
   * Applies one control; resolves with the new state. Throws BadInputError (bad value),
   * WrongStateError (step while playing, a rate the recorder refuses: HTTP 409),
   * UpstreamError (the recorder failed), ClosedError.
   */
  control(c: PlaybackControl): Promise<PlaybackState> {
    const run = this.chain.then(() => this.apply(c));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Ends the RTSP session and stops sending. Every caller gets the same promise. */
  close(reason = "closed"): Promise<void> {
    this.closing ??= this.doClose(reason);
    return this.closing;
  }

  private async doClose(reason: string): Promise<void> {
    this.closed = true;
    this.timers.clearTimeout(this.timer);
    this.retimer?.clear();
    this.learn(this.gaps.flush());
    await this.client?.close(reason);
    this.events.emit("closed", reason);
  }

  // ---- controls --------------------------------------------------------------------

  private async apply(c: PlaybackControl): Promise<PlaybackState> {
    if (this.reopening) await this.reopening;
    if (this.closed) throw new ClosedError("playback session closed");
    if (!this.client || !this.retimer) throw new WrongStateError("playback session not started");
    switch (c.action) {
      case "seek":
        if (!Number.isFinite(c.time)) throw new BadInputError("seek needs a time");
        await this.restart(c.time, this.rate, this.paused);
        break;
      case "jump":
        if (!Number.isFinite(c.seconds) || Math.abs(c.seconds) > 366 * 86400) throw new BadInputError("jump needs seconds");
        await this.restart(this.state().position + c.seconds * 1000, this.rate, this.paused);
        break;
      case "speed": {
        checkRate(c.rate);
        if (c.rate === this.rate) break;
        if (this.refusedRates.has(c.rate) || (c.rate < 0 && this.noReverse)) throw refusedRate(c.rate);
        const before = this.rate;
        const position = this.state().position;
        const paused = this.paused;
        const client = this.client;
        let unanswered = false;
        let timer: TimerHandle | undefined;
        const attempt = this.restart(position, c.rate, paused);
        attempt.catch(() => undefined);
        try {
          await Promise.race([
            attempt,
            new Promise<never>((_, reject) => {
              timer = this.timers.setTimeout(() => {
                unanswered = true;
                reject(refusedRate(c.rate));
              }, this.o.speedChangeTimeoutMs ?? 3000);
            }),
          ]);
        } catch (err) {
          if (err instanceof WrongStateError) {
            if (c.rate < 0) this.noReverse = true;
            else this.refusedRates.add(c.rate);
            this.log.info("playback speed refused by the recorder; back to the previous speed", { rate: c.rate, unanswered });
            // Go on where we were, at the rate we had: on the same RTSP session if the recorder
            // answered, on a new one if it did not (it may never answer on that one again).
            // A recorder stuck on it may not answer anyone for a while: the 409 goes now, the
            // reopen goes on behind it (the next control waits for it).
            if (unanswered && this.client === client) this.reopening = this.reopenRetrying(position, before, paused);
            else await this.restart(position, before, paused).catch(() => undefined);
            throw refusedRate(c.rate);
          }
          throw err;
        } finally {
          this.timers.clearTimeout(timer);
        }
        break;
      }
      case "pause":
        this.holdAfterFrame = false;
        if (this.paused) break;
        this.paused = true;
        this.timers.clearTimeout(this.timer);
        this.client.expectMedia(false);
        await this.request2("PAUSE", {});
        break;
      case "resume":
        if (!this.paused) break;
        if (this.o.camera.playback?.pacing === "gateway") {
          // The recorder ran ahead of the picture (it sends as fast as it can): go on from the picture.
          this.holdAfterFrame = false;
          await this.restart(this.state().position + 1, this.rate, false);
          break;
        }
        this.paused = false;
        this.holdAfterFrame = false;
        this.client.expectMedia(true);
        this.retimer.thaw(this.timers.now());
        // RFC 2326 §10.5: a PLAY without Range resumes where PAUSE stopped.
        await this.request2("PLAY", this.onvif ? { Scale: String(this.rate) } : {});
        this.pump();
        break;
      case "step":
        if (!this.paused) throw new WrongStateError("step works while paused");
        await this.step();
        break;
      default:
        throw new BadInputError("unknown action");
    }
    const s = this.state();
    this.events.emit("state", s);
    return s;
  }

  /** A fresh stream from `time` at `rate` (seek, jump, speed); paused: shows the frame at `time`, then holds. */
  private async restart(time: number, rate: number, paused: boolean): Promise<void> {
    const client = this.client!;
    const retimer = this.retimer!;
    this.timers.clearTimeout(this.timer);
    // The new stream starts at a packet with the D bit where the recorder marks them (its
    // first packets may come before the PLAY answer); otherwise at the answer.
    this.awaitDiscont = this.onvif && this.marksDiscont === true;
    this.gate = !this.awaitDiscont;
    this.ended = false;
    retimer.reset(rate, time);
    this.tsAnchor = [];
    this.target = time;
    this.lastSent = undefined;
    // Paused: play until the frame asked for is on screen (send() holds it there).
    this.holdAfterFrame = paused;
    this.paused = false;
    // No media is owed until the recorder has answered (a recorder may take its time over a speed it finds hard).
    client.expectMedia(false);
    let res: RtspResponse;
    if (this.onvif) {
      const req = this.request(time, true, rate);
      this.learn(this.gaps.restart(time, rate, req.intraOnly));
      res = await this.request2("PLAY", replayPlayHeaders(req), true, (status) => {
        if (rate > 0 && (status === 457 || status === 404)) this.learn(this.gaps.refused(time, (this.o.wallClock ?? Date.now)()));
      });
    } else {
      if (time < this.urlOrigin) throw new WrongStateError("this recorder's playback URL cannot seek before the session's start; open a new playback session");
      res = await this.request2("PLAY", nptPlayHeaders((time - this.urlOrigin) / 1000, rate), true);
    }
    // Answered too late: the session moved on (a reopen) without this request.
    if (client !== this.client || this.closed) throw new ClosedError("the recorder answered after the session moved on");
    client.expectMedia(true);
    this.rate = rate;
    const at = this.onvif ? parseClockRangeStart(res.headers.get("Range")) : undefined;
    if (at !== undefined && rate > 0 && at > time) {
      this.target = at; // a seek into a gap lands after it
      this.learn(this.gaps.answered(at));
    }
    this.gate = false;
    this.pump();
  }

  /** One frame forward while paused: from what is buffered, else by asking the recorder for the next one. */
  private async step(): Promise<void> {
    const retimer = this.retimer!;
    const sent = retimer.nextFrame(this.timers.now());
    if (sent.some((p) => this.specs[p.track]?.kind === "video")) {
      this.send(sent);
      return;
    }
    const pos = this.state().position;
    await this.restart(pos + 1, this.rate > 0 ? this.rate : 1, true);
  }

  private request(start: number, immediate: boolean, rate = this.rate) {
    const pb = this.o.camera.playback;
    return {
      start,
      rate,
      clientPaces: pb?.pacing === "gateway",
      intraOnly: Math.abs(rate) >= (pb?.intraFromRate ?? 8),
      immediate,
    };
  }

  /** Sends PLAY/PAUSE; maps the recorder's refusals. `seeking`: a refusal of Scale/Range is the page's 409. */
  private async request2(method: "PLAY" | "PAUSE", headers: Record<string, string>, seeking = false, onRefused?: (status: number) => void): Promise<RtspResponse> {
    const res = await this.client!.control(method, headers);
    if (res.status < 300) return res;
    onRefused?.(res.status);
    if (UNSUPPORTED.has(res.status) || (seeking && (res.status === 400 || res.status === 403 || res.status === 406)))
      throw new WrongStateError(`the recorder refused this (${res.status} ${res.reason})`);
    throw new UpstreamError(`recorder answered ${method} with ${res.status} ${res.reason}`);
  }

  // ---- media -------------------------------------------------------------------------

  private onRtp(track: number, packet: Buffer): void {
    const retimer = this.retimer;
    if (!retimer || this.closed) return;
    if (this.gate) {
      this.stale++;
      return;
    }
    const spec = this.specs[track];
    if (!spec) return;
    const ext = readOnvifExtension(packet);
    if (ext) {
      this.marksDiscont ??= ext.discontinuity;
      if (this.awaitDiscont) {
        if (!ext.discontinuity) {
          this.stale++;
          return;
        }
        this.awaitDiscont = false;
      }
    }
    let recorded: number;
    if (ext) recorded = ext.time;
    else {
      // No frame times from the recorder: its RTP clock counts recorded time from the position asked.
      const ts = packet.readUInt32BE(4);
      const first = (this.tsAnchor[track] ??= ts);
      recorded = this.target + ((((ts - first) | 0) / spec.clockRate) * 1000);
    }
    let keyframe = false;
    if (spec.kind === "video" && ext) this.learn(this.gaps.frame(recorded, ext.discontinuity));
    if (spec.kind === "video") {
      const hl = rtpHeaderLength(packet);
      keyframe = ext?.cleanPoint === true || (hl > 0 && h264PayloadIsKeyframeStart(packet.subarray(hl)));
    }
    const verdict = retimer.push(track, packet, recorded, keyframe, this.timers.now());
    if (verdict === "full") {
      // Over the bound: what follows cannot be decoded without what was dropped; start again at a key frame.
      retimer.reset(this.rate, recorded);
    } else if (retimer.size >= this.o.bufferPackets * 0.75 && this.client && !this.client.held) {
      // The recorder sends faster than we play (Rate-Control: no): hold it back by TCP flow control.
      this.client.holdMedia(true);
    }
    if (ext?.terminal && spec.kind === "video") this.client?.expectMedia(false);
    if (!this.paused) this.pump();
  }

  /** Sends what is due and arms the timer for the next. */
  private pump(): void {
    const retimer = this.retimer;
    if (!retimer || this.closed || this.paused) return;
    this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    const now = this.timers.now();
    this.send(retimer.due(now));
    if (this.client?.held && retimer.size < this.o.bufferPackets / 4) this.client.holdMedia(false);
    if (this.paused) return;
    const next = retimer.nextDue();
    if (next !== undefined) this.timer = this.timers.setTimeout(() => this.pump(), Math.max(0, next - this.timers.now()));
  }

  private send(packets: readonly { track: number; data: Buffer; recorded: number }[]): void {
    for (const p of packets) {
      const video = this.specs[p.track]?.kind === "video";
      this.o.sink.pushRtp(p.track, p.data);
      if (!video) continue;
      this.lastSent = p.recorded;
      if ((p.data[1]! & 0x80) !== 0) {
        this.framesOut++;
        if (this.holdAfterFrame && p.recorded >= this.target - 0.5) {
          // A seek or step while paused: this frame is the one asked for; hold it.
          this.holdAfterFrame = false;
          this.paused = true;
          this.timers.clearTimeout(this.timer);
          this.client?.expectMedia(false);
          this.chain = this.chain.then(() => this.request2("PAUSE", {})).catch(() => undefined);
          this.events.emit("state", this.state());
          return;
        }
      }
    }
  }

  private learn(learned: readonly Learned[]): void {
    if (!this.onvif) return;
    for (const l of learned) this.events.emit("learned", l);
  }

  private fail(err: GatehouseError): void {
    if (this.closed) return;
    this.log.info("playback recorder session ended", { reason: err.message });
    void this.close(`recorder: ${err.message}`);
  }
}

function refusedRate(rate: number): WrongStateError {
  return new WrongStateError(rate < 0 ? "This recorder does not play backwards" : `This recorder does not play at ${rate}×`);
}

const header = emptyRtpHeader();
function rtpHeaderLength(p: Buffer): number {
  return readRtpHeader(p, header) ? header.payloadOffset : 0;
}

function emptyRetimerStats(): RetimerStats {
  return { queued: 0, pushed: 0, dropped: { awaitingKeyframe: 0, audioMuted: 0, beforeStart: 0, full: 0, malformed: 0 }, late: 0, gaps: 0 };
}
