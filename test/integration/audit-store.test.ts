/**
 * The audit stores against real databases: SQLite through node:sqlite in a temp file, and a
 * real PostgreSQL server from Debian's package started for this file (unix socket only).
 * The same contract for both: records chained in order, filters, tampering detected (a
 * changed field, a deleted row), retention with an anchor, writers in two processes never
 * fork the chain, and the log queue surviving an unavailable store.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { AuditLog } from "../../gateway/audit/log.ts";
import { PostgresAuditStore } from "../../gateway/audit/postgres.ts";
import type { AuditEntry } from "../../gateway/audit/record.ts";
import { SqliteAuditStore } from "../../gateway/audit/sqlite.ts";
import type { AuditStore } from "../../gateway/audit/store.ts";
import { startPostgres, type PostgresServer } from "../peers/postgres.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-audit-"));
let server: PostgresServer;
let tables = 0;

beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(async () => {
  await server?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const T0 = Date.UTC(2026, 11, 1);
const DAY = 86_400_000;

interface Backend {
  name: string;
  /** A fresh store, and a way to tamper with its rows as someone with database access would. */
  open(): Promise<{ store: AuditStore; sql(statement: string): Promise<void>; reopen(): Promise<AuditStore> }>;
  /** A script that appends `n` records from another process. */
  writer(n: number): Promise<{ store: AuditStore; childArgs: string[] }>;
}

const sqlite: Backend = {
  name: "sqlite",
  async open() {
    const file = path.join(dir, `a${++tables}.sqlite`);
    const store = new SqliteAuditStore({ file });
    return {
      store,
      sql: async (s) => {
        const db = new DatabaseSync(file);
        db.exec(s);
        db.close();
      },
      reopen: async () => new SqliteAuditStore({ file }),
    };
  },
  async writer() {
    const file = path.join(dir, `w${++tables}.sqlite`);
    return { store: new SqliteAuditStore({ file }), childArgs: ["sqlite", file] };
  },
};

const postgres: Backend = {
  name: "postgres",
  async open() {
    const table = `audit_t${++tables}`;
    const store = await PostgresAuditStore.open({ connectionString: server.url, table, poolSize: 2 });
    return {
      store,
      sql: async (s) => {
        const c = new pg.Client({ connectionString: server.url });
        c.on("error", () => {});
        await c.connect();
        try {
          await c.query(s.replaceAll("audit", table));
        } finally {
          await c.end();
        }
      },
      reopen: () => PostgresAuditStore.open({ connectionString: server.url, table, poolSize: 2 }),
    };
  },
  async writer() {
    const table = `audit_w${++tables}`;
    return { store: await PostgresAuditStore.open({ connectionString: server.url, table, poolSize: 2 }), childArgs: ["postgres", server.url, table] };
  },
};

const sample = (i: number): AuditEntry => ({
  action: i % 2 ? "live_view_end" : "live_view_start",
  outcome: "success",
  subject: i % 3 ? "alice" : "bob",
  name: i % 3 ? "Alice Example" : "Bob Example",
  session: `ref${i}`,
  source: "192.0.2.7",
  camera: i % 4 ? "cam12" : "door-cam",
  time: T0 + i * 3_600_000,
});

