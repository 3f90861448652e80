/**
 * The one place where error categories become HTTP statuses. Bodies are short
 * JSON with the code and a reason safe to show; causes are logged, never sent.
 */
import type { ErrorRequestHandler, Response } from "express";
import { isGatehouseError, type ErrorCode } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";

const STATUS: Record<ErrorCode, number> = {
  BAD_INPUT: 400,
  WRONG_STATE: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UPSTREAM: 502,
  CLOSED: 410,
  OVERLOAD: 503,
};

export function httpStatusOf(err: unknown): number {
  return isGatehouseError(err) ? STATUS[err.code] : 500;
}

export function sendError(res: Response, err: unknown): void {
  const status = httpStatusOf(err);
  const body = isGatehouseError(err)
    ? { error: err.code.toLowerCase(), reason: err.message }
    : { error: "internal", reason: "internal error" };
  if (!res.headersSent) res.status(status).type("application/json").send(JSON.stringify(body));
}

/** Express error middleware: maps, logs unexpected failures, never leaks stacks. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    // body-parser and friends set `status`/`type` on their errors: treat as bad input.
    const status = (err as { status?: number }).status;
    if (!isGatehouseError(err) && typeof status === "number" && status >= 400 && status < 500) {
      if (!res.headersSent) res.status(status).json({ error: "bad_input", reason: (err as Error).message });
      return;
    }
    if (httpStatusOf(err) >= 500) log.error("request failed", { method: req.method, path: req.path, err });
    sendError(res, err);
  };
}
