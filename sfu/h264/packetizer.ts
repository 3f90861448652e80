/**
 * RFC 6184 packetization (mode 1, non-interleaved): NAL units → RTP payloads no larger
 * than `maxPayload`. Small NALs go as single NAL unit packets (§5.6), large ones as
 * FU-A fragments (§5.8), and adjacent SPS/PPS are aggregated into one STAP-A (§5.7.1)
 * so a decoder receives both parameter sets in one packet.
 *
 * Outputs may alias the input (a NAL that fits is returned as is, not copied).
 */

import { BadInputError } from "../../config/errors.ts";
import { NalType } from "./nal.ts";

/** Default RTP payload ceiling in bytes: leaves room for RTP, SRTP, TURN and IPv6 headers under a 1280-byte path MTU. */
export const DEFAULT_MAX_PAYLOAD = 1200;

/** Smallest usable ceiling: FU-A needs 2 header bytes plus at least one data byte. */
export const MIN_MAX_PAYLOAD = 3;

/** Throws BadInputError unless `maxPayload` is an integer ≥ MIN_MAX_PAYLOAD. */
export function checkMaxPayload(maxPayload: number): void {
  if (!Number.isInteger(maxPayload) || maxPayload < MIN_MAX_PAYLOAD) {
    throw new BadInputError(`H.264: maxPayload must be an integer ≥ ${MIN_MAX_PAYLOAD}, got ${maxPayload}`);
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.length);
}

/**
 * Splits one NAL unit (header byte at [0]) into FU-A payloads (RFC 6184 §5.8), appending
 * them to `out`. `nal` must be at least 2 bytes. The pieces share one new slab.
 */
export function fragmentFuA(nal: Uint8Array, maxPayload: number, out: Buffer[]): void {
  const indicator = (nal[0]! & 0xe0) | NalType.FU_A;
  const type = nal[0]! & 0x1f;
  const data = nal.length - 1;
  const chunk = maxPayload - 2;
  const pieces = Math.ceil(data / chunk);
  const slab = Buffer.allocUnsafe(data + 2 * pieces);
  let src = 1;
  let dst = 0;
  for (let i = 0; i < pieces; i++) {
    const n = Math.min(chunk, nal.length - src);
    slab[dst] = indicator;
    slab[dst + 1] = (i === 0 ? 0x80 : 0) | (i === pieces - 1 ? 0x40 : 0) | type;
    slab.set(nal.subarray(src, src + n), dst + 2);
    out.push(slab.subarray(dst, dst + 2 + n));
    src += n;
    dst += 2 + n;
  }
}

/** Appends the payloads for one NAL unit: the NAL itself when it fits, else FU-A fragments. Empty NALs are skipped. */
export function packetizeNal(nal: Uint8Array, maxPayload: number, out: Buffer[]): void {
  if (nal.length === 0) return;
  if (nal.length <= maxPayload) out.push(asBuffer(nal));
  else fragmentFuA(nal, maxPayload, out);
}

/** Builds one STAP-A payload (RFC 6184 §5.7.1) from NAL units; F is OR-ed and NRI is the maximum, as §5.7 requires. */
export function buildStapA(nals: readonly Uint8Array[]): Buffer {
  let size = 1;
  let f = 0;
  let nri = 0;
  for (const n of nals) {
    size += 2 + n.length;
    f |= n[0]! & 0x80;
    nri = Math.max(nri, n[0]! & 0x60);
  }
  const buf = Buffer.allocUnsafe(size);
  buf[0] = f | nri | NalType.STAP_A;
  let o = 1;
  for (const n of nals) {
    buf[o] = n.length >> 8;
    buf[o + 1] = n.length & 0xff;
    buf.set(n, o + 2);
    o += 2 + n.length;
  }
  return buf;
}

/** Options for `packetizeAccessUnit`. */
export interface PacketizeOptions {
  /** Largest payload in bytes (default 1200). */
  maxPayload?: number;
  /** Aggregate runs of adjacent SPS/PPS into a STAP-A when they fit (default true). */
  aggregateParameterSets?: boolean;
}

/**
 * Packetizes one access unit (its NAL units in decoding order, without start codes)
 * into RTP payloads in sending order. The RTP marker belongs on the last payload
 * (RFC 6184 §5.1). Throws BadInputError only for an invalid `maxPayload`.
 */
export function packetizeAccessUnit(nals: readonly Uint8Array[], opts: PacketizeOptions = {}): Buffer[] {
  const max = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  checkMaxPayload(max);
  const aggregate = opts.aggregateParameterSets ?? true;
  const out: Buffer[] = [];
  let i = 0;
  while (i < nals.length) {
    const nal = nals[i]!;
    if (aggregate && nal.length > 0 && isParameterSet(nal)) {
      // Collect the run of adjacent parameter sets that fits one STAP-A.
      let j = i;
      let size = 1;
      while (j < nals.length && nals[j]!.length > 0 && isParameterSet(nals[j]!) && size + 2 + nals[j]!.length <= max) {
        size += 2 + nals[j]!.length;
        j++;
      }
      if (j - i >= 2) {
        out.push(buildStapA(nals.slice(i, j)));
        i = j;
        continue;
      }
    }
    packetizeNal(nal, max, out);
    i++;
  }
  return out;
}

function isParameterSet(nal: Uint8Array): boolean {
  const t = nal[0]! & 0x1f;
  return t === NalType.SPS || t === NalType.PPS;
}
