/**
 * A gateway with one camera of two streams (main 1280×720, sub 640×360, two GStreamer
 * recorders), for tests that run it in a network namespace (test/peers/netns.ts): started
 * as a child process, it prints one JSON line `{ "url": … }` when ready (the front door listens
 * on loopback, as sign-in off requires, and a TCP forwarder on the namespace's address
 * stands for it; media goes straight to the address), answers each
 * `status` line on stdin with a JSON line, and closes everything when stdin ends.
 *
 *   node test/peers/netns-gateway.ts <bind address>
 */
import { appendFileSync } from "node:fs";
import net from "node:net";
import { createInterface } from "node:readline";
import { parseConfig } from "../../config/load.ts";
import { createLogger, silentLogger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";
import { startGstRtspServer } from "./gst.ts";
import { splice } from "./tcp-splice.ts";

const host = process.argv[2] ?? "127.0.0.1";
const fps = Number(process.env["NETNS_GW_FPS"] ?? 15);
const main = await startGstRtspServer({ width: 1280, height: 720, fps, gop: fps, bitrate: 1800, noAudio: true, pattern: "snow" });
const sub = await startGstRtspServer({ width: 640, height: 360, fps, gop: fps, bitrate: 300, noAudio: true, pattern: "snow" });
const config = parseConfig({
  // Sign-in off needs a loopback listener: the page reaches it through a forwarder on `host` (below).
  server: { host: "127.0.0.1", port: 0 },
  auth: { mode: "none" },
  demo: { enabled: false },
  rtsp: { idleStopSeconds: 2 },
  media: { bindAddress: host, icePortRange: [40000, 40199], workers: 1 },
  cameras: [{ id: "gate", url: main.url, streams: [{ id: "sub", url: sub.url, width: 640, height: 360 }] }],
});
// NETNS_GW_LOG=<file>: the gateway's log (info and up) appended there, for a run to be read afterwards.
const logFile = process.env["NETNS_GW_LOG"];
const log = logFile ? createLogger({ level: "info", write: (line) => appendFileSync(logFile, `${line}\n`) }) : silentLogger;
const gw = await startGateway({ config, log });
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const forwarder = net.createServer((c) => {
  splice(c, net.connect(gw.httpPort, "127.0.0.1"));
});
await new Promise<void>((r) => forwarder.listen(0, host, () => r()));
say({ url: `http://${host}:${(forwarder.address() as net.AddressInfo).port}` });

/** Each source's upstream rate since the previous status, kbit/s. */
let last = { at: performance.now(), bytes: new Map<string, number>() };
const rates = (): Record<string, number> => {
  const now = { at: performance.now(), bytes: new Map(gw.sfu.sourceList().map((x) => [x.id as string, x.stats().bytesIn])) };
  const out: Record<string, number> = {};
  for (const [id, b] of now.bytes) out[id] = Math.round(((b - (last.bytes.get(id) ?? b)) * 8) / (now.at - last.at));
  last = now;
  return out;
};

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() !== "status") return;
  void gw.sfu.refreshStats().then(() =>
    say({
      status: {
        mainSessions: main.sessions(),
        subSessions: sub.sessions(),
        rates: rates(),
        viewers: gw.sfu.viewerList().map((v) => {
          const s = v.stats();
          return {
            sourceId: s.sourceId,
            quality: s.quality,
            estimateBps: s.estimateBps,
            deliveredBps: s.deliveredBps,
            queueDelayMs: s.queueDelayMs,
            rttMs: s.rttMs,
            fractionLost: s.fractionLost,
            adaptive: s.adaptive,
            bytesOut: s.bytesOut,
            retransmitBytes: s.retransmitBytes,
            plis: s.plis,
            keyframesFromCache: s.keyframesFromCache,
            probes: s.probes,
          };
        }),
      },
    }),
  );
});
lines.on("close", () => {
  void (async () => {
    forwarder.close();
    await gw.close("test over");
    await main.close();
    await sub.close();
    process.exit(0);
  })();
});
