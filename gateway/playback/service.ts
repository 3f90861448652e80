/**
 * Playback sessions of the gateway: each is a PlaybackSession (one RTSP replay session at
 * the recorder) feeding an SFU source of its own, watched by exactly one WebRTC viewer.
 * Playback is personal: nothing is shared between viewers, and the session ends with its
 * viewer (and the viewer with the session).
 *
 * SFU sources are reused, not created per session: a fixed set of slot sources
 * (`~playback-<n>`, never a camera id, which cannot start with `~`) is handed out and
 * back, so a busy day of playback leaves no source behind.
 */
import { randomBytes } from "node:crypto";
import { NotFoundError, OverloadError, RateLimitedError } from "../../config/errors.ts";
import { cameraId as toCameraId, type CameraId } from "../../config/ids.ts";
import { toCloseReason, ViewerCloseReasons } from "../../sfu/api.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig, Config } from "../../config/schema.ts";
import type { SourceHandle, ViewerHandle } from "../../sfu/api.ts";
import type { CreateViewerOptions } from "../../sfu/engine.ts";
import type { Timers } from "../rtsp/timers.ts";
import { PlaybackSession, type PlaybackControl, type PlaybackState } from "./session.ts";
import type { Segment } from "./retimer.ts";
import type { TimeRange } from "./recordings.ts";

/** What the service needs of the SFU. */
export interface PlaybackSfu {
  source(id: CameraId): SourceHandle;
  createViewer(id: CameraId, offerSdp: string, opts?: CreateViewerOptions): Promise<{ viewer: ViewerHandle; answerSdp: string }>;
}

/** Who watches: for limits, ownership and the audit trail. */
export interface PlaybackOwner {
  user: string;
  /** The sign-in session (or token); only it may control or end the playback. */
  session: string;
}

/** A watched stretch of the recording, Unix ms. */
export type WatchedRange = [from: number, to: number];

export interface PlaybackEntry {
  readonly id: string;
  readonly cameraId: string;
  readonly owner: PlaybackOwner;
  /** Where the viewer asked to start, Unix ms. */
  readonly start: number;
  readonly session: PlaybackSession;
  readonly viewer: ViewerHandle;
  /** Segments so far (the last few), for a page that subscribes late. */
  readonly segments: Segment[];
  /** Stretches of the recording sent to the viewer. */
  watched(): WatchedRange[];
}

export interface PlaybackServiceOptions {
  sfu: PlaybackSfu;
  settings: Config["playback"];
  rtsp: Pick<Config["rtsp"], "requestTimeoutMs" | "mediaTimeoutMs">;
  log: Logger;
  timers?: Timers;
  /** Told when a playback starts and when it ends (audit). */
  onStart?: (e: PlaybackEntry) => void;
  onEnd?: (e: PlaybackEntry, reason: string) => void;
  /** Told what a recorder's answers teach about its recording (the timeline's gaps). */
  onLearn?: (cameraId: string, range: TimeRange, present: boolean) => void;
}

const SLOT_PREFIX = "~playback-";
const MAX_RANGES = 200;

export class PlaybackService {
  private readonly o: PlaybackServiceOptions;
  private readonly entries = new Map<string, PlaybackEntry>();
  private readonly freeSlots: CameraId[] = [];
  private slotCount = 0;
  /** Sessions opening (not yet in `entries`), per user, for limits. */
  private opening = 0;
  private readonly openingPerUser = new Map<string, number>();
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(opts: PlaybackServiceOptions) {
    this.o = opts;
  }

