/**
 * UDP media sockets of one track (RTSP `RTP/AVP;unicast;client_port=a-b`): an RTP socket
 * on an even port and an RTCP socket on the next one, leased from the shared pool.
 * Receive buffers are enlarged (a 208 KiB default loses packets in bursts); packets from
 * any address but the recorder's are dropped and counted.
 */
import { createSocket, type Socket, type RemoteInfo } from "node:dgram";
import { UpstreamError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { PortPairLease, UdpPortPool } from "../ingest/udp-ports.ts";
import type { PortPair } from "./headers.ts";

export interface UdpMediaOptions {
  pool: UdpPortPool;
  family: 4 | 6;
  /** Local address to bind: the interface the RTSP connection uses. */
  bindAddress: string;
  /** Requested SO_RCVBUF, bytes (the kernel caps it at net.core.rmem_max). */
  recvBufferSize: number;
  log: Logger;
  /** A datagram from the recorder on the RTP socket. Valid only during the call. */
  onRtp(packet: Buffer): void;
  /** A datagram from the recorder on the RTCP socket. Valid only during the call. */
  onRtcp(packet: Buffer): void;
  /** A datagram from another address was dropped. */
  onForeign(): void;
}

export class UdpMediaPair {
  readonly rtpPort: number;
  readonly rtcpPort: number;
  private readonly rtp: Socket;
  private readonly rtcp: Socket;
  private readonly lease: PortPairLease;
  private readonly opts: UdpMediaOptions;
  /** Addresses media is accepted from; empty until setServer (everything is foreign until then). */
  private allowed: string[] = [];
  private serverPorts: PortPair | undefined;
  private closed = false;

  private constructor(opts: UdpMediaOptions, lease: PortPairLease, rtp: Socket, rtcp: Socket) {
    this.opts = opts;
    this.lease = lease;
    this.rtp = rtp;
    this.rtcp = rtcp;
    this.rtpPort = lease.rtp;
    this.rtcpPort = lease.rtcp;
    rtp.on("message", (msg: Buffer, r: RemoteInfo) => {
      if (this.isAllowed(r.address)) opts.onRtp(msg);
      else opts.onForeign();
    });
    rtcp.on("message", (msg: Buffer, r: RemoteInfo) => {
      if (this.isAllowed(r.address)) opts.onRtcp(msg);
      else opts.onForeign();
    });
    // A late ICMP port-unreachable surfaces as an error on the socket; it must not crash anything.
    const onError = (err: Error): void => opts.log.debug("udp media socket error", { err });
    rtp.on("error", onError);
    rtcp.on("error", onError);
  }

  /** Leases a pair from the pool and binds it, skipping pairs another process holds. */
  static async open(opts: UdpMediaOptions): Promise<UdpMediaPair> {
    const attempts = Math.min(opts.pool.size, 32);
    let lastErr: unknown;
    for (let n = 0; n < attempts; n++) {
      const lease = opts.pool.acquire();
      if (!lease) break;
      const rtp = newSocket(opts);
      const rtcp = newSocket(opts);
      try {
        await bind(rtp, lease.rtp, opts.bindAddress);
        await bind(rtcp, lease.rtcp, opts.bindAddress);
        return new UdpMediaPair(opts, lease, rtp, rtcp);
      } catch (err) {
        lastErr = err;
        closeQuietly(rtp);
        closeQuietly(rtcp);
        lease.release();
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") break;
      }
    }
    throw new UpstreamError(
      `no free UDP client port pair (${opts.pool.leased}/${opts.pool.size} leased): ${(lastErr as Error | undefined)?.message ?? "pool exhausted"}`,
      { cause: lastErr },
    );
  }

  /** Effective receive buffer of the RTP socket, bytes (Linux reports twice the request). */
  get recvBufferSize(): number {
    try {
      return this.rtp.getRecvBufferSize();
    } catch {
      return 0;
    }
  }

  /** Accept media from `address` (and the Transport's `source`, if any) and remember the server ports. */
  setServer(address: string, serverPorts: PortPair | undefined, source?: string): void {
    this.allowed = [address];
    if (source && source !== address) this.allowed.push(source);
    this.serverPorts = serverPorts;
  }

  /**
   * Sends two small packets from each socket to the server ports so that a NAT or
   * stateful firewall between us opens the return path before media starts
   * (as other RTSP clients do). The RTP one is a bare 12-byte header, the RTCP one an empty RR.
   */
  punch(payloadType: number): void {
    const ports = this.serverPorts;
    const host = this.allowed[0];
    if (!ports || !host || this.closed) return;
    const rtp = Buffer.alloc(12);
    rtp[0] = 0x80;
    rtp[1] = payloadType & 0x7f;
    const rr = Buffer.from([0x80, 201, 0x00, 0x01, 0, 0, 0, 0]); // RTCP RR, no report blocks (RFC 3550 §6.4.2)
    for (let i = 0; i < 2; i++) {
      this.rtp.send(rtp, ports[0], host, () => {});
      this.rtcp.send(rr, ports[1], host, () => {});
    }
  }

  /** Sends an RTCP packet from our RTCP socket to the server's; false when its port is unknown. */
  sendRtcp(packet: Buffer): boolean {
    const ports = this.serverPorts;
    const host = this.allowed[0];
    if (!ports || !host || this.closed) return false;
    this.rtcp.send(packet, ports[1], host, () => {});
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.rtp);
    closeQuietly(this.rtcp);
    this.lease.release();
  }

  private isAllowed(address: string): boolean {
    const a = this.allowed;
    return a.length > 0 && (a[0] === address || a[1] === address);
  }
}

function newSocket(opts: UdpMediaOptions): Socket {
  return createSocket({ type: opts.family === 6 ? "udp6" : "udp4", recvBufferSize: opts.recvBufferSize });
}

function bind(s: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    s.once("error", onError);
    s.bind({ port, address, exclusive: true }, () => {
      s.removeListener("error", onError);
      resolve();
    });
  });
}

function closeQuietly(s: Socket): void {
  try {
    s.close();
  } catch {
    // not bound or already closed
  }
}
