/**
 * What the gateway holds of the media plane: a source per camera (the MediaSink ingest
 * pushes into) and a viewer per WebRTC session. On the calling thread these are the
 * Source and Viewer objects themselves; with media workers they are proxies whose
 * media lives in a worker thread (sfu/worker-pool.ts). Both behave the same, except
 * that a proxy's `stats()` is a snapshot at most half a second old
 * (`Sfu.refreshStats()` makes it current).
 */
import type { CameraId, ViewerId } from "../config/ids.ts";
import type { PacketRing } from "./ring.ts";
import type { SourceEvents, SourceStats } from "./source.ts";
import type { MediaSink, TrackSpec } from "./types.ts";
import type { ViewerEvents, ViewerState, ViewerStats } from "./viewer.ts";

/** A camera's source. */
export interface SourceHandle extends MediaSink {
  readonly id: CameraId;
  on<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void;
  once<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): () => void;
  off<K extends keyof SourceEvents>(event: K, fn: (...args: SourceEvents[K]) => void): void;
  stats(): SourceStats;
  /** The current upstream tracks, or undefined before the first setTracks. */
  currentTracks(): readonly TrackSpec[] | undefined;
  /** Index of the first track of this kind, or −1. */
  trackIndexOf(kind: "video" | "audio"): number;
  /** Viewers, connecting ones included. */
  readonly viewerCount: number;
  /**
   * The packet history of a track when the source lives on this thread (diagnostics and
   * tests); undefined when it lives in media workers.
   */
  ring(track: number): PacketRing | undefined;
}

/** One viewer's session. */
export interface ViewerHandle {
  readonly id: ViewerId;
  readonly cameraId: CameraId;
  readonly user: string | undefined;
  readonly state: ViewerState;
  /** Why the viewer closed, once it has. */
  readonly reason: string | undefined;
  on<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): () => void;
  once<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): () => void;
  off<K extends keyof ViewerEvents>(event: K, fn: (...args: ViewerEvents[K]) => void): void;
  stats(): ViewerStats;
  /** Caps this viewer's send rate, bits/s. */
  setPacingRate(bitsPerSecond: number): void;
  /** Ends the viewer. Idempotent; resolves once its transport is released. */
  close(reason?: string): Promise<void>;
}
