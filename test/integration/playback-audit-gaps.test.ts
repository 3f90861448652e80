/**
 * A real playback session against GStreamer's ONVIF replay server (a recorder that is not ours,
 * with known gaps), watched by a WebRTC viewer, on a gateway with development sign-in and the
 * SQLite audit trail:
 *
 * - the timeline learns the recorder's gaps from its answers: playing across a gap (the frame after
 *   it carries the ONVIF discontinuity bit) and seeking into one (the first frame comes later than
 *   asked) make `GET /api/cameras/:id/recordings` show them;
 * - the audit trail holds `playback_start` (with where it started) and `playback_end` (with the
 *   stretches watched and why it ended), and the refused attempts with their status.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { AuditRecord } from "../../gateway/audit/index.ts";
import type { AuditAction } from "../../gateway/audit/record.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { startOnvifRecorder, type OnvifRecorder } from "../peers/gst-onvif.ts";
import { signedInDevUser, type HttpBrowser } from "../peers/oidc.ts";
import { WeriftViewer, WhepHttpError } from "../peers/werift-viewer.ts";
import { GatewayClient } from "./intercom-support.ts";

const HOUR = 3_600_000;
const FRAME_MS = 40;
const base = Math.floor(Date.now() / 1000) * 1000 - 2 * HOUR;
/** Two holes in the recording the gateway is not told of. */
const gapA: [number, number] = [base + 30 * 60_000, base + 30 * 60_000 + 20_000];
const gapB: [number, number] = [base + 70 * 60_000, base + 70 * 60_000 + 45_000];
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-pb-audit-"));

let rec: OnvifRecorder;
let gw: Gateway;
const browsers: HttpBrowser[] = [];
let admin: GatewayClient;
let adminHeaders: Record<string, string>;

interface RecordingsAnswer {
  ranges: { start: string; end: string }[];
  source: string;
}

async function recordings(from: number, to: number): Promise<{ start: number; end: number }[]> {
  const r = await admin.get(`/api/cameras/demo/recordings?from=${from}&to=${to}`);
  expect(r.status, r.body).toBe(200);
  const a = r.json() as RecordingsAnswer;
  expect(a.source).toBe("retention");
  return a.ranges.map((x) => ({ start: Date.parse(x.start), end: Date.parse(x.end) }));
}

/** Polls the trail (written in the background) until `pred` holds. */
async function trail(actions: AuditAction[], pred: (rs: AuditRecord[]) => boolean): Promise<AuditRecord[]> {
  for (;;) {
    const rs = await gw.audit!.query({ actions, camera: "demo", limit: 100 });
    if (pred(rs)) return rs;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The recorded time of the frame last sent to the viewer, Unix ms. */
async function position(control: string): Promise<number> {
  const r = await admin.post(control, { json: { action: "resume" } });
  expect(r.status, r.body).toBe(200);
  return (r.json() as { positionMs: number }).positionMs;
}

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  rec = await startOnvifRecorder({ baseMs: base, durationS: 7200, gaps: [gapA, gapB] });
  const config = parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "dev" },
      log: { level: "warn" },
      dataDir,
      // The recorder sends as fast as it can (Rate-Control: no): crossing a gap costs no wall time.
      cameras: [{ id: "demo", url: rec.url, playback: { pacing: "gateway" } }],
    },
    {},
  );
  gw = await startGateway({ config, log: silentLogger });
  const b = await signedInDevUser(gw, "admin", browsers);
  admin = new GatewayClient(gw.url, b);
  const csrf = (JSON.parse((await b.request(`${gw.url}/auth/csrf`, { headers: { accept: "application/json" } })).body) as { token: string }).token;
  adminHeaders = { cookie: `gatehouse_session=${b.cookie("127.0.0.1", "gatehouse_session")!}`, "x-csrf-token": csrf, origin: gw.url };
}, 60_000);

afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
  await rec?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("a playback session against the GStreamer ONVIF recorder", () => {
  let viewer: WeriftViewer;
  const start = gapA[0] - 3000;

  it("learns a gap played across, and one a seek lands in, and the timeline shows them", async () => {
    // Before anything was played the timeline knows only the retention window: one range.
    expect(await recordings(base, base + 2 * HOUR)).toHaveLength(1);

    viewer = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo/playback?start=${encodeURIComponent(new Date(start).toISOString())}`, headers: adminHeaders });
    await viewer.connected;
    await viewer.video.waitForCount(1);
    const control = new URL(viewer.resource).pathname + "/control";
    expect((await admin.post(control, { json: { action: "speed", rate: 4 } })).status).toBe(200);

    // Across gap A: the frame after it is marked as a discontinuity and jumps 20 s.
    const aroundA = await until(
      () => recordings(gapA[0] - 60_000, gapA[1] + 60_000),
      (rs) => rs.length === 2,
      "the gap played across",
    );
    expect(Math.abs(aroundA[0]!.end - gapA[0])).toBeLessThanOrEqual(FRAME_MS);
    expect(Math.abs(aroundA[1]!.start - gapA[1])).toBeLessThanOrEqual(FRAME_MS);

    // A seek 5 s into gap B: the recorder starts at the first frame after it.
    // Watched past gap A (a control answers with the position: `resume` while playing changes nothing).
    await until(() => position(control), (p) => p > gapA[1] + 1000, "played past gap A");
    const into = gapB[0] + 5000;
    expect((await admin.post(control, { json: { action: "seek", time: into } })).status).toBe(200);
    const aroundB = await until(
      () => recordings(gapB[0] - 60_000, gapB[1] + 60_000),
      (rs) => rs.length === 2,
      "the gap a seek landed in",
    );
    expect(aroundB[0]!.end).toBe(into);
    expect(Math.abs(aroundB[1]!.start - gapB[1])).toBeLessThanOrEqual(FRAME_MS);
    await until(() => position(control), (p) => p > gapB[1] + 1000, "played past gap B");
    // The rest of the recording is untouched.
    const all = await recordings(base, base + 2 * HOUR);
    expect(all.map((r) => [r.start, r.end])).toEqual([
      [base, aroundA[0]!.end],
      [aroundA[1]!.start, into],
      [aroundB[1]!.start, all.at(-1)!.end],
    ]);
  }, 60_000);

  it("writes playback_start and playback_end with the played range to the SQLite trail", async () => {
    await viewer.close();
    const [end] = await trail(["playback_end"], (rs) => rs.length >= 1);
    const [begin] = await trail(["playback_start"], (rs) => rs.some((r) => r.outcome === "success"));
    expect(begin).toMatchObject({ action: "playback_start", outcome: "success", subject: "dev-admin", camera: "demo", source: "127.0.0.1" });
    const b = JSON.parse(begin!.detail!) as { playback: string; from: string };
    expect(Date.parse(b.from)).toBe(start);
    expect(end).toMatchObject({ action: "playback_end", outcome: "success", subject: "dev-admin", camera: "demo", session: begin!.session });
    const e = JSON.parse(end!.detail!) as { playback: string; reason: string; seconds: number; ranges: [string, string][] };
    expect(e.playback).toBe(b.playback);
    expect(e.reason).toMatch(/client delete/);
    expect(e.seconds).toBeGreaterThan(0);
    // Two stretches: from the start across gap A, and from the seek into gap B on.
    const ranges = e.ranges.map(([x, y]) => [Date.parse(x), Date.parse(y)]);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]![0]).toBeLessThanOrEqual(start);
    expect(ranges[0]![0]).toBeGreaterThan(start - 2000);
    expect(ranges[0]![1]).toBeGreaterThanOrEqual(gapA[1]);
    expect(ranges[1]![0]).toBeGreaterThanOrEqual(gapB[0]);
    expect(ranges[1]![1]).toBeGreaterThanOrEqual(gapB[1]);
  });

  it("records refused attempts: no playback right (403) and a start in the future (400)", async () => {
    const vb = await signedInDevUser(gw, "viewer", browsers);
    const csrf = (JSON.parse((await vb.request(`${gw.url}/auth/csrf`, { headers: { accept: "application/json" } })).body) as { token: string }).token;
    const headers = { cookie: `gatehouse_session=${vb.cookie("127.0.0.1", "gatehouse_session")!}`, "x-csrf-token": csrf, origin: gw.url };
    const at = new Date(base + HOUR).toISOString();
    const refused = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo/playback?start=${encodeURIComponent(at)}`, headers }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(WhepHttpError);
    expect((refused as WhepHttpError).status).toBe(403);
    const future = new Date(Date.now() + HOUR).toISOString();
    const bad = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo/playback?start=${encodeURIComponent(future)}`, headers: adminHeaders }).catch((e: unknown) => e);
    expect((bad as WhepHttpError).status).toBe(400);

    const rs = await trail(["playback_start"], (x) => x.filter((r) => r.outcome !== "success").length >= 2);
    const denied = rs.find((r) => r.outcome === "denied")!;
    expect(denied).toMatchObject({ subject: "dev-viewer", camera: "demo", source: "127.0.0.1" });
    expect(JSON.parse(denied.detail!)).toEqual({ status: 403, start: at });
    const failed = rs.find((r) => r.outcome === "failure")!;
    expect(failed).toMatchObject({ subject: "dev-admin", camera: "demo" });
    expect(JSON.parse(failed.detail!)).toEqual({ status: 400, start: future });
    // A refusal opened no recorder session, and wrote no playback_end.
    expect(await gw.audit!.query({ actions: ["playback_end"], camera: "demo", limit: 10 })).toHaveLength(1);
  });
});
