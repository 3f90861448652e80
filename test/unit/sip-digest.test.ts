import { describe, expect, it } from "vitest";
import { digestResponse } from "../../gateway/digest/client.ts";
import { DigestServer, parseCredentials, type DigestAlgorithm } from "../../gateway/digest/server.ts";
import { Lockout } from "../../gateway/sip/lockout.ts";

describe("digest response (known answers)", () => {
  it("RFC 2617 §3.5 (MD5, qop=auth)", () => {
    expect(
      digestResponse({
        algorithm: "MD5",
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        cnonce: "0a4f113b",
        nc: "00000001",
        qop: "auth",
      }),
    ).toBe("6629fae49393a05397450978507c4ef1");
  });

  it("RFC 7616 §3.9.1 (MD5 and SHA-256)", () => {
    const common = {
      username: "Mufasa",
      realm: "http-auth@example.org",
      password: "Circle of Life",
      method: "GET",
      uri: "/dir/index.html",
      nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
      cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
      nc: "00000001",
      qop: "auth" as const,
    };
    expect(digestResponse({ ...common, algorithm: "MD5" })).toBe("8ca523f5e9506fed4657c9700eebdbec");
    expect(digestResponse({ ...common, algorithm: "SHA-256" })).toBe("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
  });
});

describe("digest server", () => {
  const realm = "gatehouse";
  let now = 1_700_000_000_000;
  const server = (): DigestServer => new DigestServer({ now: () => now, nonceLifetimeMs: 60_000, maxTrackedNonces: 4 });
  const passwords: Record<string, string> = { door1: "correct horse" };
  const lookup = (u: string): string | undefined => passwords[u];
  const ADDR = "192.0.2.50";

  function answer(challenge: string, opts: { password?: string; nc?: string; algorithm?: DigestAlgorithm; sess?: boolean; user?: string } = {}): string {
    const c = parseCredentials(challenge)!;
    const nonce = c.params.get("nonce")!;
    const algorithm = opts.algorithm ?? (c.params.get("algorithm") as DigestAlgorithm);
    const nc = opts.nc ?? "00000001";
    const cnonce = "abc123";
    const user = opts.user ?? "door1";
    const response = digestResponse({ algorithm, sess: opts.sess, username: user, realm, password: opts.password ?? "correct horse", method: "REGISTER", uri: "sip:gatehouse", nonce, cnonce, nc, qop: "auth" });
    return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="sip:gatehouse", response="${response}", algorithm=${algorithm}${opts.sess ? "-sess" : ""}, cnonce="${cnonce}", qop=auth, nc=${nc}`;
  }

  it("offers one challenge per algorithm, in order, sharing a nonce", () => {
    const ch = server().challenge(realm, ["SHA-256", "MD5"], ADDR);
    expect(ch).toHaveLength(2);
    expect(ch[0]).toMatch(/algorithm=SHA-256, qop="auth"$/);
    expect(parseCredentials(ch[0]!)!.params.get("nonce")).toBe(parseCredentials(ch[1]!)!.params.get("nonce"));
  });

  it("accepts MD5, SHA-256, SHA-512-256 and -sess answers, and only offered algorithms", () => {
    const s = server();
    for (const algorithm of ["MD5", "SHA-256", "SHA-512-256"] as const) {
      now += 10;
      const [ch] = s.challenge(realm, [algorithm], ADDR);
      expect(s.verify(answer(ch!), "REGISTER", realm, [algorithm], lookup, ADDR)).toEqual({ ok: true, username: "door1", algorithm });
      now += 10;
      const [ch2] = s.challenge(realm, [algorithm], ADDR);
      expect(s.verify(answer(ch2!, { sess: true }), "REGISTER", realm, [algorithm], lookup, ADDR).ok).toBe(true);
    }
    const [md5] = s.challenge(realm, ["MD5"], ADDR);
    expect(s.verify(answer(md5!), "REGISTER", realm, ["SHA-256"], lookup, ADDR)).toMatchObject({ ok: false, reason: "unsupported-algorithm" });
  });

  it("tells a wrong password, an unknown user, a forged nonce and a missing header apart", () => {
    const s = server();
    const [ch] = s.challenge(realm, ["MD5"], ADDR);
    expect(s.verify(answer(ch!, { password: "nope" }), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "bad-response" });
    expect(s.verify(answer(ch!, { user: "ghost" }), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "unknown-user" });
    const forged = answer(ch!).replace(/nonce="[^"]+"/, `nonce="${Buffer.alloc(31, 7).toString("base64url")}"`);
    expect(s.verify(forged, "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "bad-nonce" });
    const other = server(); // another process: a different HMAC secret
    expect(other.verify(answer(ch!), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "bad-nonce" });
    expect(s.verify(undefined, "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "missing" });
    expect(s.verify("Basic ZGVtbzpkZW1v", "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "missing" });
    expect(s.verify(answer(ch!).replace("qop=auth, ", ""), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("a forged source can lock a door out: a nonce is accepted only from the address it was issued to", () => {
    const s = server();
    const [ch] = s.challenge(realm, ["MD5"], "192.0.2.66"); // issued to the attacker's own address
    // Replayed from the door's address (spoofed), even with the right password: not our nonce there.
    expect(s.verify(answer(ch!), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "bad-nonce" });
    expect(s.verify(answer(ch!, { password: "wrong" }), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "bad-nonce" });
    expect(s.verify(answer(ch!), "REGISTER", realm, ["MD5"], lookup, "192.0.2.66").ok).toBe(true);
  });

  it("reports an expired nonce as stale only when the password was right", () => {
    const s = server();
    const [ch] = s.challenge(realm, ["MD5"], ADDR);
    now += 61_000;
    expect(s.verify(answer(ch!), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "stale" });
    expect(s.verify(answer(ch!, { password: "x" }), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "bad-response" });
  });

  it("refuses a replayed nonce count and accepts increasing ones", () => {
    const s = server();
    const [ch] = s.challenge(realm, ["MD5"], ADDR);
    expect(s.verify(answer(ch!, { nc: "00000001" }), "REGISTER", realm, ["MD5"], lookup, ADDR).ok).toBe(true);
    expect(s.verify(answer(ch!, { nc: "00000001" }), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "replay" });
    expect(s.verify(answer(ch!, { nc: "00000002" }), "REGISTER", realm, ["MD5"], lookup, ADDR).ok).toBe(true);
  });

  it("bounds the nonce table; a forgotten nonce is stale, never replayable", () => {
    const s = server();
    const first = s.challenge(realm, ["MD5"], ADDR)[0]!;
    expect(s.verify(answer(first), "REGISTER", realm, ["MD5"], lookup, ADDR).ok).toBe(true);
    for (let i = 0; i < 6; i++) {
      now += 1;
      const ch = s.challenge(realm, ["MD5"], ADDR)[0]!;
      expect(s.verify(answer(ch), "REGISTER", realm, ["MD5"], lookup, ADDR).ok).toBe(true);
    }
    expect(s.trackedNonces).toBeLessThanOrEqual(4);
    expect(s.verify(answer(first, { nc: "00000001" }), "REGISTER", realm, ["MD5"], lookup, ADDR)).toMatchObject({ ok: false, reason: "stale" });
  });

  it("parses credentials with escapes and rejects duplicated directives", () => {
    const c = parseCredentials(`Digest username="a\\"b", realm=x, nc=00000001`)!;
    expect(c.params.get("username")).toBe('a"b');
    expect(c.params.get("realm")).toBe("x");
    expect(parseCredentials(`Digest realm="a", realm="b"`)).toBeUndefined();
    expect(parseCredentials(`Digest username="unterminated`)).toBeUndefined();
  });
});

describe("lockout", () => {
  it("locks a source after N failures within the window, then releases it", () => {
    let t = 0;
    const l = new Lockout({ maxFailures: 3, windowMs: 10_000, lockMs: 60_000 }, () => t);
    expect(l.fail("10.0.0.9")).toBe(false);
    t += 20_000; // outside the window: the first failure no longer counts
    expect(l.fail("10.0.0.9")).toBe(false);
    expect(l.fail("10.0.0.9")).toBe(false);
    expect(l.isLocked("10.0.0.9")).toBe(false);
    expect(l.fail("10.0.0.9")).toBe(true);
    expect(l.isLocked("10.0.0.9")).toBe(true);
    expect(l.isLocked("10.0.0.8")).toBe(false);
    expect(l.refused).toBe(1);
    t += 60_001;
    expect(l.isLocked("10.0.0.9")).toBe(false);
    expect(l.lockouts).toBe(1);
  });

  it("stays bounded under a flood of distinct sources", () => {
    const l = new Lockout({ maxFailures: 2, windowMs: 1000, lockMs: 1000 }, () => 0, 100);
    for (let i = 0; i < 1000; i++) l.fail(`10.1.${i >> 8}.${i & 255}`);
    expect(l.locked().length).toBe(0);
  });
});
