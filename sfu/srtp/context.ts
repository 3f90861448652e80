/**
 * SRTP and SRTCP packet protection (RFC 3711 AES_CM_128_HMAC_SHA1_80, RFC 7714
 * AEAD_AES_128_GCM) for the forwarding hot path, and the matching unprotection for
 * what viewers send back (RTCP) and for tests.
 *
 * Pure: bytes in, bytes out, no sockets or timers. Keys are `KeyObject`s made once per
 * context (node:crypto re-imports a raw key Buffer on every createCipheriv, which costs
 * more than the AES itself). `SrtpSender.protectRtp` writes header, ciphertext and tag
 * into a caller-owned buffer: the only allocations left per packet are node:crypto's
 * cipher object and its output. With the native fast path (sfu/native/) RTP protection
 * keeps its keys expanded per sender and allocates nothing: AES-GCM 0.33 µs instead of
 * 5.5 µs for a 1,200-byte packet; AES-CM with HMAC-SHA1 likewise natively.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  timingSafeEqual,
  type KeyObject,
} from "node:crypto";
import { writeRtpHeaderExtended, type RtpHeaderFields } from "../rtp/packet.ts";
import { fastPath, type CmContext, type GcmContext } from "../native/index.ts";
import { SrtpProfile, srtpProfileParams, type SrtpSessionKeys } from "./kdf.ts";

/** RFC 3711 §3.4: E flag of the SRTCP index word. */
const E_FLAG = 0x80000000;
const RTP_HEADER = 12;
const RTCP_HEADER = 8;
/** Replay window (RFC 3711 §3.3.2: at least 64). */
const REPLAY_WINDOW = 128;
/** Receive contexts keep state for at most this many SSRCs (a peer cannot grow it without bound). */
const MAX_SSRCS = 64;

/** Keys of one direction as KeyObjects, and the per-profile sizes. */
class Keys {
  readonly gcm: boolean;
  readonly tagLength: number;
  readonly rtpKey: KeyObject;
  readonly rtpSalt: Buffer;
  readonly rtpAuth: KeyObject | undefined;
  readonly rtcpKey: KeyObject;
  readonly rtcpSalt: Buffer;
  readonly rtcpAuth: KeyObject | undefined;

  constructor(k: SrtpSessionKeys) {
    const p = srtpProfileParams(k.profile);
    if (!p) throw new RangeError(`unsupported SRTP profile ${k.profile}`);
    if (k.rtpKey.length !== 16 || k.rtcpKey.length !== 16) throw new RangeError("SRTP session keys must be 16 bytes");
    if (k.rtpSalt.length < p.saltLength || k.rtcpSalt.length < p.saltLength) throw new RangeError("SRTP session salt too short");
    this.gcm = k.profile === SrtpProfile.AEAD_AES_128_GCM;
    this.tagLength = p.tagLength;
    this.rtpKey = createSecretKey(k.rtpKey);
    this.rtcpKey = createSecretKey(k.rtcpKey);
    this.rtpSalt = Buffer.from(k.rtpSalt.subarray(0, p.saltLength));
    this.rtcpSalt = Buffer.from(k.rtcpSalt.subarray(0, p.saltLength));
    if (!this.gcm && (k.rtpAuthKey.length !== 20 || k.rtcpAuthKey.length !== 20)) {
      throw new RangeError("HMAC-SHA1 session keys must be 20 bytes");
    }
    this.rtpAuth = this.gcm ? undefined : createSecretKey(k.rtpAuthKey);
    this.rtcpAuth = this.gcm ? undefined : createSecretKey(k.rtcpAuthKey);
  }
}

/**
 * RFC 7714 §8.1 (RTP) / §9.1 (RTCP) IV: 00 00 || SSRC || high32 || low16… XOR salt.
 * RTP: high = ROC (32 bits), low = SEQ (16 bits). RTCP: 00 00 || SSRC || 00 00 || index (32).
 */
