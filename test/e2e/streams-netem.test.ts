/**
 * Auto quality over a real bottleneck (test/peers/streams-netem.ts): the gateway in one
 * network namespace, Chromium playing the camera opened large in another, `tc netem`
 * between them. At 1 Mbit/s with 5 % loss and 300 ms round trip the viewer steps down to
 * the substream within 5 s without a freeze over 1 s (the page's framesDecoded, sampled
 * every 50 ms), stays there while the limit holds, and steps back up within 20 s once
 * the rate limit is lifted. Each stream is pulled once, and only while watched.
 */
import { describe, expect, it } from "vitest";
import { runNetemScenario } from "../peers/streams-netem.ts";

describe("Auto quality over a shaped link", () => {
  it("steps main → sub within 5 s at 1 Mbit/s, 5 % loss, 300 ms RTT without a freeze over 1 s, and back up within 20 s", async () => {
    const r = await runNetemScenario();
    console.log(`streams netem: ${JSON.stringify({ ...r, trace: undefined })}\n${r.trace.join("\n")}`);
    expect(r.startWidth).toBe(1280);
    expect(r.downServerS).toBeLessThanOrEqual(5);
    expect(r.downPageS).toBeLessThanOrEqual(5);
    expect(r.widthLimited).toBe(640);
    // At most one try of the main stream while limited (up and back down), backed off after: no oscillation.
    expect(r.switchesWhileLimited).toBeLessThanOrEqual(3);
    expect(r.upServerS).toBeLessThanOrEqual(20);
    expect(r.upPageS).toBeLessThanOrEqual(20);
    expect(r.freezeMaxMs).toBeLessThanOrEqual(1000);
    // One pull per stream whatever happens, and the main stream released while only the substream is watched.
    expect(r.maxSessions).toEqual({ main: 1, sub: 1 });
    expect(r.mainReleased).toBe(true);
  }, 240_000);
});
