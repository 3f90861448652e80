/**
 * One camera's media in the SFU: the MediaSink the gateway's ingest pushes into, the
 * per-track output timeline (continuous across recorder reconnects), H.264
 * normalisation, packet history + GOP cache, upstream clock for sender reports, and
 * fan-out to connected viewers.
 */
import { SafeEmitter } from "../config/events.ts";
import type { CameraId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import { parseSpropParameterSets } from "./h264/nal.ts";
import { H264Normalizer } from "./h264/normalizer.ts";
import { H265Normalizer } from "./h265/normalizer.ts";
import { PacketRing, SlotFlag } from "./ring.ts";
import { ntpToUnixMs } from "./rtp/ntp.ts";
import { emptyRtpHeader, readRtpHeader } from "./rtp/packet.ts";
import { parseRtcp } from "./rtp/rtcp.ts";
import { TrackTimeline, Verdict } from "./timeline.ts";
import type { SourceDropReason, SourceEvents, SourceHandle, SourceStats } from "./api.ts";
import { ViewerCloseReasons, type ViewerCloseReason } from "./api.ts";

export type { SourceDropReason, SourceEvents, SourceStats, SourceTrackStats } from "./api.ts";
import type { CodecName, MediaSink, TrackSpec } from "./types.ts";
import type { Viewer, ViewerSource } from "./viewer.ts";

export interface SourceOptions {
  id: CameraId;
  log: Logger;
  now: () => number;
  /** Packets of history per track for NACK answers. */
  nackHistory: number;
  /** Largest cached GOP, packets (the ring holds at least this many video packets). */
  gopCachePackets: number;
  /** Largest cached GOP, bytes of payload. */
  gopCacheBytes: number;
  /** Largest RTP payload sent to viewers (H.264 is re-fragmented to fit), bytes. */
  maxPayload: number;
  onClosed?: (source: Source) => void;
}

/** Slot size for non-video tracks (audio payloads, unnormalised). */
const AUDIO_SLOT_BYTES = 1500;
/**
 * How long after a track starts its sender reports wait for the recorder's own (RFC 3550
 * §6.2: the first within half the 5 s minimum interval, randomised up to 1.5×) before
 * falling back to the arrival-time mapping.
 */
export const SR_FIRST_WAIT_MS = 4000;

interface TrackState {
  spec: TrackSpec;
  timeline: TrackTimeline;
  ring: PacketRing;
  normalizer: H264Normalizer | undefined;
  /** H.265 passthrough (sfu/h265/normalizer.ts): access units re-packetized to maxPayload. */
  h265: H265Normalizer | undefined;
  /** Upstream packets lost while an H.265 access unit was being received: the gap goes before its first output. */
  pendingGap: number;
  /** Next output extended sequence number. */
  nextExt: number;
  awaitKeyframe: boolean;
  /** Extended seq of the current GOP's first packet, −1 when none usable. */
  gopStart: number;
  gopBytes: number;
  // Clock mapping for sender reports.
  clockBaseTs: number;
  clockBaseMs: number;
  clockMinLateMs: number;
  clockWindowMin: number;
  clockWindowStart: number;
  clockStarted: boolean;
  upstreamSsrc: number;
  /** Last upstream SR: camera NTP (Unix ms), output-timeline ts, arrival (our ms). */
  srUnixMs: number;
  srTs: number;
  srArrivalMs: number;
  hasSr: boolean;
  /** Output ts offset of the current session (upstream ts + offset = output ts), for SR mapping. */
  tsOffset: number;
  packetsIn: number;
  packetsOut: number;
  lost: number;
  keyframes: number;
}

export class Source implements MediaSink, ViewerSource, SourceHandle {
  readonly id: CameraId;
  private readonly o: SourceOptions;
  private readonly log: Logger;
  private readonly events: SafeEmitter<SourceEvents>;
  private tracks: TrackState[] = [];
  private specs: readonly TrackSpec[] = [];
  private tracksKnown = false;
  private upstreamUp = false;
  private readonly viewers = new Set<Viewer>();
  /** Connected viewers receiving fan-out; an array for the per-packet loop. */
  private attached: Viewer[] = [];
  private rotate = 0;
  private burstAt = 0;
  private burstArmed = false;
  private readonly endBurst = (): void => {
    this.burstArmed = false;
  };
  private readonly hdr = emptyRtpHeader();
  private closed = false;
  private closing: Promise<void> | undefined;
  private packetsIn = 0;
  private bytesIn = 0;
  private lastPacketAt: number | undefined;
  private rateAt = 0;
  private rateBytes = 0;
  private rate = 0;
  private sessions = 0;
  private readonly dropped: Record<SourceDropReason, number> = {
    malformed: 0,
    payloadType: 0,
    duplicate: 0,
    late: 0,
    awaitingKeyframe: 0,
    unsupportedPayload: 0,
    oversize: 0,
    noTracks: 0,
    backlog: 0,
  };

  constructor(o: SourceOptions) {
    this.o = o;
    this.id = o.id;
    this.log = o.log;
    this.events = new SafeEmitter<SourceEvents>((event, err) => this.log.warn("source listener failed", { event, err }));
  }

  on<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  once<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void {
    return this.events.once(event, fn);
  }

  off<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): void {
    this.events.off(event, fn);
  }

  /** Listeners on an event (the SFU only builds stats when someone listens). */
  listenerCount(event: keyof SourceEvents): number {
    return this.events.listenerCount(event);
  }

  /** The current upstream tracks, or undefined before the first setTracks. */
  currentTracks(): readonly TrackSpec[] | undefined {
    return this.tracksKnown ? this.specs : undefined;
  }

  // ---- MediaSink ----------------------------------------------------------------

  setTracks(tracks: readonly TrackSpec[]): void {
    if (this.closed) return;
    const specs = tracks.map((t) => Object.freeze({ ...t }));
    const next: TrackState[] = [];
    for (const [i, spec] of specs.entries()) {
      const prev = this.tracks[i];
      // Same kind and clock at the same index: keep history and timeline, so viewers continue seamlessly.
      const keep = prev && prev.spec.kind === spec.kind && prev.spec.clockRate === spec.clockRate;
      const st = keep ? prev : this.newTrack(spec);
      if (keep && prev.spec.codec !== spec.codec) {
        prev.ring.clear();
        prev.gopStart = -1;
      }
      st.spec = spec;
      st.timeline.endSession();
      st.awaitKeyframe = spec.kind === "video";
      // Pictures of an earlier session are never served again: the first a viewer decodes is this session's keyframe.
      st.gopStart = -1;
      st.hasSr = false;
      st.clockStarted = false;
      if (spec.codec === "H264") {
        st.normalizer ??= new H264Normalizer({ maxPayload: this.o.maxPayload });
        st.normalizer.reset();
        const sets = parseSpropParameterSets(spec.fmtp);
        if (sets.sps.length > 0 || sets.pps.length > 0) st.normalizer.setParameterSets(sets);
      } else {
        st.normalizer = undefined;
      }
      if (spec.codec === "H265") {
        st.h265 ??= new H265Normalizer({ maxPayload: this.o.maxPayload, fmtp: spec.fmtp });
        st.h265.setFmtp(spec.fmtp);
        st.h265.reset();
      } else st.h265 = undefined;
      st.pendingGap = 0;
      next.push(st);
    }
    this.tracks = next;
    this.specs = specs;
    this.tracksKnown = true;
    this.sessions++;
    this.upstreamUp = true;
    this.log.info("upstream tracks", {
      tracks: specs.map((t) => `${t.kind}:${t.codec}/${t.clockRate}`).join(","),
    });
    for (const v of this.viewers) v.onSourceTracks();
  }

  pushRtp(track: number, packet: Buffer): void {
    this.pushRtpAt(track, packet, this.burstArrival());
  }

  /** Counts `n` packets dropped before they reached this source (see SourceDropReason "backlog"). */
  countDropped(reason: SourceDropReason, n: number): void {
    this.packetsIn += n;
    this.dropped[reason] += n;
  }

  /**
   * Ingest hands over a burst at a time (one TCP read of an RTSP connection is often a
   * whole frame) and each packet here is fanned out before the next one is pushed: the
   * arrival of every packet of a burst is when the burst began, so forwarding latency
   * counts the time a packet waited behind the rest of its burst.
   */
  private burstArrival(): number {
    if (!this.burstArmed) {
      this.burstArmed = true;
      this.burstAt = performance.now();
      queueMicrotask(this.endBurst);
    }
    return this.burstAt;
  }

  /**
   * pushRtp with the moment ingest handed the packet over (performance.now() of this
   * thread, ms): a media worker passes the main thread's moment, so forwarding latency
   * includes the hop between threads.
   */
  pushRtpAt(track: number, packet: Buffer, inAt: number): void {
    const st = this.tracks[track];
    this.packetsIn++;
    this.bytesIn += packet.length;
    if (!st || !this.upstreamUp) {
      this.dropped[st ? "noTracks" : "malformed"]++;
      return;
    }
    st.packetsIn++;
    const h = this.hdr;
    if (!readRtpHeader(packet, h)) {
      this.dropped.malformed++;
      return;
    }
    if (h.payloadType !== st.spec.payloadType) {
      this.dropped.payloadType++;
      return;
    }
    const now = this.o.now();
    this.lastPacketAt = now;
    const tl = st.timeline;
    const verdict = tl.map(h.ssrc, h.sequenceNumber, h.timestamp, now);
    if (verdict === Verdict.DUPLICATE) {
      this.dropped.duplicate++;
      return;
    }
    if (verdict === Verdict.LATE) {
      this.dropped.late++;
      return;
    }
    if (tl.newSession) this.onNewSession(st, h.ssrc);
    st.lost += tl.lost;
    st.tsOffset = (tl.outTs - h.timestamp) >>> 0;
    this.updateClock(st, tl.outTs, now);
    const payload = packet.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength);

    if (st.h265) {
      const outs = st.h265.push(payload, h.marker, tl.outTs, tl.lost > 0);
      // An access unit is sent when complete: the loss seen meanwhile goes before its first packet.
      let gap = st.pendingGap + tl.lost;
      st.pendingGap = outs.length === 0 ? gap : 0;
      for (let i = 0; i < outs.length; i++) {
        const p = outs[i]!;
        this.emit(st, track, p.payload, p.marker, p.timestamp, p.keyframeStart, gap, inAt, now);
        gap = 0;
      }
    } else if (st.normalizer) {
      const outs = st.normalizer.push(payload, h.marker, tl.outTs);
      if (outs.length === 0) {
        this.dropped.unsupportedPayload++;
        return;
      }
      // Upstream loss stays a gap in the output sequence, before the first output packet.
      let gap = tl.lost;
      for (let i = 0; i < outs.length; i++) {
        const p = outs[i]!;
        this.emit(st, track, p.payload, p.marker, p.timestamp, p.keyframeStart, gap, inAt, now);
        gap = 0;
      }
    } else {
      this.emit(st, track, payload, h.marker, tl.outTs, false, tl.lost, inAt, now);
    }
  }

  pushRtcp(track: number, packet: Buffer): void {
    const st = this.tracks[track];
    if (!st || this.closed) return;
    for (const item of parseRtcp(packet)) {
      if (item.type !== "sr" || item.ssrc !== st.upstreamSsrc) continue;
      // RFC 3550 §6.4.1: this NTP instant corresponds to this RTP timestamp on the recorder.
      st.srUnixMs = ntpToUnixMs(item.ntpSeconds, item.ntpFraction);
      st.srTs = (item.rtpTimestamp + st.tsOffset) >>> 0;
      st.srArrivalMs = this.o.now();
      st.hasSr = true;
    }
  }

  upstreamDown(reason: string): void {
    if (this.closed) return;
    this.upstreamUp = false;
    for (const st of this.tracks) {
      st.timeline.endSession();
      st.awaitKeyframe = st.spec.kind === "video";
      // The cached GOP is from before the outage: answering a keyframe request or a new viewer
      // with it would show old frames as if live. Until the next keyframe there is nothing to send.
      st.gopStart = -1;
      st.hasSr = false;
      st.clockStarted = false;
      st.normalizer?.reset();
      st.h265?.reset();
      st.pendingGap = 0;
    }
    this.log.info("upstream down", { reason });
  }

  // ---- pipeline ---------------------------------------------------------------

  private onNewSession(st: TrackState, ssrc: number): void {
    st.upstreamSsrc = ssrc;
    st.hasSr = false;
    st.clockStarted = false;
    if (st.spec.kind === "video") {
      // Frames of a new upstream session may reference pictures viewers never got: hold video
      // until its first keyframe (a new SSRC within one RTSP session: the old GOP still shows
      // this session's picture, so it stays cached for joins until then).
      st.awaitKeyframe = true;
      st.normalizer?.reset();
      st.h265?.reset();
    }
  }

  private emit(
    st: TrackState,
    track: number,
    payload: Buffer,
    marker: boolean,
    ts: number,
    keyframeStart: boolean,
    gap: number,
    inAt: number,
    now: number,
  ): void {
    if (st.awaitKeyframe) {
      if (!keyframeStart) {
        this.dropped.awaitingKeyframe++;
        return;
      }
      st.awaitKeyframe = false;
    }
    const ext = st.nextExt + gap;
    const flags = (marker ? SlotFlag.MARKER : 0) | (keyframeStart ? SlotFlag.KEYFRAME_START : 0);
    if (!st.ring.put(ext, ts, flags, payload, inAt)) {
      this.dropped.oversize++;
      return;
    }
    st.nextExt = ext + 1;
    st.packetsOut++;
    if (st.spec.kind === "video") {
      if (keyframeStart) {
        const prevGop = st.gopStart >= 0 ? ext - st.gopStart : 0;
        st.gopStart = ext;
        st.gopBytes = 0;
        st.keyframes++;
        this.events.emit("keyframe", { track, packets: prevGop });
      }
      if (st.gopStart >= 0) {
        st.gopBytes += payload.length;
        if (ext - st.gopStart + 1 > this.o.gopCachePackets || st.gopBytes > this.o.gopCacheBytes) {
          // Too long to replay: new viewers and PLIs wait for the next keyframe instead.
          st.gopStart = -1;
        }
      }
    }
    const ring = st.ring;
    const list = this.attached;
    const n = list.length;
    if (n === 0) return;
    // Rotate who goes first, so no viewer is always last when the direct-send budget runs out.
    const first = this.rotate++ % n;
    for (let k = 0; k < n; k++) {
      const i = first + k < n ? first + k : first + k - n;
      list[i]!.onSourcePacket(track, ring, ext, now, this);
    }
  }

  /**
   * Wall-clock mapping for sender reports when the recorder sends none: arrival time of
   * the least-delayed frame over the last ~2 s windows (network and encoder jitter only
   * ever delay packets, so the minimum is the best estimate of capture time).
   */
  private updateClock(st: TrackState, outTs: number, now: number): void {
    if (!st.clockStarted) {
      st.clockStarted = true;
      st.clockBaseTs = outTs;
      st.clockBaseMs = now;
      st.clockMinLateMs = 0;
      st.clockWindowMin = 0;
      st.clockWindowStart = now;
      return;
    }
    const mediaMs = (((outTs - st.clockBaseTs) | 0) * 1000) / st.spec.clockRate;
    const late = now - st.clockBaseMs - mediaMs;
    if (late < st.clockWindowMin) st.clockWindowMin = late;
    if (now - st.clockWindowStart >= 2000) {
      st.clockMinLateMs = st.clockWindowMin;
      st.clockWindowMin = Infinity;
      st.clockWindowStart = now;
    }
  }

  // ---- ViewerSource -------------------------------------------------------------

  ring(track: number): PacketRing | undefined {
    return this.tracks[track]?.ring;
  }

  trackSpec(track: number): TrackSpec | undefined {
    return this.specs[track];
  }

  trackIndexOf(kind: "video" | "audio", codec?: CodecName): number {
    return this.specs.findIndex((t) => t.kind === kind && (codec === undefined || t.codec === codec));
  }

  gop(track: number): { start: number; end: number } | undefined {
    const st = this.tracks[track];
    if (!st || st.gopStart < 0 || !st.ring.has(st.gopStart)) return undefined;
    return { start: st.gopStart, end: st.ring.newest };
  }

  clockAt(track: number, nowMs: number): { unixMs: number; ts: number } | undefined {
    const st = this.tracks[track];
    if (!st || !st.clockStarted) return undefined;
    const rate = st.spec.clockRate;
    // The recorder's own clock when every track reports it (keeps its audio/video relation).
    if (this.tracks.every((t) => t.hasSr)) {
      const dt = nowMs - st.srArrivalMs;
      return { unixMs: st.srUnixMs + dt, ts: (st.srTs + Math.round((dt * rate) / 1000)) >>> 0 };
    }
    // Say nothing while the recorder's first reports may still come: an arrival-time mapping
    // sent now would be replaced by the recorder's a moment later, and a receiver that synced
    // to the first one jumps, then chases the new one for many seconds.
    if (nowMs - st.clockBaseMs < SR_FIRST_WAIT_MS) return undefined;
    const mediaMs = nowMs - st.clockBaseMs - st.clockMinLateMs;
    return { unixMs: nowMs, ts: (st.clockBaseTs + Math.round((mediaMs * rate) / 1000)) >>> 0 };
  }

  attach(viewer: Viewer): void {
    if (this.closed || !this.viewers.has(viewer) || this.attached.includes(viewer)) return;
    this.attached = [...this.attached, viewer];
  }

  /** Registers a viewer (connecting). Emits "viewers". */
  addViewer(viewer: Viewer): void {
    if (this.viewers.has(viewer)) return;
    this.viewers.add(viewer);
    this.events.emit("viewers", this.viewers.size);
  }

  removeViewer(viewer: Viewer): void {
    if (!this.viewers.delete(viewer)) return;
    this.attached = this.attached.filter((v) => v !== viewer);
    this.events.emit("viewers", this.viewers.size);
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** Viewers of this source (connecting ones included). */
  viewerList(): Viewer[] {
    return [...this.viewers];
  }

  /** Upstream bit rate over the last second or more (updated when asked, at most once a second), bits/s; 0 when idle. */
  rateBps(): number {
    const now = this.o.now();
    if (now - this.rateAt >= 1000) {
      this.rate = this.rateAt > 0 ? ((this.bytesIn - this.rateBytes) * 8000) / (now - this.rateAt) : 0;
      this.rateAt = now;
      this.rateBytes = this.bytesIn;
    }
    return this.rate;
  }

  stats(): SourceStats {
    return {
      id: this.id,
      packetsIn: this.packetsIn,
      bytesIn: this.bytesIn,
      dropped: { ...this.dropped },
      viewers: this.viewers.size,
      tracks: this.tracks.map((st) => ({
        ...st.spec,
        packetsIn: st.packetsIn,
        packetsOut: st.packetsOut,
        lost: st.lost,
        keyframes: st.keyframes,
        gopPackets: st.gopStart >= 0 && st.ring.has(st.gopStart) ? st.ring.newest - st.gopStart + 1 : 0,
        parameterSetsInserted: st.normalizer?.stats.parameterSetsInserted ?? st.h265?.stats.parameterSetsInserted ?? 0,
        refragmented: st.normalizer?.stats.refragmented ?? st.h265?.stats.refragmented ?? 0,
        upstreamSr: st.hasSr,
      })),
      hasKeyframe: this.tracks.some((st) => st.spec.kind === "video" && st.gopStart >= 0 && st.ring.has(st.gopStart)),
      lastPacketAt: this.lastPacketAt,
      sessions: this.sessions,
      upstreamUp: this.upstreamUp,
    };
  }

  /** Emits a "stats" event when someone listens. */
  emitStats(): void {
    if (this.events.listenerCount("stats") > 0) this.events.emit("stats", this.stats());
  }

  /** Closes every viewer of this source and frees its history. Idempotent. */
  close(reason: ViewerCloseReason = ViewerCloseReasons.sourceClosed): Promise<void> {
    // Every caller, first or later, waits for the same end.
    this.closing ??= (async () => {
      this.closed = true;
      this.upstreamUp = false;
      const viewers = [...this.viewers];
      await Promise.all(viewers.map((v) => v.close(reason)));
      this.attached = [];
      this.tracks = [];
      this.o.onClosed?.(this);
      this.events.removeAllListeners();
    })();
    return this.closing;
  }

  private newTrack(spec: TrackSpec): TrackState {
    const video = spec.kind === "video";
    const capacity = video ? Math.max(this.o.nackHistory, this.o.gopCachePackets) + 64 : this.o.nackHistory;
    return {
      spec,
      timeline: new TrackTimeline(spec.clockRate),
      ring: new PacketRing(capacity, video ? this.o.maxPayload : AUDIO_SLOT_BYTES),
      normalizer: undefined,
      h265: undefined,
      pendingGap: 0,
      nextExt: 0,
      awaitKeyframe: video,
      gopStart: -1,
      gopBytes: 0,
      clockBaseTs: 0,
      clockBaseMs: 0,
      clockMinLateMs: 0,
      clockWindowMin: 0,
      clockWindowStart: 0,
      clockStarted: false,
      upstreamSsrc: -1,
      srUnixMs: 0,
      srTs: 0,
      srArrivalMs: 0,
      hasSr: false,
      tsOffset: 0,
      packetsIn: 0,
      packetsOut: 0,
      lost: 0,
      keyframes: 0,
    };
  }
}
