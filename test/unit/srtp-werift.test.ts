/**
 * Our SRTP context against werift's own (the implementation every viewer in our tests
 * decrypts with): same session keys from the same master key, packets protected by
 * one and unprotected by the other in both directions, for both profiles, across a
 * sequence-number wrap and with retransmissions of packets sent before it. AES-GCM runs
 * twice: through the native fast path (sfu/native/, built by `npm install`; CI builds
 * it strictly) and through node:crypto.
 */
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RtpHeader, SrtcpSession, SrtpSession } from "werift";
import { fastPath, nativeStatus, type GcmContext, type UdpReceiver } from "../../sfu/native/index.ts";
import { SrtpReceiver, SrtpSender } from "../../sfu/srtp/context.ts";
import { deriveSrtpSessionKeys, SrtpProfile, srtpProfileParams } from "../../sfu/srtp/kdf.ts";

const PROFILES = [
  ["AEAD_AES_128_GCM, native", SrtpProfile.AEAD_AES_128_GCM, true],
  ["AEAD_AES_128_GCM, node:crypto", SrtpProfile.AEAD_AES_128_GCM, false],
  ["AES128_CM_HMAC_SHA1_80, native", SrtpProfile.AES128_CM_HMAC_SHA1_80, true],
  ["AES128_CM_HMAC_SHA1_80, node:crypto", SrtpProfile.AES128_CM_HMAC_SHA1_80, false],
] as const;

interface Pair {
  ours: SrtpSender;
  oursRx: SrtpReceiver;
  /** werift's session whose remote side is our sender and local side our receiver. */
  theirs: SrtpSession;
  theirsRtcp: SrtcpSession;
}

function pair(profile: SrtpProfile, native = false): Pair {
  const p = srtpProfileParams(profile)!;
  const a = { key: randomBytes(p.keyLength), salt: randomBytes(p.saltLength) }; // our sending direction
  const b = { key: randomBytes(p.keyLength), salt: randomBytes(p.saltLength) }; // werift's sending direction
  const config = {
    keys: { localMasterKey: b.key, localMasterSalt: b.salt, remoteMasterKey: a.key, remoteMasterSalt: a.salt },
    profile,
  };
  return {
    ours: new SrtpSender(deriveSrtpSessionKeys(profile, a.key, a.salt), { native }),
    oursRx: new SrtpReceiver(deriveSrtpSessionKeys(profile, b.key, b.salt)),
    theirs: new SrtpSession(config),
    theirsRtcp: new SrtcpSession(config),
  };
}

function protect(s: SrtpSender, h: { marker: boolean; payloadType: number; sequenceNumber: number; timestamp: number; ssrc: number }, payload: Buffer): Buffer {
  const out = Buffer.alloc(12 + payload.length + s.rtpOverhead);
  return out.subarray(0, s.protectRtp(out, h, payload));
}

describe("native fast path", () => {
  it("is built and loaded", () => {
    expect(nativeStatus()).toEqual({ enabled: true, reason: "" });
  });

  it.each([
    ["AEAD_AES_128_GCM", SrtpProfile.AEAD_AES_128_GCM],
    ["AES128_CM_HMAC_SHA1_80", SrtpProfile.AES128_CM_HMAC_SHA1_80],
  ] as const)("%s: protects byte for byte like node:crypto, and falls back to it once released", (_name, profile) => {
    const p = srtpProfileParams(profile)!;
    const keys = deriveSrtpSessionKeys(profile, randomBytes(p.keyLength), randomBytes(p.saltLength));
    const native = new SrtpSender(keys);
    const js = new SrtpSender(keys, { native: false });
    expect([native.native, js.native]).toEqual([true, false]);
    let seq = 65000;
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ minLength: 0, maxLength: 1400 }), (marker, ts, payload) => {
        const h = { marker, payloadType: 102, sequenceNumber: seq, timestamp: ts, ssrc: 0x01020304 };
        seq = (seq + 7) & 0xffff; // crosses the wrap: ROC 0 → 1 on both
        expect(protect(native, h, Buffer.from(payload)).equals(protect(js, h, Buffer.from(payload)))).toBe(true);
      }),
      { numRuns: 300 },
    );
    native.release();
    expect(native.native).toBe(false);
    const h = { marker: false, payloadType: 96, sequenceNumber: seq, timestamp: 1, ssrc: 0x01020304 };
    expect(protect(native, h, Buffer.from("after release")).equals(protect(js, h, Buffer.from("after release")))).toBe(true);
  });

  it("refuses a handle of another kind instead of misreading it", () => {
    const fp = fastPath!;
    const ctx = fp.gcmContext(randomBytes(16), randomBytes(12));
    expect(() => fp.udpClose(ctx as unknown as UdpReceiver)).toThrow(/expected kind/);
    expect(() => fp.protectRtpGcm({} as GcmContext, Buffer.alloc(64), Buffer.alloc(4), 0)).toThrow(/expected kind/);
    fp.release(ctx);
    expect(() => fp.protectRtpGcm(ctx, Buffer.alloc(64), Buffer.alloc(4), 0)).toThrow(/released/);
  });

  it("refuses an output buffer too small for header, payload and tag", () => {
    const s = new SrtpSender(deriveSrtpSessionKeys(SrtpProfile.AEAD_AES_128_GCM, randomBytes(16), randomBytes(12)));
    const out = Buffer.alloc(12 + 100 + 15);
    expect(() => s.protectRtp(out, { marker: false, payloadType: 96, sequenceNumber: 1, timestamp: 1, ssrc: 1 }, Buffer.alloc(100))).toThrow(/too small/);
    const big = Buffer.alloc(400);
    expect(() => s.protectRtp(big, { marker: false, payloadType: 96, sequenceNumber: 2, timestamp: 1, ssrc: 1 }, big.subarray(20, 120))).toThrow(/overlaps/);
  });
});

