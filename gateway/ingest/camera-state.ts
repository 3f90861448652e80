/**
 * What a person is told about one camera: a typed state machine, pure (events and the
 * injected clock in, a status out), fed by the camera's ingest.
 *
 *   idle ──attempt──▶ connecting ──playing──▶ live ──lost──▶ reconnecting ──playing──▶ live
 *                         │                                      │
 *                         └────────failed──▶ offline ◀──failed───┘   (failed for good: failed)
 *
 * - `live` only while a session plays: the moment any signal says the upstream is gone
 *   (TCP close or reset, RTSP session error, RTCP BYE, no media) it is `reconnecting`.
 * - The first failed attempt after that (or before the first picture) is `offline`: the
 *   recorder did not answer, so nobody should wait on a spinner. Retries go on.
 * - `failed`: retrying soon will not help (credentials refused, unknown stream, nothing
 *   a browser can play); retries go on at the longest backoff.
 * - `disabled` (set by the camera registry, never by this machine): the supervisor stopped
 *   pulling a camera that kept failing, until an administrator enables it or its window passes.
 * - `idle`: not pulled (nobody watches); `reachability` keeps what the last session or
 *   the last light check found, so an outage of an unwatched camera is visible too.
 */
import { AuthError, ClosedError, type GatehouseError } from "../../config/errors.ts";
import { RecorderPolicyError, RtspStatusError, UnplayableError, UpstreamLostError, type LossSignal } from "../rtsp/status.ts";

/** The states a user can see (README "Camera states"). */
export type CameraState = "idle" | "connecting" | "live" | "reconnecting" | "offline" | "failed" | "disabled";

/** Whether the recorder answers, as far as the gateway knows. */
export type Reachability =
  /** Not checked yet. */
  | "unknown"
  /** It answered and offered something playable. */
  | "reachable"
  /** No answer: connection refused, reset, timed out, no route. */
  | "unreachable"
  /** It answers but refuses or cannot serve the stream (credentials, 404, 5xx, nothing playable, stream ended). */
  | "failing";

/** How an attempt or a check failed. */
export type FailureKind = "unreachable" | "failing" | "permanent";

/** A failure described for people, with the technical message beside it. */
export interface Failure {
  kind: FailureKind;
  /** Plain words, e.g. "the recorder does not answer (connection refused)". */
  reason: string;
  /** The technical message (for administrators). */
  detail: string;
}

export interface CameraStatus {
  state: CameraState;
  reachability: Reachability;
  /** Why the camera is not live, in plain words; absent while live or idle without a problem. */
  reason?: string;
  /** The technical message behind `reason`. */
  detail?: string;
  /** When `state` was entered, epoch ms. */
  since: number;
  /** When the camera was last live (the end of the last session, or now while live), epoch ms. */
  lastLiveAt?: number;
  /** Since when the camera has not been live although wanted, epoch ms. */
  downSince?: number;
  /** The signal that ended the last session. */
  lostBy?: LossSignal;
  /** Failed attempts in a row. */
  failures: number;
  /** When the recorder was last checked without pulling (idle cameras), epoch ms. */
  checkedAt?: number;
}

export class CameraStateMachine {
  private readonly now: () => number;
  private s: CameraStatus;

  /** @param now epoch ms (injected: tests drive it) */
  constructor(now: () => number) {
    this.now = now;
    this.s = { state: "idle", reachability: "unknown", since: now(), failures: 0 };
  }

  status(): CameraStatus {
    return { ...this.s };
  }

  get state(): CameraState {
    return this.s.state;
  }

  /** An attempt to pull starts. Reconnecting, offline and failed stay as they are until it succeeds. */
  attempt(): boolean {
    if (this.s.state !== "idle") return false;
    return this.go("connecting", { reason: undefined, detail: undefined });
  }

  /** A session plays (media may flow). */
  live(): boolean {
    return this.go("live", {
      reachability: "reachable",
      reason: undefined,
      detail: undefined,
      downSince: undefined,
      lostBy: undefined,
      failures: 0,
      lastLiveAt: this.now(),
    });
  }

  /** A playing session ended; `err` says how (see LossSignal). */
  lost(err: GatehouseError): boolean {
    if (this.s.state !== "live") return false;
    const f = describeFailure(err);
    const signal = err instanceof UpstreamLostError ? err.signal : undefined;
    const at = this.now();
    return this.go("reconnecting", {
      reachability: signal === "rtcp-bye" || signal === "session-error" ? "failing" : "unreachable",
      reason: f.reason,
      detail: f.detail,
      lostBy: signal,
      downSince: at,
      lastLiveAt: at,
    });
  }

