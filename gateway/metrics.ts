/**
 * What the gateway's own rooms report to `/metrics`: cameras (ingest) and the SFU.
 * TURN and SIP add their collectors where they are started.
 */
import { nativeStatus, type Sfu } from "../sfu/sfu.ts";
import type { TurnServer } from "../turn/index.ts";
import type { SipServer } from "./sip/index.ts";
import type { CameraRegistry } from "./cameras.ts";
import type { Collector, Sample } from "./http/metrics.ts";

const INGEST_STATES = ["idle", "connecting", "playing", "backoff", "failed"] as const;

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

export function sfuCollector(sfu: Sfu): Collector {
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
    out.push({ name: "gatehouse_viewers", help: "WebRTC viewers.", type: "gauge", value: viewers.length });
    out.push({
      name: "gatehouse_native_fast_path",
      help: "1 when RTP is protected and written by the native fast path (sfu/native/), 0 on the JavaScript path.",
      type: "gauge",
      value: nativeStatus().enabled ? 1 : 0,
    });
    // Measurement windows restart after each scrape, so every figure covers the last scrape interval.
    const lat = st.forwardLatencyMs;
    out.push(
      { name: "gatehouse_forward_latency_p50_seconds", help: "Live packets, ingest to viewer socket, median since the last scrape.", type: "gauge", value: lat.p50 / 1000 },
      { name: "gatehouse_forward_latency_p99_seconds", help: "Live packets, ingest to viewer socket, 99th percentile since the last scrape.", type: "gauge", value: lat.p99 / 1000 },
      { name: "gatehouse_forward_latency_max_seconds", help: "Live packets, ingest to viewer socket, maximum since the last scrape.", type: "gauge", value: lat.max / 1000 },
    );
    for (const w of st.workers ?? []) {
      const labels = { worker: String(w.index) };
      out.push(
        { name: "gatehouse_media_worker_viewers", help: "Viewers placed on the media worker.", type: "gauge", value: w.viewers, labels },
        { name: "gatehouse_media_worker_loop_delay_max_seconds", help: "Longest event-loop delay of the media worker since the last scrape.", type: "gauge", value: w.eventLoopDelayMs.max / 1000, labels },
        { name: "gatehouse_media_worker_heap_used_bytes", help: "V8 heap in use by the media worker.", type: "gauge", value: w.heapUsedKb * 1024, labels },
        {
          name: "gatehouse_media_worker_task_max_seconds",
          help: "Longest stretch the media worker's own fan-out held its event loop (ingest slice or pacer pass), since the last scrape.",
          type: "gauge",
          value: Math.max(w.ingest.sliceMaxMs, w.ingest.pacerPassMaxMs) / 1000,
          labels,
        },
        { name: "gatehouse_media_worker_ingest_backlog_bytes", help: "Ingest waiting to be fanned out by the media worker.", type: "gauge", value: w.ingest.backlogBytes, labels },
      );
    }
    sfu.resetMeasurements();
    return out;
  };
}

/**
 * Every numeric field of a stats object (nested objects flattened with `_`) as one metric:
 * camelCase becomes snake_case under `prefix`; names in `gauges` are gauges, the rest counters.
 */
export function statsCollector(prefix: string, help: string, stats: () => object, gauges: ReadonlySet<string>): Collector {
  const snake = (k: string) => k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
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

/** SIP transport, transaction, registrar and call figures. */
export function sipCollector(sip: SipServer): Collector {
  return statsCollector("gatehouse_sip", "SIP", () => sip.stats(), new Set(["calls", "bindings", "rtp_ports_in_use", "lockouts"]));
}
