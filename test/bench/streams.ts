/**
 * Auto quality over a shaped link (test/peers/streams-netem.ts: gateway and Chromium in
 * two network namespaces, 150 ms each way; the link to the browser limited to 1 Mbit/s
 * with 5 % loss for 10 s, then the rate limit lifted):
 *
 * - `adapt_down_s`: limit → the page decodes the substream (640 wide);
 * - `adapt_up_s`: limit lifted → the page decodes the main stream again (1280 wide);
 * - `switch_freeze_ms_max`: the longest time without a newly decoded frame in the page,
 *   from the limit to the end (both switches and the bottleneck included).
 *
 * Medians over `rounds` (default 3) runs (for the freeze: the median of each run's longest);
 * `switch_freeze_ms_worst` is the longest over all of them.
 */
import { median, round } from "./lib/stats.ts";
import { runNetemScenario, type NetemResult } from "../peers/streams-netem.ts";

export async function benchStreams(o: { rounds?: number; log?: (m: string) => void } = {}): Promise<Record<string, number>> {
  const runs: NetemResult[] = [];
  for (let i = 0; i < (o.rounds ?? 3); i++) {
    const r = await runNetemScenario();
    o.log?.(`streams round ${i + 1}: ${JSON.stringify({ ...r, trace: undefined })}`);
    runs.push(r);
  }
  return {
    adapt_down_s: round(median(runs.map((r) => r.downPageS)), 1),
    adapt_down_server_s: round(median(runs.map((r) => r.downServerS)), 1),
    adapt_up_s: round(median(runs.map((r) => r.upPageS)), 1),
    adapt_up_server_s: round(median(runs.map((r) => r.upServerS)), 1),
    switch_freeze_ms_max: round(median(runs.map((r) => r.freezeMaxMs)), 0),
    switch_freeze_ms_worst: Math.max(...runs.map((r) => r.freezeMaxMs)),
    adapt_switches_while_limited_max: Math.max(...runs.map((r) => r.switchesWhileLimited)),
  };
}
