/**
 * UDP sockets for the TURN relay read and written in native code (sfu/native/fastpath.c:
 * recvmmsg on Node's loop, sendmmsg): the relay's cost is per datagram, and Node's dgram
 * spends most of it around the system calls (a 64 KiB allocation, a Buffer, an address
 * string and an event per datagram received; argument checks and a request object per
 * datagram sent). Measured on loopback, a bare forwarder costs 3.6 µs per datagram this
 * way against 9 µs through dgram. When the native fast path is not built the TURN server
 * keeps its dgram sockets (turn/relay-ports.ts).
 *
 * The addon lives with the SFU's native code (one addon, one build); only its UDP
 * socket calls are used here.
 */
import { fastPath, type FastPath, type UdpReceiver } from "../sfu/native/index.ts";
import { formatIp, type IpFamily } from "./stun/address.ts";

/** Bytes per receive slot: a TURN message or ChannelData never exceeds it (RFC 8656 §12: MTU-sized). */
const SLOT = 2048;
/** Sends held before a flush is forced (a quarter of sendBatch's limit). */
const BATCH = 64;

/** The native UDP calls, when built. */
export function nativeUdp(): FastPath | undefined {
  return fastPath;
}

/**
 * Called per datagram; `data` is a view into the socket's receive slab, valid during the
 * call only (copy it to keep it). `v4` is the IPv4 address as a number (family 4);
 * `address()` gives the text form (cached for IPv4).
 */
export type DatagramHandler = (data: Buffer, family: IpFamily, v4: number, port: number, address: () => string) => void;

export class NativeUdpSocket {
  readonly family: IpFamily;
  readonly port: number;
  /** Datagrams dropped: longer than a slot, or not writable (send buffer full). */
  dropped = 0;
  /** Also told of each drop (the server's metrics). */
  onDrop: () => void = () => {};
  private readonly fp: FastPath;
  private readonly fd: number;
  private receiver: UdpReceiver | undefined;
  private closed = false;
  private id = -1;
  /** Set by receive(); read by the thread's dispatch. */
  onDatagram: DatagramHandler = () => {};
  onError: (cause: { errno: number } | { thrown: unknown }) => void = () => {};

  private constructor(fp: FastPath, family: IpFamily, fd: number, port: number) {
    this.fp = fp;
    this.family = family;
    this.fd = fd;
    this.port = port;
  }

  /** Binds a socket; throws like bind does (err.code EADDRINUSE…). */
  static open(family: IpFamily, address: string, port: number, bufferBytes: number): NativeUdpSocket {
    const fp = fastPath;
    if (!fp) throw new Error("the native fast path is not built");
    const [fd, bound] = fp.udpOpen(family, address, port, bufferBytes);
    return new NativeUdpSocket(fp, family, fd, bound);
  }

  /**
   * Starts delivering datagrams to `onDatagram`; socket errors (an errno) and handler
   * failures (what it threw; the datagram is dropped and the next one handled) go to
   * `onError`. Once.
   */
  receive(onDatagram: DatagramHandler, onError: (cause: { errno: number } | { thrown: unknown }) => void): void {
    if (this.receiver || this.closed) return;
    setUp(this.fp);
    this.onDatagram = onDatagram;
    this.onError = onError;
    this.id = nextId++;
    receivers.set(this.id, this);
    this.receiver = this.fp.udpReceive(this.fd, this.id);
  }

  /** Queues `data` for `to` (a sockaddr from fastPath.sockaddr); written at the end of this task at the latest. */
  send(data: Uint8Array, to: Buffer): void {
    if (this.closed) return;
    udpSends.add(this, this.fd, data, to);
  }

  /** Counts one dropped datagram. */
  noteDrop(): void {
    this.dropped++;
    this.onDrop();
  }

  /** The destination bytes for send(); throws for anything but an IP literal. */
  sockaddr(address: string, port: number): Buffer {
    return this.fp.sockaddr(address, port);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    udpSends.flush();
    receivers.delete(this.id); // datagrams of it still gathered are dropped by dispatch
    if (this.receiver) this.fp.udpClose(this.receiver);
    else this.fp.closeFd(this.fd);
  }
}

