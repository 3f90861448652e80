/**
 * Our SRTP context against the published test vectors: RFC 3711 Appendix B.2 (AES-CM
 * keystream) and B.3 (key derivation), RFC 7714 §16.1.1 (SRTP AEAD_AES_128_GCM) and
 * §17.1/§17.3 (SRTCP, encrypted and authenticated-only).
 */
import { describe, expect, it } from "vitest";
import { SrtpReceiver, SrtpSender } from "../../sfu/srtp/context.ts";
import { deriveSrtpSessionKeys, SrtpProfile, srtpKdf, type SrtpSessionKeys } from "../../sfu/srtp/kdf.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** Session keys given directly (the RFC 7714 vectors state session, not master, keys). */
function sessionKeys(profile: SrtpProfile, key: string, salt: string, auth = ""): SrtpSessionKeys {
  return {
    profile,
    rtpKey: hex(key),
    rtpSalt: hex(salt),
    rtpAuthKey: auth ? hex(auth) : Buffer.alloc(0),
    rtcpKey: hex(key),
    rtcpSalt: hex(salt),
    rtcpAuthKey: auth ? hex(auth) : Buffer.alloc(0),
  };
}

describe("RFC 3711 Appendix B.3 key derivation", () => {
  const masterKey = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
  const masterSalt = hex("0EC675AD498AFEEBB6960B3AABE6");

  it("derives the cipher key, cipher salt and authentication key of the appendix", () => {
    expect(srtpKdf(masterKey, masterSalt, 0, 16).toString("hex")).toBe("c61e7a93744f39ee10734afe3ff7a087");
    expect(srtpKdf(masterKey, masterSalt, 2, 14).toString("hex")).toBe("30cbbc08863d8c85d49db34a9ae1");
    expect(srtpKdf(masterKey, masterSalt, 1, 20).toString("hex")).toBe("cebe321f6ff7716b6fd4ab49af256a156d38baa4");
  });

  it("labels RTP and RTCP keys apart (§4.3.2 labels 0–5)", () => {
    const k = deriveSrtpSessionKeys(SrtpProfile.AES128_CM_HMAC_SHA1_80, masterKey, masterSalt);
    expect(k.rtpKey.toString("hex")).toBe("c61e7a93744f39ee10734afe3ff7a087");
    expect(k.rtpSalt.toString("hex")).toBe("30cbbc08863d8c85d49db34a9ae1");
    expect(k.rtpAuthKey.toString("hex")).toBe("cebe321f6ff7716b6fd4ab49af256a156d38baa4");
    expect(k.rtcpKey.equals(k.rtpKey)).toBe(false);
    expect(k.rtcpSalt).toHaveLength(14);
    expect(k.rtcpAuthKey).toHaveLength(20);
  });

  it("refuses wrong key or salt sizes and unknown profiles", () => {
    expect(() => deriveSrtpSessionKeys(SrtpProfile.AEAD_AES_128_GCM, masterKey, masterSalt)).toThrow(/salt/);
    expect(() => deriveSrtpSessionKeys(SrtpProfile.AES128_CM_HMAC_SHA1_80, masterKey.subarray(1), masterSalt)).toThrow(/key/);
    expect(() => deriveSrtpSessionKeys(0x0002, masterKey, masterSalt)).toThrow(/unsupported/);
  });
});

describe("RFC 3711 Appendix B.2 AES-CM keystream", () => {
  it("encrypts zeros into the appendix's keystream (SSRC 0, index 0)", () => {
    const keys = sessionKeys(
      SrtpProfile.AES128_CM_HMAC_SHA1_80,
      "2B7E151628AED2A6ABF7158809CF4F3C",
      "F0F1F2F3F4F5F6F7F8F9FAFBFCFD",
      "00".repeat(20),
    );
    const out = Buffer.alloc(12 + 48 + 10);
    const n = new SrtpSender(keys).protectRtp(out, { marker: false, payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0 }, Buffer.alloc(48));
    expect(n).toBe(70);
    expect(out.subarray(12, 60).toString("hex")).toBe(
      "e03ead0935c95e80e166b16dd92b4eb4" + "d23513162b02d0f72a43a2fe4a5f97ab" + "41e95b3bb0a2e8dd477901e4fca894c0",
    );
  });
});

describe("RFC 7714 AEAD_AES_128_GCM", () => {
  const keys = sessionKeys(SrtpProfile.AEAD_AES_128_GCM, "000102030405060708090a0b0c0d0e0f", "517569642070726f2071756f");
  const payload = Buffer.from("Gallia est omnis divisa in partes tres", "ascii");
  const srtp = hex(
    "8040f17b8041f8d35501a0b2" +
      "f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833" +
      "899d7f27beb16a9152cf765ee4390cce",
  );
  const rtcp = hex("81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef");
  const srtcp = hex(
    "81c8000d4d617273" +
      "63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2f" +
      "c5abf87245d9eade" +
      "800005d4",
  );

  it("§16.1.1: protects the sample packet byte for byte", () => {
    const out = Buffer.alloc(200);
    // 8040f17b 8041f8d3 5501a0b2: no marker, PT 0x40, seq 0xf17b, ts 0x8041f8d3, SSRC 0x5501a0b2.
    const n = new SrtpSender(keys).protectRtp(
      out,
      { marker: false, payloadType: 0x40, sequenceNumber: 0xf17b, timestamp: 0x8041f8d3, ssrc: 0x5501a0b2 },
      payload,
    );
    expect(out.subarray(0, n).toString("hex")).toBe(srtp.toString("hex"));
  });

  it("§16.1.2: unprotects it, and refuses it with one bit flipped or replayed", () => {
    const rx = new SrtpReceiver(keys);
    const plain = rx.unprotectRtp(srtp);
    expect(plain?.subarray(12).toString("ascii")).toBe("Gallia est omnis divisa in partes tres");
    expect(rx.unprotectRtp(srtp)).toBeNull();
    expect(rx.lastReject).toBe("replay");
    const bad = Buffer.from(srtp);
    bad[20]! ^= 1;
    expect(new SrtpReceiver(keys).unprotectRtp(bad)).toBeNull();
  });

  it("§17.1: protects and unprotects the sample SRTCP packet (index 0x5d4)", () => {
    expect(new SrtpReceiver(keys).unprotectRtcp(srtcp)?.toString("hex")).toBe(rtcp.toString("hex"));
    const tx = new SrtpSender(keys);
    const out = Buffer.alloc(rtcp.length + tx.rtcpOverhead);
    for (let i = 0; i < 0x5d4; i++) tx.protectRtcp(out, rtcp); // the index counts from 0
    const n = tx.protectRtcp(out, rtcp);
    expect(out.subarray(0, n).toString("hex")).toBe(srtcp.toString("hex"));
  });

  it("§17.3: accepts an authenticated-only SRTCP packet (E = 0)", () => {
    const tagged = hex(
      "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef" +
        "841dd9683dd78ec92ae58790125f62b3" +
        "000005d4",
    );
    expect(new SrtpReceiver(keys).unprotectRtcp(tagged)?.toString("hex")).toBe(rtcp.toString("hex"));
  });
});
