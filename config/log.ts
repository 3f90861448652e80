/**
 * Structured, scoped logging shared by every room (gateway, sfu, turn).
 *
 * A logger is passed in, never imported as a global: each component receives one
 * scoped with its own fields (component, camera, session), so a line always says
 * where it came from. Lines are JSON, message first; secrets never go in fields.
 */

import { stderrLogSink } from "./log-sink.ts";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line it writes. */
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; defaults to stderr through a buffered, non-blocking sink (config/log-sink.ts). Tests pass an array sink. */
  write?: (line: string) => void;
  /** "json" (default) for machines, "pretty" for a terminal. */
  format?: "json" | "pretty";
  clock?: () => number;
}

export function createLogger(opts: LoggerOptions = {}, base: LogFields = {}): Logger {
  const level = RANK[opts.level ?? "info"];
  const write = opts.write ?? ((line: string) => stderrLogSink().write(line));
  const clock = opts.clock ?? Date.now;
  const pretty = opts.format === "pretty";

  const emit = (lvl: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] < level) return;
    const all = fields ? { ...base, ...fields } : base;
    try {
      if (pretty) {
        const kv = Object.entries(all)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : safeJson(v)}`)
          .join(" ");
        write(`${new Date(clock()).toISOString()} ${lvl.toUpperCase().padEnd(5)} ${msg}${kv ? " " + kv : ""}`);
      } else {
        write(safeJson({ msg, level: lvl, time: clock(), ...all }));
      }
    } catch {
      // A logging failure must never reach a packet loop.
    }
  };

  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

/** A logger that drops everything: the default for library code under test. */
export const silentLogger: Logger = createLogger({ level: "silent" });

function safeJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (val instanceof Error) return { name: val.name, message: val.message, code: (val as { code?: unknown }).code };
    if (typeof val === "bigint") return val.toString();
    return val;
  });
}
