/**
 * Normal use exceeds the per-user quota: a page of 16 tiles played through the embedded TURN
 * relay only (`iceTransportPolicy: "relay"`; UDP, TCP and TLS offered, as the WHEP Link headers
 * give them) must work, twice in a row in the same browser, under the default quotas; and when
 * a page closes, the allocations it held go away promptly (not after their 600 s lifetime).
 * Chromium; the tiles are WHEP sessions of the web client's own `whep.js`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { authCloseReason } from "../../sfu/api.ts";
import { launchChromium, type Chromium } from "../peers/chromium.ts";

const TILES = 16;
let gateway: Gateway;
let chromium: Chromium;
let dir: string;

/** A gateway with TLS (TURN over TLS on its port), the embedded TURN server and its default quotas. */
function gatewayConfig() {
  return parseConfig(
    {
      server: { port: 0, tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } },
      auth: { mode: "none" },
      log: { level: "warn" },
      // Sixteen relayed connections at once on a shared two-core machine: connecting may take a while.
      media: { viewers: { connectTimeoutMs: 30_000 } },
      // Default quotas: the point is that they are sized for a wall.
      turn: { enabled: true, secret: "e2e-turn-wall-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { address: "127.0.0.1", portRange: [0, 0] } },
    },
    {},
  );
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "gh-turn-wall-"));
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  writeFileSync(path.join(dir, "cert.pem"), pems.cert);
  writeFileSync(path.join(dir, "key.pem"), pems.private);
  gateway = await startGateway({ config: gatewayConfig(), log: silentLogger });
  chromium = await launchChromium({ args: ["--ignore-certificate-errors"] });
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gateway?.close("test done");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Open a page with `n` WHEP sessions of the demo camera (relay-only unless `policy` says otherwise), each rendering into a video element. */
async function openWall(n = TILES, policy: "relay" | "all" = "relay", gw: Gateway = gateway): Promise<Page> {
  // /whep.js itself as the page: same origin as the gateway, and no app tiles of its own.
  const page = await chromium.newPage(`${gw.url}/healthz`);
  // A string, so that the test bundler leaves the page's dynamic import alone.
  await page.evaluate(`(async (n, policy) => {
    const { WhepSession } = await import("/whep.js");
    window.tiles = [];
    // What each offer named: its TURN credentials (header) and its relay candidates.
    window.offers = [];
    const fetch0 = window.fetch;
    window.fetch = (url, init) => {
      if (init && init.method === "POST") window.offers.push({ named: new Headers(init.headers).get("Gatehouse-Relay-Username"), relays: (String(init.body).match(/typ relay/g) || []).length });
      return fetch0(url, init);
    };
    for (let i = 0; i < n; i++) {
      const v = document.createElement("video");
      v.muted = true;
      v.autoplay = true;
      document.body.append(v);
      const s = new WhepSession("/whep/demo", { iceTransportPolicy: policy, connectTimeoutMs: 30000, gatherMaxMs: 10000, headers: async () => ({}) });
      s.addEventListener("stream", () => (v.srcObject = s.stream));
      s.start();
      window.tiles.push(s);
    }
    // (gatherMaxMs: on a loaded machine the relay candidates must make it into the offer, which is
    // how the gateway knows which allocations a viewer's peer connection made.)
    // As the web client does: the page going away ends its sessions (DELETE with keepalive).
    window.addEventListener("pagehide", () => { for (const t of window.tiles) t.close("page hidden", { keepalive: true }); });
  })(${n}, "${policy}")`);
  return page;
}

/** Per tile: decoded frames and the selected local candidate type. */
async function tileStates(page: Page): Promise<{ frames: number; type: string | undefined }[]> {
  return page.evaluate(async () => {
    const tiles = (window as unknown as { tiles: { pc: RTCPeerConnection | null }[] }).tiles;
    return Promise.all(
      tiles.map(async (t) => {
        if (!t.pc) return { frames: 0, type: undefined };
        const stats = await t.pc.getStats();
        let frames = 0;
        let type: string | undefined;
        for (const s of stats.values()) {
          if (s.type === "inbound-rtp" && s.kind === "video") frames = Math.max(frames, s.framesDecoded ?? 0);
          if (s.type === "transport" && s.selectedCandidatePairId) type = stats.get(stats.get(s.selectedCandidatePairId).localCandidateId)?.candidateType;
        }
        return { frames, type };
      }),
    );
  });
}

