/**
 * Three gateways of one cluster in this process, on 127.0.0.2–4, sharing a real Redis: the set-up
 * the in-process cluster tests have in common. Each test names what differs (cameras, sign-in,
 * the cluster's own keys); timers are short so that leases and node listings move within seconds.
 */
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { HttpBrowser } from "./oidc.ts";
import { startRedis, type RedisServer } from "./redis.ts";
import { WeriftViewer } from "./werift-viewer.ts";

export const CLUSTER_HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"] as const;

export interface LoopbackClusterOptions {
  readonly redisUrl: string;
  readonly cameras: readonly Record<string, unknown>[];
  /** `auth` section; default development sign-in. */
  readonly auth?: Record<string, unknown>;
  /** Extra `server` keys (e.g. a shared publicUrl). */
  readonly server?: Record<string, unknown>;
  /** `rtsp.idleStopSeconds`; default 2. */
  readonly idleStopSeconds?: number;
  /** Extra `cluster` keys (e.g. `forward`). */
  readonly cluster?: Record<string, unknown>;
}

/** Starts the three nodes one after the other (node-1 first); the caller closes them. */
export async function startLoopbackCluster(o: LoopbackClusterOptions): Promise<Gateway[]> {
  const nodes: Gateway[] = [];
  for (const [i, host] of CLUSTER_HOSTS.entries()) {
    const config = parseConfig(
      {
        server: { host, port: 0, ...o.server },
        auth: o.auth ?? { mode: "dev" },
        demo: { enabled: false },
        audit: { enabled: false },
        cameras: o.cameras,
        log: { level: "silent" },
        media: { workers: 1 },
        rtsp: { idleStopSeconds: o.idleStopSeconds ?? 2 },
        cluster: { redis: { url: o.redisUrl, reconnectMaxMs: 300 }, nodeId: `node-${i + 1}`, heartbeatMs: 300, nodeTtlMs: 1500, leaseMs: 1500, ...o.cluster },
      },
      {},
    );
    nodes.push(await startGateway({ config, log: silentLogger }));
  }
  return nodes;
}

export interface LoopbackRigOptions extends Omit<LoopbackClusterOptions, "redisUrl" | "cameras"> {
  /** The cluster's cameras, given the demo recorder's URL; default one camera `demo` on it. */
  readonly cameras?: (recorderUrl: string) => readonly Record<string, unknown>[];
}

/**
 * What an in-process cluster test stands on: a real Redis, the demo recorder (which counts its
 * RTSP sessions), the three nodes, and the clients a test opens. The arrays exist from the start
 * (a test file may take them at its top); `start` fills them, `close` ends everything, last opened
 * first, and is harmless twice.
 */
export class LoopbackRig {
  readonly nodes: Gateway[] = [];
  readonly browsers: HttpBrowser[] = [];
  readonly viewers: WeriftViewer[] = [];
  /** Other things a test opened (event streams, grids…), closed before the viewers. */
  readonly closers: (() => unknown)[] = [];
  #redis: RedisServer | undefined;
  #recorder: DemoRecorder | undefined;

  get redis(): RedisServer {
    if (!this.#redis) throw new Error("the rig is not started");
    return this.#redis;
  }

  get recorder(): DemoRecorder {
    if (!this.#recorder) throw new Error("the rig is not started");
    return this.#recorder;
  }

  async start(o: LoopbackRigOptions = {}): Promise<this> {
    this.#redis = await startRedis();
    this.#recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
    const url = this.#recorder.url;
    const cameras = o.cameras ? o.cameras(url) : [{ id: "demo", name: "Cluster camera", url, transport: "tcp" }];
    this.nodes.push(...(await startLoopbackCluster({ ...o, redisUrl: this.#redis.url, cameras })));
    return this;
  }

  /** A WHEP viewer of `camera` (with any query) on the node at `at.url`, sending `headers`, connected; closed with the rig. */
  async watch(at: { readonly url: string }, headers: Record<string, string>, camera = "demo"): Promise<WeriftViewer> {
    const v = await WeriftViewer.connect({ whepUrl: `${at.url}/whep/${camera}`, headers, audio: false, timeoutMs: 20_000 });
    this.viewers.push(v);
    await v.connected;
    return v;
  }

  async close(): Promise<void> {
    for (const c of this.closers.splice(0)) await Promise.resolve(c()).catch(() => {});
    for (const v of this.viewers.splice(0)) await v.close().catch(() => {});
    for (const b of this.browsers.splice(0)) b.close();
    for (const n of this.nodes.splice(0)) await n.close("test done");
    await this.#recorder?.close();
    await this.#redis?.close();
    this.#recorder = this.#redis = undefined;
  }
}

/** The session cookie `b` got when it signed in at `signedInAt` (a node or its URL), as a Cookie header value. */
export function cookieOf(b: HttpBrowser, signedInAt: Gateway | string): string {
  const host = new URL(typeof signedInAt === "string" ? signedInAt : signedInAt.url).hostname;
  return [...(b.jar.get(host) ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
}

/** What a signed-in page of `node` sends: the session cookie (made on whichever node), the CSRF token, the node's origin. */
export async function pageHeaders(b: HttpBrowser, signedInAt: Gateway | string, node: Gateway): Promise<Record<string, string>> {
  const cookie = cookieOf(b, signedInAt);
  const me = await fetch(`${node.url}/auth/me`, { headers: { cookie, accept: "application/json" } });
  if (me.status !== 200) throw new Error(`${node.url}/auth/me answered ${me.status}`);
  const csrf = ((await me.json()) as { csrfToken: string }).csrfToken;
  return { cookie, "x-csrf-token": csrf, origin: node.url };
}

/** Polls `cond` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
