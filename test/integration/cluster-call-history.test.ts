/**
 * The call history and the doors' presence across the cluster's nodes, on a real Redis (Debian's redis-server): three
 * nodes' ClusterIntercom, each with its own SIP side (an event source standing for the door calls
 * it holds) and its own call log. Proves: a call that ends on node A is in node B's history (what
 * B's intercom service lists as its call log) at once, beside B's own calls in the order they
 * ended; a node started later reads the calls held before it from Redis; the shared list and each
 * node's view of the others' calls keep at most `cluster.callHistoryMax`. A door a node says is
 * registered with it is found there by the other nodes at once, and forgotten when that node leaves
 * the listing or starts again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { SafeEmitter } from "../../config/events.ts";
import { silentLogger } from "../../config/log.ts";
import { ClusterIntercom } from "../../gateway/cluster/intercom.ts";
import type { NodeAnnouncement, NodeEvents, NodeRegistry } from "../../gateway/cluster/nodes.ts";
import { RedisLink } from "../../gateway/cluster/redis.ts";
import type { IntercomService } from "../../gateway/intercom/service.ts";
import type { CallRecord, Intercom, IntercomEvents } from "../../gateway/sip/index.ts";
import { deviceId } from "../../gateway/sip/devices.ts";
import { until } from "../peers/loopback-cluster.ts";
import { startRedis, type RedisServer } from "../peers/redis.ts";

const MAX = 3;
let redis: RedisServer;
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  redis = await startRedis();
}, 30_000);

afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await redis?.close();
});

/** The nodes' listing as every test node sees it (the registry's announcements and its `left` event). */
const registry = { nodes: [] as NodeAnnouncement[], events: new SafeEmitter<NodeEvents>() };

interface TestNode {
  cluster: ClusterIntercom;
  /** The node's own call log, as its audit-backed log keeps it. */
  local: CallRecord[];
  /** A call this node held ends. */
  end(record: CallRecord): void;
  /** A door registers with this node, or leaves it. */
  door(deviceId: string, online: boolean): void;
  link: RedisLink;
}

async function node(id: string): Promise<TestNode> {
  const cfg = parseConfig({ cluster: { redis: { url: redis.url }, nodeId: id, callHistoryMax: MAX } }, {}).cluster!;
  const link = await RedisLink.connect(cfg, silentLogger);
  const events = new SafeEmitter<IntercomEvents>();
  const local: CallRecord[] = [];
  const cluster = new ClusterIntercom({
    link,
    nodes: registry as unknown as NodeRegistry,
    nodeId: id,
    key: Buffer.alloc(32, 1),
    intercom: { events } as unknown as Intercom,
    timeoutMs: 2000,
    callTimeoutMs: 5000,
    historyMax: cfg.callHistoryMax,
    localHistory: () => local,
    log: silentLogger,
  });
  const service = { remoteEnded: () => {}, remoteRing: () => {}, remoteAnswered: () => {}, remoteDtmf: () => {}, remoteDevice: () => {}, displayName: () => null };
  await cluster.attach(service as unknown as IntercomService);
  closers.push(() => cluster.close(), () => link.close());
  return {
    cluster,
    local,
    link,
    end: (record) => {
      local.push(record);
      events.emit("ended", record);
    },
    door: (id, online) => events.emit("device", { deviceId: deviceId(id), online }),
  };
}

let t = 1_700_000_000_000;
function call(id: string, door = "door1"): CallRecord {
  t += 1000;
  return { callId: id, deviceId: door, direction: "incoming", from: `sip:${door}@gatehouse`, startedAt: t - 900, answeredAt: undefined, answeredBy: undefined, endedAt: t, reason: "timeout", status: 408 } as unknown as CallRecord;
}

const ids = (n: TestNode): string[] => n.cluster.history().map((r) => String(r.callId));

describe("call history across the cluster", () => {
  it("a call held on one node is in every node's history at once, in the order calls ended; a node started later reads it from Redis; all bounded", async () => {
    const a = await node("a");
    const b = await node("b");
    a.end(call("a1"));
    await until("a1 at b", () => ids(b).includes("a1"), 5000);
    b.end(call("b1"));
    a.end(call("a2"));
    await until("a2 at b", () => ids(b).includes("a2"), 5000);
    expect(ids(b)).toEqual(["a1", "b1", "a2"]);
    await until("b1 at a", () => ids(a).includes("b1"), 5000);
    expect(ids(a)).toEqual(["a1", "b1", "a2"]);
    // What B's intercom service reads as its call log is the same.
    expect(b.cluster.hooks().history!().map((r) => String(r.callId))).toEqual(["a1", "b1", "a2"]);

    // A node started now: the others' calls from the shared list (its own log is empty).
    const c = await node("c");
    expect(ids(c)).toEqual(["a1", "b1", "a2"]);

    // Past the bound: the shared list and each view keep the newest MAX.
    for (const id of ["a3", "a4", "a5"]) a.end(call(id));
    await until("a5 at c", () => ids(c).includes("a5"), 5000);
    expect(ids(c)).toEqual(["a3", "a4", "a5"]);
    expect(await c.link.run("count", (cl) => cl.lLen(c.link.key("intercom:history")))).toBe(MAX);
    // A later node sees exactly the list's newest MAX.
    const d = await node("d");
    expect(ids(d)).toEqual(["a3", "a4", "a5"]);
  }, 60_000);

  it("a door registered with node A is found there by B at once (before A's next announcement lists it), and forgotten when A starts again", async () => {
    const a = await node("pa");
    const b = await node("pb");
    registry.nodes.push({ id: "pa", doors: [] } as unknown as NodeAnnouncement, { id: "pb", doors: [] } as unknown as NodeAnnouncement);
    a.door("door9", true);
    await until("door9 on pa, as pb sees it", () => b.cluster.doorsElsewhere().has("door9"), 5000);
    // A starts again under the same id: its registrations are gone, and its announcement lists no door.
    registry.events.emit("left", "pa");
    expect(registry.nodes.some((n) => n.id === "pa")).toBe(true);
    expect(b.cluster.doorsElsewhere().has("door9")).toBe(false);
    // Registered with A again: found again.
    a.door("door9", true);
    await until("door9 on pa again", () => b.cluster.doorsElsewhere().has("door9"), 5000);
    a.door("door9", false);
    await until("door9 gone from pa", () => !b.cluster.doorsElsewhere().has("door9"), 5000);
  }, 30_000);
});
