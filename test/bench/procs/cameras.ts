/**
 * Many cameras in one process for the ingest benchmark: N instances of Gatehouse's demo
 * RTSP recorder (gateway/demo) looping the SAME H.264 clip, video only, each on its own
 * RTSP port, serving UDP and TCP clients. The clip is packetized once per instance at
 * start, so each camera costs a header stamp and a send per packet: 32 cameras at
 * 2 Mbit/s stay cheap beside the servers under test, where 32 live encoders (or 32
 * GStreamer parse/pay pipelines) would measure the recorder instead.
 *
 *   forkChild("test/bench/procs/cameras.ts", ["--h264", clip, "--count", "32", "--fps", "25", "--max-payload", "1200"])
 *   → ready { urls: string[], pid }
 *
 * Each client's session starts the clip at its own PLAY, so the cameras' keyframes fall
 * at different moments, as real cameras' do.
 * Commands: stats → the recorders' counters summed; close.
 */
import { parseArgs } from "node:util";
import { silentLogger } from "../../../config/log.ts";
import { startDemoRecorder, type DemoRecorder, type DemoRecorderStats } from "../../../gateway/demo/recorder.ts";
import { failStart, serve } from "../lib/child.ts";

const { values } = parseArgs({
  options: {
    h264: { type: "string" },
    count: { type: "string" },
    fps: { type: "string" },
    "max-payload": { type: "string" },
    "session-timeout": { type: "string" },
  },
});

const recorders: DemoRecorder[] = [];
try {
  const count = Number(values.count ?? 32);
  if (!Number.isInteger(count) || count < 1 || count > 256) throw new Error(`--count must be 1–256, got ${values.count}`);
  for (let i = 0; i < count; i++) {
    recorders.push(
      await startDemoRecorder({
        host: "127.0.0.1",
        port: 0,
        log: silentLogger,
        paths: { ...(values.h264 ? { h264: values.h264 } : {}), ulaw: null },
        recording: false,
        fps: Number(values.fps ?? 25),
        maxPayload: Number(values["max-payload"] ?? 1200),
        streamPath: `/cam${i + 1}`,
        // Our gateway and Janus each hold one session per camera.
        maxSessions: 8,
        ...(values["session-timeout"] ? { sessionTimeoutSeconds: Number(values["session-timeout"]) } : {}),
      }),
    );
  }
} catch (err) {
  await Promise.all(recorders.map((r) => r.close("start failed")));
  failStart(err);
}

function stats(): DemoRecorderStats {
  const sum = {} as Record<keyof DemoRecorderStats, number>;
  for (const r of recorders) {
    for (const [k, v] of Object.entries(r.stats()) as Array<[keyof DemoRecorderStats, number]>) sum[k] = (sum[k] ?? 0) + v;
  }
  return sum;
}

serve(
  {
    stats: () => stats(),
    close: async () => {
      await Promise.all(recorders.map((r) => r.close("bench done")));
    },
  },
  { urls: recorders.map((r) => r.url), pid: process.pid },
);
