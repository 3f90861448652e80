/**
 * Sequence parameter set parser (H.264 §7.3.2.1.1) for logs and stats: profile,
 * level and the cropped picture size. Not on the per-packet path.
 */

/** What an SPS says about the stream. */
export interface SpsInfo {
  /** profile_idc (66 baseline, 77 main, 100 high…). */
  profileIdc: number;
  /** The constraint_set flags byte (constraint_set0_flag is the MSB). */
  constraintFlags: number;
  /** level_idc (31 = level 3.1). */
  levelIdc: number;
  spsId: number;
  /** chroma_format_idc (1 = 4:2:0). */
  chromaFormatIdc: number;
  bitDepthLuma: number;
  /** Whether only frames (no fields) are coded. */
  frameMbsOnly: boolean;
  /** Luma width in pixels after frame cropping. */
  width: number;
  /** Luma height in pixels after frame cropping. */
  height: number;
  /** Human-readable profile name ("Constrained Baseline", "High", …). */
  profile: string;
}

/** Strips emulation-prevention bytes (00 00 03 → 00 00), H.264 §7.4.1. */
export function unescapeRbsp(nal: Uint8Array): Uint8Array {
  let zeros = 0;
  let needs = false;
  for (let i = 0; i < nal.length; i++) {
    const b = nal[i]!;
    if (zeros >= 2 && b === 3) {
      needs = true;
      break;
    }
    zeros = b === 0 ? zeros + 1 : 0;
  }
  if (!needs) return nal;
  const out = new Uint8Array(nal.length);
  let n = 0;
  zeros = 0;
  for (let i = 0; i < nal.length; i++) {
    const b = nal[i]!;
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    out[n++] = b;
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return out.subarray(0, n);
}

class Overrun extends Error {}

/** MSB-first bit reader with Exp-Golomb codes (H.264 §9.1). */
class BitReader {
  private pos = 0;
  private readonly bits: number;
  private readonly buf: Uint8Array;
  constructor(buf: Uint8Array, startByte: number) {
    this.buf = buf;
    this.pos = startByte * 8;
    this.bits = buf.length * 8;
  }
  u1(): number {
    if (this.pos >= this.bits) throw new Overrun();
    const v = (this.buf[this.pos >> 3]! >> (7 - (this.pos & 7))) & 1;
    this.pos++;
    return v;
  }
  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.u1();
    return v;
  }
  ue(): number {
    let zeros = 0;
    while (this.u1() === 0) {
      if (++zeros > 31) throw new Overrun();
    }
    return 2 ** zeros - 1 + this.u(zeros);
  }
  se(): number {
    const k = this.ue();
    return k & 1 ? (k + 1) / 2 : -(k / 2);
  }
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

function skipScalingList(r: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

function profileName(idc: number, flags: number): string {
  switch (idc) {
    case 66:
      return flags & 0x40 ? "Constrained Baseline" : "Baseline";
    case 77:
      return "Main";
    case 88:
      return "Extended";
    case 100:
      return flags & 0x0c ? "Constrained High" : "High";
    case 110:
      return "High 10";
    case 122:
      return "High 4:2:2";
    case 244:
      return "High 4:4:4 Predictive";
    default:
      return `profile_idc ${idc}`;
  }
}

/**
 * Parses an SPS NAL unit (header byte included). Returns null when it is not an SPS,
 * is truncated, or has out-of-range values.
 */
export function parseSps(nal: Uint8Array): SpsInfo | null {
  if (nal.length < 4 || (nal[0]! & 0x1f) !== 7) return null;
  const rbsp = unescapeRbsp(nal);
  try {
    const r = new BitReader(rbsp, 1);
    const profileIdc = r.u(8);
    const constraintFlags = r.u(8);
    const levelIdc = r.u(8);
    const spsId = r.ue();
    if (spsId > 31) return null;
    let chromaFormatIdc = 1;
    let separateColourPlane = 0;
    let bitDepthLuma = 8;
    if (HIGH_PROFILES.has(profileIdc)) {
      chromaFormatIdc = r.ue();
      if (chromaFormatIdc > 3) return null;
      if (chromaFormatIdc === 3) separateColourPlane = r.u1();
      bitDepthLuma = r.ue() + 8;
      r.ue(); // bit_depth_chroma_minus8
      r.u1(); // qpprime_y_zero_transform_bypass_flag
      if (r.u1()) {
        const lists = chromaFormatIdc !== 3 ? 8 : 12;
        for (let i = 0; i < lists; i++) if (r.u1()) skipScalingList(r, i < 6 ? 16 : 64);
      }
    }
    r.ue(); // log2_max_frame_num_minus4
    const pocType = r.ue();
    if (pocType === 0) {
      r.ue(); // log2_max_pic_order_cnt_lsb_minus4
    } else if (pocType === 1) {
      r.u1(); // delta_pic_order_always_zero_flag
      r.se(); // offset_for_non_ref_pic
      r.se(); // offset_for_top_to_bottom_field
      const n = r.ue();
      if (n > 255) return null;
      for (let i = 0; i < n; i++) r.se();
    } else if (pocType !== 2) {
      return null;
    }
    r.ue(); // max_num_ref_frames
    r.u1(); // gaps_in_frame_num_value_allowed_flag
    const widthMbs = r.ue() + 1;
    const heightMapUnits = r.ue() + 1;
    const frameMbsOnly = r.u1() === 1;
    if (!frameMbsOnly) r.u1(); // mb_adaptive_frame_field_flag
    r.u1(); // direct_8x8_inference_flag
    let cropLeft = 0;
    let cropRight = 0;
    let cropTop = 0;
    let cropBottom = 0;
    if (r.u1()) {
      cropLeft = r.ue();
      cropRight = r.ue();
      cropTop = r.ue();
      cropBottom = r.ue();
    }
    // §7.4.2.1.1: crop units depend on ChromaArrayType and field coding.
    const chromaArrayType = separateColourPlane ? 0 : chromaFormatIdc;
    const fieldFactor = frameMbsOnly ? 1 : 2;
    let cropUnitX = 1;
    let cropUnitY = fieldFactor;
    if (chromaArrayType !== 0) {
      const subWidthC = chromaFormatIdc === 3 ? 1 : 2;
      const subHeightC = chromaFormatIdc === 1 ? 2 : 1;
      cropUnitX = subWidthC;
      cropUnitY = subHeightC * fieldFactor;
    }
    const width = widthMbs * 16 - cropUnitX * (cropLeft + cropRight);
    const height = fieldFactor * heightMapUnits * 16 - cropUnitY * (cropTop + cropBottom);
    if (width <= 0 || height <= 0) return null;
    return {
      profileIdc,
      constraintFlags,
      levelIdc,
      spsId,
      chromaFormatIdc,
      bitDepthLuma,
      frameMbsOnly,
      width,
      height,
      profile: profileName(profileIdc, constraintFlags),
    };
  } catch (e) {
    if (e instanceof Overrun) return null;
    throw e;
  }
}
