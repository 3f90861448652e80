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
import type { Gateway } from "../../gateway/gateway.ts";
import { LoopbackRig, until } from "../peers/loopback-cluster.ts";
import { GridClient, openWeriftGrid, type WeriftGrid } from "../peers/werift-grid.ts";

const rig = new LoopbackRig();
const { nodes, browsers } = rig;
const grids: WeriftGrid[] = [];
/** B's browser (its grid is the second one). */
let onB: GridClient;

// Each camera has a substream (what grid slots play by default); both streams are the recorder.
beforeAll(() => rig.start({ cameras: (url) => ["one", "two"].map((id) => ({ id, url, transport: "tcp", streams: [{ id: "sub", url }] })), cluster: { forward: { silenceMs: 1000 } } }), 60_000);
afterAll(() => rig.close());

async function grid(c: GridClient, video: number): Promise<WeriftGrid> {
  const g = await openWeriftGrid(c, { video, audio: 0 });
  grids.push(g);
  rig.closers.push(() => g.pc.close());
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
    onB = await GridClient.signIn(b, "admin", browsers);

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
    expect(rig.recorder.sessions()).toBe(2);

    // Re-bound to camera one, B's second slot shows the same relay: still two pulls, one link.
    expect((await onB.send("PUT", `${gb.resource}/slots/${m1}`, { json: { camera: "one" } })).status).toBe(200);
    const n = gb.video.count;
    await until("B's slots play on", () => gb.video.count > n + 50);
    expect(slotSources(b).filter((s) => s.endsWith("@relay"))).toHaveLength(2);
    expect(a.forwarding!.stats().links).toBe(1);
    await until("B lets camera two go", () => owners("two").length === 0, 15_000);
    await until("one pull left", () => rig.recorder.sessions() === 1, 15_000);
  }, 90_000);

  it("when the camera's owner leaves, the slots bound to its relays play on without a new bind: moved to the new owner's pull, or relayed from it", async () => {
    const [a, b, c] = nodes as [Gateway, Gateway, Gateway];
    // C's grid shows camera one as well (a relay of A's pull): whichever of B and C takes the
    // camera over moves its slot to its own pull, the other's relay subscribes to it.
    const onC = await GridClient.signIn(c, "admin", browsers);
    const gc = await grid(onC, 1);
    expect((await onC.send("PUT", `${gc.resource}/slots/${gc.mids[0]}`, { json: { camera: "one" } })).status).toBe(200);
    await slotsPlay(gc, 1, 25);
    const gb = grids[1]!;
    expect(slotSources(b).filter((s) => s.endsWith("@relay"))).toHaveLength(2);
    expect(slotSources(c).filter((s) => s.endsWith("@relay"))).toHaveLength(1);
    const ssrcs = (g: WeriftGrid) => new Set(g.video.packets.slice(-200).map((p) => p.ssrc));
    const watched = [
      { g: gb, ssrcs: ssrcs(gb) },
      { g: gc, ssrcs: ssrcs(gc) },
    ];
    expect(watched.map((w) => w.ssrcs.size)).toEqual([2, 1]);
    // Packets per slot (SSRC) after the owner left.
    const after = watched.map((w) => {
      const per = new Map<number, number>();
      w.g.pc.dtlsTransports[0]!.onRtp.subscribe((rtp) => {
        if (w.ssrcs.has(rtp.header.ssrc)) per.set(rtp.header.ssrc, (per.get(rtp.header.ssrc) ?? 0) + 1);
      });
      return { ...w, per };
    });

    const left = Date.now();
    await a.close("owner leaves");
    nodes.splice(0, 1);
    // Only what arrives once the owner is gone counts: its relays forwarded until it had closed.
    for (const w of after) w.per.clear();
    const counts = () => after.map((w) => [...w.ssrcs].map((x) => w.per.get(x) ?? 0));
    // README "Failover target (forward mode)": 15 s; every slot's own SSRC carries pictures again.
    await until(
      "every slot plays again",
      () => after.every((w) => [...w.ssrcs].every((x) => (w.per.get(x) ?? 0) > 50)),
      Math.max(1, 15_000 - (Date.now() - left)),
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}: packets per slot since the owner left ${JSON.stringify(counts())}; slots on B ${slotSources(b)}, on C ${slotSources(c)}`);
    });
    expect(Date.now() - left).toBeLessThan(15_000);
    // One new owner; its slots play its own pull, the other node's a relay of it.
    await until("one new owner", () => owners("one").length === 1, 10_000);
    const owner = owners("one");
    const [here, other] = owner[0] === b.cluster!.nodeId ? [b, c] : [c, b];
    await until(
      "the owner's slots on its pull, the other's on a relay",
      () => slotSources(here).every((s) => !s.endsWith("@relay")) && slotSources(other).every((s) => s.endsWith("@relay")),
      10_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}: owner ${owner[0]}; slots on B ${slotSources(b)}, on C ${slotSources(c)}`);
    });
    // The page still reads what it bound.
    const state = JSON.parse((await onB.send("GET", gb.resource)).body) as { slots: { camera: string | null }[] };
    expect(state.slots.map((s) => s.camera)).toEqual(["one", "one"]);
    await until("one pull", () => rig.recorder.sessions() === 1, 10_000);
  }, 90_000);
});
