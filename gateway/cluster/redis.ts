/**
 * The cluster's one connection to Redis (and a second one for pub/sub, which Redis dedicates
 * to subscriptions).
 *
 * Client: `redis` (node-redis), Redis's own maintained client: typed commands, RESP3, Lua
 * scripts, pub/sub that re-subscribes by itself after a reconnect, and — what this room needs
 * most — `disableOfflineQueue`, so that while Redis is unreachable a command fails at once
 * instead of waiting in a queue: a node can then say plainly that it cannot coordinate (503)
 * and go on serving what it serves, and it knows when Redis is back (`up`).
 *
 * Every key starts with `gatehouse:<cluster.name>:`.
 */
import { createClient } from "redis";
import { OverloadError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { ClusterConfig } from "../../config/sections/cluster.ts";

type Client = ReturnType<typeof createClient>;

export type RedisLinkEvents = {
  /** Connected again after an outage (the first connection at start is not an event). */
  up: [];
  /** The connection was lost: coordination is unavailable until `up`. */
  down: [];
};

/** Seconds a client is asked to wait before retrying a request refused for want of Redis. */
export const COORDINATION_RETRY_SECONDS = 2;

/** The error for anything that needs the cluster while Redis cannot be reached: 503 + Retry-After, in plain words. */
export function coordinationUnavailable(what: string, cause?: unknown): OverloadError {
  return new OverloadError(`${what}: the cluster's coordination store (Redis) is unreachable; try again shortly`, {
    cause,
    retryAfterSeconds: COORDINATION_RETRY_SECONDS,
  });
}

/** Redis came back moments ago and the nodes are still sharing again what it lost (`cluster.redis.resyncGraceMs`). */
export function coordinationCatchingUp(): OverloadError {
  return new OverloadError("the cluster is catching up after its coordination store (Redis) came back; try again shortly", {
    retryAfterSeconds: COORDINATION_RETRY_SECONDS,
  });
}

export class RedisLink {
  readonly events: SafeEmitter<RedisLinkEvents>;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly client: Client;
  private readonly sub: Client;
  private readonly handlers = new Map<string, (message: string) => void>();
  private connected = false;
  private closing: Promise<void> | undefined;

  private constructor(cfg: ClusterConfig, log: Logger) {
    this.prefix = `gatehouse:${cfg.name}:`;
    this.timeoutMs = cfg.redis.connectTimeoutMs;
    this.log = log;
    this.events = new SafeEmitter<RedisLinkEvents>((event, err) => log.warn("cluster link listener threw", { event, err }));
    const options = {
      url: cfg.redis.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout: cfg.redis.connectTimeoutMs,
        // Keep trying for as long as the node runs: 100 ms, doubling up to reconnectMaxMs.
        reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 10), cfg.redis.reconnectMaxMs),
      },
    };
    this.client = createClient(options);
    this.sub = createClient(options);
    let lastError = 0;
    const onError = (err: unknown) => {
      // node-redis reports every failed reconnect attempt; one line every 10 s is enough.
      const now = Date.now();
      if (now - lastError > 10_000) log.warn("cluster: Redis connection error", { err });
      lastError = now;
    };
    this.client.on("error", onError);
    this.sub.on("error", onError);
    this.client.on("ready", () => {
      if (this.connected) return;
      this.connected = true;
      if (this.started) {
        log.info("cluster: Redis reachable again");
        this.events.emit("up");
      }
    });
    const lost = () => {
      if (!this.connected) return;
      this.connected = false;
      if (!this.closing) {
        log.warn("cluster: Redis unreachable; serving what this node serves, refusing what needs the cluster");
        this.events.emit("down");
      }
    };
    this.client.on("reconnecting", lost);
    this.client.on("end", lost);
  }

  private started = false;

  /** Connects both connections; throws when Redis cannot be reached now. */
  static async connect(cfg: ClusterConfig, log: Logger): Promise<RedisLink> {
    const link = new RedisLink(cfg, log);
    try {
      await withTimeout(Promise.all([link.client.connect(), link.sub.connect()]), cfg.redis.connectTimeoutMs * 2, "connect");
    } catch (err) {
      await link.close();
      throw err;
    }
    link.started = true;
    return link;
  }

  /** Whether commands can be sent now. */
  get available(): boolean {
    return this.connected && this.client.isReady;
  }

  /** The full key of a cluster-relative name. */
  key(name: string): string {
    return this.prefix + name;
  }

  /**
   * Run commands on the connection; fails fast (no queue) while Redis is unreachable, and
   * after `connectTimeoutMs` if Redis stops answering. `what` names the request for the error.
   */
  async run<T>(what: string, fn: (c: Client) => Promise<T>): Promise<T> {
    if (this.closing) throw coordinationUnavailable(what);
    try {
      return await withTimeout(fn(this.client), this.timeoutMs, what);
    } catch (err) {
      throw coordinationUnavailable(what, err);
    }
  }

  /** Publish on a cluster channel. */
  publish(channel: string, message: string): Promise<number> {
    return this.run("publish", (c) => c.publish(this.key(channel), message));
  }

  /** Receive a cluster channel's messages (one handler per channel; survives reconnects). */
  async subscribe(channel: string, handler: (message: string) => void): Promise<void> {
    this.handlers.set(channel, handler);
    await this.sub.subscribe(this.key(channel), (message) => {
      try {
        handler(message);
      } catch (err) {
        this.log.warn("cluster message handler threw", { channel, err });
      }
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const c of [this.sub, this.client]) {
        try {
          if (c.isOpen) await c.close();
        } catch {
          c.destroy();
        }
      }
      this.events.removeAllListeners();
    })();
    return this.closing;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
