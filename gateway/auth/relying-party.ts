/**
 * The gateway as an OpenID Connect relying party (openid-client 6): discovery, authorization code
 * flow with PKCE (S256) + state + nonce, refresh, RP-initiated logout, token revocation.
 *
 * Discovery is lazy and retried: the gateway starts even while the provider is down (sessions it
 * cannot create yet are the only loss), and a failed discovery is not retried more than once per
 * `retryMs`. Every provider failure is classified once, here: `UpstreamError` (unreachable, 5xx —
 * "try later") versus `AuthError` (the provider said no: bad code, replayed code, mismatched state
 * or nonce, revoked refresh token).
 */
import * as oidc from "openid-client";
import { AuthError, UpstreamError, isGatehouseError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { FetchLike } from "./fetch.ts";

export interface RelyingPartyOptions {
  issuer: string;
  clientId: string;
  clientSecret?: string | undefined;
  clientAuthMethod: "client_secret_basic" | "client_secret_post" | "none";
  scopes: readonly string[];
  redirectUri: string;
  postLogoutRedirectUri: string;
  fetch: FetchLike;
  /** Allow an http:// issuer (development provider, or an explicit insecure opt-in). */
  allowInsecure: boolean;
  /** Milliseconds between discovery attempts while the provider is down. Default 5000. */
  retryMs?: number;
  /** Milliseconds since the epoch. */
  clock: () => number;
  log: Logger;
}

/** What the gateway keeps between /auth/login and /auth/callback (server-side). */
export interface LoginTransaction {
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface TokenSet {
  idToken: string | undefined;
  accessToken: string;
  refreshToken: string | undefined;
  /** Claims of the (validated) ID token, when one came back. */
  idClaims: Record<string, unknown> | undefined;
}

export class RelyingParty {
  private readonly opts: RelyingPartyOptions;
  private config: oidc.Configuration | undefined;
  private discovering: Promise<oidc.Configuration> | undefined;
  private lastAttempt = -Infinity;
  private lastError: unknown;
  private lastContact = -Infinity;

  constructor(opts: RelyingPartyOptions) {
    this.opts = opts;
  }

  /** The discovered configuration; throws UpstreamError while the provider cannot be reached. */
  async configuration(): Promise<oidc.Configuration> {
    if (this.config) return this.config;
    if (this.discovering) return this.discovering;
    if (this.opts.clock() - this.lastAttempt < (this.opts.retryMs ?? 5000))
      throw new UpstreamError("identity provider unreachable", { cause: this.lastError });
    this.lastAttempt = this.opts.clock();
    this.discovering = this.discover().finally(() => (this.discovering = undefined));
    return this.discovering;
  }

  private async discover(): Promise<oidc.Configuration> {
    const o = this.opts;
    const auth =
      o.clientAuthMethod === "none"
        ? oidc.None()
        : o.clientAuthMethod === "client_secret_post"
          ? oidc.ClientSecretPost(o.clientSecret)
          : oidc.ClientSecretBasic(o.clientSecret);
    try {
      const config = await oidc.discovery(
        new URL(o.issuer),
        o.clientId,
        o.clientSecret ? { client_secret: o.clientSecret } : {},
        auth,
        {
          [oidc.customFetch]: o.fetch as oidc.CustomFetch,
          timeout: 10,
          ...(o.allowInsecure ? { execute: [oidc.allowInsecureRequests] } : {}),
        },
      );
      this.config = config;
      this.lastContact = this.opts.clock();
      this.opts.log.info("identity provider discovered", { issuer: o.issuer });
      return config;
    } catch (err) {
      this.lastError = err;
      this.opts.log.warn("identity provider discovery failed", { issuer: o.issuer, err });
      throw classify(err, "discovery");
    }
  }

  /** The provider's JWKS URI (for bearer validation). */
  async jwksUri(): Promise<string> {
    const uri = (await this.configuration()).serverMetadata().jwks_uri;
    if (!uri) throw new UpstreamError("provider publishes no jwks_uri");
    return uri;
  }

  /**
   * Is the provider answering? Checked (at most every 30 s) before sending a browser there, so a
   * provider that went down after discovery gives the user our clear error page, not a dead tab.
   */
  async ensureReachable(): Promise<void> {
    if (this.opts.clock() - this.lastContact < 30_000) return;
    const url = `${this.opts.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    try {
      const res = await this.opts.fetch(url, { signal: AbortSignal.timeout(3000) });
      await res.arrayBuffer();
      if (res.status >= 500) throw new UpstreamError(`discovery answered ${res.status}`);
      this.lastContact = this.opts.clock();
    } catch (err) {
      throw classify(err, "reachability");
    }
  }

  /** Start a sign-in: fresh state, nonce and PKCE verifier, and the provider URL to send the browser to. */
  async begin(extra: Record<string, string> = {}): Promise<{ url: string; tx: LoginTransaction }> {
    const config = await this.configuration();
    await this.ensureReachable();
    const tx: LoginTransaction = { state: oidc.randomState(), nonce: oidc.randomNonce(), codeVerifier: oidc.randomPKCECodeVerifier() };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.opts.redirectUri,
      scope: this.opts.scopes.join(" "),
      response_type: "code",
      code_challenge: await oidc.calculatePKCECodeChallenge(tx.codeVerifier),
      code_challenge_method: "S256",
      state: tx.state,
      nonce: tx.nonce,
      ...extra,
    });
    return { url: url.href, tx };
  }

  /**
   * Finish a sign-in from the callback's query string: checks state (RFC 6749 §10.12), the `iss`
   * response parameter (RFC 9207), exchanges the code with the PKCE verifier (RFC 7636), and
   * validates the ID token including its nonce (OIDC Core §3.1.3.7).
   */
  async complete(callbackQuery: string, tx: LoginTransaction): Promise<TokenSet> {
    const config = await this.configuration();
    const current = new URL(this.opts.redirectUri);
    current.search = callbackQuery;
    try {
      const res = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: tx.codeVerifier,
        expectedState: tx.state,
        expectedNonce: tx.nonce,
        idTokenExpected: true,
      });
      return toTokenSet(res);
    } catch (err) {
      throw classify(err, "sign-in");
    }
  }

  /** Refresh grant (RFC 6749 §6). The new refresh token, when rotated, replaces the old one. */
  async refresh(refreshToken: string): Promise<TokenSet> {
    const config = await this.configuration();
    try {
      const res = await oidc.refreshTokenGrant(config, refreshToken);
      return toTokenSet(res);
    } catch (err) {
      throw classify(err, "refresh");
    }
  }

  /** UserInfo (OIDC Core §5.3) for `sub`, used when roles are configured to come from there. */
  async userinfo(accessToken: string, sub: string): Promise<Record<string, unknown>> {
    const config = await this.configuration();
    try {
      return await oidc.fetchUserInfo(config, accessToken, sub);
    } catch (err) {
      throw classify(err, "userinfo");
    }
  }

  /** RP-initiated logout URL (OpenID RP-Initiated Logout 1.0 §2), or undefined when the provider has none. */
  async endSessionUrl(idToken: string | undefined): Promise<string | undefined> {
    let config: oidc.Configuration;
    try {
      config = await this.configuration();
    } catch {
      return undefined; // provider down: the local session is gone anyway.
    }
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, {
      post_logout_redirect_uri: this.opts.postLogoutRedirectUri,
      ...(idToken ? { id_token_hint: idToken } : {}),
    }).href;
  }

  /** Revoke a refresh token at the provider (RFC 7009), best effort. */
  async revoke(refreshToken: string): Promise<void> {
    try {
      const config = await this.configuration();
      if (!config.serverMetadata().revocation_endpoint) return;
      await oidc.tokenRevocation(config, refreshToken, { token_type_hint: "refresh_token" });
    } catch (err) {
      this.opts.log.debug("token revocation failed", { err });
    }
  }
}

function toTokenSet(res: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): TokenSet {
  const claims = res.claims();
  return {
    idToken: res.id_token,
    accessToken: res.access_token,
    refreshToken: res.refresh_token,
    idClaims: claims ? { ...claims } : undefined,
  };
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EPIPE"]);

/** The one place provider failures become Gatehouse errors. */
export function classify(err: unknown, what: string): AuthError | UpstreamError {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (isGatehouseError(e) && (e.code === "UPSTREAM" || e.code === "CLOSED")) return new UpstreamError(`${what}: identity provider unreachable`, { cause: err });
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (NETWORK_CODES.has(code) || code.startsWith("UND_ERR"))) return new UpstreamError(`${what}: identity provider unreachable`, { cause: err });
    if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) return new UpstreamError(`${what}: identity provider timed out`, { cause: err });
    const status = (e as { status?: unknown }).status;
    if (typeof status === "number" && status >= 500) return new UpstreamError(`${what}: identity provider failed (${status})`, { cause: err });
    if (e instanceof Response && e.status >= 500) return new UpstreamError(`${what}: identity provider failed (${e.status})`, { cause: err });
  }
  return new AuthError("UNAUTHORIZED", `${what} rejected`, { cause: err });
}