function gcmIv(iv: Buffer, salt: Buffer, ssrc: number, a: number, b: number, rtcp: boolean): void {
  iv[0] = salt[0]!;
  iv[1] = salt[1]!;
  iv[2] = salt[2]! ^ (ssrc >>> 24);
  iv[3] = salt[3]! ^ ((ssrc >>> 16) & 0xff);
  iv[4] = salt[4]! ^ ((ssrc >>> 8) & 0xff);
  iv[5] = salt[5]! ^ (ssrc & 0xff);
  if (rtcp) {
    // b = SRTCP index (31 bits) in the last 4 bytes, 2 zero bytes before it.
    iv[6] = salt[6]!;
    iv[7] = salt[7]!;
    iv[8] = salt[8]! ^ (b >>> 24);
    iv[9] = salt[9]! ^ ((b >>> 16) & 0xff);
    iv[10] = salt[10]! ^ ((b >>> 8) & 0xff);
    iv[11] = salt[11]! ^ (b & 0xff);
  } else {
    // a = ROC, b = SEQ.
    iv[6] = salt[6]! ^ (a >>> 24);
    iv[7] = salt[7]! ^ ((a >>> 16) & 0xff);
    iv[8] = salt[8]! ^ ((a >>> 8) & 0xff);
    iv[9] = salt[9]! ^ (a & 0xff);
    iv[10] = salt[10]! ^ (b >>> 8);
    iv[11] = salt[11]! ^ (b & 0xff);
  }
}

/**
 * RFC 3711 §4.1.1 AES-CM IV: (salt·2¹⁶) XOR (SSRC·2⁶⁴) XOR (index·2¹⁶), index 48 bits
 * given as `hi` (upper 32: ROC for RTP, 0 for RTCP's… see callers) and `lo` (lower 16).
 */
function cmIv(iv: Buffer, salt: Buffer, ssrc: number, hi: number, lo: number): void {
  iv[0] = salt[0]!;
  iv[1] = salt[1]!;
  iv[2] = salt[2]!;
  iv[3] = salt[3]!;
  iv[4] = salt[4]! ^ (ssrc >>> 24);
  iv[5] = salt[5]! ^ ((ssrc >>> 16) & 0xff);
  iv[6] = salt[6]! ^ ((ssrc >>> 8) & 0xff);
  iv[7] = salt[7]! ^ (ssrc & 0xff);
  iv[8] = salt[8]! ^ (hi >>> 24);
  iv[9] = salt[9]! ^ ((hi >>> 16) & 0xff);
  iv[10] = salt[10]! ^ ((hi >>> 8) & 0xff);
  iv[11] = salt[11]! ^ (hi & 0xff);
  iv[12] = salt[12]! ^ (lo >>> 8);
  iv[13] = salt[13]! ^ (lo & 0xff);
  iv[14] = 0;
  iv[15] = 0;
}

/**
 * Outbound SRTP/SRTCP for one DTLS association (one viewer). Tracks the rollover
 * counter of each SSRC it sends (RFC 3711 §3.3.1), including retransmissions of packets
 * sent before a wrap, and the SRTCP index.
 */
export class SrtpSender {
  readonly profile: SrtpProfile;
  /** Bytes added to an RTP packet (the tag). */
  readonly rtpOverhead: number;
  /** Bytes added to an RTCP compound (tag + index word). */
  readonly rtcpOverhead: number;
  private readonly k: Keys;
  private readonly iv: Buffer;
  private readonly word = Buffer.alloc(4);
  // Per-SSRC rollover state; a viewer sends two or three SSRCs, so arrays beat a Map.
  private readonly ssrcs: number[] = [];
  private readonly rocs: number[] = [];
  private readonly highSeqs: number[] = [];
  private rtcpIndex = 0;
  private aadOf: Buffer | undefined;
  private aad: Buffer | undefined;
  /** Native context for RTP (undefined: no native fast path). */
  private nativeRtp: GcmContext | undefined;
  private nativeRtpCm: CmContext | undefined;

