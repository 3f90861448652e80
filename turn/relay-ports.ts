/**
 * Relay sockets: UDP sockets bound in the configured port range, one per address
 * family of an allocation (plus port+1 held for an EVEN-PORT reservation).
 *
 * Sockets use a synchronous `lookup` (we only ever pass IP literals): dgram's default
 * goes through dns.lookup and a process.nextTick per send, which costs more than the
 * relay itself on the hot path.
 */
import dgram from "node:dgram";
import type { Logger } from "../config/log.ts";
import type { RelayEndpoint, RelayHandle } from "./allocation.ts";
import { NativeUdpSocket } from "./native-udp.ts";
import type { IpFamily } from "./stun/address.ts";

/** dgram `lookup` that answers IP literals synchronously (no DNS, no nextTick). */
export function literalLookup(
  address: string,
  family: unknown,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  cb(null, address, address.includes(":") ? 6 : 4);
  void family;
}

/** Create a UDP socket with large buffers and the synchronous lookup. */
export function createUdpSocket(family: IpFamily, bufferBytes: number): dgram.Socket {
  return dgram.createSocket({
    type: family === 4 ? "udp4" : "udp6",
    ipv6Only: family === 6,
    recvBufferSize: bufferBytes,
    sendBufferSize: bufferBytes,
    lookup: literalLookup as unknown as dgram.SocketOptions["lookup"],
  });
}

/** Bind `sock` to address:port; resolves with the bound port or rejects (EADDRINUSE…). */
export function bindUdp(sock: dgram.Socket, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      sock.off("listening", onListening);
      reject(err);
    };
    const onListening = (): void => {
      sock.off("error", onError);
      resolve(sock.address().port);
    };
    sock.once("error", onError);
    sock.once("listening", onListening);
    sock.bind({ address, port, exclusive: true });
  });
}

/** RelayHandle over a dgram socket: a class so the relay path stays monomorphic. */
export class UdpRelayHandle implements RelayHandle {
  readonly socket: dgram.Socket;
  private closed = false;
  constructor(socket: dgram.Socket) {
    this.socket = socket;
  }
  send(data: Uint8Array, port: number, address: string): void {
    this.socket.send(data, port, address);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.close();
    } catch {
      // already closed by an error
    }
  }
}

export interface RelayFamilyConfig {
  /** Local address to bind. */
  address: string;
  /** Address announced to clients. */
  external: string;
}

export interface RelayPortsOptions {
  v4?: RelayFamilyConfig;
  v6?: RelayFamilyConfig;
  /** [first, last]; [0, 0] lets the OS choose. */
  portRange: readonly [number, number];
  bufferBytes: number;
  log: Logger;
  /** Called for each datagram a peer sends to a relay socket. */
  onPeerMessage: (endpoint: RelayEndpoint, data: Buffer, address: string, port: number) => void;
  /** Random source for the first port tried (tests pass a fixed one). */
  random?: () => number;
  /** Relay sockets read and written natively (turn/native-udp.ts) rather than through dgram. */
  native?: boolean;
  /** A native relay socket dropped a datagram (metrics). */
  onNativeDrop?: () => void;
}

/** Attempts before a relay request fails with 508. */
const MAX_ATTEMPTS = 48;

export class RelayPorts {
  private readonly opts: RelayPortsOptions;
  private readonly inUse = new Set<string>();
  /** Bound relay ports per family, for the per-datagram "is this one of ours?" check. */
  private readonly ports4 = new Set<number>();
  private readonly ports6 = new Set<number>();
  private closed = false;
  /** Relay sockets currently open (gauge, for leak checks). */
  open = 0;

  constructor(opts: RelayPortsOptions) {
    this.opts = opts;
  }

  /** Open one endpoint per family; with `reserveNext`, also hold port+1 of the first. */
  async openRelays(families: readonly IpFamily[], evenPort: boolean, reserveNext: boolean): Promise<{ endpoints: RelayEndpoint[]; reserved?: RelayEndpoint }> {
    const endpoints: RelayEndpoint[] = [];
    let reserved: RelayEndpoint | undefined;
    try {
      for (const [i, family] of families.entries()) {
        if (i === 0 && (evenPort || reserveNext)) {
          const pair = await this.openEven(family, reserveNext);
          endpoints.push(pair[0]);
          reserved = pair[1];
        } else endpoints.push(await this.openOne(family, undefined));
      }
      return reserved ? { endpoints, reserved } : { endpoints };
    } catch (e) {
      for (const ep of endpoints) ep.handle.close();
      reserved?.handle.close();
      throw e;
    }
  }

  /** Cheap first test for the per-datagram path: is `port` bound by one of our relays of `family`? */
  hasPort(family: IpFamily, port: number): boolean {
    return (family === 4 ? this.ports4 : this.ports6).has(port);
  }

  /** True when a datagram from `address:port` was sent by one of our relay sockets. */
  isRelaySource(address: string, port: number): boolean {
    const v6 = address.includes(":");
    if (!(v6 ? this.ports6 : this.ports4).has(port)) return false;
    const cfg = v6 ? this.opts.v6 : this.opts.v4;
    if (!cfg) return false;
    // A relay bound to the unspecified address sends from any local address.
    return cfg.address === address || cfg.address === "0.0.0.0" || cfg.address === "::";
  }

