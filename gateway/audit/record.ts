/**
 * An audit record and its hash chain, without I/O.
 *
 * Each record carries the SHA-256 of the one before (`prevHash`) and its own hash over every
 * field, its sequence number and that previous hash. Changing, removing or reordering any
 * record breaks the chain from there on, which `verifyChain` reports. Deleting old records
 * (retention) keeps an anchor: the sequence number and hash of the last deleted record, from
 * which the remaining chain is checked.
 */
import { createHash } from "node:crypto";

/** What happened. */
export type AuditAction =
  | "sign_in"
  | "sign_out"
  | "session_ended"
  | "live_view_start"
  | "live_view_end"
  | "playback_start"
  | "playback_end"
  | "intercom_ring"
  | "intercom_answer"
  | "intercom_reject"
  | "intercom_hangup"
  | "intercom_call"
  | "intercom_call_end"
  | "door_open"
  | "admin_session_end"
  | "admin_user_sessions_end"
  | "config_reload"
  | "admin_component_enable"
  | "audit_pruned";

export const AUDIT_ACTIONS: readonly AuditAction[] = [
  "sign_in",
  "sign_out",
  "session_ended",
  "live_view_start",
  "live_view_end",
  "playback_start",
  "playback_end",
  "intercom_ring",
  "intercom_answer",
  "intercom_reject",
  "intercom_hangup",
  "intercom_call",
  "intercom_call_end",
  "door_open",
  "admin_session_end",
  "admin_user_sessions_end",
  "config_reload",
  "admin_component_enable",
  "audit_pruned",
];

/** `success`; `denied` (no right, unknown, refused by policy or rate limit); `failure` (it went wrong). */
export type AuditOutcome = "success" | "denied" | "failure";

/** What a component reports. Every field but the action and outcome is optional. */
export interface AuditEntry {
  action: AuditAction;
  outcome: AuditOutcome;
  /** The user's subject at the identity provider. */
  subject?: string | undefined;
  /** The user's display name. */
  name?: string | undefined;
  /** The session's non-secret reference (never the session id). */
  session?: string | undefined;
  /** The client's address. */
  source?: string | undefined;
  camera?: string | undefined;
  door?: string | undefined;
  /** Why, or what else: a reason, a count, a call's figures (JSON text). At most 2000 characters. */
  detail?: string | undefined;
  /** Milliseconds since the epoch; default: when it is recorded. */
  time?: number;
}

/** A stored record. */
export interface AuditRecord {
  seq: number;
  time: number;
  action: AuditAction;
  outcome: AuditOutcome;
  subject: string | null;
  name: string | null;
  session: string | null;
  source: string | null;
  camera: string | null;
  door: string | null;
  detail: string | null;
  prevHash: string;
  hash: string;
}

