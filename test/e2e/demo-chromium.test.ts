/**
 * The demo as a newcomer meets it: the embedded defaults (what `npm start` runs with no
 * configuration; only the ports are made free ones here), signed in as the development
 * administrator in Chromium.
 *  - "Ring the demo door" in the Doors menu makes the built-in door station call in: the ring
 *    card shows the demo camera, the administrator answers, the door's tone reaches the page,
 *    the page's microphone reaches the door, "Open door" reaches it, hanging up ends it there;
 *  - "Talk" calls the demo door, which answers by itself;
 *  - `?relay=tcp` and `?relay=udp` play the demo camera through the embedded TURN relay.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { embeddedDefaults } from "../../config/embedded.ts";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { DemoDoor, DemoDoorEvents } from "../../gateway/demo/door.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { canvasNotBlack, inboundStats, launchChromium, pageErrors, waitForDecodedFrames, type Chromium } from "../peers/chromium.ts";

let errorsBeforeSignIn = 0;
let gw: Gateway;
let chromium: Chromium;
let page: Page;

interface TalkStats {
  state: string;
  codec: string | null;
  inbound: { packetsReceived: number; totalAudioEnergy: number; audioLevel: number } | null;
  outbound: { packetsSent: number } | null;
}
type IntercomWindow = {
  gatehouseIntercom: { state(): { stream: string; cards: Array<{ callId: string; deviceId: string; state: string }> }; talkStats(): Promise<TalkStats | null> };
};

const ringCard = '.ic-card[data-state="ringing"]';
const demoDoorRow = '.ic-door[data-device="demo-door"]';

/** Resolves on the door's next event matching `pred`. */
function doorEvent<K extends keyof DemoDoorEvents>(door: DemoDoor, event: K, pred: (...a: DemoDoorEvents[K]) => boolean = () => true, timeoutMs = 30_000): Promise<DemoDoorEvents[K]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no demo door ${String(event)} within ${timeoutMs} ms (state ${door.state})`));
    }, timeoutMs);
    const off = door.events.on(event, (...a) => {
      if (!pred(...a)) return;
      clearTimeout(t);
      off();
      resolve(a);
    });
  });
}

/** The door heard real sound (Chromium's fake microphone beeps), not silence. */
async function doorHears(door: DemoDoor, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const h = door.stats().heard;
    if (h.frames > 100 && h.peak > 1000) return;
    if (Date.now() > deadline) throw new Error(`the demo door heard nothing: ${JSON.stringify(door.stats())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The selected ICE candidate pair of the page's (only) peer connection. */
async function selectedPair(p: Page): Promise<{ type: string; relayProtocol?: string } | null> {
  return p.evaluate(async () => {
    const pcs = (window as unknown as { __gh: { pcs(): RTCPeerConnection[] } }).__gh.pcs();
    for (const pc of pcs) {
      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type !== "transport" || !s.selectedCandidatePairId) continue;
        const pair = stats.get(s.selectedCandidatePairId);
        const local = stats.get(pair.localCandidateId);
        return { type: local.candidateType as string, relayProtocol: local.relayProtocol as string | undefined };
      }
    }
    return null;
  });
}

beforeAll(async () => {
  // What `npm start` runs without a configuration file, with free ports instead of the fixed ones.
  const embedded = embeddedDefaults();
  const config = parseConfig(
    {
      ...embedded,
      server: { port: 0 },
      turn: { ...embedded.turn, udp: [{ host: "127.0.0.1", port: 0 }] },
      sip: { ...embedded.sip, udp: { port: 0 }, tcp: { port: 0 } },
      log: { level: "warn" },
    },
    {},
  );
  expect(config.auth.mode).toBe("dev");
  gw = await startGateway({ config, log: silentLogger });
  expect(gw.demoDoor?.state).toBe("idle");
  chromium = await launchChromium();
  page = await chromium.newPage();
  await page.goto(`${gw.url}/`, { waitUntil: "load" });
  await page.waitForSelector("#username", { timeout: 30_000 });
  await page.type("#username", "admin");
  await page.type("#password", gw.auth.devUsers!.find((u) => u.username === "admin")!.password);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 30_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 30_000 }, new URL(gw.url).origin);
  // The client's files load before sign-in, and its first calls get the 401s that send it to
  // the provider: what counts is what the page logs once signed in.
  errorsBeforeSignIn = pageErrors(page).length;
  // Record the page's peer connections from here on (the ring's live view and the call's).
  await inboundStats(page, "audio");
  await page.waitForFunction(() => (window as unknown as IntercomWindow).gatehouseIntercom?.state().stream === "open", { timeout: 30_000 });
}, 180_000);

afterAll(async () => {
  await chromium?.close();
  await gw?.close("test done");
});

