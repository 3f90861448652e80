/**
 * Stream framing (RFC 8656 §12.5): STUN and padded ChannelData over TCP, split and
 * coalesced arbitrarily; the front door's first-bytes verdicts; the small helpers
 * (credentials, ICE server entries, config section).
 */
import { createHmac } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../config/load.ts";
import { parseCidr } from "../../config/net/cidr.ts";
import { sniff } from "../../gateway/frontdoor/sniff.ts";
import { iceServerLinkHeader, mintTurnCredentials, parseRestUsername, restPassword, turnIceServers } from "../../turn/index.ts";
import { StreamFramer, type FrameKind } from "../../turn/framing.ts";
import { MessageClass, Method } from "../../turn/stun/constants.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

function channelData(n: number, payload: Buffer, pad: boolean): Buffer {
  const h = Buffer.from([n >> 8, n & 0xff, payload.length >> 8, payload.length & 0xff]);
  const padding = pad ? Buffer.alloc((4 - (payload.length & 3)) & 3) : Buffer.alloc(0);
  return Buffer.concat([h, payload, padding]);
}

function collect(): { framer: StreamFramer; frames: [FrameKind, Buffer][] } {
  const frames: [FrameKind, Buffer][] = [];
  const framer = new StreamFramer({ frame: (k, f) => frames.push([k, Buffer.from(f)]) });
  return { framer, frames };
}

describe("stream framing", () => {
  it("splits coalesced STUN and padded ChannelData whatever the chunking", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 50 }).map((p) => ["channel", Buffer.from(p)] as const), fc.constant(["stun", Buffer.alloc(0)] as const)), {
          minLength: 1,
          maxLength: 10,
        }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }),
        (items, cuts) => {
          const frames = items.map(([k, p], i) =>
            k === "stun" ? new StunWriter(Method.Binding, MessageClass.Request).u32(0x8123, i).fingerprint().finish() : channelData(0x4000 + i, p, true),
          );
          const stream = Buffer.concat(frames);
          const { framer, frames: got } = collect();
          let off = 0;
          let ci = 0;
          while (off < stream.length) {
            const n = cuts[ci++ % cuts.length]!;
            expect(framer.push(stream.subarray(off, off + n))).toBeUndefined();
            off += n;
          }
          expect(got.map(([, f]) => f.toString("hex"))).toEqual(frames.map((f) => f.toString("hex")));
          expect(got.map(([k]) => k)).toEqual(items.map(([k]) => k));
          expect(framer.buffered).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses streams that are not TURN, and STUN frames beyond the size bound", () => {
    // 'G' = 0x47 reads as ChannelData of 0x2F20 bytes: the framer waits (the connection's
    // handshake timer closes it); the front door never hands HTTP to TURN in the first place.
    const http = collect();
    expect(http.framer.push(Buffer.from("GET / HTTP/1.1\r\n"))).toBeUndefined();
    expect(http.frames).toEqual([]);
    expect(collect().framer.push(Buffer.from([0x80, 0, 0, 0]))).toBe("bad-frame");
    expect(collect().framer.push(Buffer.from([0x00, 0x01, 0x00, 0x03, 0x21, 0x12, 0xa4, 0x42]))).toBe("bad-frame"); // length not a multiple of 4
    expect(collect().framer.push(Buffer.from([0x00, 0x01, 0xff, 0xfc]))).toBe("too-large");
  });
});

describe("front door first-bytes verdicts", () => {
  it("tells TLS, TURN and HTTP apart and waits when it cannot yet", () => {
    const binding = new StunWriter(Method.Binding, MessageClass.Request).finish();
    expect(sniff(Buffer.from([0x16, 0x03, 0x01]), true)).toBe("tls");
    expect(sniff(Buffer.from([0x16]), true)).toBe("more");
    expect(sniff(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x00]), false)).toBe("http"); // no TLS configured
    expect(sniff(binding, true)).toBe("turn");
    expect(sniff(binding.subarray(0, 5), true)).toBe("more");
    expect(sniff(Buffer.from([0x00, 0x01, 0x00, 0x00, 0x99]), true)).toBe("http"); // cookie ruled out early
    for (const m of ["GET / HTTP/1.1", "POST /whep", "DELETE /x", "HEAD /", "OPTIONS *", "PUT /", "CONNECT x"]) expect(sniff(Buffer.from(m), true)).toBe("http");
    expect(sniff(channelData(0x4000, Buffer.from("x"), true), true)).toBe("http"); // no channel can exist on a new connection
  });
});

