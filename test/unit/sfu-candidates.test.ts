import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import { canonicalIp } from "../../config/net/ip.ts";
import { formatCandidate, judgeCandidate, parseCandidate, screenCandidates } from "../../sfu/candidates.ts";

const OPEN = { loopback: false, privateRanges: true };

describe("client ICE candidates", () => {
  it("reads what browsers write (Chromium, Firefox, TURN relays, IPv6)", () => {
    expect(parseCandidate("candidate:842163049 1 udp 1677729535 93.184.216.34 61234 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag EsAw network-cost 999")).toEqual({
      foundation: "842163049",
      component: 1,
      transport: "udp",
      priority: 1677729535,
      address: "93.184.216.34",
      port: 61234,
      type: "srflx",
      related: { address: "0.0.0.0", port: 0 },
      tcpType: undefined,
      generation: 0,
      ufrag: "EsAw",
    });
    expect(parseCandidate("candidate:0 1 UDP 2122252543 2001:DB8::7 53114 typ host").address).toBe("2001:DB8::7");
    expect(parseCandidate("candidate:3 1 UDP 92217087 198.51.100.4 40000 typ relay raddr 198.51.100.4 rport 40000").type).toBe("relay");
    // An mDNS name is a well-formed candidate (RFC 8839 allows FQDNs): judged, not refused as garbage.
    expect(parseCandidate("candidate:1 1 udp 2122260223 3c2b7f0e-8f3a-4f5e-9f54-3a1d2c4b5e6f.local 54321 typ host").address).toMatch(/\.local$/);
  });

  it("refuses what is not a candidate with a short reason", () => {
    for (const bad of [
      "",
      "candidate:",
      "candidate:garbage",
      "candidate:1 1 udp 1 1.2.3.4 9 host",
      "candidate:1 0 udp 1 1.2.3.4 9 typ host",
      "candidate:1 1 sctp 1 1.2.3.4 9 typ host",
      "candidate:1 1 udp 0 1.2.3.4 9 typ host",
      "candidate:1 1 udp 1 1.2.3.4 65536 typ host",
      "candidate:1 1 udp 1 1.2.3.4 9 typ bogus",
      "candidate:1 1 udp 1 1.2.3.4 9 typ host raddr",
      "candidate:1 1 udp 1 a%20b 9 typ host",
      "candidate:1 1 udp 1 1.2.3.4 9 typ host ufrag a:b",
      `candidate:${"f".repeat(33)} 1 udp 1 1.2.3.4 9 typ host`,
      "candidate:1 1 udp 1 1.2.3.4 9 typ host " + "x y ".repeat(300),
    ]) {
      let err: unknown;
      try {
        parseCandidate(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(BadInputError);
      expect((err as Error).message).toMatch(/^malformed ICE candidate/);
    }
  });

  it("takes IP literals in ranges a check may go to; drops names, refused ranges and what cannot pair", () => {
    const verdict = (addr: string, rules = OPEN, rest = "udp 1 ADDR 5000 typ host") => judgeCandidate(parseCandidate(`candidate:1 1 ${rest.replace("ADDR", addr)}`), rules);
    expect(verdict("93.184.216.34")).toBe("accept");
    expect(verdict("2606:2800:220:1::1")).toBe("accept");
    expect(verdict("x.local")).toBe("name");
    expect(verdict("camera.example.com")).toBe("name");
    for (const a of ["169.254.169.254", "169.254.1.1", "224.0.0.251", "255.255.255.255", "0.0.0.0", "240.0.0.1", "192.0.2.1", "198.18.0.1", "fe80::1", "fe80::1%eth0", "ff02::fb", "::", "::ffff:10.0.0.1", "64:ff9b::1.2.3.4"])
      expect(verdict(a), a).toBe("range");
    // Loopback only when the media sockets are there themselves.
    expect(verdict("127.0.0.1")).toBe("range");
    expect(verdict("::1")).toBe("range");
    expect(verdict("127.0.0.1", { loopback: true, privateRanges: true })).toBe("accept");
    expect(verdict("::1", { loopback: true, privateRanges: true })).toBe("accept");
    // Viewers on the site's networks, unless the operator says otherwise.
    for (const a of ["10.0.0.1", "172.16.5.5", "192.168.1.1", "100.64.0.1", "fd12::1"]) {
      expect(verdict(a), a).toBe("accept");
      expect(verdict(a, { loopback: false, privateRanges: false }), a).toBe("range");
    }
    expect(verdict("93.184.216.34", OPEN, "tcp 1 ADDR 9 typ host tcptype active")).toBe("unsupported");
    expect(judgeCandidate(parseCandidate("candidate:1 2 udp 1 93.184.216.34 5000 typ host"), OPEN)).toBe("unsupported");
    expect(verdict("93.184.216.34", OPEN, "udp 1 ADDR 0 typ host")).toBe("unsupported");
  });

  it("screens an offer's own candidates: kept ones rewritten, the others and end-of-candidates left out", () => {
    const lines = [
      "m=audio 9 UDP/TLS/RTP/SAVPF 0",
      "a=candidate:1 1 udp 2122260223 192.168.1.9 5000 typ host",
      "a=candidate:2 1 udp 2122260223 door-phone.local 5001 typ host",
      "a=end-of-candidates",
    ];
    const rules = { loopback: false, privateRanges: true, maxPerRequest: 4, maxPerViewer: 4 };
    expect(screenCandidates(lines, [1, 2], rules)).toEqual({
      lines: ["m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=candidate:1 1 udp 2122260223 192.168.1.9 5000 typ host"],
      kept: 1,
      dropped: { name: 1, range: 0, unsupported: 0, excess: 0 },
    });
    expect(screenCandidates(lines.slice(0, 2).concat(lines[3]!), [1], rules).lines).toContain("a=end-of-candidates");
    expect(() => screenCandidates(lines, [1, 2], { ...rules, maxPerRequest: 1 })).toThrow(/too many ICE candidates/);
  });

  it("writes a candidate werift reads back the same, and never throws anything but BadInputError (fuzzed)", () => {
    const cand = fc.record({
      foundation: fc.stringMatching(/^[A-Za-z0-9+/]{1,32}$/),
      component: fc.integer({ min: 1, max: 256 }),
      transport: fc.constantFrom("udp", "tcp"),
      priority: fc.integer({ min: 1, max: 2 ** 32 - 1 }),
      address: fc.oneof(fc.ipV4(), fc.ipV6()),
      port: fc.integer({ min: 0, max: 65535 }),
      type: fc.constantFrom("host", "srflx", "prflx", "relay"),
      related: fc.option(fc.record({ address: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) }), { nil: undefined }),
      tcpType: fc.option(fc.constantFrom("active", "passive", "so"), { nil: undefined }),
      generation: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
      ufrag: fc.option(fc.stringMatching(/^[A-Za-z0-9+/]{1,16}$/), { nil: undefined }),
    });
    fc.assert(
      fc.property(cand, (c) => {
        const back = parseCandidate(formatCandidate(c));
        expect(back).toEqual({ ...c, address: canonicalIp(c.address), ...(c.related ? { related: { ...c.related, address: canonicalIp(c.related.address) } } : {}) });
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (s) => {
        try {
          parseCandidate(`candidate:${s}`);
        } catch (err) {
          if (!(err instanceof BadInputError)) throw err;
        }
      }),
      { numRuns: 1000 },
    );
  });
});