  /** An attempt failed. */
  failed(err: GatehouseError): boolean {
    const f = describeFailure(err);
    const state: CameraState = f.kind === "permanent" ? "failed" : "offline";
    return this.go(state, {
      reachability: f.kind === "unreachable" ? "unreachable" : "failing",
      reason: f.reason,
      detail: f.detail,
      failures: this.s.failures + 1,
      downSince: this.s.downSince ?? this.now(),
    });
  }

  /** Pulling stopped because nobody watches: what was learnt about reachability stays. */
  idle(): boolean {
    return this.go("idle", { reason: undefined, detail: undefined, downSince: undefined, failures: 0 });
  }

  /** A light check of an idle camera finished: undefined = it answered with something playable. */
  checked(err: GatehouseError | undefined): boolean {
    const at = this.now();
    if (this.s.state !== "idle") {
      this.s.checkedAt = at;
      return false;
    }
    if (!err) return this.go("idle", { reachability: "reachable", reason: undefined, detail: undefined, checkedAt: at });
    const f = describeFailure(err);
    return this.go("idle", {
      reachability: f.kind === "unreachable" ? "unreachable" : "failing",
      reason: f.reason,
      detail: f.detail,
      checkedAt: at,
    });
  }

  /** Applies a transition; true when anything a listener would see changed (the time of a check alone is not). */
  private go(state: CameraState, patch: Partial<CameraStatus>): boolean {
    const before = JSON.stringify({ ...this.s, checkedAt: 0 });
    const next: CameraStatus = { ...this.s, ...patch, state };
    if (state !== this.s.state) next.since = this.now();
    for (const k of Object.keys(next) as (keyof CameraStatus)[]) if (next[k] === undefined) delete next[k];
    this.s = next;
    return JSON.stringify({ ...next, checkedAt: 0 }) !== before;
  }
}

/** Socket error codes that mean "nobody answers there". */
const UNREACHABLE_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ECONNABORTED: "connection aborted",
  EPIPE: "connection broken",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "no route to the recorder",
  ENETUNREACH: "network unreachable",
  EHOSTDOWN: "recorder host down",
  ENOTFOUND: "unknown host name",
  EAI_AGAIN: "host name lookup failed",
};

/** Plain words for what went wrong with a recorder, and whether retrying soon can help. */
export function describeFailure(err: GatehouseError): Failure {
  const detail = err.message;
  if (err instanceof UpstreamLostError) {
    switch (err.signal) {
      case "rtcp-bye":
        return { kind: "failing", reason: "the recorder ended the stream", detail };
      case "no-media":
        return { kind: "unreachable", reason: "the recorder stopped sending video", detail };
      case "session-error":
        return { kind: "failing", reason: "the recorder dropped the session", detail };
      case "redirect":
        return { kind: "failing", reason: "the recorder moved the stream elsewhere", detail };
      case "connection-closed":
        return { kind: "unreachable", reason: "the recorder closed the connection", detail };
      case "connection-reset":
        return { kind: "unreachable", reason: `the connection to the recorder was lost (${socketWords(err) ?? "reset"})`, detail };
    }
  }
  if (err instanceof AuthError) return { kind: "permanent", reason: "the recorder refused the user name or password", detail };
  // The camera's configuration forbids what the recorder asks (its message names the key to change).
  if (err instanceof RecorderPolicyError) return { kind: "permanent", reason: detail, detail };
  if (err instanceof UnplayableError) return { kind: "permanent", reason: `nothing a browser can play: ${detail.replace(/^no playable track:?\s*/, "") || "no usable track"}`, detail };
  if (err instanceof RtspStatusError) {
    if (err.status === 404) return { kind: "permanent", reason: "the recorder does not know this stream (404 Not Found)", detail };
    if (err.status === 461) return { kind: "failing", reason: "the recorder refused the transport (461 Unsupported Transport)", detail };
    return { kind: "failing", reason: `the recorder answered ${detail.replace(/^[A-Z_]+: recorder answered /, "")}`, detail };
  }
  if (err.code === "BAD_INPUT") return { kind: "permanent", reason: `the camera's configuration is unusable: ${detail}`, detail };
  if (err instanceof ClosedError) return { kind: "failing", reason: "stopped", detail };
  const words = socketWords(err);
  if (words !== undefined) return { kind: "unreachable", reason: `the recorder does not answer (${words})`, detail };
  return { kind: "failing", reason: detail, detail };
}

/** The socket-level failure under an error (its cause chain), in words; undefined when there is none. */
function socketWords(err: Error): string | undefined {
  for (let e: unknown = err.cause, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string") continue;
    if (code in UNREACHABLE_CODES) return UNREACHABLE_CODES[code];
    if (/CERT|TLS|SSL/.test(code)) return undefined;
    // Our own connect timer ("no answer within N ms") and any other errno.
    return code;
  }
  return undefined;
}
