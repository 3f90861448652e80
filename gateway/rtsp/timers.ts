/**
 * The clock and timers RTSP ingest uses, injected so request timeouts, keep-alives,
 * media watchdogs, backoff and idle stops are tested without sleeping.
 */
export type TimerHandle = { readonly __timer: unique symbol } | object;

export interface Timers {
  /** Wall-clock milliseconds (epoch); used for durations and for `since` in statuses. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(h: TimerHandle | undefined): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => {
    if (h !== undefined) clearTimeout(h as ReturnType<typeof setTimeout>);
  },
};
