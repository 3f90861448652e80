/**
 * SRTP protection profiles and session key derivation (RFC 3711 §4.3, RFC 7714 §11).
 *
 * Pure: master key and salt in (as exported by DTLS-SRTP, RFC 5764 §4.2), session keys
 * out. The key derivation rate is 0 (WebRTC never rekeys), so every key is derived
 * once, with r = 0.
 */
import { createCipheriv } from "node:crypto";

/** DTLS-SRTP protection profile ids (RFC 5764 §4.1.2, RFC 7714 §14.2). */
export const SrtpProfile = {
  AES128_CM_HMAC_SHA1_80: 0x0001,
  AEAD_AES_128_GCM: 0x0007,
} as const;
export type SrtpProfile = (typeof SrtpProfile)[keyof typeof SrtpProfile];

/** Sizes a profile fixes, in bytes. */
export interface SrtpProfileParams {
  /** Master and session encryption key. */
  keyLength: number;
  /** Master salt as exported by DTLS; also the session salt. */
  saltLength: number;
  /** HMAC-SHA1 session key (0 for AEAD). */
  authKeyLength: number;
  /** Authentication tag appended to each SRTP/SRTCP packet. */
  tagLength: number;
}

const PARAMS: Record<SrtpProfile, SrtpProfileParams> = {
  [SrtpProfile.AES128_CM_HMAC_SHA1_80]: { keyLength: 16, saltLength: 14, authKeyLength: 20, tagLength: 10 },
  [SrtpProfile.AEAD_AES_128_GCM]: { keyLength: 16, saltLength: 12, authKeyLength: 0, tagLength: 16 },
};

/** Parameters of a supported profile, or undefined. */
export function srtpProfileParams(profile: number): SrtpProfileParams | undefined {
  return PARAMS[profile as SrtpProfile];
}

/** Human-readable profile name (stats, logs). */
export function srtpProfileName(profile: number): string {
  switch (profile) {
    case SrtpProfile.AES128_CM_HMAC_SHA1_80:
      return "AES_CM_128_HMAC_SHA1_80";
    case SrtpProfile.AEAD_AES_128_GCM:
      return "AEAD_AES_128_GCM";
    default:
      return `0x${profile.toString(16).padStart(4, "0")}`;
  }
}

/** One direction's session keys (RFC 3711 §4.3.2 labels 0–5). */
export interface SrtpSessionKeys {
  profile: SrtpProfile;
  rtpKey: Buffer;
  rtpSalt: Buffer;
  /** Empty for AEAD profiles. */
  rtpAuthKey: Buffer;
  rtcpKey: Buffer;
  rtcpSalt: Buffer;
  rtcpAuthKey: Buffer;
}

/** RFC 3711 §4.3.2 key derivation labels. */
const Label = { RTP_ENC: 0, RTP_AUTH: 1, RTP_SALT: 2, RTCP_ENC: 3, RTCP_AUTH: 4, RTCP_SALT: 5 } as const;

/**
 * Derives the session keys of one direction from its master key and salt.
 * Throws RangeError for an unknown profile or wrong key/salt length.
 */
export function deriveSrtpSessionKeys(profile: number, masterKey: Uint8Array, masterSalt: Uint8Array): SrtpSessionKeys {
  const p = srtpProfileParams(profile);
  if (!p) throw new RangeError(`unsupported SRTP profile ${srtpProfileName(profile)}`);
  if (masterKey.length !== p.keyLength) throw new RangeError(`SRTP master key must be ${p.keyLength} bytes`);
  if (masterSalt.length !== p.saltLength) throw new RangeError(`SRTP master salt must be ${p.saltLength} bytes`);
  const prf = (label: number, length: number) => srtpKdf(masterKey, masterSalt, label, length);
  return {
    profile: profile as SrtpProfile,
    rtpKey: prf(Label.RTP_ENC, p.keyLength),
    rtpSalt: prf(Label.RTP_SALT, p.saltLength),
    rtpAuthKey: p.authKeyLength > 0 ? prf(Label.RTP_AUTH, p.authKeyLength) : Buffer.alloc(0),
    rtcpKey: prf(Label.RTCP_ENC, p.keyLength),
    rtcpSalt: prf(Label.RTCP_SALT, p.saltLength),
    rtcpAuthKey: p.authKeyLength > 0 ? prf(Label.RTCP_AUTH, p.authKeyLength) : Buffer.alloc(0),
  };
}

/**
 * RFC 3711 §4.3.1 with key_derivation_rate 0: x = (label || r=0₄₈) XOR master_salt, the
 * two aligned at their least significant end over 112 bits, then AES-CM (§4.3.3) keyed
 * with the master key from IV = x·2¹⁶. A 96-bit GCM master salt (RFC 7714 §11) is padded
 * with zero bits on the right to 112 bits, as libsrtp and werift do.
 */
export function srtpKdf(masterKey: Uint8Array, masterSalt: Uint8Array, label: number, length: number): Buffer {
  const x = Buffer.alloc(14);
  x.set(masterSalt.subarray(0, 14));
  x[7]! ^= label; // label sits 7 bytes (56 bits) from the end of the 112-bit x; r = 0 XORs nothing
  const blocks = Math.ceil(length / 16);
  const input = Buffer.alloc(blocks * 16);
  for (let b = 0; b < blocks; b++) {
    x.copy(input, b * 16);
    input.writeUInt16BE(b, b * 16 + 14);
  }
  const ecb = createCipheriv(`aes-${masterKey.length * 8}-ecb`, masterKey, null);
  ecb.setAutoPadding(false);
  return Buffer.concat([ecb.update(input), ecb.final()]).subarray(0, length);
}
