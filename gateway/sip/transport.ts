/**
 * SIP sockets: one UDP socket, a TCP listener and an optional TLS listener. A thin adapter:
 * bytes in (with their source Endpoint), bytes out (to an Endpoint). Stream connections
 * are framed by stream.ts and identified by a flow id, so responses and in-dialog requests
 * go back over the connection the device opened (§18.2.2, RFC 5626 flow reuse: a device
 * behind NAT cannot accept new connections).
 */
import dgram from "node:dgram";
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "../../config/log.ts";
import { endpointKey, type Endpoint, type SipTransport } from "./endpoint.ts";
import { SipStreamFramer } from "./stream.ts";

export interface SipSocketsOptions {
  bindAddress: string;
  /** UDP port (0 = any free port); undefined = no UDP. */
  udpPort?: number | undefined;
  tcpPort?: number | undefined;
  tls?: { port: number; cert: string | Buffer; key: string | Buffer } | undefined;
  /**
   * The UDP socket failed or was closed under us (not by `close`): it stays closed until
   * `rebindUdp()` opens it again on the same port.
   */
  onUdpLost?: (reason: string) => void;
  log: Logger;
  /** One datagram or one framed stream message. */
  onMessage(data: Buffer, source: Endpoint): void;
  /** A TCP/TLS connection closed (its bindings are gone with it, RFC 5626 §4.4 flow failure). */
  onFlowClosed?(flow: number): void;
  /** Close idle stream connections after this long, ms. Default 600000 (10 min). */
  streamIdleMs?: number;
  /** Close a stream connection no device registered over after this long without a SIP message, ms. Default 30000. */
  unregisteredIdleMs?: number;
  /** Close a stream connection whose current message is still unfinished this long after its first byte, ms. Default 10000. */
  messageTimeoutMs?: number;
  /** Most simultaneous stream connections; more are refused. Default 2048. */
  maxConnections?: number;
  /** Most simultaneous stream connections from one source address; more are refused. Default 16. */
  maxConnectionsPerSource?: number;
  /** The stream connections (flow ids) some device is registered over (they keep the long idle timeout). */
  registeredFlows?(): ReadonlySet<number>;
  /** Sources to refuse outright (the TURN relay's own sockets): datagrams dropped, connections closed. */
  refuseSource?(address: string, port: number): boolean;
  /** Largest SIP message over a stream, bytes. Default 65535. */
  maxMessageBytes?: number;
}

export interface TransportStats {
  datagramsIn: number;
  datagramsOut: number;
  streamMessagesIn: number;
  streamMessagesOut: number;
  connectionsAccepted: number;
  connectionsOpened: number;
  connectionsRefused: number;
  framingErrors: number;
  sendErrors: number;
  keepAlives: number;
  /** Connections refused because their source already had `maxConnectionsPerSource`. */
  connectionsRefusedPerSource: number;
  /** Connections closed because a message stayed unfinished past `messageTimeoutMs`. */
  messageTimeouts: number;
  /** Connections closed by an idle timeout (unregistered or not). */
  idleClosed: number;
  /** Datagrams and connections refused because they came from a refused source (the TURN relay). */
  refusedSources: number;
}

interface Flow {
  id: number;
  transport: "tcp" | "tls";
  socket: net.Socket;
  framer: SipStreamFramer;
  remote: Endpoint;
  lastActivity: number;
  /** Last complete SIP message in either direction (pings do not count). */
  lastMessage: number;
  /** When the unfinished message in the framer started; undefined when nothing is pending. */
  partialSince: number | undefined;
  /** We opened it (to a registered device), rather than accepted it. */
  outbound: boolean;
  ready: boolean;
  queue: Buffer[];
}

/** What the SIP core needs from the network; SipSockets is the real one, tests inject their own. */
export interface SipTransportAdapter {
  readonly boundPorts: Readonly<{ udp?: number; tcp?: number; tls?: number }>;
  readonly stats: TransportStats;
  send(data: Buffer, to: Endpoint, onError?: (err: Error) => void): void;
  hasFlow(flow: number): boolean;
  /** Opens the UDP socket again on its port (after it was lost). */
  rebindUdp?(): Promise<void>;
  /** Closes the UDP socket as the system would; false when none is open. */
  injectUdpFault?(): boolean;
  close(): Promise<void>;
}

