/**
 * One sending thread of the forwarding-latency floor (test/bench/floor.ts): what a
 * forwarder with no per-packet work of its own would score on this machine. Each frame
 * of the clip, at its due time, goes to every viewer socket of this thread: datagrams
 * of the SRTP size, already built, written viewer by viewer in batches of 512 through
 * the native sendBatch (sendmmsg + UDP GSO), as the SFU's SendBatch writes them. A
 * datagram's latency is the time from the frame's start to the return of the call that
 * wrote it: the SFU's own histogram measures the same way, minus everything the SFU does
 * before its write (RTSP parsing, the hop between threads, SRTP, its bookkeeping).
 *
 * workerData: { ports, frames: number[][] (datagram sizes per frame), fps, startAt (epoch ms), durationMs }
 * Posts { histogram, datagrams, failed } when done.
 */
import dgram from "node:dgram";
import { parentPort, workerData } from "node:worker_threads";
import { LatencyHistogram } from "../../../sfu/latency.ts";
import { fastPath } from "../../../sfu/native/index.ts";
import { UdpWriter } from "../../../sfu/udp-writer.ts";

interface Job {
  ports: number[];
  frames: number[][];
  fps: number;
  startAt: number;
  durationMs: number;
}
const job = workerData as Job;
const fp = fastPath;
if (!fp) throw new Error("the native fast path is not built (npm run build:native)");

const BATCH = 512;
const sockets: dgram.Socket[] = [];
const writers: UdpWriter[] = [];
for (const port of job.ports) {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  s.setSendBufferSize(1024 * 1024); // as the SFU sets its viewer sockets
  sockets.push(s);
  writers.push(new UdpWriter(s, port, "127.0.0.1"));
}
const maxSize = Math.max(...job.frames.flat());
// A buffer per viewer and packet of a frame: its header carries the viewer's sequence number (the sink checks order).
const maxPackets = Math.max(...job.frames.map((f) => f.length));
const bufs = writers.map(() => Array.from({ length: maxPackets }, () => Buffer.alloc(maxSize, 0x5a)));
const fds = new Int32Array(BATCH);
const lens = new Int32Array(BATCH);
const results = new Int32Array(BATCH);
const bufList: Buffer[] = new Array<Buffer>(BATCH);
const addrList: Buffer[] = new Array<Buffer>(BATCH);
const histogram = new LatencyHistogram();
const seqs = new Uint16Array(writers.length);
let datagrams = 0;
let failed = 0;

function sendFrame(sizes: number[]): void {
  const t0 = performance.now();
  let n = 0;
  const flush = () => {
    fp!.sendBatch(fds, bufList, lens, addrList, n, results);
    const now = performance.now();
    for (let i = 0; i < n; i++) {
      if (results[i]! > 0) {
        histogram.record(now - t0);
        datagrams++;
      } else failed++;
    }
    n = 0;
  };
  for (let v = 0; v < writers.length; v++) {
    const w = writers[v]!;
    for (let p = 0; p < sizes.length; p++) {
      const b = bufs[v]![p]!;
      b.writeUInt16BE(seqs[v]!, 2);
      seqs[v] = (seqs[v]! + 1) & 0xffff;
      fds[n] = w.fd;
      bufList[n] = b;
      lens[n] = sizes[p]!;
      addrList[n] = w.sockaddr!;
      if (++n === BATCH) flush();
    }
  }
  if (n > 0) flush();
}

const frameMs = 1000 / job.fps;
const toLocal = (epochMs: number) => epochMs - performance.timeOrigin;
let frame = 0;
await new Promise<void>((resolve) => {
  const tick = () => {
    const due = toLocal(job.startAt) + frame * frameMs;
    if (frame * frameMs >= job.durationMs) return resolve();
    const wait = due - performance.now();
    if (wait > 0.5) {
      setTimeout(tick, Math.floor(wait));
      return;
    }
    sendFrame(job.frames[frame % job.frames.length]!);
    frame++;
    setImmediate(tick);
  };
  tick();
});
for (const s of sockets) s.close();
parentPort!.postMessage({ histogram: histogram.toJSON(), datagrams, failed });
