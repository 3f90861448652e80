/**
 * A media worker's ingest, in arrival order, fanned out in slices.
 *
 * A keyframe burst to hundreds of viewers is tens of milliseconds of work: after
 * `sliceMs` the rest of the backlog waits for the next turn of the event loop, so RTCP,
 * STUN consent checks, DTLS and timers run in between and the loop never stalls for a
 * whole burst. Upstream state changes (tracks, down) queue behind the media before
 * them. Past `maxBytes` of media not yet fanned out (the thread cannot keep up at all)
 * the oldest media batch is dropped whole and reported through `onDropped`; its viewers
 * resume at the next keyframe. Pure apart from the injected clock and scheduler.
 */
import { threadCpuMs } from "./latency.ts";
import { countRecords, forEachRecord } from "./worker-protocol.ts";

export type IngestItem =
  | { t: "media"; cam: string; data: Uint8Array }
  | { t: "control"; cam: string; run: () => void };

export interface IngestQueueOptions {
  /** Fan out one record (RTP or RTCP) of camera `cam`. */
  onRecord(cam: string, kind: number, track: number, packet: Buffer, arrivalEpochMs: number): void;
  /** `records` of camera `cam` were dropped unsent (backlog bound). */
  onDropped(cam: string, records: number): void;
  /** A record or control step threw (logged by the caller; the queue goes on). */
  onError(err: unknown): void;
  /** Work for at most this long per turn of the event loop, ms. Default 8. */
  sliceMs?: number;
  /** Media bytes allowed to wait. Default 4 MiB (about 16 s of a 2 Mbit/s camera). */
  maxBytes?: number;
  now?: () => number;
  /** This thread's CPU time, ms (slice measurements). Default: process.threadCpuUsage(). */
  cpuNow?: () => number;
  schedule?: (fn: () => void) => void;
}

export class IngestQueue {
  /** Slices that ended with work left (the loop was given a turn). */
  yields = 0;
  /**
   * Longest slice since `resetMeasurements()` in this thread's CPU time, ms: its fan-out
   * and the writes that end it (measured after the microtasks queued during the slice).
   * What this thread itself held the event loop for, as opposed to loop delay, which
   * also counts time the thread was not scheduled.
   */
  sliceMaxMs = 0;
  private readonly o: Required<IngestQueueOptions>;
  private readonly items: Array<{ item: IngestItem; off: number }> = [];
  private bytes = 0;
  private draining = false;
  private sliceEnds = 0;
  private readonly over = (): boolean => this.o.now() > this.sliceEnds;
  private readonly drainBound = (): void => this.drain();
  private sliceStart = 0;
  private readonly measure = (): void => {
    const ms = this.o.cpuNow() - this.sliceStart;
    if (ms > this.sliceMaxMs) this.sliceMaxMs = ms;
  };

  constructor(o: IngestQueueOptions) {
    this.o = { sliceMs: 8, maxBytes: 4 * 1024 * 1024, now: () => performance.now(), cpuNow: threadCpuMs, schedule: setImmediate, ...o };
  }

  resetMeasurements(): void {
    this.sliceMaxMs = 0;
  }

  /** Media bytes waiting. */
  get backlogBytes(): number {
    return this.bytes;
  }

  push(item: IngestItem): void {
    if (item.t === "media") {
      this.bytes += item.data.byteLength;
      while (this.bytes > this.o.maxBytes && this.dropOldestMedia()) {
        // dropped one
      }
    }
    this.items.push({ item, off: 0 });
    if (!this.draining) {
      this.draining = true;
      this.drain();
    }
  }

  private dropOldestMedia(): boolean {
    const i = this.items.findIndex((e) => e.item.t === "media");
    if (i < 0) return false;
    const e = this.items[i]!;
    const item = e.item as Extract<IngestItem, { t: "media" }>;
    this.o.onDropped(item.cam, countRecords(item.data, e.off));
    this.bytes -= item.data.byteLength;
    this.items.splice(i, 1);
    return true;
  }

  private drain(): void {
    const o = this.o;
    this.sliceStart = o.cpuNow();
    this.sliceEnds = o.now() + o.sliceMs;
    // Queued now, so it runs after the microtasks the slice queues (the batch's writes).
    queueMicrotask(this.measure);
    const items = this.items;
    while (items.length > 0) {
      const e = items[0]!;
      const item = e.item;
      try {
        if (item.t === "media") {
          const cam = item.cam;
          e.off = forEachRecord(item.data, (kind, track, packet, at) => o.onRecord(cam, kind, track, packet, at), e.off, this.over);
          if (e.off < item.data.byteLength) {
            this.yields++;
            o.schedule(this.drainBound);
            return;
          }
        } else item.run();
      } catch (err) {
        o.onError(err);
      }
      // The head may have been dropped meanwhile (an onRecord that pushed); only remove it if still there.
      if (items[0] === e) {
        items.shift();
        if (item.t === "media") this.bytes -= item.data.byteLength;
      }
      if (items.length > 0 && this.over()) {
        this.yields++;
        o.schedule(this.drainBound);
        return;
      }
    }
    this.draining = false;
  }
}
