/**
 * A camera's source as the main thread sees it. Every worker holds a replica of every
 * camera's source, fed the same ingest: ingest is a few hundred packets a second per
 * camera, fan-out is that times the viewers, so the replicas cost little and each
 * worker has a warm keyframe cache for its next viewer.
 *
 * Ingest: packets pushed during one turn of the event loop (one TCP read of an RTSP
 * connection, or the burst of UDP datagrams of a frame, each its own I/O callback) are
 * batched into one buffer and posted to every worker once that turn's I/O is handled
 * (setImmediate), with the main thread's arrival time per packet so forwarding latency
 * counts the hop between threads. Flushing after each callback instead posted one message
 * per UDP packet to every worker.
 */
import { SafeEmitter } from "../../config/events.ts";
import type { CameraId } from "../../config/ids.ts";
import type { SourceDropReason, SourceEvents, SourceHandle, SourceStats } from "../api.ts";
import type { PacketRing } from "../ring.ts";
import type { CodecName, MediaSink, TrackSpec } from "../types.ts";
import { encodeRecord, MAX_RECORD_PAYLOAD, RECORD_HEADER, RecordKind, type ToWorker } from "../worker-protocol.ts";

/** Ingest batch buffer, bytes (a keyframe's worth of 1200-byte packets). */
const BATCH_BYTES = 256 * 1024;

/** What a source proxy needs of the pool: two callbacks, nothing else. */
export interface SourceChannel {
  /** Sends to every running worker; with `data`, each gets its own copy of its first `length` bytes. */
  broadcast(m: ToWorker, data?: { buffer: ArrayBuffer; length: number }): void;
  /** The stats of this camera's replica in the worker that reports for all (ingest is the same everywhere). */
  replicaStats(id: CameraId): SourceStats | undefined;
}

const NO_DROPS: Record<SourceDropReason, number> = {
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

export class SourceProxy implements SourceHandle, MediaSink {
  readonly id: CameraId;
  private readonly channel: SourceChannel;
  private readonly events: SafeEmitter<SourceEvents>;
  private tracks: readonly TrackSpec[] | undefined;
  private count = 0;
  private readonly batch: ArrayBuffer;
  private readonly view: Buffer;
  private used = 0;
  private scheduled = false;
  private burstAt = 0;
  private packetsIn = 0;
  private bytesIn = 0;
  private lastPacketAt: number | undefined;
  private readonly flushBound = (): void => this.flush();

  constructor(id: CameraId, channel: SourceChannel) {
    this.id = id;
    this.channel = channel;
    this.events = new SafeEmitter<SourceEvents>(() => {});
    this.batch = new ArrayBuffer(BATCH_BYTES);
    this.view = Buffer.from(this.batch);
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

  // ---- MediaSink: in order, to every worker ----

  setTracks(tracks: readonly TrackSpec[]): void {
    this.flush();
    this.tracks = Object.freeze(tracks.map((t) => Object.freeze({ ...t })));
    this.channel.broadcast({ t: "tracks", cam: this.id, tracks: [...this.tracks] });
  }

  pushRtp(track: number, packet: Buffer): void {
    this.packetsIn++;
    this.bytesIn += packet.length;
    this.lastPacketAt = Date.now();
    this.append(RecordKind.RTP, track, packet);
  }

  pushRtcp(track: number, packet: Buffer): void {
    this.append(RecordKind.RTCP, track, packet);
  }

  upstreamDown(reason: string): void {
    this.flush();
    this.channel.broadcast({ t: "down", cam: this.id, reason });
  }

  private append(kind: number, track: number, packet: Buffer): void {
    if (packet.length > MAX_RECORD_PAYLOAD || track < 0 || track > 255) return; // not RTP anyone sends
    if (!this.scheduled) {
      // The first packet of a burst (see Source.burstArrival): its arrival stands for the burst's.
      this.scheduled = true;
      this.burstAt = performance.timeOrigin + performance.now();
      setImmediate(this.flushBound);
    }
    if (this.used + RECORD_HEADER + packet.length > BATCH_BYTES) this.post();
    // Epoch time with sub-ms precision: the worker converts it to its own clock.
    this.used = encodeRecord(this.view, this.used, kind, track, packet, this.burstAt);
  }

  /** Posts the batched records (once the current callback is done, or before an ordered message). */
  flush(): void {
    this.scheduled = false;
    this.post();
  }

  private post(): void {
    if (this.used === 0) return;
    const length = this.used;
    this.used = 0;
    // Each worker gets an exact-size copy by transfer; the batch buffer stays here for the next burst.
    this.channel.broadcast({ t: "media", cam: this.id, data: new Uint8Array(0) }, { buffer: this.batch, length });
  }

  // ---- the rest of SourceHandle ----

  currentTracks(): readonly TrackSpec[] | undefined {
    return this.tracks;
  }

  trackIndexOf(kind: "video" | "audio", codec?: CodecName): number {
    return this.tracks?.findIndex((t) => t.kind === kind && (codec === undefined || t.codec === codec)) ?? -1;
  }

  get viewerCount(): number {
    return this.count;
  }

  /** Media lives in the workers: no history on this thread. */
  ring(_track: number): PacketRing | undefined {
    return undefined;
  }

  addViewer(): void {
    this.count++;
    this.events.emit("viewers", this.count);
  }

  removeViewer(): void {
    this.count--;
    this.events.emit("viewers", this.count);
  }

  emitKeyframe(info: { track: number; packets: number }): void {
    this.events.emit("keyframe", info);
  }

  emitStatsIfWatched(): void {
    if (this.events.listenerCount("stats") > 0) this.events.emit("stats", this.stats());
  }

  /** The reporting worker's replica (ingest is the same everywhere), with this thread's counts. */
  stats(): SourceStats {
    const replica = this.channel.replicaStats(this.id);
    return {
      id: this.id,
      packetsIn: this.packetsIn,
      bytesIn: this.bytesIn,
      dropped: replica ? { ...replica.dropped } : { ...NO_DROPS },
      viewers: this.count,
      tracks: replica?.tracks ?? [],
      hasKeyframe: replica?.hasKeyframe ?? false,
      lastPacketAt: this.lastPacketAt,
      sessions: replica?.sessions ?? 0,
      upstreamUp: replica?.upstreamUp ?? this.tracks !== undefined,
    };
  }
}
