/**
 * The SIP transaction layer (RFC 3261 §17, with RFC 6026's Accepted states): matching
 * requests and responses to transactions, and every retransmission timer, on an injected
 * clock. The layer knows nothing about sockets: it hands serialized bytes and a
 * destination to `send`.
 *
 * Timers (T1=500 ms, T2=4 s, T4=5 s by default):
 *  client INVITE  A (retransmit, UDP, doubling from T1), B (64·T1 timeout), D (32 s UDP / 0: absorb final retransmissions), M (64·T1, RFC 6026)
 *  client other   E (retransmit, UDP, doubling to T2), F (64·T1 timeout), K (T4 UDP / 0)
 *  server INVITE  G (final retransmit, UDP, doubling to T2), H (64·T1: no ACK), I (T4 UDP / 0), L (64·T1, RFC 6026)
 *  server other   J (64·T1 UDP / 0)
 * The UAS 2xx retransmission of §13.3.1.4 (T1 doubling to T2 until ACK, give up at 64·T1)
 * lives on the INVITE server transaction too, since it shares Timer L's lifetime.
 */
import type { Logger } from "../../config/log.ts";
import type { SipClock, TimerHandle } from "./clock.ts";
import { isReliable, responseDestination, stampReceived, type Endpoint } from "./endpoint.ts";
import {
  MAGIC_COOKIE,
  callIdOf,
  cseqOf,
  fromOf,
  makeResponse,
  serializeMessage,
  tagOf,
  topVia,
  SipHeaders,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  type Via,
} from "./message.ts";

export interface SipTimers {
  /** RTT estimate, ms. Default 500. */
  T1: number;
  /** Maximum retransmit interval for non-INVITE requests and INVITE responses, ms. Default 4000. */
  T2: number;
  /** Maximum duration a message remains in the network, ms. Default 5000. */
  T4: number;
}

export const DEFAULT_TIMERS: SipTimers = Object.freeze({ T1: 500, T2: 4000, T4: 5000 });

export interface TransactionEnv {
  readonly clock: SipClock;
  readonly timers: SipTimers;
  readonly log: Logger;
  /** Send bytes; `onError` reports a failure the transport detects (TCP connect refused). */
  send(data: Buffer, to: Endpoint, onError?: (err: Error) => void): void;
}

export interface TransactionUser {
  /**
   * A new request. `tx` is its server transaction (undefined for an ACK that matched none:
   * the ACK of a 2xx, which belongs to the dialog, §17.2.1/§13.3.1.4).
   */
  onRequest(req: SipRequest, tx: ServerTransaction | undefined, source: Endpoint): void;
  /** A response no client transaction wants (a 2xx retransmitted after the INVITE transaction ended). */
  onStrayResponse?(res: SipResponse, source: Endpoint): void;
}

/** Counted reasons for messages the layer absorbs or drops. */
export interface TransactionStats {
  serverTransactions: number;
  clientTransactions: number;
  retransmissionsSent: number;
  retransmissionsAbsorbed: number;
  timeouts: number;
  strayResponses: number;
}

type ServerState = "trying" | "proceeding" | "completed" | "confirmed" | "accepted" | "terminated";
type ClientState = "calling" | "trying" | "proceeding" | "completed" | "accepted" | "terminated";

/** Key of a server transaction (§17.2.3); RFC 2543 requests fall back to dialog identifiers. */
function serverKey(req: SipMessage, via: Via, method: string): string {
  if (via.branch?.startsWith(MAGIC_COOKIE)) return `${via.branch}|${via.host}:${via.port ?? ""}|${method}`;
  // §17.2.3 (RFC 2543 compatibility): Request-URI, To tag, From tag, Call-ID, CSeq and top Via.
  const cseq = cseqOf(req);
  return `2543|${callIdOf(req)}|${cseq.seq}|${tagOf(fromOf(req)) ?? ""}|${via.host}:${via.port ?? ""}|${via.branch ?? ""}|${method}`;
}

function clientKey(branch: string, method: string): string {
  return `${branch}|${method}`;
}

