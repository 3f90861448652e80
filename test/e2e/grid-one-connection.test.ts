/**
 * The live-view page, as it opens by default, plays its whole grid over ONE RTCPeerConnection (web/grid-session.js
 * against gateway/http/grid.ts), in Chromium, against the whole gateway: sixteen cameras (each
 * its own RTSP session of the built-in demo recorder) in a 3×3 layout (two pages), a signed-in
 * user who may watch all of them live but one, whose recordings only they may see.
 *
 * - One peer connection, one selected candidate pair, frames decoded on every tile the user may
 *   watch; the other tile says plainly that the user may not, and the session goes on.
 * - Sound: every tile's slot carries its camera's sound, muted; the user picks a tile (its sound
 *   button) and hears it (audio level above zero), the other tiles stay muted.
 * - A smaller layout and the next page: tiles are re-bound to the session's slots, no new peer
 *   connection, frames decoded on the new page's tiles, each slot showing the tile's camera.
 * - The same through the TURN relay on TCP (`?relay=tcp`): one connection, relayed over TCP.
 * - A camera opened large plays in a WHEP session of its own, and the grid's session, which no tile
 *   uses meanwhile, ends on the gateway (none is held empty); back to the grid, a new session plays
 *   the page again.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, pageErrors, type Chromium } from "../peers/chromium.ts";
import type { TileRow } from "../peers/browser-page.ts";

const CAMERAS = Array.from({ length: 16 }, (_, i) => `cam${String(i + 1).padStart(2, "0")}`);
/** The camera the viewer may not watch live (only its recordings): visible, refused. */
const REFUSED = "cam07";
const ALLOWED = CAMERAS.filter((c) => c !== REFUSED);
/** The 3×3 layout's first page, less the refused camera. */
const PAGE1 = CAMERAS.slice(0, 9).filter((c) => c !== REFUSED);

let gateway: Gateway;
let recorder: DemoRecorder;
let chromium: Chromium;
let dir: string;
let signedIn = false;

/** What a test reads of each tile here. */
type TileSeen = Pick<TileRow, "camera" | "status" | "label" | "message" | "state" | "resource" | "framesDecoded">;

interface PageView {
  tiles: TileSeen[];
  pcs: number[];
  created: number;
  pairs: number;
  candidate: { type: string; relayProtocol?: string } | null;
  grid: { state: string; slots: number } | null;
  shown: string[];
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "gh-grid-e2e-"));
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  writeFileSync(path.join(dir, "cert.pem"), pems.cert);
  writeFileSync(path.join(dir, "key.pem"), pems.private);
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const config = parseConfig(
    {
      server: { port: 0, tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } },
      log: { level: "warn" },
      demo: { enabled: false },
      cameras: CAMERAS.map((id) => ({ id, url: recorder.url, transport: "tcp" })),
      auth: {
        mode: "dev",
        rights: [
          { role: "gatehouse-viewer", cameras: ALLOWED, actions: ["live"] },
          { role: "gatehouse-viewer", cameras: [REFUSED], actions: ["playback"] },
          { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
        ],
      },
      turn: { enabled: true, secret: "e2e-grid-turn-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { address: "127.0.0.1", portRange: [0, 0] } },
    },
    {},
  );
  gateway = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium({ args: ["--ignore-certificate-errors"] });
}, 90_000);

afterAll(async () => {
  await chromium?.close();
  await gateway?.close("test done");
  await recorder?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The browser's first page signs in as the development `viewer`; later pages share its session cookie. */
async function signInOnce(page: Page): Promise<void> {
  if (signedIn) return;
  await page.waitForSelector("#username", { timeout: 30_000 });
  await page.type("#username", "viewer");
  await page.type("#password", gateway.auth.devUsers!.find((u) => u.username === "viewer")!.password);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 30_000 }), page.click("#submit")]);
  signedIn = true;
}

