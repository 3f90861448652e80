/**
 * A cluster of three gateway processes on Redis, one camera (the demo recorder), Chromium pages
 * (the product's own page) on the two nodes that do not pull the camera, answered through the one
 * that does: each node in a network namespace of its own and Chromium in another, as the
 * cluster's e2e proof (test/peers/cluster-netns.ts).
 *
 * - `cluster_nodes`: nodes in the discovery listing.
 * - `cluster_failover_ms_*`: the node pulling the camera SIGKILLed → the first new frame decoded
 *   by each page (same page, no reload): Chromium noticing the connection gone, the page's grace,
 *   a new offer taken over by another node, its pull and first keyframe. Each cycle kills the
 *   current puller, then restarts it and opens fresh pages on the two nodes that do not pull.
 * - `cluster_owner_cpu_us_per_packet` / `cluster_forwarder_cpu_us_per_packet`: CPU per RTP
 *   packet delivered to the pages, of the node that pulls and sends, and of a node that only
 *   answered its page's signalling through the owner (its media goes to the owner directly).
 *   These first figures are of `cluster.forward.mode: answer`.
 * - Then three nodes on loopback (127.0.0.2–.4; its light viewers run in this process) in
 *   `forward` mode (the default; benchForwarding below):
 *   `cluster_relay_cpu_us_per_packet` (a node that receives the camera from its owner over the
 *   forwarding link and serves its own viewers from the relay) beside
 *   `cluster_relay_owner_cpu_us_per_packet` (the owner: pull, its own viewers, the link), same
 *   windows, K light viewers on each; `…_net` subtracts the third node's CPU over the same window
 *   (no viewer, no relay: the processes' baseline); `cluster_relay_cpu_ratio` = relay / owner.
 *   `cluster_forward_failover_ms_*`: owner SIGKILLed → the pages on the two other nodes (same
 *   connection, no new offer) decode again after their stall.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Page } from "puppeteer-core";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder } from "../../gateway/demo/recorder.ts";
import { inboundStats, launchChromium, waitForDecodedFrames } from "../peers/chromium.ts";
import { pageFetch, startNetnsCluster, type NetnsCluster } from "../peers/cluster-netns.ts";
import { signInPage, startClusterNode, type ClusterNode } from "../peers/cluster-node.ts";
import { LightViewer } from "../peers/light-viewer.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
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
  const cycles = o.cycles ?? 5;
  // Answer mode, each node in a network namespace of its own (as the cluster's e2e proof).
  const cluster = await startNetnsCluster({ leaseMs, forwardMode: "answer", timeoutMs: 180_000 });
  let answered: Record<string, unknown>;
  try {
    answered = await benchAnswerFailover(cluster, leaseMs, cycles, log, o.signal);
  } finally {
    await cluster.close();
  }
  // Forward mode: light werift viewers in this process, so its nodes are on loopback (127.0.0.2–.4).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gatehouse-bench-cluster-"));
  const redis = await startRedis();
  const recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const chromium = await launchChromium();
  const nodes = new Map<number, ClusterNode>();
  try {
    const forwarded = await benchForwarding({ dir, redisUrl: redis.url, cameraUrl: recorder.url, leaseMs, chromium, cycles, nodes, log, ...(o.signal ? { signal: o.signal } : {}) });
    return { ...answered, ...forwarded };
  } finally {
    for (const n of nodes.values()) n.kill();
    await chromium.close();
    await recorder.close();
    await redis.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The answer-mode figures (module doc), on a cluster in network namespaces. */
