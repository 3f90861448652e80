/**
 * A media worker thread: one SfuEngine (its viewers' werift peers, SRTP and sockets,
 * and a replica of every camera's source fed with the same ingest) driven by messages
 * from the Sfu facade on the main thread (sfu/worker-pool.ts). Signaling stays on the
 * main thread; this thread only forwards media.
 *
 * It exits by itself after `close`: every socket and timer is released, then the port
 * is closed, and nothing is left to keep the thread alive (the pool checks that).
 */
import { toCloseReason } from "./api.ts";
import { getHeapStatistics } from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import { NotFoundError } from "../config/errors.ts";
import { cameraId, gridSessionId, viewerId } from "../config/ids.ts";
import { SfuEngine } from "./engine.ts";
import { IngestQueue } from "./ingest-queue.ts";
import { fastPath } from "./native/index.ts";
import type { Source } from "./source.ts";
import type { Viewer } from "./viewer.ts";
import {
  errorToWire,
  postingLogger,
  RecordKind,
  type FromWorker,
  type ToWorker,
  type WorkerInit,
  type WorkerSnapshot,
} from "./worker-protocol.ts";

/**
 * How often the facade gets fresh stats, ms (building and cloning every viewer's stats
 * costs a few ms per hundred viewers; `Sfu.refreshStats()` asks for one at once).
 */
const SNAPSHOT_MS = 500;

if (!parentPort) throw new Error("sfu/worker.ts runs only as a worker thread");
const port = parentPort;
const init = workerData as WorkerInit;
const post = (m: FromWorker) => port.postMessage(m);
const log = postingLogger(post, init.debugLogs, { worker: init.index });
const engine = new SfuEngine({
  ...stripUndefined(init.options),
  log,
  requestSwitch: (viewer, cam, reason) => post({ t: "viewerWantsSource", id: viewer, cam, reason }),
});
// The main thread posts each ingest batch to every worker in turn. Were this thread's
// wake-up allowed to preempt it (the default policy), the first worker woken would
// take the main thread's core before the batch reached the next one: measured at 100
// viewers on 2 cores, the second worker got its batches 1.6 ms later at the median
// (0.2 ms with SCHED_BATCH). The CPU share is unchanged.
const schedErr = fastPath?.schedBatch() ?? 0;
if (schedErr !== 0) log.warn("media worker keeps the default scheduling policy", { errno: schedErr });
/** The other thread's epoch milliseconds on this thread's performance.now() clock. */
const epochToLocal = -performance.timeOrigin;
const watched = new WeakSet<Source>();
let closing = false;

const snapshotTimer = setInterval(() => post({ t: "snapshot", ...snapshot() }), SNAPSHOT_MS);

port.on("message", (m: ToWorker) => {
  try {
    if (m.t === "media" || m.t === "tracks" || m.t === "down" || m.t === "release") ingest(m);
    else handle(m);
  } catch (err) {
    log.warn("media worker message failed", { type: m.t, err });
  }
});

type IngestMessage = Extract<ToWorker, { t: "media" | "tracks" | "down" | "release" }>;

const ingestQueue = new IngestQueue({
  onRecord: (cam, kind, track, packet, arrival) => {
    if (closing) return;
    const src = source(cam);
    if (kind === RecordKind.RTP) src.pushRtpAt(track, packet, arrival + epochToLocal);
    else src.pushRtcp(track, packet);
  },
  onDropped: (cam, records) => source(cam).countDropped("backlog", records),
  onError: (err) => log.warn("media worker ingest failed", { err }),
});

function ingest(m: IngestMessage): void {
  if (closing) return;
  if (m.t === "media") ingestQueue.push({ t: "media", cam: m.cam, data: m.data });
  else if (m.t === "tracks")
    ingestQueue.push({
      t: "control",
      cam: m.cam,
      run: () => {
        if (!closing) source(m.cam).setTracks(m.tracks);
      },
    });
  else if (m.t === "release")
    ingestQueue.push({
      t: "control",
      cam: m.cam,
      run: () => {
        const src = engine.findSource(cameraId(m.cam));
        if (!closing && src && src.viewerCount === 0) void src.close();
      },
    });
  else
    ingestQueue.push({
      t: "control",
      cam: m.cam,
      run: () => {
        if (!closing) source(m.cam).upstreamDown(m.reason);
      },
    });
}

