/**
 * Media worker threads behind the Sfu API, with real werift viewers over WHEP: viewers
 * of one camera spread over the workers, each starting from its worker's warm keyframe
 * cache; errors keep their category across the thread boundary; stats come back; every
 * worker ends by itself on close with its sockets released; a worker killed on purpose
 * takes only its own viewers with it.
 */
import dgram from "node:dgram";
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { cameraId, viewerId } from "../../config/ids.ts";
import { silentLogger } from "../../config/log.ts";
import { h264PayloadIsKeyframeStart } from "../../sfu/h264/nal.ts";
import { Sfu, type SfuOptions, type ViewerHandle, type WorkerRestartDecision } from "../../sfu/sfu.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";
import { startTestApp, testPortRange, type TestApp } from "./sfu-app.ts";
import { FakeRecorder } from "./sfu-upstream.ts";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(workers: number, sfu: Partial<SfuOptions> = {}): Promise<{ app: TestApp; rec: FakeRecorder; range: [number, number] }> {
  const range = testPortRange();
  const app = await startTestApp({ sfu: { workers, icePortRange: range, ...sfu } });
  cleanups.push(() => app.close());
  const rec = new FakeRecorder(app.sfu.source(cameraId("cam1")), { audio: true });
  cleanups.push(async () => rec.stop());
  rec.announce();
  rec.pushFrames(5); // an IDR and four more frames cached in every worker
  return { app, rec, range };
}

async function join(app: TestApp): Promise<{ v: WeriftViewer; sv: ViewerHandle; port: number }> {
  const v = await WeriftViewer.connect({ whepUrl: app.whep("cam1"), timeoutMs: 15_000 });
  cleanups.push(() => v.close());
  const sv = app.sfu.viewer(viewerId(new URL(v.resource).pathname.split("/").pop()!));
  if (!sv) throw new Error("no server viewer");
  await v.connected;
  if (sv.state !== "connected") {
    await new Promise<void>((resolve, reject) => {
      const off = sv.on("state", (s) => {
        if (s === "connected") {
          off();
          resolve();
        } else if (s === "closed") reject(new Error(`server viewer closed: ${sv.reason}`));
      });
    });
  }
  const port = Number(/^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/m.exec(v.answerSdp)![1]);
  return { v, sv, port };
}

const SCHED_OTHER = 0;
const SCHED_BATCH = 3;

/** Scheduling policy of each thread of this process (field 41 of /proc/…/stat, after the command name). */
function threadPolicies(only?: string): number[] {
  const files = only ? [only] : readdirSync("/proc/self/task").map((t) => `/proc/self/task/${t}/stat`);
  return files.map((f) => Number(readFileSync(f, "utf8").split(") ").pop()!.split(" ")[38]));
}

