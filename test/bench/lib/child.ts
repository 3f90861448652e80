/**
 * Child processes for the benchmark, with a tiny request/response protocol over
 * Node's IPC channel. The parent forks a `.ts` entry script (type stripping, same
 * Node binary); the child calls `serve()` with its handlers and a ready payload.
 *
 *   // parent
 *   const gw = await forkChild<{ url: string }>("test/bench/procs/gateway.ts", ["--config", json]);
 *   gw.ready.url; gw.pid;
 *   const stats = await gw.call("stats");
 *   await gw.close();
 *
 *   // child
 *   serve({ stats: () => ..., close: async () => ... }, { url });
 *
 * A child exits when its parent disconnects (the IPC channel closes), so an aborted
 * run leaves nothing behind.
 */
import { fork } from "node:child_process";

interface Request {
  id: number;
  cmd: string;
  arg?: unknown;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

type ReadyMessage = { ready: unknown } | { failed: string };

export interface Child<R> {
  readonly pid: number;
  /** The child's ready payload. */
  readonly ready: R;
  /** Sends a command and resolves with the handler's result (rejects with its error). */
  call<T = unknown>(cmd: string, arg?: unknown, timeoutMs?: number): Promise<T>;
  /** Asks the child to close (`close` command), then kills it if it lingers. Idempotent. */
  close(): Promise<void>;
  /** Last output lines of the child (stderr), for error reports. */
  tail(): string;
}

/** Forks `script` and waits for its ready payload (or its failure). */
export async function forkChild<R>(
  script: string,
  args: string[] = [],
  opts: { readyTimeoutMs?: number; env?: NodeJS.ProcessEnv; execArgv?: string[] } = {},
): Promise<Child<R>> {
  const child = fork(script, args, {
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    env: opts.env ?? process.env,
    execArgv: opts.execArgv ?? [],
  });
  let output = "";
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-6000));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let closing: Promise<void> | undefined;

  const ready = await new Promise<R>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${script}: not ready after ${opts.readyTimeoutMs ?? 30000} ms\n${output}`)), opts.readyTimeoutMs ?? 30000);
    const onMsg = (m: ReadyMessage) => {
      if (!m || typeof m !== "object" || !("ready" in m || "failed" in m)) return;
      clearTimeout(t);
      child.off("message", onMsg);
      if ("failed" in m) reject(new Error(`${script}: ${m.failed}`));
      else resolve(m.ready as R);
    };
    child.on("message", onMsg);
    child.once("exit", (code, sig) => {
      clearTimeout(t);
      reject(new Error(`${script} exited (${code ?? sig}) before it was ready:\n${output}`));
    });
  }).catch(async (err: unknown) => {
    child.kill("SIGKILL");
    await exited;
    throw err;
  });

  child.on("message", (m: Reply) => {
    if (!m || typeof m !== "object" || !("id" in m)) return;
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error));
  });
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error(`${script} exited:\n${output.slice(-1500)}`));
    pending.clear();
  });

  const call = <T>(cmd: string, arg?: unknown, timeoutMs = 120_000): Promise<T> => {
    if (!child.connected) return Promise.reject(new Error(`${script} is gone:\n${output.slice(-1500)}`));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${script}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      child.send({ id, cmd, arg } satisfies Request);
    });
  };

  return {
    pid: child.pid!,
    ready,
    call,
    tail: () => output.split("\n").slice(-20).join("\n"),
    close: () =>
      (closing ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        await call("close", undefined, 15_000).catch(() => {});
        child.disconnect?.();
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      })()),
  };
}

export type Handlers = Record<string, (arg: unknown) => unknown>;

/**
 * Child side: answers requests with `handlers` and announces `ready`. A `close`
 * handler runs before the process exits; the process also exits when the parent goes.
 */
export function serve(handlers: Handlers, ready: unknown): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error("serve(): not started with an IPC channel (use forkChild)");
  process.on("message", (m: Request) => {
    if (!m || typeof m !== "object" || typeof m.cmd !== "string") return;
    void (async () => {
      let reply: Reply;
      try {
        const h = handlers[m.cmd];
        if (!h) throw new Error(`unknown command ${m.cmd}`);
        reply = { id: m.id, ok: true, result: (await h(m.arg)) ?? null };
      } catch (err) {
        reply = { id: m.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
      }
      if (process.connected) send(reply);
      if (m.cmd === "close") setImmediate(() => process.exit(0));
    })();
  });
  process.on("disconnect", () => {
    void (async () => {
      try {
        await handlers["close"]?.(undefined);
      } finally {
        process.exit(0);
      }
    })();
  });
  send({ ready });
}

/** Child side: reports a start-up failure to the parent and exits. */
export function failStart(err: unknown): never {
  const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
  if (process.send && process.connected) process.send({ failed: msg });
  process.stderr.write(`${msg}\n`);
  setTimeout(() => process.exit(1), 50);
  throw err;
}
