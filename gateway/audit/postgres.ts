/**
 * The audit trail in PostgreSQL (the `pg` client), for large sites and for several gateways
 * writing one trail. A batch is one transaction that first takes a transaction-scoped
 * advisory lock for the table, then reads the chain's head: writers from any number of
 * processes chain one after the other. Rows are never updated (a trigger refuses it).
 */
import pg from "pg";
import { UpstreamError } from "../../config/errors.ts";
import { ChainVerifier, GENESIS_HASH, recordFromRow, sealRecord, type AuditEntry, type AuditFilter, type AuditRecord, type AuditRow, type ChainAnchor, type ChainVerdict } from "./record.ts";
import { VERIFY_PAGE, type AuditStore } from "./store.ts";

export interface PostgresAuditOptions {
  connectionString: string;
  /** Table name (validated by the config schema: `[a-z_][a-z0-9_]*`). */
  table: string;
  poolSize: number;
  /** Per-statement timeout, ms. Default 10000. */
  statementTimeoutMs?: number;
  /** Connection timeout, ms. Default 10000. */
  connectTimeoutMs?: number;
}



/** The table, its indexes, its anchor and the trigger that refuses updates. */
const SCHEMA = (t: string, anchor: string): string => `
            CREATE TABLE IF NOT EXISTS ${t} (
              seq BIGINT PRIMARY KEY,
              time BIGINT NOT NULL,
              action TEXT NOT NULL,
              outcome TEXT NOT NULL,
              subject TEXT, name TEXT, session TEXT, source TEXT, camera TEXT, door TEXT, detail TEXT,
              prev_hash TEXT NOT NULL,
              hash TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS ${t}_time ON ${t} (time);
            CREATE INDEX IF NOT EXISTS ${t}_subject ON ${t} (subject, seq);
            CREATE INDEX IF NOT EXISTS ${t}_camera ON ${t} (camera, seq);
            CREATE INDEX IF NOT EXISTS ${t}_action ON ${t} (action, seq);
            CREATE TABLE IF NOT EXISTS ${anchor} (id INT PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);
            CREATE OR REPLACE FUNCTION ${t}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN RAISE EXCEPTION 'audit records are append-only'; END $$;
            DROP TRIGGER IF EXISTS ${t}_no_update ON ${t};
            CREATE TRIGGER ${t}_no_update BEFORE UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION ${t}_append_only();
          `;

/** `host:port` (or the socket directory) a connection string names, for messages. Opens nothing. */
export function serverOf(connectionString: string): string {
  try {
    const c = new pg.Client({ connectionString });
    const host = c.host || "localhost";
    return host.startsWith("/") ? `${host} (unix socket, port ${c.port})` : `${host.includes(":") ? `[${host}]` : host}:${c.port}`;
  } catch {
    return "(unreadable connection string)";
  }
}

/**
 * A failure that waiting will not cure: the server answered and refused us (authentication,
 * unknown database, missing rights: SQLSTATE classes 28, 3D, 42). Anything else (refused or
 * timed-out connections, a server starting up) may pass.
 */
export function isPermanentPostgresFailure(err: unknown): boolean {
  for (let e: unknown = err, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^(28|3D|42)[0-9A-Z]{3}$/.test(code)) return true;
  }
  return false;
}

/** A 64-bit advisory-lock key per table name (stable across processes). */
function lockKey(table: string): string {
  let h = 0n;
  for (const c of Buffer.from(`gatehouse-audit:${table}`)) h = (h * 131n + BigInt(c)) & 0x7fffffffffffffffn;
  return h.toString();
}

export class PostgresAuditStore implements AuditStore {
  readonly kind = "postgres" as const;
  private readonly pool: pg.Pool;
  private readonly t: string;
  private readonly anchorTable: string;
  private readonly lock: string;
  private closed = false;
  private closing: Promise<void> | undefined;
  private schema: Promise<void> | undefined;
  /** Where the server is (`host:port`), for messages. */
  readonly server: string;

