/**
 * One media worker thread as the main thread sees it: the thread, its request channel
 * (numbered requests, each answered once or rejected with a typed error when the thread
 * ends) and the last snapshot of its stats.
 */
import { Worker } from "node:worker_threads";
import { ClosedError } from "../../config/errors.ts";
import type { GridSessionStats, SourceStats, ViewerStats } from "../api.ts";
import { errorFromWire, type FromWorker, type ToWorker, type WorkerInit, type WorkerSnapshot } from "../worker-protocol.ts";

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export class MediaWorker {
  readonly index: number;
  readonly worker: Worker;
  /** Resolves with the exit code once the thread has ended (whoever ended it). */
  readonly exited: Promise<number>;
  /** Viewers placed on this worker. */
  viewers = 0;
  snapshot: WorkerSnapshot | undefined;
  viewerStats = new Map<string, ViewerStats>();
  sessionStats = new Map<string, GridSessionStats>();
  sourceStats = new Map<string, SourceStats>();
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private gone = false;

  /**
   * @param youngMb V8 young-generation limit of the thread, MiB
   * @param onMessage every message but replies (snapshots are mirrored first)
   */
  constructor(init: WorkerInit, youngMb: number, onMessage: (w: MediaWorker, m: FromWorker) => void) {
    this.index = init.index;
    this.worker = new Worker(new URL("../worker.ts", import.meta.url), {
      workerData: init,
      name: `gatehouse-media-${init.index}`,
      resourceLimits: { maxYoungGenerationSizeMb: youngMb },
    });
    this.worker.on("message", (m: FromWorker) => {
      if (m.t === "reply") {
        const p = this.pending.get(m.req);
        if (!p) return;
        this.pending.delete(m.req);
        if (m.ok) p.resolve(m.value);
        else p.reject(errorFromWire(m.error));
        return;
      }
      if (m.t === "snapshot") this.setSnapshot(m);
      onMessage(this, m);
    });
    this.exited = new Promise((resolve) => {
      this.worker.once("exit", (code) => {
        this.gone = true;
        for (const p of this.pending.values()) p.reject(new ClosedError("media worker exited"));
        this.pending.clear();
        resolve(code);
      });
    });
  }

  /** True once the thread has ended. */
  get ended(): boolean {
    return this.gone;
  }

  post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (this.gone) return;
    this.worker.postMessage(m, transfer);
  }

  /** Sends a request (its `req` is filled in) and resolves with the worker's answer. */
  call<T>(m: ToWorker & { req: number }): Promise<T> {
    if (this.gone) return Promise.reject(new ClosedError("media worker exited"));
    const req = this.nextReq++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(req, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...m, req });
    });
  }

  setSnapshot(s: WorkerSnapshot): void {
    this.snapshot = s;
    this.viewerStats = new Map(s.viewers.map((v) => [v.id, v]));
    this.sessionStats = new Map(s.sessions.map((x) => [x.id, x]));
    this.sourceStats = new Map(s.sources.map((x) => [x.id, x]));
  }
}
