import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../gateway/auth/rate-limit.ts";

describe("RateLimiter", () => {
  it("blocks a key after max events in the window, until the window ends", () => {
    let t = 1000;
    const rl = new RateLimiter({ max: 3, windowMs: 60_000, clock: () => t });
    rl.hit("ip");
    rl.hit("ip");
    expect(rl.blockedFor("ip")).toBe(0);
    rl.hit("ip");
    expect(rl.blockedFor("ip")).toBe(60_000);
    t += 59_999;
    expect(rl.blockedFor("ip")).toBe(1);
    t += 1;
    expect(rl.blockedFor("ip")).toBe(0);
    rl.hit("ip");
    expect(rl.blockedFor("ip")).toBe(0);
  });

  it("counts keys separately and forgets on reset", () => {
    const rl = new RateLimiter({ max: 1, windowMs: 1000, clock: () => 0 });
    rl.hit("a");
    expect(rl.blockedFor("a")).toBeGreaterThan(0);
    expect(rl.blockedFor("b")).toBe(0);
    rl.reset("a");
    expect(rl.blockedFor("a")).toBe(0);
  });

  it("bounds memory by dropping the least recently touched keys", () => {
    const rl = new RateLimiter({ max: 1, windowMs: 1000, clock: () => 0, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) rl.hit(`k${i}`);
    expect(rl.size).toBe(100);
    expect(rl.blockedFor("k999")).toBeGreaterThan(0);
    expect(rl.blockedFor("k0")).toBe(0);
  });
});
