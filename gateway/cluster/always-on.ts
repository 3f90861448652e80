/**
 * `alwaysOn` cameras in a cluster: pulled by the node that holds the camera's lease, and by no
 * other. Every node tries to take the lease of each `alwaysOn` camera nobody holds (at start and
 * every third of `leaseMs`); the one that gets it pins the camera (the registry keeps it pulled
 * whether watched or not) and renews the lease like any other. When the holder dies its lease
 * lapses and the next node to try takes the camera over; a node that loses the lease (it was cut
 * off from Redis and another took it) unpins the camera. Without Redis nothing changes hands:
 * the holder keeps pulling.
 */
import type { Logger } from "../../config/log.ts";
import type { CameraLeases } from "./leases.ts";
import type { RedisLink } from "./redis.ts";

export interface AlwaysOnOptions {
  leases: CameraLeases;
  link: RedisLink;
  /** Ids of the cameras configured `alwaysOn`. */
  cameras: readonly string[];
  /** Keep the camera pulled (`true`) or pull it on demand only again (the registry's `keepPulling`). */
  pin: (camera: string, on: boolean) => void;
  /** How often a free lease is looked for, ms (a third of `leaseMs`). */
  intervalMs: number;
  log: Logger;
}

/** Starts holding the leases of `alwaysOn` cameras; returns the function that stops (and unpins). */
export function keepAlwaysOnByLease(o: AlwaysOnOptions): () => void {
  if (o.cameras.length === 0) return () => {};
  const pinned = new Set<string>();
  let closed = false;
  let running = false;
  const claim = async () => {
    if (closed || running || !o.link.available) return;
    running = true;
    try {
      for (const camera of o.cameras) {
        if (closed) return;
        if (pinned.has(camera)) continue;
        try {
          const owner = await o.leases.owner(camera);
          if (!owner.self || closed || pinned.has(camera)) continue;
          pinned.add(camera);
          o.pin(camera, true);
          o.log.info("cluster: pulling an alwaysOn camera for the cluster", { camera, token: owner.token });
        } catch {
          return; // Redis unreachable: try again at the next round
        }
      }
    } finally {
      running = false;
    }
  };
  const offLost = o.leases.events.on("lost", (camera) => {
    if (!pinned.delete(camera)) return;
    o.pin(camera, false);
  });
  const offUp = o.link.events.on("up", () => void claim());
  const timer = setInterval(() => void claim(), Math.max(100, o.intervalMs));
  timer.unref();
  void claim();
  return () => {
    if (closed) return;
    closed = true;
    clearInterval(timer);
    offLost();
    offUp();
    for (const camera of pinned) o.pin(camera, false);
    pinned.clear();
  };
}
