import { generateKeyPairSync } from "node:crypto";
import { decodeProtectedHeader, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import { jwkThumbprint, SessionKeyring, UnknownSigningKeyError } from "../../gateway/auth/keys.ts";

const pem = (k: ReturnType<typeof generateKeyPairSync>["privateKey"]) => k.export({ type: "pkcs8", format: "pem" }) as string;
const ec = () => pem(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
const opts = { issuer: "https://gw.example", audience: "gatehouse-session" };
const claims = () => ({ iss: opts.issuer, aud: opts.audience, sub: "s", sid: "x", iat: 1, exp: 2 });

describe("session keyring", () => {
  it("signs with the first key (ES256, kid = RFC 7638 thumbprint) and verifies", async () => {
    const ring = SessionKeyring.generate();
    const token = await ring.sign(claims());
    const header = decodeProtectedHeader(token);
    expect(header.alg).toBe("ES256");
    expect(header.kid).toBe(jwkThumbprint(ring.signer.publicKey));
    expect((await ring.verify(token, opts)).sub).toBe("s");
    expect(ring.signedByCurrent(token)).toBe(true);
  });

  it("computes RFC 7638 thumbprints (the RFC's §3.1 example key)", async () => {
    const { createPublicKey } = await import("node:crypto");
    const n =
      "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    const key = createPublicKey({ key: { kty: "RSA", n, e: "AQAB" }, format: "jwk" });
    expect(jwkThumbprint(key)).toBe("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  });

  it("keeps verifying tokens of an older key after rotation (no one is logged out)", async () => {
    const oldPem = ec();
    const newPem = ec();
    const files: Record<string, string> = { "/old.pem": oldPem, "/new.pem": newPem };
    const read = (p: string) => files[p]!;
    const before = SessionKeyring.fromFiles(["/old.pem"], read);
    const token = await before.sign(claims());
    const after = SessionKeyring.fromFiles(["/new.pem", "/old.pem"], read);
    expect((await after.verify(token, opts)).sid).toBe("x");
    expect(after.signedByCurrent(token)).toBe(false);
    const fresh = await after.sign(claims());
    expect(decodeProtectedHeader(fresh).kid).toBe(after.keys[0]!.kid);
    // Once the old key is dropped, its tokens no longer verify, with a typed error (not counted as a forgery).
    const dropped = SessionKeyring.fromFiles(["/new.pem"], read);
    await expect(dropped.verify(token, opts)).rejects.toBeInstanceOf(UnknownSigningKeyError);
    expect((await dropped.verify(fresh, opts)).sid).toBe("x");
  });

  it("signs with EdDSA for an Ed25519 key (RFC 8037), thumbprints it by §2, and still refuses other algorithms with it", async () => {
    const ed = pem(generateKeyPairSync("ed25519").privateKey);
    const ring = SessionKeyring.fromFiles(["/ed"], () => ed);
    expect(ring.signer.alg).toBe("EdDSA");
    const token = await ring.sign(claims());
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: "EdDSA", kid: ring.signer.kid });
    expect((await ring.verify(token, opts)).sid).toBe("x");
    // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
    const { createPublicKey } = await import("node:crypto");
    const example = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }, format: "jwk" });
    expect(jwkThumbprint(example)).toBe("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  });

  it("uses RS256 for RSA keys and refuses weak or unsupported keys", () => {
    const rsa = pem(generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey);
    expect(SessionKeyring.fromFiles(["/r"], () => rsa).signer.alg).toBe("RS256");
    const weak = pem(generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey);
    expect(() => SessionKeyring.fromFiles(["/w"], () => weak)).toThrow(/signingKeys\[0\].*RSA/);
    const ed448 = pem(generateKeyPairSync("ed448").privateKey);
    expect(() => SessionKeyring.fromFiles(["/e"], () => ed448)).toThrow(/P-256, Ed25519 or RSA/);
    expect(() => SessionKeyring.fromFiles(["/x"], () => "not a key")).toThrow(/not a PEM private key/);
    expect(() => SessionKeyring.fromFiles(["/missing"], () => { throw new Error("ENOENT"); })).toThrow(/cannot read \/missing/);
  });

  it("refuses alg none, HS256 with the public key, wrong issuer or audience", async () => {
    const ring = SessionKeyring.generate();
    const kid = ring.signer.kid;
    const pub = ring.signer.publicKey.export({ type: "spki", format: "pem" }) as string;
    const none = [Buffer.from(JSON.stringify({ alg: "none", kid })).toString("base64url"), Buffer.from(JSON.stringify(claims())).toString("base64url"), ""].join(".");
    await expect(ring.verify(none, opts)).rejects.toBeInstanceOf(BadInputError);
    const hs = await new SignJWT(claims()).setProtectedHeader({ alg: "HS256", kid }).sign(Buffer.from(pub));
    await expect(ring.verify(hs, opts)).rejects.toThrow(/algorithm refused/);
    await expect(ring.verify(await ring.sign({ ...claims(), iss: "https://evil" }), opts)).rejects.toThrow(/issuer/);
    await expect(ring.verify(await ring.sign({ ...claims(), aud: "other" }), opts)).rejects.toThrow(/audience/);
    await expect(ring.verify("garbage", opts)).rejects.toThrow(/malformed/);
    expect(ring.signedByCurrent("garbage")).toBe(false);
  });
});
