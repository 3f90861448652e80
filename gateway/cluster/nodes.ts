/**
 * Node announcements: each node writes what a load balancer or another node needs to know of
 * it (its URL, endpoints, load) under a key that lapses `nodeTtlMs` after its last heartbeat,
 * and lists the others from the same place. A node that dies (even SIGKILL) leaves the listing
 * when its key lapses; one that closes cleanly withdraws at once. A node that leaves the listing,
 * or comes back as a new process under the same id, is told as `left` (what it held is gone).
 */
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { RedisLink } from "./redis.ts";

/** What one node says of itself. */
export interface NodeAnnouncement {
  id: string;
  /** Base URL at which other nodes reach it directly. */
  url: string;
  /** Its WHEP base, TURN and SIP URIs (as in its own discovery document). */
  endpoints: { whep: string; turn: string[]; sip: string[] };
  /** Load at the last heartbeat. */
  load: { viewers: number; cameras: number; sessions: number };
  /** Cameras it pulls for the cluster (holds the lease of). */
  owns: string[];
  /** Door stations registered with it (it holds their calls). */
  doors?: string[];
  startedAt: number;
  /** Its last heartbeat, ms since the epoch (its own clock). */
  heartbeatAt: number;
}

export interface NodeRegistryOptions {
  link: RedisLink;
  /** What to announce now (called at each heartbeat). */
  announcement: () => Omit<NodeAnnouncement, "heartbeatAt">;
  heartbeatMs: number;
  nodeTtlMs: number;
  clock: () => number;
  log: Logger;
}

const SET = "nodes";
const nodeKey = (id: string) => `node:${id}`;

export type NodeEvents = {
  /** The node left the listing (its announcement lapsed or it withdrew), or restarted: its viewers and links are gone. */
  left: [id: string];
};

export class NodeRegistry {
  readonly events: SafeEmitter<NodeEvents>;
  private readonly o: NodeRegistryOptions;
  private readonly timer: NodeJS.Timeout;
  private listing: NodeAnnouncement[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(o: NodeRegistryOptions) {
    this.o = o;
    this.events = new SafeEmitter<NodeEvents>((event, err) => o.log.warn("node listener threw", { event, err }));
    this.timer = setInterval(() => void this.beat(), o.heartbeatMs);
    this.timer.unref();
  }

  /** The nodes alive at the last heartbeat (this one included while Redis is reachable), by id. */
  get nodes(): readonly NodeAnnouncement[] {
    return this.listing;
  }

  /** One node's announcement from the last listing. */
  node(id: string): NodeAnnouncement | undefined {
    return this.listing.find((n) => n.id === id);
  }

  /** Whether the node is announced now (asks Redis; false when it is not, or Redis cannot be asked). */
  async alive(id: string): Promise<boolean> {
    const { link } = this.o;
    try {
      return (await link.run("check a node", (c) => c.exists(link.key(nodeKey(id))))) === 1;
    } catch {
      return true; // unknown: assume alive (nothing is taken over without Redis anyway)
    }
  }

  /** Announce now and refresh the listing. Never throws (Redis down: the listing is kept as it was). */
  async beat(): Promise<void> {
    if (this.closed) return;
    const me: NodeAnnouncement = { ...this.o.announcement(), heartbeatAt: this.o.clock() };
    const { link } = this.o;
    const before = this.listing;
    try {
      this.listing = await link.run("announce", async (c) => {
        await c.set(link.key(nodeKey(me.id)), JSON.stringify(me), { expiration: { type: "PX", value: this.o.nodeTtlMs } });
        await c.sAdd(link.key(SET), me.id);
        const ids = await c.sMembers(link.key(SET));
        const values = ids.length ? await c.mGet(ids.map((id) => link.key(nodeKey(id)))) : [];
        const out: NodeAnnouncement[] = [];
        const gone: string[] = [];
        ids.forEach((id, i) => {
          const v = values[i];
          if (typeof v !== "string") return void gone.push(id);
          try {
            out.push(JSON.parse(v) as NodeAnnouncement);
          } catch {
            gone.push(id);
          }
        });
        if (gone.length) await c.sRem(link.key(SET), gone);
        return out.sort((a, b) => a.id.localeCompare(b.id));
      });
    } catch {
      // Redis unreachable: the link said so; the listing stays the last one known.
      return;
    }
    for (const was of before) {
      const now = this.listing.find((n) => n.id === was.id);
      if (was.id !== me.id && (!now || now.startedAt !== was.startedAt)) this.events.emit("left", was.id);
    }
  }

  /** Stop announcing and withdraw from the listing (best effort: the key lapses anyway). Every caller gets the same promise. */
  close(): Promise<void> {
    this.closing ??= this.withdraw();
    return this.closing;
  }

  private async withdraw(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const { link } = this.o;
    const id = this.o.announcement().id;
    try {
      await link.run("withdraw", async (c) => {
        await c.del(link.key(nodeKey(id)));
        await c.sRem(link.key(SET), id);
      });
    } catch {
      // gone with Redis: the key lapses by itself
    }
  }
}