describe.each(PROFILES)("%s against werift", (_name, profile, native) => {
  it("uses the implementation under test", () => {
    expect(pair(profile, native).ours.native).toBe(native);
  });

  it("derives the same session keys as werift from the same master key", () => {
    const p = srtpProfileParams(profile)!;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: p.keyLength, maxLength: p.keyLength }), fc.uint8Array({ minLength: p.saltLength, maxLength: p.saltLength }), (key, salt) => {
        const session = new SrtpSession({
          keys: { localMasterKey: Buffer.from(key), localMasterSalt: Buffer.from(salt), remoteMasterKey: Buffer.from(key), remoteMasterSalt: Buffer.from(salt) },
          profile,
        });
        const ctx = session.localContext as unknown as Record<string, Buffer>;
        const ours = deriveSrtpSessionKeys(profile, key, salt);
        expect(ours.rtpKey.equals(ctx.srtpSessionKey!)).toBe(true);
        expect(ours.rtpSalt.equals(ctx.srtpSessionSalt!.subarray(0, p.saltLength))).toBe(true);
        expect(ours.rtcpKey.equals(ctx.srtcpSessionKey!)).toBe(true);
        expect(ours.rtcpSalt.equals(ctx.srtcpSessionSalt!.subarray(0, p.saltLength))).toBe(true);
        if (p.authKeyLength > 0) {
          expect(ours.rtpAuthKey.equals(ctx.srtpSessionAuthTag!)).toBe(true);
          expect(ours.rtcpAuthKey.equals(ctx.srtcpSessionAuthTag!)).toBe(true);
        }
      }),
      { numRuns: 25 },
    );
  });

  it("werift decrypts every packet we protect, any header and payload", () => {
    const { ours, theirs } = pair(profile, native);
    let seq = 1000;
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 0, max: 127 }), fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ minLength: 0, maxLength: 1200 }), (marker, pt, ts, payload) => {
        const h = { marker, payloadType: pt, sequenceNumber: seq++, timestamp: ts, ssrc: 0x11223344 };
        const plain = theirs.decrypt(protect(ours, h, Buffer.from(payload)));
        expect(plain.readUInt16BE(2)).toBe(h.sequenceNumber);
        expect(plain.readUInt32BE(4)).toBe(ts);
        expect(plain[1]).toBe((marker ? 0x80 : 0) | pt);
        expect(plain.subarray(12).equals(Buffer.from(payload))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("keeps werift in step across a sequence wrap, with retransmissions from before it", () => {
    const { ours, theirs } = pair(profile, native);
    const ssrc = 0xcafe0001;
    const sent = new Map<number, Buffer>();
    const send = (seq: number) => {
      const payload = randomBytes(200);
      sent.set(seq, payload);
      return protect(ours, { marker: false, payloadType: 96, sequenceNumber: seq, timestamp: seq * 10, ssrc }, payload);
    };
    // 65500 … 65535, 0 … 40: the ROC goes from 0 to 1 at 0.
    for (let i = 0; i < 77; i++) {
      const seq = (65500 + i) & 0xffff;
      expect(theirs.decrypt(send(seq)).subarray(12).equals(sent.get(seq)!)).toBe(true);
    }
    expect(ours.rolloverCounter(ssrc)).toBe(1);
    // NACK answers for packets sent before the wrap must keep ROC 0 …
    const again = protect(ours, { marker: false, payloadType: 96, sequenceNumber: 65530, timestamp: 655300, ssrc }, sent.get(65530)!);
    expect(theirs.decrypt(again).subarray(12).equals(sent.get(65530)!)).toBe(true);
    expect(ours.rolloverCounter(ssrc)).toBe(1);
    // … and the live stream goes on with ROC 1.
    for (let seq = 41; seq < 60; seq++) expect(theirs.decrypt(send(seq)).subarray(12).equals(sent.get(seq)!)).toBe(true);
  });

  it("keeps a separate rollover counter per SSRC", () => {
    const { ours, theirs } = pair(profile, native);
    for (let i = 0; i < 40; i++) {
      const video = (65520 + i) & 0xffff;
      const audio = 3000 + i;
      for (const [ssrc, seq] of [[1, video], [2, audio]] as const) {
        const payload = randomBytes(64);
        const plain = theirs.decrypt(protect(ours, { marker: false, payloadType: 0, sequenceNumber: seq, timestamp: i, ssrc }, payload));
        expect(plain.subarray(12).equals(payload)).toBe(true);
      }
    }
    expect(ours.rolloverCounter(1)).toBe(1);
    expect(ours.rolloverCounter(2)).toBe(0);
  });

  it("we decrypt what werift protects, across a wrap, and refuse replays and forgeries", () => {
    const { oursRx, theirs } = pair(profile);
    for (let i = 0; i < 60; i++) {
      const seq = (65510 + i) & 0xffff;
      const payload = randomBytes(100 + i);
      const header = new RtpHeader({ payloadType: 111, sequenceNumber: seq, timestamp: i * 960, ssrc: 0xabcdef01, marker: i % 7 === 0 });
      const enc = theirs.encrypt(payload, header);
      if (i === 30) {
        // A forgery of a packet not yet seen fails authentication (and does not burn its index).
        const forged = Buffer.from(enc);
        forged[forged.length - 1]! ^= 0x40;
        expect(oursRx.unprotectRtp(forged)).toBeNull();
        expect(oursRx.lastReject).toBe("auth");
      }
      const plain = oursRx.unprotectRtp(enc);
      expect(plain, `seq ${seq}`).not.toBeNull();
      expect(plain!.subarray(12).equals(payload)).toBe(true);
      expect(plain!.readUInt16BE(2)).toBe(seq);
      if (i === 30) {
        expect(oursRx.unprotectRtp(enc)).toBeNull();
        expect(oursRx.lastReject).toBe("replay");
      }
    }
  });

  it("exchanges SRTCP with werift both ways", () => {
    const { ours, oursRx, theirsRtcp } = pair(profile, native);
    // A sender report + SDES, as the viewer tick sends them.
    const sr = Buffer.from("80c8000600000001e0b9d1a2000000000000100000000010000007d081ca00030000000101046761746500000000", "hex");
    for (let i = 0; i < 5; i++) {
      const out = Buffer.alloc(sr.length + ours.rtcpOverhead);
      const n = ours.protectRtcp(out, sr);
      expect(theirsRtcp.decrypt(out.subarray(0, n)).equals(sr)).toBe(true);
    }
    // A receiver report with a NACK, as a browser sends it.
    const rr = Buffer.from("81c90007000000020000000100000000000000000000000000000000000000008101000300000002000000010005000a", "hex");
    for (let i = 0; i < 5; i++) {
      const plain = oursRx.unprotectRtcp(theirsRtcp.encrypt(rr));
      expect(plain?.equals(rr)).toBe(true);
    }
    const enc = theirsRtcp.encrypt(rr);
    expect(oursRx.unprotectRtcp(enc)).not.toBeNull();
    expect(oursRx.unprotectRtcp(enc)).toBeNull();
    expect(oursRx.lastReject).toBe("replay");
    expect(oursRx.unprotectRtcp(enc.subarray(0, 10))).toBeNull();
    expect(oursRx.lastReject).toBe("short");
  });
});