/** A page signed in as the development `viewer`, at `query` of the live view. */
async function signedInPage(query: string): Promise<Page> {
  const page = await chromium.newPage();
  await page.goto(`${gateway.url}/${query}`, { waitUntil: "load" });
  await signInOnce(page);
  await page.waitForFunction((origin: string) => location.origin === origin && document.querySelectorAll(".tile").length === 16, { timeout: 30_000 }, new URL(gateway.url).origin);
  // Whatever layout the user last chose (their preferences load with their name): 3×3, two pages.
  await page.waitForSelector("#user:not([hidden])", { timeout: 30_000 });
  await page.click('#layouts [data-layout="3x3"]');
  await page.waitForFunction(() => (window as unknown as { gatehouse: { view(): { layout: string; pageCount: number } } }).gatehouse.view().pageCount === 2, { timeout: 10_000 });
  return page;
}

/** Tiles, peer connections (live ids and how many were ever made), selected pairs, the grid session. */
async function view(page: Page): Promise<PageView> {
  return page.evaluate(async () => {
    type W = {
      gatehouse: { stats(): Promise<TileRow[]>; grid(): { state: string; slotCount: number } | null; view(): { shown: string[] } };
      __gh: { pcs(): (RTCPeerConnection & { __ghId: number })[] };
    };
    const w = window as unknown as W;
    const pcs = w.__gh.pcs();
    let pairs = 0;
    let candidate: PageView["candidate"] = null;
    for (const pc of pcs) {
      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type !== "transport" || !s.selectedCandidatePairId) continue;
        pairs++;
        const local = stats.get(stats.get(s.selectedCandidatePairId).localCandidateId);
        candidate = { type: local.candidateType, relayProtocol: local.relayProtocol };
      }
    }
    const g = w.gatehouse.grid();
    return {
      tiles: (await w.gatehouse.stats()).map((t) => ({
        camera: t.camera,
        status: t.status,
        label: t.label,
        message: t.message,
        state: t.state,
        resource: t.resource,
        framesDecoded: t.framesDecoded,
      })),
      pcs: pcs.map((p) => p.__ghId),
      created: Math.max(0, ...pcs.map((p) => p.__ghId)),
      pairs,
      candidate,
      grid: g ? { state: g.state, slots: g.slotCount } : null,
      shown: w.gatehouse.view().shown,
    };
  });
}

/** Polls `view` until `ok` holds (or the time is up), returning the last view. */
async function until(page: Page, ok: (v: PageView) => boolean, timeoutMs: number): Promise<PageView> {
  const t0 = Date.now();
  let v = await view(page);
  while (!ok(v) && Date.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, 250));
    v = await view(page);
  }
  return v;
}

const row = (v: PageView, camera: string) => v.tiles.find((t) => t.camera === camera)!;

/** Waits (polling the gateway) until `ok` holds, at most `timeoutMs`; returns whether it did. */
async function gatewayUntil(ok: () => boolean, timeoutMs: number): Promise<boolean> {
  const t0 = Date.now();
  while (!ok() && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 100));
  return ok();
}
const live = (v: PageView, cams: readonly string[]) => cams.filter((c) => row(v, c)?.status === "live");

/** The slots the gateway's session shows, mid → camera. */
function serverSlots(): Map<string, string | undefined> {
  const sessions = gateway.sfu.sessionList();
  expect(sessions).toHaveLength(1);
  return new Map(sessions[0]!.slots().map((s) => [s.mid, s.camera]));
}

