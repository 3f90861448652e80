/**
 * Launcher for sipp (Debian package sip-tester) as a real SIP peer in tests and the bench.
 * Every run gets its own temp directory (logs, stats, response-time trace) and ports the
 * OS reports free, so parallel runs do not collide. `runSipp` waits for the exit;
 * `startSipp` returns at once (UAS roles, long runs).
 */
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface SippOptions {
  /** Scenario XML path, or a built-in scenario name with `builtin: true`. */
  scenario: string;
  builtin?: boolean;
  /** `host:port` of the SIP server (omit for UAS mode). */
  target?: string;
  transport?: "udp" | "tcp" | "udp-per-call";
  /** Calls to place before exiting (-m). Default 1. */
  calls?: number;
  /** Calls per second (-r) and rate period (-rp, ms). */
  rate?: number;
  ratePeriodMs?: number;
  /** Simultaneous calls limit (-l). */
  limit?: number;
  /** Values for [key] keywords (-key). */
  keys?: Record<string, string | number>;
  auth?: { user: string; password: string };
  /** Global timeout; the run fails if reached. Default 20000 ms. */
  timeoutMs?: number;
  /** Write every SIP message to messages.log (off for load runs). Default true. */
  traceMessages?: boolean;
  /** Record per-call response times (-trace_rtt) in rtt.csv. */
  traceRtt?: boolean;
  extraArgs?: string[];
  /** Files to place in the run directory (audio for rtp_stream), name → content. */
  files?: Record<string, Buffer>;
  /** Keep the temp directory (debugging). */
  keepDir?: boolean;
}

export interface SippResult {
  /** 0: all calls succeeded; 1: some failed; 97/99: exits without failures; other: fatal. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Last line of the statistics CSV, by column name. */
  stats: Record<string, string>;
  /** Unexpected-message log. */
  errors: string;
  messages: string;
  /** Response times (ms) from -trace_rtt, one per call measured. */
  rtt: number[];
  dir: string;
}

export interface SippProcess {
  readonly child: ChildProcess;
  readonly localPort: number;
  readonly mediaPort: number;
  wait(): Promise<SippResult>;
  kill(): void;
}

/** A port the OS says is free now (tiny race, but no fixed ports). */
export async function freePort(kind: "udp" | "tcp" = "udp"): Promise<number> {
  if (kind === "tcp") {
    return new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
  }
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** An even port P with P and P+2 free (sipp binds both for its media echo sockets). */
async function freeMediaPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort("udp");
    if (p % 2 !== 0 || p + 2 > 65535) continue;
    const probe = dgram.createSocket("udp4");
    const ok = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.bind(p + 2, "127.0.0.1", () => resolve(true));
    });
    await new Promise<void>((r) => probe.close(() => r()));
    if (ok) return p;
  }
  throw new Error("no free media port pair for sipp");
}

/** sipp's exit code when a bind fails (a port taken between our probe and its bind). */
const EXIT_BIND_ERROR = 254;

export async function startSipp(opts: SippOptions): Promise<SippProcess> {
  const dir = mkdtempSync(join(tmpdir(), "gh-sipp-"));
  for (const [name, content] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), content);
  const transport = opts.transport ?? "udp";
  const localPort = await freePort(transport === "tcp" ? "tcp" : "udp");
  const controlPort = await freePort("udp");
  const mediaPort = await freeMediaPort();
  const timeoutS = Math.ceil((opts.timeoutMs ?? 20_000) / 1000);
  const args: string[] = [];
  if (opts.target) args.push(opts.target);
  args.push(opts.builtin ? "-sn" : "-sf", opts.builtin ? opts.scenario : resolve(opts.scenario));
  args.push("-t", transport === "tcp" ? "t1" : transport === "udp-per-call" ? "un" : "u1");
  args.push("-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", String(localPort), "-cp", String(controlPort), "-mp", String(mediaPort));
  args.push("-nostdin", "-timeout", `${timeoutS}s`, "-timeout_error");
  args.push("-m", String(opts.calls ?? 1));
  if (opts.rate !== undefined) args.push("-r", String(opts.rate));
  if (opts.ratePeriodMs !== undefined) args.push("-rp", String(opts.ratePeriodMs));
  if (opts.limit !== undefined) args.push("-l", String(opts.limit));
  for (const [k, v] of Object.entries(opts.keys ?? {})) args.push("-key", k, String(v));
  if (opts.auth) args.push("-au", opts.auth.user, "-ap", opts.auth.password);
  args.push("-trace_err", "-error_file", join(dir, "errors.log"));
  args.push("-trace_stat", "-stf", join(dir, "stats.csv"), "-fd", "1");
  if (opts.traceMessages !== false) args.push("-trace_msg", "-message_file", join(dir, "messages.log"));
  if (opts.traceRtt) args.push("-trace_rtt", "-rtt_freq", "1");
  args.push(...(opts.extraArgs ?? []));

  const child = spawn("sipp", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("latin1").on("data", (d: string) => {
    stdout = (stdout + d).slice(-200_000);
  });
  child.stderr!.setEncoding("latin1").on("data", (d: string) => {
    stderr = (stderr + d).slice(-200_000);
  });
  const guard = setTimeout(() => child.kill("SIGKILL"), (opts.timeoutMs ?? 20_000) + 10_000);
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(-1));
    child.once("exit", (code) => {
      clearTimeout(guard);
      resolve(code);
    });
  });

  const wait = async (): Promise<SippResult> => {
    const code = await exited;
    const read = (f: string): string => {
      try {
        return readFileSync(join(dir, f), "latin1");
      } catch {
        return "";
      }
    };
    const result: SippResult = {
      code,
      stdout,
      stderr,
      stats: parseStats(read("stats.csv")),
      errors: read("errors.log"),
      messages: read("messages.log"),
      rtt: [],
      dir,
    };
    const rttFile = readdirSync(dir).find((f) => f.endsWith("_rtt.csv"));
    if (rttFile) result.rtt = parseRtt(read(rttFile));
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
    return result;
  };
  return {
    child,
    localPort,
    mediaPort,
    wait,
    kill: () => {
      if (child.exitCode === null) child.kill("SIGTERM");
    },
  };
}

/** Run to completion; a bind race (exit 254) is retried twice with fresh ports. */
export async function runSipp(opts: SippOptions): Promise<SippResult> {
  for (let attempt = 0; ; attempt++) {
    const r = await (await startSipp(opts)).wait();
    if (r.code !== EXIT_BIND_ERROR || attempt >= 2) return r;
  }
}

function parseStats(csv: string): Record<string, string> {
  const lines = csv.trim().split("\n");
  if (lines.length < 2) return {};
  const head = lines[0]!.split(";");
  const last = lines.at(-1)!.split(";");
  const out: Record<string, string> = {};
  head.forEach((h, i) => {
    if (h) out[h] = last[i] ?? "";
  });
  return out;
}

/** rtt.csv lines: `date_ms;date_sec;response_time_ms;rtd_no`. */
function parseRtt(csv: string): number[] {
  const out: number[] = [];
  for (const line of csv.trim().split("\n").slice(1)) {
    const parts = line.split(";");
    const v = Number(parts[2]);
    if (Number.isFinite(v)) out.push(v);
  }
  return out;
}

/** A short description of a failed run for assertion messages. */
export function describeRun(r: SippResult): string {
  return `sipp exit ${r.code}\n--- stderr\n${r.stderr.slice(-2000)}\n--- errors\n${r.errors.slice(-3000)}\n--- messages (tail)\n${r.messages.slice(-4000)}`;
}
