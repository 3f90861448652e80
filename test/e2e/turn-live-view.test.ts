/**
 * End to end through our TURN relay: the gateway serves HTTPS and TURN (UDP, TCP and TLS
 * on the HTTPS port) and Chromium, restricted to `iceTransportPolicy: 'relay'` with one TURN
 * transport at a time (`?relay=udp|tcp|tls`), plays the demo camera. Each transport keeps
 * playing through at least two allocation refreshes (4 s lifetime), while HTTPS requests keep
 * being answered on the same port.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { launchChromium, waitForDecodedFrames, waitForNewFrames, type Chromium } from "../peers/chromium.ts";

const LIFETIME_S = 4;
const VIDEO = '[data-camera="demo"] video';

let gateway: Gateway;
let chromium: Chromium;
let dir: string;

/** An HTTPS GET on the gateway's port (self-signed certificate), resolving with the status. */
function httpsStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject);
  });
}

/** The selected ICE candidate pair of the page's (only) peer connection. */
async function selectedPair(page: Page): Promise<{ type: string; relayProtocol?: string } | null> {
  return page.evaluate(async () => {
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
  dir = mkdtempSync(path.join(tmpdir(), "gh-turn-e2e-"));
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  writeFileSync(path.join(dir, "cert.pem"), pems.cert);
  writeFileSync(path.join(dir, "key.pem"), pems.private);
  const config = parseConfig(
    {
      server: { port: 0, tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") } },
      auth: { mode: "none" },
      log: { level: "warn" },
      turn: {
        enabled: true,
        secret: "e2e-turn-shared-secret-0123456789",
        udp: [{ host: "127.0.0.1", port: 0 }],
        relay: { address: "127.0.0.1", portRange: [0, 0] },
        lifetimes: { allocationSeconds: LIFETIME_S, maxAllocationSeconds: LIFETIME_S },
      },
    },
    {},
  );
  gateway = await startGateway({ config, log: silentLogger });
  chromium = await launchChromium({ args: ["--ignore-certificate-errors"] });
}, 60_000);

afterAll(async () => {
  await chromium?.close();
  await gateway?.close("test done");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("live view through the embedded TURN relay", () => {
  it("advertises TURN over UDP, TCP and TLS on the HTTPS port in WHEP Link headers", async () => {
    const res = await new Promise<{ status: number; links: string }>((resolve, reject) => {
      const req = https.request(`${gateway.url}/whep/demo`, { method: "OPTIONS", rejectUnauthorized: false }, (r) => {
        r.resume();
        resolve({ status: r.statusCode ?? 0, links: String(r.headers.link ?? "") });
      });
      req.on("error", reject).end();
    });
    expect(res.status).toBe(204);
    const port = new URL(gateway.url).port;
    expect(res.links).toContain(`<turn:127.0.0.1:${gateway.turn!.udp[0]!.port}?transport=udp>; rel="ice-server"`);
    expect(res.links).toContain(`<turn:127.0.0.1:${port}?transport=tcp>`);
    expect(res.links).toContain(`<turns:127.0.0.1:${port}?transport=tcp>`);
    expect(res.links).toMatch(/username="\d+:anonymous#\.[A-Za-z0-9_-]{8}"; credential="[A-Za-z0-9+/=]+"/);
  });

  for (const transport of ["udp", "tcp", "tls"] as const) {
    it(`plays over TURN/${transport} through two allocation refreshes, HTTPS alive on the same port`, async () => {
      const page = await chromium.newPage(`${gateway.url}/?relay=${transport}`);
      try {
        await waitForDecodedFrames(page, 10, 20_000, VIDEO);
        const pair = await selectedPair(page);
        expect(pair?.type).toBe("relay");
        expect(pair?.relayProtocol).toBe(transport);

        const turn = gateway.turn!;
        const refreshes = turn.metrics.refreshes;
        const relayed = turn.metrics.packetsToClient;
        // Two refresh cycles: keep decoding new frames until the relay has seen two more refreshes.
        while (turn.metrics.refreshes < refreshes + 2) {
          await waitForNewFrames(page, 10, 10_000, VIDEO);
          expect(await httpsStatus(`${gateway.url}/healthz`)).toBe(200);
        }
        await waitForNewFrames(page, 10, 10_000, VIDEO);
        expect(turn.metrics.packetsToClient - relayed).toBeGreaterThan(100);
        expect(turn.metrics.authFailures).toBe(0);
      } finally {
        await page.close();
      }
    }, 60_000);
  }
});
