/**
 * Server-Sent Events (HTML Living Standard §9.2) for one browser: framing, heartbeats, a
 * bound on what a slow client may leave buffered, and one idempotent close.
 */
import type { ServerResponse } from "node:http";

/** One event in the text/event-stream format. `data` is JSON on a single line (JSON.stringify never emits raw newlines). */
export function sseFrame(event: string, data: unknown, id?: number): string {
  if (!/^[A-Za-z0-9_-]+$/.test(event)) throw new TypeError(`bad SSE event name ${event}`);
  return `${id !== undefined ? `id: ${id}\n` : ""}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export interface SseStreamOptions {
  /** Comment line sent this often so proxies and the browser keep the stream open, ms. */
  heartbeatMs: number;
  /** Reconnection delay the browser should use, ms (the `retry:` field). */
  retryMs: number;
  /** A client that leaves more than this unread is dropped, bytes. */
  maxBufferedBytes: number;
  /** Called once when the stream ends, whoever ended it. */
  onClose: (reason: string) => void;
}

export class SseStream {
  private readonly res: ServerResponse;
  private readonly opts: SseStreamOptions;
  private readonly heartbeat: NodeJS.Timeout;
  private nextId = 1;
  private ended = false;

  constructor(res: ServerResponse, opts: SseStreamOptions) {
    this.res = res;
    this.opts = opts;
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      // Reverse proxies (nginx) must not buffer the stream.
      "X-Accel-Buffering": "no",
      Connection: "keep-alive",
    });
    res.write(`retry: ${opts.retryMs}\n\n`);
    this.heartbeat = setInterval(() => this.write(": keepalive\n\n"), opts.heartbeatMs);
    this.heartbeat.unref();
    res.on("close", () => this.close("client closed"));
    res.on("error", () => this.close("socket error"));
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Send one event; false when the stream is closed (or just closed for being too slow). */
  send(event: string, data: unknown): boolean {
    return this.write(sseFrame(event, data, this.nextId++));
  }

  /** End the stream (after a last event, if given). Idempotent. */
  close(reason: string, last?: { event: string; data: unknown }): void {
    if (this.ended) return;
    this.ended = true;
    if (last && this.res.writable) this.res.write(sseFrame(last.event, last.data, this.nextId++));
    clearInterval(this.heartbeat);
    this.res.end();
    this.opts.onClose(reason);
  }

  private write(text: string): boolean {
    if (this.ended) return false;
    if (this.res.writableLength > this.opts.maxBufferedBytes) {
      this.close("client too slow");
      return false;
    }
    this.res.write(text);
    return true;
  }
}
