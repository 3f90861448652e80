/**
 * The front door: one TCP listener (the HTTPS port, 443 in production) shared by
 * HTTPS, WebSocket signaling and TURN over TCP and TLS.
 *
 * Each connection's first bytes decide (see sniff.ts). A TLS ClientHello is terminated
 * here and the decrypted stream is sniffed again. TURN connections go to the TURN
 * server's TCP handler with the bytes already read; everything else is injected into
 * the gateway's `http.Server` as a 'connection' (decrypted TLSSocket for HTTPS), so
 * keep-alive, pipelining and WebSocket upgrades work exactly as on a plain server.
 *
 * Nothing here waits forever for a client (slowloris):
 * - a connection that sends nothing decisive within `firstBytesTimeoutMs`, or does not
 *   finish its TLS handshake within `tlsHandshakeTimeoutMs`, is closed;
 * - every HTTP request must bring its headers within `headersTimeoutMs` and the whole
 *   request within `requestTimeoutMs` (408, then close), and an idle keep-alive connection
 *   ends after `keepAliveTimeoutMs`. Node's http.Server enforces those only once it has
 *   "listened", which a server fed by `emit('connection')` never does: the front door, its
 *   real listener, starts that tracking for it;
 * - one client address holds at most `maxConnectionsPerSource` connections (trusted reverse
 *   proxies exempt), and when `maxConnections` are open, the oldest connection that has not
 *   yet completed a request is closed to make room, so a flood of unfinished requests can
 *   delay but never lock out a real client.
 *
 * Plain HTTP on a port that has TLS is not served: GET and HEAD are redirected (308) to the
 * same path on the HTTPS origin, anything else gets 400 (its body already crossed the network
 * in clear; a redirect would only invite the client to send it again). TURN over plain TCP
 * stays accepted there (`turn:host:443?transport=tcp`).
 */
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { Logger } from "../../config/log.ts";
import type { CidrList } from "../../config/net/cidr.ts";
import type { TurnTcpHandler } from "../../turn/server.ts";
import { normalizeAddress, stampClientAddress } from "./client-address.ts";
import { sniff, type Protocol } from "./sniff.ts";

export { sniff, type Protocol } from "./sniff.ts";
export { clientAddress } from "./client-address.ts";

export interface FrontDoorOptions {
  /** Address to bind. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** PEM certificate and key: TLS is terminated here when given. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Accept plain (unencrypted) HTTP and TURN/TCP next to TLS on the same port. Default true. */
  allowPlain?: boolean;
  /** The gateway's HTTP server; it must not listen itself. */
  http: http.Server;
  /** TURN over TCP/TLS; without it STUN-looking connections are treated as HTTP. */
  turn?: TurnTcpHandler;
  log: Logger;
  /** Milliseconds for a new connection's first decisive bytes. Default 10000. */
  firstBytesTimeoutMs?: number;
  /** Milliseconds for the TLS handshake. Default 10000. */
  tlsHandshakeTimeoutMs?: number;
  /** Milliseconds for each HTTP request's headers (then 408 and close). Default 10000. */
  headersTimeoutMs?: number;
  /** Milliseconds for each whole HTTP request, body included (then 408 and close). Default 30000. */
  requestTimeoutMs?: number;
  /** Milliseconds an idle keep-alive HTTP connection stays open. Default 5000. */
  keepAliveTimeoutMs?: number;
  /**
   * Open connections at once, whatever they turn out to be. When full, the oldest connection
   * that has not completed a request yet is closed for the new one; with none, the new one is
   * refused. Default 10000.
   */
  maxConnections?: number;
  /** Open connections per client address; more are refused at once. Default 256. */
  maxConnectionsPerSource?: number;
  /**
   * Trusted reverse proxies (`server.trustProxy`): exempt from the per-source cap (they carry
   * many clients), and their `X-Forwarded-For` names the client (see client-address.ts).
   */
  trustedProxies?: CidrList;
  /** Where plain HTTP on the TLS port is redirected, e.g. `https://cams.example.com`. Default: the Host the client asked for, on this port. */
  httpsOrigin?: string;
}

