/**
 * K lightweight WebRTC receivers (test/peers/light-viewer.ts) in ONE process, apart
 * from the gateway under test, so that the gateway's /proc CPU holds only its own work
 * and this process's CPU shows whether the receivers kept up.
 *
 * Commands (IPC, see lib/child.ts):
 *   add { n, target, concurrency?, attempts?, budgetMs? } → connect n more receivers, each
 *        until its first RTP (default 4 at a time, 2 attempts each, no new attempt after
 *        budgetMs); reports failures, retries and receivers skipped for lack of time
 *        target: { kind: "whep", url }                       our gateway (we offer)
 *              | { kind: "janus", api, mountpoint }          Janus streaming plugin (it offers)
 *   closeAll                        → end every receiver (WHEP DELETE / Janus detach)
 *   mark                            → start a counting window
 *   read                            → packets, expected, lost over the window, per-viewer spread
 *   close
 *
 * Every receiver sends an RTCP receiver report about once a second (the gateway closes
 * viewers that stay silent, as a vanished browser tab would be).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { openJanusSession, type JanusSession } from "../../peers/janus.ts";
import { playJanusWatch, playWhep, type LightViewer } from "../../peers/light-viewer.ts";
import { serve } from "../lib/child.ts";
import { percentile, round } from "../lib/stats.ts";
import { windowOf, type SeqSnapshot } from "../lib/seq.ts";

type Target = { kind: "whep"; url: string } | { kind: "janus"; api: string; mountpoint: number };

interface AddArg {
  n: number;
  target: Target;
  /** Connections in flight at once. Default 4. */
  concurrency?: number;
  /** Attempts per receiver. Default 2. */
  attempts?: number;
  /** No new connection starts after this long, ms. Default unlimited. */
  budgetMs?: number;
}

interface Entry {
  viewer: LightViewer;
  end: () => Promise<void>;
  mark: { snap: SeqSnapshot; packets: number; bytes: number };
}

const entries: Entry[] = [];
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
let janus: { api: string; mountpoint: number; session: JanusSession } | undefined;

const rr = setInterval(() => {
  for (const e of entries) e.viewer.sendReceiverReport();
}, 1000);

const EMPTY: SeqSnapshot = { received: 0, expected: 0, duplicates: 0, reordered: 0 };

function snapOf(v: LightViewer): SeqSnapshot {
  return v.main?.snapshot() ?? EMPTY;
}

async function connectOne(target: Target): Promise<Entry> {
  if (target.kind === "whep") {
    const { viewer, end } = await playWhep(target.url);
    return { viewer, end, mark: { snap: snapOf(viewer), packets: 0, bytes: 0 } };
  }
  if (!janus || janus.api !== target.api || janus.mountpoint !== target.mountpoint) {
    await janus?.session.destroy();
    janus = { api: target.api, mountpoint: target.mountpoint, session: await openJanusSession(target.api, target.mountpoint) };
  }
  const { viewer, end } = await playJanusWatch(await janus.session.watch());
  return { viewer, end, mark: { snap: snapOf(viewer), packets: 0, bytes: 0 } };
}

async function add(arg: AddArg) {
  const t0 = performance.now();
  const errors: string[] = [];
  const connectMs: number[] = [];
  const firstMs: number[] = [];
  let next = 0;
  let failed = 0;
  let retried = 0;
  const deadline = t0 + (arg.budgetMs ?? Infinity);
  const worker = async () => {
    while (next < arg.n && performance.now() < deadline) {
      next++;
      // A loaded gateway may drop a negotiation: one retry, as a browser's reconnect would.
      for (let attempt = 1; ; attempt++) {
        try {
          const e = await connectOne(arg.target);
          entries.push(e);
          connectMs.push(e.viewer.connectMs);
          firstMs.push(e.viewer.firstPacketMs);
          break;
        } catch (err) {
          errors.push(err instanceof Error ? err.message : String(err));
          if (attempt >= (arg.attempts ?? 2)) {
            failed++;
            break;
          }
          retried++;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(arg.concurrency ?? 4, arg.n) }, worker));
  return {
    total: entries.length,
    added: connectMs.length,
    failed,
    retried,
    /** Not attempted: the time budget ran out. */
    skipped: arg.n - connectMs.length - failed,
    errors: [...new Set(errors)].slice(0, 5),
    wallMs: Math.round(performance.now() - t0),
    connectMsP50: round(percentile(connectMs, 50)),
    firstPacketMsP50: round(percentile(firstMs, 50)),
  };
}

async function closeAll() {
  const all = entries.splice(0);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(16, all.length) }, async () => {
      while (next < all.length) await all[next++]!.end().catch(() => {});
    }),
  );
  return { closed: all.length };
}

function mark() {
  for (const e of entries) e.mark = { snap: snapOf(e.viewer), packets: e.viewer.packets, bytes: e.viewer.bytes };
  loop.reset();
  return { viewers: entries.length };
}

function read() {
  let packets = 0;
  let bytes = 0;
  let expected = 0;
  let lost = 0;
  let duplicates = 0;
  let silent = 0;
  let worstLoss = 0;
  const perViewer: number[] = [];
  for (const e of entries) {
    const w = windowOf(e.mark.snap, snapOf(e.viewer));
    const p = e.viewer.packets - e.mark.packets;
    packets += p;
    bytes += e.viewer.bytes - e.mark.bytes;
    expected += w.expected;
    lost += w.lost;
    duplicates += w.duplicates;
    perViewer.push(p);
    if (p === 0) silent++;
    if (w.expected > 0) worstLoss = Math.max(worstLoss, w.lost / w.expected);
  }
  return {
    viewers: entries.length,
    packets,
    bytes,
    expected,
    lost,
    duplicates,
    silent,
    lossFraction: expected > 0 ? lost / expected : 0,
    worstViewerLoss: worstLoss,
    perViewerMin: perViewer.length ? Math.min(...perViewer) : 0,
    perViewerMax: perViewer.length ? Math.max(...perViewer) : 0,
    loopDelayMaxMs: round(loop.max / 1e6, 2),
    loopDelayP99Ms: round(loop.percentile(99) / 1e6, 2),
  };
}

serve(
  {
    add: (arg) => add(arg as AddArg),
    closeAll: () => closeAll(),
    mark: () => mark(),
    read: () => read(),
    close: async () => {
      clearInterval(rr);
      await closeAll();
      await janus?.session.destroy();
    },
  },
  { pid: process.pid },
);
