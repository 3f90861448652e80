import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../config/load.ts";

const problems = (auth: unknown, env: NodeJS.ProcessEnv = {}): readonly string[] => {
  try {
    parseConfig({ auth }, env);
    return [];
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
};

describe("auth configuration", () => {
  it("defaults fail closed: dev mode, no rights, no bearer audience, asymmetric algorithms only", () => {
    const a = parseConfig({}).auth;
    expect(a.mode).toBe("dev");
    expect(a.rights).toEqual([]);
    expect(a.bearer.audience).toBeUndefined();
    expect(a.bearer.algorithms).toEqual(["RS256", "PS256", "ES256"]);
    expect(a.cookie).toEqual({ name: "gatehouse_session", sameSite: "lax", secure: "auto" });
    expect(a.session.ttlSeconds).toBe(600);
  });

  it("takes the client secret from the environment", () => {
    const a = parseConfig({ auth: { mode: "oidc", issuer: "https://idp.example/realms/x", clientSecret: "${OIDC_CLIENT_SECRET}" } }, { OIDC_CLIENT_SECRET: "s" }).auth;
    expect(a.clientSecret).toBe("s");
    expect(problems({ mode: "oidc", issuer: "https://idp.example", clientSecret: "${OIDC_CLIENT_SECRET}" })).toContain(
      "auth.clientSecret: environment variable OIDC_CLIENT_SECRET is not set",
    );
  });

  it("needs an https issuer in oidc mode", () => {
    expect(problems({ mode: "oidc" })).toContain("auth.issuer: required when mode is oidc");
    expect(problems({ mode: "oidc", issuer: "http://idp.example" }).join()).toMatch(/auth\.issuer: must be https/);
    expect(problems({ mode: "oidc", issuer: "http://idp.example", allowInsecureIssuer: true })).toEqual([]);
  });

  it("can never allow none or HMAC algorithms", () => {
    for (const alg of ["none", "HS256", "HS512", "Ed448"]) expect(problems({ bearer: { algorithms: [alg] } }).join()).toMatch(/auth\.bearer\.algorithms\[0\]/);
    expect(problems({ bearer: { algorithms: ["EdDSA", "ES256"] } })).toEqual([]);
    expect(problems({ bearer: { algorithms: [] } }).join()).toMatch(/auth\.bearer\.algorithms/);
  });

  it("validates rights rules with their path", () => {
    expect(problems({ rights: [{ role: "x", actions: ["live"] }] })).toContain('auth.rights[0].cameras: grants nothing: name cameras (or "*") or cameraGroups');
    expect(problems({ rights: [{ cameras: ["a"], actions: ["live"] }] })).toContain("auth.rights[0].role: name exactly one of role or subject");
    expect(problems({ rights: [{ role: "x", subject: "y", cameras: ["a"], actions: ["live"] }] })).toContain("auth.rights[0].role: name exactly one of role or subject");
    expect(problems({ rights: [{ role: "x", cameras: ["a"], actions: ["fly"] }] }).join()).toMatch(/auth\.rights\[0\]\.actions\[0\]/);
    expect(problems({ rights: [{ role: "x", cameras: ["a"], actions: [] }] }).join()).toMatch(/auth\.rights\[0\]\.actions/);
    expect(problems({ rights: [{ role: "x", cameras: ["a"], actions: ["live"], colour: "red" }] })).toContain("auth.rights[0].colour: unknown key");
  });

  it("accepts claim paths like realm_access.roles and refuses odd ones", () => {
    expect(parseConfig({ auth: { rolesClaim: ["groups", "realm_access.roles", "resource_access.gatehouse.roles"] } }).auth.rolesClaim).toHaveLength(3);
    expect(problems({ rolesClaim: "a..b" }).join()).toMatch(/auth\.rolesClaim/);
    expect(problems({ rolesClaim: ".groups" }).join()).toMatch(/auth\.rolesClaim/);
  });

  it("requires a secret for secret-based client authentication, and openid in the scopes", () => {
    expect(problems({ mode: "oidc", issuer: "https://i.example", clientAuthMethod: "client_secret_post" })).toContain("auth.clientSecret: client_secret_post needs clientSecret");
    expect(problems({ mode: "oidc", issuer: "https://i.example", scopes: ["profile"] })).toContain("auth.scopes: must include openid");
  });

  it("clamps nothing silently: out-of-range lifetimes are errors", () => {
    expect(problems({ session: { ttlSeconds: 5 } }).join()).toMatch(/auth\.session\.ttlSeconds/);
    expect(problems({ bearer: { clockToleranceSeconds: 3600 } }).join()).toMatch(/auth\.bearer\.clockToleranceSeconds/);
    expect(problems({ cookie: { secure: false } }).join()).toMatch(/auth\.cookie\.secure/);
  });
});