export interface FrontDoorStats {
  http: number;
  https: number;
  turnTcp: number;
  turnTls: number;
  /** Closed for sending nothing decisive in time or failing the TLS handshake. */
  timedOut: number;
  tlsFailed: number;
  /** Plain connections refused because `allowPlain` is false. */
  plainRefused: number;
  /** Plain HTTP requests on the TLS port answered with a redirect to HTTPS (or 400). */
  plainRedirected: number;
  /** New connections refused: their address already held `maxConnectionsPerSource`. */
  refusedPerSource: number;
  /** New connections refused: `maxConnections` open, every one of them with a completed request. */
  refusedFull: number;
  /** Connections without a completed request closed to make room for a new one. */
  evicted: number;
}

export interface FrontDoor {
  readonly host: string;
  readonly port: number;
  readonly stats: Readonly<FrontDoorStats>;
  /** Connections accepted and not yet closed, whatever they turned out to be. */
  readonly connections: number;
  /**
   * Stop listening (no new connections; those accepted carry on until close). The first step
   * of a graceful shutdown. Idempotent.
   */
  stopAccepting(): void;
  /** Stop listening and destroy every connection accepted here. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

type Layer = "plain" | "tls";

/** One accepted connection, for the caps. */
interface Conn {
  readonly socket: net.Socket;
  readonly source: string;
  readonly exempt: boolean;
  /** It completed an HTTP request (or was handed to TURN): no longer evicted under pressure. */
  proven: boolean;
}

function sourceOf(socket: net.Socket): string {
  return normalizeAddress(socket.remoteAddress ?? "unknown");
}

/** How many open front doors feed each http.Server (the last one to close stops its checks). */
const feeding = new WeakMap<http.Server, number>();

/** Node's http.Server checks header and request timeouts on a timer it starts when it listens. */
function enforceHttpTimeouts(server: http.Server, t: { headersMs: number; requestMs: number; keepAliveMs: number }): void {
  server.headersTimeout = t.headersMs;
  server.requestTimeout = t.requestMs;
  server.keepAliveTimeout = t.keepAliveMs;
  // How often Node checks them (its default, 30 s, would let a 10 s timeout run to 40 s).
  (server as http.Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(50, Math.min(1000, Math.floor(t.headersMs / 4)));
  // The server never listens itself (connections are injected): start the tracking as listen() would.
  server.emit("listening");
  feeding.set(server, (feeding.get(server) ?? 0) + 1);
}

/** Stops the checks started by enforceHttpTimeouts once no front door feeds `server`. */
function releaseHttpServer(server: http.Server): void {
  const n = (feeding.get(server) ?? 1) - 1;
  feeding.set(server, n);
  // close() on a server that never listened only stops the connection checks (and emits 'close').
  if (n === 0) server.close(() => {});
}

export async function startFrontDoor(opts: FrontDoorOptions): Promise<FrontDoor> {
  const log = opts.log.child({ component: "frontdoor" });
  const firstBytesMs = opts.firstBytesTimeoutMs ?? 10_000;
  const handshakeMs = opts.tlsHandshakeTimeoutMs ?? 10_000;
  const maxConnections = opts.maxConnections ?? 10_000;
  const maxPerSource = opts.maxConnectionsPerSource ?? 256;
  const allowPlain = opts.allowPlain ?? true;
  const secureContext = opts.tls ? tls.createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) : undefined;
  const stats: FrontDoorStats = {
    http: 0,
    https: 0,
    turnTcp: 0,
    turnTls: 0,
    timedOut: 0,
    tlsFailed: 0,
    plainRefused: 0,
    plainRedirected: 0,
    refusedPerSource: 0,
    refusedFull: 0,
    evicted: 0,
  };
  const conns = new Map<net.Socket, Conn>();
  /** Connections without a completed request, oldest first (a Set keeps insertion order). */
  const unproven = new Set<Conn>();
  const perSource = new Map<string, number>();
  /** The connection a stream handed on (the socket itself, or the TLSSocket over it) belongs to. */
  const connOf = new WeakMap<object, Conn>();
  let closed = false;

  const timeouts = {
    headersMs: opts.headersTimeoutMs ?? 10_000,
    requestMs: opts.requestTimeoutMs ?? 30_000,
    keepAliveMs: opts.keepAliveTimeoutMs ?? 5_000,
  };
  enforceHttpTimeouts(opts.http, timeouts);
  const prove = (stream: unknown): void => {
    const c = stream ? connOf.get(stream as object) : undefined;
    if (c && !c.proven) {
      c.proven = true;
      unproven.delete(c);
    }
  };
  // Registered before the gateway's own handlers: every request carries its client address.
  const onRequest = (req: http.IncomingMessage): void => {
    stampClientAddress(req, opts.trustedProxies);
    prove(req.socket);
  };
  const onUpgrade = onRequest;
  opts.http.on("request", onRequest);
  opts.http.on("upgrade", onUpgrade);

  // Plain HTTP on a TLS port: a redirect to HTTPS (GET, HEAD) or a clear 400, then close.
  const redirector = secureContext ? http.createServer((req, res) => answerPlain(req, res)) : undefined;
  if (redirector) {
    enforceHttpTimeouts(redirector, timeouts);
    redirector.on("upgrade", (_req: http.IncomingMessage, socket: Duplex) => {
      stats.plainRedirected++;
      const body = "This port speaks HTTPS: use wss://\n";
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }
  const httpsOrigin = opts.httpsOrigin ? new URL(opts.httpsOrigin).origin : undefined;
  /** Without a configured origin: the host the client asked for (a plain host name or IP only), on this port. */
  const originFor = (req: http.IncomingMessage): string | undefined => {
    if (httpsOrigin) return httpsOrigin;
    const m = /^([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/.exec(req.headers.host ?? "");
    return m ? `https://${m[1]}:${door.port}` : undefined;
  };
  function answerPlain(req: http.IncomingMessage, res: http.ServerResponse): void {
    stats.plainRedirected++;
    res.shouldKeepAlive = false;
    const origin = originFor(req);
    if ((req.method === "GET" || req.method === "HEAD") && origin) {
      // The path is the client's own; an absolute-form target is not followed.
      const path = req.url?.startsWith("/") && !req.url.startsWith("//") ? req.url : "/";
      const location = `${origin}${path}`;
      res.writeHead(308, { location, "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", connection: "close" });
      res.end(req.method === "HEAD" ? undefined : `This port speaks HTTPS: ${location}\n`);
    } else {
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8", connection: "close" });
      res.end("This port speaks HTTPS: send the request again over https://\n");
    }
    req.resume();
  }

  function admit(socket: net.Socket): Conn | undefined {
    const source = sourceOf(socket);
    const exempt = opts.trustedProxies?.has(source) ?? false;
    const held = perSource.get(source) ?? 0;
    if (!exempt && held >= maxPerSource) {
      stats.refusedPerSource++;
      log.debug("front door: too many connections from one address", { source, held });
      return undefined;
    }
    if (conns.size >= maxConnections) {
      const oldest = unproven.values().next();
      if (oldest.done) {
        stats.refusedFull++;
        log.debug("front door full", { connections: conns.size });
        return undefined;
      }
      // Make room: the oldest connection that has not completed anything goes first.
      stats.evicted++;
      forget(oldest.value);
      oldest.value.socket.destroy();
    }
    const c: Conn = { socket, source, exempt, proven: false };
    conns.set(socket, c);
    unproven.add(c);
    perSource.set(source, held + 1);
    connOf.set(socket, c);
    return c;
  }

  function forget(c: Conn): void {
    if (!conns.delete(c.socket)) return;
    unproven.delete(c);
    const n = (perSource.get(c.source) ?? 1) - 1;
    if (n > 0) perSource.set(c.source, n);
    else perSource.delete(c.source);
  }

  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on("error", (err) => log.debug("front door connection error", { err }));
    const c = closed ? undefined : admit(socket);
    if (!c) {
      socket.destroy();
      return;
    }
    socket.once("close", () => forget(c));
    sniffStream(socket, "plain");
  });

  /** Read until the first bytes decide, then hand the stream over. */
  function sniffStream(stream: net.Socket | tls.TLSSocket, layer: Layer): void {
    let buf: Buffer | undefined;
    const timer = setTimeout(() => {
      stats.timedOut++;
      cleanup();
      stream.destroy();
    }, firstBytesMs);
    const onData = (chunk: Buffer): void => {
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      const verdict = sniff(buf, layer === "plain" && !!secureContext);
      if (verdict !== "more") route(stream, layer, verdict, buf);
    };
    const onEnd = (): void => cleanup();
    const cleanup = (): void => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
    };
    const route = (s: net.Socket | tls.TLSSocket, l: Layer, p: Protocol, first: Buffer): void => {
      cleanup();
      s.pause();
      dispatch(s, l, p, first);
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
  }

  function dispatch(stream: net.Socket | tls.TLSSocket, layer: Layer, protocol: Protocol, first: Buffer): void {
    if (protocol === "tls") {
      startTls(stream as net.Socket, first);
      return;
    }
    if (layer === "plain" && secureContext && !allowPlain) {
      stats.plainRefused++;
      stream.destroy();
      return;
    }
    if (protocol === "turn" && opts.turn) {
      if (layer === "tls") stats.turnTls++;
      else stats.turnTcp++;
      // TURN has its own authentication and lifetimes; the front door's eviction is for HTTP.
      prove(stream);
      opts.turn.handleConnection(stream, layer === "tls" ? "tls" : "tcp", first);
      stream.resume();
      return;
    }
    // The HTTP server reads the bytes we already took from the stream's buffer first.
    stream.unshift(first);
    if (layer === "plain" && redirector) {
      redirector.emit("connection", stream);
    } else {
      if (layer === "tls") stats.https++;
      else stats.http++;
      opts.http.emit("connection", stream);
    }
    stream.resume();
  }

  function startTls(socket: net.Socket, first: Buffer): void {
    // The ClientHello goes back into the socket's buffer; TLSSocket consumes it from there.
    socket.unshift(first);
    const t = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: secureContext!,
      ALPNProtocols: ["http/1.1", "stun.turn"],
      requestCert: false,
    });
    const c = connOf.get(socket);
    if (c) connOf.set(t, c);
    const timer = setTimeout(() => {
      stats.timedOut++;
      t.destroy();
      socket.destroy();
    }, handshakeMs);
    t.once("secure", () => {
      clearTimeout(timer);
      sniffStream(t, "tls");
    });
    t.on("error", (err) => {
      clearTimeout(timer);
      stats.tlsFailed++;
      log.debug("front door tls error", { err });
      t.destroy();
      socket.destroy();
    });
    t.once("close", () => clearTimeout(timer));
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: opts.host, port: opts.port, backlog: 4096 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    // Not listening (port taken…): leave the HTTP servers as they were.
    opts.http.off("request", onRequest);
    opts.http.off("upgrade", onUpgrade);
    releaseHttpServer(opts.http);
    if (redirector) releaseHttpServer(redirector);
    throw err;
  }
  server.on("error", (err) => log.error("front door listener error", { err }));
  const addr = server.address() as net.AddressInfo;
  log.info("front door listening", { host: addr.address, port: addr.port, tls: !!secureContext, turn: !!opts.turn });

  let closing: Promise<void> | undefined;
  let listenerClosed: Promise<void> | undefined;
  const door: FrontDoor = {
    host: addr.address,
    port: addr.port,
    stats,
    get connections() {
      return conns.size;
    },
    stopAccepting() {
      if (listenerClosed) return;
      closed = true;
      listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    },
    close() {
      if (closing) return closing;
      door.stopAccepting();
      opts.http.off("request", onRequest);
      opts.http.off("upgrade", onUpgrade);
      const socketsClosed = [...conns.keys()].map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.destroyed) return resolve();
            s.once("close", () => resolve());
            s.destroy();
          }),
      );
      closing = Promise.all([listenerClosed, ...socketsClosed]).then(() => {
        releaseHttpServer(opts.http);
        if (redirector) releaseHttpServer(redirector);
      });
      return closing;
    },
    [Symbol.asyncDispose]() {
      return door.close();
    },
  };
  return door;
}
