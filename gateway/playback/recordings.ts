/**
 * What each camera's recorder holds, for the timeline (`GET /api/cameras/:id/recordings`).
 *
 * Where a camera's recorder offers ONVIF recording search (`playback.search`, search.ts) it
 * answers; otherwise, or when it fails, the model is the retention window: a camera's
 * recorder is taken to hold everything from `now − retention` to `now`, except the gaps the
 * playback engine has learned from the recorder's own answers (a PLAY at a time it had nothing
 * for, a jump over a hole, the end of a contiguous section). The answer says which model it is
 * (`source: "retention"` or `"onvif-search"`).
 *
 * The playback engine tells the index what it learns through `RecordingIndex.learn`:
 *
 *   index.learn(cameraId, { start, end }, false)  // the recorder had nothing in [start, end)
 *   index.learn(cameraId, { start, end }, true)   // it delivered media covering [start, end)
 *
 * Learning "present" clears any gap it overlaps (a recorder that was still writing, a gap guessed
 * too wide). Gaps before the retention window are forgotten; at most `maxGapsPerCamera` are kept
 * (the oldest go first). Pure: an injected clock, no I/O.
 */

import { BadInputError, NotFoundError } from "../../config/errors.ts";

/** A span of recorded time, epoch ms, end exclusive. */
export interface TimeRange {
  start: number;
  end: number;
}

/** What the playback engine tells the timeline about a recorder's answers. */
export interface RecordingIndex {
  /**
   * `present`: the recorder delivered media covering `range`; false: it had nothing there. A range
   * that is empty, reversed or not finite is ignored (counted in `ignored`).
   */
  learn(cameraId: string, range: TimeRange, present: boolean): void;
}

/** The recordings API's answer (times as ISO 8601 UTC strings). */
export interface RecordingsAnswer {
  /** What the recorder holds within the asked span, oldest first, disjoint. */
  ranges: { start: string; end: string }[];
  source: "onvif-search" | "retention";
  /** The whole retention window now (with ONVIF search: the recording's earliest and latest). */
  retention: { from: string; to: string };
  /** Why ONVIF search, configured for this camera, did not answer (the retention model answered instead). */
  searchError?: string;
}

export interface RetentionRecordingsOptions {
  /** Wall clock, epoch ms. */
  clock: () => number;
  /** How far back a camera's recorder keeps video, ms; undefined: the camera has no recordings. */
  retentionOf: (cameraId: string) => number | undefined;
  /** Learned gaps kept per camera. Default 10000. */
  maxGapsPerCamera?: number;
}

/** Longest span one query may ask for: a little over a month. */
export const MAX_QUERY_SPAN_MS = 32 * 24 * 3600_000;

export class RetentionRecordings implements RecordingIndex {
  /** Times `learn` was given something unusable. */
  ignored = 0;
  private readonly clock: () => number;
  private readonly retentionOf: (cameraId: string) => number | undefined;
  private readonly maxGaps: number;
  /** Per camera: disjoint gaps, sorted by start. */
  private readonly gaps = new Map<string, TimeRange[]>();

  constructor(o: RetentionRecordingsOptions) {
    this.clock = o.clock;
    this.retentionOf = o.retentionOf;
    this.maxGaps = o.maxGapsPerCamera ?? 10_000;
  }

  /** Whether the camera has recordings at all (a retention window). */
  has(cameraId: string): boolean {
    return this.retentionOf(cameraId) !== undefined;
  }

  /** The retention window now, or undefined for a camera without recordings. */
  window(cameraId: string): TimeRange | undefined {
    const retention = this.retentionOf(cameraId);
    if (retention === undefined) return undefined;
    const now = this.clock();
    return { start: now - retention, end: now };
  }