/** A record as a store's row holds it (snake_case columns; PostgreSQL returns bigints as text). */
export interface AuditRow {
  seq: number | string;
  time: number | string;
  action: string;
  outcome: string;
  subject: string | null;
  name: string | null;
  session: string | null;
  source: string | null;
  camera: string | null;
  door: string | null;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

/** A stored row as a record. */
export function recordFromRow(r: AuditRow): AuditRecord {
  return {
    seq: Number(r.seq),
    time: Number(r.time),
    action: r.action as AuditAction,
    outcome: r.outcome as AuditOutcome,
    subject: r.subject,
    name: r.name,
    session: r.session,
    source: r.source,
    camera: r.camera,
    door: r.door,
    detail: r.detail,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** The hash before the first record. */
export const GENESIS_HASH = "0".repeat(64);

const MAX_FIELD = 512;
const MAX_DETAIL = 2000;

const clip = (v: string | undefined, max: number): string | null => (v === undefined || v === "" ? null : v.length > max ? v.slice(0, max) : v);

/** The record `entry` becomes as number `seq` after the record whose hash is `prevHash`. */
export function sealRecord(entry: AuditEntry, seq: number, prevHash: string, now: number): AuditRecord {
  const rec: Omit<AuditRecord, "hash"> = {
    seq,
    time: Math.trunc(entry.time ?? now),
    action: entry.action,
    outcome: entry.outcome,
    subject: clip(entry.subject, MAX_FIELD),
    name: clip(entry.name, MAX_FIELD),
    session: clip(entry.session, MAX_FIELD),
    source: clip(entry.source, MAX_FIELD),
    camera: clip(entry.camera, MAX_FIELD),
    door: clip(entry.door, MAX_FIELD),
    detail: clip(entry.detail, MAX_DETAIL),
    prevHash,
  };
  return { ...rec, hash: hashRecord(rec) };
}

/** SHA-256 (hex) over the record's fields in a fixed order, its sequence number and the previous hash. */
export function hashRecord(r: Omit<AuditRecord, "hash">): string {
  const canonical = JSON.stringify([r.seq, r.time, r.action, r.outcome, r.subject, r.name, r.session, r.source, r.camera, r.door, r.detail, r.prevHash]);
  return createHash("sha256").update(canonical).digest("hex");
}

/** Where a verified chain starts: genesis, or the anchor left by retention. */
export interface ChainAnchor {
  /** Sequence number of the last deleted record (0: none deleted). */
  seq: number;
  hash: string;
}

export interface ChainVerdict {
  ok: boolean;
  /** Records checked. */
  checked: number;
  /** The last good record's sequence number and hash (the head, when ok). */
  lastSeq: number;
  lastHash: string;
  /** The first record that does not fit, and why. */
  brokenAt?: number;
  problem?: "hash_mismatch" | "prev_hash_mismatch" | "sequence_gap";
}

/**
 * Checks records in sequence order, page by page: feed each page to `next`, then read
 * `verdict()`. Stops at the first break.
 */
export class ChainVerifier {
  private prevSeq: number;
  private prevHash: string;
  private checked = 0;
  private broken: Pick<ChainVerdict, "brokenAt" | "problem"> | undefined;

  constructor(anchor: ChainAnchor = { seq: 0, hash: GENESIS_HASH }) {
    this.prevSeq = anchor.seq;
    this.prevHash = anchor.hash;
  }

  /** False once the chain is broken (no need to read further). */
  next(records: readonly AuditRecord[]): boolean {
    for (const r of records) {
      if (this.broken) return false;
      if (r.seq !== this.prevSeq + 1) this.broken = { brokenAt: r.seq, problem: "sequence_gap" };
      else if (r.prevHash !== this.prevHash) this.broken = { brokenAt: r.seq, problem: "prev_hash_mismatch" };
      else if (hashRecord(r) !== r.hash) this.broken = { brokenAt: r.seq, problem: "hash_mismatch" };
      else {
        this.checked++;
        this.prevSeq = r.seq;
        this.prevHash = r.hash;
      }
    }
    return !this.broken;
  }

  verdict(): ChainVerdict {
    return { ok: !this.broken, checked: this.checked, lastSeq: this.prevSeq, lastHash: this.prevHash, ...this.broken };
  }
}

export function verifyChain(records: readonly AuditRecord[], anchor?: ChainAnchor): ChainVerdict {
  const v = new ChainVerifier(anchor);
  v.next(records);
  return v.verdict();
}

/** Query filters (all optional, combined with AND). */
export interface AuditFilter {
  /** Subject exactly, or a case-insensitive part of the display name. */
  user?: string | undefined;
  camera?: string | undefined;
  door?: string | undefined;
  actions?: readonly AuditAction[] | undefined;
  /** Milliseconds since the epoch, inclusive / exclusive. */
  from?: number | undefined;
  to?: number | undefined;
  /** Only records with a sequence number below this (paging, newest first). */
  beforeSeq?: number | undefined;
  /** At most this many, newest first. */
  limit: number;
}

export const CSV_COLUMNS = ["seq", "time", "action", "outcome", "subject", "name", "session", "source", "camera", "door", "detail", "prev_hash", "hash"] as const;

/** One CSV line (RFC 4180), time as ISO 8601. Cells that a spreadsheet would run as a formula are prefixed with `'`. */
export function csvLine(r: AuditRecord): string {
  const cells = [r.seq, new Date(r.time).toISOString(), r.action, r.outcome, r.subject, r.name, r.session, r.source, r.camera, r.door, r.detail, r.prevHash, r.hash];
  return cells.map((c) => csvCell(c === null ? "" : String(c))).join(",") + "\r\n";
}

function csvCell(s: string): string {
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
