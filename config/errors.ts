/**
 * The error categories every room uses. Each has a stable `code` to branch on
 * (never the message) and an optional `cause`. Protocol adapters map them to
 * HTTP, RTSP, SIP and STUN status codes in one place each.
 */

export type ErrorCode =
  | "BAD_INPUT" // malformed packet, SDP, config value, request body
  | "WRONG_STATE" // operation not valid now (closed object, session not playing)
  | "UNAUTHORIZED" // not signed in, bad credentials
  | "FORBIDDEN" // signed in, not allowed
  | "NOT_FOUND" // unknown camera, session, allocation
  | "UPSTREAM" // a recorder, IdP or device failed or timed out
  | "CLOSED" // the channel closed under a pending operation
  | "OVERLOAD"; // a quota or queue bound was hit

export class GatehouseError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class BadInputError extends GatehouseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("BAD_INPUT", message, options);
  }
}

export class WrongStateError extends GatehouseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("WRONG_STATE", message, options);
  }
}

export class UpstreamError extends GatehouseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("UPSTREAM", message, options);
  }
}

export class ClosedError extends GatehouseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CLOSED", message, options);
  }
}

export class AuthError extends GatehouseError {
  constructor(code: "UNAUTHORIZED" | "FORBIDDEN", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export class NotFoundError extends GatehouseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NOT_FOUND", message, options);
  }
}

/** The gateway's capacity is used up (a pool, a queue, a quota of everyone): HTTP 503. */
export class OverloadError extends GatehouseError {
  /** When trying again makes sense, seconds (HTTP `Retry-After`); undefined when unknown. */
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super("OVERLOAD", message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** One caller asked too often or failed too often (a per-source or per-account limit): HTTP 429. */
export class RateLimitedError extends OverloadError {}

export function isGatehouseError(e: unknown): e is GatehouseError {
  return e instanceof GatehouseError;
}
