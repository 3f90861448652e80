/**
 * The native fast path (fastpath.c), when it was built: AES-GCM SRTP with a per-viewer
 * key schedule, and batched datagram writes (sendmmsg). Optional by design: `npm
 * install` builds it when a C compiler is present (build.ts); without it every caller
 * keeps its JavaScript path and `nativeStatus()` says why.
 *
 * Measured on the 2-core CI machine, Node 24 (`node .scratch`-style microbenchmarks,
 * medians of 3): protecting a 1,200-byte RTP packet costs 0.33 µs here against 5.5 µs
 * through node:crypto (a cipher object and five C++ crossings per packet); writing ten
 * datagrams to one socket in one sendmmsg costs 3.2 µs each against 4.0 µs one by one
 * through Node's UDP handle (kernel time dominates both). Sealing and writing a whole
 * fan-out in one sealSend call (50 viewers × a 37-packet keyframe) costs 1.3 µs per
 * datagram, of which the kernel's loopback send is 1.0.
 *
 * GATEHOUSE_NATIVE=0 in the environment turns it off (comparisons, and tests of the
 * JavaScript paths).
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The addon's functions (see fastpath.c for their contracts). */
export interface FastPath {
  /** A context holding the expanded key: 16-byte key, 12-byte salt. */
  gcmContext(key: Uint8Array, salt: Uint8Array): GcmContext;
  /**
   * Encrypts `payload` after the 12-byte RTP header already in `out` (the AAD) and
   * appends the 16-byte tag; returns the packet length.
   */
  protectRtpGcm(ctx: GcmContext, out: Buffer, payload: Uint8Array, roc: number): number;
  /** AES_CM_128_HMAC_SHA1_80: 16-byte key, 14-byte salt, 20-byte authentication key. */
  cmContext(key: Uint8Array, salt: Uint8Array, authKey: Uint8Array): CmContext;
  /** As protectRtpGcm, with AES-CM and the 10-byte HMAC-SHA1 tag (RFC 3711 §4). */
  protectRtpCm(ctx: CmContext, out: Buffer, payload: Uint8Array, roc: number): number;
  /** Frees a context's keys now (it is unusable afterwards). */
  release(ctx: GcmContext | CmContext): void;
  /**
   * Writes `n` datagrams; consecutive ones with the same fd in one sendmmsg.
   * results[i] = bytes written or −errno. Returns how many were written.
   */
  sendBatch(fds: Int32Array, bufs: Buffer[], lens: Int32Array, addrs: Buffer[], n: number, results: Int32Array): number;
  /**
   * Seals and writes a fan-out's RTP packets in one call (see fastpath.c seal_send):
   * packet s waits as plaintext in `stage` at s·slot (lens[s] bytes, header first);
   * `order` lists them in send order, in runs (`ends`) of one viewer each with its
   * context (null: sealed already), socket and destination. lens[s] becomes the sealed
   * length; results[p] as sendBatch's, 0 for a run with fd < 0 (sealed, not written),
   * −EBADF for a released context. Returns how many were written.
   */
  sealSend(
    stage: Buffer,
    slot: number,
    lens: Int32Array,
    rocs: Uint32Array,
    order: Int32Array,
    ctxs: Array<GcmContext | CmContext | null>,
    addrs: Buffer[],
    fds: Int32Array,
    ends: Int32Array,
    runs: number,
    results: Int32Array,
  ): number;
  /** The calling thread to SCHED_BATCH (its wake-ups do not preempt); 0 or an errno. */
  schedBatch(): number;
  /** The socket address bytes sendBatch takes, for an IP literal and port (throws otherwise). */
  sockaddr(ip: string, port: number): Buffer;
  /** Whether UDP GSO is in use (false once the kernel refused it). */
  gso(): boolean;
  /** A non-blocking UDP socket bound to address:port (0: any); throws with `code` (EADDRINUSE…). */
  udpOpen(family: 4 | 6, address: string, port: number, bufferBytes: number): [fd: number, port: number];
  /**
   * Once per thread: where gathered datagrams go. `dispatch(n)` is called once per loop
   * turn (after the poll phase, or when 256 are gathered): datagram i is
   * slab[i·slot, i·slot + meta[5i]) with slot = slab.length / 256, meta[5i + 1] family,
   * [5i + 2] port, [5i + 3] IPv4 address, [5i + 4] the socket's id, IPv6 bytes at
   * addr6[16i]; meta[5i] = −1: longer than a slot (cut); −2: the socket failed, errno in
   * meta[5i + 1]. Views valid during the call only.
   */
  udpSetup(slab: Buffer, meta: Int32Array, addr6: Buffer, dispatch: (n: number) => void): void;
  /** Reads `fd` with recvmmsg on Node's loop into udpSetup's slab, tagged `id`. Owns fd from now on. */
  udpReceive(fd: number, id: number): UdpReceiver;
  /** Stops receiving and closes the socket. Idempotent. */
  udpClose(r: UdpReceiver): void;
  /** Closes a udpOpen socket that never started receiving. */
  closeFd(fd: number): void;
  /**
   * Bytes before the payload of an RTP packet (CSRCs and header extension included; 0: not
   * a whole header). Its presence says that the protect and seal calls take packets whose
   * header is longer than 12 bytes (a header extension), reading its length from the header.
   */
  rtpHeaderLength(packet: Uint8Array): number;
}

/** Opaque handle of a native UDP receiver. */
export type UdpReceiver = { readonly __brand: "UdpReceiver" };

/** Opaque handle of a native AES-GCM context. */
export type GcmContext = { readonly __brand: "GcmContext" };
/** Opaque handle of a native AES-CM + HMAC-SHA1 context. */
export type CmContext = { readonly __brand: "CmContext" };

/** Largest batch sendBatch takes (MAX_BATCH in fastpath.c). */
export const NATIVE_MAX_BATCH = 1024;

/** Where build.ts puts the addon. */
export const ADDON_PATH = fileURLToPath(new URL("./build/fastpath.node", import.meta.url));

let loaded: FastPath | undefined;
let reason = "";

function load(): void {
  if (process.env.GATEHOUSE_NATIVE === "0") {
    reason = "turned off by GATEHOUSE_NATIVE=0";
    return;
  }
  if (!existsSync(ADDON_PATH)) {
    reason = `not built (${ADDON_PATH} missing; \`npm run build:native\` needs a C compiler)`;
    return;
  }
  try {
    const m = createRequire(import.meta.url)(ADDON_PATH) as Partial<FastPath>;
    if (
      typeof m.gcmContext !== "function" || typeof m.protectRtpGcm !== "function" || typeof m.sendBatch !== "function" || typeof m.sockaddr !== "function" || typeof m.udpSetup !== "function" ||
      typeof m.protectRtpCm !== "function" || typeof m.sealSend !== "function" || typeof m.schedBatch !== "function" ||
      // An older build seals 12-byte headers only: a header extension would be encrypted.
      typeof m.rtpHeaderLength !== "function"
    ) {
      reason = "the built addon is out of date (rebuild with `npm run build:native`)";
      return;
    }
    loaded = m as FastPath;
  } catch (err) {
    reason = `failed to load: ${(err as Error).message}`;
  }
}
load();

/** The addon, or undefined when it is not available (see nativeStatus). */
export const fastPath: FastPath | undefined = loaded;

/** Whether the native fast path is in use, and why not when it is not. */
export function nativeStatus(): { enabled: boolean; reason: string } {
  return loaded ? { enabled: true, reason: "" } : { enabled: false, reason };
}
