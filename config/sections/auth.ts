/**
 * Sign-in configuration (OpenID Connect, sessions, bearer tokens, rights). Owned by the auth feature.
 *
 * Security settings fail closed: no rights rule means no access (default deny); bearer tokens are
 * refused unless an audience is configured; only asymmetric JWS algorithms can be allowed; the
 * development provider refuses to run unless the gateway listens on a loopback address
 * (checked when the auth module starts, since it needs `server.host`).
 */
import { z } from "zod";

/** What a user may do with a camera. `admin` on a camera implies every other action on it. */
export const AUTH_ACTIONS = ["live", "playback", "talk", "answer_intercom", "admin"] as const;
export type AuthAction = (typeof AUTH_ACTIONS)[number];

/**
 * JWS algorithms a token may be signed with. Only asymmetric ones: `none` and HMAC (`HS*`) can never
 * be allowed, so a token "signed" with a public key as an HMAC secret is always refused. `EdDSA`
 * is Ed25519 (RFC 8037).
 */
export const ASYMMETRIC_JWS_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

/** A dotted claim path, e.g. `groups`, `realm_access.roles`, `resource_access.gatehouse.roles`. */
const claimPath = z
  .string()
  .regex(/^[A-Za-z0-9_:$@/-]+(\.[A-Za-z0-9_:$@/-]+)*$/, "a claim name or dotted path like realm_access.roles");

export const rightRule = z
  .strictObject({
    /** Claim value (group or role name found under `rolesClaim`) this rule applies to. */
    role: z.string().min(1).optional(),
    /** Or: the one user (`sub` claim) this rule applies to. */
    subject: z.string().min(1).optional(),
    /** Camera ids this rule grants on; `"*"` means every camera. Default none. */
    cameras: z.array(z.string().min(1)).default([]),
    /** Camera groups (`cameras[].groups`) this rule grants on. Default none. */
    cameraGroups: z.array(z.string().min(1)).default([]),
    /** Actions granted on those cameras. */
    actions: z.array(z.enum(AUTH_ACTIONS)).min(1),
  })
  .superRefine((r, ctx) => {
    if ((r.role === undefined) === (r.subject === undefined))
      ctx.addIssue({ code: "custom", message: "name exactly one of role or subject", path: ["role"] });
    if (r.cameras.length === 0 && r.cameraGroups.length === 0)
      ctx.addIssue({ code: "custom", message: "grants nothing: name cameras (or \"*\") or cameraGroups", path: ["cameras"] });
  });
export type RightRule = z.infer<typeof rightRule>;

const seconds = (min: number, max: number, def: number) => z.number().int().min(min).max(max).default(def);

