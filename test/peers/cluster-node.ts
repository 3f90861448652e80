/**
 * One gateway node of a cluster as a process of its own (`node gateway/main.ts --config …`), so a
 * test can SIGKILL it: in a network namespace of its own (test/peers/cluster-netns.ts, the cluster
 * proofs) or on a loopback address of its own (127.0.0.<n+1>, the bench), the development provider
 * (its demo accounts' passwords read from what it prints), Redis at `redisUrl`.
 *
 *   const n = await startClusterNode({ index: 2, dir, redisUrl, cameraUrl, leaseMs: 2000 });
 *   n.url; n.passwords.get("viewer"); n.child.kill("SIGKILL");
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "puppeteer-core";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** Ports of a node inside its own network namespace (`netns`): its front door, and its development provider's base. */
export const NETNS_HTTP_PORT = 8080;
export const NETNS_IDP_PORT = 9100;

export interface ClusterNode {
  id: string;
  child: ChildProcess;
  url: string;
  passwords: Map<string, string>;
  /** SIGKILL (no goodbye: its leases and announcement lapse). */
  kill(): void;
  /** SIGTERM and wait for the exit (a clean leave). */
  stop(): Promise<void>;
  /** The last 20 kB the node wrote to stderr (its log at `warn` and up). */
  stderr(): string;
}

export interface ClusterNodeOptions {
  /** Node n listens on 127.0.0.<n+1> and is called node-<n>. */
  index: number;
  /** Directory for its configuration and data. */
  dir: string;
  redisUrl: string;
  /** The RTSP URL of the cluster's camera (id `demo`, which the development `viewer` may watch). */
  cameraUrl: string;
  leaseMs: number;
  /** `cluster.forward.mode`: viewers elsewhere answered through the owner, or served from relays. Default the product's. */
  forwardMode?: "answer" | "forward";
  /**
   * Run the node in this network namespace (test/peers/cluster-netns.ts) with `address` on the
   * shared segment: the front door listens on 127.0.0.<n+1>:8080 inside it (development sign-in
   * needs loopback; a forwarder on `address`:8080 stands for it between nodes), the development
   * provider on 127.0.0.1:<9100+n>, media and RTP forwarding on `address`. Fixed ports are safe
   * there: the namespace is the test's own.
   */
  netns?: { ns: string; address: string };
  /** Start-up limit, ms. Default 60000. */
  timeoutMs?: number;
  /** More configuration, merged into the node's (objects key by key), e.g. `sip` or `auth.rights`. */
  config?: Record<string, unknown>;
}

/** `b` merged into `a`, objects key by key (arrays and values replaced). */
function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
    out[k] = isObj(prev) && isObj(v) ? merge(prev, v) : v;
  }
  return out;
}

export async function startClusterNode(o: ClusterNodeOptions): Promise<ClusterNode> {
  const id = `node-${o.index}`;
  const file = path.join(o.dir, `${id}.yaml`);
  const config = merge(
    {
      server: { host: `127.0.0.${o.index + 1}`, port: o.netns ? NETNS_HTTP_PORT : 0 },
      auth: o.netns ? { mode: "dev", dev: { port: NETNS_IDP_PORT + o.index } } : { mode: "dev" },
      demo: { enabled: false },
      audit: { enabled: false },
      dataDir: path.join(o.dir, id),
      cameras: [{ id: "demo", name: "Cluster camera", url: o.cameraUrl, transport: "tcp" }],
      media: o.netns ? { workers: 1, bindAddress: o.netns.address } : { workers: 1 },
      rtsp: { idleStopSeconds: 2 },
      log: { level: "warn", format: "json" },
      cluster: {
        redis: { url: o.redisUrl, reconnectMaxMs: 300 },
        nodeId: id,
        heartbeatMs: 300,
        nodeTtlMs: 1500,
        leaseMs: o.leaseMs,
        forward: { ...(o.forwardMode ? { mode: o.forwardMode } : {}), ...(o.netns ? { address: o.netns.address } : {}) },
        ...(o.netns ? { publicUrl: `http://${o.netns.address}:${NETNS_HTTP_PORT}` } : {}),
      },
    },
    o.config ?? {},
  );
  // JSON is YAML: the configuration file as the gateway reads it.
  fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  const argv = [process.execPath, path.join(REPO, "gateway/main.ts"), "--config", file];
  const child = o.netns
    ? spawn("ip", ["netns", "exec", o.netns.ns, ...argv], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] })
    : spawn(argv[0]!, argv.slice(1), { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-20_000)));
  const out = await new Promise<string>((resolve, reject) => {
    let text = "";
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${id} did not start:\n${text}\n${stderr.slice(-3000)}`));
    }, o.timeoutMs ?? 60_000);
    child.stdout!.on("data", (c: Buffer) => {
      text += c.toString();
      if (/Configure auth\.mode/.test(text)) {
        clearTimeout(t);
        resolve(text);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`${id} exited ${code}:\n${stderr.slice(-3000)}`));
    });
  });
  child.stdout!.resume();
  const url = /Gatehouse is running: open (\S+)\//.exec(out)![1]!;
  const passwords = new Map([...out.matchAll(/^\s+(\w+)\s+password (\S+)/gm)].map((m) => [m[1]!, m[2]!]));
  const alive = () => child.exitCode === null && child.signalCode === null;
  let killed = false;
  // A node that dies without being told to is a finding: say so with its last words.
  child.once("exit", (code, signal) => {
    if (!killed) process.stderr.write(`${id} exited by itself (code ${code}, signal ${signal}):\n${stderr.slice(-4000)}\n`);
  });
  return {
    id,
    child,
    url,
    passwords,
    stderr: () => stderr,
    kill: () => {
      killed = true;
      if (alive()) child.kill("SIGKILL");
    },
    stop: async () => {
      killed = true;
      if (!alive()) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Open the node's web client in `page` and sign in there as a development account, unless the
 * browser's session (a cookie of the same host, from any node of the cluster) is already good;
 * the page ends at `path` (default the web client's start page).
 */
export async function signInPage(page: Page, node: Pick<ClusterNode, "url" | "passwords">, user: string, path = "/"): Promise<void> {
  // In front: a background tab is not rendered, and clicks there wait for a layout that never comes.
  await page.bringToFront();
  await page.goto(`${node.url}${path}`, { waitUntil: "load" });
  // Generous: sign-in crosses the provider and the token exchange, on a shared, loaded machine.
  await page.waitForFunction(() => document.querySelector("#username") !== null || document.querySelector("[data-camera]") !== null, { timeout: 30_000 });
  if ((await page.$("#username")) === null) return;
  await page.type("#username", user);
  await page.type("#password", node.passwords.get(user)!);
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: 30_000 }), page.click("#submit")]);
  await page.waitForFunction((origin: string) => location.origin === origin, { timeout: 30_000 }, new URL(node.url).origin);
  if (path !== "/" && `${new URL(page.url()).pathname}${new URL(page.url()).search}` !== path) await page.goto(`${node.url}${path}`, { waitUntil: "load" });
}
