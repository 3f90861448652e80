/**
 * `npm run ports -- --config FILE [--format table|csv|json]`: print every port the configured
 * deployment needs, as a firewall table (gateway/port-map.ts). Nothing is started or looked up.
 * Secrets the file takes from the environment are not needed: an unset `${NAME}` is read as a
 * placeholder (no port comes from a secret), and the variables that were unset are listed.
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config/load.ts";
import { formatPortTable, portMap } from "./port-map.ts";

const { values } = parseArgs({
  options: { config: { type: "string", short: "c" }, format: { type: "string", short: "f", default: "table" } },
  allowPositionals: false,
});
const format = values.format;
if (format !== "table" && format !== "csv" && format !== "json") {
  process.stderr.write("gatehouse ports: --format must be table, csv or json\n");
  process.exit(2);
}

const unset = new Set<string>();
const env = new Proxy(process.env, {
  get(target, name) {
    if (typeof name !== "string") return undefined;
    const v = target[name];
    if (v !== undefined || !/^[A-Z_][A-Z0-9_]*$/.test(name) || name.startsWith("GATEHOUSE_")) return v;
    unset.add(name);
    // Long enough for every secret's minimum length; never printed.
    return `unset-${name}`.padEnd(32, "-");
  },
});

let config;
try {
  config = loadConfig({ file: values.config, env });
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`gatehouse ports: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const rows = portMap(config);
if (format === "json") process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
else process.stdout.write(formatPortTable(rows, format));
if (unset.size > 0 && format === "table") process.stdout.write(`\n(not set here, not needed for the table: ${[...unset].join(", ")})\n`);
