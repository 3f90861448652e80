/**
 * The audit trail for administrators (mounted at /api/admin/audit, behind sign-in; `authorize`
 * decides who is an administrator):
 *
 *   GET /api/admin/audit?user=&camera=&door=&action=a,b&from=&to=&limit=&before=
 *       → { records: AuditRecord[] (newest first), next: <before for the next page> | null, actions }
 *   GET /api/admin/audit/export.csv?…same filters…   → text/csv, every matching record (up to audit.exportMaxRows)
 *   GET /api/admin/audit/verify                       → the hash chain's verdict
 *
 * `from`/`to` are ISO 8601 times or milliseconds since the epoch (`to` exclusive).
 */
import { Router, type Request } from "express";
import { BadInputError } from "../../config/errors.ts";
import { sendError } from "../http/errors.ts";
import { administratorsOnly } from "../http/admin.ts";
import type { AuditLog } from "./log.ts";
import { AUDIT_ACTIONS, CSV_COLUMNS, csvLine, type AuditAction, type AuditFilter } from "./record.ts";

export interface AuditRouterDeps {
  audit: Pick<AuditLog, "query" | "verify" | "flush">;
  /** Throws AuthError unless the caller administers the whole gateway. */
  authorize(req: Request): void;
  /** Rows one CSV export may hold. */
  exportMaxRows: number;
}

const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;
const EXPORT_PAGE = 5000;

function str(v: unknown, name: string): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (typeof v !== "string" || v.length > 200) throw new BadInputError(`${name}: a text of at most 200 characters`);
  return v;
}

function time(v: unknown, name: string): number | undefined {
  const s = str(v, name);
  if (s === undefined) return undefined;
  const t = /^\d{1,15}$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(t)) throw new BadInputError(`${name}: an ISO 8601 time or milliseconds since the epoch`);
  return t;
}

function int(v: unknown, name: string, min: number, max: number): number | undefined {
  const s = str(v, name);
  if (s === undefined) return undefined;
  if (!/^\d{1,15}$/.test(s) || Number(s) < min || Number(s) > max) throw new BadInputError(`${name}: a whole number from ${min} to ${max}`);
  return Number(s);
}

/** The filters of a request's query string; BadInputError (400) for anything malformed. */
export function filterOf(q: Request["query"], limit: number): AuditFilter {
  const actionText = str(q.action, "action");
  let actions: AuditAction[] | undefined;
  if (actionText) {
    actions = actionText.split(",").map((a) => a.trim()) as AuditAction[];
    const unknown = actions.filter((a) => !AUDIT_ACTIONS.includes(a));
    if (unknown.length) throw new BadInputError(`action: unknown ${unknown.join(", ")} (one of ${AUDIT_ACTIONS.join(", ")})`);
  }
  return {
    user: str(q.user, "user"),
    camera: str(q.camera, "camera"),
    door: str(q.door, "door"),
    actions,
    from: time(q.from, "from"),
    to: time(q.to, "to"),
    beforeSeq: int(q.before, "before", 1, Number.MAX_SAFE_INTEGER),
    limit: int(q.limit, "limit", 1, limit) ?? Math.min(PAGE_DEFAULT, limit),
  };
}

export function auditRouter(deps: AuditRouterDeps): Router {
  const r = Router();
  r.use(administratorsOnly(deps.authorize));

  r.get("/", async (req, res) => {
    try {
      const f = filterOf(req.query, PAGE_MAX);
      // What was recorded just before this request is in the answer.
      await deps.audit.flush();
      const records = await deps.audit.query(f);
      const next = records.length === f.limit ? records[records.length - 1]!.seq : null;
      res.json({ records, next, actions: AUDIT_ACTIONS });
    } catch (err) {
      sendError(res, err);
    }
  });

  r.get("/export.csv", async (req, res) => {
    let f: AuditFilter;
    try {
      f = { ...filterOf(req.query, deps.exportMaxRows), limit: EXPORT_PAGE };
      await deps.audit.flush();
    } catch (err) {
      return sendError(res, err);
    }
    const max = int(req.query.limit, "limit", 1, deps.exportMaxRows) ?? deps.exportMaxRows;
    let sent = 0;
    try {
      // The first page before any header: a failing store still gets a proper error status.
      let page = await deps.audit.query({ ...f, limit: Math.min(EXPORT_PAGE, max) });
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      res.status(200).type("text/csv; charset=utf-8").set("Content-Disposition", `attachment; filename="gatehouse-audit-${stamp}.csv"`);
      res.write(CSV_COLUMNS.join(",") + "\r\n");
      for (;;) {
        let chunk = "";
        for (const rec of page) chunk += csvLine(rec);
        sent += page.length;
        // Respect the client's pace: wait for the socket to drain between pages.
        if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
        if (page.length < EXPORT_PAGE || sent >= max || res.destroyed) break;
        page = await deps.audit.query({ ...f, beforeSeq: page[page.length - 1]!.seq, limit: Math.min(EXPORT_PAGE, max - sent) });
      }
      res.end();
    } catch (err) {
      if (!res.headersSent) sendError(res, err);
      else res.destroy(err as Error);
    }
  });

  r.get("/verify", async (_req, res) => {
    try {
      await deps.audit.flush();
      res.json(await deps.audit.verify());
    } catch (err) {
      sendError(res, err);
    }
  });
  return r;
}
