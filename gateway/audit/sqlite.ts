/**
 * The audit trail in SQLite through Node's built-in `node:sqlite` (no native module to build).
 * WAL journal, `synchronous=NORMAL`: a batch is one transaction, durable against a crash of
 * the process. `BEGIN IMMEDIATE` takes the write lock before the chain's head is read, so two
 * processes sharing the file chain their records one after the other.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { UpstreamError } from "../../config/errors.ts";
import { ChainVerifier, GENESIS_HASH, recordFromRow, sealRecord, type AuditEntry, type AuditFilter, type AuditRecord, type AuditRow, type ChainAnchor, type ChainVerdict } from "./record.ts";
import { VERIFY_PAGE, type AuditStore } from "./store.ts";



export interface SqliteAuditOptions {
  /** Database file (its directory is created). `:memory:` for tests. */
  file: string;
  /** How long a writer waits for another process's lock, ms. Default 5000. */
  busyTimeoutMs?: number;
}

export class SqliteAuditStore implements AuditStore {
  readonly kind = "sqlite" as const;
  private readonly db: DatabaseSync;
  private readonly insert: StatementSync;
  private readonly headStmt: StatementSync;
  private readonly anchorStmt: StatementSync;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(opts: SqliteAuditOptions) {
    if (opts.file !== ":memory:") mkdirSync(path.dirname(path.resolve(opts.file)), { recursive: true, mode: 0o750 });
    try {
      this.db = new DatabaseSync(opts.file, { timeout: opts.busyTimeoutMs ?? 5000 });
      this.db.exec(`
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        CREATE TABLE IF NOT EXISTS audit (
          seq INTEGER PRIMARY KEY,
          time INTEGER NOT NULL,
          action TEXT NOT NULL,
          outcome TEXT NOT NULL,
          subject TEXT, name TEXT, session TEXT, source TEXT, camera TEXT, door TEXT, detail TEXT,
          prev_hash TEXT NOT NULL,
          hash TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
        CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject, seq);
        CREATE INDEX IF NOT EXISTS audit_camera ON audit (camera, seq);
        CREATE INDEX IF NOT EXISTS audit_action ON audit (action, seq);
        CREATE TABLE IF NOT EXISTS audit_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
        -- Append-only: rows are never changed; only retention (prune) deletes, under its anchor.
        CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
      `);
    } catch (cause) {
      throw new UpstreamError(`cannot open the audit database ${opts.file}`, { cause });
    }
    this.insert = this.db.prepare(
      "INSERT INTO audit (seq, time, action, outcome, subject, name, session, source, camera, door, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.headStmt = this.db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    this.anchorStmt = this.db.prepare("SELECT seq, hash FROM audit_anchor WHERE id = 1");
  }

  private anchorNow(): ChainAnchor {
    const a = this.anchorStmt.get() as { seq: number; hash: string } | undefined;
    return a ? { seq: Number(a.seq), hash: a.hash } : { seq: 0, hash: GENESIS_HASH };
  }

  private headNow(): ChainAnchor {
    const h = this.headStmt.get() as { seq: number; hash: string } | undefined;
    return h ? { seq: Number(h.seq), hash: h.hash } : this.anchorNow();
  }

  append(entries: readonly AuditEntry[], now: number): Promise<AuditRecord[]> {
    if (entries.length === 0) return Promise.resolve([]);
    try {
      return Promise.resolve(this.appendSync(entries, now));
    } catch (err) {
      return Promise.reject(err instanceof UpstreamError ? err : new UpstreamError("audit write failed", { cause: err }));
    }
  }

  /** The same, synchronously (one transaction). */
  appendSync(entries: readonly AuditEntry[], now: number): AuditRecord[] {
    if (this.closed) throw new UpstreamError("audit store closed");
    const out: AuditRecord[] = [];
    this.db.exec("BEGIN IMMEDIATE");
    try {
      let { seq, hash } = this.headNow();
      for (const e of entries) {
        const r = sealRecord(e, seq + 1, hash, now);
        this.insert.run(r.seq, r.time, r.action, r.outcome, r.subject, r.name, r.session, r.source, r.camera, r.door, r.detail, r.prevHash, r.hash);
        out.push(r);
        seq = r.seq;
        hash = r.hash;
      }
      this.db.exec("COMMIT");
    } catch (err) {
      try {
        this.db.exec("ROLLBACK");
      } catch {
        /* not in a transaction */
      }
      throw err;
    }
    return out;
  }

  query(f: AuditFilter): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.user) {
      where.push("(subject = ? OR name LIKE ? ESCAPE '\\')");
      args.push(f.user, `%${f.user.replace(/[\\%_]/g, (c) => "\\" + c)}%`);
    }
    if (f.camera) {
      where.push("camera = ?");
      args.push(f.camera);
    }
    if (f.door) {
      where.push("door = ?");
      args.push(f.door);
    }
    if (f.actions?.length) {
      where.push(`action IN (${f.actions.map(() => "?").join(",")})`);
      args.push(...f.actions);
    }
    if (f.from !== undefined) {
      where.push("time >= ?");
      args.push(f.from);
    }
    if (f.to !== undefined) {
      where.push("time < ?");
      args.push(f.to);
    }
    if (f.beforeSeq !== undefined) {
      where.push("seq < ?");
      args.push(f.beforeSeq);
    }
    const sql = `SELECT * FROM audit ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY seq DESC LIMIT ?`;
    args.push(f.limit);
    return Promise.resolve((this.db.prepare(sql).all(...args) as unknown as AuditRow[]).map(recordFromRow));
  }

  verify(): Promise<ChainVerdict> {
    const v = new ChainVerifier(this.anchorNow());
    const page = this.db.prepare("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?");
    let after = v.verdict().lastSeq;
    for (;;) {
      const rows = (page.all(after, VERIFY_PAGE) as unknown as AuditRow[]).map(recordFromRow);
      if (rows.length === 0 || !v.next(rows)) break;
      after = rows[rows.length - 1]!.seq;
    }
    return Promise.resolve(v.verdict());
  }

  prune(before: number): Promise<{ deleted: number; anchor: ChainAnchor }> {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const last = this.db.prepare("SELECT seq, hash FROM audit WHERE time < ? ORDER BY seq DESC LIMIT 1").get(before) as { seq: number; hash: string } | undefined;
      let deleted = 0;
      let anchor = this.anchorNow();
      if (last) {
        // Everything up to the newest old record goes, so the remaining chain is unbroken.
        deleted = Number(this.db.prepare("DELETE FROM audit WHERE seq <= ?").run(last.seq).changes);
        anchor = { seq: Number(last.seq), hash: last.hash };
        this.db.prepare("INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash").run(anchor.seq, anchor.hash);
      }
      this.db.exec("COMMIT");
      return Promise.resolve({ deleted, anchor });
    } catch (err) {
      this.db.exec("ROLLBACK");
      return Promise.reject(new UpstreamError("audit retention failed", { cause: err }));
    }
  }

  head(): Promise<ChainAnchor> {
    return Promise.resolve(this.headNow());
  }

  /** Closes the database once; every caller gets the same promise. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.db.close();
      this.closing = Promise.resolve();
    }
    return this.closing;
  }
}
