/**
 * A second writer for the audit store tests, in a process of its own:
 *   node test/integration/audit-writer.ts sqlite <file> <n>
 *   node test/integration/audit-writer.ts postgres <url> <table> <n>
 * Appends n records in batches of 10, yielding between batches.
 */
import { PostgresAuditStore } from "../../gateway/audit/postgres.ts";
import { SqliteAuditStore } from "../../gateway/audit/sqlite.ts";
import type { AuditStore } from "../../gateway/audit/store.ts";

const [kind, a, b, c] = process.argv.slice(2);
const store: AuditStore =
  kind === "sqlite" ? new SqliteAuditStore({ file: a! }) : await PostgresAuditStore.open({ connectionString: a!, table: b!, poolSize: 1 });
const n = Number(kind === "sqlite" ? b : c);
for (let i = 0; i < n; i += 10) {
  await store.append(Array.from({ length: 10 }, (_, j) => ({ action: "sign_in" as const, outcome: "success" as const, subject: "other-process", session: `w${i + j}` })), Date.now());
  await new Promise((r) => setImmediate(r));
}
await store.close();
