/**
 * A camera watched through a slot of a multi-camera session (gateway/http/grid.ts) is on the
 * audit trail like a WHEP viewer: the whole gateway (development sign-in, three cameras of the
 * built-in demo recorder, the SQLite audit store in a temp data directory), a werift peer as
 * the grid client (one peer connection, two video slots and audio), signed in as the
 * development `viewer`, who may watch cam1 and cam2 live and only see cam3's recordings.
 *
 * - bind → `live_view_start` (who, from where, camera, the session, slot and stream);
 * - re-bind to another camera → the first binding's `live_view_end` ("slot re-bound", seconds),
 *   the second's start; binding the same camera again records nothing;
 * - refused binds (403 no right, 404 unknown camera) → `live_view_start` denied, with the status;
 * - unbind, session closed, sign-in session revoked by an administrator → `live_view_end`
 *   with why, exactly once per binding.
 * - `/metrics` follows the same session: open sessions, bound slots, binds made and refused by reason.
 * - several slots bound in one request (`PUT /grid/:session/slots`) → each slot answered and
 *   recorded as its own PUT would be: a start for the one bound, a denied start for the one refused.
 * - slots bound with the offer (`POST /grid` as JSON, the web client's first request) → the same,
 *   and the bound slot's pictures arrive once the connection is up, with no bind after the answer.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { RTCPeerConnection } from "werift";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { AuditRecord } from "../../gateway/audit/index.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { HttpBrowser } from "../peers/oidc.ts";
import { GridClient, openWeriftGrid, type WeriftGrid } from "../peers/werift-grid.ts";

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-grid-audit-"));
let gw: Gateway;
let recorder: DemoRecorder;
const browsers: HttpBrowser[] = [];
const pcs: RTCPeerConnection[] = [];

const RIGHTS = [
  { role: "gatehouse-viewer", cameras: ["cam1", "cam2"], actions: ["live"] },
  { role: "gatehouse-viewer", cameras: ["cam3"], actions: ["playback"] },
  { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
];

function configWith(rights: typeof RIGHTS) {
  return parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      log: { level: "warn" },
      dataDir,
      demo: { enabled: false },
      cameras: ["cam1", "cam2", "cam3"].map((id) => ({ id, url: recorder.url, transport: "tcp" })),
      auth: {
        mode: "dev",
        rights,
      },
    },
    {},
  );
}

beforeAll(async () => {
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  gw = await startGateway({ config: configWith(RIGHTS), log: silentLogger });
}, 60_000);

afterAll(async () => {
  for (const pc of pcs) await pc.close().catch(() => {});
  for (const b of browsers) b.close();
  await gw?.close("test done");
  await recorder?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A werift peer offering two recvonly video slots and one audio slot, as the web client's grid does. */
async function openGrid(c: GridClient, bind?: string[]): Promise<WeriftGrid> {
  const grid = await openWeriftGrid(c, { video: 2, audio: 1, ...(bind ? { bind } : {}) });
  pcs.push(grid.pc);
  return grid;
}

let admin: GridClient;

async function records(query: string): Promise<AuditRecord[]> {
  const r = await admin.send("GET", `/api/admin/audit?${query}`);
  expect(r.status, r.body).toBe(200);
  return (JSON.parse(r.body) as { records: AuditRecord[] }).records;
}

