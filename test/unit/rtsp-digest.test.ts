import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  createAuthorizer,
  digestResponse,
  isStale,
  parseChallenges,
  pickChallenge,
  type Challenge,
  type DigestAlgorithm,
} from "../../gateway/digest/client.ts";
import { parseCredentials } from "../../gateway/digest/server.ts";

const params = (c: Pick<Challenge, "params"> | { readonly params: ReadonlyMap<string, string> } | undefined): Record<string, string> => Object.fromEntries(c?.params ?? []);

describe("RFC 2617 §3.5 example", () => {
  const challenge =
    'Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"';
  // The Authorization header exactly as printed in the RFC (line breaks joined).
  const expected =
    'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"';

  it("answers with the RFC's exact parameters", () => {
    const [c] = parseChallenges([challenge]);
    const auth = createAuthorizer(c!, { username: "Mufasa", password: "Circle Of Life" }, { cnonce: () => "0a4f113b" })!;
    const header = auth.authorize("GET", "/dir/index.html");
    expect(header.startsWith("Digest ")).toBe(true);
    expect(params(parseCredentials(header))).toEqual(params(parseCredentials(expected)));
    expect(params(parseCredentials(header)).response).toBe("6629fae49393a05397450978507c4ef1");
    // the next request on the same nonce counts up (RFC 2617 §3.2.2 nonce-count)
    expect(params(parseCredentials(auth.authorize("GET", "/dir/index.html"))).nc).toBe("00000002");
  });
});

describe("RFC 7616 §3.9.1 examples", () => {
  const common =
    'realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"';
  const values = [`Digest ${common}, algorithm=SHA-256`, `Digest ${common}, algorithm=MD5`];
  const creds = { username: "Mufasa", password: "Circle of Life" };
  const cnonce = () => "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
  const expected = (alg: string, response: string) =>
    `Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=${alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="${response}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`;

  it("picks SHA-256 over MD5 and answers both exactly", () => {
    const cs = parseChallenges(values);
    expect(cs).toHaveLength(2);
    expect(pickChallenge(cs)!.params.get("algorithm")).toBe("SHA-256");
    expect(pickChallenge([...cs].reverse())!.params.get("algorithm")).toBe("SHA-256");
    const sha = createAuthorizer(cs[0]!, creds, { cnonce })!.authorize("GET", "/dir/index.html");
    expect(params(parseCredentials(sha))).toEqual(
      params(parseCredentials(expected("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"))),
    );
    const md5 = createAuthorizer(cs[1]!, creds, { cnonce })!.authorize("GET", "/dir/index.html");
    expect(params(parseCredentials(md5))).toEqual(
      params(parseCredentials(expected("MD5", "8ca523f5e9506fed4657c9700eebdbec"))),
    );
  });
});