  constructor(keys: SrtpSessionKeys, opts: { native?: boolean } = {}) {
    this.k = new Keys(keys);
    this.profile = keys.profile;
    this.rtpOverhead = this.k.tagLength;
    this.rtcpOverhead = this.k.tagLength + 4;
    this.iv = Buffer.alloc(this.k.gcm ? 12 : 16);
    if (fastPath && opts.native !== false) {
      if (this.k.gcm) this.nativeRtp = fastPath.gcmContext(keys.rtpKey, this.k.rtpSalt);
      else this.nativeRtpCm = fastPath.cmContext(keys.rtpKey, this.k.rtpSalt, keys.rtpAuthKey);
    }
  }

  /** True when RTP is protected in native code. */
  get native(): boolean {
    return this.nativeRtp !== undefined || this.nativeRtpCm !== undefined;
  }

  /** Frees the native key schedule now (the sender falls back to node:crypto if used again). */
  release(): void {
    if (this.nativeRtp) fastPath!.release(this.nativeRtp);
    if (this.nativeRtpCm) fastPath!.release(this.nativeRtpCm);
    this.nativeRtp = undefined;
    this.nativeRtpCm = undefined;
  }

  /**
   * Writes the 12-byte header of `h`, the encrypted `payload` and the tag into `out`
   * from offset 0, and returns the packet length. `out` needs
   * rtpHeaderLength(h) (12, or 20 with a transport-wide sequence number) + payload.length + rtpOverhead bytes.
   */
  protectRtp(out: Buffer, h: RtpHeaderFields, payload: Uint8Array): number {
    const ssrc = h.ssrc >>> 0;
    const seq = h.sequenceNumber & 0xffff;
    const hl = writeRtpHeaderExtended(out, h, 0);
    const roc = this.rocFor(ssrc, seq);
    if (this.nativeRtp) return fastPath!.protectRtpGcm(this.nativeRtp, out, payload, roc);
    if (this.nativeRtpCm) return fastPath!.protectRtpCm(this.nativeRtpCm, out, payload, roc);
    const k = this.k;
    const n = payload.length;
    if (k.gcm) {
      gcmIv(this.iv, k.rtpSalt, ssrc, roc, seq, false);
      const c = createCipheriv("aes-128-gcm", k.rtpKey, this.iv);
      c.setAAD(this.headerView(out, hl)); // RFC 7714 §8.2: the header is the associated data
      out.set(c.update(payload), hl);
      c.final();
      out.set(c.getAuthTag(), hl + n);
      return hl + n + 16;
    }
    cmIv(this.iv, k.rtpSalt, ssrc, roc, seq);
    const c = createCipheriv("aes-128-ctr", k.rtpKey, this.iv);
    out.set(c.update(payload), hl);
    // RFC 3711 §4.2: HMAC-SHA1 over the packet and the ROC, truncated to 80 bits.
    const m = createHmac("sha1", k.rtpAuth!);
    m.update(out.subarray(0, hl + n));
    this.word.writeUInt32BE(roc, 0);
    m.update(this.word);
    m.digest().copy(out, hl + n, 0, 10);
    return hl + n + 10;
  }

