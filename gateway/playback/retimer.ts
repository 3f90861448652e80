/**
 * Re-timing of a recorder's replay for a browser, without I/O: recorded packets in (each
 * with its recorded time), packets out with the wall-clock time to send them and new
 * RTP sequence numbers and timestamps.
 *
 * A browser's jitter buffer plays what it is given at the pace of the RTP timestamps.
 * Whatever the recorder does (4× by Scale, as fast as it can with `Rate-Control: no`,
 * a jump over a gap, a fresh stream after a seek), the viewer sees one continuous
 * stream: per track one sequence space without gaps and timestamps that run with the
 * send time (so every speed plays smoothly at the frame rate it is sent at). Frames are
 * sent at `anchor.wall + (recorded − anchor.recorded) / rate`; an anchor is set at the
 * first frame after a start, seek or speed change (after `startDelayMs`), and again when
 * the recorder falls behind or jumps (a gap in the recording): each anchor is a
 * *segment* that maps send time back to recorded time, which the page uses to show the
 * recorded wall-clock time of the frame on screen.
 *
 * After a reset (seek, start) video waits for a key frame and audio for the video.
 * Audio is only sent at rate 1.
 */

/** One track as the re-timer needs it. */
export interface RetimerTrack {
  kind: "video" | "audio";
  /** RTP clock rate, Hz. */
  clockRate: number;
}

export interface RetimerOptions {
  tracks: readonly RetimerTrack[];
  /** Held before the first frame after a reset or speed change, ms. */
  startDelayMs: number;
  /** A frame due more than this in the past re-anchors at now (the recorder fell behind), ms. Default 250. */
  maxLateMs?: number;
  /** A step in recorded time worth more than this of output time is a gap: re-anchor right after the previous frame, ms. Default 1000. */
  maxGapMs?: number;
  /** Most packets held; `push` reports `full` beyond it. */
  maxPackets: number;
  /** Initial sequence number and timestamp per track (tests); default random. */
  initial?: readonly { seq: number; ts: number }[];
}

/** A segment of the output: from send time `wall` on, recorded time = `recorded` + (t − wall) × rate. */
export interface Segment {
  /** Unix ms (the send clock) where the segment starts. */
  wall: number;
  /** Recorded time at `wall`, Unix ms. */
  recorded: number;
  rate: number;
  /** The video track's outgoing RTP timestamp at `wall` (for pages that read frame timestamps). */
  rtpTimestamp: number;
}

/** A packet ready to send. */
export interface TimedPacket {
  track: number;
  /** The packet, already rewritten (sequence number and timestamp). */
  data: Buffer;
  /** When to send, Unix ms. */
  sendAt: number;
  /** Its recorded time, Unix ms. */
  recorded: number;
  /** True on the first packet of a key frame. */
  keyframe: boolean;
}

/** What `push` did with a packet. */
export type PushResult = "queued" | "awaitingKeyframe" | "audioMuted" | "beforeStart" | "full" | "malformed";

export interface RetimerStats {
  queued: number;
  pushed: number;
  dropped: Record<Exclude<PushResult, "queued">, number>;
  /** Re-anchors because the recorder fell behind. */
  late: number;
  /** Re-anchors at a gap in the recording. */
  gaps: number;
}

interface TrackState {
  /** One SSRC for the whole session, whatever the recorder's streams use. */
  ssrc: number;
  seq: number;
  /** Timestamp at send time `epoch`. */
  tsBase: number;
  clockRate: number;
  kind: "video" | "audio";
}

export class Retimer {
  private readonly o: Required<Omit<RetimerOptions, "initial">>;
  private readonly tracks: TrackState[];
  private readonly queue: TimedPacket[] = [];
  private head = 0;
  private rate = 1;
  /** Send-clock origin of the output timestamps. */
  private epoch: number | undefined;
  private anchor: { wall: number; recorded: number } | undefined;
  private lastRecorded: number | undefined;
  /** Send time of the last video packet scheduled (queued or sent). */
  private lastSendAt = -Infinity;
  /**
   * Send time of the last packet handed out (by `due` or `nextFrame`). Dropping the queue
   * rolls `lastSendAt` back to it: output timestamps must never run backwards from what
   * the viewer got, but packets dropped unsent (a recorder paced by the gateway runs far
   * ahead) must not hold the next stream back until their send time.
   */
  private lastOutAt = -Infinity;
  private awaitingKeyframe = true;
  /** Frames before this recorded time (a seek target) are sent at the anchor, not paced. */
  private target: number | undefined;
  private readonly segmentListeners: ((s: Segment) => void)[] = [];
  readonly stats: RetimerStats = {
    queued: 0,
    pushed: 0,
    dropped: { awaitingKeyframe: 0, audioMuted: 0, beforeStart: 0, full: 0, malformed: 0 },
    late: 0,
    gaps: 0,
  };

