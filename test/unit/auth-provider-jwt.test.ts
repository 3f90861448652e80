/**
 * Provider JWTs checked with jose against a JWKS the test serves through an injected fetch: the
 * algorithm allow-list, the key type each algorithm needs, and EdDSA (Ed25519, RFC 8037).
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { AuthError } from "../../config/errors.ts";
import { silentLogger } from "../../config/log.ts";
import { BearerValidator, JwksCache, type Alg } from "../../gateway/auth/bearer.ts";
import type { FetchLike } from "../../gateway/auth/fetch.ts";

const ISSUER = "https://idp.example";
const AUDIENCE = "https://gw.example/api";
const now = 1_800_000_000_000;

function setup(keys: Array<{ kid: string; key: KeyObject }>, algorithms: Alg[]) {
  const jwks = { keys: keys.map((k) => ({ ...k.key.export({ format: "jwk" }), kid: k.kid, use: "sig" })) };
  const fetch = (async () => new Response(JSON.stringify(jwks), { headers: { "content-type": "application/json" } })) as unknown as FetchLike;
  const cache = new JwksCache({ jwksUri: async () => `${ISSUER}/jwks`, fetch, clock: () => now, cacheMs: 60_000, minRefetchMs: 10_000, log: silentLogger });
  return new BearerValidator({ issuer: ISSUER, audience: AUDIENCE, algorithms, clockToleranceSeconds: 30, jwks: cache, clock: () => now });
}

const sign = (alg: string, kid: string, key: KeyObject, over: Record<string, unknown> = {}) =>
  new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: "alice", iat: now / 1000, exp: now / 1000 + 300, ...over }).setProtectedHeader({ alg, kid }).sign(key);

const reasonOf = async (p: Promise<unknown>) => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AuthError);
  return String((err as { cause?: Error }).cause?.message);
};

describe("provider JWTs (jose)", () => {
  it("accepts EdDSA (Ed25519) tokens when the allow-list names EdDSA, and not otherwise", async () => {
    const ed = generateKeyPairSync("ed25519");
    const token = await sign("EdDSA", "ed-1", ed.privateKey);
    const v = await setup([{ kid: "ed-1", key: ed.publicKey }], ["EdDSA", "RS256"]).validate(token);
    expect(v).toMatchObject({ sub: "alice", expiresAt: now + 300_000 });
    expect(await reasonOf(setup([{ kid: "ed-1", key: ed.publicKey }], ["RS256", "ES256"]).validate(token))).toMatch(/algorithm EdDSA not allowed/);
  });

  it("never uses a key of another type for an algorithm (an EC key named by an EdDSA token)", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const ed = generateKeyPairSync("ed25519");
    const forged = await sign("EdDSA", "shared", ed.privateKey);
    expect(await reasonOf(setup([{ kid: "shared", key: ec.publicKey }], ["EdDSA", "ES256"]).validate(forged))).toMatch(/no provider key for kid shared/);
    expect(await reasonOf(setup([{ kid: "shared", key: ed.publicKey }], ["EdDSA"]).validate(await sign("EdDSA", "shared", generateKeyPairSync("ed25519").privateKey)))).toMatch(
      /signature verification failed/,
    );
  });

  it("checks expiry against the injected clock, with the tolerance", async () => {
    const ed = generateKeyPairSync("ed25519");
    const v = setup([{ kid: "k", key: ed.publicKey }], ["EdDSA"]);
    expect(await reasonOf(v.validate(await sign("EdDSA", "k", ed.privateKey, { exp: now / 1000 - 31 })))).toMatch(/"exp" claim timestamp check failed/);
    expect((await v.validate(await sign("EdDSA", "k", ed.privateKey, { exp: now / 1000 - 29 }))).sub).toBe("alice");
  });
});
