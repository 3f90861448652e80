/**
 * Reconnect delays: capped exponential backoff with jitter. Pure; the random source is
 * injected so tests pin exact values. Jitter spreads the reconnects of many cameras behind
 * one recorder that restarted, instead of all of them hitting it in the same millisecond.
 */
export interface BackoffOptions {
  /** First delay, ms (config rtsp.reconnectMinMs). */
  minMs: number;
  /** Cap, ms (config rtsp.reconnectMaxMs). */
  maxMs: number;
  /** Uniform in [0, 1). Default Math.random. */
  random?: () => number;
}

/**
 * Delay before reconnect attempt `attempt` (0 = first retry): the capped exponential
 * `min·2^attempt`, scaled by a random factor in [0.5, 1] ("equal jitter"), never below `min`.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const { minMs, maxMs } = opts;
  const exp = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(0, attempt), 30));
  const r = (opts.random ?? Math.random)();
  const jittered = exp * (0.5 + 0.5 * Math.min(Math.max(r, 0), 1));
  return Math.round(Math.min(maxMs, Math.max(minMs, jittered)));
}
