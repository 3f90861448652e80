/**
 * A throwaway Redis server from Debian's package (`redis-server`), on 127.0.0.1 and a free port,
 * nothing persisted, its files in a temp directory. It can be stopped and started again on the
 * same port (a Redis outage), or killed.
 *
 *   await using redis = await startRedis();
 *   redis.url                 // "redis://127.0.0.1:<port>"
 *   await redis.stop();       // unreachable (connection refused)
 *   await redis.start();      // back on the same port, empty (a restarted Redis without persistence)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** Stop the server (SIGTERM, no save); the port stays reserved for `start`. */
  stop(): Promise<void>;
  /** Start it again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.once("error", reject);
  });
}

export async function startRedis(opts: { timeoutMs?: number } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-redis-"));
  const port = await freePort();
  let child: ChildProcess | undefined;

  const start = async () => {
    if (child && child.exitCode === null) return;
    const c = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes", "--loglevel", "notice"],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    child = c;
    let log = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start in time:\n${log}`)), opts.timeoutMs ?? 15_000);
      const onData = (b: Buffer) => {
        log += b.toString();
        if (log.includes("Ready to accept connections")) {
          clearTimeout(timer);
          c.stdout!.off("data", onData);
          c.stdout!.resume();
          resolve();
        }
      };
      c.stdout!.on("data", onData);
      c.stderr!.on("data", (b: Buffer) => (log += b.toString()));
      c.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${log}`));
      });
    });
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(t);
  };
  await start();
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    })());
  return { url: `redis://127.0.0.1:${port}`, port, stop, start, close, [Symbol.asyncDispose]: close };
}