/** The tile's audio receiver (a track of its element's stream) once its level is above zero; its figures. */
async function tileSound(page: Page, camera: string, timeoutMs: number): Promise<{ level: number; energy: number; codec: string; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const s = await page.evaluate(async (cam) => {
      const el = document.querySelector(`[data-camera="${cam}"] video`) as HTMLVideoElement | null;
      const stream = el?.srcObject as MediaStream | null;
      const track = stream?.getAudioTracks()[0];
      if (!el || !track || el.muted) return null;
      const gh = (window as unknown as { __gh: { pcs(): RTCPeerConnection[] } }).__gh;
      for (const pc of gh.pcs()) {
        const r = pc.getReceivers().find((x) => x.track === track);
        if (!r) continue;
        const report = await pc.getStats();
        for (const x of (await r.getStats()).values()) {
          if (x.type !== "inbound-rtp" || x.kind !== "audio") continue;
          return { level: x.audioLevel ?? 0, energy: x.totalAudioEnergy ?? 0, codec: report.get(x.codecId)?.mimeType ?? "" };
        }
      }
      return null;
    }, camera);
    if (s && s.level > 0 && s.energy > 0) return { ...s, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`no sound on ${camera}'s tile within ${timeoutMs} ms: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every shown tile's slot (from its resource URL …/slots/<mid>) shows that tile's camera on the gateway. */
function expectSlotsMatch(v: PageView, cams: readonly string[]): void {
  const slots = serverSlots();
  const got = cams.map((c) => {
    const mid = /\/slots\/([^/]+)$/.exec(row(v, c).resource ?? "")?.[1];
    return [c, mid === undefined ? "unbound" : slots.get(decodeURIComponent(mid))];
  });
  expect(got).toEqual(cams.map((c) => [c, c]));
}

describe("a whole grid over one peer connection (Chromium, whole gateway)", () => {
  it("9 cameras in one connection; a camera without the right is refused in plain words; the next page re-binds slots without a new connection", async () => {
    const page = await signedInPage("");
    try {
      const first = await until(page, (v) => live(v, PAGE1).length === PAGE1.length && row(v, REFUSED).status === "error", 60_000);
      expect(live(first, PAGE1)).toEqual(PAGE1);
      // The refused camera: a plain message on its tile, the session untouched.
      expect({ label: row(first, REFUSED).label, message: row(first, REFUSED).message }).toEqual({
        label: "No access",
        message: "You are not allowed to view this camera",
      });
      // (Slots for the layout the page first showed: the user's own, or "Fit all".)
      expect(first.grid?.state).toBe("connected");
      expect(first.grid!.slots).toBeGreaterThanOrEqual(9);
      expect({ live: first.pcs.length, made: first.created, pairs: first.pairs }).toEqual({ live: 1, made: 1, pairs: 1 });
      for (const c of PAGE1) expect(row(first, c).framesDecoded ?? 0).toBeGreaterThan(0);
      expect(gateway.sfu.viewerList()).toHaveLength(0); // no per-camera WHEP viewer behind the grid
      expectSlotsMatch(first, PAGE1);
      const pc = first.pcs[0];

      // Sound: muted everywhere until a tile is picked; then that tile is heard, and only it.
      const heard = PAGE1[0]!;
      await page.waitForSelector(`[data-camera="${heard}"] .tile-audio:not([hidden])`, { timeout: 20_000 });
      expect(await page.$$eval(".tile video", (els) => els.every((e) => (e as HTMLVideoElement).muted))).toBe(true);
      await page.click(`[data-camera="${heard}"] .tile-audio`);
      const sound = await tileSound(page, heard, 20_000);
      expect(sound.level).toBeGreaterThan(0);
      expect(sound.energy).toBeGreaterThan(0);
      expect(sound.codec).toMatch(/^audio\/(PCMU|opus)$/i);
      expect(await page.$$eval(".tile video", (els) => els.filter((e) => !(e as HTMLVideoElement).muted).length)).toBe(1);
      // The heard tile's element holds its sound (a muted one's joins a second after its first picture).
      expect(await page.$eval(`[data-camera="${heard}"] video`, (e) => ((e as HTMLVideoElement).srcObject as MediaStream).getAudioTracks().length)).toBe(1);
      console.info(`grid tile sound: level ${sound.level.toFixed(3)} after ${sound.ms} ms unmuted`);

      // The second page: cam10…cam16 take the slots cam01…cam09 held.
      const before = await view(page);
      await page.click("#page-next");
      const second = CAMERAS.slice(9);
      const framesBefore = new Map(second.map((c) => [c, row(before, c).framesDecoded ?? 0]));
      const turned = await until(
        page,
        (v) => v.shown.join() === second.join() && live(v, second).length === second.length && second.every((c) => (row(v, c).framesDecoded ?? 0) > (framesBefore.get(c) ?? 0) + 10),
        60_000,
      );
      expect(turned.shown).toEqual(second);
      expect(live(turned, second)).toEqual(second);
      expect({ live: turned.pcs, made: turned.created, pairs: turned.pairs }).toEqual({ live: [pc], made: 1, pairs: 1 });
      expectSlotsMatch(turned, second);
      // (The refused bind's 403 is logged by the browser as a failed load, as is a 401 before sign-in.)
      expect(pageErrors(page).filter((e) => !/status of 40[13]/.test(e))).toEqual([]);
      // Tiles of the first page gave their slots up.
      for (const c of CAMERAS.slice(0, 9)) expect(row(turned, c).state).toBe("paused");
    } finally {
      await page.close();
    }
  }, 180_000);

  it("the same grid through the TURN relay on TCP (?relay=tcp): one connection, relayed over TCP", async () => {
    // The first page's session ends with it (its DELETE, or the connection's end).
    const t0 = Date.now();
    while (gateway.sfu.sessionList().length > 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
    expect(gateway.sfu.sessionList()).toHaveLength(0);
    const page = await signedInPage("?relay=tcp");
    try {
      const v = await until(page, (x) => live(x, PAGE1).length === PAGE1.length && row(x, REFUSED).status === "error", 90_000);
      expect(live(v, PAGE1)).toEqual(PAGE1);
      expect(row(v, REFUSED).message).toBe("You are not allowed to view this camera");
      expect({ live: v.pcs.length, made: v.created, pairs: v.pairs }).toEqual({ live: 1, made: 1, pairs: 1 });
      expect(v.candidate).toEqual({ type: "relay", relayProtocol: "tcp" });
      // One set of TURN allocations for the whole grid (one per address family at most), not one per tile.
      expect(gateway.turn!.core.allocationCount).toBeGreaterThanOrEqual(1);
      expect(gateway.turn!.core.allocationCount).toBeLessThanOrEqual(2);
      expectSlotsMatch(v, PAGE1);
    } finally {
      await page.close();
    }
  }, 180_000);

  it("a camera opened large plays in its own session and the grid's, unused, ends on the gateway; back to the grid, a new one plays the page", async () => {
    expect(await gatewayUntil(() => gateway.sfu.sessionList().length === 0 && gateway.sfu.viewerList().length === 0, 30_000)).toBe(true);
    const page = await signedInPage("");
    try {
      const first = await until(page, (v) => live(v, PAGE1).length === PAGE1.length, 60_000);
      expect(live(first, PAGE1)).toEqual(PAGE1);
      expect(gateway.sfu.sessionList()).toHaveLength(1);
      const big = PAGE1[0]!;
      await page.evaluate((id) => (window as unknown as { gatehouse: { open(id: string): void } }).gatehouse.open(id), big);
      // The open camera plays over a WHEP session of its own; no grid session is left behind it.
      expect(await gatewayUntil(() => gateway.sfu.sessionList().length === 0 && gateway.sfu.viewerList().length === 1, 20_000)).toBe(true);
      expect(gateway.sfu.viewerList().map((v) => v.cameraId)).toEqual([big]);
      const opened = await until(page, (v) => row(v, big).status === "live" && (row(v, big).framesDecoded ?? 0) > 0, 60_000);
      expect(row(opened, big).status).toBe("live");
      expect(opened.grid?.state).toBe("new");
      for (const c of PAGE1.slice(1)) expect(row(opened, c).state).toBe("paused");
      // Back to the grid: one new session shows the page; the open camera's own session ends.
      await page.evaluate(() => (window as unknown as { gatehouse: { back(): void } }).gatehouse.back());
      const back = await until(page, (v) => v.grid?.state === "connected" && live(v, PAGE1).length === PAGE1.length, 60_000);
      expect(live(back, PAGE1)).toEqual(PAGE1);
      expect(await gatewayUntil(() => gateway.sfu.sessionList().length === 1 && gateway.sfu.viewerList().length === 0, 20_000)).toBe(true);
      expectSlotsMatch(back, PAGE1);
      expect(pageErrors(page).filter((e) => !/status of 40[13]/.test(e))).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000);

  it("a slot the gateway refuses for a reason that may pass (503 with Retry-After) is asked for again after that delay: its tile says why and when, then plays; a 403 stays refused", async () => {
    expect(await gatewayUntil(() => gateway.sfu.sessionList().length === 0 && gateway.sfu.viewerList().length === 0, 30_000)).toBe(true);
    // The gateway's answer to the page's first request (the offer with its slots' binds) is changed
    // on its way (Chromium's Fetch domain) to refuse one camera's slot as a cluster node does while
    // it takes a dead node's cameras over: 503, retryAfterSeconds 2, in words. The page's next
    // binds reach the gateway unchanged.
    const RETRY_AFTER_S = 2;
    const WHY = "this camera is pulled by the gateway node node-9, which cannot forward it here now";
    const page = await chromium.newPage();
    const cdp = await page.createCDPSession();
    let target = "";
    let refusedAt = 0;
    const putsFor: number[] = [];
    cdp.on("Fetch.requestPaused", (e: { requestId: string; request: { url: string; method: string; postData?: string }; responseStatusCode?: number; responseHeaders?: { name: string; value: string }[] }) => {
      void (async () => {
        const { pathname } = new URL(e.request.url);
        if (e.responseStatusCode === undefined) {
          // A bind sent after the answer (PUT .../slots or .../slots/:mid): when it names the target.
          if (e.request.method === "PUT" && target && (e.request.postData ?? "").includes(`"${target}"`)) putsFor.push(Date.now());
          return cdp.send("Fetch.continueRequest", { requestId: e.requestId });
        }
        if (e.request.method !== "POST" || !pathname.endsWith("/grid") || e.responseStatusCode !== 201 || target) return cdp.send("Fetch.continueRequest", { requestId: e.requestId });
        const sent = JSON.parse(e.request.postData ?? "{}") as { slots?: { mid: string; camera: string }[] };
        const pick = sent.slots?.find((x) => x.camera !== REFUSED);
        const body = await cdp.send("Fetch.getResponseBody", { requestId: e.requestId });
        const answer = JSON.parse(body.base64Encoded ? Buffer.from(body.body, "base64").toString() : body.body) as { answer: string; slots: Record<string, unknown>[] };
        if (pick) {
          target = pick.camera;
          answer.slots = answer.slots.map((x) => (x.mid === pick.mid ? { mid: pick.mid, status: 503, error: "overload", reason: WHY, retryAfterSeconds: RETRY_AFTER_S } : x));
          refusedAt = Date.now();
        }
        const headers = (e.responseHeaders ?? []).filter((h) => !/^content-length$/i.test(h.name));
        return cdp.send("Fetch.fulfillRequest", { requestId: e.requestId, responseCode: 201, responseHeaders: headers, body: Buffer.from(JSON.stringify(answer)).toString("base64") });
      })().catch(() => {});
    });
    await cdp.send("Fetch.enable", {
      patterns: [
        { urlPattern: "*/grid", requestStage: "Response" },
        { urlPattern: "*/slots*", requestStage: "Request" },
      ],
    });
    try {
      await page.goto(`${gateway.url}/`, { waitUntil: "load" });
      await signInOnce(page);
      await page.waitForFunction(() => document.querySelectorAll(".tile").length === 16, { timeout: 30_000 });
      // The refused tile says why and when it asks again, and is not shown as live meanwhile.
      const waiting = await until(page, (v) => target !== "" && row(v, target)?.state === "retrying", 30_000);
      expect(target, "the page's offer named its slots' cameras").not.toBe("");
      const t = row(waiting, target);
      expect(t.state).toBe("retrying");
      expect(t.status).toBe("retrying");
      expect(t.label).toMatch(/^Retry in [12] s$/);
      expect(t.message).toBe(`${WHY[0]!.toUpperCase()}${WHY.slice(1)}`);
      // Then it asks again, not before the gateway said, and plays.
      const played = await until(page, (v) => row(v, target)?.status === "live" && (row(v, target)?.framesDecoded ?? 0) > 0, 30_000);
      expect(row(played, target).status).toBe("live");
      expect(putsFor.length).toBeGreaterThan(0);
      expect(putsFor[0]! - refusedAt).toBeGreaterThanOrEqual(RETRY_AFTER_S * 1000);
      // One connection all along; the camera without the right is still refused, in words.
      expect(played.created).toBe(1);
      if (played.shown.includes(REFUSED)) {
        expect(row(played, REFUSED).state).toBe("failed");
        expect(row(played, REFUSED).message).toBe("You are not allowed to view this camera");
      }
    } finally {
      await page.close();
    }
  }, 120_000);
});
