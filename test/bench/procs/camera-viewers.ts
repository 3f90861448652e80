/**
 * One light WebRTC viewer per camera (test/peers/light-viewer.ts: werift ICE+DTLS, SRTP
 * headers counted, payloads never decrypted), on our gateway (WHEP, one URL per camera)
 * and on Janus (one streaming mountpoint per camera), all in this ONE process, apart from
 * the servers under test, so their /proc CPU holds only their own work.
 *
 * Commands (IPC, see lib/child.ts):
 *   whep  { side, urls }               → one viewer per WHEP URL, each until its first RTP packet
 *   janus { side, api, mountpoints }   → one viewer per mountpoint (Janus offers, we answer)
 *   mark                               → start a counting window
 *   read                               → per side, per camera (in the order added): packets,
 *                                        frames (RTP marker bits), sequence-gap loss over the window
 *   closeAll, close
 *
 * Every viewer sends an RTCP receiver report about once a second (both servers treat a
 * silent viewer as gone).
 */
import { openJanusSession, type JanusSession } from "../../peers/janus.ts";
import { playJanusWatch, playWhep, type LightViewer } from "../../peers/light-viewer.ts";
import { serve } from "../lib/child.ts";
import { windowOf, type SeqSnapshot } from "../lib/seq.ts";

interface Entry {
  side: string;
  viewer: LightViewer;
  end: () => Promise<void>;
  mark: { snap: SeqSnapshot; packets: number; frames: number };
}

/** What one viewer received over the window. */
export interface ViewerWindow {
  packets: number;
  frames: number;
  expected: number;
  lost: number;
}

const EMPTY: SeqSnapshot = { received: 0, expected: 0, duplicates: 0, reordered: 0 };
const entries: Entry[] = [];
const sessions: JanusSession[] = [];

const rr = setInterval(() => {
  for (const e of entries) e.viewer.sendReceiverReport();
}, 1000);

const snapOf = (v: LightViewer) => v.main?.snapshot() ?? EMPTY;
const framesOf = (v: LightViewer) => v.main?.frames ?? 0;
const markOf = (v: LightViewer) => ({ snap: snapOf(v), packets: v.packets, frames: framesOf(v) });

/**
 * Runs `connect` for every item, `concurrency` at a time, two attempts each (a loaded
 * server may drop a negotiation, as a browser would retry). Entries keep the item order.
 */
async function connectAll<T>(side: string, items: readonly T[], connect: (item: T) => Promise<Omit<Entry, "side" | "mark">>, concurrency = 4) {
  const t0 = performance.now();
  const got: Array<Entry | undefined> = new Array(items.length);
  const errors: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      for (let attempt = 1; attempt <= 2; attempt++) {
        try {
          const e = await connect(items[i]!);
          got[i] = { ...e, side, mark: markOf(e.viewer) };
          break;
        } catch (err) {
          errors.push(`#${i + 1}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  const ok = got.filter((e): e is Entry => e !== undefined);
  entries.push(...ok);
  if (ok.length < items.length) {
    throw new Error(`${side}: ${items.length - ok.length} of ${items.length} viewers did not connect: ${[...new Set(errors)].slice(0, 4).join("; ")}`);
  }
  return { side, connected: ok.length, retried: errors.length, wallMs: Math.round(performance.now() - t0) };
}

async function whep(arg: { side: string; urls: string[] }) {
  return connectAll(arg.side, arg.urls, (url) => playWhep(url));
}

async function janus(arg: { side: string; api: string; mountpoints: number[] }) {
  const session = await openJanusSession(arg.api, arg.mountpoints[0] ?? 1);
  sessions.push(session);
  return connectAll(arg.side, arg.mountpoints, async (mountpoint) => playJanusWatch(await session.watch({ mountpoint })));
}

function mark() {
  for (const e of entries) e.mark = markOf(e.viewer);
  return { viewers: entries.length };
}

function read(): Record<string, ViewerWindow[]> {
  const out: Record<string, ViewerWindow[]> = {};
  for (const e of entries) {
    const w = windowOf(e.mark.snap, snapOf(e.viewer));
    (out[e.side] ??= []).push({
      packets: e.viewer.packets - e.mark.packets,
      frames: framesOf(e.viewer) - e.mark.frames,
      expected: w.expected,
      lost: w.lost,
    });
  }
  return out;
}

async function closeAll() {
  const all = entries.splice(0);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(16, all.length) }, async () => {
      while (next < all.length) await all[next++]!.end().catch(() => {});
    }),
  );
  for (const s of sessions.splice(0)) await s.destroy().catch(() => {});
  return { closed: all.length };
}

serve(
  {
    whep: (arg) => whep(arg as { side: string; urls: string[] }),
    janus: (arg) => janus(arg as { side: string; api: string; mountpoints: number[] }),
    mark: () => mark(),
    read: () => read(),
    closeAll: () => closeAll(),
    close: async () => {
      clearInterval(rr);
      await closeAll();
    },
  },
  { pid: process.pid },
);