  constructor(opts: RetimerOptions) {
    this.o = { maxLateMs: 250, maxGapMs: 1000, ...opts };
    this.tracks = opts.tracks.map((t, i) => ({
      kind: t.kind,
      clockRate: t.clockRate,
      ssrc: Math.floor(Math.random() * 0x1_0000_0000) >>> 0,
      seq: opts.initial?.[i]?.seq ?? Math.floor(Math.random() * 0x10000),
      tsBase: opts.initial?.[i]?.ts ?? Math.floor(Math.random() * 0x1_0000_0000),
    }));
  }

  /** Called with each new segment. */
  onSegment(fn: (s: Segment) => void): void {
    this.segmentListeners.push(fn);
  }

  get currentRate(): number {
    return this.rate;
  }

  /**
   * A new stream from the recorder (start, seek, or a speed change that restarts it):
   * drops what is queued, waits for a key frame, re-anchors at it. `target` is the
   * recorded time asked for (frames before it are sent at once, for the decoder).
   */
  reset(rate: number, target?: number): void {
    this.rate = rate;
    this.clear();
    this.anchor = undefined;
    this.lastRecorded = undefined;
    this.awaitingKeyframe = true;
    // Reverse play starts at the target anyway; only forward play holds frames before it.
    this.target = rate > 0 ? target : undefined;
  }

  /** Same stream, new rate (a recorder the gateway paces): frames not yet sent are re-timed from now. */
  setRate(rate: number, now: number): void {
    if (rate === this.rate) return;
    const pending = this.queue.slice(this.head);
    this.rate = rate;
    this.anchor = undefined;
    this.clear();
    for (const p of pending) this.schedule(p.track, p.data, p.recorded, p.keyframe, now, false);
  }

  /** Drops every queued packet. */
  clear(): void {
    this.queue.length = 0;
    this.head = 0;
    this.stats.queued = 0;
    this.lastSendAt = this.lastOutAt;
  }

  /** Packets held (not yet due). */
  get size(): number {
    return this.queue.length - this.head;
  }

  /** Send time of the next packet, or undefined when none is held. */
  nextDue(): number | undefined {
    return this.head < this.queue.length ? this.queue[this.head]!.sendAt : undefined;
  }

  /** The recorded time of the next video frame held, if any. */
  peekVideo(): TimedPacket | undefined {
    for (let i = this.head; i < this.queue.length; i++) if (this.tracks[this.queue[i]!.track]!.kind === "video") return this.queue[i];
    return undefined;
  }

  /**
   * Takes a recorded packet (copied): schedules it or says why not. `recorded` is its
   * recorded time (Unix ms); `keyframe` whether a key frame starts with it.
   */
  push(track: number, packet: Buffer, recorded: number, keyframe: boolean, now: number): PushResult {
    const t = this.tracks[track];
    if (!t || packet.length < 12 || !Number.isFinite(recorded)) return this.drop("malformed");
    if (this.size >= this.o.maxPackets) return this.drop("full");
    if (t.kind === "audio") {
      if (this.rate !== 1) return this.drop("audioMuted");
      if (this.anchor === undefined) return this.drop("awaitingKeyframe");
    } else if (this.awaitingKeyframe) {
      if (!keyframe) return this.drop("awaitingKeyframe");
      this.awaitingKeyframe = false;
    }
    this.schedule(track, Buffer.from(packet), recorded, keyframe, now, true);
    this.stats.pushed++;
    return "queued";
  }

  /** Removes and returns the packets due at `now`, in order. */
  due(now: number): TimedPacket[] {
    const out: TimedPacket[] = [];
    while (this.head < this.queue.length && this.queue[this.head]!.sendAt <= now) out.push(this.queue[this.head++]!);
    if (out.length > 0) this.lastOutAt = Math.max(this.lastOutAt, out[out.length - 1]!.sendAt);
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.stats.queued = this.size;
    return out;
  }

