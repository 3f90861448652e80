/**
 * A gateway for tests that run it in a network namespace (test/peers/netns.ts): started as a
 * child process, it prints one JSON line `{ "url": … }` when ready (the front door listens on
 * loopback, as sign-in off requires, and a TCP forwarder on the namespace's address stands for
 * it; media goes straight to the address), answers each `status` line on stdin with a JSON
 * line, and closes everything when stdin ends.
 *
 *   node test/peers/netns-gateway.ts <bind address>          # one camera, main 1280×720 and sub 640×360 (two GStreamer recorders)
 *   node test/peers/netns-gateway.ts <bind address> grid     # four cameras of the demo recorder, the embedded TURN relay
 *                                                            # on UDP and on the front door's TCP port
 *
 * In grid mode the ready line is `{ "url": <the gateway's own loopback origin>, "via": <the
 * forwarder's host:port> }`: sign-in off announces TURN over TCP at the loopback origin it
 * listens on, so the client's side reaches that origin through a forwarder of its own
 * (test/peers/ns-forward.ts) to `via`, as a browser on the gateway's machine would.
 */
import { appendFileSync } from "node:fs";
import net from "node:net";
import { createInterface } from "node:readline";
import { parseConfig } from "../../config/load.ts";
import { createLogger, silentLogger } from "../../config/log.ts";
import { startDemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway } from "../../gateway/gateway.ts";
import { startGstRtspServer } from "./gst.ts";
import { splice } from "./tcp-splice.ts";

const host = process.argv[2] ?? "127.0.0.1";
const grid = process.argv[3] === "grid";
// NETNS_GW_LOG=<file>: the gateway's log (info and up) appended there, for a run to be read afterwards.
const logFile = process.env["NETNS_GW_LOG"];
const log = logFile ? createLogger({ level: process.env["NETNS_GW_LOG_LEVEL"] === "debug" ? "debug" : "info", write: (line) => appendFileSync(logFile, `${line}\n`) }) : silentLogger;

// The forwarder listens first (its port is known before the gateway starts).
let gatewayPort = 0;
const forwarder = net.createServer((c) => {
  if (gatewayPort === 0) return void c.destroy();
  splice(c, net.connect(gatewayPort, "127.0.0.1"));
});
await new Promise<void>((r) => forwarder.listen(0, host, () => r()));
const via = `${host}:${(forwarder.address() as net.AddressInfo).port}`;

const closers: (() => Promise<void>)[] = [];
let sessions = { main: () => 0, sub: () => 0 };
let config;
if (grid) {
  const recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  closers.push(() => recorder.close());
  config = parseConfig({
    // Sign-in off needs a loopback listener: the page reaches it through the forwarder.
    server: { host: "127.0.0.1", port: 0 },
    auth: { mode: "none" },
    demo: { enabled: false },
    media: { bindAddress: host, icePortRange: [40000, 40199], workers: 1 },
    cameras: ["cam1", "cam2", "cam3", "cam4"].map((id) => ({ id, url: recorder.url, transport: "tcp" })),
    turn: { enabled: true, secret: "netns-grid-turn-secret-0123456789", udp: [{ host, port: 0 }], relay: { address: host, portRange: [0, 0] } },
  });
} else {
  const fps = Number(process.env["NETNS_GW_FPS"] ?? 15);
  const main = await startGstRtspServer({ width: 1280, height: 720, fps, gop: fps, bitrate: 1800, noAudio: true, pattern: "snow" });
  const sub = await startGstRtspServer({ width: 640, height: 360, fps, gop: fps, bitrate: 300, noAudio: true, pattern: "snow" });
  closers.push(() => main.close(), () => sub.close());
  sessions = { main: () => main.sessions(), sub: () => sub.sessions() };
  config = parseConfig({
    server: { host: "127.0.0.1", port: 0 },
    auth: { mode: "none" },
    demo: { enabled: false },
    rtsp: { idleStopSeconds: 2 },
    media: { bindAddress: host, icePortRange: [40000, 40199], workers: 1 },
    cameras: [{ id: "gate", url: main.url, streams: [{ id: "sub", url: sub.url, width: 640, height: 360 }] }],
  });
}
const gateway = await startGateway({ config, log });
gatewayPort = gateway.httpPort;
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
say(grid ? { url: gateway.url, via } : { url: `http://${via}` });

/** Each source's upstream rate since the previous status, kbit/s. */
let last = { at: performance.now(), bytes: new Map<string, number>() };
const rates = (): Record<string, number> => {
  const now = { at: performance.now(), bytes: new Map(gateway.sfu.sourceList().map((x) => [x.id as string, x.stats().bytesIn])) };
  const out: Record<string, number> = {};
  for (const [id, b] of now.bytes) out[id] = Math.round(((b - (last.bytes.get(id) ?? b)) * 8) / (now.at - last.at));
  last = now;
  return out;
};

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() !== "status") return;
  void gateway.sfu.refreshStats().then(() =>
    say({
      status: {
        mainSessions: sessions.main(),
        subSessions: sessions.sub(),
        gridSessions: gateway.sfu.sessionList().length,
        turnAllocations: gateway.turn?.core.allocationCount ?? 0,
        rates: rates(),
        viewers: gateway.sfu.viewerList().map((v) => {
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
            drops: s.drops,
            queued: s.queued,
          };
        }),
      },
    }),
  );
});
lines.on("close", () => {
  void (async () => {
    forwarder.close();
    await gateway.close("test over");
    for (const close of closers) await close();
    process.exit(0);
  })();
});