export class SipSockets implements SipTransportAdapter {
  readonly stats: TransportStats = {
    datagramsIn: 0, datagramsOut: 0, streamMessagesIn: 0, streamMessagesOut: 0, connectionsAccepted: 0,
    connectionsOpened: 0, connectionsRefused: 0, framingErrors: 0, sendErrors: 0, keepAlives: 0,
    connectionsRefusedPerSource: 0, messageTimeouts: 0, idleClosed: 0, refusedSources: 0,
  };
  private readonly opts: SipSocketsOptions;
  private readonly log: Logger;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private tlsServer: tls.Server | undefined;
  private readonly flows = new Map<number, Flow>();
  private readonly flowByRemote = new Map<string, Flow>();
  /** Open accepted connections per source address, and in all (TLS ones from before their handshake). */
  private readonly perSource = new Map<string, number>();
  private admitted = 0;
  private nextFlow = 1;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private ports: { udp?: number; tcp?: number; tls?: number } = {};

  private constructor(opts: SipSocketsOptions) {
    this.opts = opts;
    this.log = opts.log;
  }

  /** Bind everything configured; rejects (after closing what was opened) if a bind fails. */
  static async listen(opts: SipSocketsOptions): Promise<SipSockets> {
    const s = new SipSockets(opts);
    try {
      await s.start();
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  /** Bound ports (resolved when 0 was asked). */
  get boundPorts(): Readonly<{ udp?: number; tcp?: number; tls?: number }> {
    return this.ports;
  }

  private async start(): Promise<void> {
    const host = this.opts.bindAddress;
    if (this.opts.udpPort !== undefined) this.ports.udp = await this.openUdp(this.opts.udpPort);
    if (this.opts.tcpPort !== undefined) {
      const server = net.createServer({ pauseOnConnect: true });
      server.on("connection", (socket: net.Socket) => {
        if (!this.admit(socket)) return;
        this.accept(socket, "tcp");
        socket.resume();
      });
      this.tcp = server;
      this.ports.tcp = await listenServer(server, this.opts.tcpPort, host);
    }
    if (this.opts.tls) {
      const server = tls.createServer(
        { cert: this.opts.tls.cert, key: this.opts.tls.key, handshakeTimeout: this.opts.messageTimeoutMs ?? 10_000 },
        (socket) => this.accept(socket, "tls"),
      );
      // Before the handshake: the same bounds as plain TCP ('connection' listeners run before TLS starts).
      server.prependListener("connection", (socket: net.Socket) => void this.admit(socket));
      server.on("tlsClientError", (err) => this.log.debug("sip: TLS handshake failed", { err }));
      this.tlsServer = server;
      this.ports.tls = await listenServer(server, this.opts.tls.port, host);
    }
    // Often enough for the shortest timeout to be kept to within a quarter of itself.
    const shortest = Math.min(this.opts.messageTimeoutMs ?? 10_000, this.opts.unregisteredIdleMs ?? 30_000, this.opts.streamIdleMs ?? 600_000);
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(30_000, shortest / 4)));
    this.sweeper.unref();
  }

  /** Binds the UDP socket on `port` and returns the bound port. */
  private async openUdp(port: number): Promise<number> {
    const host = this.opts.bindAddress;
    const sock = dgram.createSocket({ type: host.includes(":") ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(port, host, () => {
        sock.off("error", reject);
        resolve();
      });
    });
    this.udp = sock;
    sock.on("error", (err) => {
      this.log.warn("sip: UDP socket error", { err });
      this.udpLost(sock, `socket error: ${err.message}`);
    });
    sock.on("close", () => this.udpLost(sock, "the socket closed"));
    sock.on("message", (data, rinfo) => {
      this.stats.datagramsIn++;
      // RFC 5626 §3.5.1 STUN keep-alives and bare CRLF pings carry no SIP: ignore.
      if (data.length <= 4 || data[0]! < 0x20) return;
      if (this.opts.refuseSource?.(normalizeAddress(rinfo.address), rinfo.port)) {
        this.stats.refusedSources++;
        return;
      }
      this.deliver(data, { transport: "udp", address: rinfo.address, port: rinfo.port });
    });
    try {
      sock.setRecvBufferSize(1 << 20);
    } catch {
      // capped by the kernel; the default works too
    }
    return sock.address().port;
  }

  /** The current UDP socket failed or closed under us: drop it and report it once. */
  private udpLost(sock: dgram.Socket, reason: string): void {
    if (this.closed || this.udp !== sock) return;
    this.udp = undefined;
    try {
      sock.close();
    } catch {
      // closed already
    }
    this.log.error("sip: UDP socket lost", { port: this.ports.udp, reason });
    this.opts.onUdpLost?.(reason);
  }

