/** The web client's reading of Retry-After (RFC 9110 §10.2.3), a pure helper of web/whep.js. */
import { describe, expect, it } from "vitest";

// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const WHEP_JS: string = "../../web/whep.js";
const { retryAfterMs } = (await import(WHEP_JS)) as { retryAfterMs: (value: string | null, now?: number) => number };

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
