/**
 * close() gives every caller the same promise, and what it releases is released once, even
 * when two callers close at the same moment (a second caller used to resolve at once, before
 * the first had finished, or to release the resource a second time).
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { AuditLog } from "../../gateway/audit/log.ts";
import { PostgresAuditStore } from "../../gateway/audit/postgres.ts";
import { SqliteAuditStore } from "../../gateway/audit/sqlite.ts";
import type { AuditStore } from "../../gateway/audit/store.ts";
import { startOidcProvider } from "../../gateway/auth/dev-idp.ts";
import { PlaybackSession } from "../../gateway/playback/session.ts";
import { SipSockets } from "../../gateway/sip/transport.ts";
import { Webhook } from "../../gateway/supervision/webhook.ts";
import { ChildSupervisor } from "../../gateway/transcode/supervisor.ts";
import { TranscodingSink } from "../../gateway/transcode/sink.ts";
import { PlaybackService } from "../../gateway/playback/service.ts";
import { parseConfig } from "../../config/load.ts";
import { CameraLeases } from "../../gateway/cluster/leases.ts";
import { NodeRegistry } from "../../gateway/cluster/nodes.ts";
import { IntercomService } from "../../gateway/intercom/service.ts";
import { H265ToH264 } from "../../gateway/transcode/h265-h264.ts";
import { cameraTranscode, transcodeSection } from "../../config/sections/transcode.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Calls `close` twice at once: the same promise, awaited. */
async function closeTwice(close: () => Promise<unknown>): Promise<void> {
  const a = close();
  const b = close();
  expect(b).toBe(a);
  await Promise.all([a, b]);
  // And later callers get it too.
  expect(close()).toBe(a);
}

