/**
 * Server-Sent Events (HTML Living Standard §9.2) for one browser: framing, heartbeats, a
 * bound on what a slow client may leave buffered, and one idempotent close.
 */
import type { ServerResponse } from "node:http";
import type { WatchReason } from "../auth/types.ts";

/** Why an event stream ended, besides its user's access ending (`sessionEnded`). */
export const StreamEndReasons = {
  /** The browser closed it (tab closed, page left, network gone). */
  clientClosed: "client closed",
  /** The connection failed under it. */
  socketError: "socket error",
  /** The browser left more unread than `maxBufferedBytes`. */
  tooSlow: "client too slow",
  /** The gateway, or the service behind the stream, is shutting down. */
  closing: "closing",
  /** What the stream reports on has ended (a playback session). */
  ended: "ended",
} as const;

/** The stream's user was signed out, their session expired or was revoked, or the right was removed. */
export type SessionEndedReason = `auth: ${WatchReason}`;
export type StreamEndReason = (typeof StreamEndReasons)[keyof typeof StreamEndReasons] | SessionEndedReason;

/** The reason for a stream ended because its user's access ended. */
export function sessionEnded(why: WatchReason): SessionEndedReason {
  return `auth: ${why}`;
}

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
  onClose: (reason: StreamEndReason) => void;
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
    res.on("close", () => this.close(StreamEndReasons.clientClosed));
    res.on("error", () => this.close(StreamEndReasons.socketError));
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Send one event; false when the stream is closed (or just closed for being too slow). */
  send(event: string, data: unknown): boolean {
    return this.write(sseFrame(event, data, this.nextId++));
  }

  /** End the stream (after a last event, if given). Idempotent. */
  close(reason: StreamEndReason, last?: { event: string; data: unknown }): void {
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
      this.close(StreamEndReasons.tooSlow);
      return false;
    }
    this.res.write(text);
    return true;
  }
}
