/**
 * Where media runs: the ICE port range split into one slice per worker, and which
 * worker takes the next viewer.
 *
 * A new viewer goes to the running worker with the fewest viewers, whatever its
 * camera, so one busy camera uses every core. A slot whose worker is down (restarting
 * after a failure, or stopped for good by its restart policy) takes nobody.
 */
import { OverloadError } from "../../config/errors.ts";

/** Inclusive sub-ranges of `range`, one per worker. */
export function splitPortRange(range: [number, number], n: number): [number, number][] {
  const [lo, hi] = range;
  const size = Math.floor((hi - lo + 1) / n);
  if (size < 1) throw new RangeError(`ICE port range ${lo}-${hi} is too small for ${n} media workers`);
  return Array.from({ length: n }, (_, i) => [lo + i * size, i === n - 1 ? hi : lo + (i + 1) * size - 1] as [number, number]);
}

/** What placement needs to know of a worker. */
export interface Placeable {
  readonly viewers: number;
  /** Running and taking viewers. */
  readonly accepting: boolean;
}

/**
 * The accepting worker with the fewest viewers (the lowest index on a tie).
 * @throws OverloadError when no worker is running (503 with Retry-After to a WHEP client)
 */
export function leastLoaded<W extends Placeable>(workers: readonly W[], retryAfterSeconds = 2): W {
  let best: W | undefined;
  for (const w of workers) if (w.accepting && (!best || w.viewers < best.viewers)) best = w;
  if (!best) throw new OverloadError("no media worker is running", { retryAfterSeconds });
  return best;
}