  /**
   * Protects one plain RTCP compound into `out` (needs plain.length + rtcpOverhead bytes)
   * and returns its length. The SRTCP index counts every compound sent (RFC 3711 §3.4).
   */
  protectRtcp(out: Buffer, plain: Uint8Array): number {
    if (plain.length < RTCP_HEADER) throw new RangeError("RTCP packet shorter than 8 bytes");
    const k = this.k;
    const index = this.rtcpIndex;
    this.rtcpIndex = (index + 1) & 0x7fffffff;
    const ssrc = ((plain[4]! << 24) | (plain[5]! << 16) | (plain[6]! << 8) | plain[7]!) >>> 0;
    const n = plain.length;
    out.set(plain.subarray(0, RTCP_HEADER), 0);
    const body = plain.subarray(RTCP_HEADER);
    const eIndex = (E_FLAG | index) >>> 0;
    if (k.gcm) {
      gcmIv(this.iv, k.rtcpSalt, ssrc, 0, index, true);
      const c = createCipheriv("aes-128-gcm", k.rtcpKey, this.iv);
      // RFC 7714 §9.2 (encrypted): AAD = first 8 bytes || E||SRTCP index.
      this.word.writeUInt32BE(eIndex, 0);
      c.setAAD(Buffer.concat([plain.subarray(0, RTCP_HEADER), this.word]));
      out.set(c.update(body), RTCP_HEADER);
      c.final();
      out.set(c.getAuthTag(), n);
      out.writeUInt32BE(eIndex, n + 16);
      return n + 16 + 4;
    }
    // RFC 3711 §4.1.1: for SRTCP the 31-bit index takes the place of the 48-bit packet index.
    cmIv(this.iv, k.rtcpSalt, ssrc, index >>> 16, index & 0xffff);
    const c = createCipheriv("aes-128-ctr", k.rtcpKey, this.iv);
    out.set(c.update(body), RTCP_HEADER);
    out.writeUInt32BE(eIndex, n);
    const m = createHmac("sha1", k.rtcpAuth!);
    m.update(out.subarray(0, n + 4));
    m.digest().copy(out, n + 4, 0, 10);
    return n + 4 + 10;
  }

  /**
   * The native context that seals this sender's RTP (`fastPath.sealSend`), or null when
   * RTP is protected in JavaScript (or the keys were released).
   */
  get sealContext(): GcmContext | CmContext | null {
    return this.nativeRtp ?? this.nativeRtpCm ?? null;
  }

  /**
   * Stages one RTP packet for `fastPath.sealSend`: its 12-byte header and `payload` as
   * plaintext into `out` at `off` (needs rtpHeaderLength(h) + payload.length + rtpOverhead bytes there),
   * and returns the rollover counter to seal it with (the ROC state advances as
   * protectRtp's does: the packet counts as sent).
   */
  stageRtp(out: Buffer, off: number, h: RtpHeaderFields, payload: Uint8Array): number {
    const ssrc = h.ssrc >>> 0;
    const seq = h.sequenceNumber & 0xffff;
    out.set(payload, off + writeRtpHeaderExtended(out, h, off));
    return this.rocFor(ssrc, seq);
  }

  /** The current rollover counter of `ssrc` (tests, diagnostics). */
  rolloverCounter(ssrc: number): number {
    const i = this.ssrcs.indexOf(ssrc >>> 0);
    return i < 0 ? 0 : this.rocs[i]!;
  }

  /**
   * RFC 3711 §3.3.1 / Appendix A from the sender's side: a sequence number ahead of the
   * highest sent advances it (a wrap increments the ROC); one behind it (a retransmission)
   * gets the ROC it was first sent with.
   */
  private rocFor(ssrc: number, seq: number): number {
    const i = this.ssrcs.indexOf(ssrc);
    if (i < 0) {
      this.ssrcs.push(ssrc);
      this.rocs.push(0);
      this.highSeqs.push(seq);
      return 0;
    }
    const roc = this.rocs[i]!;
    const high = this.highSeqs[i]!;
    let v: number;
    if (high < 0x8000) v = seq - high > 0x8000 ? roc - 1 : roc;
    else v = high - 0x8000 > seq ? roc + 1 : roc;
    if (v < 0) return 0; // "before" the first packet: cannot be a packet we sent
    if (v > roc || (v === roc && seq > high)) {
      this.rocs[i] = v >>> 0;
      this.highSeqs[i] = seq;
    }
    return v >>> 0;
  }

  /** The header as AAD: a view made once per output buffer, not per packet. */
  private headerView(out: Buffer, hl: number): Buffer {
    if (this.aadOf !== out || this.aad!.length !== hl) {
      this.aadOf = out;
      this.aad = out.subarray(0, hl);
    }
    return this.aad!;
  }
}

