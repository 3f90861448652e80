import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { safeReturnTo } from "../../gateway/auth/return-to.ts";

describe("safeReturnTo", () => {
  it("keeps our own relative paths with query and fragment", () => {
    expect(safeReturnTo("/")).toBe("/");
    expect(safeReturnTo("/cameras/lobby?view=large#top")).toBe("/cameras/lobby?view=large#top");
    expect(safeReturnTo("/a/../b")).toBe("/b");
  });

  it.each([
    undefined,
    "",
    "https://evil.example/",
    "http:evil.example",
    "//evil.example/x",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "javascript:alert(1)",
    "data:text/html,x",
    "evil.example",
    "/auth/login?return_to=/x",
    "/auth/callback?code=x",
    "/" + "a".repeat(3000),
  ])("sends %j home instead", (v) => {
    expect(safeReturnTo(v)).toBe("/");
  });

  it("never yields anything that leaves the origin (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.webUrl(), fc.string().map((s) => "/" + s), fc.string().map((s) => "//" + s)), (v) => {
        const out = safeReturnTo(v);
        expect(out.startsWith("/")).toBe(true);
        expect(out.startsWith("//")).toBe(false);
        // eslint-disable-next-line no-control-regex
        expect(out).not.toMatch(/[\\\x00-\x1f]/);
        expect(new URL(out, "https://gatehouse.example").origin).toBe("https://gatehouse.example");
      }),
      { numRuns: 2000 },
    );
  });
});