/** Resolves when a UDP port can be bound again (nothing holds it). */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    s.once("error", () => resolve(false));
    s.bind(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

describe("sfu media workers", () => {
  it("spreads one camera's viewers over the workers and shuts every worker down cleanly", async () => {
    const { app, rec, range } = await setup(2);
    expect(app.sfu.workerCount).toBe(2);
    const counts: number[] = [];
    app.sfu.source(cameraId("cam1")).on("viewers", (n) => counts.push(n));

    const a = await join(app);
    const b = await join(app);
    // One worker each: their ICE ports come from the two halves of the range.
    const half = range[0] + Math.floor((range[1] - range[0] + 1) / 2);
    expect([a.port < half, b.port < half].sort()).toEqual([false, true]);
    // Both media threads (running: each gave a viewer its port) run SCHED_BATCH (their wake-ups do not preempt the main thread); this one does not.
    expect(threadPolicies().filter((p) => p === SCHED_BATCH).length).toBeGreaterThanOrEqual(2);
    expect(threadPolicies(`/proc/self/task/${process.pid}/stat`)).toEqual([SCHED_OTHER]);

    for (const { v } of [a, b]) {
      const first = await v.video.waitForCount(1);
      expect(h264PayloadIsKeyframeStart(first.payload)).toBe(true); // from that worker's cache
    }
    rec.start(10);
    await a.v.video.waitForCount(150);
    await b.v.video.waitForCount(150);
    await b.v.audio.waitForCount(20);
    rec.stop();
    expect(a.v.video.ssrcs[0]).not.toBe(b.v.video.ssrcs[0]);

    await app.sfu.refreshStats();
    const st = app.sfu.stats();
    expect(st.viewers).toHaveLength(2);
    for (const vs of st.viewers) {
      expect(vs.state).toBe("connected");
      expect(vs.packetsOut).toBeGreaterThan(150);
      expect(vs.transport).toMatchObject({ path: "owned", directWrites: true });
    }
    expect(st.forwardLatencyMs.count).toBeGreaterThan(200);
    expect(st.sources[0]).toMatchObject({ id: "cam1", viewers: 2, hasKeyframe: true, upstreamUp: true });
    expect(st.sources[0]!.packetsIn).toBe(rec.sent + st.sources[0]!.tracks[1]!.packetsIn);

    // Errors keep their category across the thread boundary (400, not 500).
    const bad = await fetch(app.whep("cam1"), { method: "POST", headers: { "Content-Type": "application/sdp" }, body: "v=0\r\nnot sdp" });
    expect(bad.status).toBe(400);

    const closedA = new Promise<string>((r) => a.sv.on("closed", r));
    expect(await a.v.close()).toBe(200);
    expect(await closedA).toBe("client delete");
    expect(app.sfu.viewer(a.sv.id)).toBeUndefined();

    const closedB = new Promise<string>((r) => b.sv.on("closed", r));
    await app.close();
    expect(await closedB).toBe("sfu closing");
    expect(counts).toEqual([1, 2, 1, 0]);
    const exits = await app.sfu.workerExits!;
    expect(exits).toEqual([
      { index: 0, clean: true },
      { index: 1, clean: true },
    ]);
    // The threads took their sockets with them.
    expect(await portIsFree(a.port)).toBe(true);
    expect(await portIsFree(b.port)).toBe(true);
  });

  it("takes only a failed worker's viewers with it and replaces the worker", async () => {
    const { app, rec, range } = await setup(2);
    const a = await join(app);
    const b = await join(app);
    const half = range[0] + Math.floor((range[1] - range[0] + 1) / 2);
    rec.start(10);
    await a.v.video.waitForCount(30);
    await b.v.video.waitForCount(30);

    // Kill a's worker on purpose (as mediasoup's tests kill its worker process).
    const pool = (app.sfu as unknown as { pool: { workers: Array<{ worker: { terminate(): Promise<number> } }> } }).pool;
    const closedA = new Promise<string>((r) => a.sv.on("closed", r));
    await pool.workers[a.port < half ? 0 : 1]!.worker.terminate();
    expect(await closedA).toBe("media worker failed");

    const before = b.v.video.count;
    await b.v.video.waitForCount(before + 50); // the other worker's viewer never noticed
    expect(b.sv.state).toBe("connected");

    const c = await join(app); // placed on the fresh worker (fewest viewers), which has the tracks again
    rec.stop();
    rec.pushToGopEnd();
    rec.start(10);
    const kf = await c.v.video.waitFor((p) => h264PayloadIsKeyframeStart(p.payload), "keyframe on the new worker", 10_000);
    expect(kf).toBeDefined();
    await c.v.video.waitForCount(50);
    rec.stop();
  });

  it("fails a worker from inside (fault hook), leaves its slot empty when its policy says so, and starts it again on request", async () => {
    const decisions: Array<{ index: number; code: number; error: string | undefined }> = [];
    const started: number[] = [];
    let answer: WorkerRestartDecision = { restart: false, reason: "too many failures" };
    const { app, rec, range } = await setup(2, {
      workerRestarts: {
        exited: (index, code, error) => {
          decisions.push({ index, code, error: error?.message });
          return answer;
        },
        started: (index) => started.push(index),
      },
    });
    const half = range[0] + Math.floor((range[1] - range[0] + 1) / 2);
    const a = await join(app);
    const b = await join(app);
    const aIndex = a.port < half ? 0 : 1;
    rec.start(10);
    await a.v.video.waitForCount(20);

    const closedA = new Promise<string>((r) => a.sv.on("closed", r));
    expect(app.sfu.injectWorkerFault(aIndex)).toBe(true);
    expect(await closedA).toBe("media worker failed");
    // The thread died of the exception thrown inside it.
    expect(decisions).toEqual([{ index: aIndex, code: 1, error: "injected fault" }]);
    expect(app.sfu.workerSlots()[aIndex]).toMatchObject({ state: "stopped", viewers: 0, starts: 1, lastFailure: "injected fault" });
    expect(app.sfu.injectWorkerFault(aIndex)).toBe(false);

    // Its viewers come back on the remaining worker (its port slice), the other viewer never noticed.
    const c = await join(app);
    expect(c.port < half ? 0 : 1).toBe(1 - aIndex);
    await c.v.video.waitForCount(20);
    const before = b.v.video.count;
    await b.v.video.waitForCount(before + 20);

    // Started again (an administrator, or the end of the window): it takes the next viewer.
    answer = { restart: true, delayMs: 0 };
    expect(app.sfu.restartWorker(aIndex)).toBe(true);
    expect(app.sfu.restartWorker(aIndex)).toBe(false);
    expect(started).toEqual([aIndex]);
    expect(app.sfu.workerSlots()[aIndex]).toMatchObject({ state: "running", starts: 2 });
    const d = await join(app);
    expect(d.port < half ? 0 : 1).toBe(aIndex);
    await d.v.video.waitForCount(20);
    rec.stop();
  });

  it("starts one worker per core for workers: 0", async () => {
    const sfu = new Sfu({ log: silentLogger, icePortRange: testPortRange(), bindAddress: "127.0.0.1", nackHistory: 512, viewerQueuePackets: 1024, workers: 0 });
    expect(sfu.workerCount).toBe(availableParallelism());
    await sfu.close();
    for (const e of await sfu.workerExits!) expect(e.clean).toBe(true);
  });
});
