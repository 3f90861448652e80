/**
 * Each signed-in user's console preferences (layout, favourites, ...), one bounded JSON document
 * per subject, in SQLite (`node:sqlite`, WAL) under the gateway's data directory. The document's
 * shape is checked by the route; this store keeps text and refuses nothing but oversize values.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { BadInputError, ClosedError, UpstreamError } from "../../config/errors.ts";

export interface StoredPreferences {
  /** The JSON document as stored. */
  readonly json: string;
  /** Epoch ms of the last write. */
  readonly updatedAt: number;
}

export class PreferenceStore {
  private readonly db: DatabaseSync;
  private readonly getStmt: StatementSync;
  private readonly putStmt: StatementSync;
  private readonly maxBytes: number;
  private closed = false;

  /** `file` is the database file (its directory is created), or `:memory:`. */
  constructor(file: string, maxBytes: number) {
    this.maxBytes = maxBytes;
    if (file !== ":memory:") mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o750 });
    try {
      this.db = new DatabaseSync(file, { timeout: 5000 });
      this.db.exec(`
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        CREATE TABLE IF NOT EXISTS preferences (sub TEXT PRIMARY KEY, doc TEXT NOT NULL, updated INTEGER NOT NULL);
      `);
    } catch (cause) {
      throw new UpstreamError(`cannot open the preferences database ${file}`, { cause });
    }
    this.getStmt = this.db.prepare("SELECT doc, updated FROM preferences WHERE sub = ?");
    this.putStmt = this.db.prepare(
      "INSERT INTO preferences (sub, doc, updated) VALUES (?, ?, ?) ON CONFLICT (sub) DO UPDATE SET doc = excluded.doc, updated = excluded.updated",
    );
  }

  get(sub: string): StoredPreferences | undefined {
    if (this.closed) throw new ClosedError("the preferences store is closed");
    const row = this.getStmt.get(sub) as { doc: string; updated: number } | undefined;
    return row ? { json: row.doc, updatedAt: Number(row.updated) } : undefined;
  }

  put(sub: string, json: string, now: number): void {
    if (this.closed) throw new ClosedError("the preferences store is closed");
    if (Buffer.byteLength(json) > this.maxBytes) throw new BadInputError(`preferences larger than ${this.maxBytes} bytes`);
    try {
      this.putStmt.run(sub, json, now);
    } catch (cause) {
      throw new UpstreamError("cannot save preferences", { cause });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