/** A server transaction: the TU answers through `respond`. */
export class ServerTransaction {
  readonly request: SipRequest;
  readonly source: Endpoint;
  readonly key: string;
  readonly method: string;
  /** Called if an INVITE's final response is never acknowledged (Timer H, or a 2xx by Timer L). */
  onNoAck: (() => void) | undefined;
  private st: ServerState;
  private readonly dest: Endpoint;
  private readonly layer: TransactionLayer;
  private lastProvisional: Buffer | undefined;
  private lastFinal: Buffer | undefined;
  private finalStatus = 0;
  private timerRetransmit: TimerHandle | undefined;
  private timerEnd: TimerHandle | undefined;
  private interval = 0;
  private acked = false;

  constructor(layer: TransactionLayer, req: SipRequest, via: Via, source: Endpoint, key: string) {
    this.layer = layer;
    this.request = req;
    this.source = source;
    this.key = key;
    this.method = req.method;
    this.dest = responseDestination(via, source);
    this.st = req.method === "INVITE" ? "proceeding" : "trying";
  }

  get state(): ServerState {
    return this.st;
  }

  /** The final status sent, or 0. */
  get finalResponse(): number {
    return this.finalStatus;
  }

  /** True until a final response was sent. */
  get pending(): boolean {
    return this.finalStatus === 0 && this.st !== "terminated";
  }

  /** Build and send a response with `makeResponse` options. */
  reply(status: number, opts: Parameters<typeof makeResponse>[2] = {}): SipResponse {
    const res = makeResponse(this.request, status, opts);
    this.respond(res);
    return res;
  }

  /** Send a response from the TU (§17.2.1 / §17.2.2 state machines). */
  respond(res: SipResponse): void {
    if (this.st === "terminated" || this.st === "completed" || this.st === "confirmed") {
      this.layer.env.log.debug("sip: response after final ignored", { status: res.status, method: this.method });
      return;
    }
    if (this.st === "accepted") {
      // §13.3.1.4: an identical 2xx may be retransmitted by the TU; anything else is ignored.
      if (res.status >= 200 && res.status < 300) this.layer.sendRaw(serializeMessage(res), this.dest);
      return;
    }
    const data = serializeMessage(res);
    const reliable = isReliable(this.source.transport);
    const { T1, T2 } = this.layer.env.timers;
    if (res.status < 200) {
      this.lastProvisional = data;
      if (this.st === "trying") this.st = "proceeding";
      this.layer.sendRaw(data, this.dest);
      return;
    }
    this.finalStatus = res.status;
    this.lastFinal = data;
    this.layer.sendRaw(data, this.dest);
    if (this.method !== "INVITE") {
      // §17.2.2: Completed; Timer J absorbs request retransmissions (0 on reliable transports).
      this.st = "completed";
      this.timerEnd = this.layer.env.clock.setTimer(reliable ? 0 : 64 * T1, () => this.terminate());
      return;
    }
    if (res.status < 300) {
      // RFC 6026 §8.5: Accepted; Timer L. §13.3.1.4: retransmit the 2xx until ACK (UDP only).
      this.st = "accepted";
      if (!reliable) this.armRetransmit(T1, T2);
      this.timerEnd = this.layer.env.clock.setTimer(64 * T1, () => {
        const unacked = !this.acked;
        this.terminate();
        if (unacked) this.onNoAck?.();
      });
      return;
    }
    // §17.2.1: Completed; Timer G retransmits (UDP), Timer H waits for the ACK.
    this.st = "completed";
    if (!reliable) this.armRetransmit(T1, T2);
    this.timerEnd = this.layer.env.clock.setTimer(64 * T1, () => {
      this.layer.stats.timeouts++;
      this.terminate();
      this.onNoAck?.();
    });
  }

  /** The dialog saw the ACK for our 2xx (§13.3.1.4): stop retransmitting it. */
  ackReceived(): void {
    this.acked = true;
    this.timerRetransmit?.cancel();
    this.timerRetransmit = undefined;
  }

