/**
 * Where log lines go without holding the event loop.
 *
 * `process.stderr.write` is synchronous on Linux for files and TTYs, and a pipe whose
 * reader is slow (a busy journald, a paused `| less`) either blocks it or queues without
 * bound. A packet loop shares that event loop, so lines are appended to a bounded buffer
 * here and written in batches by `fs.write`, which runs on libuv's thread pool. Past
 * `maxBufferedBytes` new lines are dropped and counted, and the next write says how many
 * were lost. `flushSync()` (run at process exit) writes what is left, so nothing logged
 * before a clean exit is lost.
 */
import fs from "node:fs";

export interface LogSinkOptions {
  /** File descriptor written to. Default 2 (stderr). */
  fd?: number;
  /** Lines waiting beyond this many bytes are dropped (and counted). Default 4 MiB. */
  maxBufferedBytes?: number;
  /** Delay before retrying a write the descriptor refused with EAGAIN, milliseconds. Default 10. */
  retryMs?: number;
}

export interface LogSink {
  /** Queue one line (a newline is appended). Never blocks, never throws. */
  write(line: string): void;
  /** Resolves when everything queued so far has been written (or dropped after an error). */
  flush(): Promise<void>;
  /** Write everything left now, blocking; for process exit. */
  flushSync(): void;
  /** Lines dropped because the buffer was full or the descriptor failed. */
  readonly dropped: number;
  /** Bytes waiting to be written. */
  readonly buffered: number;
}

export function createLogSink(opts: LogSinkOptions = {}): LogSink {
  const fd = opts.fd ?? 2;
  const max = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
  const retryMs = opts.retryMs ?? 10;
  let pending: string[] = [];
  let pendingBytes = 0;
  /** Bytes handed to fs.write and not yet confirmed. */
  let inFlight: Buffer | undefined;
  let scheduled = false;
  let dropped = 0;
  let droppedReported = 0;
  let waiters: Array<() => void> = [];

  const take = (): Buffer | undefined => {
    if (dropped > droppedReported) {
      const n = dropped - droppedReported;
      droppedReported = dropped;
      pending.push(JSON.stringify({ msg: "log lines dropped: the log output could not keep up", level: "warn", time: Date.now(), dropped: n }) + "\n");
    }
    if (pending.length === 0) return undefined;
    const buf = Buffer.from(pending.join(""), "utf8");
    pending = [];
    pendingBytes = 0;
    return buf;
  };

  const settle = () => {
    if (inFlight || pending.length || dropped > droppedReported) return;
    const w = waiters;
    waiters = [];
    for (const fn of w) fn();
  };

  const writeSome = (buf: Buffer) => {
    inFlight = buf;
    fs.write(fd, buf, 0, buf.length, null, (err, written) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") {
          setTimeout(() => writeSome(buf), retryMs).unref();
          return;
        }
        // The descriptor is gone (closed pipe, full disk): count what is lost, keep running.
        dropped += countLines(buf);
        droppedReported = dropped;
        inFlight = undefined;
        return next();
      }
      if (written < buf.length) return writeSome(buf.subarray(written));
      inFlight = undefined;
      next();
    });
  };

  const next = () => {
    const buf = take();
    if (buf) writeSome(buf);
    else settle();
  };

  const schedule = () => {
    if (scheduled || inFlight) return;
    scheduled = true;
    // One batch per turn of the loop: many lines logged together become one write.
    setImmediate(() => {
      scheduled = false;
      if (!inFlight) next();
    }).unref();
  };

  return {
    write(line) {
      const bytes = line.length + 1;
      if (pendingBytes + (inFlight?.length ?? 0) + bytes > max) {
        dropped++;
        return;
      }
      pending.push(line + "\n");
      pendingBytes += bytes;
      schedule();
    },
    flush() {
      if (!inFlight && !pending.length && dropped === droppedReported) return Promise.resolve();
      schedule();
      return new Promise((resolve) => waiters.push(resolve));
    },
    flushSync() {
      // What an asynchronous write has in hand may be written twice at worst; never lost.
      const parts = inFlight ? [inFlight] : [];
      const rest = take();
      if (rest) parts.push(rest);
      for (const part of parts) {
        let buf = part;
        for (let tries = 0; buf.length > 0 && tries < 1000; tries++) {
          try {
            buf = buf.subarray(fs.writeSync(fd, buf));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EAGAIN") break;
          }
        }
      }
      inFlight = undefined;
    },
    get dropped() {
      return dropped;
    },
    get buffered() {
      return pendingBytes + (inFlight?.length ?? 0);
    },
  };
}

function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

let stderrSink: LogSink | undefined;

/**
 * The process's one sink for stderr, flushed synchronously when the process exits.
 * Options apply when it is first made (main passes `log.bufferBytes`).
 */
export function stderrLogSink(opts: Omit<LogSinkOptions, "fd"> = {}): LogSink {
  if (!stderrSink) {
    const sink = createLogSink({ ...opts, fd: 2 });
    stderrSink = sink;
    process.on("exit", () => sink.flushSync());
  }
  return stderrSink;
}