/** Anti-replay state of one SSRC (RFC 3711 §3.3.2): highest index and a seen-window. */
class ReplayState {
  roc = 0;
  highSeq = 0;
  highest = -1;
  readonly seen = new Uint8Array(REPLAY_WINDOW);

  /** False when `index` is too old or already seen. */
  fresh(index: number): boolean {
    if (this.highest < 0 || index > this.highest) return true;
    if (index <= this.highest - REPLAY_WINDOW) return false;
    return this.seen[index % REPLAY_WINDOW] === 0;
  }

  /** Records an authenticated index. */
  accept(index: number): void {
    if (index > this.highest) {
      const from = this.highest < 0 ? index : Math.max(this.highest + 1, index - REPLAY_WINDOW + 1);
      for (let j = from; j <= index; j++) this.seen[j % REPLAY_WINDOW] = 0;
      this.highest = index;
    }
    this.seen[index % REPLAY_WINDOW] = 1;
  }
}

/** Why a packet was refused by `SrtpReceiver`. */
export type SrtpRejectReason = "short" | "auth" | "replay" | "index";

/**
 * Inbound SRTP/SRTCP for one DTLS association: authenticates, decrypts, rejects replays.
 * Results are fresh Buffers (this side is not on the fan-out path).
 */
export class SrtpReceiver {
  readonly profile: SrtpProfile;
  /** Why the last call returned null. */
  lastReject: SrtpRejectReason | undefined;
  private readonly k: Keys;
  private readonly iv: Buffer;
  private readonly rtp = new Map<number, ReplayState>();
  private readonly rtcp = new Map<number, ReplayState>();

  constructor(keys: SrtpSessionKeys) {
    this.k = new Keys(keys);
    this.profile = keys.profile;
    this.iv = Buffer.alloc(this.k.gcm ? 12 : 16);
  }

  /** The plain RTP packet, or null (see `lastReject`). */
  unprotectRtp(packet: Uint8Array): Buffer | null {
    const k = this.k;
    const tag = k.tagLength;
    if (packet.length < RTP_HEADER + tag) return this.reject("short");
    const cc = packet[0]! & 0x0f;
    let hlen = RTP_HEADER + 4 * cc;
    if (packet[0]! & 0x10) {
      if (packet.length < hlen + 4) return this.reject("short");
      hlen += 4 + 4 * ((packet[hlen + 2]! << 8) | packet[hlen + 3]!);
    }
    const end = packet.length - tag;
    if (end < hlen) return this.reject("short");
    const seq = (packet[2]! << 8) | packet[3]!;
    const ssrc = ((packet[8]! << 24) | (packet[9]! << 16) | (packet[10]! << 8) | packet[11]!) >>> 0;
    const st = this.state(this.rtp, ssrc);
    // RFC 3711 Appendix A: guess the ROC from the highest sequence number seen.
    let v = st.roc;
    if (st.highest >= 0) {
      if (st.highSeq < 0x8000) v = seq - st.highSeq > 0x8000 ? st.roc - 1 : st.roc;
      else v = st.highSeq - 0x8000 > seq ? st.roc + 1 : st.roc;
    }
    if (v < 0) return this.reject("index");
    const index = v * 0x10000 + seq;
    if (!st.fresh(index)) return this.reject("replay");
    const header = packet.subarray(0, hlen);
    const body = packet.subarray(hlen, end);
    let plain: Buffer;
    try {
      if (k.gcm) {
        gcmIv(this.iv, k.rtpSalt, ssrc, v, seq, false);
        const d = createDecipheriv("aes-128-gcm", k.rtpKey, this.iv);
        d.setAAD(header);
        d.setAuthTag(packet.subarray(end));
        plain = Buffer.concat([header, d.update(body), d.final()]);
      } else {
        const m = createHmac("sha1", k.rtpAuth!);
        m.update(packet.subarray(0, end));
        const roc = Buffer.alloc(4);
        roc.writeUInt32BE(v, 0);
        m.update(roc);
        if (!timingSafeEqual(m.digest().subarray(0, 10), packet.subarray(end))) return this.reject("auth");
        cmIv(this.iv, k.rtpSalt, ssrc, v, seq);
        const d = createDecipheriv("aes-128-ctr", k.rtpKey, this.iv);
        plain = Buffer.concat([header, d.update(body), d.final()]);
      }
    } catch {
      return this.reject("auth");
    }
    st.accept(index);
    if (index === st.highest) {
      st.roc = v;
      st.highSeq = seq;
    }
    this.lastReject = undefined;
    return plain;
  }

