/**
 * Per-stream H.264 RTP payload normalizer for forwarding to browsers (works on RTP
 * payloads, never decodes):
 *
 *  - Parameter sets: a browser joining at a keyframe needs SPS and PPS right before
 *    the IDR. Many recorders send them only in the SDP (sprop-parameter-sets) or not
 *    before every IDR. When the IDR's first packet is not preceded by both SPS and PPS
 *    in band (since the last slice), a STAP-A(SPS…, PPS…) is inserted, built from the
 *    latest in-band sets or, failing those, sprop-parameter-sets.
 *  - Size: payloads larger than `maxPayload` (recorders often use 1400+ byte MTUs)
 *    are re-fragmented: single NAL → FU-A, large FU-A fragment → several FU-A
 *    fragments (S on the first, E on the last), large STAP-A → its NAL units.
 *  - Keyframe starts: `keyframeStart` marks the first output packet of a keyframe
 *    (the inserted STAP-A, or the in-band SPS that precedes the IDR, or the IDR itself).
 *    An in-band SPS is flagged when it arrives, before the IDR is seen: encoders send
 *    SPS only ahead of IDRs, and a viewer started at a stray SPS simply waits for the IDR.
 *
 * "Not preceded" is judged since the last slice rather than since the last IDR, so an
 * SPS/PPS repeated mid-GOP does not excuse an IDR that arrives without them.
 *  - Payloads a browser cannot use (interleaved-mode types, reserved types, malformed
 *    STAP-A, empty) are dropped and counted.
 *
 * Output sequence numbers are the caller's job (the output count can differ from the
 * input). Hot path: pass-through payloads are the input buffers themselves, output
 * objects and the output array are reused, and nothing is allocated for packets that
 * need no change.
 */

import { NalType, type ParameterSets } from "./nal.ts";
import { DEFAULT_MAX_PAYLOAD, buildStapA, checkMaxPayload, fragmentFuA } from "./packetizer.ts";

/** One output RTP payload. Valid until the next `push` (objects are reused). */
export interface NormalizedPacket {
  /** May be the input payload itself: valid only as long as the input buffer is. */
  payload: Buffer;
  marker: boolean;
  /** RTP timestamp, unchanged from the input. */
  timestamp: number;
  /** First packet of a keyframe: a viewer can start decoding here. */
  keyframeStart: boolean;
}

/** Counters kept by the normalizer. */
export interface NormalizerStats {
  packetsIn: number;
  packetsOut: number;
  /** STAP-A(SPS, PPS) inserted before an IDR. */
  parameterSetsInserted: number;
  /** IDRs that needed parameter sets when none were known (neither in band nor sprop). */
  idrWithoutParameterSets: number;
  /** Input payloads larger than maxPayload that were split. */
  refragmented: number;
  keyframes: number;
  droppedEmpty: number;
  droppedMalformed: number;
  droppedUnsupported: number;
}

/** Options for H264Normalizer. */
export interface NormalizerOptions {
  /** Largest output payload in bytes (default 1200). */
  maxPayload?: number;
  /** Parameter sets from the SDP's sprop-parameter-sets, used until in-band ones arrive. */
  parameterSets?: ParameterSets;
}

const MAX_SPS_ID = 31;
const MAX_PPS_ID = 255;

export class H264Normalizer {
  readonly stats: NormalizerStats = {
    packetsIn: 0,
    packetsOut: 0,
    parameterSetsInserted: 0,
    idrWithoutParameterSets: 0,
    refragmented: 0,
    keyframes: 0,
    droppedEmpty: 0,
    droppedMalformed: 0,
    droppedUnsupported: 0,
  };
  private readonly max: number;
  /** Known parameter sets by id; in-band ones replace sprop ones with the same id. */
  private readonly sps: (Buffer | undefined)[] = [];
  private readonly pps: (Buffer | undefined)[] = [];
  /** The STAP-A to insert (or the separate NALs when they do not fit one); rebuilt when sets change. */
  private insertCache: Buffer[] | null = null;
  // State since the last VCL (slice) NAL passed through.
  private spsSinceSlice = false;
  private ppsSinceSlice = false;
  private flaggedSinceSlice = false;
  /** An IDR access unit is open with this timestamp (later IDR slices of it are not new keyframes). */
  private idrOpen = false;
  private idrTs = 0;
  private readonly out: NormalizedPacket[] = [];
  private readonly pool: NormalizedPacket[] = [];
  private readonly scratch: Buffer[] = [];

  constructor(opts: NormalizerOptions = {}) {
    this.max = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    checkMaxPayload(this.max);
    if (opts.parameterSets) this.setParameterSets(opts.parameterSets);
  }