  learn(cameraId: string, range: TimeRange, present: boolean): void {
    const { start, end } = range;
    if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) {
      this.ignored++;
      return;
    }
    const list = this.gaps.get(cameraId) ?? [];
    const next = present ? subtract(list, start, end) : insert(list, start, end);
    const win = this.window(cameraId);
    // Forget what fell out of the window, and the oldest beyond the bound.
    const kept = (win ? next.filter((g) => g.end > win.start) : next).slice(-this.maxGaps);
    if (kept.length > 0) this.gaps.set(cameraId, kept);
    else this.gaps.delete(cameraId);
  }

  /** What the recorder holds in [from, to), clipped to the retention window. Throws NotFoundError without recordings. */
  ranges(cameraId: string, from: number, to: number): TimeRange[] {
    const win = this.window(cameraId);
    if (!win) throw new NotFoundError("this camera has no recordings");
    const start = Math.max(from, win.start);
    const end = Math.min(to, win.end);
    if (end <= start) return [];
    let ranges: TimeRange[] = [{ start, end }];
    for (const g of this.gaps.get(cameraId) ?? []) {
      if (g.end <= start) continue;
      if (g.start >= end) break;
      ranges = subtract(ranges, g.start, g.end);
    }
    return ranges;
  }

  /** The API's answer for `?from=&to=` (raw query values; defaults: the whole window). */
  answer(cameraId: string, query: { from?: unknown; to?: unknown }): RecordingsAnswer {
    const win = this.window(cameraId);
    if (!win) throw new NotFoundError("this camera has no recordings");
    const { start: from, end: to } = querySpan(win, query);
    return {
      ranges: this.ranges(cameraId, from, to).map((r) => ({ start: iso(r.start), end: iso(r.end) })),
      source: "retention",
      retention: { from: iso(win.start), to: iso(win.end) },
    };
  }
}

/** The span a query asks for (defaults: the window); throws BadInputError for a bad or too long one. */
export function querySpan(win: TimeRange, query: { from?: unknown; to?: unknown }): TimeRange {
  const to = query.to === undefined ? win.end : parseTime(query.to, "to");
  const from = query.from === undefined ? Math.min(win.start, to) : parseTime(query.from, "from");
  if (to < from) throw new BadInputError("'to' is before 'from'");
  if (to - from > MAX_QUERY_SPAN_MS) throw new BadInputError("ask for at most 32 days at once");
  return { start: from, end: to };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A query time: ISO 8601 with a zone (or a date), or epoch ms. */
export function parseTime(v: unknown, name: string): number {
  if (typeof v !== "string" || v === "" || v.length > 40) throw new BadInputError(`'${name}' must be an ISO 8601 time or epoch milliseconds`);
  if (/^\d{1,15}$/.test(v)) return Number(v);
  // A time without a zone would be read in the gateway's own zone: refuse the ambiguity.
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/.test(v)) throw new BadInputError(`'${name}' must be an ISO 8601 time with a zone (…Z) or epoch milliseconds`);
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw new BadInputError(`'${name}' is not a valid time`);
  return ms;
}

/** `list` (disjoint, sorted) with [start, end) added, merging what touches it. */
function insert(list: readonly TimeRange[], start: number, end: number): TimeRange[] {
  const out: TimeRange[] = [];
  let s = start;
  let e = end;
  let placed = false;
  for (const g of list) {
    if (g.end < s) out.push(g);
    else if (g.start > e) {
      if (!placed) {
        out.push({ start: s, end: e });
        placed = true;
      }
      out.push(g);
    } else {
      s = Math.min(s, g.start);
      e = Math.max(e, g.end);
    }
  }
  if (!placed) out.push({ start: s, end: e });
  return out;
}

/** `list` (disjoint, sorted) with [start, end) taken out. */
function subtract(list: readonly TimeRange[], start: number, end: number): TimeRange[] {
  const out: TimeRange[] = [];
  for (const g of list) {
    if (g.end <= start || g.start >= end) {
      out.push(g);
      continue;
    }
    if (g.start < start) out.push({ start: g.start, end: start });
    if (g.end > end) out.push({ start: end, end: g.end });
  }
  return out;
}
