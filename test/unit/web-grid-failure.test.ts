/**
 * What the web client's grid session (web/grid-session.js) does after a failed attempt: a pure
 * helper, so the rule that sends a page to one WHEP session per tile for good is checked alone.
 */
import { describe, expect, it } from "vitest";

// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const GRID_JS: string = "../../web/grid-session.js";
type Next = "retrying" | "unauthorized" | "unsupported" | "failed";
const { afterFailure } = (await import(GRID_JS)) as {
  afterFailure: (status: number, at: { hadSession: boolean; madeBefore: boolean; atLimit: boolean }) => Next;
};

const first = { hadSession: false, madeBefore: false, atLimit: false };

describe("afterFailure", () => {
  it("no grid route: a request for a session answered 404, 405 or 501 before any was made, whichever attempt it ends", () => {
    // (A connection replaced for more slots before its first answer is not a retry: the run that
    // showed it left a page's tiles on a grid route its gateway did not have.)
    for (const status of [404, 405, 501]) expect(afterFailure(status, first)).toBe("unsupported");
  });

  it("a session the gateway had made and no longer knows (404 from its node's successor) is offered again, on the first attempt too", () => {
    expect(afterFailure(404, { hadSession: true, madeBefore: true, atLimit: false })).toBe("retrying");
    // Once a session was made, a 404 is not read as a missing route either.
    expect(afterFailure(404, { hadSession: false, madeBefore: true, atLimit: false })).toBe("retrying");
  });

  it("sign-in needed: unauthorized, whatever the attempt", () => {
    expect(afterFailure(401, first)).toBe("unauthorized");
    expect(afterFailure(401, { hadSession: true, madeBefore: true, atLimit: false })).toBe("unauthorized");
  });

  it("the user's session limit: WHEP per tile on a first attempt, retried later (the page's own earlier session may still count)", () => {
    expect(afterFailure(429, { ...first, atLimit: true })).toBe("failed");
    expect(afterFailure(429, { hadSession: false, madeBefore: true, atLimit: true })).toBe("retrying");
    expect(afterFailure(429, first)).toBe("retrying");
  });

  it("client errors that retrying cannot mend fail; timeouts, server errors and lost connections are retried", () => {
    for (const status of [400, 403, 409, 413, 415]) expect(afterFailure(status, { hadSession: true, madeBefore: true, atLimit: false })).toBe("failed");
    for (const status of [0, 408, 500, 502, 503]) expect(afterFailure(status, { hadSession: true, madeBefore: true, atLimit: false })).toBe("retrying");
  });
});