  /** Retransmission of the request, or its ACK / CANCEL routing, as seen by the layer. */
  receive(req: SipRequest): void {
    if (req.method === "ACK") {
      if (this.st === "completed") {
        // §17.2.1: Confirmed; Timer I absorbs ACK retransmissions.
        this.st = "confirmed";
        this.timerRetransmit?.cancel();
        this.timerRetransmit = undefined;
        this.timerEnd?.cancel();
        const reliable = isReliable(this.source.transport);
        this.timerEnd = this.layer.env.clock.setTimer(reliable ? 0 : this.layer.env.timers.T4, () => this.terminate());
      }
      this.layer.stats.retransmissionsAbsorbed++;
      return;
    }
    this.layer.stats.retransmissionsAbsorbed++;
    if (this.st === "proceeding" && this.lastProvisional) this.layer.sendRaw(this.lastProvisional, this.dest);
    else if (this.st === "completed" && this.lastFinal) this.layer.sendRaw(this.lastFinal, this.dest);
    // trying / accepted / confirmed: absorbed (§17.2.1, §17.2.2, RFC 6026 §8.6).
  }

  private armRetransmit(first: number, cap: number): void {
    this.interval = first;
    const tick = (): void => {
      if (!this.lastFinal) return;
      this.layer.stats.retransmissionsSent++;
      this.layer.sendRaw(this.lastFinal, this.dest);
      this.interval = Math.min(this.interval * 2, cap);
      this.timerRetransmit = this.layer.env.clock.setTimer(this.interval, tick);
    };
    this.timerRetransmit = this.layer.env.clock.setTimer(this.interval, tick);
  }

  /** End the transaction now (and its timers). */
  terminate(): void {
    if (this.st === "terminated") return;
    this.st = "terminated";
    this.timerRetransmit?.cancel();
    this.timerEnd?.cancel();
    this.timerRetransmit = undefined;
    this.timerEnd = undefined;
    this.layer.removeServer(this);
  }
}

/** Called with every response (synthetic 408 on timeout, 503 on transport failure). */
export type ResponseHandler = (res: SipResponse, synthetic: boolean) => void;

/** A client transaction (§17.1). */
export class ClientTransaction {
  readonly request: SipRequest;
  readonly dest: Endpoint;
  readonly branch: string;
  readonly method: string;
  private st: ClientState;
  private readonly layer: TransactionLayer;
  private readonly data: Buffer;
  private handler: ResponseHandler;
  private timerRetransmit: TimerHandle | undefined;
  private timerTimeout: TimerHandle | undefined;
  private timerEnd: TimerHandle | undefined;
  private interval: number;
  private ack: Buffer | undefined;
  private provisionalSeen = false;

  constructor(layer: TransactionLayer, req: SipRequest, dest: Endpoint, branch: string, handler: ResponseHandler) {
    this.layer = layer;
    this.request = req;
    this.dest = dest;
    this.branch = branch;
    this.method = req.method;
    this.handler = handler;
    this.data = serializeMessage(req);
    this.interval = layer.env.timers.T1;
    this.st = req.method === "INVITE" ? "calling" : "trying";
  }

  get state(): ClientState {
    return this.st;
  }

  /** True once a provisional response arrived (CANCEL may be sent, §9.1). */
  get provisional(): boolean {
    return this.provisionalSeen;
  }

  /** Send the request and arm Timers A/B or E/F. */
  start(): void {
    const { T1, T2 } = this.layer.env.timers;
    this.send(this.data);
    if (!isReliable(this.dest.transport)) {
      const cap = this.method === "INVITE" ? Infinity : T2;
      const tick = (): void => {
        this.layer.stats.retransmissionsSent++;
        this.send(this.data);
        this.interval = Math.min(this.interval * 2, cap);
        this.timerRetransmit = this.layer.env.clock.setTimer(this.interval, tick);
      };
      this.timerRetransmit = this.layer.env.clock.setTimer(this.interval, tick);
    }
    this.timerTimeout = this.layer.env.clock.setTimer(64 * T1, () => {
      this.layer.stats.timeouts++;
      this.finish(408, "Request Timeout");
    });
  }

  private send(data: Buffer): void {
    this.layer.env.send(data, this.dest, (err) => {
      if (this.st === "terminated" || this.st === "completed" || this.st === "accepted") return;
      this.layer.env.log.debug("sip: transport error on client transaction", { method: this.method, err });
      this.finish(503, "Service Unavailable");
    });
  }

  /** Synthesize a local final response and terminate (timeout, transport error, close). */
  finish(status: number, reason: string): void {
    if (this.st === "terminated") return;
    const res = makeResponse(this.request, status, { reason });
    this.terminate();
    this.safeHandle(res, true);
  }

