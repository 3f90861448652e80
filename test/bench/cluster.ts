/**
 * A cluster of three gateway processes on Redis (127.0.0.2–.4), one camera (the demo recorder),
 * Chromium pages (the product's own page) on the two nodes that do not pull the camera, answered
 * through the one that does.
 *
 * - `cluster_nodes`: nodes in the discovery listing.
 * - `cluster_failover_ms_*`: the node pulling the camera SIGKILLed → the first new frame decoded
 *   by each page (same page, no reload): Chromium noticing the connection gone, the page's grace,
 *   a new offer taken over by another node, its pull and first keyframe. Each cycle kills the
 *   current puller, then restarts it and opens fresh pages on the two nodes that do not pull.
 * - `cluster_owner_cpu_us_per_packet` / `cluster_forwarder_cpu_us_per_packet`: CPU per RTP
 *   packet delivered to the pages, of the node that pulls and sends, and of a node that only
 *   answered its page's signalling through the owner (its media goes to the owner directly).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder } from "../../gateway/demo/recorder.ts";
import { inboundStats, launchChromium, waitForDecodedFrames } from "../peers/chromium.ts";
import { signInPage, startClusterNode, type ClusterNode } from "../peers/cluster-node.ts";
import { startRedis } from "../peers/redis.ts";
import { cpuSeconds } from "./lib/proc.ts";
import { median, percentile, round } from "./lib/stats.ts";

export interface ClusterBenchOptions {
  /** Kill cycles. Default 5. */
  cycles?: number;
  /** Camera lease, ms. Default 2000. */
  leaseMs?: number;
  log?: (msg: string) => void;
  signal?: AbortSignal;
}

interface Discovery {
  cluster: { nodes: { id: string; load: { cameras: number } }[] };
}

export async function benchCluster(o: ClusterBenchOptions = {}): Promise<Record<string, unknown>> {
  const log = o.log ?? (() => {});
  const leaseMs = o.leaseMs ?? 2000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gatehouse-bench-cluster-"));
  const redis = await startRedis();
  const recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const chromium = await launchChromium();
  const nodes = new Map<number, ClusterNode>();
  const pages: Page[] = [];
  const closePages = async () => {
    for (const p of pages.splice(0)) await p.close().catch(() => {});
  };
  try {
    const start = async (index: number) => nodes.set(index, await startClusterNode({ index, dir, redisUrl: redis.url, cameraUrl: recorder.url, leaseMs }));
    for (const i of [1, 2, 3]) await start(i);
    const anyNode = () => [...nodes.values()][0]!;
    const discovery = async (via: ClusterNode) => (await (await fetch(`${via.url}/.well-known/gatehouse`)).json()) as Discovery;
    const owner = async (): Promise<number | undefined> => {
      const id = (await discovery(anyNode())).cluster.nodes.find((n) => n.load.cameras > 0)?.id;
      return id ? Number(id.slice("node-".length)) : undefined;
    };

    // First puller: node 1, through a page of its own (closed once pages elsewhere watch).
    const opener = await chromium.newPage();
    await signInPage(opener, nodes.get(1)!, "viewer");
    await waitForDecodedFrames(opener, 5, 30_000);
    const clusterNodes = (await discovery(nodes.get(2)!)).cluster.nodes.length;

    const failover: number[] = [];
    let ownerCpu: number | undefined;
    let forwarderCpu: number | undefined;
    const cycles = o.cycles ?? 5;
    let previous: Page[] = [opener];
    for (let c = 0; c < cycles; c++) {
      if (o.signal?.aborted) throw new Error("aborted");
      let puller: number | undefined;
      for (let i = 0; i < 100 && puller === undefined; i++) {
        puller = await owner();
        if (puller === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      if (puller === undefined) throw new Error("no node pulls the camera");
      const others = [...nodes.keys()].filter((i) => i !== puller);
      // Fresh pages on the nodes that do not pull, opened before the last cycle's pages close
      // (so the camera never goes idle and stays with its puller).
      const current: Page[] = [];
      for (const i of others) {
        const page = await chromium.newPage();
        pages.push(page);
        current.push(page);
        await signInPage(page, nodes.get(i)!, "viewer");
        await waitForDecodedFrames(page, 10, 30_000);
      }
      for (const p of previous) await p.close().catch(() => {});
      previous = current;
      if (c === 0) {
        // CPU per delivered packet, owner and a forwarding node, over the same 5 s.
        const before = await Promise.all(current.map((p) => inboundStats(p, "video")));
        const cpu0 = new Map([...nodes].map(([i, n]) => [i, cpuSeconds(n.child.pid!)]));
        await new Promise((r) => setTimeout(r, 5000));
        const after = await Promise.all(current.map((p) => inboundStats(p, "video")));
        const packets = after.map((a, k) => (a?.packetsReceived ?? 0) - (before[k]?.packetsReceived ?? 0));
        const total = packets.reduce((x, y) => x + y, 0);
        const cpu = (i: number) => cpuSeconds(nodes.get(i)!.child.pid!) - cpu0.get(i)!;
        if (total > 0 && packets[0]! > 0) {
          ownerCpu = round((cpu(puller) * 1e6) / total, 2);
          forwarderCpu = round((cpu(others[0]!) * 1e6) / packets[0]!, 2);
        }
      }
      const keys = await Promise.all(current.map((p) => inboundStats(p, "video").then((s) => s?.key)));
      const killedAt = Date.now();
      nodes.get(puller)!.kill();
      // Playing again: a new receive stream (the page's new offer) has decoded a frame.
      const ms = await Promise.all(
        current.map(async (p, k) => {
          const end = Date.now() + 60_000;
          for (;;) {
            const s = await inboundStats(p, "video").catch(() => null);
            if (s && s.key !== keys[k] && s.framesDecoded > 0) return Date.now() - killedAt;
            if (Date.now() > end) throw new Error("a page did not play again within 60 s");
            await new Promise((r) => setTimeout(r, 20));
          }
        }),
      );
      failover.push(...ms);
      log(`cluster: cycle ${c + 1}: node-${puller} killed, pages playing again after ${ms.join(", ")} ms`);
      await start(puller);
    }
    return {
      cluster_nodes: clusterNodes,
      cluster_failover_ms_p50: round(median(failover)),
      cluster_failover_ms_p95: round(percentile(failover, 95)),
      cluster_failover_ms_max: Math.max(...failover),
      cluster_failover_samples: failover.length,
      cluster_lease_ms: leaseMs,
      ...(ownerCpu !== undefined ? { cluster_owner_cpu_us_per_packet: ownerCpu, cluster_forwarder_cpu_us_per_packet: forwarderCpu } : {}),
    };
  } finally {
    await closePages();
    for (const n of nodes.values()) n.kill();
    await chromium.close();
    await recorder.close();
    await redis.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
