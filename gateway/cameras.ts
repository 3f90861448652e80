/**
 * The camera registry: one RTSP ingest per camera stream (its main `url` and each of its
 * `streams`) feeding one SFU source each, and the demand signal between them (viewer
 * count → pull on demand, idle stop). A stream is pulled once whatever the number of
 * viewers, and only while someone watches it (`alwaysOn` keeps the main stream only).
 *
 * This is the only place where the control plane (gateway) joins the media plane
 * (sfu): ingest pushes media into the source, the source reports its viewer count back.
 */
import type { CameraConfig, Config } from "../config/schema.ts";
import type { Logger } from "../config/log.ts";
import { cameraId as toCameraId, streamSourceId, type CameraId } from "../config/ids.ts";
import { SafeEmitter } from "../config/events.ts";
import type { Sfu } from "../sfu/sfu.ts";
import type { MediaSink } from "../sfu/types.ts";
import { CameraIngest, type IngestStatus } from "./ingest/camera-ingest.ts";
import type { CameraState, Reachability } from "./ingest/camera-state.ts";
import type { LossSignal } from "./rtsp/status.ts";
import { UdpPortPool } from "./ingest/udp-ports.ts";
import { cameraTranscodeOf, transcodeSection } from "../config/sections/transcode.ts";
import { TranscodingSink, type TranscodeStatus } from "./transcode/sink.ts";

/** What any user who may see a camera is told about it (`/api/cameras`, the page's event stream). */
export interface CameraView {
  id: CameraId;
  name: string;
  groups: readonly string[];
  /** The ingest's own lifecycle: idle, connecting, playing, backoff, failed. */
  state: string;
  /** The ingest's last failure, as the RTSP layer wrote it. */
  reason?: string | undefined;
  viewers: number;
  /** What the page shows: idle, connecting, live, reconnecting, offline, failed (README "Camera states"). */
  status: CameraState;
  /** Why the camera is not live, in plain words. */
  statusReason?: string;
  /** Whether the recorder answers: from the current session, or the light check of an idle camera. */
  reachability: Reachability;
  /** When `status` was entered; when the camera was last live; since when it is down (epoch ms). */
  since: number;
  lastLiveAt?: number;
  downSince?: number;
  /** The signal that ended the last session (connection-closed, rtcp-bye, no-media…). */
  lostBy?: LossSignal;
  /** When an idle camera was last checked, epoch ms. */
  checkedAt?: number;
  /** RTP transport of the current session. */
  transport?: "tcp" | "udp";
  /** Media the recorder offers that cannot be played, with the reason (H.265, AAC…). */
  unplayable: { type: string; reason: string }[];
  /** The camera's streams, main first (`sub` is the last one): what `?stream=` may name. */
  streams: { id: string; width?: number; height?: number }[];
  /** Tracks of the described stream converted by ffmpeg (AAC → Opus, H.265 → H.264) and how each ffmpeg is doing. */
  transcodes?: { track: number; from: string; to: string; state: string; failures: number; lastFailure?: string }[];
}

/** A camera's stream as the registry pulls it. */
interface StreamEntry {
  /** `main` or the configured stream id. */
  id: string;
  source: CameraId;
  ingest: CameraIngest;
  /** Between ingest and source: converts AAC and H.265 tracks (gateway/transcode/). */
  transcoder: TranscodingSink;
  /** Applies the stream's demand again (viewers, relaying nodes, holds). */
  refreshDemand: () => void;
}

export type CameraRegistryEvents = {
  /** A camera's view changed (state, reason, reachability, transport…). */
  camera: [CameraView];
  /** The registry is closing: streams built on it end. */
  closed: [];
};

interface Entry {
  config: CameraConfig;
  /** The main stream's ingest (what the camera's status describes when nothing else is watched). */
  ingest: CameraIngest;
  /** Every stream, main first. */
  streams: StreamEntry[];
  unsubscribe: () => void;
  /** Set while the supervisor keeps the camera disabled, with the main ingest's last status. */
  disabled: { reason: string; since: number; last: IngestStatus } | undefined;
  /** The last view announced (one event per visible change). */
  last: string;
  /** Kept pulled whether watched or not, by `keepPulling` (a cluster's lease holder of an `alwaysOn` camera). */
  pinned?: boolean;
  /** Holds on the camera's substream (`holdSubstream`): pulled while any is held, watched or not. */
  subHolds: number;
}

