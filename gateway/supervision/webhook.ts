/**
 * Supervision events POSTed to the administrators' webhook (`supervision.webhook.url`,
 * from the configuration only, never an address a client gave): one JSON body per event,
 * one delivery at a time in order, each bounded by a timeout, redirects not followed.
 * A bounded queue: when the receiver is slow or down, new events beyond `queueMax` are
 * dropped and counted; a delivery that fails (network error, timeout, non-2xx) is counted
 * and not retried (the event stays in the administrators' list).
 */
import type { Logger } from "../../config/log.ts";
import type { SupervisionEvent } from "./event-log.ts";

export interface WebhookOptions {
  url: string;
  timeoutMs: number;
  queueMax: number;
  log: Logger;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
  /** Sent as `source` in each body, e.g. the gateway's public URL. */
  source?: string;
}

export interface WebhookStats {
  sent: number;
  failed: number;
  dropped: number;
  queued: number;
}

export class Webhook {
  private readonly o: WebhookOptions;
  private readonly queue: SupervisionEvent[] = [];
  private readonly counts = { sent: 0, failed: 0, dropped: 0 };
  private running: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private lastWarned = "";

  constructor(o: WebhookOptions) {
    this.o = o;
  }

  /** Queues an event for delivery (dropped and counted beyond the bound, or after close). */
  send(e: SupervisionEvent): void {
    if (this.closed || this.queue.length >= this.o.queueMax) {
      this.counts.dropped++;
      return;
    }
    this.queue.push(e);
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  stats(): WebhookStats {
    return { ...this.counts, queued: this.queue.length };
  }

  /** Resolves once the queue is empty (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stops delivering: the delivery under way is aborted, waiting events are dropped and counted; idempotent. */
  /** Drops what waits, aborts the request in flight; every caller gets the same promise. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.counts.dropped += this.queue.length;
      this.queue.length = 0;
      this.abort.abort();
      this.closing = Promise.resolve(this.running).then(() => {});
    }
    return this.closing;
  }

  private async drain(): Promise<void> {
    const f = this.o.fetch ?? fetch;
    for (let e = this.queue.shift(); e && !this.closed; e = this.queue.shift()) {
      try {
        const res = await f(this.o.url, {
          method: "POST",
          headers: { "Content-Type": "application/json", "User-Agent": "gatehouse-supervisor" },
          body: JSON.stringify({ source: this.o.source ?? "gatehouse", event: e }),
          redirect: "manual",
          signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.o.timeoutMs)]),
        });
        await res.body?.cancel().catch(() => {});
        if (res.status >= 200 && res.status < 300) {
          this.counts.sent++;
          continue;
        }
        this.failed(`HTTP ${res.status}`);
      } catch (err) {
        if (this.closed) break;
        const name = (err as { name?: string }).name;
        this.failed(name === "TimeoutError" ? `no answer within ${this.o.timeoutMs} ms` : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message);
      }
    }
  }

  private failed(why: string): void {
    this.counts.failed++;
    // One warning per distinct problem, so a dead receiver does not flood the log.
    if (why !== this.lastWarned) this.o.log.warn("supervision webhook delivery failed", { reason: why });
    this.lastWarned = why;
  }
}
