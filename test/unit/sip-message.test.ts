import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  contactsOf,
  cseqOf,
  makeResponse,
  parseMessage,
  parseNameAddr,
  parseVia,
  serializeMessage,
  splitList,
  tagOf,
  toOf,
  topVia,
  type SipRequest,
} from "../../gateway/sip/message.ts";
import { SipStreamFramer } from "../../gateway/sip/stream.ts";
import { parseSipUri, formatSipUri } from "../../gateway/sip/uri.ts";

const crlf = (s: string): Buffer => Buffer.from(s.replace(/\n/g, "\r\n"), "latin1");

const INVITE = `INVITE sip:door@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2
v: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK3
Max-Forwards: 70
f: "Door, front" <sip:door1@example.com>;tag=abc
t: <sip:gw@example.com>
i: 123@x
CSeq: 1 INVITE
m: <sip:door1@192.168.1.5:5060;transport=udp>;expires=30, <sip:x@y>
c: application/sdp
l: 6

é=0
xx`;

describe("sip message parser", () => {
  it("parses compact forms, comma-separated Vias in order, and counts Content-Length in bytes", () => {
    const r = parseMessage(crlf(INVITE), { datagram: true });
    expect(r.kind).toBe("request");
    if (r.kind !== "request") return;
    const m = r.message;
    expect(m.method).toBe("INVITE");
    expect(m.headers.getList("via")).toHaveLength(3);
    const top = topVia(m)!;
    // sip.js reports the last via-parm of the first line here; the top Via is the first one.
    expect(top.branch).toBe("z9hG4bK1");
    expect(top.host).toBe("10.0.0.1");
    expect(top.rport).toBe(true);
    expect(m.headers.get("Call-ID")).toBe("123@x");
    expect(tagOf(parseNameAddr(m.headers.get("from")!))).toBe("abc");
    expect(parseNameAddr(m.headers.get("from")!)!.display).toBe("Door, front");
    expect(contactsOf(m)!.map((c) => c.uri)).toEqual(["sip:door1@192.168.1.5:5060;transport=udp", "sip:x@y"]);
    // "é" is two bytes in UTF-8: 6 bytes = "é=0\r\n" (2+2+2); the trailing "xx" is discarded (§18.3).
    const utf8 = Buffer.concat([crlf(INVITE.replace("é=0\nxx", "")), Buffer.from("é=0\r\nxx", "utf8")]);
    const r2 = parseMessage(utf8, { datagram: true });
    expect(r2.kind).toBe("request");
    if (r2.kind === "request") expect(r2.message.body.toString("utf8")).toBe("é=0\r\n");
  });

  it("answers 400 (with the headers kept) when the body is shorter than Content-Length", () => {
    const r = parseMessage(crlf(INVITE.replace("l: 6", "l: 600")), { datagram: true });
    expect(r.kind).toBe("reject");
    if (r.kind !== "reject") return;
    expect(r.status).toBe(400);
    const res = makeResponse(r.message, r.status, { reason: r.reason });
    expect(res.headers.getAll("via")).toHaveLength(2);
    expect(res.headers.get("call-id")).toBe("123@x");
  });

  it("rejects a CSeq method that differs from the Request-Line, and an unknown version with 505", () => {
    const m1 = parseMessage(crlf(INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS")));
    expect(m1.kind === "reject" && m1.status).toBe(400);
    const m2 = parseMessage(crlf(INVITE.replace("SIP/2.0\n", "SIP/3.0\n")));
    expect(m2.kind === "reject" && m2.status).toBe(505);
  });

  it("parses responses and refuses status codes out of range", () => {
    const ok = parseMessage(crlf("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 4 INVITE\nContent-Length: 0\n\n"));
    expect(ok.kind).toBe("response");
    if (ok.kind === "response") {
      expect(ok.message.status).toBe(180);
      expect(cseqOf(ok.message)).toEqual({ seq: 4, method: "INVITE" });
      expect(tagOf(toOf(ok.message))).toBe("2");
    }
    expect(parseMessage(crlf("SIP/2.0 4294967301 big\nVia: SIP/2.0/UDP h\n\n")).kind).toBe("invalid");
  });

  it("round-trips through the serializer with Content-Length recomputed", () => {
    const r = parseMessage(crlf(INVITE), { datagram: true });
    if (r.kind !== "request") throw new Error("parse");
    const again = parseMessage(serializeMessage(r.message), { datagram: false });
    expect(again.kind).toBe("request");
    if (again.kind === "request") {
      expect(again.message.body.equals(r.message.body)).toBe(true);
      expect(again.message.headers.getList("via")).toEqual(r.message.headers.getList("via"));
    }
  });

  it("parses SIP URIs with escapes, passwords, IPv6 and parameters", () => {
    const u = parseSipUri("sip:sips%3Auser%40example.com@example.net")!;
    expect(u.user).toBe("sips:user@example.com");
    const v = parseSipUri("sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr?subject=hi")!;
    expect(v).toMatchObject({ scheme: "sips", user: "alice", password: "pw", host: "[2001:db8::1]", port: 5061, headers: "subject=hi" });
    expect(v.params.get("lr")).toBeNull();
    expect(formatSipUri(v, { withHeaders: false })).toBe("sips:alice:pw@[2001:db8::1]:5061;transport=tls;lr");
    expect(parseSipUri("sip:user@host:99999")).toBeUndefined();
    expect(parseSipUri("http://x")).toBeUndefined();
    expect(parseSipUri("sip:us er@host")).toBeUndefined();
  });

  it("parses Via with LWS everywhere (RFC 4475 wsinv) and rport values", () => {
    expect(parseVia("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw")).toMatchObject({ transport: "UDP", host: "192.0.2.2", branch: "390skdjuw" });
    expect(parseVia("SIP/2.0/UDP [::1]:5070;rport=5071;received=::1")).toMatchObject({ host: "[::1]", port: 5070, rport: 5071, received: "::1" });
    expect(parseVia("SIP/2.0/UDP host;;")).toBeUndefined();
    expect(parseVia("SIP/2.0/UDP")).toBeUndefined();
  });

  it("splits lists only outside quotes and angle brackets", () => {
    expect(splitList(`"a, b" <sip:x@y>;p=1, <sip:z@w;x=1,2>`)).toEqual([`"a, b" <sip:x@y>;p=1`, `<sip:z@w;x=1,2>`]);
  });

  it("never throws on arbitrary bytes, and every outcome is one of the four kinds", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const r = parseMessage(Buffer.from(bytes), { datagram: true });
        expect(["request", "response", "reject", "invalid"]).toContain(r.kind);
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws on mutations of a valid message (bytes flipped, cut, duplicated)", () => {
    const base = crlf(INVITE);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
        fc.nat(base.length),
        (flips, cut) => {
          const b = Buffer.from(base.subarray(0, Math.max(1, cut)));
          for (const [i, v] of flips) if (i < b.length) b[i] = v;
          const r = parseMessage(b, { datagram: true });
          if (r.kind === "request" || r.kind === "reject") {
            // Whatever was kept must serialize again.
            serializeMessage(makeResponse(r.message as SipRequest, 400));
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe("sip stream framer", () => {
  const msg = (body = ""): Buffer =>
    crlf(`OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: ${Buffer.byteLength(body)}\n\n${body}`);

  it("frames messages split at every byte boundary, with CRLF keep-alive pings in between", () => {
    const two = Buffer.concat([msg("hello"), Buffer.from("\r\n\r\n"), msg()]);
    for (let cut = 1; cut < two.length; cut += 7) {
      const f = new SipStreamFramer();
      const ev = [...f.push(two.subarray(0, cut)), ...f.push(two.subarray(cut))];
      expect(ev.filter((e) => e.type === "message")).toHaveLength(2);
      expect(ev.filter((e) => e.type === "ping")).toHaveLength(1);
      expect(f.pending).toBe(0);
    }
  });

  it("fails the stream on an absurd Content-Length or an endless header", () => {
    const f = new SipStreamFramer({ maxBodyBytes: 1000 });
    expect(f.push(crlf("OPTIONS sip:a@b SIP/2.0\nContent-Length: 99999999\n\n"))).toEqual([{ type: "error", reason: "body too large" }]);
    const g = new SipStreamFramer({ maxHeaderBytes: 100 });
    expect(g.push(Buffer.alloc(200, 0x41))[0]?.type).toBe("error");
  });
});
