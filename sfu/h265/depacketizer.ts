/**
 * RFC 7798 depacketization: RTP payloads → H.265 NAL units, grouped into access units.
 * Single NAL unit packets (§4.4.1), aggregation packets (§4.4.2) and fragmentation units
 * (§4.4.3), with or without DONL. Pure; malformed input is a counted drop, never a throw.
 */
import { H265Type, h265Type, isIrap, isParameterSet } from "./nal.ts";

export type H265DropReason = "malformed" | "fragmentLost" | "tooLarge" | "unsupported";

export interface H265AccessUnit {
  /** NAL units in decoding order, each starting with its two-byte header. */
  nals: Buffer[];
  /** RTP timestamp (90 kHz). */
  ts: number;
  /** Holds an IRAP picture (a decoder can start here). */
  irap: boolean;
  /** A packet of this AU (or before it) was lost. */
  damaged: boolean;
}

export interface H265DepacketizerOptions {
  /** DONL fields present (sprop-max-don-diff > 0). */
  donl?: boolean;
  /** Largest NAL unit reassembled from fragments, bytes. Default 4 MiB. */
  maxNalBytes?: number;
}

export class H265Depacketizer {
  readonly drops: Record<H265DropReason, number> = { malformed: 0, fragmentLost: 0, tooLarge: 0, unsupported: 0 };
  private readonly donl: boolean;
  private readonly maxNal: number;
  private nals: Buffer[] = [];
  private ts = 0;
  private damaged = false;
  private frag: Buffer[] = [];
  private fragBytes = 0;
  private fragHeader = 0;

  constructor(opts: H265DepacketizerOptions = {}) {
    this.donl = opts.donl ?? false;
    this.maxNal = opts.maxNalBytes ?? 4 * 1024 * 1024;
  }

  reset(): void {
    this.nals = [];
    this.damaged = false;
    this.frag = [];
    this.fragBytes = 0;
  }

  /**
   * One RTP payload. `lost`: packets are missing before this one. Returns the access units
   * completed by it (by its marker bit, or by a new timestamp ending the previous AU).
   */
  push(payload: Buffer, ts: number, marker: boolean, lost: boolean): H265AccessUnit[] {
    const out: H265AccessUnit[] = [];
    if (this.nals.length > 0 && ts !== this.ts) this.flush(out);
    if (this.nals.length === 0 && this.frag.length === 0) this.ts = ts;
    this.ts = ts;
    if (lost) {
      this.damaged = true;
      if (this.frag.length > 0) this.dropFragment();
    }
    this.payload(payload);
    if (marker) this.flush(out);
    return out;
  }

  private payload(p: Buffer): void {
    if (p.length < 3) {
      this.drops.malformed++;
      return;
    }
    if ((p[0]! & 0x80) !== 0) {
      // F bit: the sender says this NAL is corrupt.
      this.drops.malformed++;
      this.damaged = true;
      return;
    }
    const type = h265Type(p[0]!);
    if (type === H265Type.AP) return this.aggregation(p);
    if (type === H265Type.FU) return this.fragment(p);
    if (type === H265Type.PACI) {
      this.drops.unsupported++;
      return;
    }
    if (this.frag.length > 0) this.dropFragment();
    this.nals.push(Buffer.from(p));
  }

  // §4.4.2: [DONL] then (size, NAL) pairs, each later one with a DOND byte when DONL is on.
  private aggregation(p: Buffer): void {
    if (this.frag.length > 0) this.dropFragment();
    let o = 2 + (this.donl ? 2 : 0);
    const found: Buffer[] = [];
    let first = true;
    while (o < p.length) {
      if (!first && this.donl) o += 1;
      first = false;
      if (o + 2 > p.length) break;
      const size = p.readUInt16BE(o);
      o += 2;
      if (size < 2 || o + size > p.length) {
        this.drops.malformed++;
        return;
      }
      found.push(Buffer.from(p.subarray(o, o + size)));
      o += size;
    }
    if (found.length === 0 || o !== p.length) {
      this.drops.malformed++;
      return;
    }
    this.nals.push(...found);
  }

  // §4.4.3: payload header (type 49), FU header S|E|type, [DONL], fragment.
  private fragment(p: Buffer): void {
    const hdrLen = 3 + (this.donl ? 2 : 0);
    if (p.length <= hdrLen) {
      this.drops.malformed++;
      return;
    }
    const fu = p[2]!;
    const start = (fu & 0x80) !== 0;
    const end = (fu & 0x40) !== 0;
    const fuType = fu & 0x3f;
    if (start && end) {
      this.drops.malformed++; // §4.4.3: S and E must not both be set
      return;
    }
    const data = p.subarray(hdrLen);
    if (start) {
      if (this.frag.length > 0) this.dropFragment();
      const header = Buffer.from([(p[0]! & 0x81) | (fuType << 1), p[1]!]);
      this.frag = [header, Buffer.from(data)];
      this.fragBytes = 2 + data.length;
      this.fragHeader = fuType;
    } else {
      if (this.frag.length === 0 || fuType !== this.fragHeader) {
        // The start was lost (or the types disagree): nothing to attach to.
        this.drops.fragmentLost++;
        this.damaged = true;
        return;
      }
      this.frag.push(Buffer.from(data));
      this.fragBytes += data.length;
    }
    if (this.fragBytes > this.maxNal) {
      this.drops.tooLarge++;
      this.frag = [];
      this.fragBytes = 0;
      this.damaged = true;
      return;
    }
    if (end) {
      this.nals.push(Buffer.concat(this.frag));
      this.frag = [];
      this.fragBytes = 0;
    }
  }

  private dropFragment(): void {
    this.drops.fragmentLost++;
    this.frag = [];
    this.fragBytes = 0;
    this.damaged = true;
  }

  private flush(out: H265AccessUnit[]): void {
    if (this.frag.length > 0) this.dropFragment();
    if (this.nals.length === 0) return;
    let irap = false;
    let vcl = false;
    for (const n of this.nals) {
      const t = h265Type(n[0]!);
      if (t < 32) vcl = true;
      if (isIrap(t)) irap = true;
    }
    // An AU of parameter sets alone (some cameras send them with their own timestamp) joins the next one.
    if (!vcl && this.nals.every((n) => isParameterSet(h265Type(n[0]!)) || h265Type(n[0]!) >= 35)) {
      if (this.nals.length > 32) {
        this.drops.malformed += this.nals.length;
        this.nals = [];
      }
      return;
    }
    out.push({ nals: this.nals, ts: this.ts, irap, damaged: this.damaged });
    this.nals = [];
    this.damaged = false;
  }
}