describe("the demo with the embedded defaults, in Chromium", () => {
  it("the demo door rings the administrator's page; audio flows both ways with it; open door and hang-up reach it", async () => {
    const door = gw.demoDoor!;
    await page.click(".ic-doors-btn");
    await page.waitForSelector(`${demoDoorRow} .ic-door-state.is-online`, { visible: true, timeout: 30_000 });
    await page.waitForSelector(".ic-ring-demo:not([disabled])", { visible: true, timeout: 30_000 });
    await page.click(".ic-ring-demo");

    await page.waitForSelector(ringCard, { timeout: 30_000 });
    expect(door.state).toBe("ringing");
    expect(await page.$eval(`${ringCard} .ic-title`, (e) => e.textContent)).toBe("Demo door");
    // The demo camera plays in the ring card.
    await waitForDecodedFrames(page, 5, 30_000, `${ringCard} video`);
    expect(await canvasNotBlack(page, `${ringCard} video`)).toBe(true);

    const inCall = doorEvent(door, "state", (s) => s === "in-call");
    await page.click(`${ringCard} .ic-answer`);
    await page.waitForSelector('.ic-card[data-state="in-call"]', { timeout: 30_000 });
    await inCall;

    // Door → browser: the door's tone, with real energy. Browser → door: the fake microphone.
    await page.waitForFunction(
      async () => {
        const s = await (window as unknown as IntercomWindow).gatehouseIntercom.talkStats();
        return !!s?.inbound && s.inbound.packetsReceived > 100 && s.inbound.totalAudioEnergy > 0 && !!s.outbound && s.outbound.packetsSent > 100;
      },
      { polling: 200, timeout: 30_000 },
    );
    expect((await page.evaluate(() => (window as unknown as IntercomWindow).gatehouseIntercom.talkStats()))?.codec).toBe("audio/PCMU");
    await doorHears(door);
    expect(door.stats().media?.packetsOut).toBeGreaterThan(100);

    const opened = doorEvent(door, "dtmf", (d) => d === "#");
    await page.click(".ic-card .ic-open");
    await page.click(".ic-card .ic-open-confirm"); // opening a door asks first
    await opened;
    // The gateway answers the page once the digits' last packets went out.
    await page.waitForFunction(() => /· Door opened$/.test(document.querySelector(".ic-card .ic-status")?.textContent ?? ""), { timeout: 30_000 });

    const ended = doorEvent(door, "ended");
    await page.click(".ic-card .ic-hangup");
    expect((await ended)[0]).toMatchObject({ direction: "outgoing", answered: true, reason: "bye" });
    await page.waitForFunction(() => !document.querySelector(".ic-card"), { timeout: 30_000 });
    expect(door.state).toBe("idle");
    const errors = pageErrors(page).slice(errorsBeforeSignIn).filter((e) => !/status of 404/.test(e));
    expect(errors, errors.join("\n")).toEqual([]);
  }, 240_000);

  it("Talk calls the demo door, which answers by itself with its tone and hears the page", async () => {
    const door = gw.demoDoor!;
    const answered = doorEvent(door, "state", (s) => s === "in-call");
    await page.click(".ic-doors-btn");
    await page.waitForSelector(`${demoDoorRow} .ic-talk:not([disabled])`, { visible: true, timeout: 30_000 });
    await page.click(`${demoDoorRow} .ic-talk`);
    await answered;
    await page.waitForSelector('.ic-card[data-state="in-call"]', { timeout: 30_000 });
    await page.waitForFunction(
      async () => {
        const s = await (window as unknown as IntercomWindow).gatehouseIntercom.talkStats();
        return !!s?.inbound && s.inbound.packetsReceived > 50 && s.inbound.totalAudioEnergy > 0;
      },
      { polling: 200, timeout: 30_000 },
    );
    await doorHears(door);
    expect(door.stats().calls.incoming).toBe(1);

    // The door hangs up: the page hears of it and closes the card.
    door.hangup();
    await page.waitForFunction(() => document.querySelector(".ic-card .ic-status")?.textContent === "The door hung up", { timeout: 30_000 });
    await page.waitForFunction(() => !document.querySelector(".ic-card"), { timeout: 30_000 });
  }, 240_000);

  for (const transport of ["tcp", "udp"] as const) {
    it(`?relay=${transport} plays the demo camera through the embedded TURN relay`, async () => {
      const relayed = gw.turn!.metrics.packetsToClient;
      const p = await chromium.newPage(`${gw.url}/?relay=${transport}`);
      try {
        await waitForDecodedFrames(p, 10, 30_000, '[data-camera="demo"] video');
        expect(await selectedPair(p)).toMatchObject({ type: "relay", relayProtocol: transport });
        expect(await canvasNotBlack(p, '[data-camera="demo"] video')).toBe(true);
        await expect.poll(() => gw.turn!.metrics.packetsToClient - relayed, { timeout: 10_000 }).toBeGreaterThan(50);
        expect(gw.turn!.metrics.authFailures).toBe(0);
      } finally {
        await p.close();
      }
    }, 90_000);
  }
});
