/**
 * One pull per camera for the whole cluster: each camera is pulled by the node that holds its
 * lease in Redis.
 *
 *   camera:<id>:owner   "<node> <token>", lapsing `leaseMs` after the owner's last renewal
 *   camera:<id>:fence   a counter: each new lease takes the next token (a fencing token), so a
 *                       node that lost its lease during a partition can never renew or release
 *                       its successor's (every write compares the whole "<node> <token>")
 *
 * The owner renews its leases every third of `leaseMs`. A node that dies stops renewing, and
 * the first node asked for the camera after the lease lapses takes it over. While Redis is
 * unreachable an owner keeps pulling what it pulls; if, when Redis returns, another node holds
 * the lease, this one lets the camera go (`lost`).
 */
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { RedisLink } from "./redis.ts";

/** Who pulls a camera. */
export interface CameraOwner {
  node: string;
  token: number;
  /** This node. */
  self: boolean;
}

export type LeaseEvents = {
  /** This node no longer holds the camera's lease (another node took it): stop serving it here. */
  lost: [camera: string, owner: CameraOwner | undefined];
};

// Take the lease when free; renew it when already ours; else say whose it is.
const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return cur
end
local token = redis.call('INCR', KEYS[2])
local v = ARGV[1] .. ' ' .. token
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return v`;
// Renew only the very lease (node and token) this node holds; when it lapsed and nobody took it, take it back.
const RENEW = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return cur end
if not cur then
  local token = redis.call('INCR', KEYS[2])
  local v = ARGV[3] .. ' ' .. token
  redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
  return v
end
return cur`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export interface CameraLeasesOptions {
  link: RedisLink;
  nodeId: string;
  leaseMs: number;
  log: Logger;
}

export class CameraLeases {
  readonly events: SafeEmitter<LeaseEvents>;
  private readonly o: CameraLeasesOptions;
  /** Cameras whose lease this node holds: camera → "<node> <token>". */
  private readonly held = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(o: CameraLeasesOptions) {
    this.o = o;
    this.events = new SafeEmitter<LeaseEvents>((event, err) => o.log.warn("lease listener threw", { event, err }));
    this.timer = setInterval(() => void this.renewAll(), Math.max(100, Math.floor(o.leaseMs / 3)));
    this.timer.unref();
    o.link.events.on("up", () => void this.renewAll());
  }

  /** Cameras this node pulls for the cluster. */
  owned(): string[] {
    return [...this.held.keys()];
  }

  holds(camera: string): boolean {
    return this.held.has(camera);
  }

  /**
   * Who pulls the camera; takes the lease when nobody holds it. A camera this node holds is
   * answered without asking Redis (so it keeps being served while Redis is unreachable).
   * Throws OverloadError (503) when Redis must be asked and cannot be.
   */
  async owner(camera: string): Promise<CameraOwner> {
    const mine = this.held.get(camera);
    if (mine) return parse(mine, this.o.nodeId)!;
    const { link } = this.o;
    const v = await link.run("find the node that pulls this camera", (c) =>
      c.eval(ACQUIRE, { keys: [link.key(`camera:${camera}:owner`), link.key(`camera:${camera}:fence`)], arguments: [this.o.nodeId, String(this.o.leaseMs)] }),
    );
    const owner = parse(String(v), this.o.nodeId);
    if (!owner) throw new Error(`unreadable lease ${String(v)}`);
    if (owner.self && !this.closed) {
      this.held.set(camera, String(v));
      this.o.log.info("cluster: camera taken", { camera, token: owner.token });
    }
    return owner;
  }

  /**
   * The owner's node is gone (its announcement lapsed and it does not answer): take its lease
   * now rather than wait for the lease to lapse. Only that very lease (node and token) is
   * replaced; if anyone renewed or took it meanwhile, the current owner is returned.
   */
  async takeOver(camera: string, dead: CameraOwner): Promise<CameraOwner> {
    const { link } = this.o;
    await link.run("take the camera over", (c) =>
      c.eval(RELEASE, { keys: [link.key(`camera:${camera}:owner`)], arguments: [`${dead.node} ${dead.token}`] }),
    );
    const owner = await this.owner(camera);
    if (owner.self) this.o.log.warn("cluster: camera taken over from a node that is gone", { camera, from: dead.node, token: owner.token });
    return owner;
  }

  /** Let the camera go (this node stopped pulling it). */
  async release(camera: string): Promise<void> {
    const mine = this.held.get(camera);
    if (!mine) return;
    this.held.delete(camera);
    const { link } = this.o;
    try {
      await link.run("release the camera", (c) => c.eval(RELEASE, { keys: [link.key(`camera:${camera}:owner`)], arguments: [mine] }));
      this.o.log.info("cluster: camera released", { camera });
    } catch {
      // the lease lapses by itself
    }
  }

  private async renewAll(): Promise<void> {
    if (this.closed || this.held.size === 0 || !this.o.link.available) return;
    const { link } = this.o;
    const entries = [...this.held];
    let results: unknown[];
    try {
      results = await link.run("renew camera leases", (c) =>
        Promise.all(
          entries.map(([camera, mine]) =>
            c.eval(RENEW, { keys: [link.key(`camera:${camera}:owner`), link.key(`camera:${camera}:fence`)], arguments: [mine, String(this.o.leaseMs), this.o.nodeId] }),
          ),
        ),
      );
    } catch {
      return; // Redis unreachable: keep serving; renewed when it returns
    }
    entries.forEach(([camera, mine], i) => {
      if (this.held.get(camera) !== mine) return; // released meanwhile
      const now = String(results[i]);
      const owner = parse(now, this.o.nodeId);
      if (owner?.self) {
        if (now !== mine) this.o.log.info("cluster: camera lease lapsed and taken back", { camera, token: owner.token });
        this.held.set(camera, now);
        return;
      }
      this.held.delete(camera);
      this.o.log.warn("cluster: camera lease lost to another node; it is served from there now", { camera, owner: owner?.node });
      this.events.emit("lost", camera, owner);
    });
  }

  /**
   * Stop renewing and give every lease back at once (a clean shutdown hands cameras over without
   * waiting for a lapse). Every caller gets the same promise.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      clearInterval(this.timer);
      await Promise.all(this.owned().map((c) => this.release(c)));
      this.events.removeAllListeners();
    })();
    return this.closing;
  }
}

function parse(v: string, me: string): CameraOwner | undefined {
  const i = v.lastIndexOf(" ");
  if (i <= 0) return undefined;
  const node = v.slice(0, i);
  const token = Number(v.slice(i + 1));
  if (!Number.isSafeInteger(token)) return undefined;
  return { node, token, self: node === me };
}
