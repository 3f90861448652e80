/**
 * End to end, with a real GStreamer recorder and Chromium: the supervisor never loops.
 * A camera whose recorder keeps dying is disabled with its reason (tile and /api/cameras),
 * the Supervision page lists why, an administrator enables it with the Enable button on its
 * tile, and the next time it comes back by itself when the window has passed. Every event
 * reaches a webhook (a local HTTP server). A media worker killed from inside is replaced;
 * its viewer's page hears of it on its event stream at once, offers again and resumes; the
 * second time the slot is left stopped and the administrator starts it from the page. The same
 * for the page's grid over one peer connection: the worker holding that session dies, the page
 * hears it at once, its tile says why (never Live meanwhile) and the grid offers again and plays.
 */
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { CameraView } from "../../gateway/cameras.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { SupervisionEvent } from "../../gateway/supervision/supervisor.ts";
import { tileRows, type TileRow } from "../peers/browser-page.ts";
import { launchChromium, waitForNewFrames, type Chromium } from "../peers/chromium.ts";
import { startGstRtspServer, type GstRtspServer } from "../peers/gst.ts";

const VIDEO = '[data-camera="crash"] video';
/** The live page as it opens by default: its grid over one peer connection. */
const GRID_PAGE = "/";
const WINDOW_SECONDS = 30;

async function tile(page: Page, camera: string): Promise<TileRow> {
  const all = await tileRows(page);
  const t = all.find((x) => x.camera === camera);
  if (!t) throw new Error(`no tile for ${camera}`);
  return t;
}

async function waitForLabel(page: Page, camera: string, label: string, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    (cam, want) => (document.querySelector(`[data-camera="${cam}"] .badge-text`)?.textContent ?? "") === want,
    { polling: 50, timeout: timeoutMs },
    camera,
    label,
  );
}

