/**
 * The door intercom across a cluster: three gateway processes, each in a network namespace of its
 * own, on a real Redis (layout: test/peers/cluster-netns.ts). baresip is the door station, on the
 * site network (the clients' namespace), registered with node A only; the administrator's Chromium
 * page is on node C and the viewer's on node B. The door's presence and its ring reach both pages;
 * the administrator answers on C (the answer is made by A, which holds the SIP dialog, and the
 * audio flows both ways); the page on B sees the ring end, answered by the administrator; "Open
 * door" and hanging up from C reach the door; "talk to the door" from C calls the door through A.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Baresip, tone, wav, wavSamples } from "../peers/baresip.ts";
import { inboundStats } from "../peers/chromium.ts";
import { startNetnsCluster, type NetnsCluster } from "../peers/cluster-netns.ts";
import { signInPage } from "../peers/cluster-node.ts";
import { analyse } from "../integration/intercom-support.ts";

const PASSWORD = "door-secret-1";
/** Each node's SIP port inside its own namespace (fixed ports are safe there: the namespace is the test's own). */
const SIP_PORT = 5060;
/** What baresip prints when our BYE ends its call. */
const BYE_SEEN = /terminated|session closed: Connection reset by peer/;
const ringCard = '.ic-card[data-state="ringing"]';

let cluster: NetnsCluster;
let door: Baresip | undefined;
let adminPage: Page;
let viewerPage: Page;

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

/** The door station on the site network, registered with node A. */
function startDoor(): Baresip {
  return Baresip.start({
    user: "door1",
    password: PASSWORD,
    domain: "gatehouse",
    registrar: `${cluster.net.node(1).address}:${SIP_PORT}`,
    microphone: wav(tone(440, 30)),
    netns: cluster.net.client,
  });
}

beforeAll(async () => {
  cluster = await startNetnsCluster({
    config: (_index, address) => ({
      auth: {
        rights: [
          { role: "gatehouse-viewer", cameras: ["demo"], actions: ["live", "answer_intercom"] },
          { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
        ],
      },
      sip: {
        enabled: true,
        bindAddress: address,
        udp: { port: SIP_PORT },
        tcp: { port: 0 },
        keepAliveSeconds: 0,
        // Long: the pages of a loaded machine may take seconds to show the ring.
        ringTimeoutSeconds: 60,
        rtpPortRange: [20000, 20099],
        devices: [{ id: "door1", name: "Front door", username: "door1", password: PASSWORD, camera: "demo", dtmf: { openDoor: "1#", durationMs: 120 } }],
      },
    }),
  });
  adminPage = await cluster.page();
  viewerPage = await cluster.page({ isolated: true });
  await signInPage(adminPage, cluster.node(3), "admin");
  await signInPage(viewerPage, cluster.node(2), "viewer");
  for (const p of [adminPage, viewerPage]) {
    await inboundStats(p, "audio");
    await p.waitForFunction(() => (window as unknown as IntercomWindow).gatehouseIntercom?.state().stream === "open", { timeout: 30_000 });
  }
  await adminPage.bringToFront();
}, 240_000);

afterAll(async () => {
  await door?.close();
  await cluster?.close();
});

/** Who the cluster recorded as answering the call (the set-once claim in Redis). */
async function answerClaim(callId: string): Promise<string | null> {
  const cli = (...args: string[]) => promisify(execFile)("redis-cli", ["-p", String(cluster.redis.port), ...args]);
  const key = (await cli("--scan", "--pattern", `*intercom:call:${callId}:answer`)).stdout.trim();
  return key ? (await cli("GET", key)).stdout.trim() : null;
}

/**
 * Waits for the page's call card to be in a call; on a timeout, fails with what the page's cards
 * said and what the door printed last (a flake under load is then readable from the log alone).
 */
async function waitForInCall(page: Page, timeoutMs: number): Promise<void> {
  // What every card said meanwhile (a card that failed says why, then goes after a few seconds).
  await page.evaluate(() => {
    const w = window as unknown as { __cardsSaid: string[]; __cardsTimer?: ReturnType<typeof setInterval> };
    w.__cardsSaid = [];
    clearInterval(w.__cardsTimer);
    w.__cardsTimer = setInterval(() => {
      const now = [...document.querySelectorAll<HTMLElement>(".ic-card")].map((c) => `${c.dataset.state}: ${c.querySelector(".ic-status")?.textContent ?? ""}`).join(" | ");
      if (w.__cardsSaid.at(-1) !== now) w.__cardsSaid.push(now);
    }, 50);
  });
  try {
    await page.waitForSelector('.ic-card[data-state="in-call"]', { timeout: timeoutMs });
  } catch (err) {
    const cards = await page.evaluate(() => (window as unknown as { __cardsSaid: string[] }).__cardsSaid).then(JSON.stringify, (e: unknown) => String(e));
    throw new Error(`no call card in a call within ${timeoutMs} ms; the page's cards said: ${cards}; the door's last lines:\n${door?.lines.slice(-25).join("\n")}`, { cause: err });
  }
}

describe("door intercom across a three-node cluster", () => {
  it("a door registered on A rings pages on B and C; C answers and talks both ways, opens the door, hangs up; B sees the ring end", async () => {
    door = startDoor();
    await door.waitFor(/registered successfully/, 20_000);
    // Registered with A only; C's page shows it online (A's announcement and its presence event).
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-door-state.is-online', { timeout: 20_000 });

    door.command("dial sip:gate@gatehouse");
    await adminPage.waitForSelector(ringCard, { timeout: 30_000 });
    await viewerPage.waitForSelector(ringCard, { timeout: 30_000 });
    expect(await adminPage.$eval(`${ringCard} .ic-title`, (e) => e.textContent)).toBe("Front door");
    const callId = (await state(adminPage)).cards[0]!.callId;

    // B's page learns who answered, then its card goes (watched from before the answer: the words
    // stay only a few seconds, and the answer may take longer across two nodes on a loaded machine).
    const toldB = viewerPage.waitForFunction(
      (id: string) => (window as unknown as IntercomWindow).gatehouseIntercom.state().cards.some((x) => x.callId === id && x.status === "Answered by Demo Administrator"),
      { timeout: 45_000, polling: 50 },
      callId,
    );
    toldB.catch(() => {}); // awaited below
    // Generous: the answer crosses two nodes on a loaded machine.
    const established = door.waitFor(/Call established/, 25_000);
    await adminPage.click(`${ringCard} .ic-answer`);
    await waitForInCall(adminPage, 25_000);
    await established;
    // The claim in Redis names the administrator.
    expect(await answerClaim(callId)).toBe("dev-admin");
    await toldB;
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
    await door?.close();
    // The first door unregistered when it quit: C's page says so before the next door registers, so
    // the "online" awaited below is the new door's.
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-door-state:not(.is-online)', { timeout: 20_000 });
    door = startDoor();
    await door.waitFor(/registered successfully/, 20_000);
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-door-state.is-online', { timeout: 20_000 });
    const mark = door.lines.length;
    await adminPage.click(".ic-doors-btn");
    await adminPage.waitForSelector('.ic-door[data-device="door1"] .ic-talk:not([disabled])', { visible: true, timeout: 10_000 });
    await adminPage.click('.ic-door[data-device="door1"] .ic-talk');
    // Generous, as answering above: the call crosses two nodes on a loaded machine.
    await waitForInCall(adminPage, 30_000);
    await door.waitFor(/Call established/, 20_000, mark);
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
