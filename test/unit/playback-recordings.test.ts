/**
 * The recordings model of the timeline: continuous over the retention window, minus the gaps the
 * playback engine learned; the API's answer and its query parsing.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BadInputError, NotFoundError } from "../../config/errors.ts";
import { MAX_QUERY_SPAN_MS, RetentionRecordings, parseTime, type TimeRange } from "../../gateway/playback/recordings.ts";

const H = 3600_000;
const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);

function model(now = { t: NOW }, max?: number) {
  return new RetentionRecordings({
    clock: () => now.t,
    retentionOf: (id) => (id === "cam" ? 24 * H : id === "other" ? 2 * H : undefined),
    ...(max !== undefined ? { maxGapsPerCamera: max } : {}),
  });
}

describe("RetentionRecordings", () => {
  it("is continuous over the retention window, clipped to it", () => {
    const m = model();
    expect(m.window("cam")).toEqual({ start: NOW - 24 * H, end: NOW });
    expect(m.ranges("cam", NOW - 48 * H, NOW + H)).toEqual([{ start: NOW - 24 * H, end: NOW }]);
    expect(m.ranges("cam", NOW - 2 * H, NOW - H)).toEqual([{ start: NOW - 2 * H, end: NOW - H }]);
    expect(m.ranges("cam", NOW - 30 * H, NOW - 25 * H)).toEqual([]);
    expect(m.has("cam")).toBe(true);
    expect(m.has("none")).toBe(false);
    expect(() => m.ranges("none", 0, NOW)).toThrow(NotFoundError);
  });

  it("cuts learned gaps out, merges touching ones, and fills them again when media is found there", () => {
    const m = model();
    m.learn("cam", { start: NOW - 5 * H, end: NOW - 4 * H }, false);
    m.learn("cam", { start: NOW - 4 * H, end: NOW - 3.5 * H }, false); // touches: one gap 5 h … 3.5 h ago
    m.learn("cam", { start: NOW - 10 * H, end: NOW - 9 * H }, false);
    m.learn("other", { start: NOW - H, end: NOW - 0.5 * H }, false); // another camera's gap stays its own
    expect(m.ranges("cam", NOW - 12 * H, NOW)).toEqual([
      { start: NOW - 12 * H, end: NOW - 10 * H },
      { start: NOW - 9 * H, end: NOW - 5 * H },
      { start: NOW - 3.5 * H, end: NOW },
    ]);
    // The recorder delivered 4.5 … 4 h ago after all: the gap splits.
    m.learn("cam", { start: NOW - 4.5 * H, end: NOW - 4 * H }, true);
    expect(m.ranges("cam", NOW - 6 * H, NOW - 3 * H)).toEqual([
      { start: NOW - 6 * H, end: NOW - 5 * H },
      { start: NOW - 4.5 * H, end: NOW - 4 * H },
      { start: NOW - 3.5 * H, end: NOW - 3 * H },
    ]);
    expect(m.ranges("other", NOW - 2 * H, NOW)).toEqual([
      { start: NOW - 2 * H, end: NOW - H },
      { start: NOW - 0.5 * H, end: NOW },
    ]);
  });

  it("ignores unusable ranges, forgets gaps that left the window, and keeps at most the configured number", () => {
    const now = { t: NOW };
    const m = model(now, 3);
    for (const bad of [{ start: 5, end: 5 }, { start: 9, end: 1 }, { start: Number.NaN, end: 1 }, { start: 0, end: Infinity }]) m.learn("cam", bad, false);
    expect(m.ignored).toBe(4);
    expect(m.ranges("cam", 0, NOW)).toEqual([{ start: NOW - 24 * H, end: NOW }]);
    for (let i = 1; i <= 5; i++) m.learn("cam", { start: NOW - i * H, end: NOW - i * H + 60_000 }, false);
    // Five gaps learned, three kept: the newest.
    expect(m.ranges("cam", NOW - 6 * H, NOW).length).toBe(4);
    now.t += 30 * H;
    m.learn("cam", { start: now.t - H, end: now.t - H + 1000 }, false);
    expect(m.ranges("cam", now.t - 24 * H, now.t)).toEqual([
      { start: now.t - 24 * H, end: now.t - H },
      { start: now.t - H + 1000, end: now.t },
    ]);
  });

  it("keeps ranges disjoint, sorted, inside the window and clear of every gap whatever is learned (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ a: fc.integer({ min: 0, max: 1000 }), b: fc.integer({ min: 0, max: 1000 }), present: fc.boolean() }), { maxLength: 30 }),
        (ops) => {
          const m = model();
          const unit = (24 * H) / 1000;
          const gaps: boolean[] = Array.from({ length: 1000 }, () => false);
          for (const { a, b, present } of ops) {
            const [s, e] = a < b ? [a, b] : [b, a];
            m.learn("cam", { start: NOW - 24 * H + s * unit, end: NOW - 24 * H + e * unit }, present);
            for (let i = s; i < e; i++) gaps[i] = !present;
          }
          const ranges: TimeRange[] = m.ranges("cam", NOW - 24 * H, NOW);
          for (let i = 0; i < ranges.length; i++) {
            expect(ranges[i]!.end).toBeGreaterThan(ranges[i]!.start);
            if (i > 0) expect(ranges[i]!.start).toBeGreaterThan(ranges[i - 1]!.end - 1);
          }
          // Each unit slot is covered exactly when no gap was last learned there.
          for (let i = 0; i < 1000; i++) {
            const mid = NOW - 24 * H + (i + 0.5) * unit;
            const covered = ranges.some((r) => r.start <= mid && mid < r.end);
            expect(covered).toBe(!gaps[i]);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("answers the API: ISO times, the retention window, and 400s for bad queries", () => {
    const m = model();
    m.learn("cam", { start: NOW - 2 * H, end: NOW - H }, false);
    expect(m.answer("cam", { from: new Date(NOW - 3 * H).toISOString(), to: String(NOW) })).toEqual({
      ranges: [
        { start: new Date(NOW - 3 * H).toISOString(), end: new Date(NOW - 2 * H).toISOString() },
        { start: new Date(NOW - H).toISOString(), end: new Date(NOW).toISOString() },
      ],
      source: "retention",
      retention: { from: new Date(NOW - 24 * H).toISOString(), to: new Date(NOW).toISOString() },
    });
    expect(m.answer("cam", {}).ranges).toHaveLength(2); // default: the whole window
    expect(() => m.answer("cam", { from: String(NOW), to: String(NOW - 1) })).toThrow(BadInputError);
    expect(() => m.answer("cam", { from: String(NOW - MAX_QUERY_SPAN_MS - 1), to: String(NOW) })).toThrow(BadInputError);
    expect(() => m.answer("cam", { from: ["a", "b"] })).toThrow(BadInputError);
    expect(() => m.answer("nope", {})).toThrow(NotFoundError);
  });

  it("parses query times: ISO 8601 with a zone, dates, epoch ms; refuses local times and junk", () => {
    expect(parseTime("2026-12-06T10:15:00Z", "from")).toBe(Date.UTC(2026, 11, 6, 10, 15));
    expect(parseTime("2026-12-06T11:15:00+01:00", "from")).toBe(Date.UTC(2026, 11, 6, 10, 15));
    expect(parseTime("2026-12-06", "from")).toBe(Date.UTC(2026, 11, 6));
    expect(parseTime("1765016100000", "from")).toBe(1765016100000);
    for (const bad of ["2026-12-06T10:15:00", "yesterday", "", "2026-13-45T10:00:00Z", "1".repeat(50), undefined, 5])
      expect(() => parseTime(bad, "from"), String(bad)).toThrow(BadInputError);
  });
});
