/**
 * Configuration in one pass: defaults → file (YAML or JSON) → environment → validate.
 * Without a file, the embedded defaults (embedded.ts: the whole demo) stand in for it.
 *
 * Any string value may be written `${NAME}` (or contain it) to take a secret from
 * the environment; a missing variable is an error naming the key. Unknown keys and
 * bad values are rejected with the key's path and the reason, before anything starts.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { embeddedDefaults } from "./embedded.ts";
import { BadInputError } from "./errors.ts";
import { configSchema, type Config, type ConfigInput } from "./schema.ts";
import { metricsProblems } from "./sections/metrics.ts";

export class ConfigError extends BadInputError {
  /** One line per problem: `path: reason`. */
  readonly problems: readonly string[];
  constructor(problems: string[], source: string) {
    super(`invalid configuration (${source}):\n  ${problems.join("\n  ")}`);
    this.problems = Object.freeze(problems);
  }
}

export interface LoadOptions {
  /** Path of a YAML or JSON file. Default: $GATEHOUSE_CONFIG, else none (the embedded defaults, embedded.ts). */
  file?: string | undefined;
  /** Already-parsed input (tests); merged over the file. */
  input?: ConfigInput;
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(opts: LoadOptions = {}): Readonly<Config> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.GATEHOUSE_CONFIG;
  let raw: unknown;
  let source = "embedded defaults";
  if (!file) raw = embeddedDefaults();
  else {
    source = file;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (cause) {
      throw new ConfigError([`cannot read ${file}: ${(cause as Error).message}`], source);
    }
    try {
      raw = parseYaml(text) ?? {}; // YAML is a superset of JSON
    } catch (cause) {
      throw new ConfigError([`not valid YAML/JSON: ${(cause as Error).message}`], source);
    }
  }
  if (opts.input) raw = { ...(raw as object), ...(opts.input as object) };
  return parseConfig(raw, env, source);
}

/** Validate an already-parsed object. Exposed for tests and for reloads. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env, source = "input"): Readonly<Config> {
  const problems: string[] = [];
  const substituted = substituteEnv(raw, env, [], problems);
  if (problems.length) throw new ConfigError(problems, source);
  const result = configSchema.safeParse(substituted);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues), source);
  const cfg = result.data;
  const ids = new Set<string>();
  cfg.cameras.forEach((c, i) => {
    if (ids.has(c.id)) problems.push(`cameras[${i}].id: duplicate camera id "${c.id}"`);
    ids.add(c.id);
  });
  if (cfg.rtsp.reconnectMinMs > cfg.rtsp.reconnectMaxMs)
    problems.push("rtsp.reconnectMinMs: must not exceed rtsp.reconnectMaxMs");
  const [lo, hi] = cfg.rtsp.clientPortRange;
  if (hi - lo < 1) problems.push("rtsp.clientPortRange: needs at least two ports (RTP and RTCP)");
  // The scrape token may come from the environment alone (never written in a file).
  if (cfg.metrics.token === undefined && env.GATEHOUSE_METRICS_TOKEN !== undefined) {
    if (env.GATEHOUSE_METRICS_TOKEN.length < 16) problems.push("GATEHOUSE_METRICS_TOKEN: must be at least 16 characters");
    else cfg.metrics.token = env.GATEHOUSE_METRICS_TOKEN;
  }
  // The data directory may come from the environment when the configuration names none
  // (a service unit's state directory; each test file's own directory).
  const named = typeof substituted === "object" && substituted !== null && "dataDir" in substituted;
  if (!named && env.GATEHOUSE_DATA_DIR !== undefined) {
    if (env.GATEHOUSE_DATA_DIR === "") problems.push("GATEHOUSE_DATA_DIR: must not be empty");
    else cfg.dataDir = env.GATEHOUSE_DATA_DIR;
  }
  problems.push(...metricsProblems(cfg.metrics));
  if (problems.length) throw new ConfigError(problems, source);
  return deepFreeze(cfg);
}

function substituteEnv(v: unknown, env: NodeJS.ProcessEnv, path: (string | number)[], problems: string[]): unknown {
  if (typeof v === "string") {
    return v.replace(/\$\{([A-Z_][A-Z0-9_]*)\}/gi, (_m, name: string) => {
      const val = env[name];
      if (val === undefined) {
        problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
        return "";
      }
      return val;
    });
  }
  if (Array.isArray(v)) return v.map((x, i) => substituteEnv(x, env, [...path, i], problems));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = substituteEnv(x, env, [...path, k], problems);
    return out;
  }
  return v;
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push(`${formatPath([...issue.path, key])}: unknown key`);
    } else {
      out.push(`${formatPath(issue.path)}: ${issue.message}`);
    }
  }
  return out;
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(root)";
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