describe("challenges", () => {
  it("splits several challenges in one header and across headers", () => {
    const cs = parseChallenges([
      'Basic realm="cam", Digest realm="cam", nonce="abc", stale=TRUE, Negotiate abc==, NTLM',
      'Digest realm="x", nonce=n2, algorithm=SHA-256-sess, qop=auth',
    ]);
    expect(cs.map((c) => c.scheme)).toEqual(["basic", "digest", "negotiate", "ntlm", "digest"]);
    expect(params(cs[1])).toEqual({ realm: "cam", nonce: "abc", stale: "TRUE" });
    expect(isStale(cs[1]!)).toBe(true);
    expect(isStale(cs[4]!)).toBe(false);
    expect(pickChallenge(cs)).toBe(cs[4]);
  });

  it("ranks Basic below any digest and skips what it cannot answer", () => {
    const cs = parseChallenges([
      'Digest realm="a", nonce="n", algorithm=SHA-1024',
      'Digest realm="a"', // no nonce
      'Digest realm="a", nonce="n", qop="auth-conf"',
      'Basic realm="b"',
      "Bearer",
    ]);
    expect(pickChallenge(cs)?.scheme).toBe("basic");
    expect(pickChallenge(parseChallenges(["Bearer realm=x", "Mutual"]))).toBeUndefined();
    expect(createAuthorizer(cs[0]!, { username: "u", password: "p" })).toBeUndefined();
    // -sess without qop: there is no way to send the cnonce the session key depends on
    const [sess] = parseChallenges(['Digest realm="a", nonce="n", algorithm=MD5-sess']);
    expect(createAuthorizer(sess!, { username: "u", password: "p" })).toBeUndefined();
  });

  it("answers Basic per RFC 7617 (UTF-8)", () => {
    const [c] = parseChallenges(['Basic realm="WallyWorld"']);
    const a = createAuthorizer(c!, { username: "Aladdin", password: "open sesame" })!;
    expect(a.authorize("DESCRIBE", "rtsp://h/x")).toBe("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    const u = createAuthorizer(c!, { username: "test", password: "123£" })!;
    expect(u.authorize("OPTIONS", "*")).toBe("Basic dGVzdDoxMjPCow=="); // RFC 7617 §2.1 example
  });

  it("answers an RFC 2069 challenge (no qop) without nc/cnonce", () => {
    const [c] = parseChallenges(['Digest realm="GStreamer RTSP Server", nonce="0123456789abcdef"']);
    const h = createAuthorizer(c!, { username: "user", password: "pass" })!.authorize("DESCRIBE", "rtsp://127.0.0.1:8554/test");
    const p = params(parseCredentials(h));
    expect(p.nc).toBeUndefined();
    expect(p.cnonce).toBeUndefined();
    expect(p.algorithm).toBeUndefined();
    expect(p.response).toBe(
      digestResponse({
        algorithm: "MD5", sess: false, username: "user", password: "pass", realm: "GStreamer RTSP Server",
        nonce: "0123456789abcdef", method: "DESCRIBE", uri: "rtsp://127.0.0.1:8554/test", qop: undefined,
      }),
    );
  });

  it("hashes the username when the server asks (RFC 7616 §3.4.4 userhash)", () => {
    const [c] = parseChallenges(['Digest realm="api@example.org", nonce="n", algorithm=SHA-512-256, qop=auth, userhash=true']);
    const p = params(parseCredentials(createAuthorizer(c!, { username: "J\u00e4s\u00f8n Doe", password: "Secret, or not?" })!.authorize("GET", "/doe.json")));
    // RFC 7616 §3.9.2: username hash for this realm and user
    expect(p.username).toBe("793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b");
    expect(p.userhash).toBe("true");
  });

  it("keeps the -sess key and only counts nc up across requests", () => {
    const [c] = parseChallenges(['Digest realm="r", nonce="n", algorithm=MD5-sess, qop="auth"']);
    let k = 0;
    const a = createAuthorizer(c!, { username: "u", password: "p" }, { cnonce: () => `c${k++}` })!;
    const p1 = params(parseCredentials(a.authorize("OPTIONS", "rtsp://h/")));
    const p2 = params(parseCredentials(a.authorize("DESCRIBE", "rtsp://h/")));
    expect([p1.nc, p2.nc]).toEqual(["00000001", "00000002"]);
    expect(p1.cnonce).toBe(p2.cnonce);
  });
});

describe("properties", () => {
  const printable = fc.stringMatching(/^[ -~]{0,30}$/);
  const quote = (s: string) => `"${s.replace(/[\\"]/g, "\\$&")}"`;

  it("parseChallenges never throws on arbitrary input", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 80 }), { maxLength: 4 }), (vs) => {
        for (const c of parseChallenges(vs)) expect(c.scheme).toBe(c.scheme.toLowerCase());
      }),
      { numRuns: 1000 },
    );
  });

  it("round-trips quoted parameter values", () => {
    fc.assert(
      fc.property(printable, printable.filter((s) => s.length > 0), printable, (realm, nonce, opaque) => {
        const [c] = parseChallenges([`Digest realm=${quote(realm)}, nonce=${quote(nonce)}, opaque=${quote(opaque)}`]);
        expect(params(c)).toEqual({ realm, nonce, opaque });
      }),
    );
  });

  it("every answer verifies with the server-side computation", () => {
    const alg = fc.constantFrom<DigestAlgorithm>("MD5", "SHA-256", "SHA-512-256");
    fc.assert(
      fc.property(
        alg,
        fc.boolean(),
        fc.constantFrom(undefined, "auth", "auth-int"),
        printable,
        printable,
        printable.filter((s) => s.length > 0),
        fc.integer({ min: 1, max: 5 }),
        (algorithm, sess, qop, user, pass, nonce, requests) => {
          if (sess && !qop) return; // unusable: -sess needs a cnonce, only sent with qop (tested below)
          const v = `Digest realm="r", nonce=${quote(nonce)}, algorithm=${algorithm}${sess ? "-sess" : ""}${qop ? `, qop="${qop}"` : ""}`;
          const a = createAuthorizer(pickChallenge(parseChallenges([v]))!, { username: user, password: pass })!;
          for (let n = 1; n <= requests; n++) {
            const body = Buffer.from(`body ${n}`);
            const p = params(parseCredentials(a.authorize("SET_PARAMETER", "rtsp://h/s", body)));
            expect(p.username).toBe(user);
            if (qop) expect(p.nc).toBe(n.toString(16).padStart(8, "0"));
            const expected = digestResponse({
              algorithm, sess, username: user, password: pass, realm: "r", nonce, method: "SET_PARAMETER",
              uri: "rtsp://h/s", qop: qop as "auth" | "auth-int" | undefined, nc: p.nc, cnonce: p.cnonce, body,
            });
            expect(p.response).toBe(expected);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
