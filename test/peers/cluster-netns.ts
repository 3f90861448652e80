/**
 * Network namespaces for a cluster test, and a whole cluster set up in them.
 *
 * Layout (`createClusterNetns`): one namespace per gateway node and one for the clients (Chromium,
 * and baresip as a door station), joined by a bridge in a further namespace: one L2 segment,
 * 10.216.<n>.0/24, node i at .1i, the clients at .100. Nothing is added to the host's own
 * namespace. The site's services stay in the host, where the test can stop them: Redis and the
 * recorder (TCP) are reached from the nodes through Unix sockets, which cross namespaces, and TCP
 * forwarders inside each namespace (test/peers/ns-forward.ts). Closing deletes the namespaces (and
 * the veth pairs and the bridge with them). Needs root (the tests run as root).
 *
 * `startNetnsCluster` puts the whole proof set-up together: a Redis (Debian's redis-server) and the
 * demo recorder (it counts its RTSP sessions) in the host, three gateway processes (test/peers/
 * cluster-node.ts), one per node namespace, and Chromium in the client namespace. Inside a node's
 * namespace its front door and development sign-in provider listen on loopback (development
 * sign-in needs loopback); a forwarder on the node's address stands for them, for the other nodes
 * and the clients. Media (ICE, RTP forwarding between nodes, SIP and its RTP) goes straight over
 * the bridge to the nodes' addresses. The browser reaches node i at http://127.0.0.<i+1>:8080 (a
 * forwarder in the client namespace), the origin the node knows itself by.
 *
 *   await using cluster = await startNetnsCluster({ leaseMs: 2000 });
 *   const page = await cluster.page();
 *   await signInPage(page, cluster.node(2), "viewer");
 *   cluster.node(1).kill();                  // SIGKILL
 *   await cluster.redis.stop();              // an outage of the coordination store
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { BrowserContext, Page } from "puppeteer-core";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { PAGE_HELPERS } from "./browser-page.ts";
import { launchChromium, type Chromium } from "./chromium.ts";
import { NETNS_HTTP_PORT, NETNS_IDP_PORT, startClusterNode, type ClusterNode } from "./cluster-node.ts";
import { addNamespace } from "./netns.ts";
import { startRedis, type RedisServer } from "./redis.ts";
import { splice } from "./tcp-splice.ts";

const run = promisify(execFile);
const FORWARDER = new URL("./ns-forward.ts", import.meta.url).pathname;

export interface ClusterNetns extends AsyncDisposable {
  /** Node i (1-based): its namespace and address on the shared segment. */
  node(i: number): { ns: string; address: string };
  /** The browser's namespace and address. */
  readonly client: { ns: string; address: string };
  /** A Unix socket (in a directory of this object) that reaches the host's 127.0.0.1:`port`. */
  exposeHost(port: number): Promise<string>;
  /** TCP forwarders inside `ns` (rules as test/peers/ns-forward.ts takes them); they live until close. */
  forward(ns: string, rules: string[]): Promise<void>;
  /**
   * A TCP load balancer inside `ns` on `listen` (`host:port`) in front of `targets` (`host:port`, each
   * a gateway node checked at `/readyz`): new connections go to the first healthy target in the order
   * of preference, at first as given; `order([2, 3, 1])` (1-based) changes it.
   */
  balance(ns: string, listen: string, targets: string[]): Promise<{ order(indexes: number[]): Promise<void> }>;
  /** An executable that runs `binary` with its arguments inside `ns` (for tools that take a path). */
  wrapper(ns: string, binary: string): Promise<string>;
  close(): Promise<void>;
}

