/**
 * A grid page behind a firewall that lets no UDP through, over a slow, lossy link: the gateway
 * in one network namespace, Chromium in another (test/peers/netns.ts), the link between them
 * 8 Mbit/s towards the browser, 1 % loss and 50 ms each way, and every UDP packet dropped
 * both ways, as in an office that allows only web traffic.
 *
 * The live view as it opens by default (no `?relay=` to force anything): ICE finds no UDP path,
 * so the page must reach the gateway through the embedded TURN relay on the front door's TCP
 * port, and play the whole grid over that one relayed connection: every tile live and decoding,
 * one RTCPeerConnection, its selected pair a relay candidate over TCP, one set of TURN
 * allocations, one grid session on the gateway; and the tiles go on decoding over the lossy
 * TCP path.
 */
import { once } from "node:events";
import { createInterface } from "node:readline";
import type { Page } from "puppeteer-core";
import { describe, expect, it } from "vitest";
import { launchChromium } from "../peers/chromium.ts";
import { createNetnsLink, startNetnsGateway, type NetnsLink } from "../peers/netns.ts";

const CAMERAS = ["cam1", "cam2", "cam3", "cam4"];

interface GridView {
  tiles: { camera: string; status: string; message: string; framesDecoded?: number }[];
  pcs: number;
  candidate: { type: string; relayProtocol?: string } | null;
}

async function view(page: Page): Promise<GridView> {
  return page.evaluate(async () => {
    type W = {
      gatehouse: { stats(): Promise<{ camera: string; status: string; message: string; framesDecoded?: number }[]> };
      __gh: { pcs(): RTCPeerConnection[] };
    };
    const w = window as unknown as W;
    const pcs = w.__gh.pcs().filter((pc) => pc.connectionState !== "closed");
    let candidate: GridView["candidate"] = null;
    for (const pc of pcs) {
      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type !== "transport" || !s.selectedCandidatePairId) continue;
        const local = stats.get(stats.get(s.selectedCandidatePairId).localCandidateId);
        candidate = { type: local.candidateType, relayProtocol: local.relayProtocol };
      }
    }
    const tiles = (await w.gatehouse.stats()).map((t) => ({ camera: t.camera, status: t.status, message: t.message, framesDecoded: t.framesDecoded }));
    return { tiles, pcs: pcs.length, candidate };
  });
}

async function until(page: Page, ok: (v: GridView) => boolean, what: string, timeoutMs: number): Promise<GridView> {
  const t0 = Date.now();
  let v = await view(page);
  while (!ok(v)) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
    v = await view(page);
  }
  return v;
}

/**
 * The gateway's loopback origin, in the client's namespace: a forwarder there to the server side's
 * (test/peers/ns-forward.ts), across the shaped link. Closed with the returned disposable.
 */
async function forwardOrigin(link: NetnsLink, url: string, via: string): Promise<AsyncDisposable> {
  const { hostname, port } = new URL(url);
  const child = link.spawn("client", process.execPath, [new URL("../peers/ns-forward.ts", import.meta.url).pathname, `${hostname}:${port}=${via}`], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  const [first] = (await Promise.race([once(lines, "line"), once(child, "exit").then(() => ["exited"])])) as string[];
  if (first !== "ready") throw new Error(`the client side's forwarder did not start: ${first}`);
  return {
    async [Symbol.asyncDispose]() {
      child.stdin!.end();
      if (child.exitCode === null) await once(child, "exit");
    },
  };
}

const allLive = (v: GridView) => CAMERAS.every((c) => v.tiles.find((t) => t.camera === c)?.status === "live");
const frames = (v: GridView) => new Map(v.tiles.map((t) => [t.camera, t.framesDecoded ?? 0]));

describe("the grid through a firewall that drops UDP, over a slow lossy link", () => {
  it("finds the TURN relay on the front door's TCP port by itself and plays every tile over one relayed connection", async () => {
    await using link = await createNetnsLink();
    await link.shape("down", { rateKbit: 8000, lossPct: 1, delayMs: 50, dropUdp: true });
    await link.shape("up", { lossPct: 1, delayMs: 50, dropUdp: true });
    await using gw = await startNetnsGateway(link, "grid");
    await using _origin = await forwardOrigin(link, gw.url, gw.via!);
    const wrapper = await link.wrapper("client", "/usr/bin/chromium");
    await using chromium = await launchChromium({ executablePath: wrapper, pipe: true });
    const page = await chromium.newPage(`${gw.url}/`);

    const first = await until(page, (v) => allLive(v) && CAMERAS.every((c) => (frames(v).get(c) ?? 0) > 0), "every tile live with frames", 90_000);
    expect(first.pcs).toBe(1);
    expect(first.candidate).toEqual({ type: "relay", relayProtocol: "tcp" });
    for (const t of first.tiles) expect(t.message, t.camera).toBe("");
    const st = await gw.status<{ gridSessions: number; turnAllocations: number; viewers: unknown[] }>();
    expect(st.gridSessions).toBe(1);
    expect(st.viewers).toHaveLength(0); // no WHEP session per tile
    // One set of allocations for the whole grid (TURN over TCP; none over the blocked UDP).
    expect(st.turnAllocations).toBeGreaterThanOrEqual(1);
    expect(st.turnAllocations).toBeLessThanOrEqual(2);

    // It keeps playing over the lossy TCP path: every tile decodes 50 more frames (2 s at 25 fps), still live.
    const base = frames(first);
    const later = await until(page, (v) => allLive(v) && CAMERAS.every((c) => (frames(v).get(c) ?? 0) >= (base.get(c) ?? 0) + 50), "50 more frames on every tile, all live", 60_000);
    expect(later.pcs).toBe(1);

    // The firewall was real: UDP was tried (host candidates, TURN over UDP) and dropped both ways.
    const up = await link.shape("up", { lossPct: 1, delayMs: 50, dropUdp: true });
    expect(up.droppedUdp).toBeGreaterThan(0);
  }, 180_000);
});
