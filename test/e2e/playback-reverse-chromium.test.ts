/**
 * Reverse playback against a recorder that cannot play backwards: GStreamer's ONVIF replay
 * server never answers a PLAY with `Scale: -1`. The gateway gives the speed change
 * `playback.speedChangeTimeoutMs`, then reopens the recording at the previous position and
 * speed for the same viewer (same WebRTC session) and answers 409 "This recorder does not play
 * backwards"; the page (web/timeline.js's controller, in Chromium) turns the reverse speeds off
 * for that camera and says so; the picture goes on forward, past the no-media timeout that
 * used to end the whole playback.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, type Chromium } from "../peers/chromium.ts";
import { READ_FRAME_INDEX, startOnvifRecorder, type OnvifRecorder } from "../peers/gst-onvif.ts";

const HOUR = 3_600_000;

let rec: OnvifRecorder;
let gw: Gateway;
let chromium: Chromium;
let page: Page;
/** Control answers of the page with an error status: status and JSON body. */
const refusals: { status: number; body: string }[] = [];

const base = Math.floor(Date.now() / 1000) * 1000 - 2 * HOUR;

beforeAll(async () => {
  rec = await startOnvifRecorder({ baseMs: base, durationS: 7200, gaps: [] });
  const config = parseConfig(
    {
      server: { port: 0 },
      auth: { mode: "none" },
      log: { level: "warn" },
      playback: { speedChangeTimeoutMs: 2000 },
      cameras: [{ id: "rec", url: rec.url, playback: { mode: "onvif" } }],
    },
    { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR },
  );
  gw = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium();
  page = await chromium.newPage(`${gw.url}/playback-client.js`);
  page.on("response", (r) => {
    if (r.status() >= 400 && r.url().endsWith("/control")) void r.text().then((body) => refusals.push({ status: r.status(), body }));
  });
  await page.evaluate(`(async () => {
    document.body.innerHTML = '<div id="tl"></div><video id="v" autoplay muted playsinline width="320" height="192"></video>';
    (await navigator.mediaDevices.getUserMedia({ video: true })).getTracks().forEach((t) => t.stop());
    const T = await import("/timeline.js");
    const video = document.getElementById("v");
    window.tl = new T.Timeline(document.getElementById("tl"));
    window.ctl = new T.PlaybackController({
      timeline: window.tl,
      base: new URL(location.origin),
      host: { video: () => video, show: (s) => { if (video.srcObject !== s) video.srcObject = s; }, goLive: () => { window.wentLive = true; }, status: () => {} },
    });
    window.ctl.setCamera("rec");
  })()`);
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
  await rec?.close();
});

/** The recorded time of the frame on screen, from its pixels (null before the first frame). */
async function onScreen(): Promise<number | null> {
  const idx = (await page.evaluate(READ_FRAME_INDEX("#v"))) as number | null;
  return idx === null ? null : rec.timeOf(idx);
}

async function waitForFrame(ok: (t: number) => boolean, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const t = await onScreen();
    if (t !== null && ok(t)) return t;
    if (Date.now() - t0 > timeoutMs) throw new Error(`frame on screen ${t === null ? "none" : new Date(t).toISOString()} did not match in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("reverse playback on a recorder that cannot play backwards", () => {
  it("answers 409 with the reason, goes on forward on the same session, and the page turns reverse off", async () => {
    const start = base + 20 * 60_000;
    await page.evaluate(`window.tl.dispatchEvent(new CustomEvent("intent", { detail: { action: "seek", time: ${start} } }))`);
    const first = await waitForFrame((t) => t >= start - 1000, 20_000);
    await waitForFrame((t) => t > first + 1000, 10_000);
    expect(gw.sfu.viewerList().length).toBe(1);
    const viewer = gw.sfu.viewerList()[0];
    const sessionsBefore = rec.events.filter((e) => e.event === "session").length;

    // −1× from the list, as a guard would choose it.
    await page.evaluate(`(() => { const s = document.querySelector(".tl-speed"); s.value = "-1"; s.dispatchEvent(new Event("change")); })()`);
    await page.waitForFunction(`document.querySelector(".tl-error") && !document.querySelector(".tl-error").hidden`, { timeout: 20_000 });
    const error = (await page.evaluate(`document.querySelector(".tl-error").textContent`)) as string;
    expect(error).toMatch(/does not play backwards/);
    // The refusal's body is read by its own round trip to the browser, which may end after the page showed it.
    await expect.poll(() => refusals.length, { timeout: 5000 }).toBe(1);
    expect(refusals[0]!.status).toBe(409);
    expect(JSON.parse(refusals[0]!.body)).toMatchObject({ reason: "This recorder does not play backwards" });
    // The recording is opened again at the recorder (a new RTSP session: GStreamer's server answers
    // nobody while it is stuck on the reverse PLAY, up to its 20 s preroll wait), forward, from where the picture was.
    // The new session's PLAY, not only the session: its PLAY comes a moment after the session opens.
    const playOfNewSession = () => {
      let sessions = 0;
      let opened = false;
      for (const e of rec.events) {
        if (e.event === "session" && ++sessions > sessionsBefore) opened = true;
        else if (opened && e.method === "PLAY") return e;
      }
      return undefined;
    };
    await expect.poll(playOfNewSession, { timeout: 45_000, interval: 200 }).toBeDefined();
    const reopened = playOfNewSession()!;
    expect(reopened.scale === null || reopened.scale === undefined || Number(reopened.scale) === 1).toBe(true);
    expect(reopened.range).toMatch(/^clock=/);

    // Reverse speeds are off in the list; forward ones are not; the list shows 1× again.
    const options = (await page.evaluate(`[...document.querySelectorAll(".tl-speed option")].map((o) => [Number(o.value), o.disabled])`)) as [number, boolean][];
    expect(options.filter(([r]) => r < 0).every(([, d]) => d)).toBe(true);
    expect(options.filter(([r]) => r > 0).every(([, d]) => !d)).toBe(true);
    expect(await page.evaluate(`document.querySelector(".tl-speed").value`)).toBe("1");

    // Same WebRTC viewer, still playing forward, past the no-media timeout (5 s) that ended it before.
    const after = await waitForFrame(() => true, 10_000);
    const later = await waitForFrame((t) => t > after + 6000, 30_000);
    expect(later).toBeGreaterThan(after);
    expect(gw.sfu.viewerList().map((v) => v.id)).toEqual([viewer!.id]);
    expect(await page.evaluate(`window.ctl.mode`)).toBe("playback");
    expect(await page.evaluate(`window.wentLive === true`)).toBe(false);
    expect(refusals).toHaveLength(1);
  }, 150_000);
});
