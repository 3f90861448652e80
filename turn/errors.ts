/**
 * The one place where failures become STUN error codes (RFC 8489 §14.8, RFC 8656 §18).
 * Handlers reject with a `TurnReject` value; unexpected exceptions and the shared
 * error categories from config/errors.ts map through `stunErrorFor`.
 */
import { isGatehouseError } from "../config/errors.ts";
import { ErrorCode, REASON } from "./stun/constants.ts";

export interface TurnReject {
  readonly code: ErrorCode;
  /** Reason phrase sent to the client; the standard phrase unless something more useful applies. */
  readonly reason: string;
  /** Extra attributes the error needs (UNKNOWN-ATTRIBUTES for 420). */
  readonly unknown?: readonly number[];
}

export function reject(code: ErrorCode, reason?: string, unknown?: readonly number[]): TurnReject {
  return { code, reason: reason ?? REASON[code] ?? "Error", ...(unknown ? { unknown } : {}) };
}

/** Map any thrown value to a STUN error: categories first, 500 for the rest. */
export function stunErrorFor(e: unknown): TurnReject {
  if (isGatehouseError(e)) {
    switch (e.code) {
      case "BAD_INPUT":
        return reject(ErrorCode.BadRequest);
      case "UNAUTHORIZED":
        return reject(ErrorCode.Unauthorized);
      case "FORBIDDEN":
        return reject(ErrorCode.Forbidden);
      case "NOT_FOUND":
      case "WRONG_STATE":
        return reject(ErrorCode.AllocationMismatch);
      case "OVERLOAD":
      case "UPSTREAM":
        return reject(ErrorCode.InsufficientCapacity);
      case "CLOSED":
        return reject(ErrorCode.ServerError, "Server Closing");
    }
  }
  return reject(ErrorCode.ServerError);
}
