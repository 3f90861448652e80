/**
 * Chromium through our TURN relay, without the gateway: a page holds a sender (host
 * candidates on loopback, the fake camera) and a viewer restricted to
 * `iceTransportPolicy: 'relay'`, so every media packet the viewer gets crosses our relay.
 * Over UDP, over TCP on the front door's shared port and over TLS on it, each kept
 * playing through at least two allocation refreshes (a 4 s allocation lifetime makes
 * Chromium refresh every 2 s), while the page itself and HTTPS keep being served on that
 * same port. Loopback is reached as the "gateway's own media address" (allowedPeers).
 */
import http from "node:http";
import https from "node:https";
import { generate } from "selfsigned";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startFrontDoor, type FrontDoor } from "../../gateway/frontdoor/index.ts";
import { startTurnServer, turnIceServers, type TurnServer } from "../../turn/index.ts";
import { launchChromium, waitForNewFrames, type Chromium } from "../peers/chromium.ts";

const LIFETIME_S = 4;

let turn: TurnServer;
let door: FrontDoor;
let httpServer: http.Server;
let chromium: Chromium;

const PAGE = `<!doctype html><meta charset="utf-8"><title>turn relay</title><video id="v" autoplay muted playsinline></video>
<script>
window.startCall = async (iceServers) => {
  const sender = new RTCPeerConnection({ iceServers: [] });
  const viewer = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
  window.viewer = viewer;
  sender.onicecandidate = (e) => e.candidate && viewer.addIceCandidate(e.candidate);
  viewer.onicecandidate = (e) => e.candidate && sender.addIceCandidate(e.candidate);
  viewer.ontrack = (e) => { document.getElementById("v").srcObject = e.streams[0]; };
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
  for (const t of media.getTracks()) sender.addTrack(t, media);
  await sender.setLocalDescription();
  await viewer.setRemoteDescription(sender.localDescription);
  await viewer.setLocalDescription();
  await sender.setRemoteDescription(viewer.localDescription);
};
window.selectedPair = async () => {
  const stats = await window.viewer.getStats();
  for (const s of stats.values()) {
    if (s.type !== "transport" || !s.selectedCandidatePairId) continue;
    const pair = stats.get(s.selectedCandidatePairId);
    const local = stats.get(pair.localCandidateId);
    return { state: pair.state, type: local.candidateType, relayProtocol: local.relayProtocol, bytesReceived: pair.bytesReceived };
  }
  return null;
};
</script>`;

beforeAll(async () => {
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  turn = await startTurnServer({
    config: parseConfig({
      turn: {
        enabled: true,
        secret: "chromium-turn-secret-0123456789",
        udp: [{ host: "127.0.0.1", port: 0 }],
        relay: { address: "127.0.0.1", portRange: [0, 0] },
        lifetimes: { allocationSeconds: LIFETIME_S, maxAllocationSeconds: LIFETIME_S },
        credentialLifetimeSeconds: 60,
      },
    }).turn,
    log: silentLogger,
    allowedPeers: ["127.0.0.1"], // what the gateway passes: its own media addresses
  });
  httpServer = http.createServer((_req, res) => {
    res.setHeader("content-type", "text/html");
    res.end(PAGE);
  });
  door = await startFrontDoor({ host: "127.0.0.1", port: 0, tls: { cert: pems.cert, key: pems.private }, http: httpServer, turn, log: silentLogger });
  // The relay's TLS certificate is self-signed: Chromium is told to accept it.
  chromium = await launchChromium({ args: ["--ignore-certificate-errors"] });
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await door?.close();
  httpServer?.close();
  await turn?.close();
});

function httpsOk(): Promise<number> {
  return new Promise((resolve, reject) =>
    https.get({ host: "127.0.0.1", port: door.port, path: "/", rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject),
  );
}

async function playThrough(transport: "udp" | "tcp" | "tls"): Promise<{ page: Page; refreshes: number }> {
  const creds = turn.mintCredentials(`viewer-${transport}`);
  const all = turnIceServers({ host: "127.0.0.1", udpPort: turn.udp[0]!.port, httpsPort: door.port, credentials: creds })[0]!;
  const url = all.urls.find((u) => (transport === "udp" ? u.endsWith("udp") : transport === "tcp" ? u.startsWith("turn:") && u.endsWith("tcp") : u.startsWith("turns:")))!;
  const page = await chromium.newPage(`http://127.0.0.1:${door.port}/`);
  await page.evaluate((s) => (window as unknown as { startCall(s: unknown): Promise<void> }).startCall(s), [{ ...all, urls: [url] }]);
  await waitForNewFrames(page, 10, 20_000, "#v");
  const refreshesBefore = turn.metrics.refreshes;
  // Two refresh cycles (Chromium refreshes at half the lifetime) while frames keep coming.
  for (let i = 0; i < 3; i++) {
    await waitForNewFrames(page, 15, 10_000, "#v");
    expect(await httpsOk()).toBe(200);
  }
  const deadline = Date.now() + 3 * LIFETIME_S * 1000;
  while (turn.metrics.refreshes - refreshesBefore < 2 && Date.now() < deadline) await waitForNewFrames(page, 5, 10_000, "#v");
  await waitForNewFrames(page, 10, 10_000, "#v");
  return { page, refreshes: turn.metrics.refreshes - refreshesBefore };
}

describe("Chromium plays video through our TURN relay (iceTransportPolicy: relay)", () => {
  it.each(["udp", "tcp", "tls"] as const)("over %s, through at least two allocation refreshes", async (transport) => {
    const relayedBefore = turn.metrics.packetsToClient;
    const { page, refreshes } = await playThrough(transport);
    const pair = (await page.evaluate(() => (window as unknown as { selectedPair(): Promise<unknown> }).selectedPair())) as {
      state: string;
      type: string;
      relayProtocol: string;
      bytesReceived: number;
    };
    expect(pair.type).toBe("relay");
    expect(pair.relayProtocol).toBe(transport);
    expect(pair.state).toBe("succeeded");
    expect(refreshes).toBeGreaterThanOrEqual(2);
    expect(turn.metrics.packetsToClient - relayedBefore).toBeGreaterThan(100);
    if (transport !== "udp") expect(door.stats[transport === "tcp" ? "turnTcp" : "turnTls"]).toBeGreaterThanOrEqual(1);
    await page.close();
  }, 60_000);
});
