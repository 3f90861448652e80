/**
 * OpenID Connect Back-Channel Logout 1.0: the provider tells the gateway, server to server,
 * that a user's session there has ended (signed out at the provider or in another
 * application, account disabled by an administrator), and the gateway ends that user's
 * sessions at once, streams and TURN allocations with them, instead of letting them run
 * until their next refresh.
 *
 * The logout token is a JWT the provider signs (§2.4), validated as §2.6 asks: signature,
 * `iss`, `aud` = our client id, `iat` recent, the back-channel logout event, `sub` and/or
 * `sid`, no `nonce` (so an ID token cannot be replayed as a logout token), and a `jti` not
 * seen before.
 */
import { BadInputError, AuthError } from "../../config/errors.ts";
import { verifyProviderJwt, type ProviderJwtOptions } from "./bearer.ts";

export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";

/** Whose sessions end: the provider's session `sid`, or every session of `sub` (at least one is set). */
export interface LogoutRequest {
  sub: string | undefined;
  sid: string | undefined;
}

export interface LogoutTokenOptions extends Omit<ProviderJwtOptions, "audience"> {
  /** Our client id: the token's audience. */
  clientId: string;
  /** Oldest `iat` accepted, seconds ago (beyond the clock tolerance). Default 300. */
  maxAgeSeconds?: number;
  /** Token ids remembered against replay. Default 10000. */
  maxRemembered?: number;
}

export class LogoutTokenValidator {
  private readonly opts: LogoutTokenOptions;
  /** jti → when it may be forgotten (ms): by then its `iat` is too old to be accepted anyway. */
  private readonly seen = new Map<string, number>();

  constructor(opts: LogoutTokenOptions) {
    this.opts = opts;
  }

  /** Validates a logout token. Throws `AuthError("UNAUTHORIZED")` with the reason as cause. */
  async validate(token: string): Promise<LogoutRequest> {
    try {
      return await this.check(token);
    } catch (cause) {
      throw new AuthError("UNAUTHORIZED", "invalid logout token", { cause });
    }
  }

  private async check(token: string): Promise<LogoutRequest> {
    const o = this.opts;
    const claims = await verifyProviderJwt(token, { ...o, audience: o.clientId });
    const now = o.clock() / 1000;
    const maxAge = o.maxAgeSeconds ?? 300;
    if (typeof claims.iat !== "number") throw new BadInputError("logout token has no iat");
    if (claims.iat > now + o.clockToleranceSeconds) throw new BadInputError("logout token issued in the future");
    if (claims.iat < now - maxAge - o.clockToleranceSeconds) throw new BadInputError("logout token too old");
    const events = (claims as { events?: unknown }).events;
    const event = events !== null && typeof events === "object" ? (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT] : undefined;
    if (event === null || typeof event !== "object" || Array.isArray(event)) throw new BadInputError("not a back-channel logout event");
    if ((claims as { nonce?: unknown }).nonce !== undefined) throw new BadInputError("logout token carries a nonce");
    const sub = typeof claims.sub === "string" && claims.sub.length > 0 ? claims.sub : undefined;
    const sidClaim = (claims as { sid?: unknown }).sid;
    const sid = typeof sidClaim === "string" && sidClaim.length > 0 ? sidClaim : undefined;
    if (!sub && !sid) throw new BadInputError("logout token names neither sub nor sid");
    if (typeof claims.jti !== "string" || claims.jti.length === 0) throw new BadInputError("logout token has no jti");
    this.remember(claims.jti, (claims.iat + maxAge + 2 * o.clockToleranceSeconds) * 1000);
    return { sub, sid };
  }

  /** Refuses a jti seen before; forgets the expired ones (and the oldest past the bound). */
  private remember(jti: string, until: number): void {
    const now = this.opts.clock();
    for (const [k, t] of this.seen) {
      if (t > now) break; // insertion order is roughly expiry order
      this.seen.delete(k);
    }
    if (this.seen.has(jti)) throw new BadInputError("logout token replayed");
    this.seen.set(jti, until);
    if (this.seen.size > (this.opts.maxRemembered ?? 10_000)) this.seen.delete(this.seen.keys().next().value!);
  }
}
