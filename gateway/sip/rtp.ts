/**
 * G.711 helpers and the tones the intercom generates (silence, ringback). Pure.
 * RTP headers are read and written with the media plane's codec, sfu/rtp/packet.ts.
 */
import type { G711 } from "./sdp.ts";

/** ITU-T G.711 µ-law encoding of one 16-bit linear sample. */
export function linearToUlaw(sample: number): number {
  const BIAS = 0x84;
  const CLIP = 32635;
  let s = Math.max(-32768, Math.min(32767, Math.round(sample)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** ITU-T G.711 A-law encoding of one 16-bit linear sample. */
export function linearToAlaw(sample: number): number {
  let v = Math.max(-32768, Math.min(32767, Math.round(sample))) >> 3; // 13-bit
  let mask: number;
  if (v >= 0) mask = 0xd5;
  else {
    mask = 0x55;
    v = -v - 1;
  }
  let seg = 0;
  while (seg < 8 && v > (0x20 << seg) - 1) seg++; // segment ends 0x1F, 0x3F, … 0xFFF
  if (seg >= 8) return 0x7f ^ mask;
  const aval = (seg << 4) | ((seg < 2 ? v >> 1 : v >> seg) & 0x0f);
  return aval ^ mask;
}

/** µ-law / A-law decoding (tests and level meters). */
export function ulawToLinear(u: number): number {
  const v = ~u & 0xff;
  const sign = v & 0x80;
  const exponent = (v >> 4) & 0x07;
  const mantissa = v & 0x0f;
  const s = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return sign ? -s : s;
}

export function alawToLinear(a: number): number {
  const v = a ^ 0x55;
  const sign = v & 0x80;
  const seg = (v >> 4) & 0x07;
  let s = (v & 0x0f) << 4;
  s = seg === 0 ? s + 8 : ((s + 0x108) << (seg - 1));
  return sign ? s : -s;
}

/** One 20 ms frame of silence in `codec` (160 bytes). */
export function silenceFrame(codec: G711): Buffer {
  return Buffer.alloc(160, codec === "PCMU" ? 0xff : 0xd5);
}

/**
 * A ringback tone as 20 ms G.711 frames: 425 Hz, 1 s on / 4 s off (ETSI TR 101 041 cadence).
 * 425 Hz divides one second into whole periods, so the "on" second loops seamlessly.
 */
export function ringbackFrames(codec: G711): Buffer[] {
  const enc = codec === "PCMU" ? linearToUlaw : linearToAlaw;
  const frames: Buffer[] = [];
  for (let f = 0; f < 250; f++) {
    const b = Buffer.alloc(160);
    for (let i = 0; i < 160; i++) {
      const n = f * 160 + i;
      const on = n < 8000;
      b[i] = enc(on ? 8000 * Math.sin((2 * Math.PI * 425 * n) / 8000) : 0);
    }
    frames.push(b);
  }
  return frames;
}
