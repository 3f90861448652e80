/**
 * A grid over one peer connection in a cluster: three gateways in this process on a real Redis
 * (127.0.0.2–.4), two cameras of the demo recorder (which counts its RTSP sessions), werift peers
 * as grid clients. Proves that a node binds a slot to a camera another node pulls through RTP
 * forwarding, as its live-view routes do: the slot plays from a relay of the owner's one pull;
 * a camera nobody pulls yet is taken (its lease) and pulled by the node whose slot asks for it.
 * (The default `cluster.forward` settings; a grid's slots are relayed in `answer` mode as well,
 * as its one connection cannot be answered through another node.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { startLoopbackCluster, until } from "../peers/loopback-cluster.ts";
import type { HttpBrowser } from "../peers/oidc.ts";
import { startRedis, type RedisServer } from "../peers/redis.ts";
import { GridClient, openWeriftGrid, type WeriftGrid } from "../peers/werift-grid.ts";

let redis: RedisServer;
let recorder: DemoRecorder;
const nodes: Gateway[] = [];
const browsers: HttpBrowser[] = [];
const grids: WeriftGrid[] = [];

beforeAll(async () => {
  redis = await startRedis();
  recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  // Each camera has a substream (what grid slots play by default); both streams are the recorder.
  const cameras = ["one", "two"].map((id) => ({ id, url: recorder.url, transport: "tcp", streams: [{ id: "sub", url: recorder.url }] }));
  nodes.push(...(await startLoopbackCluster({ redisUrl: redis.url, cameras, cluster: { forward: { silenceMs: 1000 } } })));
}, 60_000);

afterAll(async () => {
  for (const g of grids) await g.pc.close().catch(() => {});
  for (const b of browsers) b.close();
  for (const n of nodes) await n.close("test done");
  await recorder?.close();
  await redis?.close();
});

async function grid(c: GridClient, video: number): Promise<WeriftGrid> {
  const g = await openWeriftGrid(c, { video, audio: 0 });
  grids.push(g);
  return g;
}

/** Waits until `n` video packets arrived on each of `slots` different SSRCs (one per bound slot). */
async function slotsPlay(g: WeriftGrid, slots: number, n: number): Promise<void> {
  await until(
    `${slots} slots playing`,
    () => {
      const per = new Map<number, number>();
      for (const p of g.video.packets) per.set(p.ssrc, (per.get(p.ssrc) ?? 0) + 1);
      return [...per.values()].filter((k) => k >= n).length >= slots;
    },
    20_000,
  );
}

const owners = (camera: string) => nodes.filter((n) => n.cluster!.leases.holds(camera)).map((n) => n.cluster!.nodeId);
/** What a node's grid sessions' slots show: SFU source ids. */
const slotSources = (n: Gateway) => n.sfu.sessionList().flatMap((s) => s.slots().filter((x) => x.kind === "video" && x.camera !== undefined).map((x) => String(x.camera)));

describe("a grid in a cluster", () => {
  it("binds a camera another node pulls through a relay of its one pull, and pulls a camera nobody pulls itself", async () => {
    const [a, b] = nodes as [Gateway, Gateway];
    const onA = await GridClient.signIn(a, "admin", browsers);
    const onB = await GridClient.signIn(b, "admin", browsers);

    // A's grid shows camera one: A takes its lease and pulls its substream.
    const ga = await grid(onA, 1);
    const first = await onA.send("PUT", `${ga.resource}/slots/${ga.mids[0]}`, { json: { camera: "one" } });
    expect(first.status, first.body).toBe(200);
    await slotsPlay(ga, 1, 25);
    expect(owners("one")).toEqual(["node-1"]);

    // B's grid shows one (pulled by A) and two (pulled by nobody yet).
    const gb = await grid(onB, 2);
    const [m0, m1] = gb.mids as [string, string];
    const bound = await onB.send("PUT", `${gb.resource}/slots/${m0}`, { json: { camera: "one" } });
    expect(bound.status, bound.body).toBe(200);
    expect(JSON.parse(bound.body)).toMatchObject({ mid: m0, camera: "one", stream: "sub" });
    expect((await onB.send("PUT", `${gb.resource}/slots/${m1}`, { json: { camera: "two" } })).status).toBe(200);
    await slotsPlay(gb, 2, 50);

    // One: served on B from a relay of A's pull; two: B holds its lease and pulls it.
    const sources = slotSources(b);
    expect(sources).toHaveLength(2);
    expect(sources.filter((s) => s.endsWith("@relay"))).toHaveLength(1);
    expect(owners("one")).toEqual(["node-1"]);
    expect(owners("two")).toEqual(["node-2"]);
    expect(a.forwarding!.stats().links).toBe(1);
    // The session says which camera each slot shows, not the relay's source.
    const state = JSON.parse((await onB.send("GET", gb.resource)).body) as { slots: { mid: string; camera: string | null; stream?: string }[] };
    expect(state.slots.map((s) => [s.mid, s.camera])).toEqual([
      [m0, "one"],
      [m1, "two"],
    ]);
    // One pull per camera for the whole cluster: A's of one, B's of two.
    expect(recorder.sessions()).toBe(2);

    // Re-bound to camera one, B's second slot shows the same relay: still two pulls, one link.
    expect((await onB.send("PUT", `${gb.resource}/slots/${m1}`, { json: { camera: "one" } })).status).toBe(200);
    const n = gb.video.count;
    await until("B's slots play on", () => gb.video.count > n + 50);
    expect(slotSources(b).filter((s) => s.endsWith("@relay"))).toHaveLength(2);
    expect(a.forwarding!.stats().links).toBe(1);
    await until("B lets camera two go", () => owners("two").length === 0, 15_000);
    await until("one pull left", () => recorder.sessions() === 1, 15_000);
  }, 90_000);
});
