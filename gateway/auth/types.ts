/**
 * What the rest of the gateway sees of sign-in: the authenticated caller, why a watched stream must
 * end, and a session as administrators see it. No implementation here (the contract imports nothing
 * from the modules that implement it).
 */
import type { SessionId, UserId } from "../../config/ids.ts";

/** Why a session ended. `logout`: the user signed out; `expired`: lapsed without a refresh;
 *  `max_age`: `auth.session.maxAgeSeconds` reached; `revoked`: an administrator ended it;
 *  `revoked_at_provider`: the provider refused its refresh token; `logged_out_at_provider`:
 *  back-channel logout; `evicted`: beyond the session bound; `closed`: the gateway is shutting down. */
export type EndReason = "logout" | "expired" | "max_age" | "revoked" | "revoked_at_provider" | "logged_out_at_provider" | "evicted" | "closed";

/** Why a `watch` callback fired: the session ended/lapsed, the bearer token expired, or a right was withdrawn. */
export type WatchReason = EndReason | "forbidden";

/** The authenticated caller, on `req.user` after `requireUser`. */
export interface User {
  /** The provider's subject: stable user id (also the TURN credential's user). */
  readonly sub: UserId;
  readonly name: string | undefined;
  /** Group/role values read from the configured claim path(s). */
  readonly roles: readonly string[];
  /** How the request authenticated. */
  readonly via: "session" | "bearer" | "none";
  /** The gateway session (cookie callers only). */
  readonly sessionId: SessionId | undefined;
  /** When this authentication stops being valid unless refreshed, milliseconds since the epoch. */
  readonly expiresAt: number;
}

/** A session as administrators see it. */
export interface SessionView {
  /** Names the session in admin requests and events; derived from its id, never usable as a credential. */
  readonly ref: string;
  readonly sub: string;
  readonly name: string | undefined;
  readonly roles: readonly string[];
  /** ISO 8601. */
  readonly createdAt: string;
  /** Usable until (ISO 8601) before its next refresh. */
  readonly expiresAt: string;
  /** When it really ends (ISO 8601): its maximum age when the provider renews it, else `expiresAt`. */
  readonly endsAt: string;
  /** Renewed with the provider's refresh token until `endsAt`. */
  readonly renews: boolean;
  /** False while lapsed and waiting for a refresh. */
  readonly live: boolean;
  /** "Chrome 156 on Linux", from the User-Agent it signed in with. */
  readonly device: string;
  /** Address of its latest request. */
  readonly address: string | undefined;
  /** Its latest request (ISO 8601). */
  readonly lastSeenAt: string;
  /** The session of the browser asking. */
  readonly current: boolean;
}

export interface DevUser {
  username: string;
  password: string;
  description: string;
}

declare module "express-serve-static-core" {
  interface Request {
    /** Set by `auth.requireUser`. */
    user?: User;
  }
}
