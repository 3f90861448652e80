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
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorder } from "../../gateway/demo/recorder.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { startLoopbackCluster } from "../peers/loopback-cluster.ts";
import { signedInDevUser, type HttpBrowser } from "../peers/oidc.ts";
import { startRedis, type RedisServer } from "../peers/redis.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";
import { cookieHeader, SseClient } from "./intercom-support.ts";

interface Rig {
  redis: RedisServer;
  recorder: DemoRecorder;
  nodes: Gateway[];
  browsers: HttpBrowser[];
  viewers: WeriftViewer[];
  streams: SseClient[];
  /** Where the viewer signed in (node 1: its cookie's host). */
  home: string;
}

async function rig(mode: "forward" | "answer"): Promise<Rig> {
  const redis = await startRedis();
  const recorder = await startDemoRecorder({ host: "127.0.0.1", port: 0, log: silentLogger });
  const nodes = await startLoopbackCluster({
    redisUrl: redis.url,
    cameras: [{ id: "demo", name: "Cluster camera", url: recorder.url, transport: "tcp" }],
    // A loaded machine may stall a node's heartbeat past a short TTL (another node would take the camera over).
    cluster: { nodeTtlMs: 5000, forward: { mode, above: 0, silenceMs: 1000 } },
  });
  return { redis, recorder, nodes, browsers: [], viewers: [], streams: [], home: nodes[0]!.url };
}

async function teardown(r: Rig | undefined): Promise<void> {
  if (!r) return;
  for (const s of r.streams) s.close();
  for (const v of r.viewers) await v.close().catch(() => {});
  for (const b of r.browsers) b.close();
  for (const n of r.nodes) await n.close("test done");
  await r.recorder.close();
  await r.redis.close();
}

async function pageHeaders(b: HttpBrowser, signedInAt: string, node: Gateway): Promise<Record<string, string>> {
  const { cookie = "" } = cookieHeader(b, signedInAt);
  const me = await fetch(`${node.url}/auth/me`, { headers: { cookie, accept: "application/json" } });
  expect(me.status).toBe(200);
  const csrf = ((await me.json()) as { csrfToken: string }).csrfToken;
  return { cookie, "x-csrf-token": csrf, origin: node.url };
}

async function watch(r: Rig, b: HttpBrowser, node: Gateway): Promise<WeriftViewer> {
  const v = await WeriftViewer.connect({ whepUrl: `${node.url}/whep/demo`, headers: await pageHeaders(b, r.home, node), audio: false, timeoutMs: 20_000 });
  r.viewers.push(v);
  await v.connected;
  return v;
}

const viewerIdOf = (v: WeriftViewer) => v.resource.slice(v.resource.lastIndexOf("/") + 1);

describe("forward mode: the relay's pages hear that the camera moves, and keep their connection", () => {
  let r: Rig;
  beforeAll(async () => void (r = await rig("forward")), 60_000);
  afterAll(() => teardown(r));

  it("the owner leaves: `viewer` camera-moving without re-offer on the relaying node's stream; the viewer plays on", async () => {
    const [a, b] = r.nodes as [Gateway, Gateway, Gateway];
    const browser = await signedInDevUser(a, "viewer", r.browsers);
    const va = await watch(r, browser, a);
    await va.video.waitForCount(10, 20_000);
    const vb = await watch(r, browser, b);
    await vb.video.waitForCount(30, 20_000);
    expect(b.sfu.viewerList().map((v) => v.sourceId)).toEqual(["demo@relay"]);
    const events = await SseClient.open(`${b.url}/api/cameras/events`, cookieHeader(browser, a.url), "cameras");
    r.streams.push(events);

    const told = events.next("viewer", (n) => n.viewer === viewerIdOf(vb), 10_000);
    const leftAt = Date.now();
    await a.close("owner leaves");
    r.nodes.splice(0, 1);
    expect(await told).toEqual({ camera: "demo", viewer: viewerIdOf(vb), reason: "camera-moving", reoffer: false, message: "Camera moving to another gateway…" });
    expect(Date.now() - leftAt).toBeLessThan(5000);
    // Same connection, no new offer: it plays on from the new owner.
    const n = vb.video.count;
    await vb.video.waitForCount(n + 50, 20_000);
  }, 90_000);
});

describe("answer mode: the pages of viewers answered through a node that died offer again at once", () => {
  let r: Rig;
  beforeAll(async () => void (r = await rig("answer")), 60_000);
  afterAll(() => teardown(r));

  it("the owner leaves the listing: `viewer` camera-moving with re-offer on the stream of the node the page talks to; a new offer plays", async () => {
    const [a, b] = r.nodes as [Gateway, Gateway, Gateway];
    const browser = await signedInDevUser(a, "viewer", r.browsers);
    const va = await watch(r, browser, a);
    await va.video.waitForCount(10, 20_000);
    const vb = await watch(r, browser, b);
    await vb.video.waitForCount(30, 20_000);
    // Answered through the owner: B holds no viewer of its own.
    expect(a.cluster!.leases.holds("demo")).toBe(true);
    expect(b.sfu.viewerList()).toEqual([]);
    const events = await SseClient.open(`${b.url}/api/cameras/events`, cookieHeader(browser, a.url), "cameras");
    r.streams.push(events);

    const told = events.next("viewer", (n) => n.viewer === viewerIdOf(vb), 10_000);
    const leftAt = Date.now();
    await a.close("owner leaves");
    r.nodes.splice(0, 1);
    expect(await told).toEqual({ camera: "demo", viewer: viewerIdOf(vb), reason: "camera-moving", reoffer: true, message: "Camera moving to another gateway… reconnecting" });
    expect(Date.now() - leftAt).toBeLessThan(5000);
    // The page's new offer, as it makes it on the notice: served again.
    const again = await watch(r, browser, b);
    await again.video.waitForCount(30, 20_000);
  }, 90_000);
});
