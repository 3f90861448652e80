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
import { isPermanentPostgresFailure, PostgresAuditStore } from "./postgres.ts";
import { UpstreamError } from "../../config/errors.ts";
import { SqliteAuditStore } from "./sqlite.ts";
import type { AuditStore } from "./store.ts";

export { AuditLog, type AuditSink, type AuditStats } from "./log.ts";
export { auditAdmin, auditAuth, auditIntercom, auditWhepRefusals, callerOf, gridAudit, whepAudit, type GridAudit, type GridBinding, type WhepAudit } from "./hooks.ts";
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
  let unavailable = false;
  if (c.backend === "postgres") {
    const pgStore = PostgresAuditStore.create({ connectionString: c.postgres!.connectionString, table: c.postgres!.table, poolSize: c.postgres!.poolSize, connectTimeoutMs: c.postgres!.connectTimeoutMs });
    try {
      await pgStore.ready();
    } catch (err) {
      // Refused for good (password, database, rights): the configuration is wrong, stop here.
      if (isPermanentPostgresFailure(err)) {
        await pgStore.close().catch(() => {});
        throw new UpstreamError(`the PostgreSQL audit store at ${pgStore.server} refused the gateway (${causeText(err)}); check audit.postgres.connectionString`, { cause: err });
      }
      // Not reachable yet (down, restarting, the network): start and keep trying, loudly.
      opts.log.error(
        `the PostgreSQL audit store at ${pgStore.server} is unreachable (${causeText(err)}); starting without it: records wait in memory (audit.queueMax) and are written once it answers; /readyz reports audit not ready. Check audit.postgres.connectionString and the server.`,
        { server: pgStore.server },
      );
      unavailable = true;
    }
    store = pgStore;
  } else {
    store = new SqliteAuditStore({ file: c.file ?? path.join(opts.dataDir, "audit.sqlite") });
  }
  const audit = new AuditLog({ store, log: opts.log, queueMax: c.queueMax, retentionDays: c.retentionDays });
  if (unavailable) {
    audit.markUnavailable();
    return audit;
  }
  await audit.applyRetention();
  const head = await store.head();
  opts.log.info("audit trail open", { backend: store.kind, headSeq: head.seq, headHash: head.hash });
  return audit;
}

/** The innermost message of an error chain, for one line of a log or a start-up failure. */
function causeText(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 5 && (e as { cause?: unknown })?.cause; i++) e = (e as { cause: unknown }).cause;
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof code === "string" && !msg.includes(code) ? `${code}: ${msg}` : msg;
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

  static async load(audit: Pick<AuditLog, "query" | "flush">, intercom: Pick<Intercom, "events">, max = 1000, log?: Logger): Promise<AuditCallLog> {
    await audit.flush();
    let recs: Awaited<ReturnType<AuditLog["query"]>>;
    try {
      recs = await audit.query({ actions: ["intercom_call_end"], limit: max });
    } catch (err) {
      // The store is unreachable at start: calls from now on are listed, earlier ones are not.
      log?.warn("the intercom's call history could not be read from the audit trail; it starts empty", { err });
      recs = [];
    }
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
