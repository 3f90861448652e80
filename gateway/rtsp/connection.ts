/**
 * One RTSP control connection (TCP, or TLS for rtsps://): the socket adapter around
 * RtspStreamParser. Sends requests one at a time with increasing CSeq (RFC 2326 §12.17),
 * matches answers by CSeq, enforces the request timeout, answers the few requests a
 * server may send us, and hands interleaved frames to the owner without copying.
 */
import { connect as tcpConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { BadInputError} from "../../config/errors.ts";
import { ClosedError, UpstreamError, type GatehouseError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import {
  RtspHeaders,
  RtspStreamParser,
  serializeRequest,
  serializeResponse,
  type RtspRequest,
  type RtspResponse,
} from "./message.ts";
import type { TimerHandle, Timers } from "./timers.ts";

export interface RtspEndpoint {
  host: string;
  port: number;
  /** rtsps:// */
  tls: boolean;
  /** Accept any certificate (config camera.tlsInsecure). Default false: fail closed. */
  tlsInsecure: boolean;
}

export interface RtspConnectionOptions {
  endpoint: RtspEndpoint;
  /** Per-request (and connect) timeout, ms. */
  requestTimeoutMs: number;
  log: Logger;
  timers: Timers;
  /** Sent in every request. */
  userAgent: string;
  /** An interleaved frame arrived (RFC 2326 §10.12). `data` is only valid during the call. */
  onInterleaved(channel: number, data: Buffer): void;
}

export type ConnectionEvents = {
  /** The connection ended; the error says why (ClosedError when we closed it). */
  closed: [GatehouseError];
  /** Malformed input was dropped (`fatal`: the connection is closing because of it). */
  malformed: [BadInputError, boolean];
  /** The server sent us a request (already answered). */
  request: [RtspRequest];
};

interface Pending {
  method: string;
  cseq: number;
  resolve(r: RtspResponse): void;
  reject(e: GatehouseError): void;
  timer: TimerHandle;
}

export class RtspConnection {
  readonly events: SafeEmitter<ConnectionEvents>;
  private readonly opts: RtspConnectionOptions;
  private readonly socket: Socket;
  private readonly parser = new RtspStreamParser();
  private cseq = 0;
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closedWith: GatehouseError | undefined;
  /** Responses that matched no outstanding request (late answers after a timeout, bogus CSeq). */
  unmatched = 0;

  private constructor(opts: RtspConnectionOptions, socket: Socket) {
    this.opts = opts;
    this.socket = socket;
    this.events = new SafeEmitter<ConnectionEvents>((event, err) =>
      opts.log.error("rtsp connection listener failed", { event, err }),
    );
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      this.close(new UpstreamError(`connection to recorder failed: ${err.code ?? err.message}`, { cause: err })),
    );
    socket.on("end", () => this.close(new UpstreamError("recorder closed the connection")));
    socket.on("close", () => this.close(new UpstreamError("recorder closed the connection")));
  }

  /** Connects (TCP or TLS) within the request timeout. */
  static open(opts: RtspConnectionOptions): Promise<RtspConnection> {
    const { endpoint: ep, timers } = opts;
    return new Promise((resolve, reject) => {
      let socket: Socket;
      const ready = (): void => {
        timers.clearTimeout(timer);
        socket.removeListener("error", fail);
        resolve(new RtspConnection(opts, socket));
      };
      const fail = (err: NodeJS.ErrnoException): void => {
        timers.clearTimeout(timer);
        socket.destroy();
        const what = ep.tls ? "TLS connection" : "connection";
        reject(new UpstreamError(`${what} to ${ep.host}:${ep.port} failed: ${err.code ?? err.message}`, { cause: err }));
      };
      if (ep.tls) {
        socket = tlsConnect({
          host: ep.host,
          port: ep.port,
          // SNI must not carry an IP address (RFC 6066 §3).
          servername: isIP(ep.host) ? undefined : ep.host,
          rejectUnauthorized: !ep.tlsInsecure,
        });
        socket.once("secureConnect", ready);
      } else {
        socket = tcpConnect({ host: ep.host, port: ep.port });
        socket.once("connect", ready);
      }
      socket.once("error", fail);
      const timer = timers.setTimeout(
        () => fail(Object.assign(new Error("timeout"), { code: `no answer within ${opts.requestTimeoutMs} ms` })),
        opts.requestTimeoutMs,
      );
    });
  }

  get localAddress(): string {
    return this.socket.localAddress ?? "";
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? this.opts.endpoint.host;
  }

  /** 4 or 6. */
  get remoteFamily(): 4 | 6 {
    return this.socket.remoteFamily === "IPv6" ? 6 : 4;
  }

  get closed(): GatehouseError | undefined {
    return this.closedWith;
  }

  /**
   * Sends a request and resolves with the answer (any status). Requests are serialised:
   * RTSP servers are not required to pipeline. CSeq and User-Agent are set here.
   */
  request(method: string, uri: string, headers = new RtspHeaders(), body: Buffer = Buffer.alloc(0)): Promise<RtspResponse> {
    const run = (): Promise<RtspResponse> => this.send(method, uri, headers, body);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private send(method: string, uri: string, headers: RtspHeaders, body: Buffer): Promise<RtspResponse> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const cseq = ++this.cseq;
    const h = headers.clone();
    h.set("CSeq", String(cseq));
    if (!h.has("User-Agent")) h.set("User-Agent", this.opts.userAgent);
    let bytes: Buffer;
    try {
      bytes = serializeRequest({ method, uri, headers: h, body });
    } catch (err) {
      return Promise.reject(err as GatehouseError);
    }
    return new Promise<RtspResponse>((resolve, reject) => {
      const timer = this.opts.timers.setTimeout(() => {
        if (this.pending?.cseq !== cseq) return;
        this.pending = undefined;
        reject(new UpstreamError(`${method}: no answer within ${this.opts.requestTimeoutMs} ms`));
      }, this.opts.requestTimeoutMs);
      this.pending = { method, cseq, resolve, reject, timer };
      this.opts.log.debug("rtsp request", { method, cseq });
      this.socket.write(bytes);
    });
  }

  /** Writes raw bytes (e.g. an interleaved RTCP frame). Dropped when closed. */
  /**
   * Stops (true) or resumes reading the socket: TCP flow control then holds the recorder
   * back (a replay sent faster than it is played). Answers are not read either while held,
   * so resume before a request.
   */
  holdReading(hold: boolean): void {
    if (this.closedWith) return;
    if (hold) this.socket.pause();
    else this.socket.resume();
  }

  write(bytes: Buffer): void {
    if (!this.closedWith) this.socket.write(bytes);
  }

  /** Closes the socket; pending requests fail with `reason`. Idempotent. */
  close(reason: GatehouseError | string = "closed"): void {
    if (this.closedWith) return;
    const err = typeof reason === "string" ? new ClosedError(reason) : reason;
    this.closedWith = err;
    this.failPending(err);
    this.socket.destroy();
    this.events.emit("closed", err);
  }

  private failPending(err: GatehouseError): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.opts.timers.clearTimeout(p.timer);
    p.reject(err);
  }

  private onData(chunk: Buffer): void {
    const events = this.parser.push(chunk);
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      if (ev.type === "interleaved") {
        try {
          this.opts.onInterleaved(ev.channel, ev.data);
        } catch (err) {
          this.opts.log.error("interleaved frame handler failed", { err });
        }
      } else if (ev.type === "response") this.onResponse(ev.message);
      else if (ev.type === "request") this.onRequest(ev.message);
      else {
        this.events.emit("malformed", ev.error, ev.fatal);
        if (ev.fatal) {
          this.close(new UpstreamError(`RTSP protocol error from recorder: ${ev.error.message}`, { cause: ev.error }));
          return;
        }
        // The dropped message may have been our answer: fail now rather than at the timeout.
        if (this.pending)
          this.failPending(
            new UpstreamError(`${this.pending.method}: malformed answer: ${ev.error.message}`, { cause: ev.error }),
          );
      }
      if (this.closedWith) return;
    }
  }

  private onResponse(res: RtspResponse): void {
    const p = this.pending;
    const cseqText = res.headers.get("CSeq");
    const cseq = cseqText !== undefined && /^\s*\d+\s*$/.test(cseqText) ? Number(cseqText) : undefined;
    // Some recorders omit CSeq; with one request outstanding the answer can only be for it.
    if (!p || (cseq !== undefined && cseq !== p.cseq)) {
      this.unmatched++;
      this.opts.log.debug("rtsp response matches no request", { cseq: cseqText, status: res.status });
      return;
    }
    this.pending = undefined;
    this.opts.timers.clearTimeout(p.timer);
    p.resolve(res);
  }

  /** RFC 2326 §10: a server may send OPTIONS, GET_PARAMETER, SET_PARAMETER, ANNOUNCE, REDIRECT. */
  private onRequest(req: RtspRequest): void {
    const headers = new RtspHeaders();
    const cseq = req.headers.get("CSeq");
    if (cseq !== undefined) headers.set("CSeq", cseq);
    const ok = req.method === "OPTIONS" || req.method === "GET_PARAMETER";
    if (req.method === "OPTIONS") headers.set("Public", "OPTIONS, GET_PARAMETER");
    try {
      this.write(serializeResponse({ status: ok ? 200 : 501, reason: ok ? "OK" : "Not Implemented", headers, body: Buffer.alloc(0) }));
    } catch {
      // a CSeq with control characters: leave the request unanswered
    }
    this.events.emit("request", req);
  }
}
