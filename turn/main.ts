/**
 * Standalone TURN server: `node turn/main.ts` with GATEHOUSE_CONFIG pointing at a
 * configuration whose `turn` section is enabled. Used by the benchmark (its CPU is
 * measured as a process of its own) and handy for running the relay alone.
 *
 * Prints one JSON line `{"ready":true,"udp":[…],"tcp":[…],"tls":[…]}` once listening;
 * on SIGUSR2 prints `{"metrics":{…}}`. SIGINT/SIGTERM close it cleanly.
 */
import { readFileSync } from "node:fs";
import { loadConfig } from "../config/load.ts";
import { createLogger } from "../config/log.ts";
import { startTurnServer } from "./server.ts";

const cfg = loadConfig();
const log = createLogger({ level: cfg.log.level, format: cfg.log.format });
if (!cfg.turn.enabled) {
  log.error("turn.enabled is false: nothing to run");
  process.exit(2);
}
const tlsFiles = cfg.server.tls;
const server = await startTurnServer({
  config: cfg.turn,
  log,
  ...(tlsFiles ? { tls: { cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key) } } : {}),
});
const fmt = (l: readonly { address: string; port: number }[]): string[] => l.map((a) => `${a.address}:${a.port}`);
process.stdout.write(JSON.stringify({ ready: true, udp: fmt(server.udp), tcp: fmt(server.tcp), tls: fmt(server.tls) }) + "\n");
process.on("SIGUSR2", () => process.stdout.write(JSON.stringify({ metrics: server.metrics.snapshot() }) + "\n"));
const stop = (signal: string): void => {
  server.close(signal).then(() => process.exit(0));
};
process.once("SIGINT", () => stop("SIGINT"));
process.once("SIGTERM", () => stop("SIGTERM"));
