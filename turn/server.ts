/**
 * The TURN server's socket adapter: UDP listeners, TCP/TLS connections (handed over by
 * the gateway's front door or accepted on optional dedicated ports), relay sockets and
 * one sweep timer. It feeds bytes and the time to `TurnCore` and performs the actions
 * that come back; it holds no protocol logic of its own.
 */
import type dgram from "node:dgram";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import type { TurnConfig } from "../config/sections/turn.ts";
import type { Logger } from "../config/log.ts";
import type { ClientLink, ClientTuple, RelayEndpoint, TransportKind } from "./allocation.ts";
import { TurnCore, type TurnAction, type TurnEvents } from "./core.ts";
import { mintTurnCredentials, type TurnCredentials } from "./credentials.ts";
import { StreamFramer } from "./framing.ts";
import { TurnMetrics } from "./metrics.ts";
import { PeerPolicy } from "./policy.ts";
import { NativeUdpSocket, nativeUdp } from "./native-udp.ts";
import { bindUdp, createUdpSocket, RelayPorts } from "./relay-ports.ts";
import { canonicalIp, ipv4ToInt, socketIp, type TransportAddress } from "./stun/address.ts";
import type { SafeEmitter } from "../config/events.ts";

/** What the front door needs: somewhere to hand a TCP or TLS connection that speaks TURN. */
export interface TurnTcpHandler {
  /**
   * Take over `socket` (a net.Socket, or a TLSSocket after the handshake). `initial`
   * holds bytes already read from it while sniffing; they are processed first.
   */
  handleConnection(socket: Duplex & Pick<net.Socket, "remoteAddress" | "remotePort" | "localAddress" | "localPort">, transport: "tcp" | "tls", initial?: Buffer): void;
}

export interface TurnServerOptions {
  /** The validated `turn` configuration section. */
  config: TurnConfig;
  log: Logger;
  /** Milliseconds; default Date.now. */
  clock?: () => number;
  /** The gateway's own media addresses (IPs or CIDR blocks): allowed as peers on `allowedPeerPorts`. */
  allowedPeers?: readonly string[];
  /** The gateway's media ports (`media.icePortRange`): the only ports of `allowedPeers` a relay may reach. Default: all. */
  allowedPeerPorts?: readonly [number, number];
  /** Certificate and key (PEM) for dedicated TLS listeners. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Nonce MAC key (tests). */
  nonceKey?: Buffer;
  /** Sweep period for expiries, ms. Default 1000. */
  sweepMs?: number;
  /**
   * Lifetime of credentials minted for a sign-in session, seconds: they end with the session
   * anyway, so they may last as long as a session can (the gateway passes its maximum age).
   * Default `turn.credentialLifetimeSeconds`.
   */
  sessionCredentialLifetimeSeconds?: number;
  /** Whether a session (by reference) is still live; see `TurnCoreOptions.sessionActive`. */
  sessionActive?: (ref: string) => boolean;
  /**
   * A UDP listener failed or closed under the server (not by `close`): it no longer answers
   * until `rebindUdp(index)` opens it again. `index` is its place in `config.udp`.
   */
  onUdpListenerLost?: (index: number, reason: string) => void;
}