  /** Replaces the out-of-band parameter sets (e.g. a new SDP after reconnect). */
  setParameterSets(sets: ParameterSets): void {
    for (const s of sets.sps) this.learn(s);
    for (const p of sets.pps) this.learn(p);
  }

  /** Forget stream state (upstream restarted); known parameter sets are kept. */
  reset(): void {
    this.spsSinceSlice = false;
    this.ppsSinceSlice = false;
    this.flaggedSinceSlice = false;
    this.idrOpen = false;
  }

  /** Whether an SPS and a PPS are known, so an IDR can be made decodable. */
  hasParameterSets(): boolean {
    return this.sps.some(Boolean) && this.pps.some(Boolean);
  }

  /**
   * Normalizes one RTP payload. Returns the payloads to send in order; the array and
   * its objects are reused by the next call.
   */
  push(payload: Buffer, marker: boolean, timestamp: number): readonly NormalizedPacket[] {
    this.stats.packetsIn++;
    this.out.length = 0;
    const n = payload.length;
    if (n === 0) {
      this.stats.droppedEmpty++;
      return this.out;
    }
    const t = payload[0]! & 0x1f;
    let idrStart = false;
    let hasSps = false;
    let hasSlice = false;

    if (t >= 1 && t <= 23) {
      if (t === NalType.SPS) {
        hasSps = true;
        this.spsSinceSlice = true;
        this.learn(payload);
      } else if (t === NalType.PPS) {
        this.ppsSinceSlice = true;
        this.learn(payload);
      } else if (t <= NalType.IDR) {
        hasSlice = true;
        idrStart = t === NalType.IDR;
      }
    } else if (t === NalType.FU_A) {
      if (n < 3) {
        this.stats.droppedMalformed++;
        return this.out;
      }
      const inner = payload[1]! & 0x1f;
      if (inner >= 1 && inner <= NalType.IDR) {
        hasSlice = true;
        idrStart = inner === NalType.IDR && (payload[1]! & 0x80) !== 0;
      }
    } else if (t === NalType.STAP_A) {
      // Validate and scan the aggregated NALs (§5.7.1: 16-bit size, then the NAL).
      let q = 1;
      let count = 0;
      while (q + 2 <= n) {
        const size = (payload[q]! << 8) | payload[q + 1]!;
        if (size === 0 || q + 2 + size > n) break;
        const it = payload[q + 2]! & 0x1f;
        if (it === NalType.SPS) {
          hasSps = true;
          this.spsSinceSlice = true;
          this.learn(payload.subarray(q + 2, q + 2 + size));
        } else if (it === NalType.PPS) {
          this.ppsSinceSlice = true;
          this.learn(payload.subarray(q + 2, q + 2 + size));
        } else if (it >= 1 && it <= NalType.IDR) {
          hasSlice = true;
          if (it === NalType.IDR) idrStart = true;
        }
        q += 2 + size;
        count++;
      }
      if (q !== n || count === 0) {
        this.stats.droppedMalformed++;
        return this.out;
      }
    } else {
      // STAP-B, MTAP16/24, FU-B (interleaved mode) and reserved 0/30/31: browsers accept none of them.
      this.stats.droppedUnsupported++;
      return this.out;
    }

    let keyframe = false;
    if (hasSps && !this.flaggedSinceSlice) {
      keyframe = true;
      this.flaggedSinceSlice = true;
    }
    const newIdr = idrStart && !(this.idrOpen && this.idrTs === timestamp >>> 0);
    if (newIdr) {
      this.stats.keyframes++;
      if (!this.flaggedSinceSlice) keyframe = true;
      if (!(this.spsSinceSlice && this.ppsSinceSlice)) {
        const insert = this.insertion();
        if (insert) {
          this.stats.parameterSetsInserted++;
          for (const p of insert) {
            this.emit(p, false, timestamp, keyframe);
            keyframe = false;
          }
        } else {
          this.stats.idrWithoutParameterSets++;
        }
      }
      this.idrOpen = true;
      this.idrTs = timestamp >>> 0;
    } else if (hasSlice && !idrStart && !(t === NalType.FU_A && (payload[1]! & 0x1f) === NalType.IDR)) {
      this.idrOpen = false;
    }
    if (hasSlice) {
      this.spsSinceSlice = false;
      this.ppsSinceSlice = false;
      this.flaggedSinceSlice = false;
    }

    if (n <= this.max) {
      this.emit(payload, marker, timestamp, keyframe);
      return this.out;
    }
    this.stats.refragmented++;
    this.emitLarge(payload, t, marker, timestamp, keyframe);
    return this.out;
  }