  /** A response matched to this transaction. */
  receive(res: SipResponse): void {
    const { T1, T2, T4 } = this.layer.env.timers;
    const reliable = isReliable(this.dest.transport);
    if (res.status < 200) {
      if (this.st === "calling" || this.st === "trying" || this.st === "proceeding") {
        this.provisionalSeen = true;
        if (this.method === "INVITE") {
          // §17.1.1.2: Proceeding stops Timers A and B (the TU's own timer guards the call).
          this.timerRetransmit?.cancel();
          this.timerRetransmit = undefined;
          this.timerTimeout?.cancel();
          this.timerTimeout = undefined;
        } else if (this.st === "trying" && !reliable) {
          // §17.1.2.2: in Proceeding, Timer E retransmits at T2.
          this.timerRetransmit?.cancel();
          const tick = (): void => {
            this.layer.stats.retransmissionsSent++;
            this.send(this.data);
            this.timerRetransmit = this.layer.env.clock.setTimer(T2, tick);
          };
          this.timerRetransmit = this.layer.env.clock.setTimer(T2, tick);
        }
        this.st = "proceeding";
        this.safeHandle(res, false);
      }
      return;
    }
    if (this.method === "INVITE") {
      if (res.status < 300) {
        if (this.st === "accepted") {
          // RFC 6026 §8.4: 2xx retransmissions go to the TU (which re-sends its ACK).
          this.safeHandle(res, false);
          return;
        }
        if (this.st === "completed" || this.st === "terminated") return;
        this.stopTimers();
        this.st = "accepted";
        this.timerEnd = this.layer.env.clock.setTimer(64 * T1, () => this.terminate());
        this.safeHandle(res, false);
        return;
      }
      if (this.st === "completed") {
        // §17.1.1.2: retransmitted final response → retransmit the ACK.
        if (this.ack) this.send(this.ack);
        this.layer.stats.retransmissionsAbsorbed++;
        return;
      }
      if (this.st === "accepted" || this.st === "terminated") return;
      this.stopTimers();
      this.st = "completed";
      this.ack = serializeMessage(buildAckForNon2xx(this.request, res));
      this.send(this.ack);
      this.timerEnd = this.layer.env.clock.setTimer(reliable ? 0 : 32_000, () => this.terminate());
      this.safeHandle(res, false);
      return;
    }
    if (this.st === "completed" || this.st === "terminated") {
      this.layer.stats.retransmissionsAbsorbed++;
      return;
    }
    this.stopTimers();
    this.st = "completed";
    this.timerEnd = this.layer.env.clock.setTimer(reliable ? 0 : T4, () => this.terminate());
    this.safeHandle(res, false);
  }

  private safeHandle(res: SipResponse, synthetic: boolean): void {
    try {
      this.handler(res, synthetic);
    } catch (err) {
      this.layer.env.log.error("sip: response handler threw", { err, method: this.method, status: res.status });
    }
  }

  /** Replace the handler (a TU that takes over, e.g. a call after the INVITE). */
  setHandler(h: ResponseHandler): void {
    this.handler = h;
  }

  private stopTimers(): void {
    this.timerRetransmit?.cancel();
    this.timerTimeout?.cancel();
    this.timerRetransmit = undefined;
    this.timerTimeout = undefined;
  }

  terminate(): void {
    if (this.st === "terminated") return;
    this.st = "terminated";
    this.stopTimers();
    this.timerEnd?.cancel();
    this.timerEnd = undefined;
    this.layer.removeClient(this);
  }
}

/** §17.1.1.3: the ACK for a non-2xx final response, in the INVITE's transaction. */
export function buildAckForNon2xx(invite: SipRequest, res: SipResponse): SipRequest {
  const h = new SipHeaders();
  const via = invite.headers.getList("via")[0];
  if (via) h.append("Via", via);
  for (const r of invite.headers.getAll("route")) h.append("Route", r);
  h.append("Max-Forwards", "70");
  h.append("From", invite.headers.get("from") ?? "");
  h.append("To", res.headers.get("to") ?? invite.headers.get("to") ?? "");
  h.append("Call-ID", invite.headers.get("call-id") ?? "");
  h.append("CSeq", `${cseqOf(invite).seq} ACK`);
  return { kind: "request", method: "ACK", uri: invite.uri, headers: h, body: Buffer.alloc(0) };
}

