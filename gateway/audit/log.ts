/**
 * The gateway's audit trail: components call `record(entry)`, which never blocks and never
 * throws; entries are written in batches (one transaction per turn of the event loop) in the
 * order recorded. While the store is unavailable entries wait (up to `queueMax`, then new ones
 * are dropped, counted and logged) and are retried with backoff. `close()` writes what waits.
 * Retention runs at start and daily.
 */
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { AuditEntry, AuditFilter, AuditRecord, ChainVerdict } from "./record.ts";
import type { AuditStore } from "./store.ts";

export interface AuditLogOptions {
  store: AuditStore;
  log: Logger;
  /** Entries waiting before new ones are dropped. */
  queueMax: number;
  /** Days kept; 0 keeps everything. */
  retentionDays: number;
  clock?: () => number;
  /** Retry delays while the store fails, ms. Default 200 doubling to 10000. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** The writing half, what components are given. */
export interface AuditSink {
  record(entry: AuditEntry): void;
}

export type AuditLogEvents = {
  /** Records just stored (for live consumers such as the intercom's call log). */
  written: [records: readonly AuditRecord[]];
};

export interface AuditStats {
  written: number;
  writeFailures: number;
  dropped: number;
  queued: number;
  batches: number;
  pruned: number;
}

const DAY_MS = 86_400_000;

export class AuditLog implements AuditSink {
  readonly store: AuditStore;
  readonly events = new SafeEmitter<AuditLogEvents>();
  private readonly log: Logger;
  private readonly opts: AuditLogOptions;
  private readonly clock: () => number;
  private queue: AuditEntry[] = [];
  private writing: Promise<void> | undefined;
  private scheduled = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private failing = false;
  /** Records accepted into the queue since start (written ones count towards `stats.written`). */
  private accepted = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly waiters: Array<() => void> = [];
  readonly stats: AuditStats = { written: 0, writeFailures: 0, dropped: 0, queued: 0, batches: 0, pruned: 0 };

  constructor(opts: AuditLogOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.opts = opts;
    this.clock = opts.clock ?? Date.now;
    this.retryMs = opts.retryMinMs ?? 200;
    if (opts.retentionDays > 0) {
      this.retentionTimer = setInterval(() => void this.applyRetention(), DAY_MS);
      this.retentionTimer.unref();
    }
  }

  /** False while the store fails (writes wait and are retried). */
  get healthy(): boolean {
    return !this.failing && !this.closed;
  }

  /**
   * The store could not be reached at start: records wait (up to `queueMax`) and the store is
   * tried with backoff until it answers, then what waits is written. `healthy` is false meanwhile.
   */
  markUnavailable(): void {
    this.failing = true;
    this.probe();
  }

  private probe(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.store.head().then(
        () => {
          if (!this.failing || this.closed) return;
          this.log.info("audit store reachable again", { waiting: this.queue.length });
          this.failing = false;
          this.retryMs = this.opts.retryMinMs ?? 200;
          this.drain();
        },
        () => {
          if (!this.failing) return;
          this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs ?? 10_000);
          this.probe();
        },
      );
    }, this.retryMs);
    this.retryTimer.unref();
  }

  record(entry: AuditEntry): void {
    if (this.closed) {
      this.stats.dropped++;
      this.log.warn("audit record after close dropped", { action: entry.action });
      return;
    }
    if (this.queue.length >= this.opts.queueMax) {
      this.stats.dropped++;
      if (this.stats.dropped === 1 || this.stats.dropped % 1000 === 0) this.log.error("audit queue full: records dropped", { dropped: this.stats.dropped });
      return;
    }
    this.queue.push({ ...entry, time: entry.time ?? this.clock() });
    this.accepted++;
    this.stats.queued = this.queue.length;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.writing || this.retryTimer) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    if (this.writing || this.queue.length === 0) {
      if (!this.writing && this.queue.length === 0) this.settle();
      return;
    }
    const batch = this.queue;
    this.queue = [];
    this.writing = (async () => {
      try {
        const recs = await this.store.append(batch, this.clock());
        this.stats.written += recs.length;
        this.stats.batches++;
        if (this.failing) this.log.info("audit store writable again", { written: recs.length });
        this.failing = false;
        this.retryMs = this.opts.retryMinMs ?? 200;
        this.stats.queued = this.queue.length;
        this.events.emit("written", recs);
      } catch (err) {
        this.stats.writeFailures++;
        // Put the batch back in front, in order; retry later.
        this.queue = batch.concat(this.queue);
        if (!this.failing) this.log.error("audit store write failed; records wait and are retried", { err, waiting: this.queue.length });
        this.failing = true;
        if (!this.closed) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.drain();
          }, this.retryMs);
          this.retryTimer.unref();
          this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs ?? 10_000);
        }
      } finally {
        this.writing = undefined;
        this.stats.queued = this.queue.length;
      }
      if (this.queue.length && !this.retryTimer && !this.failing) this.drain();
      else if (!this.queue.length) this.settle();
    })();
  }

  private settle(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once everything recorded so far is stored (or, with the store failing, once one more try was made). */
  async flush(): Promise<void> {
    const target = this.accepted;
    let tried = false;
    for (;;) {
      if (this.writing) {
        await this.writing;
        continue;
      }
      if (this.stats.written >= target || this.queue.length === 0) return;
      if (this.failing && tried) return;
      tried = true;
      if (this.retryTimer) {
        clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
      }
      this.drain();
    }
  }

  query(filter: AuditFilter): Promise<AuditRecord[]> {
    return this.store.query(filter);
  }

  verify(): Promise<ChainVerdict> {
    return this.store.verify();
  }

  /** Deletes records past `retentionDays` and records that it did. */
  async applyRetention(): Promise<number> {
    if (this.opts.retentionDays <= 0 || this.closed) return 0;
    try {
      const { deleted, anchor } = await this.store.prune(this.clock() - this.opts.retentionDays * DAY_MS);
      if (deleted > 0) {
        this.stats.pruned += deleted;
        this.record({ action: "audit_pruned", outcome: "success", detail: JSON.stringify({ deleted, anchorSeq: anchor.seq, anchorHash: anchor.hash, retentionDays: this.opts.retentionDays }) });
        this.log.info("audit retention: old records deleted", { deleted, anchorSeq: anchor.seq, anchorHash: anchor.hash });
      }
      return deleted;
    } catch (err) {
      this.log.warn("audit retention failed", { err });
      return 0;
    }
  }

  /**
   * Writes what waits (one last try), logs the chain's head for outside comparison, closes the
   * store. Every caller gets the same promise (a second caller must not flush or close again).
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await this.flush().catch(() => {});
    this.closed = true;
    clearInterval(this.retentionTimer);
    clearTimeout(this.retryTimer);
    if (this.queue.length) this.log.error("audit records not written at close", { lost: this.queue.length });
    try {
      const head = await this.store.head();
      this.log.info("audit trail closed", { headSeq: head.seq, headHash: head.hash });
    } catch {
      /* store gone */
    }
    await this.store.close();
  }
}
