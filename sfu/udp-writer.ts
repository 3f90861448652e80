/**
 * Writes finished datagrams to one remote address through an existing UDP socket
 * (werift's ICE socket of the nominated candidate pair), with as little JavaScript per
 * packet as Node allows.
 *
 * Why not `socket.send(buf, port, ip)`: for every datagram it validates its arguments,
 * runs dns.lookup on the IP literal (which answers on the next tick, so the send itself
 * is deferred and the caller may not reuse its buffer), and allocates a closure and a
 * send request. Node's own UDP handle tries a synchronous `uv_udp_try_send` first: we
 * call it directly, so a datagram is in the kernel when `send` returns and the one
 * output buffer is reused for the next packet. Only when the kernel buffer is full
 * does libuv queue the datagram; that buffer then belongs to libuv and a new one is
 * taken. When the handle is not reachable (another Node version) the writer falls back
 * to `socket.send` with a fresh buffer per datagram.
 */
import type { Socket } from "node:dgram";

/** Largest datagram the writer's buffer holds, bytes (MTU-sized SRTP packets fit with room). */
export const WRITER_BUFFER_BYTES = 2048;

interface UdpHandle {
  send(req: object, list: Buffer[], count: number, port: number, address: string, hasCallback: boolean): number;
  send6(req: object, list: Buffer[], count: number, port: number, address: string, hasCallback: boolean): number;
  getSendQueueCount(): number;
}
type SendWrapCtor = new () => { list?: Buffer[] };

/**
 * Node majors whose UDP handle is known to take (req, list, count, port, address,
 * hasCallback) as dgram.js passes it. The native side CHECKs its arguments (a mismatch
 * would abort the process, not throw), so other versions use the fallback.
 */
const VERIFIED_NODE_MAJORS = new Set([24]);

/** The libuv-backed handle of a dgram socket and the send-request class, or undefined. */
function internals(socket: Socket): { state: { handle: UdpHandle | null }; SendWrap: SendWrapCtor } | undefined {
  if (!VERIFIED_NODE_MAJORS.has(Number(process.versions.node.split(".")[0]))) return undefined;
  try {
    const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
    const state = sym ? (socket as unknown as Record<symbol, { handle: UdpHandle | null }>)[sym] : undefined;
    if (!state?.handle || typeof state.handle.send !== "function") return undefined;
    // The request class of Node's UDP binding (what dgram itself constructs per send).
    const binding = (process as unknown as { binding(name: string): { SendWrap?: SendWrapCtor } }).binding("udp_wrap");
    if (typeof binding.SendWrap !== "function") return undefined;
    return { state, SendWrap: binding.SendWrap };
  } catch {
    return undefined;
  }
}

/** Counters of one writer. */
export interface UdpWriterStats {
  /** Datagrams in the kernel at once. */
  sync: number;
  /** Datagrams libuv had to queue (kernel buffer full). */
  queued: number;
  /** Datagrams the socket refused (closed, unreachable). */
  failed: number;
}

export class UdpWriter {
  /** Where the next datagram is assembled; may change after each `send`. */
  buffer: Buffer;
  readonly port: number;
  readonly address: string;
  readonly stats: UdpWriterStats = { sync: 0, queued: 0, failed: 0 };
  /** True when sending through Node's handle directly (diagnostics). */
  readonly direct: boolean;
  private readonly socket: Socket;
  private readonly state: { handle: UdpHandle | null } | undefined;
  private readonly handle: UdpHandle | undefined;
  private readonly v6: boolean;
  private readonly SendWrap: SendWrapCtor | undefined;
  private req: { list?: Buffer[] } | undefined;
  private list: Buffer[] = [];

  constructor(socket: Socket, port: number, address: string) {
    this.socket = socket;
    this.port = port;
    this.address = address;
    this.v6 = address.includes(":");
    this.buffer = Buffer.allocUnsafeSlow(WRITER_BUFFER_BYTES);
    const i = internals(socket);
    this.state = i?.state;
    this.handle = i?.state.handle ?? undefined;
    this.SendWrap = i?.SendWrap;
    this.direct = i !== undefined;
  }

  /**
   * Sends `buffer[0, length)`. True when the socket took it (sent or queued by libuv);
   * false when refused. Either way `buffer` may be used again afterwards.
   */
  send(length: number): boolean {
    const h = this.handle;
    if (h && this.state!.handle === h) {
      let req = this.req;
      if (!req) {
        req = new this.SendWrap!();
        this.req = req;
      }
      const list = this.list;
      list[0] = this.buffer.subarray(0, length);
      req.list = list; // keeps the bytes alive if libuv has to queue them
      const r = this.v6
        ? h.send6(req, list, 1, this.port, this.address, false)
        : h.send(req, list, 1, this.port, this.address, false);
      if (r >= 1) {
        // Synchronous: uv_udp_try_send copied it into the kernel (Node returns bytes + 1).
        this.stats.sync++;
        return true;
      }
      if (r === 0) {
        // Queued in libuv: request, list and buffer are now in flight; take new ones.
        this.stats.queued++;
        this.req = undefined;
        this.list = [];
        this.buffer = Buffer.allocUnsafeSlow(WRITER_BUFFER_BYTES);
        return true;
      }
      this.stats.failed++;
      return false;
    }
    if (this.handle) {
      this.stats.failed++; // the socket was closed under us
      return false;
    }
    // Fallback: dgram sends on a later tick, so this buffer goes with it.
    try {
      this.socket.send(this.buffer.subarray(0, length), this.port, this.address);
    } catch {
      this.stats.failed++;
      return false;
    }
    this.stats.queued++;
    this.buffer = Buffer.allocUnsafeSlow(WRITER_BUFFER_BYTES);
    return true;
  }

  /** Datagrams waiting in libuv because the kernel send buffer is full. */
  get inFlight(): number {
    const h = this.state?.handle;
    if (h) return h.getSendQueueCount();
    try {
      return this.socket.getSendQueueCount();
    } catch {
      return 0;
    }
  }
}
