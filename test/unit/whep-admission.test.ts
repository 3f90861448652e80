import { describe, expect, it } from "vitest";
import { RateLimitedError } from "../../config/errors.ts";
import { ViewerAdmission } from "../../gateway/http/viewer-admission.ts";
import type { ViewerHandle } from "../../sfu/sfu.ts";

/** Just what admission reads of a viewer: its id, state and "closed" event. */
function fakeViewer(id: string, state: "connecting" | "closed" = "connecting") {
  let onClosed: (() => void) | undefined;
  const v = {
    id,
    state,
    once: (_e: "closed", fn: () => void) => {
      onClosed = fn;
      return () => {};
    },
  };
  return { handle: v as unknown as ViewerHandle, close: () => onClosed?.() };
}

function refusal(fn: () => unknown): RateLimitedError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RateLimitedError);
    return err as RateLimitedError;
  }
  throw new Error("expected a refusal");
}

describe("WHEP viewer admission", () => {
  it("bounds viewers per session and per user, leaving other users alone, and gives places back on close", () => {
    const adm = new ViewerAdmission({ perSession: 2, perUser: 3, retryAfterSeconds: 4 });
    const s1 = { user: "mallory", session: "s1" };
    const s2 = { user: "mallory", session: "s2" };
    const viewers = [fakeViewer("a"), fakeViewer("b"), fakeViewer("c")];
    adm.admit(s1).bind(viewers[0]!.handle);
    adm.admit(s1).bind(viewers[1]!.handle);
    const perSession = refusal(() => adm.admit(s1));
    expect([perSession.retryAfterSeconds, perSession.message]).toEqual([4, "at most 2 live viewers per session"]);
    adm.admit(s2).bind(viewers[2]!.handle);
    expect(refusal(() => adm.admit(s2)).message).toBe("at most 3 live viewers per user");
    // Another user is not affected by mallory's use.
    adm.admit({ user: "alice", session: "s9" }).release();
    expect(adm.stats()).toEqual({ refusedPerUser: 1, refusedPerSession: 1, viewers: 3, users: 1 });
    viewers[0]!.close();
    viewers[0]!.close();
    expect(adm.stats().viewers).toBe(2);
    adm.admit(s1).release();
  });

  it("counts a POST from admission, not from its answer, and releases once", () => {
    const adm = new ViewerAdmission({ perSession: 1, perUser: 1, retryAfterSeconds: 1 });
    const o = { user: "u", session: "s" };
    const t = adm.admit(o);
    refusal(() => adm.admit(o)); // still negotiating: the place is taken
    t.release();
    t.release();
    const t2 = adm.admit(o);
    t2.bind(fakeViewer("x", "closed").handle); // closed before it was bound: nothing held
    expect(adm.stats().viewers).toBe(0);
  });

  it("knows each viewer's owner: the same session of the same user only", () => {
    const adm = ViewerAdmission.unlimited();
    const v = fakeViewer("v1");
    adm.admit({ user: "alice", session: "s1" }).bind(v.handle);
    expect(adm.owns("v1", { user: "alice", session: "s1" })).toBe(true);
    expect(adm.owns("v1", { user: "alice", session: "s2" })).toBe(false);
    expect(adm.owns("v1", { user: "bob", session: "s1" })).toBe(false);
    expect(adm.owns("nope", { user: "alice", session: "s1" })).toBe(false);
    v.close();
    expect(adm.owns("v1", { user: "alice", session: "s1" })).toBe(false);
  });
});
