/**
 * The audit trail (gateway/audit/): who signed in, watched which camera, answered which door,
 * and what administrators did. SQLite (Node's built-in `node:sqlite`) in `dataDir` by default;
 * PostgreSQL for large sites or several gateways writing one trail.
 */
import { z } from "zod";

export const auditSection = z
  .strictObject({
    /** Keep an audit trail. Default true. */
    enabled: z.boolean().default(true),
    /** `sqlite` (a file under `dataDir`) or `postgres`. Default sqlite. */
    backend: z.enum(["sqlite", "postgres"]).default("sqlite"),
    /** The SQLite file. Default `<dataDir>/audit.sqlite`. */
    file: z.string().min(1).optional(),
    postgres: z
      .strictObject({
        /** `postgres://user:pass@host:5432/db` (use `${AUDIT_DATABASE_URL}`), or a libpq-style `host=/run/postgresql dbname=…`. */
        connectionString: z.string().min(1),
        /** Table name (created when missing). Default `gatehouse_audit`. */
        table: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, "lower-case letters, digits and '_'").default("gatehouse_audit"),
        /** A connection attempt gives up after this, ms (an unreachable server at start: the gateway starts and keeps trying). Default 10000. */
        connectTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
        /** Connections in the pool. Default 4. */
        poolSize: z.number().int().min(1).max(64).default(4),
      })
      .optional(),
    /** Records older than this are deleted (the chain keeps an anchor), days. Default 365; 0 keeps everything. */
    retentionDays: z.number().int().min(0).max(36500).default(365),
    /** Records waiting to be written before new ones are dropped (and counted) while the store is unavailable. Default 100000. */
    queueMax: z.number().int().min(100).max(10_000_000).default(100_000),
    /** Rows a CSV export may hold. Default 100000. */
    exportMaxRows: z.number().int().min(100).max(10_000_000).default(100_000),
  })
  .prefault({})
  .refine((a) => a.backend !== "postgres" || a.postgres !== undefined, { message: "backend postgres needs audit.postgres.connectionString", path: ["postgres"] });

export type AuditConfig = z.infer<typeof auditSection>;