  /**
   * Opens a playback of `camera` from `start` for a browser's offer; resolves with the
   * entry and the SDP answer. Throws RateLimitedError (the user's limit: 429),
   * OverloadError (the gateway's: 503), UpstreamError (the recorder), BadInputError (offer).
   */
  async start(camera: CameraConfig, start: number, offerSdp: string, owner: PlaybackOwner): Promise<{ entry: PlaybackEntry; answerSdp: string }> {
    if (this.closed) throw new OverloadError("gateway closing");
    if (this.entries.size + this.opening >= this.o.settings.maxSessions)
      throw new OverloadError(`playback sessions at their limit (${this.o.settings.maxSessions})`, { retryAfterSeconds: 10 });
    const mine = [...this.entries.values()].filter((e) => e.owner.user === owner.user).length + (this.openingPerUser.get(owner.user) ?? 0);
    if (mine >= this.o.settings.perUser)
      throw new RateLimitedError(`at most ${this.o.settings.perUser} playback sessions per user; close one first`, { retryAfterSeconds: 5 });

    this.opening++;
    this.openingPerUser.set(owner.user, (this.openingPerUser.get(owner.user) ?? 0) + 1);
    const slot = this.freeSlots.pop() ?? toCameraId(`${SLOT_PREFIX}${++this.slotCount}`);
    const id = randomBytes(12).toString("base64url");
    const log = this.o.log.child({ camera: camera.id, playback: id });
    const source = this.o.sfu.source(slot);
    const session = new PlaybackSession({
      camera: { ...camera, transport: "tcp" },
      start,
      sink: source,
      requestTimeoutMs: this.o.rtsp.requestTimeoutMs,
      mediaTimeoutMs: this.o.rtsp.mediaTimeoutMs,
      startDelayMs: this.o.settings.startDelayMs,
      bufferPackets: this.o.settings.bufferPackets,
      speedChangeTimeoutMs: this.o.settings.speedChangeTimeoutMs,
      reopenAttempts: this.o.settings.reopenAttempts,
      minGapMs: this.o.settings.learnGapMinMs,
      log,
      ...(this.o.timers ? { timers: this.o.timers } : {}),
    });
    const segments: Segment[] = [];
    const ranges: WatchedRange[] = [];
    session.events.on("learned", (l) => this.o.onLearn?.(camera.id, l.range, l.present));
    session.events.on("segment", (s) => {
      segments.push(s);
      if (segments.length > 32) segments.shift();
    });
    // From the first frame on (frames flow before the viewer's answer is sent).
    trackWatched(session, ranges);
    let viewer: ViewerHandle;
    let answerSdp: string;
    try {
      await session.open();
      ({ viewer, answerSdp } = await this.o.sfu.createViewer(slot, offerSdp, { user: owner.user, log }));
    } catch (err) {
      await session.close("start failed");
      this.freeSlots.push(slot);
      throw err;
    } finally {
      this.opening--;
      const n = (this.openingPerUser.get(owner.user) ?? 1) - 1;
      if (n > 0) this.openingPerUser.set(owner.user, n);
      else this.openingPerUser.delete(owner.user);
    }
    const entry: PlaybackEntry = {
      id,
      cameraId: camera.id,
      owner,
      start,
      session,
      viewer,
      segments,
      watched: () => ranges.map(([a, b]) => [a, b]),
    };
    this.entries.set(id, entry);
    let ended = false;
    const end = (reason: string): void => {
      if (ended) return;
      ended = true;
      this.entries.delete(id);
      void Promise.all([session.close(reason), viewer.close(toCloseReason(reason))]).then(() => this.freeSlots.push(slot));
      try {
        this.o.onEnd?.(entry, reason);
      } catch (err) {
        log.error("playback end hook failed", { err });
      }
    };
    viewer.once("closed", (reason) => end(`viewer: ${reason}`));
    session.events.once("closed", (reason) => end(reason));
    try {
      this.o.onStart?.(entry);
    } catch (err) {
      log.error("playback start hook failed", { err });
    }
    log.info("playback started", { start: new Date(start).toISOString(), user: owner.user });
    return { entry, answerSdp };
  }

  /** The entry, if it exists and `owner`'s session made it (else NotFoundError, as for one that does not exist). */
  get(id: string, cameraId: string, owner: PlaybackOwner): PlaybackEntry {
    const e = this.entries.get(id);
    if (!e || e.cameraId !== cameraId || e.owner.session !== owner.session) throw new NotFoundError("no such playback session");
    return e;
  }

  control(e: PlaybackEntry, c: PlaybackControl): Promise<PlaybackState> {
    return e.session.control(c);
  }

  /** Ends one playback (its viewer too). */
  async end(e: PlaybackEntry, reason: string): Promise<void> {
    await e.viewer.close(toCloseReason(reason));
  }

  /** Sessions open now. */
  get size(): number {
    return this.entries.size;
  }

  list(): PlaybackEntry[] {
    return [...this.entries.values()];
  }

  /** Ends every playback. Every caller gets the same promise. */
  close(reason = "gateway closing"): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await Promise.all([...this.entries.values()].map((e) => Promise.all([e.session.close(reason), e.viewer.close(ViewerCloseReasons.sfuClosing)])));
    })();
    return this.closing;
  }
}

/** Keeps the stretches of recording the viewer was sent (merged while they run on). */
function trackWatched(session: PlaybackSession, ranges: WatchedRange[]): void {
  let last: number | undefined;
  const note = (): void => {
    const pos = session.state().position;
    const cur = ranges[ranges.length - 1];
    if (cur && last !== undefined && Math.abs(pos - last) <= 60_000) {
      cur[0] = Math.min(cur[0], pos);
      cur[1] = Math.max(cur[1], pos);
    } else if (ranges.length < MAX_RANGES) ranges.push([pos, pos]);
    last = pos;
  };
  session.events.on("segment", note);
  session.events.on("state", note);
  session.events.on("closed", note);
}

export function isPlaybackSlot(id: string): boolean {
  return id.startsWith(SLOT_PREFIX);
}