  private constructor(pool: pg.Pool, table: string, server: string) {
    this.server = server;
    this.pool = pool;
    this.t = table;
    this.anchorTable = `${table}_anchor`;
    this.lock = lockKey(table);
  }

  /** The pool, without connecting: the schema is made on first use (`ready()`). */
  static create(opts: PostgresAuditOptions): PostgresAuditStore {
    const pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.poolSize,
      statement_timeout: opts.statementTimeoutMs ?? 10_000,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    });
    // An idle client's error (server restart) must not crash the process; the next query reconnects.
    pool.on("error", () => {});
    return new PostgresAuditStore(pool, opts.table, serverOf(opts.connectionString));
  }

  /** Connects and creates the table when missing. Throws UpstreamError when the server cannot be reached. */
  static async open(opts: PostgresAuditOptions): Promise<PostgresAuditStore> {
    const store = PostgresAuditStore.create(opts);
    try {
      await store.ready();
    } catch (err) {
      await store.close().catch(() => {});
      throw err;
    }
    return store;
  }

  /** Creates the table when missing, once; tried again on the next call after a failure. */
  ready(): Promise<void> {
    this.schema ??= this.makeSchema().catch((cause: unknown) => {
      this.schema = undefined;
      throw cause instanceof UpstreamError ? cause : new UpstreamError(`cannot open the PostgreSQL audit store at ${this.server}`, { cause });
    });
    return this.schema;
  }

  private async makeSchema(): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query("SELECT pg_advisory_lock($1)", [this.lock]);
      try {
        await c.query(SCHEMA(this.t, this.anchorTable));
      } finally {
        await c.query("SELECT pg_advisory_unlock($1)", [this.lock]);
      }
    } finally {
      c.release();
    }
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new UpstreamError("audit store closed");
    await this.ready();
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (cause) {
      throw new UpstreamError(`PostgreSQL audit store unreachable at ${this.server}`, { cause });
    }
    // A checked-out client whose connection drops between queries emits "error": without a
    // listener that would end the process. The failure reaches us through the next query.
    let broken: Error | undefined;
    const onError = (err: Error) => (broken = err);
    c.on("error", onError);
    try {
      await c.query("BEGIN");
      await c.query("SELECT pg_advisory_xact_lock($1)", [this.lock]);
      const out = await fn(c);
      await c.query("COMMIT");
      return out;
    } catch (cause) {
      if (!broken) await c.query("ROLLBACK").catch(() => {});
      broken ??= cause as Error;
      throw cause instanceof UpstreamError ? cause : new UpstreamError("PostgreSQL audit write failed", { cause });
    } finally {
      c.off("error", onError);
      // A client that failed is discarded, not returned to the pool.
      c.release(broken);
    }
  }

  private async anchorOf(c: pg.ClientBase | pg.Pool): Promise<ChainAnchor> {
    const a = await c.query<{ seq: string; hash: string }>(`SELECT seq, hash FROM ${this.anchorTable} WHERE id = 1`);
    return a.rows[0] ? { seq: Number(a.rows[0].seq), hash: a.rows[0].hash } : { seq: 0, hash: GENESIS_HASH };
  }

  private async headOf(c: pg.ClientBase | pg.Pool): Promise<ChainAnchor> {
    const h = await c.query<{ seq: string; hash: string }>(`SELECT seq, hash FROM ${this.t} ORDER BY seq DESC LIMIT 1`);
    return h.rows[0] ? { seq: Number(h.rows[0].seq), hash: h.rows[0].hash } : this.anchorOf(c);
  }

  append(entries: readonly AuditEntry[], now: number): Promise<AuditRecord[]> {
    if (entries.length === 0) return Promise.resolve([]);
    return this.tx(async (c) => {
      let { seq, hash } = await this.headOf(c);
      const out: AuditRecord[] = [];
      for (const e of entries) {
        const r = sealRecord(e, seq + 1, hash, now);
        out.push(r);
        seq = r.seq;
        hash = r.hash;
      }
      // One multi-row INSERT per 500 records.
      for (let i = 0; i < out.length; i += 500) {
        const part = out.slice(i, i + 500);
        const values: unknown[] = [];
        const rows = part.map((r, j) => {
          values.push(r.seq, r.time, r.action, r.outcome, r.subject, r.name, r.session, r.source, r.camera, r.door, r.detail, r.prevHash, r.hash);
          const b = j * 13;
          return `(${Array.from({ length: 13 }, (_, k) => `$${b + k + 1}`).join(",")})`;
        });
        await c.query(`INSERT INTO ${this.t} (seq, time, action, outcome, subject, name, session, source, camera, door, detail, prev_hash, hash) VALUES ${rows.join(",")}`, values);
      }
      return out;
    });
  }

  async query(f: AuditFilter): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => {
      args.push(v);
      return `$${args.length}`;
    };
    if (f.user) where.push(`(subject = ${arg(f.user)} OR name ILIKE ${arg(`%${f.user.replace(/[\\%_]/g, (c) => "\\" + c)}%`)})`);
    if (f.camera) where.push(`camera = ${arg(f.camera)}`);
    if (f.door) where.push(`door = ${arg(f.door)}`);
    if (f.actions?.length) where.push(`action = ANY(${arg(f.actions)})`);
    if (f.from !== undefined) where.push(`time >= ${arg(f.from)}`);
    if (f.to !== undefined) where.push(`time < ${arg(f.to)}`);
    if (f.beforeSeq !== undefined) where.push(`seq < ${arg(f.beforeSeq)}`);
    await this.ready();
    const sql = `SELECT * FROM ${this.t} ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY seq DESC LIMIT ${arg(f.limit)}`;
    try {
      return (await this.pool.query<AuditRow>(sql, args)).rows.map(recordFromRow);
    } catch (cause) {
      throw new UpstreamError("PostgreSQL audit query failed", { cause });
    }
  }

  async verify(): Promise<ChainVerdict> {
    await this.ready();
    try {
      const v = new ChainVerifier(await this.anchorOf(this.pool));
      let after = v.verdict().lastSeq;
      for (;;) {
        const rows = (await this.pool.query<AuditRow>(`SELECT * FROM ${this.t} WHERE seq > $1 ORDER BY seq LIMIT $2`, [after, VERIFY_PAGE])).rows.map(recordFromRow);
        if (rows.length === 0 || !v.next(rows)) break;
        after = rows[rows.length - 1]!.seq;
      }
      return v.verdict();
    } catch (cause) {
      throw new UpstreamError("PostgreSQL audit verification failed", { cause });
    }
  }

  prune(before: number): Promise<{ deleted: number; anchor: ChainAnchor }> {
    return this.tx(async (c) => {
      const last = (await c.query<{ seq: string; hash: string }>(`SELECT seq, hash FROM ${this.t} WHERE time < $1 ORDER BY seq DESC LIMIT 1`, [before])).rows[0];
      if (!last) return { deleted: 0, anchor: await this.anchorOf(c) };
      const del = await c.query(`DELETE FROM ${this.t} WHERE seq <= $1`, [last.seq]);
      const anchor = { seq: Number(last.seq), hash: last.hash };
      await c.query(`INSERT INTO ${this.anchorTable} (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash`, [anchor.seq, anchor.hash]);
      return { deleted: del.rowCount ?? 0, anchor };
    });
  }

  async head(): Promise<ChainAnchor> {
    await this.ready();
    try {
      return await this.headOf(this.pool);
    } catch (cause) {
      throw new UpstreamError(`PostgreSQL audit store unreachable at ${this.server}`, { cause });
    }
  }

  /** Ends the pool once; every caller gets the same promise. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = this.pool.end();
    }
    return this.closing;
  }
}
