/**
 * The ffmpeg child supervisor on virtual time: start when wanted, restart with backoff after a
 * failure (counted, stderr kept), a missing executable as its own state, stop when not wanted,
 * and the ffmpeg lookup on PATH.
 */
import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { ChildSupervisor, findExecutable, type SpawnFn } from "../../gateway/transcode/supervisor.ts";
import { FakeTimers } from "../fixtures/rtsp/fake-timers.ts";

class FakeChild extends EventEmitter {
  stdin = new PassThrough();
  stdout = new PassThrough();
  stderr = new PassThrough();
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  pid = Math.floor(Math.random() * 1e6);
  killed: string[] = [];
  kill(sig: NodeJS.Signals): boolean {
    this.killed.push(sig);
    this.signalCode = sig;
    queueMicrotask(() => this.emit("exit", null, sig));
    return true;
  }
  crash(code: number): void {
    this.exitCode = code;
    this.emit("exit", code, null);
  }
}

function rig(opts: { missing?: boolean } = {}) {
  const timers = new FakeTimers();
  const children: FakeChild[] = [];
  const spawn: SpawnFn = () => {
    const c = new FakeChild();
    children.push(c);
    if (opts.missing) queueMicrotask(() => c.emit("error", Object.assign(new Error("spawn ffmpeg ENOENT"), { code: "ENOENT" })));
    return c as unknown as ChildProcessWithoutNullStreams;
  };
  let started = 0;
  let ended = 0;
  const sup = new ChildSupervisor({
    command: "ffmpeg",
    args: () => ["-i", "pipe:0"],
    log: silentLogger,
    timers,
    random: () => 1,
    spawn,
    restartMinMs: 500,
    restartMaxMs: 8000,
    stableMs: 10_000,
    stderrLines: 3,
    onStart: () => void started++,
    onEnd: () => void ended++,
  });
  return { sup, timers, children, counts: () => ({ started, ended }) };
}

describe("ChildSupervisor", () => {
  it("starts when wanted, restarts after a crash with a doubling delay, keeps the last stderr lines", async () => {
    const { sup, timers, children, counts } = rig();
    expect(sup.status().state).toBe("stopped");
    sup.setWanted(true);
    expect(children).toHaveLength(1);
    children[0]!.stderr.write("line 1\nline 2\nline 3\nInvalid data found\n");
    await new Promise((r) => setImmediate(r));
    children[0]!.crash(1);
    expect(sup.status()).toMatchObject({ state: "backoff", failures: 1, lastFailure: "exited with code 1", retryInMs: 500, stderr: ["line 2", "line 3", "Invalid data found"] });
    timers.advance(499);
    expect(children).toHaveLength(1);
    timers.advance(1);
    expect(children).toHaveLength(2);
    children[1]!.crash(1);
    expect(sup.status().retryInMs).toBe(1000);
    timers.advance(1000);
    // Running for stableMs resets the backoff.
    timers.advance(10_000);
    children[2]!.crash(1);
    expect(sup.status().retryInMs).toBe(500);
    expect(counts()).toEqual({ started: 3, ended: 3 });
  });

  it("stops the child when no longer wanted (SIGTERM) and does not restart it", async () => {
    const { sup, timers, children } = rig();
    sup.setWanted(true);
    sup.setWanted(false);
    expect(children[0]!.killed).toEqual(["SIGTERM"]);
    await new Promise((r) => setImmediate(r));
    timers.advance(60_000);
    expect(children).toHaveLength(1);
    expect(sup.status()).toMatchObject({ state: "stopped", failures: 0 });
    sup.setWanted(true);
    expect(children).toHaveLength(2);
    await sup.close();
    await sup.close();
    expect(children[1]!.killed).toEqual(["SIGTERM"]);
  });

  it("reports a missing executable as `missing` and retries only at the longest delay", async () => {
    const { sup, timers, children } = rig({ missing: true });
    sup.setWanted(true);
    await new Promise((r) => setImmediate(r));
    expect(sup.status()).toMatchObject({ state: "missing", failures: 1, retryInMs: 8000 });
    timers.advance(7999);
    expect(children).toHaveLength(1);
    timers.advance(1);
    expect(children).toHaveLength(2);
  });
});

describe("findExecutable", () => {
  it("finds a name on PATH, an absolute path, and nothing for a directory or a missing file", () => {
    expect(findExecutable("sh", "/nonexistent:/bin")).toBe("/bin/sh");
    expect(findExecutable("/bin/sh")).toBe("/bin/sh");
    expect(findExecutable("/bin")).toBeUndefined();
    expect(findExecutable("no-such-ffmpeg", "/bin:/usr/bin")).toBeUndefined();
  });
});