  /** Removes and returns the next video frame (all its packets) and the audio before it, sent now: one step. */
  nextFrame(now: number): TimedPacket[] {
    const out: TimedPacket[] = [];
    let frameTs: number | undefined;
    while (this.head < this.queue.length) {
      const p = this.queue[this.head]!;
      const video = this.tracks[p.track]!.kind === "video";
      if (video) {
        const ts = p.data.readUInt32BE(4);
        if (frameTs === undefined) frameTs = ts;
        else if (ts !== frameTs) break;
      }
      out.push(p);
      this.head++;
    }
    if (out.length > 0) this.retimeFrom(now, out);
    this.stats.queued = this.size;
    return out;
  }

  /** After a pause: what is still queued is re-timed to play on from `now`. */
  thaw(now: number): void {
    const pending = this.queue.slice(this.head);
    this.clear();
    this.anchor = undefined;
    for (const p of pending) this.schedule(p.track, p.data, p.recorded, p.keyframe, now, false);
  }

  private drop(why: Exclude<PushResult, "queued">): PushResult {
    this.stats.dropped[why]++;
    return why;
  }

  private schedule(track: number, data: Buffer, recorded: number, keyframe: boolean, now: number, fresh: boolean): void {
    const t = this.tracks[track]!;
    const video = t.kind === "video";
    let sendAt: number;
    if (this.anchor === undefined) {
      sendAt = Math.max(now + (fresh ? this.o.startDelayMs : 0), this.lastSendAt);
      this.setAnchor(sendAt, this.target !== undefined ? Math.max(recorded, this.target) : recorded);
    } else {
      sendAt = this.sendTime(recorded);
      if (video && this.lastRecorded !== undefined && Math.abs(recorded - this.lastRecorded) / Math.abs(this.rate) > this.o.maxGapMs) {
        // A gap in the recording (or the recorder skipped ahead): go on right after the previous frame.
        this.stats.gaps++;
        sendAt = Math.max(this.lastSendAt, now);
        this.setAnchor(sendAt, recorded);
      } else if (video && sendAt < now - this.o.maxLateMs) {
        this.stats.late++;
        sendAt = now;
        this.setAnchor(sendAt, recorded);
      }
    }
    if (sendAt < this.lastSendAt) sendAt = this.lastSendAt;
    if (video) {
      this.lastRecorded = recorded;
      this.lastSendAt = sendAt;
    }
    this.epoch ??= sendAt;
    const ts = (t.tsBase + Math.round(((sendAt - this.epoch) * t.clockRate) / 1000)) >>> 0;
    data.writeUInt32BE(t.ssrc, 8);
    data.writeUInt16BE(t.seq, 2);
    t.seq = (t.seq + 1) & 0xffff;
    data.writeUInt32BE(ts, 4);
    this.queue.push({ track, data, sendAt, recorded, keyframe });
    this.stats.queued = this.size;
  }

  private retimeFrom(now: number, packets: TimedPacket[]): void {
    const at = Math.max(now, this.lastSendAt + 1);
    for (const p of packets) {
      const t = this.tracks[p.track]!;
      this.epoch ??= at;
      p.sendAt = at;
      p.data.writeUInt32BE((t.tsBase + Math.round(((at - this.epoch) * t.clockRate) / 1000)) >>> 0, 4);
    }
    this.lastSendAt = at;
    this.lastOutAt = at;
    this.anchor = undefined;
    const last = packets[packets.length - 1]!;
    this.emitSegment(at, last.recorded, 0);
  }

  private sendTime(recorded: number): number {
    const a = this.anchor!;
    const r = this.target !== undefined && recorded < this.target ? this.target : recorded;
    return a.wall + (r - a.recorded) / this.rate;
  }

  private setAnchor(wall: number, recorded: number): void {
    this.anchor = { wall, recorded };
    this.emitSegment(wall, recorded, this.rate);
  }

  private emitSegment(wall: number, recorded: number, rate: number): void {
    const v = this.tracks.find((t) => t.kind === "video");
    const epoch = this.epoch ?? wall;
    const rtpTimestamp = v ? (v.tsBase + Math.round(((wall - epoch) * v.clockRate) / 1000)) >>> 0 : 0;
    const s: Segment = { wall, recorded, rate, rtpTimestamp };
    for (const fn of this.segmentListeners) fn(s);
  }
}
