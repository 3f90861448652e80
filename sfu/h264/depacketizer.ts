/**
 * RFC 6184 depacketization for packetization modes 0 and 1: single NAL unit packets
 * (§5.6), STAP-A (§5.7.1) and FU-A (§5.8) → access units as lists of NAL units
 * (header byte first, no start codes).
 *
 * Loss-safe without a jitter buffer: a sequence gap inside a fragmented NAL drops that
 * NAL (counted in `stats.fuDropped`) and marks the access unit incomplete; late or
 * duplicate packets are dropped and counted. Nothing here throws on packet contents.
 */

import { NalType } from "./nal.ts";
import { seqDiff } from "../rtp/seq.ts";

/** One decoded access unit (all NALs sharing one RTP timestamp). */
export interface AccessUnit {
  /** RTP timestamp (90 kHz). */
  timestamp: number;
  /** NAL units in decoding order, header byte first, no start codes. */
  nals: Buffer[];
  /** Holds an IDR slice. */
  keyframe: boolean;
  /** No loss was detected while it was assembled and its last packet carried the marker. */
  complete: boolean;
}

/** Counters kept by the depacketizer. */
export interface DepacketizerStats {
  packets: number;
  accessUnits: number;
  /** Fragmented NAL units discarded because a fragment was lost. */
  fuDropped: number;
  /** Packets that came late (older than one already processed) or twice. */
  late: number;
  /** Sequence numbers skipped over. */
  lost: number;
  /** Malformed payloads (empty, bad STAP-A sizes, FU-A with S and E both set, forbidden bit). */
  malformed: number;
  /** Interleaved-mode or reserved types (STAP-B, MTAP, FU-B, 0, 30, 31). */
  unsupported: number;
}

/** Options for H264Depacketizer. */
export interface DepacketizerOptions {
  /**
   * Copy NAL units out of the payloads (default true). With false, NALs from single
   * and STAP-A packets alias the payload buffers: the caller must keep them intact.
   */
  copy?: boolean;
}

const NONE: readonly AccessUnit[] = Object.freeze([]);

export class H264Depacketizer {
  readonly stats: DepacketizerStats = { packets: 0, accessUnits: 0, fuDropped: 0, late: 0, lost: 0, malformed: 0, unsupported: 0 };
  private readonly copy: boolean;
  private lastSeq = -1;
  private auTs = 0;
  private nals: Buffer[] = [];
  private auKey = false;
  private auLossy = false;
  private auOpen = false;
  /** FU-A fragments of the NAL under reassembly; null when none is in progress. */
  private fu: Buffer[] | null = null;
  private fuLen = 0;
  private readonly out: AccessUnit[] = [];

  constructor(opts: DepacketizerOptions = {}) {
    this.copy = opts.copy ?? true;
  }

  /**
   * Feeds one RTP payload. Returns the access units completed by it (usually none or
   * one; two when a timestamp change closes an unmarked unit and this packet both starts
   * and ends the next). The returned array is reused: read it before the next push.
   */
  push(payload: Uint8Array, sequenceNumber: number, timestamp: number, marker: boolean): readonly AccessUnit[] {
    this.stats.packets++;
    this.out.length = 0;
    if (this.lastSeq >= 0) {
      const d = seqDiff(sequenceNumber, this.lastSeq);
      if (d <= 0) {
        this.stats.late++;
        return NONE;
      }
      if (d > 1) {
        this.stats.lost += d - 1;
        this.onLoss();
      }
    }
    this.lastSeq = sequenceNumber & 0xffff;

    if (this.auOpen && timestamp >>> 0 !== this.auTs) {
      // The marker packet of the previous unit never came (lost or not sent): close it as is.
      this.dropFu();
      this.finish(false);
    }
    if (!this.auOpen) {
      this.auOpen = true;
      this.auTs = timestamp >>> 0;
    }

    this.handle(payload);
    if (marker) {
      this.dropFu(); // §5.8: the marker ends the access unit; a half NAL cannot continue into the next
      this.finish(true);
    }
    return this.out.length ? this.out : NONE;
  }

