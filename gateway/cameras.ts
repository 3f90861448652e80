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
import type { Sfu } from "../sfu/sfu.ts";
import { CameraIngest } from "./ingest/camera-ingest.ts";
import { UdpPortPool } from "./ingest/udp-ports.ts";

export interface CameraView {
  id: CameraId;
  name: string;
  groups: readonly string[];
  state: string;
  reason?: string | undefined;
  viewers: number;
}

interface Entry {
  config: CameraConfig;
  ingest: CameraIngest;
  unsubscribe: () => void;
}

export class CameraRegistry {
  private readonly entries = new Map<CameraId, Entry>();
  private closed = false;
  private readonly deps: { rtsp: Config["rtsp"]; sfu: Sfu; log: Logger };

  constructor(cameras: readonly CameraConfig[], deps: { rtsp: Config["rtsp"]; sfu: Sfu; log: Logger }) {
    this.deps = deps;
    const ports = new UdpPortPool(deps.rtsp.clientPortRange);
    for (const camera of cameras) {
      const id = toCameraId(camera.id);
      const source = deps.sfu.source(id);
      const log = deps.log.child({ camera: camera.id });
      const ingest = new CameraIngest({ camera, rtsp: deps.rtsp, sink: source, log, ports });
      const unsubscribe = source.on("viewers", (n: number) => ingest.setDemand(n));
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
    const st = e.ingest.status();
    return {
      id: toCameraId(e.config.id),
      name: e.config.name ?? e.config.id,
      groups: e.config.groups,
      state: st.state,
      reason: st.reason,
      viewers: this.deps.sfu.source(toCameraId(e.config.id)).stats().viewers,
    };
  }

  status(id: string): ReturnType<CameraIngest["status"]> | undefined {
    return this.entries.get(id as CameraId)?.ingest.status();
  }

  async close(reason = "gateway closing"): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      [...this.entries.values()].map(async (e) => {
        e.unsubscribe();
        await e.ingest.close(reason);
      }),
    );
    this.entries.clear();
  }
}
