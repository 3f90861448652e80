/**
 * The shared IP/CIDR module (config/net): one parser and one rule for every list — TURN peer
 * allow/deny-lists, SIP device allow-lists and the config validation — checked against Node's
 * own `net.BlockList` as an oracle, and the special-purpose ranges other rooms reuse.
 */
import { BlockList, isIPv6 } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../config/load.ts";
import { CidrList, cidrContains, cidrProblem, parseCidr } from "../../config/net/cidr.ts";
import { canonicalIp, formatIp, parseIp, socketIp, unmapIpv4 } from "../../config/net/ip.ts";
import { isLoopback, isUnspecified, specialPurpose } from "../../config/net/special.ts";
import { DeviceDirectory } from "../../gateway/sip/devices.ts";
import { PeerPolicy } from "../../turn/policy.ts";

const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
const anyIp = fc.oneof(v4, v6);

function mask(b: Uint8Array, prefix: number): Uint8Array {
  const out = Uint8Array.from(b);
  for (let bit = prefix; bit < out.length * 8; bit++) out[bit >> 3] = out[bit >> 3]! & ~(0x80 >> (bit & 7));
  return out;
}

const mapped = (b: Uint8Array): boolean => b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;

describe("IP text", () => {
  it("formats as Node does and parses back to the same bytes", () => {
    fc.assert(
      fc.property(anyIp, (b) => {
        const text = formatIp(b);
        expect(Array.from(parseIp(text)!)).toEqual(Array.from(b));
        // Node's URL parser is RFC 5952 canonical for IPv6 hosts.
        if (b.length === 16) expect(new URL(`http://[${text}]/`).hostname).toBe(`[${text}]`);
        expect(canonicalIp(text)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses names and garbage; keeps IPv4-mapped distinct unless asked", () => {
    for (const t of ["localhost", "example.com", "1.2.3", "1.2.3.256", "::g", "", "10.0.0.1 ", "[::1]"]) expect(parseIp(t)).toBeUndefined();
    expect(parseIp("::ffff:10.1.2.3")!.length).toBe(16);
    expect(formatIp(unmapIpv4(parseIp("::ffff:10.1.2.3")!))).toBe("10.1.2.3");
    expect(socketIp("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(socketIp("fe80::1%eth0")).toBe("fe80::1");
  });
});

describe("CIDR blocks", () => {
  it("agree with net.BlockList on membership, for both families", () => {
    fc.assert(
      fc.property(anyIp, anyIp, fc.nat(128), (net, addr, p) => {
        // Same family and no IPv4-mapped addresses: BlockList treats those differently (see below).
        fc.pre(net.length === addr.length && !mapped(net) && !mapped(addr));
        const prefix = p % (net.length * 8 + 1);
        const n = mask(net, prefix);
        const text = `${formatIp(n)}/${prefix}`;
        const c = parseCidr(text);
        const bl = new BlockList();
        const family = n.length === 4 ? "ipv4" : "ipv6";
        bl.addSubnet(formatIp(n), prefix, family);
        expect(cidrContains(c, formatIp(addr))).toBe(bl.check(formatIp(addr), family));
        // The address itself, put under the block, always matches.
        const inside = Uint8Array.from(n);
        for (let bit = prefix; bit < inside.length * 8; bit++) if (addr[bit >> 3]! & (0x80 >> (bit & 7))) inside[bit >> 3] = inside[bit >> 3]! | (0x80 >> (bit & 7));
        expect(cidrContains(c, inside)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("rejects host bits below the prefix with a clear error naming the network (fail closed, no silent masking)", () => {
    fc.assert(
      fc.property(anyIp, fc.nat(128), (a, p) => {
        fc.pre(!mapped(a));
        const prefix = p % (a.length * 8 + 1);
        const text = `${formatIp(a)}/${prefix}`;
        const clean = formatIp(mask(a, prefix)) === formatIp(a);
        const problem = cidrProblem(text);
        if (clean) expect(problem).toBeUndefined();
        else {
          expect(problem).toContain("host bits are set below the /" + prefix);
          expect(problem).toContain(`${formatIp(mask(a, prefix))}/${prefix}`);
          expect(() => parseCidr(text)).toThrow(expect.objectContaining({ code: "BAD_INPUT" }));
        }
      }),
      { numRuns: 1000 },
    );
    expect(cidrProblem("10.0.0.1/8")).toBe('"10.0.0.1/8": host bits are set below the /8 prefix (the network is 10.0.0.0/8; a single address needs /32)');
  });

  it("treats IPv4-mapped IPv6 as IPv4, in entries and in addresses (a deny-list cannot be dodged by the mapped form)", () => {
    fc.assert(
      fc.property(v4, v4, fc.nat(32), (net, addr, prefix) => {
        const n = mask(net, prefix);
        const c = parseCidr(`${formatIp(n)}/${prefix}`);
        const cm = parseCidr(`::ffff:${formatIp(n)}/${prefix + 96}`);
        expect(cm).toMatchObject({ family: 4, prefix });
        const a = formatIp(addr);
        expect(cidrContains(c, `::ffff:${a}`)).toBe(cidrContains(c, a));
        expect(cidrContains(cm, a)).toBe(cidrContains(c, a));
      }),
      { numRuns: 500 },
    );
    expect(new PeerPolicy({ deny: ["203.0.113.0/24"], allow: ["0.0.0.0/0"] }).check("::ffff:203.0.113.9")).toBe("allow"); // allow is checked first
    expect(new CidrList(["198.51.100.0/24"]).has("::ffff:198.51.100.7")).toBe(true);
    expect(new CidrList(["::/0"]).has("10.0.0.1")).toBe(false);
  });

  it("refuses zoned entries, names, bad prefixes", () => {
    for (const t of ["fe80::1%eth0", "fe80::/10%eth0", "host.example", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08x", "10.0.0.0/8/8"]) expect(cidrProblem(t)).toBeDefined();
    expect(() => new CidrList(["10.0.0.0/8", "x"], "peers.allow")).toThrow(/peers\.allow\[1\]: "x" is not an IP address/);
  });
});

describe("regression: IP/CIDR one rule for host bits", () => {
  // Today's code had two parsers: TURN lists refused `10.0.0.1/8`, SIP allow-lists silently
  // masked it to 10.0.0.0/8 (allowing a whole /8 to call as the door). Both now refuse it.
  it("IP/CIDR: a SIP allow-list entry with host bits is a config error, as a TURN one is", () => {
    const sip = (allow: string[]): unknown => parseConfig({ sip: { devices: [{ id: "door", username: "door", password: "door-secret", allow }] } });
    const turn = (allow: string[]): unknown => parseConfig({ turn: { peers: { allow } } });
    for (const bad of ["10.0.0.1/8", "192.168.1.77/24", "fd00::1/8"]) {
      expect(() => sip([bad])).toThrow(ConfigError);
      expect(() => sip([bad])).toThrow(/sip\.devices\[0\]\.allow\[0\]: .*host bits are set/);
      expect(() => turn([bad])).toThrow(/turn\.peers\.allow\[0\]: .*host bits are set/);
    }
  });

  it("IP/CIDR: TURN and SIP lists accept and match exactly the same entries", () => {
    fc.assert(
      fc.property(anyIp, fc.nat(128), anyIp, (a, p, probe) => {
        const prefix = p % (a.length * 8 + 1);
        const text = `${formatIp(a)}/${prefix}`;
        let devices: ReturnType<typeof parseConfig>["sip"]["devices"] | undefined;
        let turnOk = true;
        try {
          devices = parseConfig({ sip: { devices: [{ id: "door", username: "door", password: "door-secret", allow: [text] }] } }).sip.devices;
        } catch {
          devices = undefined;
        }
        try {
          parseConfig({ turn: { peers: { allow: [text] } } });
        } catch {
          turnOk = false;
        }
        expect(devices !== undefined).toBe(turnOk);
        if (!devices) return;
        const dir = new DeviceDirectory(devices);
        const ip = formatIp(probe);
        const policy = new PeerPolicy({ allow: [text], allowPublic: false });
        const bytes = parseIp(ip)!;
        // The TURN policy may refuse for other reasons (unspecified); when it allows, SIP agrees, and vice versa for listed addresses.
        const listed = dir.allowListed(ip).length > 0;
        if (!isUnspecified(bytes)) expect(policy.check(ip) === "allow").toBe(listed);
      }),
      { numRuns: 300 },
    );
  });
});

describe("special-purpose ranges", () => {
  it("labels the ranges callers refuse", () => {
    const cases: [string, string | undefined][] = [
      ["127.0.0.1", "loopback"],
      ["::1", "loopback"],
      ["10.1.2.3", "private"],
      ["172.31.255.255", "private"],
      ["192.168.0.1", "private"],
      ["100.64.0.1", "cgnat"],
      ["169.254.1.1", "link-local"],
      ["169.254.169.254", "metadata"],
      ["fd00:ec2::254", "metadata"],
      ["100.100.100.200", "metadata"],
      ["fe80::1", "link-local"],
      ["fc00::1", "unique-local"],
      ["224.0.0.251", "multicast"],
      ["ff02::fb", "multicast"],
      ["255.255.255.255", "reserved"],
      ["::ffff:8.8.8.8", "ipv4-mapped"],
      ["::ffff:127.0.0.1", "ipv4-mapped"],
      ["64:ff9b::a00:1", "nat64"],
      ["2001:db8::1", "documentation"],
      ["0.0.0.0", "this-network"],
      ["8.8.8.8", undefined],
      ["2a00:1450::1", undefined],
      ["not-an-ip", "reserved"],
    ];
    for (const [ip, label] of cases) expect([ip, specialPurpose(ip)]).toEqual([ip, label]);
    expect(isLoopback("::ffff:127.0.0.2")).toBe(true);
    expect(isLoopback("10.0.0.1")).toBe(false);
    expect(isUnspecified("::")).toBe(true);
    expect(isUnspecified("0.0.0.0")).toBe(true);
    expect(isIPv6("::ffff:8.8.8.8")).toBe(true);
  });

  it("never calls a private, loopback or link-local IPv4 address public, in any form", () => {
    fc.assert(
      fc.property(fc.constantFrom(10, 127, 169, 172, 192), v4, (first, rest) => {
        const b = Uint8Array.from(rest);
        b[0] = first;
        if (first === 169) b[1] = 254;
        if (first === 172) b[1] = 16 + (b[1]! & 15);
        if (first === 192) b[1] = 168;
        expect(specialPurpose(b)).toBeDefined();
        expect(specialPurpose(`::ffff:${formatIp(b)}`)).toBe("ipv4-mapped");
      }),
    );
  });
});