function handle(m: Exclude<ToWorker, IngestMessage>): void {
  switch (m.t) {
    case "createViewer":
      void createViewer(m);
      break;
    case "createSession":
      void createSession(m);
      break;
    case "bindSlot":
    case "unbindSlot": {
      // Synchronous in the engine: the reply says whether the slot now shows the camera.
      try {
        const session = engine.session(gridSessionId(m.id));
        if (!session) throw new NotFoundError("no such session");
        if (m.t === "bindSlot") {
          source(m.cam);
          session.bindNow(m.mid, cameraId(m.cam));
        } else session.unbindNow(m.mid, toCloseReason(m.reason));
        post({ t: "reply", req: m.req, ok: true });
      } catch (err) {
        post({ t: "reply", req: m.req, ok: false, error: errorToWire(err) });
      }
      break;
    }
    case "closeSession": {
      const x = engine.session(gridSessionId(m.id));
      void (x ? x.close(toCloseReason(m.reason)) : Promise.resolve()).then(
        () => post({ t: "reply", req: m.req, ok: true }),
        (err: unknown) => post({ t: "reply", req: m.req, ok: false, error: errorToWire(err) }),
      );
      break;
    }
    case "closeViewer": {
      const v = engine.viewer(viewerId(m.id));
      const done = v ? v.close(toCloseReason(m.reason)) : Promise.resolve();
      void done.then(
        () => post({ t: "reply", req: m.req, ok: true }),
        (err: unknown) => post({ t: "reply", req: m.req, ok: false, error: errorToWire(err) }),
      );
      break;
    }
    case "pacing":
      engine.viewer(viewerId(m.id))?.setPacingRate(m.bps);
      break;
    case "streams":
      engine.viewer(viewerId(m.id))?.setStreams(m.ladder.map(cameraId), m.auto);
      break;
    case "switch":
      source(m.cam);
      engine.viewer(viewerId(m.id))?.switchSource(cameraId(m.cam), m.reason);
      break;
    case "candidate":
      engine.addIceCandidate(viewerId(m.id), m.candidate, m.mid).then(
        () => post({ t: "reply", req: m.req, ok: true }),
        (err: unknown) => post({ t: "reply", req: m.req, ok: false, error: errorToWire(err) }),
      );
      break;
    case "snapshot":
      post({ t: "reply", req: m.req, ok: true, value: snapshot() });
      break;
    case "reset":
      engine.resetMeasurements();
      ingestQueue.resetMeasurements();
      break;
    case "close":
      void close(m.req, m.reason);
      break;
    case "fault":
      // Outside the message handler's try/catch: the thread ends with this error, as on a real bug.
      setImmediate(() => {
        throw new Error("injected fault");
      });
      break;
  }
}

/** The camera's source replica, created on first use; the primary worker reports its keyframes. */
function source(cam: string): Source {
  const src = engine.source(cameraId(cam));
  if (init.primary && !watched.has(src)) {
    watched.add(src);
    src.on("keyframe", (info) => post({ t: "keyframe", cam, info }));
  }
  return src;
}

async function createViewer(m: Extract<ToWorker, { t: "createViewer" }>): Promise<void> {
  try {
    source(m.cam);
    const { viewer, answerSdp } = await engine.createViewer(cameraId(m.cam), m.offer, {
      id: viewerId(m.id),
      user: m.user,
      iceServers: m.iceServers,
      ...(m.camera !== undefined ? { cameraId: cameraId(m.camera) } : {}),
    });
    watchViewer(viewer);
    post({ t: "reply", req: m.req, ok: true, value: { answerSdp } });
  } catch (err) {
    post({ t: "reply", req: m.req, ok: false, error: errorToWire(err) });
  }
}

async function createSession(m: Extract<ToWorker, { t: "createSession" }>): Promise<void> {
  try {
    const { session, answerSdp } = await engine.createSession(m.offer, {
      id: gridSessionId(m.id),
      user: m.user,
      iceServers: m.iceServers,
      maxSlots: m.maxSlots,
    });
    session.on("state", (state) => post({ t: "sessionState", id: m.id, state }));
    session.on("closed", (reason) => post({ t: "sessionClosed", id: m.id, reason }));
    session.on("slotEnded", (mid, cam, reason) => post({ t: "slotEnded", id: m.id, mid, cam, reason }));
    if (session.state !== "connecting") post({ t: "sessionState", id: m.id, state: session.state });
    post({ t: "reply", req: m.req, ok: true, value: { answerSdp, slots: session.slots() } });
  } catch (err) {
    post({ t: "reply", req: m.req, ok: false, error: errorToWire(err) });
  }
}

function watchViewer(v: Viewer): void {
  v.on("state", (state) => post({ t: "viewerState", id: v.id, state }));
  v.on("closed", (reason) => post({ t: "viewerClosed", id: v.id, reason }));
  v.on("quality", (quality, reason) => post({ t: "viewerQuality", id: v.id, quality, reason }));
  v.on("switched", (info) => post({ t: "viewerSwitched", id: v.id, info }));
  // It may have changed state between creation and now (a same-tick failure).
  if (v.state !== "connecting") post({ t: "viewerState", id: v.id, state: v.state });
}

function snapshot(): WorkerSnapshot {
  const st = engine.stats();
  const h = getHeapStatistics();
  return {
    sources: st.sources,
    viewers: st.viewers,
    sessions: st.sessions ?? [],
    latency: engine.latencyHistogram().toJSON(),
    loop: engine.loopStats(),
    ingest: {
      sliceMaxMs: Math.round(ingestQueue.sliceMaxMs * 100) / 100,
      pacerPassMaxMs: Math.round(engine.pacerPassMaxMs() * 100) / 100,
      yields: ingestQueue.yields,
      backlogBytes: ingestQueue.backlogBytes,
    },
    heap: { usedKb: h.used_heap_size >> 10, totalKb: h.total_heap_size >> 10, externalKb: h.external_memory >> 10 },
  };
}

async function close(req: number, reason: string): Promise<void> {
  if (closing) return;
  closing = true;
  clearInterval(snapshotTimer);
  try {
    await engine.close(reason);
    post({ t: "reply", req, ok: true });
  } catch (err) {
    post({ t: "reply", req, ok: false, error: errorToWire(err) });
  }
  // Nothing of ours is left: closing the port lets the thread end on its own.
  port.close();
}

/** Options with undefined fields left out (the engine's defaults apply). */
function stripUndefined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
