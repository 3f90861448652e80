/**
 * What sign-in tells the rest of the gateway as it happens, for those who act on it (the TURN relay
 * closes the allocations of an ended session) and those who record it (an audit log). Typed events
 * through `SafeEmitter`: a listener that throws is logged and never reaches sign-in itself.
 *
 * ```ts
 * auth.observer.on("sessionEnded", (e) => relay.closeSession(e.ref, e.reason));
 * auth.observer.on("signedIn", (e) => audit.write("sign-in", e.sub, e.source));
 * ```
 */
import type { SessionId, UserId } from "../../config/ids.ts";
import type { EndReason } from "./types.ts";

/** A browser completed sign-in: a new gateway session exists. */
export interface SignedInEvent {
  readonly sessionId: SessionId;
  /** The session's non-secret reference (`sessionRef`), as administrators and logs name it. */
  readonly ref: string;
  readonly sub: UserId;
  readonly name: string | undefined;
  readonly roles: readonly string[];
  /** The client's address. */
  readonly source: string;
  /** Milliseconds since the epoch. */
  readonly at: number;
}

/** Why a sign-in attempt did not produce a session. */
export type SignInFailure =
  /** The source is over `auth.rateLimit` (attempts or failures). */
  | "rate_limited"
  /** The callback named no sign-in this gateway started, or one already used or too old. */
  | "unknown_attempt"
  /** The provider's answer did not validate (state, nonce, code, ID token), or it refused. */
  | "rejected"
  /** The provider could not be reached. */
  | "provider_unavailable";

export interface SignInFailedEvent {
  readonly reason: SignInFailure;
  readonly source: string;
  readonly at: number;
}

/**
 * A session ended, for whatever reason (`reason`; `logout` is a sign-out). Fired exactly once per
 * session, after it stopped being usable. A session that merely lapses while its refresh is
 * pending is not ended (its watchers are told `expired`, the session may still revive).
 */
export interface SessionEndedEvent {
  readonly sessionId: SessionId;
  readonly ref: string;
  readonly sub: UserId;
  readonly reason: EndReason;
  readonly at: number;
}

export type AuthEvents = {
  signedIn: [SignedInEvent];
  signInFailed: [SignInFailedEvent];
  sessionEnded: [SessionEndedEvent];
};

/** The listening half of the auth events. Each `on`/`once` returns its unsubscribe function. */
export interface AuthObserver {
  on<K extends keyof AuthEvents>(event: K, fn: (...args: AuthEvents[K]) => void): () => void;
  once<K extends keyof AuthEvents>(event: K, fn: (...args: AuthEvents[K]) => void): () => void;
  off<K extends keyof AuthEvents>(event: K, fn: (...args: AuthEvents[K]) => void): void;
}
