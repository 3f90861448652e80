import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogSink } from "../../config/log-sink.ts";
import { createLogger } from "../../config/log.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "gh-log-"));
  dirs.push(d);
  return d;
};

describe("log sink", () => {
  it("writes nothing while the caller runs, then every line in order in one batch", async () => {
    const file = path.join(tempDir(), "log");
    const fd = fs.openSync(file, "w");
    const sink = createLogSink({ fd });
    const log = createLogger({ write: sink.write, format: "json" });
    for (let i = 0; i < 1000; i++) log.info("line", { i });
    expect(fs.readFileSync(file, "utf8")).toBe(""); // nothing written synchronously
    await sink.flush();
    const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as { i: number });
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    fs.closeSync(fd);
  });

  it("keeps the event loop turning when the reader stalls, drops past its bound and says how many", async () => {
    const fifo = path.join(tempDir(), "fifo");
    execFileSync("mkfifo", [fifo]);
    // Opened read-write so the open does not wait for a reader; nobody reads until later.
    const fd = fs.openSync(fifo, "r+");
    const sink = createLogSink({ fd, maxBufferedBytes: 256 * 1024 });
    const line = "x".repeat(200);
    // 20 MB of log lines over 50 turns of the event loop; a pipe holds 64 KiB.
    let maxCallMs = 0;
    for (let turn = 0; turn < 50; turn++) {
      const t0 = performance.now();
      for (let i = 0; i < 2000; i++) sink.write(line);
      maxCallMs = Math.max(maxCallMs, performance.now() - t0);
      await new Promise((r) => setImmediate(r));
    }
    expect(sink.dropped).toBeGreaterThan(0);
    expect(sink.buffered).toBeLessThanOrEqual(256 * 1024 + 200); // the bound, plus at most the drop notice
    expect(maxCallMs).toBeLessThan(500); // 2000 appends, never a blocking write (a synchronous write would hang here for good)

    // A reader arrives: everything kept comes out, then the count of what was lost.
    const reader = fs.createReadStream(fifo);
    let text = "";
    reader.on("data", (c) => (text += c.toString()));
    const dropped = sink.dropped;
    await sink.flush();
    // Everything is in the pipe: closing the only writer gives the reader its end.
    const ended = new Promise<void>((r) => reader.on("end", () => r()));
    fs.closeSync(fd);
    await ended;
    const notice = text.trimEnd().split("\n").map((l) => (l.startsWith("{") ? (JSON.parse(l) as { dropped: number }) : undefined)).filter(Boolean);
    expect(notice.reduce((n, x) => n + x!.dropped, 0)).toBe(dropped);
    const kept = text.split("\n").filter((l) => l === line).length;
    expect(kept + dropped).toBe(100_000);
  });

  it("writes what is left synchronously at exit", () => {
    const file = path.join(tempDir(), "log");
    const fd = fs.openSync(file, "w");
    const sink = createLogSink({ fd });
    sink.write("a");
    sink.write("b");
    sink.flushSync();
    expect(fs.readFileSync(file, "utf8")).toBe("a\nb\n");
    fs.closeSync(fd);
  });
});
