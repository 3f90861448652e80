/**
 * Messages between the Sfu facade (main thread) and its media workers, the record
 * format of batched ingest, and the two things that cannot cross a thread as they are:
 * errors (rebuilt as the same category with the same code) and loggers (lines are
 * posted to the main thread's logger).
 */
import {
  BadInputError,
  ClosedError,
  GatehouseError,
  NotFoundError,
  OverloadError,
  UpstreamError,
  WrongStateError,
  type ErrorCode,
} from "../config/errors.ts";
import type { LogFields, Logger, LogLevel } from "../config/log.ts";
import type { Offer } from "./offer.ts";
import type { GridSessionStats, SourceStats, SwitchInfo, ViewerQuality, ViewerState, ViewerStats } from "./api.ts";
import type { TrackSpec } from "./types.ts";
import type { IceServer } from "./werift-peer.ts";

/** Histogram state as LatencyHistogram.toJSON() writes it. */
export interface HistogramWire {
  counts: number[];
  n: number;
  sumUs: number;
  maxUs: number;
}

/** A worker's view of its media, sent about every 500 ms and on request. */
export interface WorkerSnapshot {
  sources: SourceStats[];
  viewers: ViewerStats[];
  sessions: GridSessionStats[];
  latency: HistogramWire;
  loop: { p99: number; max: number };
  /** This worker's V8 heap, KiB. */
  heap: { usedKb: number; totalKb: number; externalKb: number };
  /** Its ingest queue (sfu/ingest-queue.ts). */
  ingest: IngestStats;
}

/**
 * A media worker's own loop holds and ingest queue since the last reset: its longest
 * ingest slice and longest pacer pass (ms of thread CPU time, each with the writes it
 * queued), slices that yielded, bytes waiting.
 */
export interface IngestStats {
  sliceMaxMs: number;
  pacerPassMaxMs: number;
  yields: number;
  backlogBytes: number;
}

/** Main thread → worker. */
export type ToWorker =
  | { t: "tracks"; cam: string; tracks: TrackSpec[] }
  | { t: "down"; cam: string; reason: string }
  /** The source is no longer used (a relay ended): the replica is dropped, after the media before it. */
  | { t: "release"; cam: string }
  /** Batched RTP/RTCP records (see encodeRecord). */
  | { t: "media"; cam: string; data: Uint8Array }
  /** The offer as the facade read it (sfu/offer.ts): never parsed again here. */
  | { t: "createViewer"; req: number; cam: string; id: string; offer: Offer; user: string | undefined; iceServers: IceServer[]; camera?: string | undefined }
  | { t: "closeViewer"; req: number; id: string; reason: string }
  /** A multi-camera session (sfu/grid-session.ts): created, its slots bound and unbound, closed. */
  | { t: "createSession"; req: number; id: string; offer: Offer; user: string | undefined; iceServers: IceServer[]; maxSlots: number }
  | { t: "bindSlot"; req: number; id: string; mid: string; cam: string }
  | { t: "unbindSlot"; req: number; id: string; mid: string; reason: string }
  | { t: "closeSession"; req: number; id: string; reason: string }
  | { t: "pacing"; id: string; bps: number }
  /** Viewer.switchSource (the facade has made `cam` exist on every worker). */
  | { t: "switch"; id: string; cam: string; reason: string }
  /** Viewer.setStreams. */
  | { t: "streams"; id: string; ladder: string[]; auto: boolean }
  | { t: "candidate"; req: number; id: string; candidate: string; mid: string }
  | { t: "snapshot"; req: number }
  | { t: "reset" }
  | { t: "close"; req: number; reason: string }
  /** Fail as an uncaught exception would (tests and failure drills: WorkerPool.injectFault). */
  | { t: "fault" };

/** Worker → main thread. */
export type FromWorker =
  | { t: "reply"; req: number; ok: true; value?: unknown }
  | { t: "reply"; req: number; ok: false; error: WireError }
  | { t: "viewerState"; id: string; state: ViewerState }
  | { t: "viewerClosed"; id: string; reason: string }
  | { t: "viewerQuality"; id: string; quality: ViewerQuality; reason: string }
  /** Network adaptation wants the viewer on another source (the facade counts demand, then asks back with "switch"). */
  | { t: "viewerWantsSource"; id: string; cam: string; reason: string }
  /** A source switch ended (made or given up). */
  | { t: "viewerSwitched"; id: string; info: SwitchInfo }
  | { t: "sessionState"; id: string; state: ViewerState }
  | { t: "sessionClosed"; id: string; reason: string }
  | { t: "slotEnded"; id: string; mid: string; cam: string; reason: string }
  | { t: "keyframe"; cam: string; info: { track: number; packets: number } }
  | ({ t: "snapshot" } & WorkerSnapshot)
  | { t: "log"; level: Exclude<LogLevel, "silent">; msg: string; fields: LogFields };

