/**
 * What the gateway's own rooms report to `/metrics`: cameras (ingest) and the SFU.
 * TURN and SIP add their collectors where they are started.
 */
import { nativeStatus, type Sfu } from "../sfu/sfu.ts";
import type { TurnServer } from "../turn/index.ts";
import type { SipServer } from "./sip/index.ts";
import type { CameraRegistry } from "./cameras.ts";
import type { AuditLog } from "./audit/index.ts";
import { CumulativeHistogram, type Collector, type Sample } from "./http/metrics.ts";
import type { ViewerAdmission } from "./http/viewer-admission.ts";
import type { FrontDoor } from "./frontdoor/index.ts";

const INGEST_STATES = ["idle", "connecting", "playing", "backoff", "failed", "disabled"] as const;

export function cameraCollector(cameras: CameraRegistry): Collector {
  return () => {
    const out: Sample[] = [];
    for (const c of cameras.configs()) {
      const st = cameras.status(c.id);
      if (!st) continue;
      const labels = { camera: c.id };
      for (const s of INGEST_STATES)
        out.push({ name: "gatehouse_camera_state", help: "Ingest state of the camera (1 for the current state).", type: "gauge", value: st.state === s ? 1 : 0, labels: { ...labels, state: s } });
      out.push(
        { name: "gatehouse_camera_reconnects_total", help: "Reconnects to the recorder.", type: "counter", value: st.reconnects, labels },
        { name: "gatehouse_camera_packets_in_total", help: "RTP packets received from the recorder.", type: "counter", value: st.packetsIn, labels },
        { name: "gatehouse_camera_bytes_in_total", help: "RTP bytes received from the recorder.", type: "counter", value: st.bytesIn, labels },
        { name: "gatehouse_camera_malformed_total", help: "Malformed packets or messages dropped from the recorder.", type: "counter", value: st.malformed, labels },
      );
    }
    return out;
  };
}

/** Upper bounds of the forwarding-latency buckets, seconds (edges of the SFU's own buckets, so exact). */
export const FORWARD_LATENCY_BOUNDS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2];

/**
 * The SFU's measurements by fixed windows (`metrics.windowSeconds`), never by scrape: each
 * window's forwarding latencies are added to a cumulative histogram, and the media workers'
 * longest loop delay and longest task of the last complete window are kept as gauges. Every
 * scraper reads the same figures.
 */
export class SfuMetricsWindow {
  readonly forwardLatency = new CumulativeHistogram(FORWARD_LATENCY_BOUNDS);
  /** Per worker index: maxima of the last complete window, seconds. */
  readonly lastWindow = new Map<number, { loopDelayMax: number; taskMax: number }>();
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly sfu: Sfu;

  constructor(sfu: Sfu, windowSeconds: number) {
    this.sfu = sfu;
    this.timer = setInterval(() => void this.fold(), windowSeconds * 1000);
    this.timer.unref();
  }

