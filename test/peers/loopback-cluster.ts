/**
 * Three gateways of one cluster in this process, on 127.0.0.2–4, sharing a real Redis: the set-up
 * the in-process cluster tests have in common. Each test names what differs (cameras, sign-in,
 * the cluster's own keys); timers are short so that leases and node listings move within seconds.
 */
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";

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

/** Polls `cond` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
