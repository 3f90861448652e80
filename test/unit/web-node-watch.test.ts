/** The web client's watch on the gateway process behind its event stream (web/node-watch.js), on fake timers. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

// web/ is plain JavaScript for the browser, without declarations: typed here at the import.
const NODE_WATCH_JS: string = "../../web/node-watch.js";
interface NodeWatchLike {
  readonly id: string;
  reached(id: string): void;
  dropped(): void;
  close(): void;
}
const { NodeWatch } = (await import(NODE_WATCH_JS)) as { NodeWatch: new (onLost: () => void, opts?: { lostAfterMs?: number }) => NodeWatchLike };

describe("NodeWatch", () => {
  let lost: number;
  let w: NodeWatchLike;
  beforeEach(() => {
    vi.useFakeTimers();
    lost = 0;
    w = new NodeWatch(() => lost++, { lostAfterMs: 2500 });
  });
  afterEach(() => vi.useRealTimers());

  it("a stream that comes back from another gateway process: lost at that moment, once", () => {
    w.reached("a");
    w.dropped();
    vi.advanceTimersByTime(1100);
    expect(lost).toBe(0);
    w.reached("b");
    expect(lost).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(lost).toBe(1);
    expect(w.id).toBe("b");
  });

  it("a stream that comes back from the same process: nothing lost (a dropped connection only)", () => {
    w.reached("a");
    w.dropped();
    w.dropped();
    vi.advanceTimersByTime(1000);
    w.reached("a");
    vi.advanceTimersByTime(10_000);
    expect(lost).toBe(0);
  });

  it("a stream that does not come back: lost after lostAfterMs, once (not again while retries fail, nor when another process answers later)", () => {
    w.reached("a");
    w.dropped();
    vi.advanceTimersByTime(2499);
    expect(lost).toBe(0);
    vi.advanceTimersByTime(1);
    expect(lost).toBe(1);
    w.dropped(); // the browser's retries keep failing
    vi.advanceTimersByTime(10_000);
    expect(lost).toBe(1);
    w.reached("b");
    expect(lost).toBe(1);
    // Watched again from the new stream on.
    w.dropped();
    w.reached("c");
    expect(lost).toBe(2);
  });

  it("nothing before the first stream, and nothing after close", () => {
    w.dropped();
    vi.advanceTimersByTime(10_000);
    expect(lost).toBe(0);
    w.reached("a");
    w.dropped();
    w.close();
    vi.advanceTimersByTime(10_000);
    expect(lost).toBe(0);
  });
});
