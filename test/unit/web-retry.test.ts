/**
 * How the web client's sessions retry (web/retry.js, shared by whep.js and grid-session.js): its
 * reading of Retry-After (RFC 9110 §10.2.3), the refusals it gives up on, and its backoff.
 */
import { describe, expect, it, vi } from "vitest";

// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const RETRY_JS: string = "../../web/retry.js";
const { retryAfterMs, cannotMend, retryDelayMs, Timer } = (await import(RETRY_JS)) as {
  retryAfterMs: (value: string | null, now?: number) => number;
  cannotMend: (status: number) => boolean;
  retryDelayMs: (failures: number, wasConnected: boolean, opts: { backoffMinMs: number; backoffMaxMs: number }, serverMs?: number, random?: () => number) => number;
  Timer: new () => { arm(ms: number, fn: () => void): void; clear(): void };
};

describe("retryAfterMs", () => {
  const now = Date.parse("2026-12-06T10:00:00Z");
  it("reads delay-seconds and HTTP dates", () => {
    expect(retryAfterMs("4", now)).toBe(4000);
    expect(retryAfterMs(" 0 ", now)).toBe(0);
    expect(retryAfterMs("Sun, 06 Dec 2026 10:00:30 GMT", now)).toBe(30_000);
  });
  it("ignores what it cannot read, dates in the past and negative numbers", () => {
    for (const v of [null, "", "soon", "-5", "1.5", "Sun, 06 Dec 2026 09:00:00 GMT"]) expect(retryAfterMs(v, now)).toBe(0);
  });
  it("never waits longer than five minutes", () => {
    expect(retryAfterMs("86400", now)).toBe(300_000);
  });
});

describe("cannotMend", () => {
  it("gives up on client errors, except a missing camera or session, a timeout and a limit", () => {
    for (const status of [400, 403, 405, 410, 413, 415, 422]) expect(cannotMend(status)).toBe(true);
    for (const status of [0, 200, 404, 408, 429, 500, 502, 503, 504]) expect(cannotMend(status)).toBe(false);
  });
});

describe("retryDelayMs", () => {
  const opts = { backoffMinMs: 500, backoffMaxMs: 15_000 };
  const middle = () => 0.5; // no jitter
  it("backs off exponentially from the first delay to the cap", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => retryDelayMs(n, false, opts, 0, middle))).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
  });
  it("retries almost at once when a good connection drops, then backs off as usual", () => {
    expect(retryDelayMs(1, true, opts, 0, middle)).toBe(100);
    expect(retryDelayMs(2, true, opts, 0, middle)).toBe(1000);
  });
  it("spreads each delay by ±20 %", () => {
    expect(retryDelayMs(3, false, opts, 0, () => 0)).toBe(1600);
    expect(retryDelayMs(3, false, opts, 0, () => 0.999_999)).toBe(2400);
  });
  it("never comes back before the server asked", () => {
    expect(retryDelayMs(1, true, opts, 30_000, middle)).toBe(30_000);
    expect(retryDelayMs(7, false, opts, 1000, middle)).toBe(15_000);
  });
});

describe("Timer", () => {
  it("holds one pending timeout: arming again replaces it, clearing cancels it", () => {
    vi.useFakeTimers();
    try {
      const t = new Timer();
      const fired: string[] = [];
      t.arm(5, () => fired.push("first"));
      t.arm(10, () => fired.push("second"));
      vi.advanceTimersByTime(9);
      expect(fired).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(fired).toEqual(["second"]);
      t.arm(1, () => fired.push("cleared"));
      t.clear();
      vi.advanceTimersByTime(100);
      expect(fired).toEqual(["second"]);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