export const authSection = z
  .strictObject({
    /**
     * `dev`: the in-process development identity provider with two demo users (loopback only).
     * `oidc`: the organisation's provider named by `issuer`.
     * `none`: no sign-in, everyone is an administrator — for tests of other features only; refused
     * unless the gateway listens on loopback. Default `dev`.
     */
    mode: z.enum(["dev", "oidc", "none"]).default("dev"),
    /** Issuer identifier of the OpenID provider (discovery at `<issuer>/.well-known/openid-configuration`). Required for `oidc`. */
    issuer: z.string().url().optional(),
    /** PEM file with extra CA certificates trusted for the issuer (a private CA), in addition to the system roots. */
    issuerCaFile: z.string().min(1).optional(),
    /** Accept an `http://` issuer. Default false; a loud warning when true. Never for production. */
    allowInsecureIssuer: z.boolean().default(false),
    /** OAuth client id registered at the provider. Default `gatehouse`. */
    clientId: z.string().min(1).default("gatehouse"),
    /** Client secret; write `${OIDC_CLIENT_SECRET}` to take it from the environment. Absent: public client (PKCE only). */
    clientSecret: z.string().min(1).optional(),
    /** How the client authenticates at the token endpoint. Default `client_secret_basic` (`none` when no secret). */
    clientAuthMethod: z.enum(["client_secret_basic", "client_secret_post", "none"]).optional(),
    /** Scopes requested at sign-in. Default `openid profile email`; add `offline_access` if the provider needs it for refresh tokens. */
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, "a scope token")).min(1).default(["openid", "profile", "email"]),
    /** Redirect URI registered at the provider. Default `<publicUrl>/auth/callback`. */
    redirectUrl: z.string().url().optional(),
    /** Where the provider sends the browser after sign-out (register it there). Default `<publicUrl>/auth/signed-out`. */
    postLogoutRedirectUrl: z.string().url().optional(),
    /** Claim path(s) holding the user's groups or roles, e.g. `groups` or `realm_access.roles`. Default `groups`. */
    rolesClaim: z.union([claimPath, z.array(claimPath).min(1)]).default("groups"),
    /**
     * Where roles are read at sign-in: the ID token, the UserInfo response, and/or the provider's JWT
     * access token (received directly from the token endpoint). Default `["id_token"]`.
     */
    claimSources: z.array(z.enum(["id_token", "userinfo", "access_token"])).min(1).default(["id_token"]),
    /**
     * Rights: claim value (or subject) → actions on cameras or camera groups. Default deny: a user no rule
     * matches sees nothing. Reloadable without restart. In `dev` mode an empty list means the demo mapping
     * (`gatehouse-viewer` → camera `demo` live; `gatehouse-admin` → everything).
     */
    rights: z.array(rightRule).default([]),
    session: z
      .strictObject({
        /** Lifetime of the gateway's signed session token, seconds; it is refreshed (via the provider's refresh token) before it ends. Default 600. */
        ttlSeconds: seconds(30, 3600, 600),
        /** Absolute session lifetime, seconds, after which the user signs in again whatever the refreshes. Default 43200 (12 h). */
        maxAgeSeconds: seconds(60, 30 * 86400, 43200),
        /**
         * PEM files with the private keys (EC P-256 → ES256, Ed25519 → EdDSA, RSA ≥ 2048 bits → RS256) that sign session tokens.
         * The FIRST signs; all verify. Rotation: put the new key first and reload (cookies are re-signed on their
         * next request); drop the old key after `maxAgeSeconds` and nobody has been logged out.
         * Empty (default): one key generated in memory at start, so sessions end when the gateway restarts.
         */
        signingKeys: z.array(z.string().min(1)).default([]),
        /**
         * Keep sessions across restarts in this file (JSON, mode 0600: it holds the provider's refresh tokens,
         * and the signing key when none is configured). Default: none, sessions live in memory.
         */
        file: z.string().min(1).optional(),
        /** Sign-in attempts (authorization requests in flight) kept at most; the oldest are dropped. Default 10000. */
        maxPendingLogins: z.number().int().min(100).max(1_000_000).default(10000),
        /** Time allowed to complete sign-in at the provider, seconds. Default 600. */
        loginTimeoutSeconds: seconds(30, 3600, 600),
      })
      .prefault({}),
    bearer: z
      .strictObject({
        /** Accepted `aud` value(s) of provider access tokens. Unset: bearer tokens are refused (dev mode: the dev provider's API audience). */
        audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
        /** Explicit allow-list of JWS algorithms. Default RS256, PS256, ES256. */
        algorithms: z.array(z.enum(ASYMMETRIC_JWS_ALGS)).min(1).default(["RS256", "PS256", "ES256"]),
        /** Clock skew tolerated on exp/nbf/iat, seconds. Default 30. */
        clockToleranceSeconds: seconds(0, 300, 30),
        /** How long fetched provider keys (JWKS) are trusted before a refetch, seconds. Default 600. */
        jwksCacheSeconds: seconds(10, 86400, 600),
        /** Minimum interval between JWKS refetches caused by an unknown `kid`, seconds. Default 30. */
        jwksMinRefetchSeconds: seconds(1, 3600, 30),
      })
      .prefault({}),
    cookie: z
      .strictObject({
        /** Session cookie name. With `Secure` the `__Host-` prefix is added. Default `gatehouse_session`. */
        name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).default("gatehouse_session"),
        /** SameSite attribute. `lax` (default) is needed for the provider's redirect back; `strict` breaks deep links from other sites. */
        sameSite: z.enum(["lax", "strict"]).default("lax"),
        /** `auto` (default): Secure when the public URL is https. `true` forces it. There is no way to turn it off on TLS. */
        secure: z.union([z.literal("auto"), z.literal(true)]).default("auto"),
      })
      .prefault({}),
    rateLimit: z
      .strictObject({
        /** Window over which failures are counted, seconds. Default 300. */
        windowSeconds: seconds(10, 86400, 300),
        /** Failed sign-ins / invalid tokens per source IP per window before 429. Default 20. */
        maxFailuresPerSource: z.number().int().min(1).max(100000).default(20),
        /** Failed sign-ins per account per window before 429 (dev provider's password check). Default 5. */
        maxFailuresPerAccount: z.number().int().min(1).max(100000).default(5),
        /** Sign-in starts (`/auth/login`) per source IP per window. Default 60. */
        maxLoginsPerSource: z.number().int().min(1).max(100000).default(60),
      })
      .prefault({}),
    dev: z
      .strictObject({
        /** Port of the development provider on 127.0.0.1. Default 0 (any free port). */
        port: z.number().int().min(0).max(65535).default(0),
      })
      .prefault({}),
  })
  .superRefine((a, ctx) => {
    if (a.mode === "oidc" && !a.issuer) ctx.addIssue({ code: "custom", message: "required when mode is oidc", path: ["issuer"] });
    if (a.issuer && !a.issuer.startsWith("https://") && !a.allowInsecureIssuer)
      ctx.addIssue({ code: "custom", message: "must be https:// (or set allowInsecureIssuer, never in production)", path: ["issuer"] });
    const method = a.clientAuthMethod;
    if (method && method !== "none" && !a.clientSecret)
      ctx.addIssue({ code: "custom", message: `${method} needs clientSecret`, path: ["clientSecret"] });
    if (a.mode === "oidc" && !a.scopes.includes("openid"))
      ctx.addIssue({ code: "custom", message: "must include openid", path: ["scopes"] });
  })
  .prefault({});

export type AuthConfig = z.infer<typeof authSection>;
