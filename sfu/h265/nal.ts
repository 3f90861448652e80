/**
 * H.265 NAL unit basics (ITU-T H.265 §7.3.1.2, RFC 7798 §1.1.4): the two-byte header,
 * types, IRAP pictures and the SDP's sprop-vps/sps/pps.
 */

export const H265Type = {
  /** IRAP pictures are types 16–23 (BLA, IDR, CRA and reserved IRAP). */
  IRAP_FIRST: 16,
  IRAP_LAST: 23,
  VPS: 32,
  SPS: 33,
  PPS: 34,
  AUD: 35,
  /** RFC 7798 §4.4: aggregation packet, fragmentation unit, PACI. */
  AP: 48,
  FU: 49,
  PACI: 50,
} as const;

/** The 6-bit type of an H.265 NAL unit header (its first byte). */
export function h265Type(firstByte: number): number {
  return (firstByte >> 1) & 0x3f;
}

export function isIrap(type: number): boolean {
  return type >= H265Type.IRAP_FIRST && type <= H265Type.IRAP_LAST;
}

export function isParameterSet(type: number): boolean {
  return type === H265Type.VPS || type === H265Type.SPS || type === H265Type.PPS;
}

/** RFC 7798 §7.1: sprop-vps, sprop-sps and sprop-pps (comma lists of base64 NAL units) from an fmtp line. */
export function parseH265Sprops(fmtp: string): Buffer[] {
  const out: Buffer[] = [];
  for (const key of ["sprop-vps", "sprop-sps", "sprop-pps"]) {
    const m = new RegExp(`(?:^|;)\\s*${key}\\s*=\\s*([^;]*)`, "i").exec(fmtp);
    if (!m) continue;
    for (const b64 of m[1]!.split(",")) {
      const s = b64.trim();
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) continue;
      const nal = Buffer.from(s, "base64");
      if (nal.length >= 3 && isParameterSet(h265Type(nal[0]!))) out.push(nal);
    }
  }
  return out;
}

/** RFC 7798 §7.1: sprop-max-don-diff > 0 means DONL fields are present in APs and FUs. */
export function hasDonl(fmtp: string): boolean {
  const m = /(?:^|;)\s*sprop-max-don-diff\s*=\s*(\d+)/i.exec(fmtp);
  return m !== null && Number(m[1]) > 0;
}

const START_CODE = Buffer.from([0, 0, 0, 1]);

/** An access unit in Annex-B form (start code before each NAL). */
export function toAnnexB(nals: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const n of nals) parts.push(START_CODE, n);
  return Buffer.concat(parts);
}
