/**
 * The benchmark's recorder in its own process: Gatehouse's built-in demo RTSP
 * recorder (gateway/demo) looping an H.264 clip, video only, serving TCP-interleaved
 * and UDP clients (our gateway pulls over TCP, Janus over UDP). Packetization is done
 * once at start, so the recorder's cost per packet is a header stamp and a write: a
 * steadier source on a shared 2-core machine than a live x264 encoder.
 *
 *   forkChild("test/bench/procs/recorder.ts", ["--h264", clipPath, "--fps", "25", "--max-payload", "1200"])
 *   → ready { url, pid }
 *
 * `--max-payload 1200` makes the recorder's RTP payloads already fit WebRTC, so our SFU
 * forwards them one for one (no re-fragmentation) and Janus, which never re-fragments,
 * delivers exactly the same packets: per-packet figures compare like with like.
 * Commands: stats → the recorder's own counters; close.
 */
import { parseArgs } from "node:util";
import { silentLogger } from "../../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../../gateway/demo/recorder.ts";
import { failStart, serve } from "../lib/child.ts";

const { values } = parseArgs({
  options: {
    h264: { type: "string" },
    fps: { type: "string" },
    "max-payload": { type: "string" },
  },
});

let rec: DemoRecorder;
try {
  rec = await startDemoRecorder({
    host: "127.0.0.1",
    port: 0,
    log: silentLogger,
    paths: { ...(values.h264 ? { h264: values.h264 } : {}), ulaw: null },
    fps: Number(values.fps ?? 25),
    maxPayload: Number(values["max-payload"] ?? 1200),
    streamPath: "/bench",
  });
} catch (err) {
  failStart(err);
}

serve(
  {
    stats: () => rec.stats(),
    close: () => rec.close("bench done"),
  },
  { url: rec.url, pid: process.pid },
);
