/**
 * Keeps ONE ffmpeg child running while it is wanted: start on demand, stop when asked
 * (SIGTERM, then SIGKILL), restart with capped backoff and jitter after a failure, its
 * stderr's last lines kept for logs and status, failures counted. A missing executable is a
 * state of its own ("missing"), retried only at the longest delay.
 *
 * Timers, the spawn function and randomness are injected, so restarts are tested without sleeping.
 */
import { spawn as nodeSpawn, type ChildProcessWithoutNullStreams, type SpawnOptionsWithoutStdio } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import type { Logger } from "../../config/log.ts";
import { backoffDelay } from "../ingest/backoff.ts";
import { realTimers, type TimerHandle, type Timers } from "../rtsp/timers.ts";

export type ChildState = "stopped" | "running" | "backoff" | "missing";

export interface ChildStatus {
  state: ChildState;
  /** Children started (the first start and every restart). */
  starts: number;
  /** Children that ended without being asked to (exit code, signal or spawn error). */
  failures: number;
  /** Why the last child ended, in words (exit code / signal / spawn error). */
  lastFailure?: string;
  /** Last lines of the current or last child's stderr. */
  stderr: string[];
  /** Process id of the running child. */
  pid?: number;
  /** Delay before the next start, ms, in backoff. */
  retryInMs?: number;
}

export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptionsWithoutStdio) => ChildProcessWithoutNullStreams;

export interface ChildSupervisorOptions {
  /** Executable (resolved path or name on PATH). */
  command: string;
  /** Arguments, asked again at each start (they may depend on what is known by then). */
  args: () => string[];
  log: Logger;
  timers?: Timers;
  random?: () => number;
  spawn?: SpawnFn;
  restartMinMs: number;
  restartMaxMs: number;
  /** A child that ran this long resets the backoff, ms. */
  stableMs: number;
  /** stderr lines kept. */
  stderrLines: number;
  /** A child was started: wire its stdin/stdout. Exceptions are logged, not thrown. */
  onStart: (child: ChildProcessWithoutNullStreams) => void;
  /** The current child ended (failure or stop): drop state tied to it. */
  onEnd?: () => void;
  /** The state changed (started, failed, stopped). */
  onChange?: (() => void) | undefined;
}

/** Grace between SIGTERM and SIGKILL when stopping, ms. */
const KILL_GRACE_MS = 2000;

export class ChildSupervisor {
  private readonly o: ChildSupervisorOptions;
  private readonly timers: Timers;
  private child: ChildProcessWithoutNullStreams | undefined;
  private wanted = false;
  private closed = false;
  private state: ChildState = "stopped";
  private starts = 0;
  private failures = 0;
  private attempt = 0;
  private lastFailure: string | undefined;
  private stderr: string[] = [];
  private stderrTail = "";
  private retryTimer: TimerHandle | undefined;
  private stableTimer: TimerHandle | undefined;
  private retryInMs: number | undefined;
  private exits: Promise<void>[] = [];
  private closing: Promise<void> | undefined;

  constructor(o: ChildSupervisorOptions) {
    this.o = o;
    this.timers = o.timers ?? realTimers;
  }

  status(): ChildStatus {
    const s: ChildStatus = { state: this.state, starts: this.starts, failures: this.failures, stderr: [...this.stderr] };
    if (this.lastFailure !== undefined) s.lastFailure = this.lastFailure;
    if (this.child?.pid !== undefined) s.pid = this.child.pid;
    if (this.retryInMs !== undefined) s.retryInMs = this.retryInMs;
    return s;
  }

  /** The running child, if any. */
  get current(): ChildProcessWithoutNullStreams | undefined {
    return this.child;
  }

  /** Wanted: start now (or keep running). Not wanted: stop the child. */
  setWanted(wanted: boolean): void {
    if (this.closed || wanted === this.wanted) return;
    this.wanted = wanted;
    if (wanted) {
      if (this.state === "stopped") this.launch();
    } else {
      this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.retryInMs = undefined;
      this.attempt = 0;
      this.kill();
      this.state = "stopped";
      this.changed();
    }
  }

  /** Stops the child for good; resolves when it exited. Every caller gets the same promise. */
  close(): Promise<void> {
    if (!this.closing) {
      this.setWanted(false);
      this.closed = true;
      this.closing = Promise.all(this.exits).then(() => {});
    }
    return this.closing;
  }

