/**
 * `npm start`: load the configuration (embedded defaults, or $GATEHOUSE_CONFIG /
 * `--config <file>`), start the gateway, print where to open it, stop cleanly on
 * SIGINT/SIGTERM (status 0; a second signal exits at once with 130/143, a stop past
 * `server.shutdownTimeoutMs` with 1). A bad configuration exits with status 2 and the problems listed.
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config/load.ts";
import { createLogger } from "../config/log.ts";
import { stderrLogSink } from "../config/log-sink.ts";
import { startGateway } from "./gateway.ts";
import { watchConfig } from "./reload.ts";

const { values } = parseArgs({ options: { config: { type: "string", short: "c" } }, allowPositionals: false });

let config;
try {
  config = loadConfig({ file: values.config });
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`gatehouse: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const configFile = values.config ?? process.env.GATEHOUSE_CONFIG;
// Lines go to stderr through a bounded buffer written off the event loop.
const sink = stderrLogSink({ maxBufferedBytes: config.log.bufferBytes });
const log = createLogger({ level: config.log.level, format: config.log.format, write: sink.write });
// With the embedded defaults nobody chose the ports: a taken one is replaced, not fatal.
let gateway;
try {
  gateway = await startGateway({ config, log, takenPorts: configFile ? "fail" : "fallback" });
} catch (err) {
  // One plain line an operator can act on (the key or address to check), then the details.
  process.stderr.write(`gatehouse: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
  log.error("start-up failed", { err });
  await sink.flush();
  process.exit(1);
}
const lines = [``, `Gatehouse is running: open ${gateway.url}/`];
for (const t of gateway.takenPorts) lines.push(`  (${t.what}: port ${t.port} was taken by another program; a free port is used instead)`);
if (gateway.turn) {
  const udp = gateway.turn.udp.map((a) => `UDP ${a.address}:${a.port}`);
  const tcp = config.turn.shareHttpsPort ? [`${config.server.tls ? "TCP/TLS" : "TCP"} on the front-door port ${gateway.httpPort}`] : [];
  lines.push(`TURN relay: ${[...udp, ...tcp].join(", ")}  (try ${gateway.url}/?relay=udp or ?relay=tcp)`);
}
if (gateway.sip) {
  const p = gateway.sip.ports;
  lines.push(`SIP intercom: ${[p.udp && `UDP ${p.udp}`, p.tcp && `TCP ${p.tcp}`, p.tls && `TLS ${p.tls}`].filter(Boolean).join(", ")} on ${config.sip.bindAddress}`);
}
if (gateway.demoDoor) lines.push(`Demo door station registered (${gateway.demoDoor.aor}): sign in as admin, open Doors, press "Ring the demo door", or Talk to it.`);
if (gateway.auth.devUsers?.length) {
  lines.push(``, `DEVELOPMENT ONLY: built-in identity provider at ${gateway.auth.issuer} with demo accounts:`);
  for (const u of gateway.auth.devUsers) lines.push(`  ${u.username.padEnd(8)} password ${u.password}   (${u.description})`);
  lines.push(`Configure auth.mode: oidc with your organisation's issuer for real use.`);
}
process.stdout.write(lines.join("\n") + "\n\n");

// Rights and signing keys follow the file without a restart (SIGHUP also reloads).
const watcher = configFile ? watchConfig(configFile, gateway, log.child({ component: "config" })) : undefined;

if (watcher) process.on("SIGHUP", () => watcher.reload());

// A graceful stop within server.shutdownTimeoutMs, status 0; a second signal exits at once.
let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) {
      log.warn("second signal: exiting at once", { signal: sig });
      process.exit(sig === "SIGINT" ? 130 : 143);
    }
    stopping = true;
    log.info("shutting down", { signal: sig, timeoutMs: config.server.shutdownTimeoutMs });
    watcher?.close();
    // The close leaves late steps behind at the bound; this is the backstop should one block it.
    const backstop = setTimeout(() => {
      log.error("shutdown did not finish in time; exiting", { timeoutMs: config.server.shutdownTimeoutMs });
      process.exit(1);
    }, config.server.shutdownTimeoutMs + 3000);
    backstop.unref();
    gateway.close(sig, { timeoutMs: config.server.shutdownTimeoutMs }).then(
      () => {
        process.exit(0);
      },
      (err: unknown) => {
        log.error("shutdown failed", { err });
        process.exit(1);
      },
    );
  });
}
