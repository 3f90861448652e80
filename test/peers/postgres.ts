/**
 * A throwaway PostgreSQL server from Debian's package: `initdb` into a temp directory and
 * `postgres` listening on a unix socket in it only (no TCP port at all). PostgreSQL refuses
 * to run as root, so as root the server runs as the package's `postgres` user.
 *
 *   await using pg = await startPostgres();
 *   new pg.Pool({ connectionString: pg.url });
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface PostgresServer {
  /** `postgresql://postgres@/postgres?host=<socket dir>&port=<n>` */
  readonly url: string;
  readonly socketDir: string;
  readonly port: number;
  /** Stop the server, keeping its data (the socket goes away: clients see it unreachable). */
  stop(): Promise<void>;
  /** Start it again after `stop`, on the same socket and data. */
  start(): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

function binDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(path.join(root, v, "bin/initdb"))) : [];
  if (!versions.length) throw new Error("PostgreSQL is not installed (Debian package postgresql)");
  versions.sort((a, b) => Number(b) - Number(a));
  return path.join(root, versions[0]!, "bin");
}

export async function startPostgres(opts: { timeoutMs?: number } = {}): Promise<PostgresServer> {
  const bin = binDir();
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-pg-"));
  const data = path.join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  let uid = 0;
  let gid = 0;
  if (asRoot) {
    uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  const ids = asRoot ? { uid, gid } : {};
  execFileSync(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"], { ...ids, stdio: "pipe", cwd: dir, timeout: 60_000 });
  // The socket's name carries the port; no TCP listener, so any number is free.
  const port = 20000 + Math.floor(Math.random() * 40000);
  let child: ChildProcess | undefined;
  /** Start the server on the data directory (again, after `stop`). */
  const run = async (): Promise<void> => {
    const c: ChildProcess = spawn(
      path.join(bin, "postgres"),
      ["-D", data, "-k", dir, "-p", String(port), "-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50"],
      { ...ids, cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    child = c;
    let log = "";
    c.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`postgres did not start in time:\n${log}`)), opts.timeoutMs ?? 30_000);
      const onData = (d: Buffer) => {
        log += d.toString();
        if (log.includes("database system is ready to accept connections")) {
          clearTimeout(timer);
          c.stderr!.off("data", onData);
          resolve();
        }
      };
      c.stderr!.on("data", onData);
      c.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`postgres exited with ${code}:\n${log}`));
      });
    });
    c.stderr!.resume();
  };
  /** Stop the server (fast shutdown), keeping its data. */
  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGINT"); // fast shutdown
    const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  };
  await run();
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    })());
  return {
    url: `postgresql://postgres@/postgres?host=${encodeURIComponent(dir)}&port=${port}`,
    socketDir: dir,
    port,
    stop,
    start: run,
    close,
    [Symbol.asyncDispose]: close,
  };
}