  /** The plain RTCP compound, or null (see `lastReject`). Accepts E=0 (authenticated only, RFC 3711 §3.4). */
  unprotectRtcp(packet: Uint8Array): Buffer | null {
    const k = this.k;
    const tag = k.tagLength;
    if (packet.length < RTCP_HEADER + 4 + tag) return this.reject("short");
    const ssrc = ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0;
    let wordAt: number;
    let tagAt: number;
    if (k.gcm) {
      // RFC 7714 §9.1 layout: … ciphertext || tag || E+index.
      wordAt = packet.length - 4;
      tagAt = wordAt - tag;
    } else {
      // RFC 3711 §3.4 layout: … ciphertext || E+index || tag.
      tagAt = packet.length - tag;
      wordAt = tagAt - 4;
    }
    const word = ((packet[wordAt]! << 24) | (packet[wordAt + 1]! << 16) | (packet[wordAt + 2]! << 8) | packet[wordAt + 3]!) >>> 0;
    const encrypted = (word & E_FLAG) !== 0;
    const index = word & 0x7fffffff;
    const st = this.state(this.rtcp, ssrc);
    if (!st.fresh(index)) return this.reject("replay");
    const head = packet.subarray(0, RTCP_HEADER);
    let plain: Buffer;
    try {
      if (k.gcm) {
        const bodyEnd = tagAt;
        gcmIv(this.iv, k.rtcpSalt, ssrc, 0, index, true);
        const d = createDecipheriv("aes-128-gcm", k.rtcpKey, this.iv);
        d.setAuthTag(packet.subarray(tagAt, tagAt + tag));
        const w = packet.subarray(wordAt, wordAt + 4);
        if (encrypted) {
          // §9.2: AAD = header (8) || E+index; the rest is ciphertext.
          d.setAAD(Buffer.concat([head, w]));
          plain = Buffer.concat([head, d.update(packet.subarray(RTCP_HEADER, bodyEnd)), d.final()]);
        } else {
          // §9.3: everything is AAD, nothing encrypted.
          d.setAAD(Buffer.concat([packet.subarray(0, bodyEnd), w]));
          d.final();
          plain = Buffer.from(packet.subarray(0, bodyEnd));
        }
      } else {
        const m = createHmac("sha1", k.rtcpAuth!);
        m.update(packet.subarray(0, tagAt));
        if (!timingSafeEqual(m.digest().subarray(0, 10), packet.subarray(tagAt))) return this.reject("auth");
        if (encrypted) {
          cmIv(this.iv, k.rtcpSalt, ssrc, index >>> 16, index & 0xffff);
          const d = createDecipheriv("aes-128-ctr", k.rtcpKey, this.iv);
          plain = Buffer.concat([head, d.update(packet.subarray(RTCP_HEADER, wordAt)), d.final()]);
        } else {
          plain = Buffer.from(packet.subarray(0, wordAt));
        }
      }
    } catch {
      return this.reject("auth");
    }
    st.accept(index);
    this.lastReject = undefined;
    return plain;
  }

  private state(map: Map<number, ReplayState>, ssrc: number): ReplayState {
    let st = map.get(ssrc);
    if (!st) {
      if (map.size >= MAX_SSRCS) map.delete(map.keys().next().value!);
      st = new ReplayState();
      map.set(ssrc, st);
    }
    return st;
  }

  private reject(why: SrtpRejectReason): null {
    this.lastReject = why;
    return null;
  }
}
