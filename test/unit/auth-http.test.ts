import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { AuthError } from "../../config/errors.ts";
import { createHash } from "node:crypto";
import type { Request, Response } from "express";
import { causeChain, CsrfTokens, errorPage, isNavigation, parseCookies, sameOrigin, securityHeaders } from "../../gateway/auth/http.ts";

const req = (headers: Record<string, string>, method = "GET") => ({ headers, method }) as unknown as IncomingMessage;

describe("auth http helpers", () => {
  it("parses cookies, first one wins, oversize values dropped", () => {
    const c = parseCookies(`a=1; b="two"; a=3; junk; =x; big=${"x".repeat(9000)}`);
    expect(c.get("a")).toBe("1");
    expect(c.get("b")).toBe("two");
    expect(c.has("big")).toBe(false);
    expect(parseCookies(undefined).size).toBe(0);
  });

  it("tells navigations from API calls", () => {
    expect(isNavigation(req({ "sec-fetch-mode": "navigate" }))).toBe(true);
    expect(isNavigation(req({ "sec-fetch-mode": "cors", accept: "text/html" }))).toBe(false);
    expect(isNavigation(req({ accept: "text/html,application/xhtml+xml" }))).toBe(true);
    expect(isNavigation(req({ accept: "application/json" }))).toBe(false);
    expect(isNavigation(req({ "sec-fetch-mode": "navigate" }, "POST"))).toBe(false);
  });

  it("checks origin with Origin, then Fetch Metadata", () => {
    const o = "https://gw.example";
    expect(sameOrigin(req({ origin: o }), o)).toBe(true);
    expect(sameOrigin(req({ origin: "https://evil.example" }), o)).toBe(false);
    expect(sameOrigin(req({ origin: "null" }), o)).toBe(false);
    expect(sameOrigin(req({ "sec-fetch-site": "same-origin" }), o)).toBe(true);
    expect(sameOrigin(req({ "sec-fetch-site": "same-site" }), o)).toBe(false);
    expect(sameOrigin(req({ "sec-fetch-site": "cross-site" }), o)).toBe(false);
  });

  it("binds CSRF tokens to the session", () => {
    const t = new CsrfTokens(Buffer.alloc(32, 7));
    const tok = t.token("session-a");
    expect(t.verify("session-a", tok)).toBe(true);
    expect(t.verify("session-b", tok)).toBe(false);
    expect(t.verify("session-a", tok.slice(1))).toBe(false);
    expect(t.verify("session-a", undefined)).toBe(false);
    expect(t.verify("session-a", ["x"])).toBe(false);
    expect(new CsrfTokens(Buffer.alloc(32, 8)).verify("session-a", tok)).toBe(false);
  });

  it("escapes error pages and keeps the cause chain for logs only", () => {
    expect(errorPage("<x>", `"quoted" & <b>`)).not.toMatch(/<x>|<b>/);
    const err = new AuthError("UNAUTHORIZED", "sign-in rejected", { cause: Object.assign(new Error("server responded with an error"), { cause: { error: "invalid_grant" } }) });
    expect(causeChain(err)).toBe("sign-in rejected [UNAUTHORIZED] ← server responded with an error ← [invalid_grant]");
  });

  it("sets the security headers; the CSP allows our pages' inline style by hash only", () => {
    const headers = (tls: boolean) => {
      const h: Record<string, string> = {};
      const res = { set: (k: string, v: string) => (h[k.toLowerCase()] = v) } as unknown as Response;
      let nexted = false;
      securityHeaders({ tls, formActions: ["https://idp.example"] })({} as Request, res, () => (nexted = true));
      expect(nexted).toBe(true);
      return h;
    };
    const h = headers(true);
    const csp = h["content-security-policy"]!;
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("form-action 'self' https://idp.example");
    expect(csp).not.toContain("unsafe-inline");
    const style = /<style>([^<]*)<\/style>/.exec(errorPage("t", "m"))![1]!;
    expect(csp).toContain(`'sha256-${createHash("sha256").update(style).digest("base64")}'`);
    expect(h["x-frame-options"]).toBe("DENY");
    expect(h["x-content-type-options"]).toBe("nosniff");
    expect(h["referrer-policy"]).toBe("same-origin");
    expect(h["strict-transport-security"]).toMatch(/max-age=\d+/);
    expect(headers(false)["strict-transport-security"]).toBeUndefined();
  });
});
