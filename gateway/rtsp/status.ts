/**
 * The one place where RTSP status codes (RFC 2326 §7.1.1) become error categories,
 * for the client side: what a recorder's answer means for the ingest.
 */
import { AuthError, UpstreamError, type GatehouseError } from "../../config/errors.ts";

const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  453: "Not Enough Bandwidth",
  454: "Session Not Found",
  455: "Method Not Valid in This State",
  457: "Invalid Range",
  459: "Aggregate Operation Not Allowed",
  460: "Only Aggregate Operation Allowed",
  461: "Unsupported Transport",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
};

/** Redirection statuses the client follows (RFC 2326 §11.3). */
export function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 305 || status === 307;
}

/** The recorder works but offers nothing we can forward (e.g. H.265 only), or its SDP is unusable. */
export class UnplayableError extends UpstreamError {}

/** What the camera's configuration does not allow a recorder to make us do. */
export type RecorderPolicy =
  /** Basic authentication over plain rtsp:// (the password would cross the network in clear); see `basicOverPlainRtsp`. */
  | "basic_over_plain_rtsp"
  /** A redirect to a host other than the camera's own; see `redirectHosts`. */
  | "redirect_host";

/** The recorder asked for something the camera's configuration refuses; retrying will not change that. */
export class RecorderPolicyError extends UpstreamError {
  readonly policy: RecorderPolicy;
  constructor(policy: RecorderPolicy, message: string) {
    super(message);
    this.policy = policy;
  }
}

/**
 * Failures that retrying soon will not fix (bad credentials, unknown stream, nothing
 * playable, bad URL): the ingest retries at the longest backoff, so a wrong password
 * does not hammer the recorder into locking the account.
 */
export function isPermanent(err: GatehouseError): boolean {
  return (
    err.code === "UNAUTHORIZED" ||
    err.code === "FORBIDDEN" ||
    err.code === "BAD_INPUT" ||
    err instanceof UnplayableError ||
    err instanceof RecorderPolicyError ||
    (err instanceof RtspStatusError && err.status === 404)
  );
}

/** A recorder answered a request with a non-success status. */
export class RtspStatusError extends UpstreamError {
  readonly status: number;
  readonly method: string;
  constructor(method: string, status: number, reason: string) {
    super(`${method}: recorder answered ${status} ${reason || REASONS[status] || ""}`.trim());
    this.status = status;
    this.method = method;
  }
}

/** The error for a non-2xx answer to `method`. */
export function responseError(method: string, status: number, reason: string, detail?: string): GatehouseError {
  const text = reason || REASONS[status] || "";
  if (status === 401)
    return new AuthError("UNAUTHORIZED", `${method}: recorder rejected the credentials (401 ${text})${detail ? `: ${detail}` : ""}`);
  if (status === 403) return new AuthError("FORBIDDEN", `${method}: recorder refused access (403 ${text})`);
  return new RtspStatusError(method, status, text);
}

/** The signal that told us a playing session ended. */
export type LossSignal =
  /** The recorder closed the TCP connection (FIN). */
  | "connection-closed"
  /** The TCP connection was reset or failed (RST, unreachable, keep-alive probe). */
  | "connection-reset"
  /** The recorder refused or dropped the RTSP session (454 on keep-alive, no keep-alive answer). */
  | "session-error"
  /** The recorder said goodbye on RTCP (RFC 3550 §6.6 BYE): the stream ended. */
  | "rtcp-bye"
  /** No RTP for the media timeout: the last resort. */
  | "no-media"
  /** The recorder sent a REDIRECT request. */
  | "redirect";

/** A playing session ended, and which signal said so. */
export class UpstreamLostError extends UpstreamError {
  readonly signal: LossSignal;
  constructor(signal: LossSignal, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.signal = signal;
  }
}