/** Resolves with the camera's view once `ok` holds (driven by the registry's events). */
function waitForCamera(gw: Gateway, id: string, ok: (v: CameraView) => boolean, timeoutMs: number): Promise<CameraView> {
  return new Promise((resolve, reject) => {
    const now = gw.cameras.view(id)!;
    if (ok(now)) return resolve(now);
    const timer = setTimeout(() => {
      off();
      reject(new Error(`camera ${id} never matched; last ${JSON.stringify(gw.cameras.view(id))}`));
    }, timeoutMs);
    const off = gw.cameras.events.on("camera", (v) => {
      if (v.id !== id || !ok(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

async function apiCamera(gw: Gateway, id: string): Promise<CameraView> {
  const res = await fetch(`${gw.url}/api/cameras`);
  expect(res.status).toBe(200);
  return ((await res.json()) as CameraView[]).find((c) => c.id === id)!;
}

describe("supervision in Chromium (real GStreamer recorder)", { timeout: 120_000 }, () => {
  let chromium: Chromium;
  let crash: GstRtspServer;
  let gw: Gateway;
  let hook: http.Server;
  // The audit trail of this run only (not ./data of the working copy, which a previous run filled).
  const dataDir = mkdtempSync(path.join(tmpdir(), "gh-supervision-e2e-"));
  const delivered: { contentType: string | undefined; body: { source: string; event: SupervisionEvent } }[] = [];

  beforeAll(async () => {
    hook = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        delivered.push({ contentType: req.headers["content-type"], body: JSON.parse(body) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, "127.0.0.1", r));
    const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    [chromium, crash] = await Promise.all([launchChromium(), startGstRtspServer({ width: 320, height: 240, gop: 25 })]);
    gw = await startGateway({
      config: parseConfig(
        {
          server: { port: 0 },
          auth: { mode: "none" },
          log: { level: "warn" },
          demo: { enabled: false },
          dataDir,
          media: { workers: 2 },
          cameras: [{ id: "crash", url: crash.url }],
          // One lost session is tolerated in the window, the second disables the camera.
          supervision: { maxRestarts: 1, windowSeconds: WINDOW_SECONDS, backoffMinMs: 200, webhook: { url: hookUrl, timeoutMs: 2000 } },
        },
        {},
      ),
      log: silentLogger,
    });
  }, 90_000);

  afterAll(async () => {
    await gw?.close("test done");
    await crash?.close();
    await chromium?.close();
    await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Kills the recorder while the camera is live; resolves once the gateway has seen the loss (or disabled it). */
  async function crashOnce(): Promise<CameraView> {
    await waitForCamera(gw, "crash", (v) => v.status === "live", 20_000);
    await crash.kill("SIGKILL");
    const down = await waitForCamera(gw, "crash", (v) => v.status !== "live", 10_000);
    await crash.restart();
    return down;
  }

  it("disables a camera whose recorder keeps dying, shows why, and brings it back by an administrator or after the window", async () => {
    const page = await chromium.newPage(`${gw.url}/#camera=crash`);
    await waitForNewFrames(page, 10, 30_000, VIDEO);

    // First loss: tolerated (the ingest reconnects, live again).
    expect((await crashOnce()).status).not.toBe("disabled");
    await waitForCamera(gw, "crash", (v) => v.status === "live", 20_000);
    await waitForNewFrames(page, 5, 20_000, VIDEO);
    // Only a disabled camera offers it.
    expect(await page.$eval('[data-camera="crash"] .tile-enable', (b) => (b as HTMLElement).hidden)).toBe(true);
    expect(gw.supervisor.status("camera:crash")).toMatchObject({ state: "ok", failures: 1, restarts: 1 });

    // Second loss within the window: disabled, with the reason, on the tile and in the API.
    await crashOnce();
    const disabled = await waitForCamera(gw, "crash", (v) => v.status === "disabled", 10_000);
    expect(disabled.statusReason).toMatch(new RegExp(`^disabled: 2 failures in ${WINDOW_SECONDS} s: the recorder `));
    const api = await apiCamera(gw, "crash");
    expect(api).toMatchObject({ status: "disabled", state: "disabled" });
    expect(api.statusReason).toBe(disabled.statusReason);
    await waitForLabel(page, "crash", "Disabled", 10_000);
    const t = await tile(page, "crash");
    expect(t).toMatchObject({ status: "error", serverStatus: "disabled" });
    expect(t.message).toBe(`D${disabled.statusReason!.slice(1)}`);
    // The recorder is back, but nothing pulls it: still disabled.
    expect(gw.cameras.status("crash")!.recorderSessions).toBe(0);

    // The tile of the disabled camera offers an administrator (everyone is one without sign-in)
    // to enable it: the button is on top (a pointer reaches it) and brings the camera back.
    const enableBtn = '[data-camera="crash"] .tile-enable';
    await page.waitForSelector(`${enableBtn}:not([hidden])`, { timeout: 10_000 });
    expect(await page.$eval(enableBtn, (b) => b.textContent)).toBe("Enable");
    const hit = await page.$eval(enableBtn, (b) => {
      const r = b.getBoundingClientRect();
      const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
      return e === b ? "the button" : `${e?.tagName}.${e?.className}`;
    });
    expect(hit).toBe("the button");
    expect(gw.supervisor.status("camera:crash")!.state).toBe("disabled");
    // Pressed (the hit test above stands for the pointer); what the button says if it fails.
    await page.$eval(enableBtn, (b) => (b as HTMLButtonElement).click());
    await waitForCamera(gw, "crash", (v) => v.status !== "disabled", 10_000).catch(async (err: Error) => {
      throw new Error(`${err.message}; the button says "${await page.$eval(enableBtn, (b) => b.textContent)}"`);
    });
    // The button goes with the disabled state.
    await page.waitForSelector(`${enableBtn}[hidden]`, { timeout: 10_000 });

    // The administrator's page lists the events, the last one the tile's enable, by whom.
    const admin = await chromium.newPage(`${gw.url}/supervision.html`);
    await admin.waitForSelector('#components tr[data-component="camera:crash"][data-state="ok"]', { timeout: 10_000 });
    const shown = await admin.$$eval("#events tbody tr", (trs) =>
      trs.map((tr) => ({ component: (tr as HTMLElement).dataset.component, type: (tr as HTMLElement).dataset.type, text: tr.textContent ?? "" })),
    );
    expect(shown.filter((e) => e.component === "camera:crash").map((e) => e.type)).toEqual([
      "enabled", "disabled", "failed", "recovered", "restarting", "failed",
    ]);
    expect(shown[1]!.text).toContain(`2 failures in ${WINDOW_SECONDS} s`);
    await admin.waitForSelector('#events tbody tr[data-type="enabled"]', { timeout: 10_000 });
    expect(await admin.$eval('#events tbody tr[data-type="enabled"]', (tr) => tr.textContent)).toContain("enabled by an administrator (by anonymous)");
    await admin.close();
    // An administrator's action: in the audit trail.
    await gw.audit!.flush();
    const audited = await gw.audit!.query({ actions: ["admin_component_enable"], limit: 10 });
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({ action: "admin_component_enable", outcome: "success", camera: "crash", subject: "anonymous" });
    await waitForCamera(gw, "crash", (v) => v.status === "live", 20_000);
    await waitForNewFrames(page, 10, 20_000, VIDEO);
    await waitForLabel(page, "crash", "Live", 10_000);

    // Again twice: disabled again, and this time back by itself once the window has passed.
    await crashOnce();
    await waitForCamera(gw, "crash", (v) => v.status === "live", 20_000);
    await crashOnce();
    await waitForCamera(gw, "crash", (v) => v.status === "disabled", 10_000);
    const disabledAt = Date.now();
    const until = gw.supervisor.status("camera:crash")!.disabledUntil!;
    // Disabled for the whole window from the failure that disabled it (the supervisor's clock,
    // not this test's, which a loaded machine delays).
    const disabledEvent = gw.supervisor.recent().filter((e) => e.component === "camera:crash" && e.type === "disabled").at(-1)!;
    // (The event is stamped a moment after the failure that set `until`.)
    expect(until - disabledEvent.time).toBeGreaterThan(WINDOW_SECONDS * 1000 - 100);
    expect(until - disabledEvent.time).toBeLessThanOrEqual(WINDOW_SECONDS * 1000);
    await waitForCamera(gw, "crash", (v) => v.status !== "disabled", (WINDOW_SECONDS + 10) * 1000);
    expect(Date.now()).toBeGreaterThanOrEqual(until);
    await waitForCamera(gw, "crash", (v) => v.status === "live", 20_000);
    await waitForNewFrames(page, 10, 20_000, VIDEO);
    console.info(`camera enabled again ${Date.now() - disabledAt} ms after it was disabled (window ${WINDOW_SECONDS} s)`);
    expect(gw.supervisor.recent().filter((e) => e.component === "camera:crash").at(-1)).toMatchObject({ component: "camera:crash", type: "enabled", reason: "the window passed" });

    // The webhook got every camera event, in order, as JSON.
    const cameraEvents = gw.supervisor.recent().filter((e) => e.component === "camera:crash");
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`webhook got ${delivered.length} events`)), 10_000);
      const check = () => {
        if (delivered.filter((d) => d.body.event.component === "camera:crash").length >= cameraEvents.length) {
          clearTimeout(deadline);
          resolve();
        } else setTimeout(check, 50);
      };
      check();
    });
    const got = delivered.filter((d) => d.body.event.component === "camera:crash");
    expect(got.map((d) => d.body.event)).toEqual(cameraEvents);
    expect(new Set(got.map((d) => d.body.event.type))).toEqual(new Set(["failed", "restarting", "recovered", "disabled", "enabled"]));
    expect(got.every((d) => d.contentType === "application/json")).toBe(true);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^gatehouse_supervision_events_total\{kind="camera",type="disabled"\} 2$/m);
    expect(metrics).toMatch(/^gatehouse_supervision_webhook_failed_total 0$/m);
    await page.close();
  });

  it("replaces a media worker killed from inside, and the viewer's page resumes by itself", async () => {
    await waitForCamera(gw, "crash", (v) => v.status !== "disabled", 30_000);
    // Only this test's page holds a viewer: the worker killed below is the one serving it.
    for (const p of await chromium.browser.pages()) await p.close();
    await expect.poll(() => gw.sfu.viewerList().length, { timeout: 15_000 }).toBe(0);
    const page = await chromium.newPage(`${gw.url}/#camera=crash`);
    await waitForNewFrames(page, 10, 30_000, VIDEO);
    const slot = gw.sfu.workerSlots().find((s) => s.viewers > 0)!;
    expect(slot).toBeDefined();
    const startsBefore = slot.starts;

    // What the page's session does next, as it happens (its error is cleared once it connects again).
    await page.evaluate(() => {
      const w = window as unknown as { gatehouse: { sessions: Map<string, EventTarget & { state: string; lastError: { message: string } | null }> }; __retries: { state: string; error: string; at: number }[] };
      const s = w.gatehouse.sessions.get("crash")!;
      w.__retries = [];
      s.addEventListener("statechange", () => {
        w.__retries.push({ state: s.state, error: s.lastError?.message ?? "", at: Date.now() });
      });
    });
    const killedAt = Date.now();
    expect(gw.sfu.injectWorkerFault(slot.index)).toBe(true);
    // The page hears on its event stream that the worker died, offers again at once and is placed on a running worker.
    await waitForNewFrames(page, 10, 45_000, VIDEO);
    const resumeMs = Date.now() - killedAt;
    const states = await page.evaluate(() => (window as unknown as { __retries: { state: string; error: string; at: number }[] }).__retries);
    console.info(`viewer decoding again ${resumeMs} ms after its media worker was killed; the page's session: ${states.map((x) => `${x.state} +${x.at - killedAt} ms${x.error ? ` (${x.error})` : ""}`).join(", ")}`);
    expect(states[0]).toMatchObject({ state: "retrying", error: "The gateway's media worker for this view stopped; reconnecting." });
    expect(resumeMs).toBeLessThan(30_000);
    await waitForLabel(page, "crash", "Live", 10_000);

    const id = `media-worker:${slot.index}`;
    const evts = gw.supervisor.recent().filter((e) => e.component === id);
    expect(evts.map((e) => e.type)).toEqual(["failed", "restarting", "recovered"]);
    expect(evts[0]!.reason).toBe("the thread failed: injected fault");
    expect(gw.sfu.workerSlots()[slot.index]).toMatchObject({ state: "running", starts: startsBefore + 1 });
    const readyz = async () => ((await (await fetch(`${gw.url}/readyz`)).json()) as { components: Record<string, { ready: boolean; detail: string }> }).components;
    expect((await readyz()).sfu).toMatchObject({ ready: true, detail: "2 of 2 media workers running" });

    // The same worker dies again within the window: not restarted again; viewers go to the other one.
    const onIt = gw.sfu.workerSlots()[slot.index]!.viewers > 0;
    expect(gw.sfu.injectWorkerFault(slot.index)).toBe(true);
    await new Promise<void>((resolve) => {
      const off = gw.supervisor.events.on("event", (e) => {
        if (e.component === id && e.type === "disabled") {
          off();
          resolve();
        }
      });
    });
    expect(gw.supervisor.status(id)).toMatchObject({ state: "disabled", canEnable: true });
    expect(gw.supervisor.status(id)!.reason).toBe(`2 failures in ${WINDOW_SECONDS} s: the thread failed: injected fault`);
    await waitForNewFrames(page, 10, 45_000, VIDEO);
    const slots = gw.sfu.workerSlots();
    expect(slots[slot.index]).toMatchObject({ state: "stopped", viewers: 0 });
    expect(slots[1 - slot.index]).toMatchObject({ state: "running", viewers: 1 });
    expect(await readyz()).toMatchObject({ sfu: { ready: true, detail: "1 of 2 media workers running" }, supervision: { ready: false } });
    console.info(`second kill of worker ${slot.index} (the viewer was ${onIt ? "on it" : "elsewhere"}): slot left stopped, viewer decoding on the other worker`);

    // An administrator starts it again with the Supervision page's Enable button.
    const admin = await chromium.newPage(`${gw.url}/supervision.html`);
    const row = `#components tr[data-component="${id}"]`;
    await admin.waitForSelector(`${row}[data-state="disabled"] button`, { timeout: 10_000 });
    // Pressed through the DOM: the table is rebuilt every few seconds, and a pointer click may land on the old row.
    await admin.$eval(`${row} button`, (b) => (b as HTMLButtonElement).click());
    await admin.waitForSelector(`${row}[data-state="ok"]`, { timeout: 10_000 });
    await admin.close();
    expect(gw.sfu.workerSlots()[slot.index]).toMatchObject({ state: "running", starts: startsBefore + 2 });
    expect((await readyz()).sfu).toMatchObject({ ready: true, detail: "2 of 2 media workers running" });
    expect((await fetch(`${gw.url}/api/admin/supervision/components/${encodeURIComponent(id)}/enable`, { method: "POST" })).status).toBe(409);
    await page.close();
  });

  it("the grid over one connection: its media worker dies, the page hears it at once, the tile says why and the grid plays again", async () => {
    await waitForCamera(gw, "crash", (v) => v.status !== "disabled", 30_000);
    for (const p of await chromium.browser.pages()) await p.close();
    await expect.poll(() => gw.sfu.viewerList().length + gw.sfu.sessionList().length, { timeout: 15_000 }).toBe(0);
    const page = await chromium.newPage(`${gw.url}${GRID_PAGE}`);
    await waitForNewFrames(page, 10, 30_000, VIDEO);
    await waitForLabel(page, "crash", "Live", 10_000);
    // The tile plays over the grid's one connection (no WHEP viewer), on one worker.
    expect(gw.sfu.viewerList()).toHaveLength(0);
    expect(gw.sfu.sessionList()).toHaveLength(1);
    const before = gw.sfu.sessionList()[0]!.id;
    const held = gw.sfu.workerSlots().filter((s) => s.viewers > 0);
    expect(held).toHaveLength(1);

    // What the grid session and the tile do next, as it happens.
    await page.evaluate(() => {
      const w = window as unknown as {
        gatehouse: { grid(): (EventTarget & { state: string; lastError: { message: string } | null }) | null };
        __grid: { state: string; error: string; at: number }[];
        __tile: { label: string; message: string; at: number }[];
      };
      const g = w.gatehouse.grid()!;
      w.__grid = [];
      w.__tile = [];
      g.addEventListener("statechange", () => w.__grid.push({ state: g.state, error: g.lastError?.message ?? "", at: Date.now() }));
      const el = document.querySelector('[data-camera="crash"]')!;
      const read = () => ({ label: el.querySelector(".badge-text")?.textContent ?? "", message: el.querySelector(".tile-message")?.textContent ?? "", at: Date.now() });
      // Seeded with what the tile says now: a mutation elsewhere in the tile (its clock ticks each
      // second) must not be taken for the first thing it said after the kill.
      w.__tile.push(read());
      new MutationObserver(() => {
        const now = read();
        const last = w.__tile.at(-1)!;
        if (last.label !== now.label || last.message !== now.message) w.__tile.push(now);
      }).observe(el, { subtree: true, childList: true, characterData: true });
    });
    // Where the record stood at the kill, by position (the page's clock is not this process's to the millisecond).
    const atKill = await page.evaluate(() => (window as unknown as { __tile: unknown[] }).__tile.length);
    const killedAt = Date.now();
    expect(gw.sfu.injectWorkerFault(held[0]!.index)).toBe(true);
    await waitForNewFrames(page, 10, 45_000, VIDEO);
    await waitForLabel(page, "crash", "Live", 10_000);
    const resumeMs = Date.now() - killedAt;
    const grid = await page.evaluate(() => (window as unknown as { __grid: { state: string; error: string; at: number }[] }).__grid);
    const said = await page.evaluate(() => (window as unknown as { __tile: { label: string; message: string; at: number }[] }).__tile);
    // Live when the worker was killed; what it said from then on.
    expect(said[atKill - 1]?.label).toBe("Live");
    const shown = said.slice(atKill);
    console.info(
      `grid decoding again ${resumeMs} ms after its media worker was killed; the session: ${grid.map((x) => `${x.state} +${x.at - killedAt} ms${x.error ? ` (${x.error})` : ""}`).join(", ")}; ` +
        `the tile: ${shown.map((x) => `${x.label}${x.message ? ` "${x.message}"` : ""} +${x.at - killedAt} ms`).join(", ")}`,
    );
    const why = "The gateway's media worker for this view stopped; reconnecting.";
    // Told on the event stream (ICE would take seconds): the session starts over with the gateway's words.
    expect(grid[0]).toMatchObject({ state: "retrying", error: why });
    expect(grid[0]!.at - killedAt).toBeLessThan(5000);
    // The tile said why while it recovered, and was not Live until its picture came back.
    expect(shown[0]!.label).not.toBe("Live");
    expect(shown.some((x) => x.message === why)).toBe(true);
    const liveAgain = shown.findIndex((x) => x.label === "Live");
    expect(liveAgain).toBeGreaterThan(0);
    expect(shown.slice(0, liveAgain).every((x) => x.label !== "Live")).toBe(true);
    expect(resumeMs).toBeLessThan(30_000);
    // A new session, on a running worker; still no WHEP viewer.
    expect(gw.sfu.sessionList().map((s) => s.id)).not.toContain(before);
    expect(gw.sfu.sessionList()).toHaveLength(1);
    expect(gw.sfu.viewerList()).toHaveLength(0);
    await page.close();
  });
});
