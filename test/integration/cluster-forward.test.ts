/**
 * RTP forwarding between three gateways of a cluster on a real Redis, in this process (127.0.0.2,
 * .3, .4): one camera (the demo recorder, which counts its RTSP sessions), werift viewers on
 * every node. Proves: viewers on the two nodes that do not pull the camera are served by their own
 * node's SFU from a relay the owner forwards to (one link per node), the recorder is pulled once;
 * forged datagrams at a node's forwarding socket are counted and dropped; when the owner leaves,
 * the relaying nodes find the new owner (one of them pulls, the other relays from it) and every
 * viewer plays on without a new offer.
 */
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { LoopbackRig, pageHeaders, until } from "../peers/loopback-cluster.ts";
import { signedInDevUser } from "../peers/oidc.ts";

const rig = new LoopbackRig();
const { nodes, browsers, viewers } = rig;
beforeAll(() => rig.start({ cluster: { forward: { mode: "forward", above: 0, silenceMs: 1000 } } }), 60_000);
afterAll(() => rig.close());
const watch = (node: Gateway, headers: Record<string, string>) => rig.watch(node, headers);

const owners = () => nodes.filter((n) => n.cluster!.leases.holds("demo"));
const demoViewers = (n: Gateway) => n.sfu.viewerList().filter((v) => v.cameraId === "demo");

describe("RTP forwarding between the nodes of a cluster", () => {
  it("viewers on two other nodes are served there from relays of the owner's one pull; forged datagrams are dropped", async () => {
    const [a, b, c] = nodes as [Gateway, Gateway, Gateway];
    const browser = await signedInDevUser(a, "viewer", browsers);
    const va = await watch(a, await pageHeaders(browser, a, a));
    await va.video.waitForCount(10, 20_000);
    expect(owners()).toEqual([a]);
    const vb = await watch(b, await pageHeaders(browser, a, b));
    const vc = await watch(c, await pageHeaders(browser, a, c));
    const vb2 = await watch(b, await pageHeaders(browser, a, b));
    for (const v of [vb, vc, vb2]) await v.video.waitForCount(50, 20_000);

    // Each node's SFU serves its own viewers: the owner its one, B and C theirs from a relay.
    expect(demoViewers(a).map((v) => v.sourceId)).toEqual(["demo"]);
    expect(demoViewers(b).map((v) => v.sourceId)).toEqual(["demo@relay", "demo@relay"]);
    expect(demoViewers(c).map((v) => v.sourceId)).toEqual(["demo@relay"]);
    // One pull, and the relays' source carries the recorder's sender reports (frame time, lip sync).
    expect(rig.recorder.sessions()).toBe(1);
    const relay = b.sfu.findSource("demo@relay" as never)!;
    // The recorder reports every second; a viewer's first packets (the cached pictures) may come sooner.
    await until("the recorder's sender reports on B's relay", () => relay.stats().tracks.find((t) => t.kind === "video")?.upstreamSr === true, 5_000);
    expect(relay.stats().sessions).toBe(1);

    // Forged and foreign datagrams at B's forwarding socket: counted, nothing reaches the relay.
    const { port } = b.forwarding!.address;
    const drops = b.forwarding!.stats().drops;
    const sock = dgram.createSocket("udp4");
    const forged = Buffer.alloc(200, 0xaa);
    forged.write("GR", 0, "latin1");
    forged[2] = 1;
    forged[3] = 1;
    for (const d of [Buffer.from("hello"), forged]) await new Promise<void>((r) => sock.send(d, port, "127.0.0.3", () => r()));
    sock.close();
    await until("both counted", () => {
      const now = b.forwarding!.stats().drops;
      return now.malformed === drops.malformed + 1 && now.unknownChannel === drops.unknownChannel + 1;
    });
    const before = vb.video.packets.length;
    await until("B's viewers play on", () => vb.video.packets.length > before + 25);
    expect(a.forwarding!.stats().links).toBe(2);
  }, 90_000);

  it("when the owner leaves, one relaying node pulls, the other relays from it, and every viewer plays on without a new offer", async () => {
    const [a, b, c] = nodes as [Gateway, Gateway, Gateway];
    await a.close("owner leaves");
    nodes.splice(0, 1);
    await until("a new owner", () => owners().length === 1, 15_000);
    const owner = owners()[0]!;
    const other = owner === b ? c : b;
    await until("the owner's viewers on its own pull", () => demoViewers(owner).every((v) => v.sourceId === "demo"), 15_000);
    expect(demoViewers(other).every((v) => v.sourceId === "demo@relay")).toBe(true);
    for (const v of viewers.slice(1)) {
      const n = v.video.packets.length;
      await until("a viewer plays on", () => v.video.packets.length > n + 50, 20_000);
    }
    await until("one pull", () => rig.recorder.sessions() === 1, 10_000);
  }, 90_000);
});