/** Routes messages to transactions and owns their tables. */
export class TransactionLayer {
  readonly env: TransactionEnv;
  readonly stats: TransactionStats = {
    serverTransactions: 0,
    clientTransactions: 0,
    retransmissionsSent: 0,
    retransmissionsAbsorbed: 0,
    timeouts: 0,
    strayResponses: 0,
  };
  private readonly tu: TransactionUser;
  private readonly servers = new Map<string, ServerTransaction>();
  private readonly clients = new Map<string, ClientTransaction>();
  private closed = false;

  constructor(env: TransactionEnv, tu: TransactionUser) {
    this.env = env;
    this.tu = tu;
  }

  /** Live transaction counts. */
  get size(): { server: number; client: number } {
    return { server: this.servers.size, client: this.clients.size };
  }

  /** Entry point for every parsed message from the transport. */
  receive(msg: SipMessage, source: Endpoint): void {
    if (this.closed) return;
    if (msg.kind === "response") {
      const via = topVia(msg);
      const method = cseqOf(msg).method;
      const tx = via?.branch ? this.clients.get(clientKey(via.branch, method)) : undefined;
      if (tx) tx.receive(msg);
      else {
        this.stats.strayResponses++;
        this.tu.onStrayResponse?.(msg, source);
      }
      return;
    }
    let via = topVia(msg);
    if (!via) return; // validated by the parser; defensive
    via = stampReceived(msg, via, source);
    const lookup = msg.method === "ACK" ? "INVITE" : msg.method;
    const key = serverKey(msg, via, lookup);
    const existing = this.servers.get(key);
    if (existing) {
      existing.receive(msg);
      return;
    }
    if (msg.method === "ACK") {
      // The ACK of a 2xx is its own transaction and belongs to the dialog (§13.2.2.4, §17.2.1).
      this.tu.onRequest(msg, undefined, source);
      return;
    }
    const tx = new ServerTransaction(this, msg, via, source, serverKey(msg, via, msg.method));
    this.servers.set(tx.key, tx);
    this.stats.serverTransactions++;
    // §17.2.1: answer an INVITE with 100 Trying at once (the TU may take longer than 200 ms).
    if (msg.method === "INVITE") tx.reply(100);
    this.tu.onRequest(msg, tx, source);
  }

  /** The INVITE server transaction a CANCEL refers to (§9.2: same branch, sent-by, Request-URI). */
  findInviteFor(cancel: SipRequest): ServerTransaction | undefined {
    const via = topVia(cancel);
    if (!via) return undefined;
    return this.servers.get(serverKey(cancel, via, "INVITE"));
  }

  /** Start a client transaction; the request's top Via must carry `branch`. */
  request(req: SipRequest, dest: Endpoint, handler: ResponseHandler): ClientTransaction {
    const via = topVia(req);
    const branch = via?.branch;
    if (!branch) throw new Error("client request without a branch");
    const tx = new ClientTransaction(this, req, dest, branch, handler);
    if (this.closed) {
      queueMicrotask(() => tx.finish(503, "Service Unavailable"));
      return tx;
    }
    this.clients.set(clientKey(branch, req.method), tx);
    this.stats.clientTransactions++;
    tx.start();
    return tx;
  }

  /** Send outside any transaction (ACK for 2xx, stateless 4xx). */
  sendStateless(msg: SipMessage, dest: Endpoint): void {
    this.sendRaw(serializeMessage(msg), dest);
  }

  sendRaw(data: Buffer, dest: Endpoint): void {
    if (this.closed) return;
    this.env.send(data, dest);
  }

  removeServer(tx: ServerTransaction): void {
    if (this.servers.get(tx.key) === tx) this.servers.delete(tx.key);
  }

  removeClient(tx: ClientTransaction): void {
    const k = clientKey(tx.branch, tx.method);
    if (this.clients.get(k) === tx) this.clients.delete(k);
  }

  /** Stop all timers; pending client transactions get a synthetic 503. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const tx of [...this.servers.values()]) tx.terminate();
    for (const tx of [...this.clients.values()]) tx.finish(503, "Service Unavailable");
  }
}