/** What a worker is started with (structured-cloneable only: no functions). */
export interface WorkerInit {
  index: number;
  /** Whether this worker reports source keyframe events (one worker does). */
  primary: boolean;
  debugLogs: boolean;
  options: {
    icePortRange: [number, number];
    bindAddress: string;
    announcedAddress: string | undefined;
    nackHistory: number;
    viewerQueuePackets: number;
    gopCachePackets: number | undefined;
    gopCacheBytes: number | undefined;
    pacingBps: number | undefined;
    pacingBurstBytes: number | undefined;
    maxPayload: number | undefined;
    connectTimeoutMs: number | undefined;
    disconnectTimeoutMs: number | undefined;
    rtcpTimeoutMs: number | undefined;
    keyframeResendMinMs: number | undefined;
    replayFrameSpacingMs: number | undefined;
    gridStartHoldMs: number | undefined;
    ownedSrtp: boolean | undefined;
    cacheSrtpKeyObjects: boolean | undefined;
    directSendBudgetMs: number | undefined;
    maxQueueDelayMs: number | undefined;
  };
}

// ---- ingest records ---------------------------------------------------------------

/** Record kinds. */
export const RecordKind = { RTP: 0, RTCP: 1 } as const;
/** kind u8, track u8, length u16, arrival f64 (ms since the Unix epoch, sub-ms precision). */
export const RECORD_HEADER = 12;
/** Largest packet a record holds. */
export const MAX_RECORD_PAYLOAD = 0xffff;

/** Writes one record at `offset` of `out`; returns the offset after it. */
export function encodeRecord(out: Buffer, offset: number, kind: number, track: number, packet: Uint8Array, arrivalEpochMs: number): number {
  out[offset] = kind;
  out[offset + 1] = track;
  out.writeUInt16BE(packet.length, offset + 2);
  out.writeDoubleBE(arrivalEpochMs, offset + 4);
  out.set(packet, offset + RECORD_HEADER);
  return offset + RECORD_HEADER + packet.length;
}

/** Calls `fn` for each record of a batch (views into `data`, valid during the call). Stops at a truncated record. */
export function forEachRecord(
  data: Uint8Array,
  fn: (kind: number, track: number, packet: Buffer, arrivalEpochMs: number) => void,
  from = 0,
  stop?: () => boolean,
): number {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let off = from;
  while (off + RECORD_HEADER <= b.length) {
    const len = b.readUInt16BE(off + 2);
    const end = off + RECORD_HEADER + len;
    if (end > b.length) return b.length;
    fn(b[off]!, b[off + 1]!, b.subarray(off + RECORD_HEADER, end), b.readDoubleBE(off + 4));
    off = end;
    if (stop?.()) return off;
  }
  return b.length;
}

/** Records (RTP and RTCP) in `data` from byte `from` on. */
export function countRecords(data: Uint8Array, from = 0): number {
  let n = 0;
  forEachRecord(data, () => n++, from);
  return n;
}

// ---- errors -----------------------------------------------------------------------

export interface WireError {
  code: ErrorCode | undefined;
  message: string;
}

export function errorToWire(err: unknown): WireError {
  if (err instanceof GatehouseError) return { code: err.code, message: err.message };
  return { code: undefined, message: err instanceof Error ? err.message : String(err) };
}

/** The same category of error on this side of the thread boundary. */
export function errorFromWire(w: WireError): Error {
  switch (w.code) {
    case "BAD_INPUT":
      return new BadInputError(w.message);
    case "NOT_FOUND":
      return new NotFoundError(w.message);
    case "CLOSED":
      return new ClosedError(w.message);
    case "OVERLOAD":
      return new OverloadError(w.message);
    case "UPSTREAM":
      return new UpstreamError(w.message);
    case "WRONG_STATE":
      return new WrongStateError(w.message);
    default:
      return new Error(w.message);
  }
}

// ---- logging ----------------------------------------------------------------------

/** A logger whose lines are posted to the main thread (debug lines only when asked for). */
export function postingLogger(post: (m: FromWorker) => void, debug: boolean, base: LogFields = {}): Logger {
  const emit = (level: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (level === "debug" && !debug) return;
    const all = fields ? { ...base, ...fields } : base;
    try {
      post({ t: "log", level, msg, fields: all });
    } catch {
      // A field that cannot be cloned (a function, a socket): send it as text.
      try {
        post({ t: "log", level, msg, fields: { detail: safeText(all) } });
      } catch {
        // never let logging reach a packet loop
      }
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => postingLogger(post, debug, { ...base, ...fields }),
  };
}

function safeText(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (x instanceof Error ? { name: x.name, message: x.message } : typeof x === "bigint" ? String(x) : x));
  } catch {
    return String(v);
  }
}
