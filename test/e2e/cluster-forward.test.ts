/**
 * Three gateway processes as one cluster, each in a network namespace of its own (joined by a
 * bridge the test creates; test/peers/cluster-netns.ts), on a real Redis and one camera (the demo
 * recorder, counting its RTSP sessions), both in the host and reached from the namespaces over
 * Unix sockets; Chromium in a fifth namespace. The pages on the two nodes that do not pull the
 * camera are served by their own node's SFU from a relay of the owner's pull (their media comes
 * from the address of the node they reached, not the owner's) and the recorder is pulled once. The
 * owner is SIGKILLed: forwarding starts again from the new owner and both pages decode again.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { launchChromium, waitForDecodedFrames, waitForNewFrames, type Chromium } from "../peers/chromium.ts";
import { createClusterNetns, type ClusterNetns } from "../peers/cluster-netns.ts";
import { NETNS_HTTP_PORT, NETNS_IDP_PORT, signInPage, startClusterNode, type ClusterNode } from "../peers/cluster-node.ts";
import { startRedis, type RedisServer } from "../peers/redis.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gatehouse-cluster-fwd-"));
const LEASE_MS = 2000;
let redis: RedisServer;
let recorder: DemoRecorder;
let netns: ClusterNetns;
let chromium: Chromium;
const nodes: ClusterNode[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeAll(async () => {
  redis = await startRedis();
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const rtspPort = Number(new URL(recorder.url).port);
  netns = await createClusterNetns(3);
  const redisSock = await netns.exposeHost(redis.port);
  const rtspSock = await netns.exposeHost(rtspPort);
  for (const index of [1, 2, 3]) {
    const { ns, address } = netns.node(index);
    // Inside the node's namespace: Redis and the recorder at the host's loopback ports, and its
    // front door and sign-in provider (on loopback) reachable on its address.
    await netns.forward(ns, [
      `127.0.0.1:${redis.port}=unix:${redisSock}`,
      `127.0.0.1:${rtspPort}=unix:${rtspSock}`,
      `${address}:${NETNS_HTTP_PORT}=127.0.0.${index + 1}:${NETNS_HTTP_PORT}`,
      `${address}:${NETNS_IDP_PORT + index}=127.0.0.1:${NETNS_IDP_PORT + index}`,
    ]);
    const n = await startClusterNode({ index, dir, redisUrl: redis.url, cameraUrl: recorder.url, leaseMs: LEASE_MS, forwardMode: "forward", netns: { ns, address } });
    nodes.push(n);
    cleanups.push(() => n.kill());
  }
  // The browser reaches each node at the loopback origin the node knows itself by.
  await netns.forward(
    netns.client.ns,
    [1, 2, 3].flatMap((i) => [
      `127.0.0.${i + 1}:${NETNS_HTTP_PORT}=${netns.node(i).address}:${NETNS_HTTP_PORT}`,
      `127.0.0.1:${NETNS_IDP_PORT + i}=${netns.node(i).address}:${NETNS_IDP_PORT + i}`,
    ]),
  );
  chromium = await launchChromium({ executablePath: await netns.wrapper(netns.client.ns, "/usr/bin/chromium"), pipe: true });
}, 240_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await chromium?.close();
  await netns?.close();
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

/** The address the page's video comes from: the remote side of its selected candidate pair. */
async function mediaFrom(page: Page): Promise<string | undefined> {
  return page.evaluate(async () => {
    const pcs = (window as unknown as { __gh: { pcs(): RTCPeerConnection[] } }).__gh.pcs();
    for (const pc of [...pcs].reverse()) {
      if (pc.connectionState !== "connected") continue;
      const stats = [...(await pc.getStats()).values()] as Array<Record<string, unknown>>;
      const pair = stats.find((s) => s.type === "candidate-pair" && s.nominated === true && s.state === "succeeded");
      const remote = pair && stats.find((s) => s.id === pair.remoteCandidateId);
      if (remote) return String(remote.address ?? remote.ip);
    }
    return undefined;
  });
}

describe("RTP forwarding between cluster nodes in network namespaces, in Chromium", () => {
  it("pages on two nodes that do not pull the camera are served there from relays of one pull; the owner SIGKILLed, forwarding starts again from the new owner", async () => {
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    // node-1 takes the camera: a page signed in there watches first.
    const opener = await chromium.newPage();
    cleanups.push(() => opener.close().catch(() => {}));
    await signInPage(opener, n1, "viewer");
    await waitForDecodedFrames(opener, 5, 30_000);
    expect(await mediaFrom(opener)).toBe(netns.node(1).address);

    const pages: Page[] = [];
    for (const [i, n] of [[2, n2] as const, [3, n3] as const]) {
      const page = await chromium.newPage();
      cleanups.push(() => page.close().catch(() => {}));
      await signInPage(page, n, "viewer");
      await waitForDecodedFrames(page, 10, 30_000);
      // Its media comes from the node it reached (a relay there), not from the owner.
      expect(await mediaFrom(page)).toBe(netns.node(i).address);
      await page.evaluate(() => ((window as unknown as { __notReloaded: boolean }).__notReloaded = true));
      pages.push(page);
    }
    await pullsAtRecorder(1, 5_000);

    const killedAt = Date.now();
    n1.kill();
    const recovered = await Promise.all(
      pages.map(async (page) => {
        await waitForNewFrames(page, 25, 30_000);
        return Date.now() - killedAt;
      }),
    );
    for (const [k, page] of pages.entries()) {
      expect(await page.evaluate(() => (window as unknown as { __notReloaded?: boolean }).__notReloaded)).toBe(true);
      // Still served by the node it reached: the new owner's own pull, or a relay of it.
      expect(await mediaFrom(page)).toBe(netns.node(k + 2).address);
    }
    await pullsAtRecorder(1, 10_000);
    console.log(`cluster forwarding failover: pages decoding again ${recovered.join(" ms, ")} ms after SIGKILL of the owner (lease ${LEASE_MS} ms)`);
    expect(Math.max(...recovered)).toBeLessThan(30_000);
  }, 240_000);
});