export interface TurnServer extends TurnTcpHandler {
  /** Bound UDP listener addresses, in configuration order. */
  readonly udp: readonly TransportAddress[];
  /** Bound dedicated TCP and TLS listener addresses. */
  readonly tcp: readonly TransportAddress[];
  readonly tls: readonly TransportAddress[];
  readonly metrics: TurnMetrics;
  readonly events: SafeEmitter<TurnEvents>;
  readonly core: TurnCore;
  /** Relay sockets currently open (gauge). */
  readonly relaySockets: number;
  /** Client TCP/TLS connections currently open (gauge). */
  readonly connections: number;
  /** Replace the gateway's own media addresses (always-allowed peers). */
  setAllowedPeers(list: readonly string[]): void;
  /**
   * Mint credentials for a viewer with the configured secret and lifetime; with `session`
   * (the sign-in session's non-secret reference) they end with that session.
   */
  mintCredentials(subject: string, ttlSeconds?: number, session?: string): TurnCredentials;
  /** End every allocation of `subject` (all of a user's sessions revoked). */
  closeSubject(subject: string): void;
  /** A sign-in session ended: close its allocations and refuse its credentials from now on. */
  closeSession(ref: string): void;
  /** A viewer whose offer named these relayed addresses (or whose page named these credentials) closed: release that peer connection's allocations of `subject`. */
  closeClientOf(subject: string, relayed: readonly TransportAddress[], usernames?: readonly string[]): void;
  /** True when `address:port` is one of this server's relay sockets (other listeners refuse such sources). */
  isRelaySource(address: string, port: number): boolean;
  /**
   * Opens UDP listener `index` again on its address and port (after it was lost), closing
   * what is left of the old one. Allocations survive (the client's next request reaches the
   * new socket). Rejects when the port cannot be bound again.
   */
  rebindUdp(index: number): Promise<void>;
  /** Closes UDP listener `index` as the system would (drills and tests); false when none is open. */
  injectUdpListenerFault(index: number): boolean;
  /** Stop listening, end every allocation and connection. Idempotent. */
  close(reason?: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Bytes queued on a client TCP connection beyond which relayed data is dropped. */
const TCP_BACKLOG_BYTES = 512 * 1024;

/** Start the TURN server described by `opts.config`. Rejects (and cleans up) if a listener cannot bind. */
export async function startTurnServer(opts: TurnServerOptions): Promise<TurnServer> {
  const cfg = opts.config;
  if (!cfg.secret) throw new RangeError("turn.secret is required");
  const log = opts.log.child({ component: "turn" });
  const clock = opts.clock ?? Date.now;
  const metrics = new TurnMetrics();
  const policy = new PeerPolicy({
    allow: cfg.peers.allow,
    deny: cfg.peers.deny,
    allowPublic: cfg.peers.allowPublic,
    gatewayAddresses: opts.allowedPeers ?? [],
    ...(opts.allowedPeerPorts ? { gatewayPorts: opts.allowedPeerPorts } : {}),
  });
  const v4 = { address: cfg.relay.address, external: cfg.relay.externalAddress ?? cfg.relay.address };
  const v6 = cfg.relay.address6 ? { address: cfg.relay.address6, external: cfg.relay.externalAddress6 ?? cfg.relay.address6 } : undefined;
  const core = new TurnCore({
    realm: cfg.realm,
    secrets: [cfg.secret, ...cfg.previousSecrets],
    nonceLifetimeSeconds: cfg.nonceLifetimeSeconds,
    lifetimes: cfg.lifetimes,
    quotas: cfg.quotas,
    policy,
    families: { v4: true, v6: !!v6 },
    log,
    metrics,
    ...(opts.nonceKey ? { nonceKey: opts.nonceKey } : {}),
    ...(opts.sessionActive ? { sessionActive: opts.sessionActive } : {}),
    endedSessionMemoryMs: Math.max(cfg.credentialLifetimeSeconds, opts.sessionCredentialLifetimeSeconds ?? 0) * 1000 + 60_000,
  });

  let closed = false;
  const conns = new Map<number, TcpClient>();
  let nextConn = 1;

  // Native UDP I/O (recvmmsg/sendmmsg, turn/native-udp.ts) when the addon is built.
  const native = nativeUdp() !== undefined;

  // --- Relay sockets: peer → client is the hot path.
  const onPeerMessage = (endpoint: RelayEndpoint, data: Buffer, address: string, port: number): void => {
    const out = core.fromPeer(endpoint, data, address, port, clock());
    if (out !== undefined) endpoint.allocation!.tuple.link.send(out);
  };
  const relays = new RelayPorts({
    v4,
    ...(v6 ? { v6 } : {}),
    portRange: cfg.relay.portRange,
    bufferBytes: cfg.relay.socketBufferBytes,
    log,
    onPeerMessage,
    native,
    onNativeDrop: () => metrics.dropUdp++,
  });

  const perform = (actions: readonly TurnAction[]): void => {
    for (const a of actions) {
      switch (a.kind) {
        case "reply":
          a.to.link.send(a.data);
          break;
        case "send-peer":
          a.relay.handle.send(a.data, a.peer.port, a.peer.address);
          break;
        case "release-relay":
          a.endpoint.handle.close();
          break;
        case "end-client":
          // After the reply in the same action list: the response is queued before the FIN.
          if (typeof a.tuple.key === "number" && a.tuple.key < 0) conns.get(-a.tuple.key)?.end();
          break;
        case "open-relay": {
          const req = a.request;
          relays.openRelays(req.families, req.evenPort, req.reserveNext).then(
            (r) => perform(core.relayOpened(req.id, r.endpoints, r.reserved, clock())),
            (err: unknown) => {
              log.warn("turn relay socket could not be opened", { err });
              perform(core.relayFailed(req.id));
            },
          );
          break;
        }
        case "ignore":
          break;
      }
    }
  };

  // --- UDP listeners: native sockets (recvmmsg/sendmmsg) when the addon is built, else dgram.
  /** The open listener of each `config.udp` entry (undefined while lost). */
  const udpListeners: (UdpListener | undefined)[] = [];
  const udpAddrs: TransportAddress[] = [];
  const cleanup = (): void => {
    for (const l of udpListeners) void l?.close();
    for (const s of servers) s.close();
  };
  const servers: net.Server[] = [];
  const tcpAddrs: TransportAddress[] = [];
  const tlsAddrs: TransportAddress[] = [];

  /** A listener is gone without `close`: forget it and tell the owner (who may rebind it). */
  const udpLost = (index: number, l: UdpListener, reason: string): void => {
    if (closed || udpListeners[index] !== l) return;
    udpListeners[index] = undefined;
    log.error("turn udp listener lost", { index, port: udpAddrs[index]?.port, reason });
    try {
      opts.onUdpListenerLost?.(index, reason);
    } catch (err) {
      log.warn("turn udp listener lost: listener failed", { err });
    }
  };

  async function openUdp(index: number, host: string, port: number): Promise<TransportAddress> {
    const family = net.isIPv6(host) ? 6 : 4;
    if (native) {
      const sock = NativeUdpSocket.open(family, host, port, cfg.relay.socketBufferBytes);
      sock.onDrop = () => metrics.dropUdp++;
      const local: TransportAddress = { family, address: canonicalIp(host) ?? host, port: sock.port };
      const l: UdpListener = {
        send: (d, _port, _address, to) => sock.send(d, to!),
        close: async () => sock.close(),
        fault: () => {
          sock.close();
          udpLost(index, l, "the UDP listener was closed");
        },
      };
      udpListeners[index] = l;
      attachNativeUdp(sock, index, local);
      return local;
    }
    const sock = createUdpSocket(family, cfg.relay.socketBufferBytes);
    let closing = false;
    const l: UdpListener = {
      send: (d, port, address) => {
        try {
          sock.send(d, port, address);
        } catch {
          // closed under us: the loss is reported by its "close" event
        }
      },
      close: () =>
        new Promise<void>((resolve) => {
          closing = true;
          try {
            sock.close(() => resolve());
          } catch {
            resolve(); // not bound, or closed already
          }
        }),
      fault: () => sock.close(),
    };
    udpListeners[index] = l;
    let bound: number;
    try {
      bound = await bindUdp(sock, host, port);
    } catch (err) {
      udpListeners[index] = undefined;
      await l.close();
      throw err;
    }
    const local: TransportAddress = { family, address: canonicalIp(host) ?? host, port: bound };
    attachUdp(sock, index, local);
    sock.on("close", () => {
      if (!closing) udpLost(index, l, "the UDP listener was closed");
    });
    sock.on("error", (err) => {
      log.warn("turn udp listener error", { port: bound, err });
      if (closing) return;
      void l.close();
      udpLost(index, l, `the UDP listener failed: ${err.message}`);
    });
    return local;
  }

  try {
    for (const [index, l] of cfg.udp.entries()) udpAddrs.push(await openUdp(index, l.host, l.port));
    for (const l of cfg.tcp) {
      const srv = net.createServer({ noDelay: true }, (s) => handleConnection(s, "tcp"));
      servers.push(srv);
      tcpAddrs.push(await listen(srv, l.host, l.port));
    }
    if (cfg.tls.length) {
      if (!opts.tls) throw new RangeError("turn.tls listeners need a certificate (server.tls)");
      for (const l of cfg.tls) {
        const srv = tls.createServer(
          { cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: cfg.handshakeTimeoutSeconds * 1000, ALPNProtocols: ["stun.turn", "http/1.1"] },
          (s) => handleConnection(s, "tls"),
        );
        srv.on("tlsClientError", (err) => log.debug("turn tls handshake failed", { err }));
        servers.push(srv);
        tlsAddrs.push(await listen(srv, l.host, l.port));
      }
    }
  } catch (e) {
    cleanup();
    throw e;
  }

  function attachUdp(sock: dgram.Socket, index: number, local: TransportAddress): void {
    const base = index * 2 ** 48;
    sock.on("message", (buf: Buffer, rinfo: dgram.RemoteInfo) => {
      const v4 = ipv4ToInt(rinfo.address);
      const key = v4 >= 0 ? base + v4 * 65536 + rinfo.port : `${index}|${rinfo.address}|${rinfo.port}`;
      fromClient(
        buf,
        key,
        local,
        () => {
          const remote: TransportAddress = { family: rinfo.family === "IPv6" ? 6 : 4, address: rinfo.address, port: rinfo.port };
          // Through whichever socket listens on this slot now (it may have been rebound since).
          return [remote, { send: (d) => udpListeners[index]?.send(d, remote.port, remote.address, undefined) }];
        },
        relays.hasPort(rinfo.family === "IPv6" ? 6 : 4, rinfo.port) && relays.isRelaySource(rinfo.address, rinfo.port),
      );
    });
  }

  /**
   * One datagram from a UDP client: ChannelData goes straight to its peer (the relay hot
   * path, RFC 8656 §12), STUN to the core. `tuple` makes the client's address and link
   * only when a STUN message needs them.
   */
  function fromClient(buf: Buffer, key: number | string, local: TransportAddress, tuple: () => [TransportAddress, ClientLink], fromRelay: boolean): void {
    const b0 = buf[0];
    if (b0 === undefined) return;
    // One of our own relay sockets talking to the listener (a client relaying to the TURN
    // port itself): refused, whatever the peer policy said.
    if (fromRelay) {
      metrics.fromRelayRefused++;
      return;
    }
    if (b0 >= 0x40 && b0 < 0x80) {
      const ch = core.channelDataFromClient(key, buf, clock());
      if (ch !== undefined) ch.relay.handle.send(buf.subarray(4, 4 + ((buf[2]! << 8) | buf[3]!)), ch.peer.port, ch.peer.address);
      return;
    }
    if (b0 >= 0x40) {
      metrics.malformed++;
      return;
    }
    const [remote, link] = tuple();
    perform(core.handleStun(buf, { transport: "udp", remote, local, key, link }, clock()));
  }

  function attachNativeUdp(sock: NativeUdpSocket, index: number, local: TransportAddress): void {
    const base = index * 2 ** 48;
    sock.receive(
      (buf, family, v4, port, address) => {
        const key = family === 4 ? base + v4 * 65536 + port : `${index}|${address()}|${port}`;
        // A STUN message is a view into the receive slab: the core gets a copy (a Send
        // indication's data is sent on, and nothing may point into the slab afterwards).
        fromClient(
          buf[0] !== undefined && buf[0] < 0x40 ? Buffer.from(buf) : buf,
          key,
          local,
          () => {
            const remote: TransportAddress = { family, address: address(), port };
            const to = sock.sockaddr(remote.address, port);
            return [remote, { send: (d) => udpListeners[index]?.send(d, port, remote.address, to) }];
          },
          relays.hasPort(family, port) && relays.isRelaySource(family === 4 ? formatV4(v4) : address(), port),
        );
      },
      (cause) => log.warn("turn udp listener error", { port: local.port, ...cause }),
    );
  }

  // --- TCP/TLS clients.
  class TcpClient {
    readonly tuple: ClientTuple;
    readonly socket: Duplex;
    private readonly framer: StreamFramer;
    private ended = false;
    private idle: NodeJS.Timeout | undefined;

    constructor(socket: TurnTcpHandlerSocket, transport: TransportKind, id: number) {
      this.socket = socket;
      const remoteAddress = socketIp(socket.remoteAddress) ?? "0.0.0.0";
      const localAddress = socketIp(socket.localAddress) ?? "0.0.0.0";
      const link: ClientLink = {
        send: (d) => {
          if (this.ended) return;
          // Relayed data is datagram-like: drop rather than queue without bound.
          if (socket.writableLength > TCP_BACKLOG_BYTES && d[0]! >= 0x40) {
            metrics.dropBackpressure++;
            return;
          }
          socket.write(d);
        },
      };
      this.tuple = {
        transport,
        remote: { family: net.isIPv6(remoteAddress) ? 6 : 4, address: remoteAddress, port: socket.remotePort ?? 0 },
        local: { family: net.isIPv6(localAddress) ? 6 : 4, address: localAddress, port: socket.localPort ?? 0 },
        key: -id,
        link,
      };
      const key = this.tuple.key;
      const tuple = this.tuple;
      this.framer = new StreamFramer({
        frame(kind, frame) {
          const now = clock();
          if (kind === "channel") {
            const ch = core.channelDataFromClient(key, frame, now);
            if (ch !== undefined) ch.relay.handle.send(frame.subarray(4, 4 + ((frame[2]! << 8) | frame[3]!)), ch.peer.port, ch.peer.address);
          } else {
            perform(core.handleStun(frame, tuple, now));
          }
        },
      });
      // A connection that has not allocated within the handshake timeout is closed (slowloris).
      this.idle = setTimeout(() => {
        if (!core.allocationFor(key)) this.end();
      }, cfg.handshakeTimeoutSeconds * 1000);
      this.idle.unref();
      socket.on("data", (chunk: Buffer) => this.data(chunk));
      socket.on("error", (err) => log.debug("turn client connection error", { err }));
      socket.once("close", () => this.closed());
    }

    data(chunk: Buffer): void {
      const err = this.framer.push(chunk);
      if (err) {
        metrics.malformed++;
        log.debug("turn stream framing error", { reason: err, client: this.tuple.remote.address });
        this.socket.destroy();
      }
    }

    end(): void {
      if (this.ended) return;
      this.ended = true;
      this.socket.end();
      // Give the last response a moment to flush, then make sure the socket is gone.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }

    closed(): void {
      this.ended = true;
      if (this.idle) clearTimeout(this.idle);
      conns.delete(-(this.tuple.key as number));
      perform(core.transportClosed(this.tuple.key));
    }
  }
  type TurnTcpHandlerSocket = Parameters<TurnTcpHandler["handleConnection"]>[0];

  function handleConnection(socket: TurnTcpHandlerSocket, transport: "tcp" | "tls", initial?: Buffer): void {
    if (closed) {
      socket.destroy();
      return;
    }
    // Bound connections: a flood of idle TCP connections must not exhaust descriptors.
    if (conns.size >= cfg.quotas.totalAllocations * 2) {
      socket.destroy();
      return;
    }
    if ("setNoDelay" in socket && typeof socket.setNoDelay === "function") socket.setNoDelay(true);
    if (transport === "tls") {
      // One TLS record per TURN message: Node would merge queued writes into one record,
      // and some clients (coturn's turnutils_uclient) take each SSL_read as one message.
      // Without _writev, the stream writes queued messages one by one.
      Object.defineProperty(socket, "_writev", { value: null, configurable: true, writable: true });
    }
    const id = nextConn++;
    const c = new TcpClient(socket, transport, id);
    conns.set(id, c);
    if (initial && initial.length) c.data(initial);
  }

  const sweepMs = opts.sweepMs ?? 1000;
  const timer = setInterval(() => perform(core.tick(clock())), sweepMs);
  timer.unref();

  log.info("turn server listening", {
    udp: udpAddrs.map((a) => `${a.address}:${a.port}`),
    tcp: tcpAddrs.map((a) => `${a.address}:${a.port}`),
    tls: tlsAddrs.map((a) => `${a.address}:${a.port}`),
  });

  let closing: Promise<void> | undefined;
  const server: TurnServer = {
    udp: udpAddrs,
    tcp: tcpAddrs,
    tls: tlsAddrs,
    metrics,
    events: core.events,
    core,
    get relaySockets() {
      return relays.open;
    },
    get connections() {
      return conns.size;
    },
    handleConnection,
    setAllowedPeers: (list) => policy.setGatewayAddresses(list),
    mintCredentials: (subject, ttlSeconds, session) => {
      if (session !== undefined) core.sessionRevived(session);
      const ttl = ttlSeconds ?? (session !== undefined ? (opts.sessionCredentialLifetimeSeconds ?? cfg.credentialLifetimeSeconds) : cfg.credentialLifetimeSeconds);
      return mintTurnCredentials({ secret: cfg.secret!, subject, ttlSeconds: ttl, now: clock(), session });
    },
    closeSubject: (subject) => perform(core.closeSubject(subject)),
    closeSession: (ref) => perform(core.closeSession(ref, clock())),
    closeClientOf: (subject, relayed, usernames) => perform(core.closeClientOf(subject, relayed, usernames)),
    isRelaySource: (address, port) => relays.isRelaySource(socketIp(address) ?? address, port),
    async rebindUdp(index) {
      const want = cfg.udp[index];
      const at = udpAddrs[index];
      if (!want || !at) throw new RangeError(`no UDP listener ${index}`);
      if (closed) throw new Error("the TURN server is closed");
      const old = udpListeners[index];
      udpListeners[index] = undefined;
      await old?.close();
      // The same port: the URIs handed out (and the firewall's opening) stay right.
      udpAddrs[index] = await openUdp(index, want.host, at.port);
      log.info("turn udp listener open again", { index, port: at.port });
    },
    injectUdpListenerFault(index) {
      const l = udpListeners[index];
      if (!l) return false;
      l.fault();
      return true;
    },
    close(reason = "closed") {
      if (closing) return closing;
      closed = true;
      closing = (async () => {
        log.debug("turn server closing", { reason });
        clearInterval(timer);
        perform(core.close());
        relays.close();
        for (const c of [...conns.values()]) c.socket.destroy();
        await Promise.all([
          ...udpListeners.map((l) => l?.close()),
          ...servers.map((s) => new Promise<void>((r) => s.close(() => r()))),
        ]);
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return server.close("disposed");
    },
  };
  return server;
}

/** One UDP listener: `close` on purpose (no report), `fault` as the system would close it. */
interface UdpListener {
  /** `to`: the destination as a sockaddr (native sockets). */
  send(data: Uint8Array, port: number, address: string, to: Buffer | undefined): void;
  close(): Promise<void>;
  fault(): void;
}

/** A uint32 IPv4 address as dotted text. */
function formatV4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function listen(srv: net.Server, host: string, port: number): Promise<TransportAddress> {
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen({ host, port }, () => {
      srv.off("error", reject);
      const a = srv.address() as net.AddressInfo;
      resolve({ family: a.family === "IPv6" ? 6 : 4, address: a.address, port: a.port });
    });
  });
}