  private track(family: IpFamily, port: number, add: boolean): void {
    const set = family === 4 ? this.ports4 : this.ports6;
    if (add) set.add(port);
    else set.delete(port);
  }

  private cfg(family: IpFamily): RelayFamilyConfig {
    const c = family === 4 ? this.opts.v4 : this.opts.v6;
    if (!c) throw new Error(`no IPv${family} relay address configured`);
    return c;
  }

  private candidates(evenOnly: boolean): number[] {
    const [lo, hi] = this.opts.portRange;
    if (lo === 0) return Array.from({ length: MAX_ATTEMPTS }, () => 0);
    const span = hi - lo + 1;
    const rnd = this.opts.random ?? Math.random;
    const out: number[] = [];
    let p = lo + Math.floor(rnd() * span);
    for (let i = 0; i < span && out.length < MAX_ATTEMPTS; i++, p = p >= hi ? lo : p + 1) {
      if (evenOnly && (p & 1) !== 0) continue;
      out.push(p);
    }
    return out;
  }

  private async openOne(family: IpFamily, port: number | undefined): Promise<RelayEndpoint> {
    const ports = port !== undefined ? [port] : this.candidates(false);
    let last: unknown;
    for (const p of ports) {
      try {
        return await this.bindEndpoint(family, p);
      } catch (e) {
        last = e;
      }
    }
    throw last ?? new Error("no relay port available");
  }

  private async openEven(family: IpFamily, reserveNext: boolean): Promise<[RelayEndpoint, RelayEndpoint | undefined]> {
    const [lo] = this.opts.portRange;
    let last: unknown;
    for (const p of this.candidates(true)) {
      let first: RelayEndpoint | undefined;
      try {
        first = await this.bindEndpoint(family, p);
        if (lo === 0 && (first.port & 1) !== 0) {
          first.handle.close();
          continue;
        }
        if (!reserveNext) return [first, undefined];
        const second = await this.bindEndpoint(family, first.port + 1);
        return [first, second];
      } catch (e) {
        first?.handle.close();
        last = e;
      }
    }
    throw last ?? new Error("no even relay port available");
  }

  private async bindEndpoint(family: IpFamily, port: number): Promise<RelayEndpoint> {
    if (this.closed) throw new Error("relay ports closed");
    const cfg = this.cfg(family);
    const id = `${family}|${port}`;
    if (port !== 0 && this.inUse.has(id)) throw new Error("port in use by another relay");
    if (this.opts.native) return this.bindNative(family, port, cfg);
    const sock = createUdpSocket(family, this.opts.bufferBytes);
    let bound: number;
    try {
      bound = await bindUdp(sock, cfg.address, port);
    } catch (e) {
      try {
        sock.close();
      } catch {
        // never bound
      }
      throw e;
    }
    const key = `${family}|${bound}`;
    this.inUse.add(key);
    this.track(family, bound, true);
    this.open++;
    const handle = new UdpRelayHandle(sock);
    const endpoint: RelayEndpoint = { family, address: cfg.address, port: bound, external: cfg.external, handle, allocation: undefined };
    const onPeer = this.opts.onPeerMessage;
    sock.on("message", (data, rinfo) => onPeer(endpoint, data, rinfo.address, rinfo.port));
    sock.on("error", (err) => this.opts.log.warn("turn relay socket error", { port: bound, err }));
    sock.once("close", () => {
      this.inUse.delete(key);
      this.track(family, bound, false);
      this.open--;
    });
    return endpoint;
  }

  private bindNative(family: IpFamily, port: number, cfg: RelayFamilyConfig): RelayEndpoint {
    const sock = NativeUdpSocket.open(family, cfg.address, port, this.opts.bufferBytes);
    if (this.opts.onNativeDrop) sock.onDrop = this.opts.onNativeDrop;
    const key = `${family}|${sock.port}`;
    const bound = sock.port;
    this.inUse.add(key);
    this.track(family, bound, true);
    this.open++;
    const handle = new NativeRelayHandle(sock, () => {
      this.inUse.delete(key);
      this.track(family, bound, false);
      this.open--;
    });
    const endpoint: RelayEndpoint = { family, address: cfg.address, port: sock.port, external: cfg.external, handle, allocation: undefined };
    const onPeer = this.opts.onPeerMessage;
    sock.receive(
      (data, _family, _v4, peerPort, address) => onPeer(endpoint, data, address(), peerPort),
      (cause) => this.opts.log.warn("turn relay socket error", { port: sock.port, ...cause }),
    );
    return endpoint;
  }

  close(): void {
    this.closed = true;
  }
}

/** RelayHandle over a native socket; the last destination's address bytes are kept (a relay talks to few peers). */
class NativeRelayHandle implements RelayHandle {
  private readonly sock: NativeUdpSocket;
  private readonly onClose: () => void;
  private closed = false;
  private lastPort = -1;
  private lastAddress = "";
  private lastTo: Buffer | undefined;

  constructor(sock: NativeUdpSocket, onClose: () => void) {
    this.sock = sock;
    this.onClose = onClose;
  }

  send(data: Uint8Array, port: number, address: string): void {
    if (port !== this.lastPort || address !== this.lastAddress) {
      this.lastTo = this.sock.sockaddr(address, port);
      this.lastPort = port;
      this.lastAddress = address;
    }
    this.sock.send(data, this.lastTo!);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
    this.onClose();
  }
}
