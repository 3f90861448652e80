/**
 * Recorder playback end to end: GStreamer's ONVIF replay server (a recorder that is not
 * ours; each frame shows its recorded time as pixel blocks) → gateway (ONVIF replay RTSP
 * client, re-timer, SFU) → web/playback-client.js in real Chromium. The recorded time of
 * the frame on screen is read from its pixels, never from what the gateway claims.
 *
 * And the `playback` right: a signed-in user who may only watch live gets 403.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, pageErrors, type Chromium } from "../peers/chromium.ts";
import { READ_FRAME_INDEX, startOnvifRecorder, type OnvifRecorder } from "../peers/gst-onvif.ts";
import { signedInDevUser, type HttpBrowser } from "../peers/oidc.ts";

const HOUR = 3_600_000;
const FRAME_MS = 40;

let rec: OnvifRecorder;
let gw: Gateway;
let chromium: Chromium;
let page: Page;
/** Requests of the page answered with an error status: `<status> <method> <path>`. */
const failedRequests: string[] = [];

/** The recording: the last two hours, with a one-minute gap an hour ago. */
const base = Math.floor(Date.now() / 1000) * 1000 - 2 * HOUR;
const gap: [number, number] = [base + HOUR, base + HOUR + 60_000];

beforeAll(async () => {
  rec = await startOnvifRecorder({ baseMs: base, durationS: 7200, gaps: [gap] });
  const config = parseConfig(
    {
      server: { port: 0 },
      auth: { mode: "none" },
      log: { level: "warn" },
      cameras: [
        { id: "rec", url: rec.url, playback: { mode: "onvif" } },
        { id: "recgw", url: rec.url, playback: { mode: "onvif", pacing: "gateway" } },
      ],
    },
    { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR },
  );
  gw = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium();
  page = await chromium.newPage(`${gw.url}/playback-client.js`);
  page.on("response", (r) => {
    if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  await page.evaluate(`(async () => {
    document.body.innerHTML = '<video id="v" autoplay muted playsinline width="320" height="192"></video><video id="v2" autoplay muted playsinline width="320" height="192"></video>';
    (await navigator.mediaDevices.getUserMedia({ video: true })).getTracks().forEach((t) => t.stop());
    // Every peer connection the page makes, for the playout delay a rate measurement prints.
    const Native = RTCPeerConnection;
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native { constructor(...a) { super(...a); window.__pcs.push(this); } };
    window.PB = await import("/playback-client.js");
  })()`);
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
  await rec?.close();
});

/** The recorded time of the frame on screen, from its pixels (null before the first frame). */
async function onScreen(selector = "#v"): Promise<number | null> {
  const idx = (await page.evaluate(READ_FRAME_INDEX(selector))) as number | null;
  return idx === null ? null : rec.timeOf(idx);
}

/** Waits until the frame on screen satisfies `ok`, and returns its recorded time. */
async function waitForFrame(ok: (t: number) => boolean, timeoutMs = 10_000, selector = "#v"): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const t = await onScreen(selector);
    if (t !== null && ok(t)) return t;
    if (Date.now() - t0 > timeoutMs) throw new Error(`frame on screen ${t === null ? "none" : new Date(t).toISOString()} did not match in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The same frame stays on screen for `ms`. */
async function steady(ms: number): Promise<number> {
  const first = await onScreen();
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    expect(await onScreen()).toBe(first);
  }
  return first!;
}

const call = (js: string) => page.evaluate(`(async () => { const r = await (${js}); return r && r.position ? { ...r, position: r.position.getTime() } : r; })()`) as Promise<{ position: number; paused: boolean; rate: number }>;

/**
 * Recorded seconds per wall second over `wallMs`, from the pixels: the page reads the frame on
 * screen every 25 ms with its own clock (no round trip to the test in between, which a loaded
 * machine stretches by tens of ms), and the rate is the least-squares slope of recorded time
 * over page time.
 */
async function measuredRate(wallMs: number, selector = "#v"): Promise<number> {
  const points = (await page.evaluate(`(async () => {
    const points = [];
    const t0 = performance.now();
    while (performance.now() - t0 < ${wallMs}) {
      const idx = ${READ_FRAME_INDEX(selector)};
      if (idx !== null) points.push([performance.now(), idx]);
      await new Promise((r) => setTimeout(r, 25));
    }
    return points;
  })()`)) as [number, number][];
  expect(points.length).toBeGreaterThan(wallMs / 100);
  const xs = points.map(([t]) => t);
  const ys = points.map(([, idx]) => rec.timeOf(idx));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return num / den;
}

/**
 * Started in the page: every second, the last peer connection's current video playout delay (the
 * jitter buffer's delay per frame emitted since the previous sample), ms, into `window.__jb`.
 */
const PLAYOUT_SAMPLER = `(() => {
  window.__jb = [];
  let prev;
  window.__jbTimer = setInterval(async () => {
    const stats = await window.__pcs.at(-1).getStats();
    stats.forEach((r) => {
      if (r.type !== "inbound-rtp" || r.kind !== "video") return;
      if (prev && r.jitterBufferEmittedCount > prev.jitterBufferEmittedCount)
        window.__jb.push(((r.jitterBufferDelay - prev.jitterBufferDelay) / (r.jitterBufferEmittedCount - prev.jitterBufferEmittedCount)) * 1000);
      prev = r;
    });
  }, 1000);
})()`;

/** Waits until the frame on screen has stayed the same for `quietMs` (a paused picture has settled). */
async function settled(quietMs = 300, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  let last = await onScreen();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`the picture did not settle in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
    const now = await onScreen();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

describe("recorder playback in Chromium (GStreamer ONVIF replay)", () => {
  it("starts at the asked time and plays in real time", async () => {
    const start = base + 10 * 60_000 + 7 * FRAME_MS;
    const state = await call(`(window.pb = new PB.PlaybackClient({ camera: "rec", start: ${start}, video: document.getElementById("v") })).open()`);
    expect(state.rate).toBe(1);
    const first = await waitForFrame((t) => t >= start - FRAME_MS);
    expect(first - start).toBeLessThan(2000);
    // Over 6 s: a starved browser's freeze near either end of a short window tilts the slope.
    const rate = await measuredRate(6000);
    expect(rate).toBeGreaterThan(0.9);
    expect(rate).toBeLessThan(1.1);
    const e = rec.events.find((x) => x.method === "PLAY");
    expect(e?.range).toMatch(/^clock=\d{8}T\d{6}\.\d{3}Z-$/);
  });

  it("pause holds the frame; step advances exactly one; the page's time is the frame's", async () => {
    const paused = await call(`window.pb.pause()`);
    expect(paused.paused).toBe(true);
    // What the browser already holds (its jitter buffer) plays out; then the picture holds.
    await settled();
    const held = await steady(600);
    const pageTime = (await page.evaluate(`window.pb.currentTime().getTime()`)) as number;
    expect(Math.abs(pageTime - held)).toBeLessThanOrEqual(FRAME_MS);
    for (let i = 1; i <= 3; i++) {
      const s = await call(`window.pb.step()`);
      await waitForFrame((t) => t !== held + (i - 1) * FRAME_MS);
      // A step the gateway has no next frame buffered for is a paused seek to the next frame: the
      // frames the decoder needs before it may flash by (a full run read one); the picture that stays is the next.
      // Waited for first: a stalled page may show a flashing frame for longer than the quiet period.
      await waitForFrame((t) => t === held + i * FRAME_MS);
      await settled();
      const next = (await onScreen())!;
      expect(next).toBe(held + i * FRAME_MS);
      expect(s.position).toBe(next);
      await steady(300);
    }
  });

  it("seek to T while paused shows the frame of T, and holds it", async () => {
    const target = base + 30 * 60_000 + 123 * FRAME_MS;
    await call(`window.pb.seek(${target})`);
    await waitForFrame((t) => Math.abs(t - target) < 60_000);
    // The frames the decoder needs before T may flash by; the picture that stays is T's.
    await waitForFrame((t) => Math.abs(t - target) <= FRAME_MS);
    await settled();
    const shown = (await onScreen())!;
    expect(Math.abs(shown - target)).toBeLessThanOrEqual(FRAME_MS);
    expect(await steady(500)).toBe(shown);
    expect(((await page.evaluate(`window.pb.state.paused`)) as boolean)).toBe(true);
  });

  it("jumps back 10 s and 30 s", async () => {
    const from = (await onScreen())!;
    // Paused (since the seek): each jump shows the frame it lands on and holds it.
    await call(`window.pb.jump(-10)`);
    await waitForFrame((t) => Math.abs(t - (from - 10_000)) <= FRAME_MS);
    await settled();
    expect(Math.abs((await onScreen())! - (from - 10_000))).toBeLessThanOrEqual(FRAME_MS);
    await call(`window.pb.jump(-30)`);
    await waitForFrame((t) => Math.abs(t - (from - 40_000)) <= FRAME_MS);
    await settled();
    expect(Math.abs((await onScreen())! - (from - 40_000))).toBeLessThanOrEqual(FRAME_MS);
  });

  it("plays 4× and 16×: recorded time advances 4× and 16× wall time within 5 %", async () => {
    await call(`window.pb.resume()`);
    for (const rate of [4, 16]) {
      const s = await call(`window.pb.speed(${rate})`);
      expect(s.rate).toBe(rate);
      const before = (await onScreen())!;
      // Measured once the new rate plays (a second of it), over 6 s: a late frame the gateway
      // sends at once (up to 250 ms, gateway/playback/retimer.ts) is worth 8 % of a 3 s window,
      // and a full run measured 11.9 % over 3 s starting half a second into 4×.
      await waitForFrame((t) => t > before + rate * 1000);
      const measured = await measuredRate(6000);
      expect(Math.abs(measured / rate - 1)).toBeLessThan(0.05);
    }
    await call(`window.pb.speed(1)`);
  }, 60_000);

  it("paced by the gateway (Rate-Control: no): a start in a gap lands right after it; 4× within 5 %", async () => {
    await call(`window.pb.pause()`);
    const start = gap[0] + 20_000;
    await call(`(window.pb2 = new PB.PlaybackClient({ camera: "recgw", start: ${start}, video: document.getElementById("v2") })).open()`);
    const shown = await waitForFrame((t) => t >= gap[0], 10_000, "#v2");
    expect(shown).toBeGreaterThanOrEqual(gap[1]);
    expect(shown - gap[1]).toBeLessThan(3000);
    const play = rec.events.filter((e) => e.method === "PLAY").at(-1)!;
    expect(play.range).toMatch(/^clock=/);
    try {
      await call(`window.pb2.speed(4)`);
      await waitForFrame((t) => t > shown + 4000, 10_000, "#v2");
      // A 10 s window: the gateway paces this recorder, and a frame it sends late (its process held
      // up under load) is sent at once up to 250 ms late before it re-anchors (gateway/playback/
      // retimer.ts), so one such catch-up is worth up to 1 s of recording at 4×: 5 % of a 5 s
      // window, as a fresh-machine run measured (4.23×). One run measured 4.47× over 3 s. The claim
      // stays 4× within 5 %.
      const entry = gw.playback.list().find((e) => e.cameraId === "recgw")!;
      const before = { ...entry.session.stats().retimer };
      await page.evaluate(PLAYOUT_SAMPLER);
      const measured = await measuredRate(10_000, "#v2");
      const delays = (await page.evaluate(`(clearInterval(window.__jbTimer), window.__jb)`)) as number[];
      const after = entry.session.stats().retimer;
      // What moved the picture off the gateway's pace, if anything: re-anchors (the recorder fell
      // behind), or the browser's playout delay (jitter buffer) changing over the window.
      const why = `${measured.toFixed(3)}× over 10 s; re-timer re-anchors: late ${after.late - before.late}, gaps ${after.gaps - before.gaps}; browser playout delay per second (ms): ${delays.map((d) => Math.round(d)).join(", ")}`;
      console.log(`gateway-paced 4×: ${why}`);
      expect(Math.abs(measured / 4 - 1), why).toBeLessThan(0.05);
    } finally {
      // Closed whatever happened above, so the next test counts only its own viewers.
      await page.evaluate(`window.pb2.close()`);
    }
  }, 60_000);

  it("refuses a speed out of range (400) and step while playing (409); ends at the gateway on close", async () => {
    expect(await page.evaluate(`window.pb.speed(64).then(() => null, (e) => e.status)`)).toBe(400);
    await call(`window.pb.resume()`);
    expect(await page.evaluate(`window.pb.step().then(() => null, (e) => [e.status, e.reason])`)).toEqual([409, "step works while paused"]);
    await page.evaluate(`window.pb.close()`);
    await expect.poll(() => gw.sfu.viewerList().length, { timeout: 10_000 }).toBe(0);
    await expect.poll(() => rec.events.filter((e) => e.event === "session-removed").length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    // Chromium logs every error status on the console ("Failed to load resource", without
    // the URL): the page's failed requests are exactly the refusals asked for above (and the
    // favicon a bare page asks for), and no other error reached the console.
    const control = new URL(`${(await page.evaluate(`window.pb.location`)) as string}/control`).pathname;
    expect(failedRequests.filter((r) => r !== "404 GET /favicon.ico")).toEqual([`400 POST ${control}`, `409 POST ${control}`]);
    expect(pageErrors(page).filter((e) => !e.startsWith("Failed to load resource: the server responded with a status of "))).toEqual([]);
  });
});

describe("the playback right", () => {
  let dev: Gateway;
  const browsers: HttpBrowser[] = [];

  beforeAll(async () => {
    const config = parseConfig(
      { server: { port: 0 }, auth: { mode: "dev" }, log: { level: "silent" }, cameras: [{ id: "demo", url: rec.url, playback: {} }] },
      { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR },
    );
    dev = await startGateway({ config, log: silentLogger });
  }, 60_000);

  afterAll(async () => {
    for (const b of browsers) b.close();
    await dev?.close("test done");
  });

  it("a user with live but not playback gets 403 (JSON), and opens no recorder session", async () => {
    const b = await signedInDevUser(dev, "viewer", browsers);
    const me = await b.request(`${dev.url}/auth/me`, { headers: { accept: "application/json" } });
    const csrf = (JSON.parse(me.body) as { csrfToken: string }).csrfToken;
    const sessionsBefore = rec.events.filter((e) => e.event === "session").length;
    const start = new Date(base + HOUR / 2).toISOString();
    const res = await b.request(`${dev.url}/whep/demo/playback?start=${encodeURIComponent(start)}`, {
      method: "POST",
      headers: { "content-type": "application/sdp", "x-csrf-token": csrf, origin: dev.url },
      body: "v=0\r\n",
    });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: "forbidden" });
    expect(rec.events.filter((e) => e.event === "session").length).toBe(sessionsBefore);
  });
});
