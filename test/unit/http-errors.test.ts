import express from "express";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { AuthError, BadInputError, ClosedError, NotFoundError, OverloadError, RateLimitedError, UpstreamError, WrongStateError } from "../../config/errors.ts";
import { silentLogger } from "../../config/log.ts";
import { describeError, errorHandler, sendError } from "../../gateway/http/errors.ts";

/** Serve one route that fails with `err` through the gateway's mapping; answer status, headers and body. */
async function answer(fail: (res: express.Response) => void): Promise<{ status: number; headers: Headers; body: unknown }> {
  const app = express();
  app.get("/", (_req, res) => fail(res));
  app.use(errorHandler(silentLogger));
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  try {
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    return { status: r.status, headers: r.headers, body: await r.json() };
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

describe("the one HTTP error mapping", () => {
  it("maps every category, hides credential detail and unknown errors", () => {
    expect(describeError(new BadInputError("not an SDP offer"))).toEqual({ status: 400, error: "bad_input", reason: "not an SDP offer" });
    expect(describeError(new AuthError("UNAUTHORIZED", "jwt expired"))).toEqual({ status: 401, error: "unauthorized", reason: "sign-in required" });
    expect(describeError(new AuthError("FORBIDDEN", "talk not allowed on this camera")).status).toBe(403);
    expect(describeError(new NotFoundError("no such camera")).status).toBe(404);
    expect(describeError(new WrongStateError("x")).status).toBe(409);
    expect(describeError(new ClosedError("x")).status).toBe(410);
    expect(describeError(new UpstreamError("x")).status).toBe(502);
    expect(describeError(new Error("boom at /srv/secret.ts:12"))).toEqual({ status: 500, error: "internal", reason: "internal error" });
  });

  // Sign-in answered OVERLOAD with 429, the rest of the gateway with 503: one mapping now, and the
  // difference is a type (one caller over its limit, or the gateway out of capacity).
  it("regression: OVERLOAD means one thing (503 capacity), a caller's rate limit is 429 — both with Retry-After", async () => {
    expect(describeError(new OverloadError("no free media port")).status).toBe(503);
    expect(describeError(new RateLimitedError("too many failed sign-in attempts", { retryAfterSeconds: 42 }))).toMatchObject({ status: 429, error: "rate_limited", retryAfterSeconds: 42 });
    const full = await answer((res) => sendError(res, new OverloadError("no free media port", { retryAfterSeconds: 2 })));
    expect(full.status).toBe(503);
    expect(full.headers.get("retry-after")).toBe("2");
    const limited = await answer((res) => sendError(res, new RateLimitedError("x", { retryAfterSeconds: 30 })));
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("30");
    expect(limited.body).toEqual({ error: "rate_limited", reason: "too many attempts, try again later" });
  });

  it("challenges every 401 (RFC 6750 §3), with error= only for a presented token", async () => {
    const plain = await answer((res) => sendError(res, new AuthError("UNAUTHORIZED", "not signed in")));
    expect(plain.status).toBe(401);
    expect(plain.headers.get("www-authenticate")).toBe('Bearer realm="gatehouse"');
    const bearer = await answer((res) => sendError(res, new AuthError("UNAUTHORIZED", "bad signature"), { bearerError: "invalid_token" }));
    expect(bearer.headers.get("www-authenticate")).toBe('Bearer realm="gatehouse", error="invalid_token"');
    expect(bearer.body).toEqual({ error: "unauthorized", reason: "sign-in required" });
  });

  it("answers body-parser failures with a reason of ours", async () => {
    const app = express();
    app.post("/json", express.json({ limit: "10b" }), (_req, res) => res.end());
    app.use(errorHandler(silentLogger));
    const server = app.listen(0, "127.0.0.1");
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/json`;
      const big = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ a: "x".repeat(100) }) });
      expect(big.status).toBe(413);
      expect(await big.json()).toEqual({ error: "bad_input", reason: "request body too large" });
      const bad = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toEqual({ error: "bad_input", reason: "malformed request body" });
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });
});