describe("close() twice at once", () => {
  it("AuditLog: one last flush and one store close", async () => {
    let closes = 0;
    let heads = 0;
    const store = {
      kind: "sqlite",
      ready: async () => {},
      append: async () => [],
      query: async () => [],
      verify: async () => ({ ok: true }),
      prune: async () => ({ deleted: 0, anchor: { seq: 0, hash: "" } }),
      head: async () => (heads++, { seq: 0, hash: "" }),
      close: async () => void closes++,
    } as unknown as AuditStore;
    const log = new AuditLog({ store, log: silentLogger, queueMax: 10, retentionDays: 0 });
    await closeTwice(() => log.close());
    expect(closes).toBe(1);
    expect(heads).toBe(1);
  });

  it("SqliteAuditStore: the database is closed once", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "gatehouse-close-"));
    dirs.push(dir);
    const store = new SqliteAuditStore({ file: path.join(dir, "audit.db") });
    const db = (store as unknown as { db: { close(): void } }).db;
    let closes = 0;
    const real = db.close.bind(db);
    db.close = () => (closes++, real());
    await closeTwice(() => store.close());
    expect(closes).toBe(1);
  });

  it("PostgresAuditStore: the pool is ended once", async () => {
    const store = PostgresAuditStore.create({ connectionString: "postgres://u:p@127.0.0.1:9/none", table: "audit", poolSize: 1 });
    const pool = (store as unknown as { pool: { end(): Promise<void> } }).pool;
    let ends = 0;
    const real = pool.end.bind(pool);
    pool.end = () => (ends++, real());
    await closeTwice(() => store.close());
    expect(ends).toBe(1);
  });

  it("Webhook: the request in flight is aborted, and both callers wait for it to end", async () => {
    let calls = 0;
    let ended = false;
    const hook = new Webhook({
      url: "http://127.0.0.1:9/hook",
      timeoutMs: 60_000,
      queueMax: 10,
      log: silentLogger,
      fetch: ((_url: string, init: RequestInit) => {
        calls++;
        return new Promise<Response>((_resolve, reject) =>
          init.signal!.addEventListener("abort", () => {
            ended = true;
            reject(new Error("aborted"));
          }),
        );
      }) as typeof fetch,
    });
    hook.send({ component: "turn", state: "failed", at: 0 } as unknown as Parameters<Webhook["send"]>[0]);
    await closeTwice(() => hook.close());
    expect(ended).toBe(true);
    expect(calls).toBe(1);
  });

  it("ChildSupervisor: the child is stopped once and both callers wait for its exit", async () => {
    const children: ChildProcessWithoutNullStreams[] = [];
    let kills = 0;
    let exited = false;
    const sup = new ChildSupervisor({
      command: "sleep",
      args: () => ["30"],
      log: silentLogger,
      spawn: ((cmd: string, args: string[], o: object) => spawn(cmd, args, o)) as never,
      restartMinMs: 1000,
      restartMaxMs: 2000,
      stableMs: 1000,
      stderrLines: 5,
      onStart: (child) => {
        children.push(child);
        const real = child.kill.bind(child);
        child.kill = (sig?: NodeJS.Signals | number) => (kills++, real(sig));
        child.once("exit", () => (exited = true));
      },
    });
    sup.setWanted(true);
    expect(children).toHaveLength(1);
    await closeTwice(() => sup.close());
    expect(exited).toBe(true);
    expect(kills).toBe(1);
  });

  it("PlaybackSession: one `closed` event", async () => {
    const s = new PlaybackSession({
      camera: { url: "rtsp://127.0.0.1:9/none", transport: "tcp", tlsInsecure: false } as never,
      start: 0,
      sink: { setTracks: () => {}, pushRtp: () => {} },
      requestTimeoutMs: 1000,
      mediaTimeoutMs: 1000,
      startDelayMs: 0,
      bufferPackets: 10,
      log: silentLogger,
    });
    const reasons: string[] = [];
    s.events.on("closed", (r) => void reasons.push(r));
    await closeTwice(() => s.close("first"));
    expect(reasons).toEqual(["first"]);
  });

  it("SipSockets: the listeners are closed once, and both callers wait for them", async () => {
    const sockets = await SipSockets.listen({ bindAddress: "127.0.0.1", udpPort: 0, tcpPort: 0, log: silentLogger, onMessage: () => {} });
    const udp = (sockets as unknown as { udp: { close(cb?: () => void): void } }).udp;
    let closes = 0;
    const real = udp.close.bind(udp);
    udp.close = (cb?: () => void) => (closes++, real(cb));
    await closeTwice(() => sockets.close());
    expect(closes).toBe(1);
  });

  it("the development identity provider: both callers wait until it no longer listens", async () => {
    const idp = await startOidcProvider({ clients: [], users: [], log: silentLogger });
    await closeTwice(() => idp.close());
    // Nothing answers on its port any more.
    await expect(fetch(`${idp.issuer}/.well-known/openid-configuration`)).rejects.toThrow();
  });

  it("TranscodingSink and PlaybackService: the same promise to every caller", async () => {
    const sink = new TranscodingSink({
      downstream: { setTracks: () => {}, pushRtp: () => {}, pushRtcp: () => {}, upstreamDown: () => {} } as never,
      camera: cameraTranscode.parse({}),
      global: transcodeSection.parse({}),
      log: silentLogger,
    });
    await closeTwice(() => sink.close());
    const cfg = parseConfig({}, {});
    const playback = new PlaybackService({ sfu: {} as never, settings: cfg.playback, rtsp: cfg.rtsp, log: silentLogger });
    await closeTwice(() => playback.close());
  });

  it("CameraLeases and NodeRegistry: each lease given back once, the node withdrawn once", async () => {
    const runs: string[] = [];
    const link = { events: { on: () => () => {} }, key: (k: string) => k, run: async (what: string) => void runs.push(what) } as never;
    const leases = new CameraLeases({ link, nodeId: "n1", leaseMs: 60_000, log: silentLogger });
    (leases as unknown as { held: Map<string, string> }).held.set("lobby", "n1 1");
    await closeTwice(() => leases.close());
    expect(runs).toEqual(["release the camera"]);
    runs.length = 0;
    const nodes = new NodeRegistry({
      link,
      announcement: () => ({ id: "n1" }) as never,
      heartbeatMs: 60_000,
      nodeTtlMs: 120_000,
      clock: Date.now,
      log: silentLogger,
    });
    await closeTwice(() => nodes.close());
    expect(runs).toEqual(["withdraw"]);
  });

  it("IntercomService: its subscriptions to the SIP side are dropped once", async () => {
    let offs = 0;
    const intercom = { devices: () => [], events: { on: () => () => void offs++ } } as never;
    const service = new IntercomService({
      intercom,
      auth: {} as never,
      media: { bindAddress: "127.0.0.1", icePortRange: [40000, 40010] },
      log: silentLogger,
    });
    await closeTwice(() => service.close());
    expect(offs).toBe(5);
  });

  it("H265ToH264: its ffmpeg supervisor is closed once", async () => {
    const conv = new H265ToH264({
      fmtp: "",
      ffmpeg: "ffmpeg",
      settings: cameraTranscode.parse({}),
      out: () => {},
      log: silentLogger,
      supervisor: { restartMinMs: 1000, restartMaxMs: 2000, stableMs: 1000, stderrLines: 5 },
      maxPendingBytes: 1 << 20,
    });
    const sup = (conv as unknown as { supervisor: { close(): Promise<void> } }).supervisor;
    let closes = 0;
    const real = sup.close.bind(sup);
    sup.close = () => (closes++, real());
    await closeTwice(() => conv.close());
    expect(closes).toBe(1);
  });
});