/** Receiving sockets of this thread by id, and the next id. */
const receivers = new Map<number, NativeUdpSocket>();
let nextId = 1;

/**
 * The datagrams every receiving socket of this thread delivered in one turn of the event
 * loop, gathered by the addon into one slab (RECEIVE_SLOTS datagrams of SLOT bytes at
 * most), and the one being handled.
 */
const RECEIVE_SLOTS = 256;
const shared = {
  slab: Buffer.allocUnsafeSlow(SLOT * RECEIVE_SLOTS),
  meta: new Int32Array(RECEIVE_SLOTS * 5),
  addr6: Buffer.alloc(RECEIVE_SLOTS * 16),
  index: 0,
};
let isSetUp = false;

function setUp(fp: FastPath): void {
  if (isSetUp) return;
  isSetUp = true;
  fp.udpSetup(shared.slab, shared.meta, shared.addr6, dispatch);
}

/** Hands each gathered datagram to its socket's handler; replies go out before the slab is reused. */
function dispatch(n: number): void {
  const { slab, meta } = shared;
  try {
    for (let i = 0; i < n; i++) {
      const m = i * 5;
      const sock = receivers.get(meta[m + 4]!);
      if (sock === undefined) continue; // closed since
      const len = meta[m]!;
      if (len < 0) {
        if (len === -2) sock.onError({ errno: meta[m + 1]! });
        else sock.noteDrop();
        continue;
      }
      shared.index = i;
      const off = i * SLOT;
      try {
        sock.onDatagram(slab.subarray(off, off + len), meta[m + 1] as IpFamily, meta[m + 3]! >>> 0, meta[m + 2]!, sourceAddress);
      } catch (thrown) {
        sock.noteDrop();
        sock.onError({ thrown });
      }
    }
  } finally {
    udpSends.flush();
  }
}

/** Text of the current datagram's source address. */
function sourceAddress(): string {
  const { meta, addr6, index: i } = shared;
  return meta[i * 5 + 1] === 6 ? formatIp(addr6.subarray(i * 16, i * 16 + 16)) : ipv4Text(meta[i * 5 + 3]! >>> 0);
}

/** Sends of every native socket of this thread, written together (one sendmmsg per socket). */
class UdpSendQueue {
  private readonly fds = new Int32Array(BATCH * 4);
  private readonly lens = new Int32Array(BATCH * 4);
  private readonly results = new Int32Array(BATCH * 4);
  private readonly bufs: Buffer[] = [];
  private readonly addrs: Buffer[] = [];
  private readonly owners: NativeUdpSocket[] = [];
  private n = 0;
  private scheduled = false;
  private readonly flushBound = (): void => this.flush();

  add(owner: NativeUdpSocket, fd: number, data: Uint8Array, to: Buffer): void {
    const i = this.n++;
    this.fds[i] = fd;
    this.bufs[i] = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.lens[i] = data.byteLength;
    this.addrs[i] = to;
    this.owners[i] = owner;
    if (this.n === this.fds.length) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushBound);
    }
  }

  flush(): void {
    this.scheduled = false;
    const n = this.n;
    if (n === 0) return;
    this.n = 0;
    // Empty datagrams are legal UDP but sendBatch refuses them; none of ours is empty.
    fastPath!.sendBatch(this.fds, this.bufs, this.lens, this.addrs, n, this.results);
    for (let i = 0; i < n; i++) {
      if (this.results[i]! < 0) this.owners[i]!.noteDrop();
      this.bufs[i] = EMPTY;
      this.addrs[i] = EMPTY;
    }
    this.owners.length = 0;
  }
}
const EMPTY = Buffer.alloc(0);
const udpSends = new UdpSendQueue();

/** IPv4 text of a 32-bit address, with a small cache (a relay sees few distinct peers). */
const v4Cache = new Map<number, string>();
export function ipv4Text(v4: number): string {
  let s = v4Cache.get(v4);
  if (s === undefined) {
    s = `${v4 >>> 24}.${(v4 >>> 16) & 0xff}.${(v4 >>> 8) & 0xff}.${v4 & 0xff}`;
    if (v4Cache.size >= 4096) v4Cache.clear();
    v4Cache.set(v4, s);
  }
  return s;
}