  /**
   * Opens the UDP socket again on its bound port (the doors' configured registrar address
   * stays right), closing the current one first if it is still open.
   */
  async rebindUdp(): Promise<void> {
    const port = this.ports.udp;
    if (port === undefined) throw new RangeError("no UDP listener configured");
    if (this.closed) throw new Error("the SIP sockets are closed");
    const old = this.udp;
    this.udp = undefined;
    if (old) await new Promise<void>((r) => old.close(() => r()));
    await this.openUdp(port);
    this.log.info("sip: UDP socket open again", { port });
  }

  /** Closes the UDP socket as the system would (drills and tests); false when none is open. */
  injectUdpFault(): boolean {
    const u = this.udp;
    if (!u) return false;
    // As the 'close' event would report it, but at once (the event comes on a later tick).
    this.udpLost(u, "the socket closed");
    return true;
  }

  private deliver(data: Buffer, source: Endpoint): void {
    try {
      this.opts.onMessage(data, source);
    } catch (err) {
      // The SIP core must never take the socket loop down.
      this.log.error("sip: message handler threw", { err, transport: source.transport });
    }
  }

  /**
   * Every TCP connection, before TLS: bounded in total and per source, and refused from
   * refused sources. Counting here (not after the handshake) keeps unfinished TLS handshakes
   * within the same bounds. False when the socket was refused (and destroyed).
   */
  private admit(socket: net.Socket): boolean {
    const address = normalizeAddress(socket.remoteAddress ?? "");
    if (this.closed || this.admitted >= (this.opts.maxConnections ?? 2048)) {
      this.stats.connectionsRefused++;
      socket.destroy();
      return false;
    }
    if (this.opts.refuseSource?.(address, socket.remotePort ?? 0)) {
      this.stats.refusedSources++;
      socket.destroy();
      return false;
    }
    // One source cannot hold every connection: the other doors must still get in.
    const n = this.perSource.get(address) ?? 0;
    if (n >= (this.opts.maxConnectionsPerSource ?? 16)) {
      this.stats.connectionsRefused++;
      this.stats.connectionsRefusedPerSource++;
      socket.destroy();
      return false;
    }
    this.perSource.set(address, n + 1);
    this.admitted++;
    socket.once("close", () => {
      this.admitted--;
      const left = (this.perSource.get(address) ?? 1) - 1;
      if (left <= 0) this.perSource.delete(address);
      else this.perSource.set(address, left);
    });
    return true;
  }