interface RegistryDeps {
  rtsp: Config["rtsp"];
  sfu: Sfu;
  log: Logger;
  /** Default: every field's default. */
  transcode?: Config["transcode"];
  /**
   * `alwaysOn` cameras wait for `keepPulling` instead of being pulled from the start: in a
   * cluster only the node holding a camera's lease pulls it. Default false.
   */
  alwaysOnByLease?: boolean;
  /** In a cluster: what the ingest pushes is also forwarded to relaying nodes, whose demand (`extra`) holds the pull. */
  tap?: (source: CameraId, sink: MediaSink, setDemand: (extra: number) => void) => MediaSink;
}

/**
 * Video a browser cannot be given: the recorder offers video, none of it is pulled (H.265 not
 * converted, say), or it is H.265 passed through and the browser (`h265` false) cannot decode it.
 */
function videoUnplayable(s: StreamEntry, h265: boolean): boolean {
  const st = s.ingest.status();
  const refused = st.unsupported.filter((u) => u.type === "video");
  if (refused.length === 0) return false;
  if (refused.some((u) => u.passthrough === "H265")) return !h265;
  return !st.tracks.some((t) => t.kind === "video");
}

/**
 * Why a viewer without H.265 would get nothing from this stream: its video is H.265 passed
 * through and it has no sound. Undefined when it has something for such a viewer.
 */
function passthroughOnly(s: StreamEntry): string | undefined {
  const st = s.ingest.status();
  const h265 = st.unsupported.find((u) => u.type === "video" && u.passthrough === "H265");
  if (!h265 || st.tracks.some((t) => t.kind === "audio")) return undefined;
  return h265.reason;
}

/**
 * The stream that stands for `main`: the main stream, unless its video cannot be played (an
 * H.265 main stream without a transcode) and another stream's can — the camera's H.264 stream.
 */
function playableMain(streams: StreamEntry[], h265: boolean): StreamEntry | undefined {
  const main = streams[0];
  if (!main || streams.length < 2 || !videoUnplayable(main, h265)) return main;
  return streams.slice(1).find((s) => !videoUnplayable(s, h265)) ?? main;
}

/** Converted tracks a person should know about: an ffmpeg that cannot be found or keeps failing. */
function transcodeTrouble(list: TranscodeStatus[]): { type: string; reason: string }[] {
  const out: { type: string; reason: string }[] = [];
  for (const t of list) {
    const what = t.to === "OPUS" ? "AAC sound" : "H.265 video";
    const type = t.to === "OPUS" ? "audio" : "video";
    if (t.ffmpeg.state === "missing") out.push({ type, reason: `${what} needs ffmpeg, which could not be started (${t.ffmpeg.lastFailure ?? "not found"}): install it (apt install ffmpeg) or set transcode.ffmpegPath` });
    else if (t.ffmpeg.state === "backoff") out.push({ type, reason: `${what}: the converter (ffmpeg) failed (${t.ffmpeg.lastFailure ?? "unknown"}) and is restarting` });
  }
  return out;
}

export class CameraRegistry {
  private readonly entries = new Map<CameraId, Entry>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly deps: RegistryDeps;
  private readonly ports: UdpPortPool;
  readonly events: SafeEmitter<CameraRegistryEvents>;

  constructor(cameras: readonly CameraConfig[], deps: RegistryDeps) {
    this.deps = deps;
    this.events = new SafeEmitter<CameraRegistryEvents>((event, err) => deps.log.error("camera listener failed", { event, err }));
    this.ports = new UdpPortPool(deps.rtsp.clientPortRange);
    for (const camera of cameras) {
      const entry: Entry = { config: camera, ingest: undefined!, streams: [], unsubscribe: () => {}, disabled: undefined, last: "", subHolds: 0 };
      this.entries.set(toCameraId(camera.id), entry);
      this.attach(entry);
    }
  }