  /** Ends the current window now (also what the timer does). */
  fold(): Promise<void> {
    this.running ??= (async () => {
      try {
        if (this.closed) return;
        await this.sfu.refreshStats();
        if (this.closed) return;
        const st = this.sfu.stats();
        const h = st.forwardLatency;
        this.forwardLatency.add(
          h.countsBelow(FORWARD_LATENCY_BOUNDS.map((s) => s * 1000)),
          h.count,
          h.sumMs / 1000,
        );
        for (const w of st.workers ?? [])
          this.lastWindow.set(w.index, {
            loopDelayMax: w.eventLoopDelayMs.max / 1000,
            taskMax: Math.max(w.ingest.sliceMaxMs, w.ingest.pacerPassMaxMs) / 1000,
          });
        this.sfu.resetMeasurements();
      } catch {
        // A closing SFU: the window is simply not counted.
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}

export function sfuCollector(sfu: Sfu, window: SfuMetricsWindow): Collector {
  return () => {
    const out: Sample[] = [];
    const st = sfu.stats();
    const { sources, viewers } = st;
    for (const s of sources) {
      const labels = { camera: s.id };
      out.push({ name: "gatehouse_source_viewers", help: "Viewers of the camera (connecting included).", type: "gauge", value: s.viewers, labels });
      for (const [reason, n] of Object.entries(s.dropped))
        out.push({ name: "gatehouse_source_dropped_total", help: "Upstream packets dropped by the SFU, by reason.", type: "counter", value: n, labels: { ...labels, reason } });
    }
    // A grid over one peer connection is a live view per bound video slot, as a page of WHEP sessions is one per tile.
    let slots = 0;
    for (const session of sfu.sessionList()) for (const slot of session.slots()) if (slot.kind === "video" && slot.camera !== undefined) slots++;
    out.push({ name: "gatehouse_viewers", help: "Live views: WebRTC (WHEP) viewers plus video slots of multi-camera sessions that show a camera.", type: "gauge", value: viewers.length + slots });
    const cand = sfu.candidateStats();
    out.push({ name: "gatehouse_ice_candidates_accepted_total", help: "ICE candidates from viewers given to the ICE agent.", type: "counter", value: cand.accepted });
    for (const [reason, n] of Object.entries(cand.dropped))
      out.push({
        name: "gatehouse_ice_candidates_dropped_total",
        help: "ICE candidates from viewers dropped, by reason (name: not an IP literal; range: refused address; unsupported; excess: over the per-viewer bound).",
        type: "counter",
        value: n,
        labels: { reason },
      });
    out.push({
      name: "gatehouse_native_fast_path",
      help: "1 when RTP is protected and written by the native fast path (sfu/native/), 0 on the JavaScript path.",
      type: "gauge",
      value: nativeStatus().enabled ? 1 : 0,
    });
    out.push(
      window.forwardLatency.sample(
        "gatehouse_forward_latency_seconds",
        "Live packets, ingest to viewer socket, per packet per viewer (complete windows of metrics.windowSeconds).",
      ),
    );
    for (const w of st.workers ?? []) {
      const labels = { worker: String(w.index) };
      const last = window.lastWindow.get(w.index) ?? { loopDelayMax: 0, taskMax: 0 };
      out.push(
        { name: "gatehouse_media_worker_viewers", help: "Viewers placed on the media worker.", type: "gauge", value: w.viewers, labels },
        { name: "gatehouse_media_worker_loop_delay_max_seconds", help: "Longest event-loop delay of the media worker in the last complete window (metrics.windowSeconds).", type: "gauge", value: last.loopDelayMax, labels },
        { name: "gatehouse_media_worker_heap_used_bytes", help: "V8 heap in use by the media worker.", type: "gauge", value: w.heapUsedKb * 1024, labels },
        {
          name: "gatehouse_media_worker_task_max_seconds",
          help: "Longest stretch the media worker's own fan-out held its event loop (ingest slice or pacer pass) in the last complete window (metrics.windowSeconds).",
          type: "gauge",
          value: last.taskMax,
          labels,
        },
        { name: "gatehouse_media_worker_ingest_backlog_bytes", help: "Ingest waiting to be fanned out by the media worker.", type: "gauge", value: w.ingest.backlogBytes, labels },
      );
    }
    return out;
  };
}

/** WHEP offers refused, by the bound that refused them. */
export function admissionCollector(admission: ViewerAdmission, sfu: Sfu): Collector {
  return () => {
    const st = admission.stats();
    const help = "WHEP offers refused, by bound: user or session held as many live viewers as it may (429), no free media port (503).";
    return [
      { name: "gatehouse_whep_refused_total", help, type: "counter", value: st.refusedPerUser, labels: { limit: "user" } },
      { name: "gatehouse_whep_refused_total", help, type: "counter", value: st.refusedPerSession, labels: { limit: "session" } },
      { name: "gatehouse_whep_refused_total", help, type: "counter", value: sfu.viewersRefused, labels: { limit: "ports" } },
    ];
  };
}

/**
 * Every numeric field of a stats object (nested objects flattened with `_`) as one metric:
 * camelCase becomes snake_case under `prefix`; names in `gauges` are gauges, the rest counters.
 */
export function statsCollector(prefix: string, help: string, stats: () => object, gauges: ReadonlySet<string>): Collector {
  // relaySockets → relay_sockets; an all-capitals key (a SIP method: OPTIONS) → options.
  const snake = (k: string) => k.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
  return () => {
    const out: Sample[] = [];
    const walk = (o: object, path: string) => {
      for (const [k, v] of Object.entries(o)) {
        const key = path ? `${path}_${snake(k)}` : snake(k);
        if (typeof v === "number") {
          const gauge = gauges.has(key);
          out.push({ name: `${prefix}_${key}${gauge ? "" : "_total"}`, help: `${help}: ${key.replace(/_/g, " ")}.`, type: gauge ? "gauge" : "counter", value: v });
        } else if (v && typeof v === "object" && !Array.isArray(v)) walk(v, key);
      }
    };
    walk(stats(), "");
    return out;
  };
}

/** TURN counters, as the TURN server keeps them, and its open sockets. */
export function turnCollector(turn: TurnServer): Collector {
  return statsCollector(
    "gatehouse_turn",
    "TURN",
    () => ({ ...turn.metrics.snapshot(), relaySockets: turn.relaySockets, connections: turn.connections }),
    new Set(["allocations", "permissions", "channels", "relay_sockets", "connections"]),
  );
}

/** The front door's connections by kind, its refusals and timeouts, and the connections open now. */
export function frontDoorCollector(door: Pick<FrontDoor, "stats" | "connections">): Collector {
  return statsCollector("gatehouse_frontdoor", "Front door", () => ({ ...door.stats, connections: door.connections }), new Set(["connections"]));
}

/** The audit trail's writes, failures, drops and queue. */
export function auditCollector(audit: AuditLog): Collector {
  return statsCollector("gatehouse_audit", "Audit trail", () => audit.stats, new Set(["queued"]));
}

/** SIP transport, transaction, registrar and call figures. */
export function sipCollector(sip: SipServer): Collector {
  return statsCollector("gatehouse_sip", "SIP", () => sip.stats(), new Set(["calls", "bindings", "rtp_ports_in_use", "lockouts"]));
}
