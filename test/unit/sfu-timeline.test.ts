import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { MAX_SEQ_JUMP, TrackTimeline, Verdict } from "../../sfu/timeline.ts";

describe("TrackTimeline", () => {
  it("passes the first session through and reports upstream loss", () => {
    const tl = new TrackTimeline(90000);
    expect(tl.map(7, 100, 5000, 0)).toBe(Verdict.FORWARD);
    expect([tl.outTs, tl.lost, tl.newSession]).toEqual([5000, 0, true]);
    expect(tl.map(7, 101, 8600, 40)).toBe(Verdict.FORWARD);
    expect([tl.outTs, tl.lost, tl.newSession]).toEqual([8600, 0, false]);
    expect(tl.map(7, 104, 12200, 80)).toBe(Verdict.FORWARD);
    expect(tl.lost).toBe(2);
  });

  it("drops duplicates and late packets, and handles sequence wraparound", () => {
    const tl = new TrackTimeline(8000);
    tl.map(1, 65534, 0, 0);
    expect(tl.map(1, 65534, 0, 0)).toBe(Verdict.DUPLICATE);
    expect(tl.map(1, 65535, 160, 20)).toBe(Verdict.FORWARD);
    expect(tl.map(1, 0, 320, 40)).toBe(Verdict.FORWARD);
    expect(tl.lost).toBe(0);
    expect(tl.map(1, 65535, 160, 40)).toBe(Verdict.LATE);
  });

  it("continues a new SSRC from the last output timestamp plus the wall-clock gap", () => {
    const tl = new TrackTimeline(90000);
    tl.map(1, 10, 1_000_000, 1000);
    tl.map(1, 11, 1_003_600, 1040);
    // Reconnect 700 ms after the last frame began: new SSRC, unrelated seq and ts.
    expect(tl.map(2, 40000, 77, 1740)).toBe(Verdict.FORWARD);
    expect(tl.newSession).toBe(true);
    expect(tl.outTs).toBe(1_003_600 + 700 * 90);
    expect(tl.lost).toBe(0);
    // And follows the new session's own spacing afterwards.
    tl.map(2, 40001, 77 + 3600, 1780);
    expect(tl.outTs).toBe(1_003_600 + 700 * 90 + 3600);
    expect(tl.sessions).toBe(2);
  });

  it("rebases after endSession even with the same SSRC, by at least one tick", () => {
    const tl = new TrackTimeline(8000);
    tl.map(5, 1, 0xfffffff0, 0);
    tl.endSession();
    tl.map(5, 2, 123, 0);
    expect(tl.newSession).toBe(true);
    expect(tl.outTs).toBe((0xfffffff0 + 1) >>> 0);
  });

  it("treats huge sequence or timestamp jumps inside one SSRC as a restart", () => {
    const tl = new TrackTimeline(90000);
    tl.map(1, 100, 0, 0);
    tl.map(1, 100 + MAX_SEQ_JUMP + 1, 90, 10);
    expect(tl.newSession).toBe(true);
    expect(tl.jumps).toBe(1);
    expect(tl.outTs).toBe(10 * 90);
    // A 20 s timestamp jump with a normal sequence step: rebase the clock, keep the sequence.
    tl.map(1, 100 + MAX_SEQ_JUMP + 2, 90 + 20 * 90000, 50);
    expect(tl.newSession).toBe(false);
    expect(tl.jumps).toBe(2);
    expect(tl.outTs).toBe(10 * 90 + 40 * 90);
  });

  it("never moves the output timestamp backwards across sessions (property)", () => {
    const session = fc.record({
      ssrc: fc.integer({ min: 1, max: 0xffffffff }),
      seq: fc.integer({ min: 0, max: 0xffff }),
      ts: fc.integer({ min: 0, max: 0xffffffff }),
      frames: fc.integer({ min: 1, max: 30 }),
      pauseMs: fc.integer({ min: 0, max: 5000 }),
    });
    fc.assert(
      fc.property(fc.array(session, { minLength: 1, maxLength: 6 }), (sessions) => {
        const tl = new TrackTimeline(90000);
        let now = 0;
        let last: number | undefined;
        for (const s of sessions) {
          now += s.pauseMs;
          tl.endSession();
          for (let f = 0; f < s.frames; f++) {
            now += 40;
            expect(tl.map(s.ssrc, (s.seq + f) & 0xffff, (s.ts + f * 3600) >>> 0, now)).toBe(Verdict.FORWARD);
            if (last !== undefined) {
              const d = (tl.outTs - last) | 0;
              expect(d).toBeGreaterThan(0);
              if (f > 0) expect(d).toBe(3600);
            }
            last = tl.outTs;
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