  /** Starts an ingest per stream of the camera (on demand, or always on for the main one) and relays their states. */
  private attach(entry: Entry): void {
    const camera = entry.config;
    const log = this.deps.log.child({ camera: camera.id });
    const streams: StreamEntry[] = [];
    const offs: (() => void)[] = [];
    const all = [{ id: "main", url: camera.url }, ...(camera.streams ?? [])];
    for (const [i, s] of all.entries()) {
      const main = s.id === "main";
      // The camera's substream (its last stream) counts the holds on it as demand.
      const holds = () => (!main && i === all.length - 1 ? entry.subHolds : 0);
      const sourceId = streamSourceId(camera.id, s.id);
      const source = this.deps.sfu.source(sourceId);
      // A further stream: same recorder and credentials, another URL; pulled only on demand,
      // and the idle light check is the main stream's alone (one per camera).
      const config = main ? (this.deps.alwaysOnByLease ? { ...camera, alwaysOn: entry.pinned === true } : camera) : { ...camera, url: s.url, alwaysOn: false };
      const rtsp = main ? this.deps.rtsp : { ...this.deps.rtsp, checkIntervalSeconds: 0 };
      const slog = main ? log : log.child({ stream: s.id });
      // AAC and H.265 tracks are converted on their way to the source: one ffmpeg per stream and codec, while watched.
      let extra = 0;
      const transcoder = new TranscodingSink({
        downstream:
          this.deps.tap?.(sourceId, source, (n) => {
            extra = n;
            setDemand(source.viewerCount);
          }) ?? source,
        camera: cameraTranscodeOf(camera),
        global: this.deps.transcode ?? transcodeSection.parse({}),
        log: slog.child({ component: "transcode" }),
        onChange: () => {
          if (!this.closed) this.announce(entry);
        },
      });
      const ingest = new CameraIngest({ camera: config, rtsp, sink: transcoder, log: slog, ports: this.ports, convert: () => transcoder.convertible() });
      const setDemand = (n: number) => {
        transcoder.setDemand(n + extra + holds());
        ingest.setDemand(n + extra + holds());
      };
      offs.push(source.on("viewers", setDemand));
      offs.push(ingest.on("state", () => this.announce(entry)));
      // Viewers already there (a camera enabled again while they watch): pull for them.
      if (source.viewerCount + holds() > 0) setDemand(source.viewerCount);
      streams.push({ id: s.id, source: sourceId, ingest, transcoder, refreshDemand: () => setDemand(source.viewerCount) });
    }
    entry.streams = streams;
    entry.ingest = streams[0]!.ingest;
    entry.unsubscribe = () => {
      for (const off of offs) off();
    };
  }

  /** One event per visible change (the ingest also reports changes nobody sees, e.g. counters). */
  private announce(entry: Entry): void {
    if (this.entries.get(toCameraId(entry.config.id)) !== entry) return;
    const view = this.viewOf(entry);
    const key = JSON.stringify({ ...view, viewers: 0 });
    if (key === entry.last) return;
    entry.last = key;
    this.events.emit("camera", view);
  }

  /**
   * Stops pulling every stream of a camera and shows it as disabled with `reason` (the
   * supervisor's error-tolerant state for a camera that keeps failing); its viewers stay and
   * are told. False when it is unknown or already disabled.
   */
  disable(id: string, reason: string): boolean {
    const e = this.entries.get(id as CameraId);
    if (!e || e.disabled || this.closed) return false;
    e.disabled = { reason, since: Date.now(), last: e.ingest.status() };
    e.unsubscribe();
    e.unsubscribe = () => {};
    for (const s of e.streams) {
      void s.ingest.close(`disabled: ${reason}`);
      void s.transcoder.close();
    }
    this.announce(e);
    return true;
  }

  /** Pulls a disabled camera again (on demand, as before). False when it is unknown or not disabled. */
  enable(id: string): boolean {
    const e = this.entries.get(id as CameraId);
    if (!e || !e.disabled || this.closed) return false;
    e.disabled = undefined;
    this.attach(e);
    this.announce(e);
    return true;
  }