async function benchAnswerFailover(cluster: NetnsCluster, leaseMs: number, cycles: number, log: (msg: string) => void, signal: AbortSignal | undefined): Promise<Record<string, unknown>> {
  const pages: Page[] = [];
  const closePages = async () => {
    for (const p of pages.splice(0)) await p.close().catch(() => {});
  };
  // The nodes are reachable from the browser's namespace only: the discovery document is read by a page.
  const discovery = async (via: Page) => JSON.parse((await pageFetch(via, "/.well-known/gatehouse")).body) as Discovery;
  const owner = async (via: Page): Promise<number | undefined> => {
    const id = (await discovery(via)).cluster.nodes.find((n) => n.load.cameras > 0)?.id;
    return id ? Number(id.slice("node-".length)) : undefined;
  };
  const failover: number[] = [];
  let ownerCpu: number | undefined;
  let forwarderCpu: number | undefined;
  let clusterNodes = 0;
  // Answering through the owner applies to WHEP sessions: the pages play one WHEP session per tile
  // (`?grid=0`). The default page's grid binds its slots through relays in either mode, and plays
  // on after a failover on the same receive stream, which the cycle below would never see as new.
  const ANSWERED_PAGE = "/?grid=0";
  // A failure of the cycles is reported; the forward-mode figures still follow.
  let answerError: string | undefined;
  try {
    // First puller: node 1, through a page of its own (closed once pages elsewhere watch).
    const opener = await cluster.page();
    pages.push(opener);
    await signInPage(opener, cluster.node(1), "viewer", ANSWERED_PAGE);
    await waitForDecodedFrames(opener, 5, 30_000);
    clusterNodes = (await discovery(opener)).cluster.nodes.length;
    let previous: Page[] = [opener];
    for (let c = 0; c < cycles; c++) {
      if (signal?.aborted) throw new Error("aborted");
      let puller: number | undefined;
      for (let i = 0; i < 100 && puller === undefined; i++) {
        puller = await owner(previous[0]!);
        if (puller === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      if (puller === undefined) throw new Error("no node pulls the camera");
      const others = [1, 2, 3].filter((i) => i !== puller);
      // Fresh pages on the nodes that do not pull, opened before the last cycle's pages close
      // (so the camera never goes idle and stays with its puller).
      const current: Page[] = [];
      for (const i of others) {
        const page = await cluster.page();
        pages.push(page);
        current.push(page);
        await signInPage(page, cluster.node(i), "viewer", ANSWERED_PAGE);
        await waitForDecodedFrames(page, 10, 30_000);
      }
      for (const p of previous) await p.close().catch(() => {});
      previous = current;
      if (c === 0) {
        // CPU per delivered packet, owner and a forwarding node, over the same 5 s.
        const pids = new Map([1, 2, 3].map((i) => [i, cluster.node(i).child.pid!]));
        const before = await Promise.all(current.map((p) => inboundStats(p, "video")));
        const cpu0 = new Map([...pids].map(([i, pid]) => [i, cpuSeconds(pid)]));
        await new Promise((r) => setTimeout(r, 5000));
        const after = await Promise.all(current.map((p) => inboundStats(p, "video")));
        const packets = after.map((a, k) => (a?.packetsReceived ?? 0) - (before[k]?.packetsReceived ?? 0));
        const total = packets.reduce((x, y) => x + y, 0);
        const cpu = (i: number) => cpuSeconds(pids.get(i)!) - cpu0.get(i)!;
        if (total > 0 && packets[0]! > 0) {
          ownerCpu = round((cpu(puller) * 1e6) / total, 2);
          forwarderCpu = round((cpu(others[0]!) * 1e6) / packets[0]!, 2);
        }
      }
      const keys = await Promise.all(current.map((p) => inboundStats(p, "video").then((s) => s?.key)));
      const killedAt = Date.now();
      cluster.node(puller).kill();
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
      await cluster.restart(puller);
    }
  } catch (err) {
    if (signal?.aborted) throw err;
    answerError = err instanceof Error ? err.message : String(err);
    log(`cluster: answer-mode cycles failed: ${answerError}`);
  } finally {
    await closePages();
  }
  return {
    cluster_nodes: clusterNodes,
    ...(failover.length > 0
      ? { cluster_failover_ms_p50: round(median(failover)), cluster_failover_ms_p95: round(percentile(failover, 95)), cluster_failover_ms_max: Math.max(...failover) }
      : {}),
    ...(answerError ? { cluster_answer_error: answerError } : {}),
    cluster_failover_samples: failover.length,
    cluster_lease_ms: leaseMs,
    ...(ownerCpu !== undefined ? { cluster_owner_cpu_us_per_packet: ownerCpu, cluster_forwarder_cpu_us_per_packet: forwarderCpu } : {}),
  };
}

interface ForwardBenchOptions {
  dir: string;
  redisUrl: string;
  cameraUrl: string;
  leaseMs: number;
  chromium: Awaited<ReturnType<typeof launchChromium>>;
  cycles: number;
  /** Filled with the nodes started here (the caller kills what is left). */
  nodes: Map<number, ClusterNode>;
  /** Light viewers per node in the CPU windows. Default 10. */
  viewersPerNode?: number;
  /** CPU windows. Default 3. */
  windows?: number;
  log: (msg: string) => void;
  signal?: AbortSignal;
}

/** The relay's figures (module doc). */
export async function benchForwarding(o: ForwardBenchOptions): Promise<Record<string, unknown>> {
  const { nodes, log } = o;
  const start = async (index: number) =>
    nodes.set(index, await startClusterNode({ index, dir: o.dir, redisUrl: o.redisUrl, cameraUrl: o.cameraUrl, leaseMs: o.leaseMs, forwardMode: "forward", timeoutMs: 180_000 }));
  for (const i of [1, 2, 3]) await start(i);
  const n1 = nodes.get(1)!;
  const http = new HttpBrowser();
  const viewers: LightViewer[] = [];
  const pages: Page[] = [];
  try {
    const login = await signIn(http, `${n1.url}/auth/login`, "viewer", n1.passwords.get("viewer")!);
    if (login.status !== 200) throw new Error(`sign-in failed: ${login.status}`);
    const cookie = [...(http.jar.get(new URL(n1.url).hostname) ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
    const headersFor = async (n: ClusterNode) => {
      const me = await fetch(`${n.url}/auth/me`, { headers: { cookie, accept: "application/json" } });
      const csrf = ((await me.json()) as { csrfToken: string }).csrfToken;
      return { cookie, "x-csrf-token": csrf, origin: n.url };
    };
    // K viewers on the owner (node 1, the first to ask), K on node 2 (served from its relay); node 3 idle.
    const k = o.viewersPerNode ?? 10;
    const byNode = new Map<number, LightViewer[]>([
      [1, []],
      [2, []],
    ]);
    for (const i of [1, 2]) {
      const h = await headersFor(nodes.get(i)!);
      for (let j = 0; j < k; j++) {
        const v = await LightViewer.whep(`${nodes.get(i)!.url}/whep/demo`, { headers: h, timeoutMs: 30_000 });
        viewers.push(v);
        byNode.get(i)!.push(v);
      }
    }
    await Promise.all(viewers.map((v) => v.firstPacket));
    // Receiver reports, as a browser sends them (a silent viewer is ended by the SFU).
    const rr = setInterval(() => {
      for (const v of viewers) v.sendReceiverReport();
    }, 1000);
    const received = (i: number) => byNode.get(i)!.reduce((n, v) => n + [...v.streams.values()].reduce((m, s) => m + s.received, 0), 0);
    const relay: number[] = [];
    const owner: number[] = [];
    const relayNet: number[] = [];
    const ownerNet: number[] = [];
    for (let w = 0; w < (o.windows ?? 3); w++) {
      if (o.signal?.aborted) throw new Error("aborted");
      const cpu0 = [1, 2, 3].map((i) => cpuSeconds(nodes.get(i)!.child.pid!));
      const p0 = [received(1), received(2)];
      await new Promise((r) => setTimeout(r, 5000));
      const cpu = [1, 2, 3].map((i, x) => cpuSeconds(nodes.get(i)!.child.pid!) - cpu0[x]!);
      const p = [received(1) - p0[0]!, received(2) - p0[1]!];
      if (p[0]! <= 0 || p[1]! <= 0) throw new Error(`no packets delivered in a window (${p.join(", ")})`);
      owner.push((cpu[0]! * 1e6) / p[0]!);
      relay.push((cpu[1]! * 1e6) / p[1]!);
      ownerNet.push(((cpu[0]! - cpu[2]!) * 1e6) / p[0]!);
      relayNet.push(((cpu[1]! - cpu[2]!) * 1e6) / p[1]!);
      log(`cluster forward: window ${w + 1}: owner ${round(owner.at(-1)!, 1)} µs/packet, relay ${round(relay.at(-1)!, 1)} µs/packet (${p.join(", ")} packets)`);
    }
    clearInterval(rr);
    for (const v of viewers.splice(0)) await v.close().catch(() => {});

    // Failover: pages on the two nodes that do not pull; the owner killed; their stall ends.
    const failover: number[] = [];
    for (let c = 0; c < o.cycles; c++) {
      if (o.signal?.aborted) throw new Error("aborted");
      let puller: number | undefined;
      for (let t = 0; t < 100 && puller === undefined; t++) {
        const doc = (await (await fetch(`${nodes.get(2)!.url}/.well-known/gatehouse`)).json()) as Discovery;
        const id = doc.cluster.nodes.find((n) => n.load.cameras > 0)?.id;
        puller = id ? Number(id.slice("node-".length)) : undefined;
        if (puller === undefined) {
          // Nobody pulls (the last cycle's pages closed): a page on node 1 starts it.
          const opener = await o.chromium.newPage();
          pages.push(opener);
          await signInPage(opener, nodes.get(1)!, "viewer");
          await waitForDecodedFrames(opener, 5, 30_000);
        }
      }
      if (puller === undefined) throw new Error("no node pulls the camera");
      const others = [...nodes.keys()].filter((i) => i !== puller);
      const current: Page[] = [];
      for (const i of others) {
        const page = await o.chromium.newPage();
        pages.push(page);
        current.push(page);
        await signInPage(page, nodes.get(i)!, "viewer");
        await waitForDecodedFrames(page, 10, 30_000);
      }
      for (const p of pages.filter((p) => !current.includes(p))) await p.close().catch(() => {});
      pages.splice(0, pages.length, ...current);
      const killedAt = Date.now();
      nodes.get(puller)!.kill();
      const ms = await Promise.all(current.map((p) => stallEnd(p, killedAt)));
      failover.push(...ms);
      log(`cluster forward: cycle ${c + 1}: node-${puller} killed, pages decoding again after ${ms.join(", ")} ms`);
      await start(puller);
    }
    return {
      cluster_relay_viewers_per_node: k,
      cluster_relay_owner_cpu_us_per_packet: round(median(owner), 2),
      cluster_relay_cpu_us_per_packet: round(median(relay), 2),
      cluster_relay_cpu_ratio: round(median(relay) / median(owner), 2),
      cluster_relay_owner_cpu_us_per_packet_net: round(median(ownerNet), 2),
      cluster_relay_cpu_us_per_packet_net: round(median(relayNet), 2),
      cluster_relay_cpu_ratio_net: round(median(relayNet) / median(ownerNet), 2),
      cluster_forward_failover_ms_p50: round(median(failover)),
      cluster_forward_failover_ms_max: Math.max(...failover),
      cluster_forward_failover_samples: failover.length,
    };
  } finally {
    for (const v of viewers) await v.close().catch(() => {});
    for (const p of pages) await p.close().catch(() => {});
    http.close();
  }
}

/**
 * Ms from `since` until the page decodes again after a stall (no new frame for 300 ms), or until
 * its first new frame after the stall when the picture froze at once. 0 when it never stalled
 * within 10 s (the viewer did not notice).
 */
async function stallEnd(page: Page, since: number): Promise<number> {
  let last = (await inboundStats(page, "video"))?.framesDecoded ?? 0;
  let lastChange = Date.now();
  let stalled = false;
  const end = Date.now() + 60_000;
  for (;;) {
    const s = await inboundStats(page, "video").catch(() => null);
    const frames = s?.framesDecoded ?? last;
    const now = Date.now();
    if (frames > last || (s !== null && frames < last)) {
      if (stalled) return now - since;
      last = frames;
      lastChange = now;
    } else if (now - lastChange >= 300) stalled = true;
    if (!stalled && now - since > 10_000) return 0;
    if (now > end) throw new Error("a page did not decode again within 60 s");
    await new Promise((r) => setTimeout(r, 20));
  }
}
