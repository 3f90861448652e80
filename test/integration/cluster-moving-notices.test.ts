/**
 * Pages told at once that their camera moves to another gateway node, in both forwarding modes:
 * three gateways of a cluster in this process on a real Redis (127.0.0.2–.4), the demo recorder,
 * werift viewers, and the page's own event stream (`GET /api/cameras/events`) on the node the
 * page talks to. The node pulling the camera leaves.
 * - forward mode: the viewer on another node is served from a relay; its page hears `viewer`
 *   with `reason: camera-moving`, `reoffer: false` (the connection stays) within a second or two
 *   of the owner's leaving, and the viewer plays on without a new offer;
 * - answer mode: the viewer was answered through the owner (its media went to the owner, which is
 *   gone with it); its page hears `reoffer: true` as soon as the owner leaves the cluster's
 *   listing, and a new offer plays.
 * In both modes a grid over one peer connection on the same node (its slot is always served from a
 * relay there) hears `viewer` with its session (`grid`), the slot (`mid`) and the camera,
 * `reoffer: false`, and the slot plays on without a new bind.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { cookieOf, LoopbackRig, pageHeaders } from "../peers/loopback-cluster.ts";
import { signedInDevUser } from "../peers/oidc.ts";
import type { WeriftViewer } from "../peers/werift-viewer.ts";
import { GridClient, openWeriftGrid } from "../peers/werift-grid.ts";
import { SseClient } from "./intercom-support.ts";

const viewerIdOf = (v: WeriftViewer) => v.resource.slice(v.resource.lastIndexOf("/") + 1);

const MODES = [
  {
    mode: "forward",
    title: "forward mode: the relay's pages hear that the camera moves, and keep their connection",
    case: "the owner leaves: `viewer` camera-moving without re-offer on the relaying node's stream; the viewer plays on",
    message: "Camera moving to another gateway…",
  },
  {
    mode: "answer",
    title: "answer mode: the pages of viewers answered through a node that died offer again at once",
    case: "the owner leaves the listing: `viewer` camera-moving with re-offer on the stream of the node the page talks to; a new offer plays",
    message: "Camera moving to another gateway… reconnecting",
  },
] as const;

describe.each(MODES)("$title", ({ mode, case: title, message }) => {
  const rig = new LoopbackRig();
  // A loaded machine may stall a node's heartbeat past a short TTL (another node would take the camera over).
  beforeAll(() => rig.start({ cluster: { nodeTtlMs: 5000, forward: { mode, above: 0, silenceMs: 1000 } } }), 60_000);
  afterAll(() => rig.close());

  it(title, async () => {
    const [a, b] = rig.nodes as [Gateway, Gateway, Gateway];
    const browser = await signedInDevUser(a, "viewer", rig.browsers);
    const va = await rig.watch(a, await pageHeaders(browser, a, a));
    await va.video.waitForCount(10, 20_000);
    const vb = await rig.watch(b, await pageHeaders(browser, a, b));
    await vb.video.waitForCount(30, 20_000);
    expect(a.cluster!.leases.holds("demo")).toBe(true);
    // Forward mode: B serves the viewer from a relay; answer mode: through the owner, B holds no viewer of its own.
    expect(b.sfu.viewerList().map((v) => v.sourceId)).toEqual(mode === "forward" ? ["demo@relay"] : []);
    const events = await SseClient.open(`${b.url}/api/cameras/events`, { cookie: cookieOf(browser, a) }, "cameras");
    rig.closers.push(() => events.close());

    // A grid page on B too: its one slot shows the camera from a relay of A's pull.
    const gc = await GridClient.signIn(b, "viewer", rig.browsers);
    const grid = await openWeriftGrid(gc, { video: 1, audio: 0 });
    rig.closers.push(() => grid.pc.close());
    const gridId = grid.resource.slice(grid.resource.lastIndexOf("/") + 1);
    const bound = await gc.send("PUT", `${grid.resource}/slots/${grid.mids[0]}`, { json: { camera: "demo" } });
    expect(bound.status, bound.body).toBe(200);
    await grid.video.waitForCount(30, 20_000);
    const gridEvents = await SseClient.open(`${b.url}/api/cameras/events`, { cookie: gc.headers().cookie! }, "cameras");
    rig.closers.push(() => gridEvents.close());

    // When each notice arrived (not when A's whole shutdown ended, which a starved machine stretches).
    const toldAt: number[] = [];
    const told = events.next("viewer", (n) => n.viewer === viewerIdOf(vb), 10_000).finally(() => toldAt.push(Date.now()));
    const gridTold = gridEvents.next("viewer", (n) => n.grid === gridId, 10_000).finally(() => toldAt.push(Date.now()));
    const leftAt = Date.now();
    await a.close("owner leaves");
    rig.nodes.splice(0, 1);
    expect(await told).toEqual({ camera: "demo", viewer: viewerIdOf(vb), reason: "camera-moving", reoffer: mode === "answer", message });
    expect(await gridTold).toEqual({ grid: gridId, viewer: gridId, mid: grid.mids[0], camera: "demo", reason: "camera-moving", reoffer: false, message: "Camera moving to another gateway…" });
    expect(toldAt).toHaveLength(2);
    expect(Math.max(...toldAt) - leftAt).toBeLessThan(5000);
    // Each page hears only of its own views.
    expect(events.events.filter((e) => e.event === "viewer" && e.data.grid !== undefined)).toEqual([]);
    expect(gridEvents.events.filter((e) => e.event === "viewer" && e.data.grid === undefined)).toEqual([]);
    // The grid's slot plays on, on the same connection, without a new bind.
    const g = grid.video.count;
    await grid.video.waitForCount(g + 50, 20_000);
    if (mode === "forward") {
      // Same connection, no new offer: it plays on from the new owner.
      const n = vb.video.count;
      await vb.video.waitForCount(n + 50, 20_000);
    } else {
      // The page's new offer, as it makes it on the notice: served again.
      const again = await rig.watch(b, await pageHeaders(browser, a, b));
      await again.video.waitForCount(30, 20_000);
    }
  }, 90_000);
});
