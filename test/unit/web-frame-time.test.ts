/** The page's choice of the time shown under a tile, a pure helper of web/stats.js. */
import { describe, expect, it } from "vitest";
// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const STATS_JS: string = "../../web/stats.js";
const { frameWallClock, NTP_UNIX_MS } = (await import(STATS_JS)) as {
  frameWallClock: (playoutNtpMs: number, nowMs: number) => { wallMs: number; from: "sender" | "arrival" };
  NTP_UNIX_MS: number;
};

describe("frameWallClock: the time shown for the frame on screen", () => {
  const now = Date.UTC(2026, 11, 6, 22, 0, 0);

  it("is the sender's time when Chromium has mapped it, even an hour off", () => {
    expect(frameWallClock(NTP_UNIX_MS + now - 3_600_000, now)).toEqual({ wallMs: now - 3_600_000, from: "sender" });
    expect(frameWallClock(NTP_UNIX_MS + now + 86_400_000, now)).toEqual({ wallMs: now + 86_400_000, from: "sender" });
  });

  it("is the arrival time with no mapping yet, or a sender clock that was never set", () => {
    expect(frameWallClock(0, now)).toEqual({ wallMs: now, from: "arrival" });
    // Running time since start, counted from 1900 or from 1970.
    expect(frameWallClock(12_345, now)).toEqual({ wallMs: now, from: "arrival" });
    expect(frameWallClock(NTP_UNIX_MS + 5_000, now)).toEqual({ wallMs: now, from: "arrival" });
  });
});