  private launch(): void {
    this.retryTimer = undefined;
    this.retryInMs = undefined;
    if (!this.wanted || this.closed) return;
    let child: ChildProcessWithoutNullStreams;
    this.stderr = [];
    this.stderrTail = "";
    try {
      child = (this.o.spawn ?? nodeSpawn)(this.o.command, this.o.args(), { stdio: ["pipe", "pipe", "pipe"] } as SpawnOptionsWithoutStdio);
    } catch (err) {
      this.failed(`could not start ${this.o.command}: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code === "ENOENT");
      return;
    }
    this.child = child;
    this.starts++;
    this.state = "running";
    let ended = false;
    let resolveExit!: () => void;
    const exited = new Promise<void>((r) => (resolveExit = r));
    this.exits.push(exited);
    const end = (why: string, missing: boolean): void => {
      if (ended) return;
      ended = true;
      resolveExit();
      this.exits = this.exits.filter((e) => e !== exited);
      if (this.child !== child) return; // stopped on purpose: already handled
      this.child = undefined;
      this.timers.clearTimeout(this.stableTimer);
      this.stableTimer = undefined;
      this.safe(() => this.o.onEnd?.());
      this.failed(why, missing);
    };
    child.on("error", (err: NodeJS.ErrnoException) => end(`${this.o.command}: ${err.message}`, err.code === "ENOENT"));
    child.on("exit", (code, signal) => end(signal ? `ended by ${signal}` : `exited with code ${code}`, false));
    child.stdin.on("error", () => {}); // EPIPE when the child dies: its exit tells the story
    child.stdout.on("error", () => {});
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => this.addStderr(text));
    this.stableTimer = this.timers.setTimeout(() => {
      this.stableTimer = undefined;
      this.attempt = 0;
    }, this.o.stableMs);
    this.o.log.debug("ffmpeg started", { pid: child.pid });
    this.safe(() => this.o.onStart(child));
    this.changed();
  }

  private failed(why: string, missing: boolean): void {
    this.failures++;
    this.lastFailure = why;
    if (!this.wanted || this.closed) {
      this.state = "stopped";
      return;
    }
    const delay = missing
      ? this.o.restartMaxMs
      : backoffDelay(this.attempt++, { minMs: this.o.restartMinMs, maxMs: this.o.restartMaxMs, random: this.o.random });
    this.state = missing ? "missing" : "backoff";
    this.retryInMs = delay;
    this.o.log.warn("ffmpeg failed; will restart", { reason: why, retryInMs: delay, stderr: this.stderr.slice(-5).join(" | ") });
    this.retryTimer = this.timers.setTimeout(() => this.launch(), delay);
    this.changed();
  }

  private changed(): void {
    if (this.o.onChange) this.safe(this.o.onChange);
  }

  private kill(): void {
    const child = this.child;
    this.child = undefined;
    this.timers.clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
    if (!child) return;
    this.safe(() => this.o.onEnd?.());
    child.stdin.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }, KILL_GRACE_MS);
      t.unref();
      child.once("exit", () => clearTimeout(t));
    }
    this.o.log.debug("ffmpeg stopped", { pid: child.pid });
  }

  private addStderr(text: string): void {
    const lines = (this.stderrTail + text).split(/\r?\n|\r/);
    this.stderrTail = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.trim()) continue;
      this.stderr.push(line.slice(0, 500));
      this.o.log.debug("ffmpeg", { line: line.slice(0, 500) });
    }
    if (this.stderr.length > this.o.stderrLines) this.stderr.splice(0, this.stderr.length - this.o.stderrLines);
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.o.log.error("ffmpeg handler failed", { err });
    }
  }
}

/**
 * The absolute path of an executable: `command` itself when it contains a slash, else the first
 * match on PATH; undefined when there is none. Synchronous and cheap (a few stat calls).
 */
export function findExecutable(command: string, envPath = process.env.PATH ?? ""): string | undefined {
  const candidates = command.includes("/") ? [command] : envPath.split(path.delimiter).filter(Boolean).map((d) => path.join(d, command));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return path.resolve(c);
    } catch {
      // not here
    }
  }
  return undefined;
}
