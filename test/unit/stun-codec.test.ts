/**
 * STUN codec against the RFC 5769 test vectors (byte for byte), plus generated input:
 * the parser never throws, and what the writer builds parses back.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Attr, MessageClass, Method } from "../../turn/stun/constants.ts";
import { fingerprintOk, longTermKey, saslPrep, verifyIntegrity } from "../../turn/stun/integrity.ts";
import {
  attrBytes,
  attrErrorCode,
  attrString,
  attrU32,
  attrXorAddress,
  getAttr,
  getAttrs,
  looksLikeStun,
  messageType,
  parseStun,
  splitType,
  type StunMessage,
} from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";
import { formatIp, ipv4ToInt, parseIp } from "../../turn/stun/address.ts";

const fixture = (name: string): Buffer => {
  const text = readFileSync(fileURLToPath(new URL(`../fixtures/stun/${name}`, import.meta.url)), "utf8");
  const hex = text
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join(" ")
    .replace(/[^0-9a-f]/gi, "");
  return Buffer.from(hex, "hex");
};

const SHORT_TERM = Buffer.from("VOkJxbRl1RmTxUk/WvJxBt");

function parse(b: Buffer): StunMessage {
  const r = parseStun(b);
  if (!r.ok) throw new Error(`parse failed: ${r.reason}`);
  return r.msg;
}

describe("RFC 5769 test vectors", () => {
  it("§2.1 sample request: parses, integrity and fingerprint check, and rebuilds byte for byte", () => {
    const bytes = fixture("rfc5769-2.1-request.hex");
    expect(bytes.length).toBe(108);
    const m = parse(bytes);
    expect([m.method, m.cls]).toEqual([Method.Binding, MessageClass.Request]);
    expect(attrString(m, getAttr(m, Attr.Username)!)).toBe("evtj:h6vY");
    expect(attrString(m, getAttr(m, Attr.Software)!)).toBe("STUN test client");
    expect(fingerprintOk(m)).toBe(true);
    expect(verifyIntegrity(m, SHORT_TERM)).toBe(true);
    expect(verifyIntegrity(m, Buffer.from("VOkJxbRl1RmTxUk/WvJxBT"))).toBe(false);

    const w = new StunWriter(Method.Binding, MessageClass.Request, m.transactionId);
    w.padByte = 0x20; // the RFC pads with spaces
    w.string(Attr.Software, "STUN test client");
    w.bytes(Attr.Priority, attrBytes(m, getAttr(m, Attr.Priority)!));
    w.bytes(Attr.IceControlled, attrBytes(m, getAttr(m, Attr.IceControlled)!));
    w.string(Attr.Username, "evtj:h6vY");
    w.integrity(SHORT_TERM).fingerprint();
    expect(w.finish().equals(bytes)).toBe(true);
  });

  it("§2.2 IPv4 response: decodes 192.0.2.1:32853 and rebuilds byte for byte", () => {
    const bytes = fixture("rfc5769-2.2-ipv4-response.hex");
    const m = parse(bytes);
    expect([m.method, m.cls]).toEqual([Method.Binding, MessageClass.Success]);
    expect(attrXorAddress(m, getAttr(m, Attr.XorMappedAddress)!)).toEqual({ family: 4, address: "192.0.2.1", port: 32853 });
    expect(fingerprintOk(m) && verifyIntegrity(m, SHORT_TERM)).toBe(true);
    const w = new StunWriter(Method.Binding, MessageClass.Success, m.transactionId);
    w.padByte = 0x20;
    w.string(Attr.Software, "test vector").xorAddress(Attr.XorMappedAddress, "192.0.2.1", 32853).integrity(SHORT_TERM).fingerprint();
    expect(w.finish().equals(bytes)).toBe(true);
  });

  it("§2.3 IPv6 response: decodes the address (XOR with the transaction id) and rebuilds byte for byte", () => {
    const bytes = fixture("rfc5769-2.3-ipv6-response.hex");
    const m = parse(bytes);
    expect(attrXorAddress(m, getAttr(m, Attr.XorMappedAddress)!)).toEqual({
      family: 6,
      address: "2001:db8:1234:5678:11:2233:4455:6677",
      port: 32853,
    });
    expect(fingerprintOk(m) && verifyIntegrity(m, SHORT_TERM)).toBe(true);
    const w = new StunWriter(Method.Binding, MessageClass.Success, m.transactionId);
    w.padByte = 0x20;
    w.string(Attr.Software, "test vector")
      .xorAddress(Attr.XorMappedAddress, "2001:db8:1234:5678:11:2233:4455:6677", 32853)
      .integrity(SHORT_TERM)
      .fingerprint();
    expect(w.finish().equals(bytes)).toBe(true);
  });

  it("§2.4 long-term request: SASLprep'd password, MD5 key, integrity, rebuilt byte for byte", () => {
    const bytes = fixture("rfc5769-2.4-long-term-request.hex");
    const m = parse(bytes);
    const user = attrString(m, getAttr(m, Attr.Username)!);
    expect(user).toBe("\u30de\u30c8\u30ea\u30c3\u30af\u30b9");
    expect(attrString(m, getAttr(m, Attr.Nonce)!)).toBe("f//499k954d6OL34oL9FSTvy64sA");
    expect(attrString(m, getAttr(m, Attr.Realm)!)).toBe("example.org");
    expect(m.fingerprintAt).toBe(-1);
    expect(saslPrep("The\u00adM\u00aatr\u2168")).toBe("TheMatrIX");
    const key = longTermKey(user, "example.org", "The\u00adM\u00aatr\u2168");
    expect(verifyIntegrity(m, key)).toBe(true);
    expect(verifyIntegrity(m, longTermKey(user, "example.org", "TheMatrix"))).toBe(false);
    const w = new StunWriter(Method.Binding, MessageClass.Request, m.transactionId);
    w.string(Attr.Username, user).string(Attr.Nonce, "f//499k954d6OL34oL9FSTvy64sA").string(Attr.Realm, "example.org").integrity(key);
    expect(w.finish().equals(bytes)).toBe(true);
  });

  it("a changed byte breaks the fingerprint, another the integrity", () => {
    const bytes = fixture("rfc5769-2.1-request.hex");
    const a = Buffer.from(bytes);
    a[30] = a[30]! ^ 1; // inside SOFTWARE
    const ma = parse(a);
    expect(fingerprintOk(ma)).toBe(false);
    expect(verifyIntegrity(ma, SHORT_TERM)).toBe(false);
  });
});

describe("message framing and attributes", () => {
  it("splits and joins message types as RFC 8489 §5 interleaves them", () => {
    const cases: [number, number, number][] = [
      [Method.Binding, MessageClass.Request, 0x0001],
      [Method.Binding, MessageClass.Success, 0x0101],
      [Method.Binding, MessageClass.Error, 0x0111],
      [Method.Allocate, MessageClass.Request, 0x0003],
      [Method.Allocate, MessageClass.Error, 0x0113],
      [Method.Refresh, MessageClass.Success, 0x0104],
      [Method.Send, MessageClass.Indication, 0x0016],
      [Method.Data, MessageClass.Indication, 0x0017],
      [Method.CreatePermission, MessageClass.Request, 0x0008],
      [Method.ChannelBind, MessageClass.Success, 0x0109],
    ];
    for (const [m, c, t] of cases) {
      expect(messageType(m, c as 0 | 1 | 2 | 3)).toBe(t);
      expect(splitType(t)).toEqual({ method: m, cls: c });
    }
  });

  it("rejects what is not a whole STUN message, with the reason", () => {
    const ok = fixture("rfc5769-2.1-request.hex");
    expect(parseStun(Buffer.alloc(19))).toEqual({ ok: false, reason: "too-short" });
    const ch = Buffer.from([0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseStun(ch)).toEqual({ ok: false, reason: "not-stun" });
    const cookie = Buffer.from(ok);
    cookie[5] = cookie[5]! ^ 1;
    expect(parseStun(cookie)).toEqual({ ok: false, reason: "bad-cookie" });
    expect(parseStun(ok.subarray(0, ok.length - 4))).toEqual({ ok: false, reason: "bad-length" });
    const longer = Buffer.concat([ok, Buffer.alloc(4)]);
    expect(parseStun(longer)).toEqual({ ok: false, reason: "bad-length" });
    const runover = Buffer.from(ok);
    runover.writeUInt16BE(0x0400, 22); // SOFTWARE length past the end
    expect(parseStun(runover)).toEqual({ ok: false, reason: "bad-attribute" });
    // An attribute after FINGERPRINT.
    const w = new StunWriter(Method.Binding, MessageClass.Request);
    w.fingerprint().string(Attr.Software, "x");
    expect(parseStun(w.finish())).toEqual({ ok: false, reason: "after-fingerprint" });
    expect(looksLikeStun(ok)).toBe(true);
    expect(looksLikeStun(ch)).toBe(false);
  });

  it("ignores attributes after MESSAGE-INTEGRITY except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (§14.5)", () => {
    const key = Buffer.from("k");
    const w = new StunWriter(Method.Binding, MessageClass.Request);
    w.string(Attr.Username, "u").integrity(key).string(Attr.Software, "after").integrity(key, "sha256").fingerprint();
    const m = parse(w.finish());
    expect(getAttr(m, Attr.Software)).toBeUndefined();
    expect(m.integrityAt).toBeGreaterThan(0);
    expect(m.integrity256At).toBeGreaterThan(m.integrityAt);
    // MESSAGE-INTEGRITY-SHA256 is checked when present; its HMAC covers the SOFTWARE that SHA-1 does not.
    expect(verifyIntegrity(m, key)).toBe(true);
    expect(fingerprintOk(m)).toBe(true);
  });

  it("lists unknown comprehension-required attributes once, and not optional ones", () => {
    const w = new StunWriter(Method.Allocate, MessageClass.Request);
    w.u32(0x7777, 1).u32(0x7777, 2).u32(0xc001, 3).u32(Attr.DontFragment, 0).u32(Attr.Lifetime, 600);
    const m = parse(w.finish());
    expect(m.unknownRequired).toEqual([0x7777, Attr.DontFragment]);
    expect(getAttrs(m, 0x7777)).toHaveLength(2);
    expect(attrU32(m, getAttr(m, Attr.Lifetime)!)).toBe(600);
  });

  it("writes ERROR-CODE as class and number", () => {
    const w = new StunWriter(Method.Allocate, MessageClass.Error);
    w.errorCode(438).unknownAttributes([0x1234]);
    const m = parse(w.finish());
    expect(attrErrorCode(m, getAttr(m, Attr.ErrorCode)!)).toEqual({ code: 438, reason: "Stale Nonce" });
    expect([...attrBytes(m, getAttr(m, Attr.UnknownAttributes)!)]).toEqual([0x12, 0x34]);
  });
});

describe("addresses", () => {
  it("formats IPv6 like Node (RFC 5952) and parses it back", () => {
    for (const a of ["::", "::1", "2001:db8::1", "fe80::1:2:3:4", "1:0:0:1::1", "::ffff:127.0.0.1", "2001:db8:1234:5678:11:2233:4455:6677"]) {
      expect(formatIp(parseIp(a)!)).toBe(a);
    }
    expect(formatIp(parseIp("2001:0db8:0000:0000:0000:0000:0000:0001")!)).toBe("2001:db8::1");
    // WHATWG URL serialises IPv6 hosts by RFC 5952 too: use it as the oracle (mapped addresses
    // excepted: inet_ntop, and so Node's rinfo, writes those with a dotted tail).
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const bytes = parseIp(ip)!;
        fc.pre(!(bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff));
        expect(`[${formatIp(bytes)}]`).toBe(new URL(`http://[${ip}]/`).hostname);
      }),
      { numRuns: 500 },
    );
  });

  it("turns dotted IPv4 into a number without allocating, and refuses anything else", () => {
    expect(ipv4ToInt("127.0.0.1")).toBe(0x7f000001);
    expect(ipv4ToInt("255.255.255.255")).toBe(0xffffffff);
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::1", "1..2.3", "1.2.3.4 "]) expect(ipv4ToInt(bad)).toBe(-1);
  });

  it("round-trips XOR addresses for random IPv4/IPv6 and ports", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 65535 }), (ip, port) => {
        const w = new StunWriter(Method.Binding, MessageClass.Success);
        w.xorAddress(Attr.XorMappedAddress, ip, port);
        const m = parse(w.finish());
        const a = attrXorAddress(m, getAttr(m, Attr.XorMappedAddress)!)!;
        expect(a.port).toBe(port);
        expect(Buffer.from(parseIp(a.address)!).equals(Buffer.from(parseIp(ip)!))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("generated input", () => {
  it("never throws on random bytes, and on mutations of a valid message", () => {
    const base = fixture("rfc5769-2.1-request.hex");
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const r = parseStun(Buffer.from(bytes));
        if (r.ok) {
          fingerprintOk(r.msg);
          verifyIntegrity(r.msg, SHORT_TERM);
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: base.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: base.length }), (i, v, cut) => {
        const b = Buffer.from(base);
        b[i] = v;
        const r = parseStun(b.subarray(0, cut));
        if (r.ok) {
          fingerprintOk(r.msg);
          verifyIntegrity(r.msg, SHORT_TERM);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("parses back every message the writer builds", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.integer({ min: 0x8030, max: 0xffff }), value: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 8 }),
        fc.boolean(),
        (attrs, withFp) => {
          const w = new StunWriter(Method.Binding, MessageClass.Indication);
          for (const a of attrs) w.bytes(a.type, a.value);
          if (withFp) w.fingerprint();
          const m = parse(w.finish());
          expect(m.attrs.map((a) => a.type)).toEqual(attrs.map((a) => a.type));
          m.attrs.forEach((a, i) => expect(Buffer.from(attrBytes(m, a)).equals(Buffer.from(attrs[i]!.value))).toBe(true));
          expect(fingerprintOk(m)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});
