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
 * A connection that sends nothing decisive within the sniff timeout, or does not finish
 * its TLS handshake in time, is closed (slowloris).
 */
import type http from "node:http";
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "../../config/log.ts";
import type { TurnTcpHandler } from "../../turn/server.ts";
import { sniff, type Protocol } from "./sniff.ts";

export { sniff, type Protocol } from "./sniff.ts";

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
  /** Seconds for the first decisive bytes, and again for the TLS handshake. Default 10. */
  sniffTimeoutSeconds?: number;
  /** Open connections accepted at once, whatever they turn out to be; beyond it new ones are refused. Default 10000. */
  maxConnections?: number;
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
}

export interface FrontDoor {
  readonly host: string;
  readonly port: number;
  readonly stats: Readonly<FrontDoorStats>;
  /** Connections accepted and not yet closed, whatever they turned out to be. */
  readonly connections: number;
  /** Stop listening and destroy every connection accepted here. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

type Layer = "plain" | "tls";

export async function startFrontDoor(opts: FrontDoorOptions): Promise<FrontDoor> {
  const log = opts.log.child({ component: "frontdoor" });
  const timeoutMs = (opts.sniffTimeoutSeconds ?? 10) * 1000;
  const allowPlain = opts.allowPlain ?? true;
  const secureContext = opts.tls ? tls.createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) : undefined;
  const stats: FrontDoorStats = { http: 0, https: 0, turnTcp: 0, turnTls: 0, timedOut: 0, tlsFailed: 0, plainRefused: 0 };
  const sockets = new Set<net.Socket>();
  let closed = false;

  const server = net.createServer({ noDelay: true }, (socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", (err) => log.debug("front door connection error", { err }));
    sniffStream(socket, "plain");
  });

  /** Read until the first bytes decide, then hand the stream over. */
  function sniffStream(stream: net.Socket | tls.TLSSocket, layer: Layer): void {
    let buf: Buffer | undefined;
    const timer = setTimeout(() => {
      stats.timedOut++;
      cleanup();
      stream.destroy();
    }, timeoutMs);
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
      opts.turn.handleConnection(stream, layer === "tls" ? "tls" : "tcp", first);
      stream.resume();
      return;
    }
    if (layer === "tls") stats.https++;
    else stats.http++;
    // The HTTP server reads the bytes we already took from the stream's buffer first.
    stream.unshift(first);
    opts.http.emit("connection", stream);
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
    const timer = setTimeout(() => {
      stats.timedOut++;
      t.destroy();
      socket.destroy();
    }, timeoutMs);
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

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.maxConnections = opts.maxConnections ?? 10_000;
  server.on("error", (err) => log.error("front door listener error", { err }));
  const addr = server.address() as net.AddressInfo;
  log.info("front door listening", { host: addr.address, port: addr.port, tls: !!secureContext, turn: !!opts.turn });

  let closing: Promise<void> | undefined;
  const door: FrontDoor = {
    host: addr.address,
    port: addr.port,
    stats,
    get connections() {
      return sockets.size;
    },
    close() {
      if (closing) return closing;
      closed = true;
      const socketsClosed = [...sockets].map(
        (s) =>
          new Promise<void>((resolve) => {
            s.once("close", () => resolve());
            s.destroy();
          }),
      );
      closing = Promise.all([new Promise<void>((resolve) => server.close(() => resolve())), ...socketsClosed]).then(() => {});
      return closing;
    },
    [Symbol.asyncDispose]() {
      return door.close();
    },
  };
  return door;
}
