/**
 * How the page's sessions retry: what a one-camera WHEP session (whep.js) and the grid's one
 * connection (grid-session.js) share. Which refusals retrying cannot mend, when a server asks to
 * be left alone (`Retry-After`), the delay before the next attempt, and the one timer a session
 * arms at a time (the connect timeout, the disconnect grace, the next attempt).
 */

/** Longest `Retry-After` honoured, ms: a wrong header must not park a tile for hours. */
const RETRY_AFTER_MAX_MS = 300_000;

/** After a good connection drops, its first retry goes this soon, ms (then the backoff). */
const RETRY_AFTER_DROP_MS = 100;

/**
 * A `Retry-After` header (RFC 9110 §10.2.3: delay-seconds or an HTTP date) in ms from `now`,
 * bounded to 5 minutes; 0 when absent or unreadable.
 * @param {string | null} value
 * @param {number} [now] ms since the epoch
 * @returns {number}
 */
export function retryAfterMs(value, now = Date.now()) {
  if (!value) return 0;
  const v = value.trim();
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v) - now;
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, RETRY_AFTER_MAX_MS) : 0;
}

/**
 * A client error retrying cannot mend: a 4xx other than 404 (the camera, or a session another
 * node answers for, may come back), 408 and 429.
 * @param {number} status the HTTP status (0: no answer)
 * @returns {boolean}
 */
export function cannotMend(status) {
  return status >= 400 && status < 500 && status !== 404 && status !== 408 && status !== 429;
}

/**
 * The delay before the next attempt, ms. The first retry after a good connection dropped goes
 * almost at once; repeated failures back off exponentially from `backoffMinMs` to `backoffMaxMs`,
 * each ±20 % so that many pages that failed together do not all come back together. A server that
 * said when to come back (`Retry-After` on a 429 over a viewer limit, a 503 with no free media
 * port) is not asked again before then.
 * @param {number} failures consecutive failed attempts, this one included (1 or more)
 * @param {boolean} wasConnected whether this failure ended a connection that had come up
 * @param {{ backoffMinMs: number, backoffMaxMs: number }} opts
 * @param {number} [serverMs] what the server asked for (`retryAfterMs`), 0 when it did not
 * @param {() => number} [random] uniform [0, 1)
 * @returns {number}
 */
export function retryDelayMs(failures, wasConnected, opts, serverMs = 0, random = Math.random) {
  const base = wasConnected && failures === 1 ? RETRY_AFTER_DROP_MS : Math.min(opts.backoffMaxMs, opts.backoffMinMs * 2 ** (failures - 1));
  return Math.max(Math.round(base * (0.8 + 0.4 * random())), serverMs);
}

/** One pending timeout: arming it again replaces the one pending. */
export class Timer {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #handle;

  /**
   * @param {number} ms
   * @param {() => void} fn
   */
  arm(ms, fn) {
    this.clear();
    this.#handle = setTimeout(() => {
      this.#handle = undefined;
      fn();
    }, ms);
  }

  clear() {
    if (this.#handle !== undefined) clearTimeout(this.#handle);
    this.#handle = undefined;
  }
}
