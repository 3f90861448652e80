/**
 * The camera registry: one RTSP ingest per camera feeding one SFU source, and the
 * demand signal between them (viewer count → pull on demand, idle stop).
 *
 * This is the only place where the control plane (gateway) joins the media plane
 * (sfu): ingest pushes media into the source, the source reports its viewer count back.
 */
import type { CameraConfig, Config } from "../config/schema.ts";
import type { Logger } from "../config/log.ts";
import { cameraId as toCameraId, type CameraId } from "../config/ids.ts";
import { SafeEmitter } from "../config/events.ts";
import type { Sfu } from "../sfu/sfu.ts";
import { CameraIngest, type IngestStatus } from "./ingest/camera-ingest.ts";
import type { CameraState, Reachability } from "./ingest/camera-state.ts";
import type { LossSignal } from "./rtsp/status.ts";
import { UdpPortPool } from "./ingest/udp-ports.ts";

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
}

export type CameraRegistryEvents = {
  /** A camera's view changed (state, reason, reachability, transport…). */
  camera: [CameraView];
  /** The registry is closing: streams built on it end. */
  closed: [];
};

interface Entry {
  config: CameraConfig;
  ingest: CameraIngest;
  unsubscribe: () => void;
}

export class CameraRegistry {
  private readonly entries = new Map<CameraId, Entry>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly deps: { rtsp: Config["rtsp"]; sfu: Sfu; log: Logger };
  readonly events: SafeEmitter<CameraRegistryEvents>;

  constructor(cameras: readonly CameraConfig[], deps: { rtsp: Config["rtsp"]; sfu: Sfu; log: Logger }) {
    this.deps = deps;
    this.events = new SafeEmitter<CameraRegistryEvents>((event, err) => deps.log.error("camera listener failed", { event, err }));
    const ports = new UdpPortPool(deps.rtsp.clientPortRange);
    for (const camera of cameras) {
      const id = toCameraId(camera.id);
      const source = deps.sfu.source(id);
      const log = deps.log.child({ camera: camera.id });
      const ingest = new CameraIngest({ camera, rtsp: deps.rtsp, sink: source, log, ports });
      const offViewers = source.on("viewers", (n: number) => ingest.setDemand(n));
      let last = "";
      const offState = ingest.on("state", (st) => {
        const view = this.viewOf(camera, st);
        // One event per visible change (the ingest also reports changes nobody sees, e.g. counters).
        const key = JSON.stringify({ ...view, viewers: 0 });
        if (key === last) return;
        last = key;
        this.events.emit("camera", view);
      });
      const unsubscribe = () => {
        offViewers();
        offState();
      };
      this.entries.set(id, { config: camera, ingest, unsubscribe });
    }
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
    return this.viewOf(e.config, e.ingest.status());
  }

  private viewOf(config: CameraConfig, st: IngestStatus): CameraView {
    const c = st.camera;
    const v: CameraView = {
      id: toCameraId(config.id),
      name: config.name ?? config.id,
      groups: config.groups,
      state: st.state,
      reason: st.reason,
      viewers: this.deps.sfu.findSource(toCameraId(config.id))?.viewerCount ?? 0,
      status: c.state,
      reachability: c.reachability,
      since: c.since,
      unplayable: st.unsupported,
    };
    if (c.reason !== undefined) v.statusReason = c.reason;
    if (c.lastLiveAt !== undefined) v.lastLiveAt = c.lastLiveAt;
    if (c.downSince !== undefined) v.downSince = c.downSince;
    if (c.lostBy !== undefined) v.lostBy = c.lostBy;
    if (c.checkedAt !== undefined) v.checkedAt = c.checkedAt;
    if (st.transport !== undefined) v.transport = st.transport;
    return v;
  }

  status(id: string): ReturnType<CameraIngest["status"]> | undefined {
    return this.entries.get(id as CameraId)?.ingest.status();
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
        await e.ingest.close(reason);
      }),
    );
    this.entries.clear();
    this.events.emit("closed");
    this.events.removeAllListeners();
  }
}