  /** Forget all state (new SSRC or seek). Incomplete data is discarded. */
  reset(): void {
    this.lastSeq = -1;
    this.nals = [];
    this.auOpen = false;
    this.auKey = false;
    this.auLossy = false;
    this.fu = null;
    this.fuLen = 0;
  }

  private onLoss(): void {
    this.auLossy = true;
    this.dropFu();
  }

  private dropFu(): void {
    if (this.fu) {
      this.stats.fuDropped++;
      this.fu = null;
      this.fuLen = 0;
    }
  }

  private finish(marker: boolean): void {
    if (this.nals.length > 0) {
      this.stats.accessUnits++;
      this.out.push({ timestamp: this.auTs, nals: this.nals, keyframe: this.auKey, complete: marker && !this.auLossy });
      this.nals = [];
    }
    this.auOpen = false;
    this.auKey = false;
    this.auLossy = false;
  }

  private addNal(src: Uint8Array, start: number, end: number): void {
    const view = Buffer.from(src.buffer, src.byteOffset + start, end - start);
    const nal = this.copy ? Buffer.from(view) : view;
    if ((nal[0]! & 0x1f) === NalType.IDR) this.auKey = true;
    this.nals.push(nal);
  }

  private handle(p: Uint8Array): void {
    if (p.length === 0 || p[0]! & 0x80) {
      // Empty, or forbidden_zero_bit set (RFC 6184 §5.3: a receiver may discard it).
      this.stats.malformed++;
      this.auLossy = true;
      return;
    }
    const t = p[0]! & 0x1f;
    if (t >= 1 && t <= 23) {
      // §5.6 single NAL unit packet. A pending FU cannot continue after a different NAL.
      this.dropFu();
      this.addNal(p, 0, p.length);
      return;
    }
    if (t === NalType.STAP_A) {
      this.dropFu();
      // Validate all sizes first so a malformed STAP-A adds nothing.
      let q = 1;
      let n = 0;
      while (q < p.length) {
        if (q + 2 > p.length) break;
        const size = (p[q]! << 8) | p[q + 1]!;
        if (size === 0 || q + 2 + size > p.length) break;
        q += 2 + size;
        n++;
      }
      if (q !== p.length || n === 0) {
        this.stats.malformed++;
        this.auLossy = true;
        return;
      }
      q = 1;
      while (q < p.length) {
        const size = (p[q]! << 8) | p[q + 1]!;
        this.addNal(p, q + 2, q + 2 + size);
        q += 2 + size;
      }
      return;
    }
    if (t === NalType.FU_A) {
      if (p.length < 3) {
        this.stats.malformed++;
        this.onLoss();
        return;
      }
      const fh = p[1]!;
      const start = (fh & 0x80) !== 0;
      const end = (fh & 0x40) !== 0;
      if (start && end) {
        // §5.8: S and E MUST NOT both be set.
        this.stats.malformed++;
        this.onLoss();
        return;
      }
      if (start) {
        this.dropFu();
        const hdr = Buffer.allocUnsafe(1);
        hdr[0] = (p[0]! & 0xe0) | (fh & 0x1f);
        this.fu = [hdr, Buffer.from(p.subarray(2))];
        this.fuLen = p.length - 1;
        return;
      }
      if (!this.fu) {
        // Middle or end fragment without its start: the start was lost (already counted) or never existed.
        this.auLossy = true;
        return;
      }
      this.fu.push(Buffer.from(p.subarray(2)));
      this.fuLen += p.length - 2;
      if (end) {
        const nal = Buffer.concat(this.fu, this.fuLen);
        this.fu = null;
        this.fuLen = 0;
        if ((nal[0]! & 0x1f) === NalType.IDR) this.auKey = true;
        this.nals.push(nal);
      }
      return;
    }
    // STAP-B, MTAP16/24, FU-B (interleaved mode 2) and the reserved types.
    this.stats.unsupported++;
    this.auLossy = true;
  }
}