describe("REST credentials", () => {
  it("mints expiry:subject with a base64 HMAC-SHA1 password (the coturn --use-auth-secret form)", () => {
    const c = mintTurnCredentials({ secret: "s3cr3t-s3cr3t-s3cr3t", subject: "user@example", ttlSeconds: 300, now: 1_700_000_000_123 });
    expect(c.expiresAt).toBe(1_700_000_300);
    expect(c.password).toBe(createHmac("sha1", "s3cr3t-s3cr3t-s3cr3t").update(c.username).digest("base64"));
    expect(restPassword("s3cr3t-s3cr3t-s3cr3t", c.username)).toBe(c.password);
    expect(c.username).toMatch(/^1700000300:user@example#\.[A-Za-z0-9_-]{8}$/);
    expect(parseRestUsername(c.username)).toEqual({ expiresAt: 1_700_000_300, subject: "user@example", session: undefined, minted: true });
    const bound = mintTurnCredentials({ secret: "0123456789abcdef", subject: "user#x", ttlSeconds: 300, now: 1_700_000_000_000, session: "AbCdEfGhIjKlMn-_" });
    expect(bound.username).toMatch(/^1700000300:user#x#AbCdEfGhIjKlMn-_\.[A-Za-z0-9_-]{8}$/);
    expect(parseRestUsername(bound.username)).toEqual({ expiresAt: 1_700_000_300, subject: "user#x", session: "AbCdEfGhIjKlMn-_", minted: true });
    // Two viewers minted in the same second never share a username.
    expect(mintTurnCredentials({ secret: "0123456789abcdef", subject: "u", ttlSeconds: 300, now: 0 }).username).not.toBe(mintTurnCredentials({ secret: "0123456789abcdef", subject: "u", ttlSeconds: 300, now: 0 }).username);
    expect(() => mintTurnCredentials({ secret: "0123456789abcdef", subject: "u", ttlSeconds: 1, session: "short" })).toThrow(RangeError);
    expect(parseRestUsername("a:b:c")).toBeUndefined();
    expect(parseRestUsername("123:x:y")).toEqual({ expiresAt: 123, subject: "x:y", session: undefined, minted: false });
    expect(() => mintTurnCredentials({ secret: "x", subject: "", ttlSeconds: 1 })).toThrow(RangeError);
  });

  it("builds RTCIceServer entries and WHEP Link headers for the three transports", () => {
    const creds = { username: "1700000300:u", password: 'p"w' };
    const servers = turnIceServers({ host: "gw.example", udpPort: 14049, httpsPort: 443, credentials: creds });
    expect(servers).toEqual([
      { urls: ["turn:gw.example:14049?transport=udp", "turn:gw.example:443?transport=tcp", "turns:gw.example:443?transport=tcp"], username: creds.username, credential: creds.password },
    ]);
    expect(turnIceServers({ host: "::1", udpPort: 3478, credentials: creds })[0]!.urls).toEqual(["turn:[::1]:3478?transport=udp"]);
    expect(iceServerLinkHeader(servers)[0]).toBe(
      '<turn:gw.example:14049?transport=udp>; rel="ice-server"; username="1700000300:u"; credential="p\\"w"; credential-type="password"',
    );
  });
});

describe("turn configuration section", () => {
  it("fills documented defaults", () => {
    const t = parseConfig({}).turn;
    expect(t.enabled).toBe(false);
    expect(t.credentialLifetimeSeconds).toBe(300);
    expect(t.udp).toEqual([{ host: "127.0.0.1", port: 14049 }]);
    expect(t.lifetimes).toEqual({ allocationSeconds: 600, maxAllocationSeconds: 3600, permissionSeconds: 300, channelSeconds: 600 });
    expect(t.quotas.allocationsPerUser).toBe(256);
    expect(t.peers).toEqual({ allow: [], deny: [], allowPublic: false });
  });

  it("takes the secret from the environment and requires one when enabled", () => {
    expect(parseConfig({ turn: { enabled: true, secret: "${TURN_SECRET}" } }, { TURN_SECRET: "0123456789abcdef-env" }).turn.secret).toBe("0123456789abcdef-env");
    expect(() => parseConfig({ turn: { enabled: true } }, {})).toThrow(/turn\.secret: required when turn\.enabled/);
    expect(() => parseConfig({ turn: { secret: "short" } }, {})).toThrow(/turn\.secret: must be at least 16/);
  });

  it("stops on a malformed allow- or deny-list entry, naming its path", () => {
    try {
      parseConfig({ turn: { peers: { allow: ["10.0.0.0/8", "10.0.0.1/8", "not-an-ip"], deny: ["::1/129"] } } });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const p = (e as ConfigError).problems.join("\n");
      expect(p).toMatch(/turn\.peers\.allow\[1\]: "10\.0\.0\.1\/8": host bits are set/);
      expect(p).toMatch(/turn\.peers\.allow\[2\]: "not-an-ip" is not an IP address or CIDR block/);
      expect(p).toMatch(/turn\.peers\.deny\[0\]: "::1\/129": prefix length must be 0\.\.128/);
    }
    expect(() => parseConfig({ turn: { colour: "red" } })).toThrow(/turn\.colour: unknown key/);
    expect(() => parseConfig({ turn: { relay: { portRange: [0, 5] } } })).toThrow(/turn\.relay\.portRange/);
  });

  it("parses CIDR blocks for both families", () => {
    expect(parseCidr("192.168.0.0/16")).toMatchObject({ family: 4, prefix: 16 });
    expect(parseCidr("fd00::/8")).toMatchObject({ family: 6, prefix: 8 });
    expect(parseCidr("::ffff:10.0.0.1")).toMatchObject({ family: 4, prefix: 32 }); // IPv4-mapped is IPv4
  });
});
