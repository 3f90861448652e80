/**
 * The door intercom across a cluster: three gateways on a real Redis (127.0.0.2, .3, .4), baresip
 * as the door station registered with node A only, the administrator's Chromium page on node C and
 * the viewer's on node B. The door's presence and its ring reach both pages; the administrator
 * answers on C (the answer is made by A, which holds the SIP dialog, and the audio flows both ways);
 * the page on B sees the ring end, answered by the administrator; "Open door" and hanging up from
 * C reach the door; "talk to the door" from C calls the door through A.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { Baresip, tone, wav, wavSamples } from "../peers/baresip.ts";
import { inboundStats, launchChromium, type Chromium } from "../peers/chromium.ts";
import { startRedis, type RedisServer } from "../peers/redis.ts";
import { analyse } from "../integration/intercom-support.ts";

const HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const PASSWORD = "door-secret-1";
/** What baresip prints when our BYE ends its call. */
const BYE_SEEN = /terminated|session closed: Connection reset by peer/;
const ringCard = '.ic-card[data-state="ringing"]';

let redis: RedisServer;
let recorder: DemoRecorder;
let chromium: Chromium;
let door: Baresip | undefined;
const nodes: Gateway[] = [];
let adminPage: Page;
let viewerPage: Page;
const closers: Array<() => Promise<unknown>> = [];

interface IntercomState {
  stream: string;
  cards: Array<{ callId: string; state: string; status: string; answeredBy: string | null; mic: boolean }>;
}
interface TalkStats {
  state: string;
  codec: string | null;
  inbound: { packetsReceived: number; totalAudioEnergy: number; audioLevel: number } | null;
  outbound: { packetsSent: number } | null;
}
type IntercomWindow = { gatehouseIntercom: { state(): IntercomState; talkStats(): Promise<TalkStats | null> } };
const state = (page: Page) => page.evaluate(() => (window as unknown as IntercomWindow).gatehouseIntercom.state());

beforeAll(async () => {
  redis = await startRedis();
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  for (const [i, host] of HOSTS.entries()) {
    const config = parseConfig(
      {
        server: { host, port: 0 },
        auth: {
          mode: "dev",
          rights: [
            { role: "gatehouse-viewer", cameras: ["demo"], actions: ["live", "answer_intercom"] },
            { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
          ],
        },
        demo: { enabled: false },
        audit: { enabled: false },
        cameras: [{ id: "demo", name: "Door camera", url: recorder.url, transport: "tcp" }],
        log: { level: "silent" },
        media: { workers: 1 },
        sip: {
          enabled: true,
          bindAddress: host,
          udp: { port: 0 },
          tcp: { port: 0 },
          keepAliveSeconds: 0,
          // Long: the pages of a loaded machine may take seconds to show the ring.
          ringTimeoutSeconds: 60,
          rtpPortRange: [base + i * 100, base + i * 100 + 99],
          devices: [{ id: "door1", name: "Front door", username: "door1", password: PASSWORD, camera: "demo", dtmf: { openDoor: "1#", durationMs: 120 } }],
        },
        cluster: { redis: { url: redis.url, reconnectMaxMs: 300 }, nodeId: `node-${"abc"[i]}`, heartbeatMs: 300, nodeTtlMs: 1500, leaseMs: 1500 },
      },
      {},
    );
    nodes.push(await startGateway({ config, log: silentLogger }));
  }
  chromium = await launchChromium();
  const [, b, c] = nodes as [Gateway, Gateway, Gateway];
  adminPage = await chromium.newPage();
  const ctx = await chromium.browser.createBrowserContext();
  closers.push(() => ctx.close());
  viewerPage = await ctx.newPage();
  await signInAt(adminPage, c, "admin");
  await signInAt(viewerPage, b, "viewer");
  for (const p of [adminPage, viewerPage]) {
    await inboundStats(p, "audio");
    await p.waitForFunction(() => (window as unknown as IntercomWindow).gatehouseIntercom?.state().stream === "open", { timeout: 15_000 });
  }
}, 120_000);

afterAll(async () => {
  await door?.close();
  for (const c of closers.reverse()) await c().catch(() => {});
  await chromium?.close();
  for (const n of nodes) await n.close("test done");
  await recorder?.close();
  await redis?.close();
});

async function signInAt(page: Page, gw: Gateway, user: string): Promise<void> {
  await page.goto(`${gw.url}/`, { waitUntil: "load" });
  await page.waitForSelector("#username", { timeout: 15_000 });
  await page.type("#username", user);
  await page.type("#password", gw.auth.devUsers!.find((u) => u.username === user)!.password);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 15_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 15_000 }, new URL(gw.url).origin);
}

