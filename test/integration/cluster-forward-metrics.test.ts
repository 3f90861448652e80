/**
 * RTP forwarding as an operator sees it, and the relay sources' lifetime: three gateways of a
 * cluster in this process on a real Redis (127.0.0.2–.4), the demo recorder, werift viewers.
 * Proves: each node's `/metrics` counts the packets and bytes of its links (sent by the owner to
 * each relaying node, received by the relaying node from the owner), drops by reason, links and
 * relays now; and a relay whose last viewer left ends and its `<source>@relay` source leaves the
 * SFU (its series leave `/metrics`), counted as released; a second viewer later gets a fresh relay.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { cookieOf, LoopbackRig, pageHeaders, until } from "../peers/loopback-cluster.ts";
import { signedInDevUser, type HttpBrowser } from "../peers/oidc.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";

const rig = new LoopbackRig();
const { nodes, browsers, viewers } = rig;
beforeAll(() => rig.start({ cluster: { forward: { mode: "forward", above: 0, silenceMs: 1000 } } }), 60_000);
afterAll(() => rig.close());

/** `/metrics` of `node` as a signed-in administrator: each sample line's value by its name and labels. */
async function scrape(node: Gateway, admin: HttpBrowser, signedInAt: Gateway): Promise<Map<string, number>> {
  const res = await fetch(`${node.url}/metrics`, { headers: { cookie: cookieOf(admin, signedInAt) } });
  expect(res.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    if (m && !line.startsWith("#")) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe("forwarding in /metrics; relay sources released", () => {
  it("the owner counts what it sends to each node, the relaying node what it receives; drops by reason; links and relays", async () => {
    const [a, b] = nodes as [Gateway, Gateway, Gateway];
    const browser = await signedInDevUser(a, "viewer", browsers);
    const admin = await signedInDevUser(a, "admin", browsers);
    const va = await WeriftViewer.connect({ whepUrl: `${a.url}/whep/demo`, headers: await pageHeaders(browser, a, a), audio: false, timeoutMs: 20_000 });
    viewers.push(va);
    await va.video.waitForCount(10, 20_000);
    const vb = await WeriftViewer.connect({ whepUrl: `${b.url}/whep/demo`, headers: await pageHeaders(browser, a, b), audio: false, timeoutMs: 20_000 });
    viewers.push(vb);
    await vb.video.waitForCount(50, 20_000);
    expect(b.sfu.viewerList().map((v) => v.sourceId)).toEqual(["demo@relay"]);
    // The first packets may be the relay's cached pictures, and so may later ones: a viewer's
    // keyframe request is answered from the relay's cache, and a loaded recorder may skip to its
    // next keyframe (2 s) meanwhile. So what crossed the link is counted where it is sent: 60
    // packets more than the owner's cached pictures (at most one GOP, sent as the link opened).
    const sentOverLink = () => a.forwarding!.linkTotals().find((l) => l.direction === "sent" && l.node === "node-2" && l.source === "demo")?.packets ?? 0;
    const opened = sentOverLink();
    const t0 = Date.now();
    while (sentOverLink() < opened + 60 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
    expect(sentOverLink()).toBeGreaterThanOrEqual(opened + 60);
    await vb.video.waitForCount(vb.video.count + 10, 20_000);

    // B first: what it received by then was sent before A is asked.
    const atB = await scrape(b, admin, a);
    const atA = await scrape(a, admin, a);
    const sent = atA.get('gatehouse_cluster_forward_packets_total{direction="sent",node="node-2",source="demo"}') ?? 0;
    const received = atB.get('gatehouse_cluster_forward_packets_total{direction="received",node="node-1",source="demo@relay"}') ?? 0;
    expect(sent).toBeGreaterThan(50);
    expect(received).toBeGreaterThan(50);
    expect(atA.get('gatehouse_cluster_forward_bytes_total{direction="sent",node="node-2",source="demo"}')).toBeGreaterThan(sent * 100);
    expect(atB.get('gatehouse_cluster_forward_bytes_total{direction="received",node="node-1",source="demo@relay"}')).toBeGreaterThan(received * 100);
    expect(atA.get("gatehouse_cluster_forward_links")).toBe(1);
    expect(atA.get("gatehouse_cluster_forward_relays")).toBe(0);
    expect(atB.get("gatehouse_cluster_forward_links")).toBe(0);
    expect(atB.get("gatehouse_cluster_forward_relays")).toBe(1);
    for (const reason of ["malformed", "unknownChannel", "badAuth", "replay", "staleEpoch", "unexpected"]) expect(atB.has(`gatehouse_cluster_forward_drops_total{reason="${reason}"}`)).toBe(true);
    // What the relay received is what its owner sent it (loopback loses nothing to speak of).
    expect(received).toBeLessThanOrEqual(sent);
    // The relay source is one of B's SFU sources, in /metrics like any.
    expect([...atB.keys()].some((k) => k.includes('camera="demo@relay"'))).toBe(true);
  }, 90_000);

  it("the last viewer gone, the relay ends and its source leaves the SFU, counted; a later viewer gets a fresh relay", async () => {
    const [a, b] = nodes as [Gateway, Gateway, Gateway];
    const browser = browsers[0]!;
    const admin = browsers[1]!;
    const vb = viewers.pop()!;
    expect(await vb.close()).toBeLessThan(300);
    await until("the relay source released", () => !b.sfu.sourceList().some((s) => s.id === "demo@relay"), 15_000);
    expect(b.forwarding!.stats()).toMatchObject({ relays: 0, released: 1 });
    const atB = await scrape(b, admin, a);
    expect(atB.get("gatehouse_cluster_forward_relays")).toBe(0);
    expect(atB.get("gatehouse_cluster_forward_relay_sources_released_total")).toBe(1);
    expect([...atB.keys()].some((k) => k.includes('camera="demo@relay"'))).toBe(false);
    // The link's totals stay (counters only grow); the owner ended the link.
    expect(atB.get('gatehouse_cluster_forward_packets_total{direction="received",node="node-1",source="demo@relay"}')).toBeGreaterThan(50);
    await until("the owner's link ended", () => a.forwarding!.stats().links === 0, 10_000);

    const again = await WeriftViewer.connect({ whepUrl: `${b.url}/whep/demo`, headers: await pageHeaders(browser, a, b), audio: false, timeoutMs: 20_000 });
    viewers.push(again);
    await again.video.waitForCount(50, 20_000);
    expect(b.sfu.viewerList().map((v) => v.sourceId)).toEqual(["demo@relay"]);
    expect(b.forwarding!.stats().relays).toBe(1);
  }, 90_000);
});