export async function createClusterNetns(nodes: number): Promise<ClusterNetns> {
  const tag = randomBytes(3).toString("hex");
  const net24 = `10.216.${randomInt(1, 254)}`;
  const lan = `gh-${tag}-lan`;
  const client = { ns: `gh-${tag}-c`, address: `${net24}.100` };
  const nodeList = Array.from({ length: nodes }, (_, k) => ({ ns: `gh-${tag}-n${k + 1}`, address: `${net24}.${11 + k}` }));
  const dir = await mkdtemp(path.join(tmpdir(), "gatehouse-cluster-netns-"));
  const ip = (...args: string[]) => run("ip", args);
  const children: ChildProcess[] = [];
  const servers: net.Server[] = [];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const c of children) {
      c.stdin?.end();
      if (c.exitCode === null) c.kill("SIGKILL");
    }
    for (const s of servers) s.close();
    for (const ns of [lan, client.ns, ...nodeList.map((n) => n.ns)]) await ip("netns", "del", ns).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await addNamespace(lan);
    await ip("-n", lan, "link", "add", "br0", "type", "bridge");
    await ip("-n", lan, "link", "set", "br0", "up");
    for (const [k, m] of [...nodeList, client].entries()) {
      await addNamespace(m.ns);
      const inner = `gh${tag}i${k}`;
      const outer = `gh${tag}o${k}`;
      await ip("link", "add", inner, "netns", m.ns, "type", "veth", "peer", "name", outer, "netns", lan);
      await ip("-n", lan, "link", "set", outer, "master", "br0");
      await ip("-n", lan, "link", "set", outer, "up");
      await ip("-n", m.ns, "addr", "add", `${m.address}/24`, "dev", inner);
      await ip("-n", m.ns, "link", "set", inner, "up");
    }
  } catch (err) {
    await close();
    throw err;
  }
  let socketNo = 0;
  const spawnForwarder = async (ns: string, rules: string[]): Promise<ChildProcess> => {
    const c = spawn("ip", ["netns", "exec", ns, process.execPath, FORWARDER, ...rules], { stdio: ["pipe", "pipe", "pipe"] });
    children.push(c);
    let err = "";
    c.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`forwarder in ${ns} did not start: ${err}`)), 20_000);
      c.stdout!.once("data", () => {
        clearTimeout(t);
        resolve();
      });
      c.once("exit", (code) => {
        clearTimeout(t);
        reject(new Error(`forwarder in ${ns} exited ${code}: ${err}`));
      });
    });
    return c;
  };
  return {
    node: (i) => nodeList[i - 1]!,
    client,
    async exposeHost(port) {
      const file = path.join(dir, `host-${port}-${socketNo++}.sock`);
      const server = net.createServer((c) => splice(c, net.connect(port, "127.0.0.1")));
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(file, () => resolve());
      });
      servers.push(server);
      return file;
    },
    async forward(ns, rules) {
      await spawnForwarder(ns, rules);
    },
    async balance(ns, listen, targets) {
      const c = await spawnForwarder(ns, [`${listen}=balance:${targets.join(",")}`]);
      return {
        order: async (indexes) => {
          const ok = new Promise<void>((resolve) => c.stdout!.once("data", () => resolve()));
          c.stdin!.write(`order ${indexes.join(",")}\n`);
          await ok;
        },
      };
    },
    async wrapper(ns, binary) {
      const file = path.join(dir, `${path.basename(binary)}-${ns}`);
      await writeFile(file, `#!/bin/sh\nexec ip netns exec ${ns} ${binary} "$@"\n`);
      await chmod(file, 0o755);
      return file;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Installed before a cluster tab's own scripts: the document is always visible, as the tab in front of a window. */
const ALWAYS_IN_FRONT = `(() => {
  Object.defineProperty(document, "visibilityState", { get: () => "visible", configurable: true });
  Object.defineProperty(document, "hidden", { get: () => false, configurable: true });
  document.addEventListener("visibilitychange", (e) => e.stopImmediatePropagation(), true);
})()`;

export interface NetnsClusterOptions {
  /** Gateway nodes. Default 3. */
  nodes?: number;
  /** `cluster.leaseMs` of every node. Default 2000 (takeover within seconds). */
  leaseMs?: number;
  /** `cluster.forward.mode`; default the product's. */
  forwardMode?: "answer" | "forward";
  /** More configuration for node i (1-based) at `address`, merged into its own (e.g. `sip`). */
  config?: (index: number, address: string) => Record<string, unknown>;
  /** Start-up limit per node, ms. Default 90000. */
  timeoutMs?: number;
}

export interface NetnsCluster extends AsyncDisposable {
  readonly net: ClusterNetns;
  readonly redis: RedisServer;
  readonly recorder: DemoRecorder;
  readonly chromium: Chromium;
  readonly nodes: readonly ClusterNode[];
  /** Node i, 1-based. */
  node(i: number): ClusterNode;
  /** Starts node i again (after a kill), in its namespace, with its configuration; `node(i)` is the new process. */
  restart(i: number): Promise<ClusterNode>;
  /**
   * A tab of the shared browser context, of a context of its own (`isolated`: its own cookies), or
   * of `beside`'s context; closed with the cluster. Each tab stands for a browser of its own, in
   * front of its user: it never sees itself hidden (the web client pauses tabs hidden for a minute).
   */
  page(opts?: { isolated?: boolean; beside?: Page }): Promise<Page>;
  /** Resolves once the recorder counts `n` RTSP sessions. */
  pulls(n: number, timeoutMs: number): Promise<void>;
  /** Everything started here, in reverse order. Idempotent. */
  close(): Promise<void>;
}

export async function startNetnsCluster(o: NetnsClusterOptions = {}): Promise<NetnsCluster> {
  const count = o.nodes ?? 3;
  const leaseMs = o.leaseMs ?? 2000;
  const dir = await mkdtemp(path.join(tmpdir(), "gatehouse-cluster-"));
  const cleanups: Array<() => Promise<unknown> | unknown> = [() => rm(dir, { recursive: true, force: true })];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
  };
  try {
    const redis = await startRedis();
    cleanups.push(() => redis.close());
    const recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
    cleanups.push(() => recorder.close());
    const rtspPort = Number(new URL(recorder.url).port);
    const net = await createClusterNetns(count);
    cleanups.push(() => net.close());
    const redisSock = await net.exposeHost(redis.port);
    const rtspSock = await net.exposeHost(rtspPort);
    const indexes = Array.from({ length: count }, (_, k) => k + 1);
    // The browser reaches each node at the loopback origin the node knows itself by.
    await net.forward(
      net.client.ns,
      indexes.flatMap((i) => [`127.0.0.${i + 1}:${NETNS_HTTP_PORT}=${net.node(i).address}:${NETNS_HTTP_PORT}`, `127.0.0.1:${NETNS_IDP_PORT + i}=${net.node(i).address}:${NETNS_IDP_PORT + i}`]),
    );
    const chromiumStarting = net.wrapper(net.client.ns, "/usr/bin/chromium").then((bin) => launchChromium({ executablePath: bin, pipe: true }));
    // Closed whatever happens below (a launch that loses the race with a failing node, too).
    cleanups.push(() => chromiumStarting.then((c) => c.close()));
    const startNode = (index: number) => {
      const { ns, address } = net.node(index);
      return startClusterNode({
        index,
        dir,
        redisUrl: redis.url,
        cameraUrl: recorder.url,
        leaseMs,
        forwardMode: o.forwardMode,
        netns: { ns, address },
        config: o.config?.(index, address),
        timeoutMs: o.timeoutMs ?? 90_000,
      });
    };
    const nodes: ClusterNode[] = [];
    await Promise.all(
      indexes.map(async (index) => {
        const { ns, address } = net.node(index);
        // Inside the node's namespace: Redis and the recorder at the host's loopback ports, and its
        // front door and sign-in provider (on loopback) reachable on its address.
        await net.forward(ns, [
          `127.0.0.1:${redis.port}=unix:${redisSock}`,
          `127.0.0.1:${rtspPort}=unix:${rtspSock}`,
          `${address}:${NETNS_HTTP_PORT}=127.0.0.${index + 1}:${NETNS_HTTP_PORT}`,
          `${address}:${NETNS_IDP_PORT + index}=127.0.0.1:${NETNS_IDP_PORT + index}`,
        ]);
        nodes[index - 1] = await startNode(index);
        // The node's current process (restart replaces it).
        cleanups.push(() => nodes[index - 1]!.kill());
      }),
    );
    const chromium = await chromiumStarting;
    const contexts: BrowserContext[] = [];
    const pages: Page[] = [];
    // Before the nodes go (pushed last, runs first): pages and their contexts.
    cleanups.push(async () => {
      for (const p of pages) await p.close().catch(() => {});
      for (const c of contexts) await c.close().catch(() => {});
    });
    return {
      net,
      redis,
      recorder,
      chromium,
      nodes,
      node: (i) => nodes[i - 1]!,
      async restart(i) {
        nodes[i - 1]!.kill();
        nodes[i - 1] = await startNode(i);
        return nodes[i - 1]!;
      },
      async page(opts = {}) {
        let context = opts.beside?.browserContext();
        if (!context && opts.isolated) {
          context = await chromium.browser.createBrowserContext();
          contexts.push(context);
        }
        const page = context ? await context.newPage() : await chromium.newPage();
        pages.push(page);
        if (context) await page.evaluateOnNewDocument(PAGE_HELPERS);
        await page.evaluateOnNewDocument(ALWAYS_IN_FRONT);
        return page;
      },
      async pulls(n, timeoutMs) {
        const end = Date.now() + timeoutMs;
        while (recorder.sessions() !== n) {
          if (Date.now() > end) throw new Error(`the recorder has ${recorder.sessions()} sessions, expected ${n}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * The address a page's media comes from: the remote side of its newest connected peer
 * connection's selected pair, once there is one (waited for up to `timeoutMs`: a loaded page may
 * decode frames a moment before its stats show the pair); undefined when none comes.
 */
export async function mediaFrom(page: Page, timeoutMs = 10_000): Promise<string | undefined> {
  const found = await page
    .waitForFunction(
      async () => {
        const pcs = (window as unknown as { __gh: { pcs(): RTCPeerConnection[] } }).__gh.pcs();
        for (const pc of [...pcs].reverse()) {
          if (pc.connectionState !== "connected") continue;
          const stats = [...(await pc.getStats()).values()] as Array<Record<string, unknown>>;
          const pair = stats.find((s) => s.type === "candidate-pair" && s.nominated === true && s.state === "succeeded");
          const remote = pair && stats.find((s) => s.id === pair.remoteCandidateId);
          if (remote) return String(remote.address ?? remote.ip);
        }
        return false;
      },
      { polling: 100, timeout: timeoutMs },
    )
    .catch(() => undefined);
  return found ? String(await found.jsonValue()) : undefined;
}

/**
 * Resolves once the page's video has decoded no new frame for `quietMs` (its source is gone), with
 * the frame count it stopped at: what a failover test waits for before counting frames again, so
 * that frames still queued in the page when the source died do not count as recovery.
 */
export async function waitForStall(page: Page, quietMs: number, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    async (quietMs: number) => {
      const w = window as unknown as { __gh: { inbound(sel: null, kind: string): Promise<{ key: string; framesDecoded: number } | null> }; __stall?: { v: string; at: number } };
      const s = await w.__gh.inbound(null, "video");
      const v = s ? `${s.key}:${s.framesDecoded}` : "none";
      const now = performance.now();
      if (!w.__stall || w.__stall.v !== v) w.__stall = { v, at: now };
      return now - w.__stall.at >= quietMs;
    },
    { polling: 50, timeout: timeoutMs },
    quietMs,
  );
}

/** Marks the page's document; `notReloaded` is true while the same document is shown. */
export async function markPage(page: Page): Promise<void> {
  await page.evaluate(() => ((window as unknown as { __notReloaded: boolean }).__notReloaded = true));
}

export async function notReloaded(page: Page): Promise<boolean> {
  return page.evaluate(() => (window as unknown as { __notReloaded?: boolean }).__notReloaded === true);
}

export interface PageResponse {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/**
 * A request made by the page, from its origin with its cookies (the nodes are reachable from the
 * client namespace only); with `csrf`, the session's CSRF token (from `/auth/me`) is sent too.
 */
export async function pageFetch(page: Page, url: string, init: { method?: string; headers?: Record<string, string>; body?: string; csrf?: boolean } = {}): Promise<PageResponse> {
  return page.evaluate(async (url: string, init: { method?: string; headers?: Record<string, string>; body?: string; csrf?: boolean }) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.csrf) {
      const me = (await (await fetch("/auth/me", { headers: { accept: "application/json" } })).json()) as { csrfToken: string };
      headers["x-csrf-token"] = me.csrfToken;
    }
    const r = await fetch(url, { method: init.method ?? "GET", headers, body: init.body, cache: "no-store" });
    return { status: r.status, body: await r.text(), headers: Object.fromEntries(r.headers.entries()) };
  }, url, init);
}

/**
 * Gives `to`'s origin the session cookie the page's context holds for `from`'s: the same browser
 * session on another node, as one public address behind a load balancer would have it.
 */
export async function shareSession(page: Page, from: ClusterNode, to: ClusterNode): Promise<void> {
  const cookies = await page.cookies(from.url);
  if (cookies.length === 0) throw new Error(`no cookie for ${from.url}`);
  await page.setCookie(...cookies.map((c) => ({ name: c.name, value: c.value, url: to.url, path: c.path, httpOnly: c.httpOnly, sameSite: c.sameSite })));
}