  private accept(socket: net.Socket, transport: "tcp" | "tls"): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.stats.connectionsAccepted++;
    const address = normalizeAddress(socket.remoteAddress ?? "");
    this.addFlow(socket, transport, { transport, address, port: socket.remotePort ?? 0 }, true);
  }

  private addFlow(socket: net.Socket, transport: "tcp" | "tls", remote: Endpoint, ready: boolean): Flow {
    const id = this.nextFlow++;
    const max = this.opts.maxMessageBytes ?? 65535;
    const flow: Flow = {
      id,
      transport,
      socket,
      framer: new SipStreamFramer({ maxHeaderBytes: max, maxBodyBytes: max }),
      remote: { ...remote, flow: id },
      lastActivity: Date.now(),
      lastMessage: Date.now(),
      partialSince: undefined,
      outbound: !ready,
      ready,
      queue: [],
    };
    this.flows.set(id, flow);
    this.flowByRemote.set(endpointKey(remote), flow);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      const now = Date.now();
      flow.lastActivity = now;
      let completed = false;
      for (const ev of flow.framer.push(chunk)) {
        if (ev.type === "message") {
          completed = true;
          flow.lastMessage = now;
          this.stats.streamMessagesIn++;
          this.deliver(ev.data, flow.remote);
        } else if (ev.type === "ping") {
          // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
          this.stats.keepAlives++;
          socket.write("\r\n");
        } else {
          this.stats.framingErrors++;
          this.log.info("sip: closing stream after a framing error", { reason: ev.reason, address: remote.address });
          socket.destroy();
        }
      }
      // The clock of an unfinished message starts at its first byte.
      if (flow.framer.pending === 0) flow.partialSince = undefined;
      else if (completed || flow.partialSince === undefined) flow.partialSince = now;
    });
    socket.on("error", (err) => this.log.debug("sip: stream error", { err, address: remote.address }));
    socket.on("close", () => this.removeFlow(flow));
    return flow;
  }

  private removeFlow(flow: Flow): void {
    if (this.flows.get(flow.id) !== flow) return;
    this.flows.delete(flow.id);
    const key = endpointKey(flow.remote);
    if (this.flowByRemote.get(key) === flow) this.flowByRemote.delete(key);
    if (this.closed) return;
    try {
      this.opts.onFlowClosed?.(flow.id);
    } catch (err) {
      this.log.error("sip: flow-closed handler threw", { err });
    }
  }

  /** True when the stream connection `flow` is still open. */
  hasFlow(flow: number): boolean {
    return this.flows.has(flow);
  }

  /**
   * Send to an endpoint. UDP goes out at once. Streams use the given flow if it is open,
   * else an open connection to the same address, else a new connection (TCP only: we do
   * not open TLS to devices, they must keep theirs open). Failures go to `onError`.
   */
  send(data: Buffer, to: Endpoint, onError?: (err: Error) => void): void {
    if (this.closed) return;
    const fail = (err: Error): void => {
      this.stats.sendErrors++;
      onError?.(err);
    };
    if (to.transport === "udp") {
      if (!this.udp) return fail(new Error("no UDP listener"));
      this.stats.datagramsOut++;
      this.udp.send(data, to.port, to.address, (err) => {
        if (err) fail(err);
      });
      return;
    }
    let flow = to.flow !== undefined ? this.flows.get(to.flow) : undefined;
    flow ??= this.flowByRemote.get(endpointKey(to));
    if (!flow) {
      if (to.transport !== "tcp" || !this.tcp) return fail(new Error(`no open ${to.transport} connection to ${to.address}:${to.port}`));
      if (this.flows.size >= (this.opts.maxConnections ?? 2048)) return fail(new Error("too many connections"));
      const socket = net.connect({ host: to.address, port: to.port, localAddress: this.opts.bindAddress.includes(":") || this.opts.bindAddress === "0.0.0.0" ? undefined : this.opts.bindAddress });
      this.stats.connectionsOpened++;
      flow = this.addFlow(socket, "tcp", { transport: "tcp", address: to.address, port: to.port }, false);
      const f = flow;
      socket.once("connect", () => {
        f.ready = true;
        for (const q of f.queue) socket.write(q);
        f.queue = [];
      });
      socket.once("error", (err) => {
        if (!f.ready) fail(err);
      });
    }
    flow.lastActivity = Date.now();
    flow.lastMessage = flow.lastActivity;
    this.stats.streamMessagesOut++;
    if (!flow.ready) flow.queue.push(data);
    else if (!flow.socket.destroyed) flow.socket.write(data);
    else fail(new Error("connection closed"));
  }

  private sweep(): void {
    const idle = this.opts.streamIdleMs ?? 600_000;
    const unregisteredIdle = this.opts.unregisteredIdleMs ?? 30_000;
    const messageTimeout = this.opts.messageTimeoutMs ?? 10_000;
    const now = Date.now();
    let registered: ReadonlySet<number> | undefined;
    for (const f of this.flows.values()) {
      if (f.partialSince !== undefined && now - f.partialSince > messageTimeout) {
        this.stats.messageTimeouts++;
        this.log.debug("sip: closing a connection whose message never finished", { address: f.remote.address });
        f.socket.destroy();
        continue;
      }
      if (now - f.lastActivity > idle) {
        this.stats.idleClosed++;
        f.socket.destroy();
        continue;
      }
      if (!f.outbound && now - f.lastMessage > unregisteredIdle) {
        registered ??= this.opts.registeredFlows?.() ?? new Set();
        if (!registered.has(f.id)) {
          this.stats.idleClosed++;
          f.socket.destroy();
        }
      }
    }
  }

  /** Open stream connections (ops, tests). */
  get connections(): number {
    return this.flows.size;
  }

  /** Close listeners and connections. Every caller gets the same promise. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    // Let queued writes (final responses, BYEs) leave, then cut whatever lingers.
    const open = [...this.flows.values()].map((f) => f.socket);
    for (const sock of open) sock.end();
    if (open.length > 0) {
      await Promise.race([
        Promise.all(open.map((sock) => new Promise<void>((r) => (sock.destroyed ? r() : sock.once("close", () => r()))))),
        new Promise((r) => setTimeout(r, 200)),
      ]);
    }
    for (const sock of open) sock.destroy();
    this.flows.clear();
    this.flowByRemote.clear();
    this.perSource.clear();
    const waits: Promise<void>[] = [];
    if (this.udp) {
      const u = this.udp;
      this.udp = undefined;
      waits.push(new Promise((r) => u.close(() => r())));
    }
    for (const srv of [this.tcp, this.tlsServer]) {
      if (srv) waits.push(new Promise((r) => srv.close(() => r())));
    }
    await Promise.all(waits);
  }
}

function listenServer(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      server.on("error", () => {});
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** `::ffff:1.2.3.4` → `1.2.3.4` (dual-stack sockets). */
export function normalizeAddress(a: string): string {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

export type { SipTransport };
