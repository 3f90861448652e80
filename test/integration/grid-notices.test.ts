/**
 * A grid over one peer connection is watched like a page of WHEP sessions: the whole gateway
 * with two media workers (development sign-in, two cameras of the built-in demo recorder), a
 * werift peer as the grid client (one peer connection, two video slots) and, beside it, a
 * werift WHEP viewer of the same user.
 *
 * - `/metrics`: `gatehouse_viewers` counts each bound video slot as one live view (as a page of
 *   WHEP sessions counts one per tile), and `gatehouse_source_viewers{camera}` counts the slots
 *   showing that camera; both follow unbinds and the session's end.
 * - The media worker holding the session dies: the page's event stream (`GET /api/cameras/events`)
 *   hears `viewer` with `grid` (the session's id), `reason: media-worker-failed`, `reoffer: true`
 *   at once, and another user's stream hears nothing.
 */
import type { RTCPeerConnection } from "werift";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { HttpBrowser } from "../peers/oidc.ts";
import { GridClient, openWeriftGrid } from "../peers/werift-grid.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";
import { SseClient } from "./intercom-support.ts";

let gw: Gateway;
let recorder: DemoRecorder;
const browsers: HttpBrowser[] = [];
const pcs: RTCPeerConnection[] = [];
const viewers: WeriftViewer[] = [];
const streams: SseClient[] = [];

beforeAll(async () => {
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  gw = await startGateway({
    config: parseConfig(
      {
        server: { host: "127.0.0.1", port: 0 },
        log: { level: "warn" },
        demo: { enabled: false },
        media: { workers: 2 },
        cameras: ["cam1", "cam2"].map((id) => ({ id, url: recorder.url, transport: "tcp" })),
        auth: {
          mode: "dev",
          rights: [
            { role: "gatehouse-viewer", cameras: ["cam1", "cam2"], actions: ["live"] },
            { role: "gatehouse-admin", cameras: ["*"], actions: ["admin", "live"] },
          ],
        },
      },
      {},
    ),
    log: silentLogger,
  });
}, 60_000);

afterAll(async () => {
  for (const s of streams) s.close();
  for (const v of viewers) await v.close().catch(() => {});
  for (const pc of pcs) await pc.close().catch(() => {});
  for (const b of browsers) b.close();
  await gw?.close("test done");
  await recorder?.close();
});

/** `/metrics` as series → value, read by an administrator. */
async function metrics(admin: GridClient): Promise<Map<string, number>> {
  const r = await admin.send("GET", "/metrics");
  expect(r.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of r.body.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe("a grid session's live views and its media worker's death", () => {
  it("counts bound slots as viewers, and tells the page at once when the session's media worker dies", async () => {
    const c = await GridClient.signIn(gw, "viewer", browsers);
    // Another user: the administrator (who also reads /metrics).
    const admin = await GridClient.signIn(gw, "admin", browsers);
    const grid = await openWeriftGrid(c, { video: 2, audio: 0 });
    pcs.push(grid.pc);
    const id = grid.resource.slice(grid.resource.lastIndexOf("/") + 1);
    // The session is the only thing on the media workers yet: the one worker with a placement holds it.
    const held = gw.sfu.workerSlots().filter((s) => s.viewers > 0);
    expect(held).toHaveLength(1);
    const worker = held[0]!.index;
    const bound = await c.send("PUT", `${grid.resource}/slots`, { json: { slots: grid.mids.map((mid, i) => ({ mid, camera: `cam${i + 1}` })) } });
    expect(bound.status, bound.body).toBe(200);
    await grid.video.waitForCount(30, 20_000);
    // Beside it, one WHEP viewer of cam1 of the same user.
    const v = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/cam1`, headers: c.headers(), audio: false, timeoutMs: 20_000 });
    viewers.push(v);
    await v.video.waitForCount(10, 20_000);

    let m = await metrics(admin);
    expect(m.get("gatehouse_viewers")).toBe(3);
    expect(m.get('gatehouse_source_viewers{camera="cam1"}')).toBe(2);
    expect(m.get('gatehouse_source_viewers{camera="cam2"}')).toBe(1);
    expect(m.get("gatehouse_grid_slots_bound")).toBe(2);

    // One slot let go: one view fewer.
    expect((await c.send("DELETE", `${grid.resource}/slots/${grid.mids[1]}`)).status).toBe(204);
    m = await metrics(admin);
    expect(m.get("gatehouse_viewers")).toBe(2);
    expect(m.get('gatehouse_source_viewers{camera="cam2"}') ?? 0).toBe(0);

    // The page's event stream, and another user's.
    const events = await SseClient.open(`${gw.url}/api/cameras/events`, { cookie: c.headers().cookie! }, "cameras");
    const others = await SseClient.open(`${gw.url}/api/cameras/events`, { cookie: admin.headers().cookie! }, "cameras");
    streams.push(events, others);
    const session = gw.sfu.sessionList().find((s) => s.id === id)!;
    expect(session).toBeDefined();
    const closed = new Promise<string>((resolve) => session.once("closed", resolve));
    const told = events.next("viewer", (n) => n.grid === id, 10_000);
    const killedAt = Date.now();
    expect(gw.sfu.injectWorkerFault(worker)).toBe(true);
    expect(await closed).toBe("media worker failed");
    const notice = await told;
    expect(notice).toEqual({ grid: id, viewer: id, reason: "media-worker-failed", reoffer: true, message: "The gateway's media worker for this view stopped; reconnecting." });
    expect(Date.now() - killedAt).toBeLessThan(5000);
    // Only its own session hears of it.
    expect(others.events.filter((e) => e.event === "viewer")).toEqual([]);
    // The session's slots are no longer live views.
    await expect.poll(async () => (await metrics(admin)).get("gatehouse_grid_slots_bound"), { timeout: 10_000 }).toBe(0);
    m = await metrics(admin);
    expect(m.get("gatehouse_viewers")).toBe(gw.sfu.viewerList().length);
  }, 90_000);
});
