/**
 * The one place where error categories become HTTP statuses, for every route (the API, WHEP,
 * intercom, metrics, administration and sign-in). Bodies are short JSON with the code and a reason
 * safe to show; causes are logged, never sent.
 */
import type { ErrorRequestHandler, Response } from "express";
import { isGatehouseError, RateLimitedError, type ErrorCode } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";

const STATUS: Record<ErrorCode, number> = {
  BAD_INPUT: 400,
  WRONG_STATE: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UPSTREAM: 502,
  CLOSED: 410,
  // The gateway's capacity; a single caller over its own limit is RateLimitedError → 429.
  OVERLOAD: 503,
};

/** What a client is told about a failure. */
export interface HttpFailure {
  readonly status: number;
  /** Stable, lower-case code (`unauthorized`, `rate_limited`, ...). */
  readonly error: string;
  /** A short reason of ours; never a stack or a library's message. */
  readonly reason: string;
  /** `Retry-After`, seconds. */
  readonly retryAfterSeconds?: number | undefined;
}

/** RFC 6750 §3.1 error code for the `WWW-Authenticate` challenge of a request that presented a bearer token. */
export type BearerErrorCode = "invalid_request" | "invalid_token";

export function describeError(err: unknown): HttpFailure {
  if (!isGatehouseError(err)) return { status: 500, error: "internal", reason: "internal error" };
  if (err instanceof RateLimitedError)
    return { status: 429, error: "rate_limited", reason: "too many attempts, try again later", retryAfterSeconds: err.retryAfterSeconds ?? 60 };
  const status = STATUS[err.code];
  // Why a credential failed (expired, bad signature, unknown key) helps an attacker, not a user.
  if (err.code === "UNAUTHORIZED") return { status, error: "unauthorized", reason: "sign-in required" };
  const retryAfterSeconds = err.code === "OVERLOAD" ? (err as { retryAfterSeconds?: number }).retryAfterSeconds : undefined;
  return { status, error: err.code.toLowerCase(), reason: err.message, ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}) };
}

export function httpStatusOf(err: unknown): number {
  return describeError(err).status;
}

/**
 * Answer with the mapped status and body. Every 401 carries a Bearer challenge (RFC 6750 §3), with
 * `error=` only when the request presented a token (`bearerError`).
 */
export function sendError(res: Response, err: unknown, opts: { bearerError?: BearerErrorCode } = {}): void {
  if (res.headersSent) return;
  const f = describeError(err);
  res.set("Cache-Control", "no-store");
  if (f.status === 401) res.set("WWW-Authenticate", `Bearer realm="gatehouse"${opts.bearerError ? `, error="${opts.bearerError}"` : ""}`);
  if (f.retryAfterSeconds !== undefined) res.set("Retry-After", String(Math.max(1, Math.ceil(f.retryAfterSeconds))));
  res.status(f.status).type("application/json").send(JSON.stringify({ error: f.error, reason: f.reason }));
}

/** Body-parser failures (they carry `status` and `type`), by their type: a reason of ours, not the library's text. */
const PARSER_REASON: Record<string, string> = {
  "entity.too.large": "request body too large",
  "entity.parse.failed": "malformed request body",
  "encoding.unsupported": "unsupported body encoding",
  "charset.unsupported": "unsupported body charset",
  "request.aborted": "request aborted",
  "parameters.too.many": "too many parameters",
};

/** Express error middleware: maps, logs unexpected failures, never leaks stacks. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    // body-parser and friends set `status`/`type` on their errors: treat as bad input.
    const status = (err as { status?: number }).status;
    if (!isGatehouseError(err) && typeof status === "number" && status >= 400 && status < 500) {
      const type = (err as { type?: unknown }).type;
      const reason = (typeof type === "string" && PARSER_REASON[type]) || "malformed request";
      if (!res.headersSent) res.status(status).json({ error: "bad_input", reason });
      return;
    }
    if (httpStatusOf(err) >= 500) log.error("request failed", { method: req.method, path: req.path, err });
    sendError(res, err);
  };
}