/** Polls the trail (records are written in the background) until `pred` holds. */
async function until(query: string, pred: (rs: AuditRecord[]) => boolean): Promise<AuditRecord[]> {
  for (;;) {
    const rs = await records(query);
    if (pred(rs)) return rs;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A sample of the gateway's `/metrics` as an administrator reads it (`name` with its labels). */
async function metric(name: string): Promise<number> {
  const r = await admin.send("GET", "/metrics");
  expect(r.status).toBe(200);
  const line = r.body.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no sample ${name} in /metrics`);
  return Number(line.slice(name.length + 1));
}

async function metricBecomes(name: string, want: number): Promise<void> {
  while ((await metric(name)) !== want) await new Promise((r) => setTimeout(r, 50));
}

const detail = (r: AuditRecord) => JSON.parse(r.detail!) as Record<string, unknown>;
const ofGrid = (id: string) => (rs: AuditRecord[]) => rs.filter((r) => r.detail && detail(r).grid === id);

describe("multi-camera sessions on the audit trail", () => {
  let viewer: GridClient;

  it("records a bind, a re-bind (the first binding's end, the second's start), refused binds and the session's close", { timeout: 60_000 }, async () => {
    admin = await GridClient.signIn(gw, "admin", browsers);
    viewer = await GridClient.signIn(gw, "viewer", browsers);
    expect(await metric("gatehouse_grid_sessions")).toBe(0);
    const { resource, mids } = await openGrid(viewer);
    expect(await metric("gatehouse_grid_sessions")).toBe(1);
    expect(await metric("gatehouse_grid_slots_bound")).toBe(0);
    const grid = resource.split("/").pop()!;
    expect(mids).toHaveLength(2);
    const [m0, m1] = mids as [string, string];

    // Bind: one start, with who, from where, which session, slot and stream.
    expect((await viewer.send("PUT", `${resource}/slots/${m0}`, { json: { camera: "cam1" } })).status).toBe(200);
    // The same camera again changes nothing and records nothing.
    expect((await viewer.send("PUT", `${resource}/slots/${m0}`, { json: { camera: "cam1" } })).status).toBe(200);
    const [start1] = ofGrid(grid)(await until("camera=cam1&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(start1).toMatchObject({ outcome: "success", subject: "dev-viewer", name: "Demo Viewer", source: "127.0.0.1", camera: "cam1" });
    expect(start1!.session).toMatch(/^[A-Za-z0-9_-]{16}$/);
    // The stream the slot shows: `sub` asked (the default), and these cameras have only their main one.
    expect(detail(start1!)).toEqual({ grid, mid: m0, stream: "main" });

    // Re-bind the slot to cam2: cam1's binding ends, cam2's starts.
    expect((await viewer.send("PUT", `${resource}/slots/${m0}`, { json: { camera: "cam2", stream: "main" } })).status).toBe(200);
    const [end1] = ofGrid(grid)(await until("camera=cam1&action=live_view_end", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(end1).toMatchObject({ outcome: "success", subject: "dev-viewer", session: start1!.session, source: "127.0.0.1", camera: "cam1" });
    expect(detail(end1!)).toMatchObject({ grid, mid: m0, stream: "main", reason: "slot re-bound" });
    expect(typeof detail(end1!).seconds).toBe("number");
    const [start2] = ofGrid(grid)(await until("camera=cam2&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(start2).toMatchObject({ outcome: "success", subject: "dev-viewer", camera: "cam2" });
    expect(detail(start2!)).toEqual({ grid, mid: m0, stream: "main" });

    // Refused binds: no right (403), no such camera (404); the slot keeps showing cam2.
    expect((await viewer.send("PUT", `${resource}/slots/${m1}`, { json: { camera: "cam3" } })).status).toBe(403);
    expect((await viewer.send("PUT", `${resource}/slots/${m1}`, { json: { camera: "nope" } })).status).toBe(404);
    const [refused3] = await until("camera=cam3&action=live_view_start", (rs) => rs.length >= 1);
    expect(refused3).toMatchObject({ outcome: "denied", subject: "dev-viewer", source: "127.0.0.1", camera: "cam3" });
    expect(detail(refused3!)).toEqual({ grid, mid: m1, status: 403 });
    const [refusedNope] = await until("camera=nope&action=live_view_start", (rs) => rs.length >= 1);
    expect(refusedNope).toMatchObject({ outcome: "denied", camera: "nope" });
    expect(detail(refusedNope!)).toEqual({ grid, mid: m1, status: 404 });
    // The same in /metrics: two binds made (cam1, then cam2 on the same slot), two refused, one slot showing a camera.
    expect(await metric('gatehouse_grid_binds_refused_total{reason="forbidden"}')).toBe(1);
    expect(await metric('gatehouse_grid_binds_refused_total{reason="unknown_camera"}')).toBe(1);
    expect(await metric('gatehouse_grid_binds_refused_total{reason="no_slot"}')).toBe(0);
    expect(await metric("gatehouse_grid_binds_total")).toBe(2);
    expect(await metric("gatehouse_grid_slots_bound")).toBe(1);
    expect((await viewer.send("PUT", `${resource}/slots/nope`, { json: { camera: "cam1" } })).status).toBe(404);
    expect(await metric('gatehouse_grid_binds_refused_total{reason="no_slot"}')).toBe(1);

    // A second slot bound, then unbound by the client.
    expect((await viewer.send("PUT", `${resource}/slots/${m1}`, { json: { camera: "cam1" } })).status).toBe(200);
    expect(await metric("gatehouse_grid_slots_bound")).toBe(2);
    expect(await metric("gatehouse_grid_binds_total")).toBe(3);
    expect((await viewer.send("DELETE", `${resource}/slots/${m1}`)).status).toBe(204);
    await until("camera=cam1&action=live_view_end", (rs) => ofGrid(grid)(rs).some((r) => detail(r).mid === m1 && detail(r).reason === "client unbind"));

    // The session closes: cam2's binding ends with it.
    expect((await viewer.send("DELETE", resource)).status).toBe(200);
    const [end2] = ofGrid(grid)(await until("camera=cam2&action=live_view_end", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(detail(end2!)).toMatchObject({ grid, mid: m0, stream: "main", reason: "session closed: client delete" });
    await metricBecomes("gatehouse_grid_sessions", 0);
    expect(await metric("gatehouse_grid_slots_bound")).toBe(0);

    // Exactly once per binding: three bindings, three starts and three ends on this session.
    const all = ofGrid(grid)(await records("user=dev-viewer&limit=500"));
    expect(all.filter((r) => r.action === "live_view_start" && r.outcome === "success")).toHaveLength(3);
    expect(all.filter((r) => r.action === "live_view_end")).toHaveLength(3);
  });

  it("binds several slots in one request, each answered, counted and recorded as its own PUT would be", { timeout: 60_000 }, async () => {
    const { resource, mids } = await openGrid(viewer);
    const grid = resource.split("/").pop()!;
    const [m0, m1] = mids as [string, string];
    const forbidden = await metric('gatehouse_grid_binds_refused_total{reason="forbidden"}');
    const binds = await metric("gatehouse_grid_binds_total");
    const r = await viewer.send("PUT", `${resource}/slots`, { json: { slots: [{ mid: m0, camera: "cam2" }, { mid: m1, camera: "cam3" }] } });
    expect(r.status, r.body).toBe(200);
    const answer = JSON.parse(r.body) as { slots: Record<string, unknown>[] };
    expect(answer.slots).toEqual([
      { mid: m0, kind: "video", camera: "cam2", stream: "main" },
      { mid: m1, status: 403, error: "forbidden", reason: expect.any(String) },
    ]);
    const state = JSON.parse((await viewer.send("GET", resource)).body) as { slots: { mid: string; camera: string | null }[] };
    expect(state.slots.filter((s) => s.mid === m0 || s.mid === m1).map((s) => s.camera)).toEqual(["cam2", null]);
    expect(await metric('gatehouse_grid_binds_refused_total{reason="forbidden"}')).toBe(forbidden + 1);
    expect(await metric("gatehouse_grid_binds_total")).toBe(binds + 1);
    const [start] = ofGrid(grid)(await until("camera=cam2&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(start).toMatchObject({ outcome: "success", subject: "dev-viewer", camera: "cam2" });
    expect(detail(start!)).toEqual({ grid, mid: m0, stream: "main" });
    const [denied] = ofGrid(grid)(await until("camera=cam3&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(denied).toMatchObject({ outcome: "denied", subject: "dev-viewer", camera: "cam3" });
    expect(detail(denied!)).toEqual({ grid, mid: m1, status: 403 });
    // The same slot twice, or no list: the whole request is refused, nothing bound.
    expect((await viewer.send("PUT", `${resource}/slots`, { json: { slots: [{ mid: m1, camera: "cam1" }, { mid: m1, camera: "cam2" }] } })).status).toBe(400);
    expect((await viewer.send("PUT", `${resource}/slots`, { json: { cameras: ["cam1"] } })).status).toBe(400);
    expect(await metric("gatehouse_grid_binds_total")).toBe(binds + 1);
    expect((await viewer.send("DELETE", resource)).status).toBe(200);
  });

  it("binds the first slots with the offer (one JSON POST): each answered, counted and recorded as a PUT's, the bound one playing", { timeout: 60_000 }, async () => {
    const forbidden = await metric('gatehouse_grid_binds_refused_total{reason="forbidden"}');
    const binds = await metric("gatehouse_grid_binds_total");
    const { resource, mids, bound, video } = await openGrid(viewer, ["cam1", "cam3"]);
    const grid = resource.split("/").pop()!;
    const [m0, m1] = mids as [string, string];
    expect(bound).toEqual([
      { mid: m0, kind: "video", camera: "cam1", stream: "main" },
      { mid: m1, status: 403, error: "forbidden", reason: expect.any(String) },
    ]);
    // Nothing was bound after the answer: the pictures come from the bind made with the offer.
    await video.waitForCount(30);
    const state = JSON.parse((await viewer.send("GET", resource)).body) as { slots: { mid: string; camera: string | null }[] };
    expect(state.slots.filter((s) => s.mid === m0 || s.mid === m1).map((s) => s.camera)).toEqual(["cam1", null]);
    expect(await metric('gatehouse_grid_binds_refused_total{reason="forbidden"}')).toBe(forbidden + 1);
    expect(await metric("gatehouse_grid_binds_total")).toBe(binds + 1);
    const [start] = ofGrid(grid)(await until("camera=cam1&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(start).toMatchObject({ outcome: "success", subject: "dev-viewer", camera: "cam1" });
    expect(detail(start!)).toEqual({ grid, mid: m0, stream: "main" });
    const [denied] = ofGrid(grid)(await until("camera=cam3&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(denied).toMatchObject({ outcome: "denied", subject: "dev-viewer", camera: "cam3" });
    // A malformed list refuses the whole offer: no session is made.
    const sessions = await metric("gatehouse_grid_sessions");
    const bad = await viewer.send("POST", "/grid", { json: { offer: "v=0\r\n", slots: [{ mid: "0", camera: "cam1" }, { mid: "0", camera: "cam2" }] } });
    expect(bad.status, bad.body).toBe(400);
    expect(await metric("gatehouse_grid_sessions")).toBe(sessions);
    expect((await viewer.send("DELETE", resource)).status).toBe(200);
  });

  it("records the end of a binding when the right to its camera is withdrawn; the session and its other binding go on", { timeout: 60_000 }, async () => {
    const { resource, mids } = await openGrid(viewer);
    const grid = resource.split("/").pop()!;
    const [m0, m1] = mids as [string, string];
    expect((await viewer.send("PUT", `${resource}/slots/${m0}`, { json: { camera: "cam1" } })).status).toBe(200);
    expect((await viewer.send("PUT", `${resource}/slots/${m1}`, { json: { camera: "cam2" } })).status).toBe(200);
    await until("user=dev-viewer&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 2);
    // The viewer may no longer watch cam1 live.
    gw.auth.reload(configWith([{ role: "gatehouse-viewer", cameras: ["cam2"], actions: ["live"] }, ...RIGHTS.slice(1)]).auth);
    try {
      const [end] = ofGrid(grid)(await until("camera=cam1&action=live_view_end", (rs) => ofGrid(grid)(rs).length >= 1));
      expect(end).toMatchObject({ outcome: "success", subject: "dev-viewer", camera: "cam1" });
      expect(detail(end!)).toMatchObject({ grid, mid: m0, reason: expect.stringMatching(/^auth: /) });
      const state = JSON.parse((await viewer.send("GET", resource)).body) as { state: string; slots: { mid: string; camera: string | null }[] };
      expect(state.state).not.toBe("closed");
      expect(state.slots.filter((s) => s.mid === m0 || s.mid === m1).map((s) => s.camera)).toEqual([null, "cam2"]);
      // Closing the session later ends cam2's binding only: cam1's ended once, already.
      expect((await viewer.send("DELETE", resource)).status).toBe(200);
      await until("camera=cam2&action=live_view_end", (rs) => ofGrid(grid)(rs).length >= 1);
      const ends = ofGrid(grid)(await records("user=dev-viewer&action=live_view_end"));
      expect(ends.map((r) => r.camera).sort()).toEqual(["cam1", "cam2"]);
    } finally {
      gw.auth.reload(configWith(RIGHTS).auth);
    }
  });

  it("records the end of a binding when an administrator revokes the viewer's sign-in session", { timeout: 60_000 }, async () => {
    const { resource, mids } = await openGrid(viewer);
    const grid = resource.split("/").pop()!;
    expect((await viewer.send("PUT", `${resource}/slots/${mids[0]}`, { json: { camera: "cam2" } })).status).toBe(200);
    const [start] = ofGrid(grid)(await until("camera=cam2&action=live_view_start", (rs) => ofGrid(grid)(rs).length >= 1));
    expect((await admin.send("DELETE", `/api/admin/sessions/${start!.session}`)).status).toBe(204);
    const ends = ofGrid(grid)(await until("camera=cam2&action=live_view_end", (rs) => ofGrid(grid)(rs).length >= 1));
    expect(ends).toHaveLength(1);
    expect(String(detail(ends[0]!).reason)).toMatch(/auth: /);
    // The session is gone for the signed-out browser; still one end for the binding.
    expect(ofGrid(grid)(await records("camera=cam2&action=live_view_end"))).toHaveLength(1);
  });
});
