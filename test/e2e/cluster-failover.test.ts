/**
 * Three gateway processes as one cluster on a real Redis (127.0.0.2, .3, .4), one camera (the demo
 * recorder, counting its RTSP sessions), Chromium pages on two nodes that do not pull the camera.
 * The recorder is pulled once for the three nodes; when the node that pulls it is killed (SIGKILL),
 * another node takes the camera over and both pages play again by themselves, without a reload.
 * Viewers elsewhere are answered through the owner here (`forward.mode: answer`); relays are
 * cluster-forward.test.ts's.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { launchChromium, waitForDecodedFrames, waitForNewFrames, type Chromium } from "../peers/chromium.ts";
import { signInPage, startClusterNode, type ClusterNode } from "../peers/cluster-node.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { startRedis, type RedisServer } from "../peers/redis.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gatehouse-cluster-"));
const LEASE_MS = 2000;
let redis: RedisServer;
let recorder: DemoRecorder;
let chromium: Chromium;
const nodes: ClusterNode[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeAll(async () => {
  redis = await startRedis();
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  for (const index of [1, 2, 3]) {
    const n = await startClusterNode({ index, dir, redisUrl: redis.url, cameraUrl: recorder.url, leaseMs: LEASE_MS, forwardMode: "answer" });
    nodes.push(n);
    cleanups.push(() => n.kill());
  }
  chromium = await launchChromium();
}, 120_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await chromium?.close();
  await recorder?.close();
  await redis?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function pullsAtRecorder(n: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (recorder.sessions() !== n) {
    if (Date.now() > end) throw new Error(`recorder has ${recorder.sessions()} sessions, expected ${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("a three-node cluster in Chromium", () => {
  it("pulls the camera once for pages on two nodes, and after its puller is SIGKILLed both pages play again by themselves", async () => {
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    // node-1 takes the camera: a viewer signed in there watches it first.
    const http = new HttpBrowser();
    cleanups.push(() => http.close());
    expect((await signIn(http, `${n1.url}/auth/login`, "viewer", n1.passwords.get("viewer")!)).status).toBe(200);
    const me = await http.request(`${n1.url}/auth/me`, { headers: { accept: "application/json" } });
    const csrf = (JSON.parse(me.body) as { csrfToken: string }).csrfToken;
    const cookie = [...(http.jar.get("127.0.0.2") ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
    const first = await WeriftViewer.connect({ whepUrl: `${n1.url}/whep/demo`, headers: { cookie, "x-csrf-token": csrf, origin: n1.url }, audio: false, timeoutMs: 20_000 });
    cleanups.push(() => first.close().catch(() => {}));
    await first.video.waitForCount(10, 20_000);

    // Pages on node-2 and node-3, answered through node-1.
    const pages: Page[] = [];
    for (const n of [n2, n3]) {
      const page = await chromium.newPage();
      cleanups.push(() => page.close().catch(() => {}));
      await signInPage(page, n, "viewer");
      await waitForDecodedFrames(page, 10, 30_000);
      await page.evaluate(() => ((window as unknown as { __notReloaded: boolean }).__notReloaded = true));
      pages.push(page);
    }
    await pullsAtRecorder(1, 5_000);
    const doc = (await (await fetch(`${n2.url}/.well-known/gatehouse`)).json()) as { cluster: { nodes: { id: string; load: { cameras: number } }[] } };
    expect(doc.cluster.nodes.find((n) => n.id === "node-1")?.load.cameras).toBe(1);

    // The puller dies without a word.
    const killedAt = Date.now();
    n1.kill();
    const recovered = await Promise.all(
      pages.map(async (page) => {
        await waitForNewFrames(page, 25, 30_000);
        return Date.now() - killedAt;
      }),
    );
    // Same pages, never reloaded, and one pull again for the whole cluster.
    for (const page of pages) {
      expect(await page.evaluate(() => (window as unknown as { __notReloaded?: boolean }).__notReloaded)).toBe(true);
      expect(new URL(page.url()).pathname).toBe("/");
    }
    await pullsAtRecorder(1, 10_000);
    console.log(`cluster failover: pages playing again ${recovered.join(" ms, ")} ms after SIGKILL of the puller (lease ${LEASE_MS} ms)`);
    // On this shared machine: about 4 s until Chromium sees the connection go, the page's 2.5 s
    // grace, then a new offer answered by the node that takes the camera over (README "Cluster").
    expect(Math.max(...recovered)).toBeLessThan(30_000);
  }, 180_000);
});
