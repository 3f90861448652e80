/**
 * Where audit records live. Two implementations: SQLite (sqlite.ts, the default) and
 * PostgreSQL (postgres.ts). Both append a batch in one transaction that reads the chain's
 * head under a lock, so several writers (processes, gateways) never fork the chain.
 * Records are never updated; only retention deletes, oldest first, leaving an anchor.
 */
import type { AuditEntry, AuditFilter, AuditRecord, ChainAnchor, ChainVerdict } from "./record.ts";

export interface AuditStore {
  readonly kind: "sqlite" | "postgres";
  /** Appends the entries in order, chained; resolves with the stored records. */
  append(entries: readonly AuditEntry[], now: number): Promise<AuditRecord[]>;
  /** Newest first. */
  query(filter: AuditFilter): Promise<AuditRecord[]>;
  /** Walks the whole chain from its anchor. */
  verify(): Promise<ChainVerdict>;
  /** Deletes records older than `before` (ms); returns how many, and the anchor left. */
  prune(before: number): Promise<{ deleted: number; anchor: ChainAnchor }>;
  /** The last record's sequence number and hash (genesis when empty). */
  head(): Promise<ChainAnchor>;
  close(): Promise<void>;
}

/** Row page size when walking the chain. */
export const VERIFY_PAGE = 5000;