describe("door intercom across a three-node cluster", () => {
  it("a door registered on A rings pages on B and C; C answers and talks both ways, opens the door, hangs up; B sees the ring end", async () => {
    const [a, b, c] = nodes as [Gateway, Gateway, Gateway];
    door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `${HOSTS[0]}:${a.sip!.ports.udp}`, microphone: wav(tone(440, 30)) });
    await door.waitFor(/registered successfully/);
    // Registered with A only; C's page shows it online (A's announcement and its presence event).
    expect(a.sip!.intercom.devices().find((d) => d.id === "door1")!.bindings).toHaveLength(1);
    for (const n of [b, c]) expect(n.sip!.intercom.devices().find((d) => d.id === "door1")!.bindings).toHaveLength(0);
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-door-state.is-online', { timeout: 20_000 });

    door.command("dial sip:gate@gatehouse");
    await adminPage.waitForSelector(ringCard, { timeout: 30_000 });
    await viewerPage.waitForSelector(ringCard, { timeout: 30_000 });
    expect(await adminPage.$eval(`${ringCard} .ic-title`, (e) => e.textContent)).toBe("Front door");
    const callId = (await state(adminPage)).cards[0]!.callId;
    expect(a.sip!.intercom.get(callId)?.state).toBe("ringing");

    // Generous: the answer crosses two nodes on a loaded machine.
    const established = door.waitFor(/Call established/, 25_000);
    await adminPage.click(`${ringCard} .ic-answer`);
    await adminPage.waitForSelector('.ic-card[data-state="in-call"]', { timeout: 25_000 });
    await established;
    // A holds the call and its talk peer; the claim in Redis names the administrator.
    expect(a.sip!.intercom.get(callId)).toMatchObject({ state: "answered", answeredBy: "dev-admin" });
    expect(a.sip!.intercom.get(callId)?.answeredBy).toBe(await a.cluster!.link.run("read", (r) => r.get(a.cluster!.link.key(`intercom:call:${callId}:answer`))));

    // B's page learns who answered, then its card goes.
    await viewerPage.waitForFunction(
      (id: string) => (window as unknown as IntercomWindow).gatehouseIntercom.state().cards.some((x) => x.callId === id && x.status === "Answered by Demo Administrator"),
      { timeout: 20_000 },
      callId,
    );
    await viewerPage.waitForFunction(() => !document.querySelector(".ic-card"), { timeout: 20_000 });
    // B cannot take the call any more: 409, from wherever it asks.
    const late = await viewerPage.evaluate(async (id: string) => {
      const me = (await (await fetch("/auth/me", { headers: { accept: "application/json" } })).json()) as { csrfToken: string };
      const r = await fetch(`/api/intercom/calls/${id}/answer`, { method: "POST", headers: { "content-type": "application/sdp", "x-csrf-token": me.csrfToken }, body: "v=0\r\n" });
      return r.status;
    }, callId);
    expect([404, 409]).toContain(late);

    // Door → browser: G.711 with real audio energy; browser → door: the fake microphone.
    await adminPage.waitForFunction(
      async () => {
        const s = await (window as unknown as IntercomWindow).gatehouseIntercom.talkStats();
        return !!s?.inbound && s.inbound.packetsReceived > 100 && s.inbound.totalAudioEnergy > 0 && s.inbound.audioLevel > 0 && !!s.outbound && s.outbound.packetsSent > 100;
      },
      { polling: 200, timeout: 20_000 },
    );
    const talk = (await adminPage.evaluate(() => (window as unknown as IntercomWindow).gatehouseIntercom.talkStats()))!;
    expect(talk.state).toBe("connected");
    expect(talk.codec).toBe("audio/PCMU");

    // Open the door from C: the digits reach the door from A.
    const hash = door.waitFor(/received event: '#' \(end=1\)/);
    await adminPage.click(".ic-card .ic-open");
    await adminPage.waitForSelector(".ic-card .ic-open-confirm");
    await adminPage.click(".ic-card .ic-open-confirm");
    await hash;
    expect(door.lines.some((l) => /received event: '1' \(end=1\)/.test(l))).toBe(true);

    // Hang up from C: BYE at the door; the card says so and goes.
    const bye = door.waitFor(BYE_SEEN);
    await adminPage.click(".ic-card .ic-hangup");
    await bye;
    await adminPage.waitForFunction(() => !document.querySelector(".ic-card"), { timeout: 10_000 });

    // What the door heard: Chromium's fake microphone (periodic beeps), not silence.
    await door.stop();
    const heard = analyse(wavSamples(door.recordedFromNetwork()!));
    expect(heard.peak).toBeGreaterThan(1000);
    expect(heard.level).toBeGreaterThan(100);
  }, 180_000);

  it("talks to the door registered on A from the page on C", async () => {
    const [a] = nodes as [Gateway, Gateway, Gateway];
    await door?.close();
    door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `${HOSTS[0]}:${a.sip!.ports.udp}`, microphone: wav(tone(440, 30)) });
    await door.waitFor(/registered successfully/);
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-door-state.is-online', { timeout: 10_000 });
    const mark = door.lines.length;
    await adminPage.click(".ic-doors-btn");
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-talk:not([disabled])', { visible: true, timeout: 10_000 });
    await adminPage.click('.ic-door[data-device="door1"] .ic-talk');
    await adminPage.waitForSelector('.ic-card[data-state="in-call"]', { timeout: 20_000 });
    await door.waitFor(/Call established/, 10_000, mark);
    expect(a.sip!.intercom.active().filter((x) => x.direction === "outgoing")).toHaveLength(1);
    await adminPage.waitForFunction(
      async () => {
        const s = await (window as unknown as IntercomWindow).gatehouseIntercom.talkStats();
        return !!s?.inbound && s.inbound.packetsReceived > 25 && s.inbound.totalAudioEnergy > 0;
      },
      { polling: 200, timeout: 15_000 },
    );
    // The door hangs up: C's page hears of it from A and closes the card.
    door.command("hangup");
    await adminPage.waitForFunction(() => document.querySelector(".ic-card .ic-status")?.textContent === "The door hung up", { timeout: 10_000 });
    await adminPage.waitForFunction(() => !document.querySelector(".ic-card"), { timeout: 10_000 });
  }, 90_000);
});
