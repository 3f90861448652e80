/**
 * The audit trail: open the configured store, keep the log, and the intercom's call history
 * read from it (so it survives restarts).
 *
 *   const audit = await openAudit({ config: config.audit, dataDir: config.dataDir, log });
 *   auditAuth(audit, auth.observer);                       // hooks.ts
 *   app.use("/api/admin/audit", auditRouter({ audit, … })); // routes.ts
 */
import path from "node:path";
import type { AuditConfig } from "../../config/sections/audit.ts";
import type { Logger } from "../../config/log.ts";
import type { CallRecord, Intercom } from "../sip/index.ts";
import { AuditLog } from "./log.ts";
import { PostgresAuditStore } from "./postgres.ts";
import { SqliteAuditStore } from "./sqlite.ts";
import type { AuditStore } from "./store.ts";

export { AuditLog, type AuditSink, type AuditStats } from "./log.ts";
export { auditAdmin, auditAuth, auditIntercom, auditWhepRefusals, whepAudit, type WhepAudit } from "./hooks.ts";
export { auditRouter } from "./routes.ts";
export * from "./record.ts";
export type { AuditStore } from "./store.ts";
export { SqliteAuditStore } from "./sqlite.ts";
export { PostgresAuditStore } from "./postgres.ts";

export interface OpenAuditOptions {
  config: AuditConfig;
  /** `dataDir` of the configuration (the SQLite file's default home). */
  dataDir: string;
  log: Logger;
}

/** Opens the store (creating the SQLite file or the PostgreSQL table when missing) and applies retention once. */
export async function openAudit(opts: OpenAuditOptions): Promise<AuditLog> {
  const c = opts.config;
  let store: AuditStore;
  if (c.backend === "postgres") {
    store = await PostgresAuditStore.open({ connectionString: c.postgres!.connectionString, table: c.postgres!.table, poolSize: c.postgres!.poolSize });
  } else {
    store = new SqliteAuditStore({ file: c.file ?? path.join(opts.dataDir, "audit.sqlite") });
  }
  const audit = new AuditLog({ store, log: opts.log, queueMax: c.queueMax, retentionDays: c.retentionDays });
  await audit.applyRetention();
  const head = await store.head();
  opts.log.info("audit trail open", { backend: store.kind, headSeq: head.seq, headHash: head.hash });
  return audit;
}

/**
 * The intercom's finished calls, newest last: loaded from the audit trail at start, then
 * followed live from the SIP side's `ended` events (the same events the trail records).
 */
export class AuditCallLog {
  private readonly records: CallRecord[];
  private readonly max: number;
  private readonly off: () => void;

  private constructor(records: CallRecord[], max: number, intercom: Pick<Intercom, "events">) {
    this.records = records;
    this.max = max;
    this.off = intercom.events.on("ended", (rec) => {
      this.records.push(rec);
      if (this.records.length > this.max) this.records.splice(0, this.records.length - this.max);
    });
  }

  static async load(audit: Pick<AuditLog, "query" | "flush">, intercom: Pick<Intercom, "events">, max = 1000): Promise<AuditCallLog> {
    await audit.flush();
    const recs = await audit.query({ actions: ["intercom_call_end"], limit: max });
    const calls: CallRecord[] = [];
    for (const r of recs.reverse()) {
      try {
        const c = JSON.parse(r.detail ?? "") as CallRecord;
        if (typeof c.callId === "string" && typeof c.deviceId === "string") calls.push(c);
      } catch {
        /* a record written by something else */
      }
    }
    return new AuditCallLog(calls, max, intercom);
  }

  history(): readonly CallRecord[] {
    return this.records;
  }

  close(): void {
    this.off();
  }
}
