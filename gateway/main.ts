/**
 * `npm start`: load the configuration (embedded defaults, or $GATEHOUSE_CONFIG /
 * `--config <file>`), start the gateway, print where to open it, stop cleanly on
 * SIGINT/SIGTERM. A bad configuration exits with status 2 and the problems listed.
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

// Lines go to stderr through a bounded buffer written off the event loop.
const sink = stderrLogSink({ maxBufferedBytes: config.log.bufferBytes });
const log = createLogger({ level: config.log.level, format: config.log.format, write: sink.write });
const gateway = await startGateway({ config, log });
const lines = [``, `Gatehouse is running: open ${gateway.url}/`];
if (gateway.auth.devUsers?.length) {
  lines.push(``, `DEVELOPMENT ONLY: built-in identity provider at ${gateway.auth.issuer} with demo accounts:`);
  for (const u of gateway.auth.devUsers) lines.push(`  ${u.username.padEnd(8)} password ${u.password}   (${u.description})`);
  lines.push(`Configure auth.mode: oidc with your organisation's issuer for real use.`);
}
process.stdout.write(lines.join("\n") + "\n\n");

// Rights and signing keys follow the file without a restart (SIGHUP also reloads).
const configFile = values.config ?? process.env.GATEHOUSE_CONFIG;
const watcher = configFile ? watchConfig(configFile, gateway, log.child({ component: "config" })) : undefined;

if (watcher) process.on("SIGHUP", () => watcher.reload());

let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) process.exit(1);
    stopping = true;
    watcher?.close();
    gateway.close(sig).then(() => process.exit(0));
  });
}
