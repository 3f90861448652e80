/**
 * Auto quality over a real bottleneck (test/peers/streams-netem.ts): the gateway in one
 * network namespace, Chromium playing the camera opened large (main stream, Auto) in
 * another, the link between them shaped as `tc netem` would (test/peers/netns.ts). At
 * 1 Mbit/s with 5 % loss and 300 ms round trip the viewer steps down to the substream
 * within 5 s, stays there while the limit holds, and steps back up to the main stream within
 * 20 s of the rate limit being lifted (loss and delay stay). Each stream is pulled once, and
 * only while watched.
 *
 * The target is no freeze over 1 s (Chromium's own freeze counters, and the page's
 * framesDecoded sampled every 50 ms). It is NOT met yet: the longest freeze, always at the step
 * down, measured 853–2,200 ms on this code (the recorder's burst and about 0.7 s of the main
 * stream sit in the 1 Mbit/s queue before the first report can show it, and a lost packet's
 * resend waits behind them). This test holds it within 3 s, so that it does not grow back to
 * the 5 s seen before the step down started from the substream's cached pictures.
 */
import { describe, expect, it } from "vitest";
import { runNetemScenario } from "../peers/streams-netem.ts";

describe("Auto quality over a shaped link", () => {
  it("steps main → sub within 5 s at 1 Mbit/s, 5 % loss, 300 ms RTT, and back up within 20 s; the longest freeze held within 3 s", async () => {
    const r = await runNetemScenario();
    console.log(`streams netem: ${JSON.stringify({ ...r, trace: undefined })}\n${r.trace.join("\n")}`);
    expect(r.startWidth).toBe(1280);
    // Down: the gateway's switch and the page's first substream frame, within 5 s of the limit.
    expect(r.downServerS).toBeLessThanOrEqual(5);
    expect(r.downPageS).toBeLessThanOrEqual(5);
    expect(r.widthLimited).toBe(640);
    // The longest freeze from the limit to the end (both switches and the limited link included):
    // 3 s here, the 1 s target not being met yet (see above).
    expect(r.freezeCountersMs).toBeLessThanOrEqual(3000);
    expect(r.freezeDecodedMs).toBeLessThanOrEqual(3000);
    // Not back to main while the link cannot carry it: its probes failed without a try of main.
    expect(r.switchesWhileLimited).toBe(1);
    // Up: within 20 s of the limit lifted, at the gateway and in the page.
    expect(r.upServerS).toBeLessThanOrEqual(20);
    expect(r.upPageS).toBeLessThanOrEqual(20);
    // One pull per stream whatever happens, and the main stream released while only the substream is watched.
    expect(r.maxSessions).toEqual({ main: 1, sub: 1 });
    expect(r.mainReleased).toBe(true);
  }, 240_000);
});