  private emitLarge(payload: Buffer, t: number, marker: boolean, timestamp: number, keyframe: boolean): void {
    const parts = this.scratch;
    parts.length = 0;
    if (t === NalType.FU_A) {
      // Re-split the fragment's data, keeping S only on the first piece and E only on the last.
      const fh = payload[1]!;
      const start = fh & 0x80;
      const end = fh & 0x40;
      const base = fh & 0x1f;
      const chunk = this.max - 2;
      const data = payload.length - 2;
      const pieces = Math.ceil(data / chunk);
      const slab = Buffer.allocUnsafe(data + 2 * pieces);
      let src = 2;
      let dst = 0;
      for (let i = 0; i < pieces; i++) {
        const len = Math.min(chunk, payload.length - src);
        slab[dst] = payload[0]!;
        slab[dst + 1] = (i === 0 ? start : 0) | (i === pieces - 1 ? end : 0) | base;
        payload.copy(slab, dst + 2, src, src + len);
        parts.push(slab.subarray(dst, dst + 2 + len));
        src += len;
        dst += 2 + len;
      }
    } else if (t === NalType.STAP_A) {
      // Split into the aggregated NALs, each sent whole or as FU-A.
      let q = 1;
      while (q + 2 <= payload.length) {
        const size = (payload[q]! << 8) | payload[q + 1]!;
        const nal = payload.subarray(q + 2, q + 2 + size);
        if (size <= this.max) parts.push(nal);
        else fragmentFuA(nal, this.max, parts);
        q += 2 + size;
      }
    } else {
      fragmentFuA(payload, this.max, parts);
    }
    const last = parts.length - 1;
    for (let i = 0; i <= last; i++) {
      this.emit(parts[i]!, marker && i === last, timestamp, keyframe && i === 0);
    }
    parts.length = 0;
  }

  private emit(payload: Buffer, marker: boolean, timestamp: number, keyframeStart: boolean): void {
    let p = this.pool[this.out.length];
    if (!p) {
      p = { payload, marker, timestamp, keyframeStart };
      this.pool.push(p);
    } else {
      p.payload = payload;
      p.marker = marker;
      p.timestamp = timestamp;
      p.keyframeStart = keyframeStart;
    }
    this.out.push(p);
    this.stats.packetsOut++;
  }

  /** Remembers an SPS/PPS by its id, copying it only when it changed. */
  private learn(nal: Uint8Array): void {
    const isSps = (nal[0]! & 0x1f) === NalType.SPS;
    // The id is the first ue(v) of the RBSP: after profile/constraints/level for SPS, right after the header for PPS.
    const id = readUe(nal, isSps ? 4 : 1);
    if (id < 0 || id > (isSps ? MAX_SPS_ID : MAX_PPS_ID)) return;
    const table = isSps ? this.sps : this.pps;
    const prev = table[id];
    if (prev && prev.equals(nal)) return;
    table[id] = Buffer.from(nal); // the input is only valid during push
    this.insertCache = null;
  }

  private insertion(): Buffer[] | null {
    if (this.insertCache) return this.insertCache;
    const nals: Buffer[] = [];
    for (const s of this.sps) if (s) nals.push(s);
    const spsCount = nals.length;
    for (const p of this.pps) if (p) nals.push(p);
    if (spsCount === 0 || nals.length === spsCount) return null;
    let size = 1;
    for (const x of nals) size += 2 + x.length;
    if (size <= this.max) {
      this.insertCache = [buildStapA(nals)];
    } else {
      const parts: Buffer[] = [];
      for (const x of nals) {
        if (x.length <= this.max) parts.push(x);
        else fragmentFuA(x, this.max, parts);
      }
      this.insertCache = parts;
    }
    return this.insertCache;
  }
}

/**
 * Reads one unsigned Exp-Golomb code starting at byte `byteOffset` (bit 0). Returns −1
 * when truncated. Emulation prevention cannot occur within the first few bytes read here
 * for realistic ids, so the raw bytes are used.
 */
function readUe(buf: Uint8Array, byteOffset: number): number {
  let pos = byteOffset * 8;
  const bits = buf.length * 8;
  let zeros = 0;
  while (true) {
    if (pos >= bits) return -1;
    const bit = (buf[pos >> 3]! >> (7 - (pos & 7))) & 1;
    pos++;
    if (bit) break;
    if (++zeros > 16) return -1;
  }
  let v = 0;
  for (let i = 0; i < zeros; i++) {
    if (pos >= bits) return -1;
    v = v * 2 + ((buf[pos >> 3]! >> (7 - (pos & 7))) & 1);
    pos++;
  }
  return 2 ** zeros - 1 + v;
}