async function allPlaying(page: Page, timeoutMs: number): Promise<{ frames: number; type: string | undefined }[]> {
  const t0 = Date.now();
  let states = await tileStates(page);
  while (states.some((s) => s.frames < 10) && Date.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, 250));
    states = await tileStates(page);
  }
  return states;
}

describe("normal use exceeds the per-user quota", () => {
  it(`a page of ${TILES} tiles over TURN plays, twice in a row; a closed page's allocations go away promptly`, async () => {
    const turn = gateway.turn!;
    const refusedBefore = turn.metrics.quotaRejections;
    // Round 1, then a reload at once (the first page's allocations not yet gone), then the close.
    const first = await openWall();
    const one = await allPlaying(first, 120_000);
    expect({ round: 1, playing: one.filter((s) => s.frames >= 10).length, relayed: one.filter((s) => s.type === "relay").length, refused: turn.metrics.quotaRejections - refusedBefore }).toEqual({ round: 1, playing: TILES, relayed: TILES, refused: 0 });
    const heldByOne = turn.core.allocationCount;
    expect(heldByOne).toBeGreaterThanOrEqual(TILES);
    await first.close();
    const second = await openWall();
    const two = await allPlaying(second, 120_000);
    expect({ round: 2, playing: two.filter((s) => s.frames >= 10).length, relayed: two.filter((s) => s.type === "relay").length, refused: turn.metrics.quotaRejections - refusedBefore }).toEqual({ round: 2, playing: TILES, relayed: TILES, refused: 0 });
    expect(turn.metrics.quotaRejections).toBe(refusedBefore);
    // The first page's allocations went away meanwhile (its viewers ended, and their relays with them).
    const t0 = Date.now();
    while (turn.core.allocationCount > heldByOne + 6 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
    const afterReload = turn.core.allocationCount;
    await second.close();
    // Viewers that never connected are reclaimed by the SFU after media.viewers.connectTimeoutMs (30 s here).
    while (turn.core.allocationCount > 0 && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 100));
    console.log(`turn wall: ${TILES} tiles held ${heldByOne} allocations; after the reload ${afterReload}; all gone ${Math.round((Date.now() - t0) / 100) / 10} s after the reload`);
    const left = turn.core.listAllocations().map((a) => `${a.transport} ${a.client.address} ${Math.round((Date.now() - t0) / 1000)} s`);
    expect(afterReload).toBeLessThanOrEqual(heldByOne + 6);
    expect(left).toEqual([]);
  }, 420_000);
});

describe("relays of a page that offers at once", () => {
  it("a page that offers before its relay candidates (the default policy) names its credentials: its allocations end with its viewers, the page still open", async () => {
    // A gateway of its own: the wall above used up this subject's allocation rate.
    const gw = await startGateway({ config: gatewayConfig(), log: silentLogger });
    const turn = gw.turn!;
    const page = await openWall(2, "all", gw);
    try {
      const states = await allPlaying(page, 60_000);
      expect(states.filter((s) => s.frames >= 10).length).toBe(2);
      // Each offer named the credentials its page was given (whatever relay candidates it held), and
      // Chromium allocates with them on each TURN server (UDP, TCP, TLS) while it plays over the direct path.
      const offers = (await page.evaluate("window.offers")) as { named: string | null; relays: number }[];
      expect(offers.length).toBeGreaterThanOrEqual(2);
      const named = offers.map((o) => o.named);
      expect(named.every((n) => n !== null && n.includes(":"))).toBe(true);
      const allocated = () => new Set(turn.core.listAllocations().map((a) => a.username));
      const t0 = Date.now();
      while (!named.every((n) => allocated().has(n!)) && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 100));
      expect(named.filter((n) => !allocated().has(n!))).toEqual([]);
      const held = turn.core.allocationCount;
      console.log(`turn: offers named their credentials; relay candidates in them: ${offers.map((o) => o.relays).join(", ")}`);
      // The viewers end on the gateway; the page, alive, would keep its allocations refreshed.
      const ended = Date.now();
      for (const v of gw.sfu.viewerList()) await v.close(authCloseReason("revoked"));
      while (turn.core.allocationCount > 0 && Date.now() - ended < 5_000) await new Promise((r) => setTimeout(r, 50));
      console.log(`turn: ${held} allocations of a page offering at once; ${turn.core.allocationCount} left ${Date.now() - ended} ms after its viewers ended`);
      expect(turn.core.listAllocations().map((a) => `${a.transport} ${a.client.address}`)).toEqual([]);
    } finally {
      await page.close();
      await gw.close("test done");
    }
  }, 120_000);
});