describe.each([sqlite, postgres])("audit store: $name", (backend) => {
  it("appends records in order, chained, and finds them by user, camera, action and time", async () => {
    const { store } = await backend.open();
    const recs = await store.append(Array.from({ length: 20 }, (_, i) => sample(i)), T0);
    expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await store.head()).toEqual({ seq: 20, hash: recs[19]!.hash });
    const bob = await store.query({ user: "bob", limit: 100 });
    expect(bob.map((r) => r.seq)).toEqual([19, 16, 13, 10, 7, 4, 1]); // i = 0, 3, 6, … newest first
    expect((await store.query({ user: "alice exa", limit: 100 })).length).toBe(13); // part of the name, any case
    expect((await store.query({ user: "%", limit: 100 })).length).toBe(0); // LIKE characters are literal
    const cam = await store.query({ camera: "door-cam", actions: ["live_view_start"], limit: 100 });
    expect(cam.map((r) => r.seq)).toEqual([17, 13, 9, 5, 1]);
    const window = await store.query({ from: T0 + 5 * 3_600_000, to: T0 + 8 * 3_600_000, limit: 100 });
    expect(window.map((r) => r.seq)).toEqual([8, 7, 6]);
    const page = await store.query({ beforeSeq: 8, limit: 3 });
    expect(page.map((r) => r.seq)).toEqual([7, 6, 5]);
    expect(await store.verify()).toMatchObject({ ok: true, checked: 20, lastSeq: 20 });
    await store.close();
  });

  it("refuses updates, and detects a changed field and a deleted record", async () => {
    const { store, sql, reopen } = await backend.open();
    await store.append(Array.from({ length: 10 }, (_, i) => sample(i)), T0);
    await expect(sql("UPDATE audit SET camera = 'cam13' WHERE seq = 4")).rejects.toThrow(/append-only/);
    await store.close();

    // Someone with database access drops the guard and rewrites who watched camera 12.
    const { drop, update } =
      backend.name === "sqlite"
        ? { drop: "DROP TRIGGER audit_no_update", update: "UPDATE audit SET subject = 'mallory' WHERE seq = 4" }
        : { drop: "DROP TRIGGER audit_no_update ON audit", update: "UPDATE audit SET subject = 'mallory' WHERE seq = 4" };
    await sql(drop);
    await sql(update);
    let s = await reopen();
    expect(await s.verify()).toMatchObject({ ok: false, brokenAt: 4, problem: "hash_mismatch", checked: 3 });
    await s.close();

    await sql("DELETE FROM audit WHERE seq = 4");
    s = await reopen();
    expect(await s.verify()).toMatchObject({ ok: false, brokenAt: 5, problem: "sequence_gap", checked: 3 });
    await s.close();
  });

  it("deletes records past retention and keeps the rest verifiable from an anchor", async () => {
    const { store } = await backend.open();
    await store.append(Array.from({ length: 10 }, (_, i) => ({ ...sample(i), time: T0 + i * DAY })), T0);
    const { deleted, anchor } = await store.prune(T0 + 4 * DAY);
    expect(deleted).toBe(4);
    expect(anchor.seq).toBe(4);
    expect((await store.query({ limit: 100 })).map((r) => r.seq).at(-1)).toBe(5);
    expect(await store.verify()).toMatchObject({ ok: true, checked: 6, lastSeq: 10 });
    // Nothing left to prune: the anchor stays.
    expect(await store.prune(T0 + 4 * DAY)).toEqual({ deleted: 0, anchor });
    // New records go on from the head.
    const more = await store.append([sample(99)], T0);
    expect(more[0]!.seq).toBe(11);
    expect(await store.verify()).toMatchObject({ ok: true, checked: 7 });
    await store.close();
  });

  it("chains records from two processes writing at once into one unbroken chain", { timeout: 60_000 }, async () => {
    const { store, childArgs } = await backend.writer(300);
    const child = spawn(process.execPath, [path.join(root, "test/integration/audit-writer.ts"), ...childArgs, "300"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    for (let i = 0; i < 30; i++) {
      await store.append(Array.from({ length: 10 }, (_, j) => sample(i * 10 + j)), T0);
      await new Promise((r) => setImmediate(r));
    }
    expect(await exited, err).toBe(0);
    expect(await store.verify()).toMatchObject({ ok: true, checked: 600, lastSeq: 600 });
    await store.close();
  });
});

describe("audit log queue", () => {
  it("writes in order in batches, keeps records while the store fails, and writes them when it recovers", async () => {
    const real = new SqliteAuditStore({ file: path.join(dir, "queue.sqlite") });
    let failing = true;
    const flaky: AuditStore = {
      kind: "sqlite",
      append: (e, now) => (failing ? Promise.reject(new Error("disk unavailable")) : real.append(e, now)),
      query: (f) => real.query(f),
      verify: () => real.verify(),
      prune: (b) => real.prune(b),
      head: () => real.head(),
      close: () => real.close(),
    };
    const log = new AuditLog({ store: flaky, log: silentLogger, queueMax: 1000, retentionDays: 0, retryMinMs: 5, retryMaxMs: 20 });
    for (let i = 0; i < 50; i++) log.record(sample(i));
    await log.flush();
    expect(log.healthy).toBe(false);
    expect(log.stats.queued).toBe(50);
    expect(log.stats.writeFailures).toBeGreaterThan(0);
    failing = false;
    const written = new Promise<void>((resolve) => log.events.on("written", () => log.stats.queued === 0 && resolve()));
    await written; // the retry timer writes them
    expect(log.healthy).toBe(true);
    expect(log.stats.written).toBe(50);
    const all = await log.query({ limit: 100 });
    expect(all.map((r) => r.session).reverse()).toEqual(Array.from({ length: 50 }, (_, i) => `ref${i}`));
    expect(await log.verify()).toMatchObject({ ok: true, checked: 50 });
    await log.close();
    await log.close();
  });

  it("drops (and counts) past its bound instead of growing without end", async () => {
    const store = new SqliteAuditStore({ file: path.join(dir, "bound.sqlite") });
    const log = new AuditLog({ store, log: silentLogger, queueMax: 100, retentionDays: 0 });
    for (let i = 0; i < 150; i++) log.record(sample(i));
    expect(log.stats.dropped).toBe(50);
    await log.flush();
    expect(log.stats.written).toBe(100);
    await log.close();
  });
});
