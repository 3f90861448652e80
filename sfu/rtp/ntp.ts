/**
 * NTP timestamps for RTCP sender reports (RFC 3550 §4, §6.4.1): 64-bit, seconds since
 * 1900-01-01 in the high word and a binary fraction in the low word. The "middle 32
 * bits" are the LSR echoed in report blocks; DLSR counts units of 1/65536 s.
 */

/** Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch). */
export const NTP_UNIX_OFFSET_SECONDS = 2_208_988_800;

/** A 64-bit NTP timestamp as two unsigned 32-bit words. */
export interface NtpTime {
  /** Whole seconds since 1900 (mod 2^32). */
  seconds: number;
  /** Fraction of a second in units of 2^-32 s. */
  fraction: number;
}

/** The NTP timestamp for a Unix time in milliseconds. */
export function ntpFromUnixMs(unixMs: number): NtpTime {
  const secs = Math.floor(unixMs / 1000);
  const ms = unixMs - secs * 1000;
  return {
    seconds: (secs + NTP_UNIX_OFFSET_SECONDS) >>> 0,
    fraction: Math.min(0xffffffff, Math.round((ms / 1000) * 0x1_0000_0000)) >>> 0,
  };
}

/** Unix milliseconds for an NTP timestamp (era 0, i.e. until 2036). */
export function ntpToUnixMs(seconds: number, fraction: number): number {
  return (seconds - NTP_UNIX_OFFSET_SECONDS) * 1000 + (fraction / 0x1_0000_0000) * 1000;
}

/** The middle 32 bits of a 64-bit NTP timestamp: what a report block's LSR echoes. */
export function ntpMiddle32(seconds: number, fraction: number): number {
  return (((seconds & 0xffff) << 16) | (fraction >>> 16)) >>> 0;
}

/** A duration in milliseconds as DLSR units (1/65536 s), clamped to 32 bits. */
export function msToDlsr(ms: number): number {
  if (ms <= 0) return 0;
  return Math.min(0xffffffff, Math.round((ms * 65536) / 1000)) >>> 0;
}

/**
 * Round-trip time in milliseconds from a report block (RFC 3550 §6.4.1): A − LSR − DLSR,
 * where `arrivalMiddle32` is the middle 32 bits of the NTP time the report arrived.
 * Returns −1 when the block carries no LSR (no SR received yet by the reporter).
 */
export function rttFromReport(arrivalMiddle32: number, lsr: number, dlsr: number): number {
  if (lsr === 0) return -1;
  const units = (arrivalMiddle32 - lsr - dlsr) >>> 0;
  // A negative result wraps to a huge value: treat anything over ~1 h as clock noise → 0.
  if (units > 0x0e10_0000) return 0;
  return (units * 1000) / 65536;
}