  /**
   * Keep the camera's main stream pulled whether watched or not (`on`), or pull it on demand
   * only again. A cluster builds its registry with `alwaysOn` off and pins the cameras whose
   * lease this node holds, so one node pulls each of them. False when the camera is unknown.
   */
  keepPulling(id: string, on: boolean): boolean {
    const e = this.entries.get(id as CameraId);
    if (!e || this.closed) return false;
    e.pinned = on;
    if (!e.disabled) e.ingest.setAlwaysOn(on || (e.config.alwaysOn && !this.deps.alwaysOnByLease));
    return true;
  }

  /**
   * Keeps the camera's substream (its last stream) pulled until the returned release is
   * called (idempotent), whether anyone watches it or not: an Auto viewer of the main stream
   * then steps down onto a running stream, from its cached keyframe, with no RTSP set-up to
   * wait for. Still one pull whatever the number of holds and viewers. Undefined for an
   * unknown camera or one with a single stream.
   */
  holdSubstream(camera: string): (() => void) | undefined {
    const e = this.entries.get(camera as CameraId);
    if (!e || e.config.streams === undefined || e.config.streams.length === 0 || this.closed) return undefined;
    const refresh = () => {
      if (!e.disabled) e.streams.at(-1)?.refreshDemand();
    };
    e.subHolds++;
    refresh();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      e.subHolds--;
      if (!this.closed) refresh();
    };
  }

  /** Whether the supervisor keeps this camera disabled, and why. */
  disabledReason(id: string): string | undefined {
    return this.entries.get(id as CameraId)?.disabled?.reason;
  }

  /**
   * The SFU source for `stream` of a camera: `main`, `sub` (its last stream, or main when it
   * has none), `auto` (as `main`), or a configured stream id. `main` and `auto` give another
   * stream when the main one's video cannot be played and that one's can (an H.265 main stream
   * without a transcode, an H.264 substream); `h265`: the viewer offered H.265, so an H.265
   * stream passed through is playable. Undefined for an unknown camera or stream.
   */
  streamSource(camera: string, stream = "main", h265 = false): { stream: string; source: CameraId; unplayable?: string } | undefined {
    const e = this.entries.get(camera as CameraId);
    if (!e) return undefined;
    const s =
      stream === "main" || stream === "auto"
        ? playableMain(e.streams, h265)
        : (e.streams.find((x) => x.id === stream) ?? (stream === "sub" ? e.streams[e.streams.length - 1] : undefined));
    if (!s) return undefined;
    const unplayable = h265 ? undefined : passthroughOnly(s);
    return unplayable === undefined ? { stream: s.id, source: s.source } : { stream: s.id, source: s.source, unplayable };
  }

  /**
   * `streamSource` once the camera's streams are described: whether a viewer without H.265 can
   * play a stream depends on its codecs, and one who came before the gateway read them would
   * get a session with nothing to play instead of the reason. Each stream not described yet is
   * read now (a light check, or the pull under way), waiting `rtsp.describeWaitMs` at most.
   */
  async describedStreamSource(camera: string, stream = "main", h265 = false): Promise<ReturnType<CameraRegistry["streamSource"]>> {
    const e = this.entries.get(camera as CameraId);
    if (e && !h265) {
      const waitMs = this.deps.rtsp.describeWaitMs;
      await Promise.all(e.streams.filter((s) => !s.ingest.described()).map((s) => s.ingest.whenDescribed(waitMs)));
    }
    return this.streamSource(camera, stream, h265);
  }

  /**
   * The SFU sources of a camera's streams, main first (the last is its substream). With
   * `h265` given, those whose video that viewer can play (`true`: it receives H.265), or all
   * when none can.
   */
  streamSources(camera: string, h265?: boolean): CameraId[] {
    const streams = this.entries.get(camera as CameraId)?.streams ?? [];
    if (h265 === undefined) return streams.map((s) => s.source);
    const playable = streams.filter((s) => !videoUnplayable(s, h265));
    return (playable.length > 0 ? playable : streams).map((s) => s.source);
  }

  /** The ids of a camera's streams, main first (the last is its substream). */
  streamIds(camera: string): string[] {
    return this.entries.get(camera as CameraId)?.streams.map((s) => s.id) ?? [];
  }

  has(id: string): boolean {
    return this.entries.has(id as CameraId);
  }

  config(id: string): CameraConfig | undefined {
    return this.entries.get(id as CameraId)?.config;
  }

  configs(): CameraConfig[] {
    return [...this.entries.values()].map((e) => e.config);
  }

  /** What the API shows of a camera: never its URL or credentials. */
  view(id: string): CameraView | undefined {
    const e = this.entries.get(id as CameraId);
    if (!e) return undefined;
    return this.viewOf(e);
  }

  /**
   * A camera's view: the state of the stream people watch (the main stream when it is
   * watched or nothing is, else the first watched stream), and every stream's viewers.
   */
  private viewOf(e: Entry): CameraView {
    const config = e.config;
    const demand = (s: StreamEntry) => this.deps.sfu.findSource(s.source)?.viewerCount ?? 0;
    const watched = demand(e.streams[0]!) > 0 ? e.streams[0]! : (e.streams.find((s) => demand(s) > 0) ?? e.streams[0]!);
    const st: IngestStatus = e.disabled ? disabledStatus(e.disabled) : watched.ingest.status();
    const transcodes = e.disabled ? [] : watched.transcoder.status();
    const c = st.camera;
    const v: CameraView = {
      id: toCameraId(config.id),
      name: config.name ?? config.id,
      groups: config.groups,
      state: st.state,
      reason: st.reason,
      viewers: e.streams.reduce((n, s) => n + demand(s), 0),
      status: c.state,
      reachability: c.reachability,
      since: c.since,
      unplayable: [...st.unsupported, ...transcodeTrouble(transcodes)],
      streams: [
        { id: "main" },
        ...(config.streams ?? []).map((s) => ({ id: s.id, ...(s.width ? { width: s.width } : {}), ...(s.height ? { height: s.height } : {}) })),
      ],
    };
    if (c.reason !== undefined) v.statusReason = c.reason;
    if (c.lastLiveAt !== undefined) v.lastLiveAt = c.lastLiveAt;
    if (c.downSince !== undefined) v.downSince = c.downSince;
    if (c.lostBy !== undefined) v.lostBy = c.lostBy;
    if (c.checkedAt !== undefined) v.checkedAt = c.checkedAt;
    if (st.transport !== undefined) v.transport = st.transport;
    if (transcodes.length > 0)
      v.transcodes = transcodes.map((t) => {
        const x: NonNullable<CameraView["transcodes"]>[number] = { track: t.track, from: t.from, to: t.to, state: t.ffmpeg.state, failures: t.ffmpeg.failures };
        if (t.ffmpeg.lastFailure !== undefined) x.lastFailure = t.ffmpeg.lastFailure;
        return x;
      });
    return v;
  }

  /** The converted tracks of each of a camera's streams (AAC → Opus, H.265 → H.264) in detail, for administrators. */
  transcodes(id: string): { stream: string; tracks: TranscodeStatus[] }[] | undefined {
    return this.entries.get(id as CameraId)?.streams.map((s) => ({ stream: s.id, tracks: s.transcoder.status() }));
  }

  status(id: string): IngestStatus | undefined {
    const e = this.entries.get(id as CameraId);
    if (!e) return undefined;
    return e.disabled ? disabledStatus(e.disabled) : e.ingest.status();
  }

  /** Stops every ingest; every caller gets the same promise. */
  close(reason = "gateway closing"): Promise<void> {
    this.closing ??= this.doClose(reason);
    return this.closing;
  }

  private async doClose(reason: string): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.entries.values()].map(async (e) => {
        e.unsubscribe();
        await Promise.all(
          e.streams.map(async (s) => {
            await s.ingest.close(reason);
            await s.transcoder.close();
          }),
        );
      }),
    );
    this.entries.clear();
    this.events.emit("closed");
    this.events.removeAllListeners();
  }
}

/** What a disabled camera's ingest reports: its last figures, in state `disabled` with the supervisor's reason. */
function disabledStatus(d: { reason: string; since: number; last: IngestStatus }): IngestStatus {
  const reason = `disabled: ${d.reason}`;
  const { transport: _t, retryInMs: _r, ...last } = d.last;
  return {
    ...last,
    state: "disabled",
    reason,
    since: d.since,
    recorderSessions: 0,
    camera: { ...d.last.camera, state: "disabled", reason, since: d.since },
  };
}
