/**
 * The forwarding-latency floor of this machine: the `forward_latency_ms_*` a forwarder
 * with no per-packet work of its own would measure here, beside the SFU's own figure in
 * the same run (`npm run bench`).
 *
 * The bench clip's frames (RTP payloads ≤ 1200 bytes, as the recorder sends them, plus
 * the 16-byte GCM tag) go from `workers` threads (the gateway's media worker count),
 * each to its share of `viewers` sockets in one sink process, frame by frame at the
 * clip's rate, starting together as the workers do when a batch reaches them. Each
 * thread writes a frame's datagrams already built, viewer by viewer, 512 per sendmmsg
 * call with UDP GSO: exactly the SFU's final write, and nothing before it. On loopback
 * the sender also pays the kernel's delivery to the receiving socket and the wake-up of
 * the receiving process, as the SFU does in the fan-out bench.
 *
 * What the floor shows: a keyframe (≈37 packets here) to 100 viewers is ≈3,700
 * datagrams at once; with two threads, the last of them leaves after ≈1,850 writes'
 * worth of kernel time, and they are 1 % of all packets of a GOP. So p99 cannot be
 * lower than the kernel's time for most of a keyframe burst, whatever runs before it.
 */
import { Worker } from "node:worker_threads";
import { readFile } from "node:fs/promises";
import { prepareClip } from "../../gateway/demo/clip.ts";
import { LatencyHistogram } from "../../sfu/latency.ts";
import { forkChild } from "./lib/child.ts";
import { benchClip, DEFAULT_CLIP, type ClipSpec } from "./lib/clip.ts";
import { cpuSeconds } from "./lib/proc.ts";

export interface FloorOptions {
  viewers?: number;
  workers?: number;
  durationMs?: number;
  clip?: ClipSpec;
  log?: (msg: string) => void;
}

export interface FloorResult {
  forward_latency_floor_ms_p50: number;
  forward_latency_floor_ms_p99: number;
  forward_latency_floor_ms_max: number;
  forward_latency_floor_viewers: number;
  forward_latency_floor_threads: number;
  forward_latency_floor_samples: number;
  forward_latency_floor_failed: number;
  forward_latency_floor_sink_cores: number;
  forward_latency_floor_method: string;
}

const SRTP_GCM_OVERHEAD = 12 + 16; // RTP header + AES-GCM tag around each payload

export async function benchLatencyFloor(o: FloorOptions = {}): Promise<FloorResult> {
  const viewers = o.viewers ?? 100;
  const workers = o.workers ?? 2;
  const durationMs = o.durationMs ?? 8000;
  const spec = o.clip ?? DEFAULT_CLIP;
  const file = await benchClip(spec);
  const clip = prepareClip({ h264: await readFile(file.path), fps: spec.fps, maxPayload: 1200 });
  // Datagram sizes per frame, in order.
  const frames: number[][] = [];
  let ts = -1;
  for (const p of clip.video.packets) {
    if (p.ts !== ts) {
      frames.push([]);
      ts = p.ts;
    }
    frames.at(-1)!.push(p.payload.length + SRTP_GCM_OVERHEAD);
  }
  const sink = await forkChild<{ ports: number[]; pid: number }>(new URL("./procs/udp-sink.ts", import.meta.url).pathname, ["--sockets", String(viewers)]);
  try {
    const ports = sink.ready.ports;
    const startAt = Date.now() + 500;
    const cpu0 = cpuSeconds(sink.pid);
    const t0 = performance.now();
    const parts = await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const mine = ports.filter((_p, i) => i % workers === w);
        return new Promise<{ histogram: ReturnType<LatencyHistogram["toJSON"]>; datagrams: number; failed: number }>((resolve, reject) => {
          const t = new Worker(new URL("./procs/floor-sender.ts", import.meta.url), { workerData: { ports: mine, frames, fps: spec.fps, startAt, durationMs } });
          t.once("message", resolve);
          t.once("error", reject);
          t.once("exit", (code) => reject(new Error(`floor sender exited (${code}) before reporting`)));
        });
      }),
    );
    const wallS = (performance.now() - t0) / 1000;
    const sinkCores = (cpuSeconds(sink.pid) - cpu0) / wallS;
    const h = new LatencyHistogram();
    for (const p of parts) h.merge(LatencyHistogram.fromJSON(p.histogram));
    const s = h.summary();
    o.log?.(`latency floor: ${viewers} viewers on ${workers} threads, p50/p99/max ${s.p50}/${s.p99}/${s.max} ms over ${s.count} datagrams`);
    return {
      forward_latency_floor_ms_p50: s.p50,
      forward_latency_floor_ms_p99: s.p99,
      forward_latency_floor_ms_max: s.max,
      forward_latency_floor_viewers: viewers,
      forward_latency_floor_threads: workers,
      forward_latency_floor_samples: s.count,
      forward_latency_floor_failed: parts.reduce((a, p) => a + p.failed, 0),
      forward_latency_floor_sink_cores: Math.round(sinkCores * 1000) / 1000,
      forward_latency_floor_method:
        "the bench clip's frames at its rate from one thread per media worker to its share of the viewers' sockets in one sink " +
        "process: prebuilt SRTP-sized datagrams written viewer by viewer, 512 per sendmmsg with UDP GSO (the SFU's final write and " +
        "nothing before it); latency from the frame's start to the return of the write, per datagram, as the SFU's histogram counts",
    };
  } finally {
    await sink.close();
  }
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  const viewers = Number(process.argv[2] ?? 100);
  console.log(JSON.stringify(await benchLatencyFloor({ viewers, log: (m) => process.stderr.write(`${m}\n`) })));
}
