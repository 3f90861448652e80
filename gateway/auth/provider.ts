/**
 * The identity provider side of sign-in, set up once at start: the development provider (mode
 * `dev`), the relying party (openid-client, discovery done eagerly but not fatally), the provider's
 * JWKS cache, and the validators of its bearer access tokens and back-channel logout tokens.
 * Nothing here knows about HTTP routes or sessions.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { BadInputError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { AuthConfig } from "../../config/sections/auth.ts";
import { LogoutTokenValidator } from "./backchannel.ts";
import { BearerValidator, JwksCache } from "./bearer.ts";
import { isLoopbackHost, startDevIdp } from "./dev-idp.ts";
import { providerFetch, type FetchLike } from "./fetch.ts";
import { RelyingParty } from "./relying-party.ts";
import type { DevUser } from "./types.ts";

export interface ProviderOptions {
  config: AuthConfig;
  /** The gateway's public base URL without a trailing slash. */
  base: string;
  /** Address the gateway's listener binds; `dev` and `none` refuse non-loopback addresses. */
  listenHost: string;
  clock: () => number;
  log: Logger;
  /** How to reach the provider. Default: node:https with `issuerCaFile` trusted. */
  fetch?: FetchLike | undefined;
}

export interface Provider {
  /** The issuer in use (dev: the development provider's URL); undefined in mode `none`. */
  readonly issuer: string | undefined;
  /** Undefined in mode `none`. */
  readonly rp: RelyingParty | undefined;
  /** Undefined when no bearer audience is configured (bearer tokens are then refused). */
  readonly bearer: BearerValidator | undefined;
  /** Undefined in mode `none`. */
  readonly logoutTokens: LogoutTokenValidator | undefined;
  /** The development provider's accounts (mode `dev` only). */
  readonly devUsers: readonly DevUser[] | undefined;
  /** Stops the development provider and the provider connections. Idempotent. */
  close(): Promise<void>;
}

export async function setUpProvider(o: ProviderOptions): Promise<Provider> {
  const cfg = o.config;
  const { log, clock } = o;
  const publicUrl = new URL(o.base);
  const tls = publicUrl.protocol === "https:";
  if (cfg.mode === "dev" || cfg.mode === "none") {
    // The development provider (and no sign-in at all) never serve a network.
    if (!isLoopbackHost(o.listenHost) || !isLoopbackHost(publicUrl.hostname))
      throw new BadInputError(
        `auth.mode ${cfg.mode} only runs on a loopback address (server.host is ${o.listenHost}, public URL ${publicUrl.origin}); ` +
          "configure auth.mode: oidc with your organisation's issuer",
      );
  }

  const cleanups: Array<() => void | Promise<void>> = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch (err) {
          log.warn("error while closing the identity provider connection", { err });
        }
      }
    })());

  let issuer: string | undefined = cfg.issuer;
  let rp: RelyingParty | undefined;
  let bearer: BearerValidator | undefined;
  let logoutTokens: LogoutTokenValidator | undefined;
  let devUsers: DevUser[] | undefined;
  try {
    const redirectUri = cfg.redirectUrl ?? `${o.base}/auth/callback`;
    const postLogoutRedirectUri = cfg.postLogoutRedirectUrl ?? `${o.base}/auth/signed-out`;
    const windowMs = cfg.rateLimit.windowSeconds * 1000;
    let clientSecret = cfg.clientSecret;
    let audience = cfg.bearer.audience;
    let allowInsecure = cfg.allowInsecureIssuer;
    if (cfg.mode === "dev") {
      clientSecret = randomBytes(24).toString("base64url");
      audience ??= `${o.base}/api`;
      const idp = await startDevIdp({
        redirectUri,
        postLogoutRedirectUri,
        // Over TLS the development provider cannot check the gateway's (often self-signed) certificate: no back-channel logout then.
        ...(tls ? {} : { backchannelLogoutUri: `${o.base}/auth/backchannel-logout` }),
        clientId: cfg.clientId,
        clientSecret,
        apiAudience: typeof audience === "string" ? audience : audience[0]!,
        port: cfg.dev.port,
        log: log.child({ component: "dev-idp" }),
        rateLimit: { windowMs, maxPerSource: cfg.rateLimit.maxFailuresPerSource, maxPerAccount: cfg.rateLimit.maxFailuresPerAccount },
        clock,
      });
      cleanups.push(() => idp.close());
      issuer = idp.issuer;
      allowInsecure = true; // plain HTTP on loopback only (checked above and by the provider itself)
      devUsers = idp.users.map((u) => ({ username: u.username, password: u.password, description: u.description ?? "" }));
      log.warn("DEVELOPMENT identity provider running; never use auth.mode dev in production", { issuer });
    } else if (cfg.mode === "oidc" && allowInsecure && issuer?.startsWith("http:")) {
      log.warn("INSECURE: the identity provider is reached over plain HTTP (auth.allowInsecureIssuer)", { issuer });
    }

    if (cfg.mode !== "none" && issuer) {
      let fetchImpl = o.fetch;
      if (!fetchImpl) {
        const own = providerFetch({ ca: cfg.issuerCaFile ? readFileSync(cfg.issuerCaFile, "utf8") : undefined });
        cleanups.push(() => own.close());
        fetchImpl = own;
      }
      const party = new RelyingParty({
        issuer,
        clientId: cfg.clientId,
        clientSecret,
        clientAuthMethod: cfg.clientAuthMethod ?? (clientSecret ? "client_secret_basic" : "none"),
        scopes: cfg.scopes,
        redirectUri,
        postLogoutRedirectUri,
        fetch: fetchImpl,
        allowInsecure,
        clock,
        log: log.child({ component: "oidc" }),
      });
      rp = party;
      // Discover now so the first sign-in is fast; a provider that is down is not fatal.
      await party.configuration().catch(() => undefined);
      const jwks = new JwksCache({
        jwksUri: () => party.jwksUri(),
        fetch: fetchImpl,
        clock,
        cacheMs: cfg.bearer.jwksCacheSeconds * 1000,
        minRefetchMs: cfg.bearer.jwksMinRefetchSeconds * 1000,
        log: log.child({ component: "jwks" }),
      });
      const common = { issuer, algorithms: cfg.bearer.algorithms, clockToleranceSeconds: cfg.bearer.clockToleranceSeconds, jwks, clock };
      logoutTokens = new LogoutTokenValidator({ ...common, clientId: cfg.clientId });
      if (audience) bearer = new BearerValidator({ ...common, audience: typeof audience === "string" ? audience : [...audience] });
    }
    if (cfg.mode === "none") log.warn("INSECURE: auth.mode none — no sign-in, every caller is an administrator (loopback only)");
  } catch (err) {
    await close();
    throw err;
  }
  return { issuer, rp, bearer, logoutTokens, devUsers, close };
}
