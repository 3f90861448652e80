/**
 * Three gateways as one cluster on a real Redis (Debian's redis-server), in this process, on
 * 127.0.0.2, .3 and .4: one camera (the demo recorder, which counts its RTSP sessions), werift
 * viewers on every node. Proves: the nodes find each other (discovery); a session made on one
 * node works on the others; the camera is pulled once for the whole cluster; signing out on one
 * node ends a stream served by another, and so does the provider's back-channel logout to another
 * node; with Redis stopped, what runs keeps running and what
 * needs the cluster is refused with 503 in plain words; when Redis returns, the nodes catch up.
 * (Viewers elsewhere are answered through the owner here: `forward.mode: answer`; the relays of
 * the default mode are cluster-forward.test.ts's.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { LoopbackRig, pageHeaders, until } from "../peers/loopback-cluster.ts";
import { signedInDevUser } from "../peers/oidc.ts";

const rig = new LoopbackRig();
const { nodes, browsers, viewers } = rig;
beforeAll(() => rig.start({ cluster: { forward: { mode: "answer" } } }), 60_000);
afterAll(() => rig.close());
const watch = (node: Gateway, headers: Record<string, string>) => rig.watch(node, headers);

const owners = () => nodes.filter((n) => n.cluster!.leases.holds("demo"));

describe("a cluster of three gateways on Redis", () => {
  it("each node lists the three nodes in its discovery document", async () => {
    await until("three nodes in every listing", async () => {
      for (const n of nodes) {
        const doc = (await (await fetch(`${n.url}/.well-known/gatehouse`)).json()) as { cluster?: { nodes: { id: string }[] } };
        if (doc.cluster?.nodes.length !== 3) return false;
      }
      return true;
    });
    const doc = (await (await fetch(`${nodes[1]!.url}/.well-known/gatehouse`)).json()) as { cluster: { name: string; node: string; coordinated: boolean; nodes: { id: string }[] } };
    expect(doc.cluster.node).toBe("node-2");
    expect(doc.cluster.coordinated).toBe(true);
    expect(doc.cluster.nodes.map((n) => n.id).sort()).toEqual(["node-1", "node-2", "node-3"]);
    // The internal link refuses anything not signed with the cluster's key.
    for (const auth of [undefined, `${Math.floor(Date.now() / 1000)}.forged`]) {
      const res = await fetch(`${nodes[0]!.url}/cluster/whep/demo`, {
        method: "POST",
        headers: { "content-type": "application/sdp", ...(auth ? { "gatehouse-cluster-auth": auth, "gatehouse-cluster-session": "x" } : {}) },
        body: "v=0\r\n",
      });
      expect(res.status).toBe(401);
    }
  });

  it("a session made on one node is valid on the others; viewers on every node share one pull", async () => {
    const [a, b, c] = nodes as [Gateway, Gateway, Gateway];
    const browser = await signedInDevUser(a, "viewer", browsers);
    const onA = await pageHeaders(browser, a, a);
    const onB = await pageHeaders(browser, a, b);
    const onC = await pageHeaders(browser, a, c);
    // A forged cookie is still refused on another node.
    expect((await fetch(`${b.url}/api/cameras`, { headers: { cookie: onB.cookie!.replace(/=([^.;]+)\./, "=AAAA.") } })).status).toBe(401);

    const vb = await watch(b, onB);
    const vc = await watch(c, onC);
    const va = await watch(a, onA);
    for (const v of [va, vb, vc]) await v.video.waitForCount(25, 20_000);
    // One node pulls the camera and serves all three; the recorder saw one session.
    expect(owners()).toHaveLength(1);
    const owner = owners()[0]!;
    expect(owner.sfu.viewerList().filter((v) => v.cameraId === "demo")).toHaveLength(3);
    for (const n of nodes) if (n !== owner) expect(n.sfu.viewerList()).toHaveLength(0);
    expect(rig.recorder.sessions()).toBe(1);
  }, 90_000);

  it("signing out on one node ends the user's stream served by another", async () => {
    const [a, b, c] = nodes as [Gateway, Gateway, Gateway];
    const owner = owners()[0]!;
    const elsewhere = nodes.find((n) => n !== owner)!;
    const third = nodes.find((n) => n !== owner && n !== elsewhere)!;
    void a;
    void b;
    void c;
    // A second session, signed in on the owner, watching through another node.
    const browser = await signedInDevUser(owner, "admin", browsers);
    const v = await watch(elsewhere, await pageHeaders(browser, owner, elsewhere));
    await v.video.waitForCount(10, 20_000);
    const before = owner.sfu.viewerList().length;
    // Signed out on the third node, which never served this session's stream.
    const h = await pageHeaders(browser, owner, third);
    const out = await fetch(`${third.url}/auth/logout`, { method: "POST", headers: { ...h, accept: "application/json", "content-type": "application/x-www-form-urlencoded" }, body: "" });
    expect(out.status).toBe(200);
    await until("the stream ended on the owner", () => owner.sfu.viewerList().length === before - 1, 10_000);
    // The session is over everywhere: the owner and the other node refuse it.
    for (const n of nodes) expect((await fetch(`${n.url}/api/cameras`, { headers: { cookie: h.cookie! } })).status).toBe(401);
    // The other user's streams go on.
    expect(owner.sfu.viewerList().length).toBe(before - 1);
  }, 60_000);

  it("a back-channel logout from the provider to one node ends the user's stream on another", async () => {
    const [a, b] = nodes as [Gateway, Gateway, Gateway];
    const ids = () => new Set(nodes.flatMap((n) => n.sfu.viewerList().map((x) => x.id)));
    const known = ids();
    // Signed in at A's provider (oidc-provider, which posts its logout tokens to A alone), watching on B.
    const browser = await signedInDevUser(a, "viewer", browsers);
    const v = await watch(b, await pageHeaders(browser, a, b));
    await v.video.waitForCount(10, 20_000);
    const mine = nodes.flatMap((n) => n.sfu.viewerList()).filter((x) => !known.has(x.id) && x.user === "dev-viewer");
    expect(mine).toHaveLength(1);
    // B serves it (from the camera's RTP relayed to it): the logout must cross from A to B.
    expect(b.sfu.viewerList().map((x) => x.id)).toContain(mine[0]!.id);
    const ended = new Promise<unknown>((resolve) => mine[0]!.once("closed", resolve));
    // Sign out at the provider itself (not through any gateway): its logout page, confirmed.
    const page = await browser.follow(`${a.auth.issuer}/session/end`);
    expect(page.body).toContain("op.logoutForm");
    await browser.submitForm(page, { logout: "yes" });
    // A heard it from the provider; the stream served for B ends, and no node takes the session any more.
    expect(await ended).toBe("auth: logged_out_at_provider");
    const cookie = [...(browser.jar.get(new URL(a.url).hostname) ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
    for (const n of nodes) expect((await fetch(`${n.url}/api/cameras`, { headers: { cookie } })).status).toBe(401);
  }, 60_000);

  it("with Redis stopped, running streams go on and what needs the cluster gets 503 in plain words; when it returns, nodes catch up", async () => {
    const owner = owners()[0]!;
    const other = nodes.find((n) => n !== owner)!;
    const running = viewers[0]!;
    // A session nobody has seen yet, made on `other` while Redis runs…
    const late = await signedInDevUser(other, "viewer", browsers);
    const lateCookie = [...(late.jar.get(new URL(other.url).hostname) ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
    await rig.redis.stop();
    await until("every node sees Redis gone", () => nodes.every((n) => !n.cluster!.link.available), 10_000);

    const n0 = running.video.packets.length;
    await until("the running stream goes on", () => running.video.packets.length > n0 + 50, 10_000);

    // …is unknown to the owner, which cannot ask the cluster now: 503, plain words, cookie kept.
    const res = await fetch(`${owner.url}/api/cameras`, { headers: { cookie: lateCookie } });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("2");
    expect(((await res.json()) as { reason: string }).reason).toMatch(/Redis\) is unreachable/);
    expect(res.headers.get("set-cookie")).toBeNull();
    // A new viewer on a node that does not pull the camera cannot learn who does: 503.
    const h = await pageHeaders(late, other, other);
    const post = await fetch(`${other.url}/whep/demo`, { method: "POST", headers: { ...h, "content-type": "application/sdp" }, body: "v=0\r\n" });
    expect(post.status).toBe(503);
    expect(((await post.json()) as { reason: string }).reason).toMatch(/find the node that pulls this camera: the cluster's coordination store \(Redis\) is unreachable/);
    // Still ready for a load balancer (it serves what it serves), with the cluster reported down.
    const readyz = await fetch(`${other.url}/readyz`);
    expect(readyz.status).toBe(200);
    const ready = (await readyz.json()) as { components: Record<string, { ready: boolean; detail: string }> };
    expect(ready.components.cluster).toMatchObject({ ready: false, detail: expect.stringMatching(/Redis unreachable/) });

    // Redis back, empty (no persistence): the nodes announce themselves, the owner takes its lease
    // back, the secrets and sessions come back from the nodes, and the late session works on the owner.
    await rig.redis.start();
    await until("every node reconnected", () => nodes.every((n) => n.cluster!.link.available), 15_000);
    await until("the owner holds the camera again", async () => {
      const doc = (await (await fetch(`${other.url}/.well-known/gatehouse`)).json()) as { cluster: { nodes: unknown[] } };
      return doc.cluster.nodes.length === 3 && owner.cluster!.leases.holds("demo");
    });
    await until("the late session is known to the owner", async () => (await fetch(`${owner.url}/api/cameras`, { headers: { cookie: lateCookie } })).status === 200);
    const v = await watch(other, await pageHeaders(late, other, other));
    await v.video.waitForCount(10, 20_000);
    expect(owners()).toEqual([owner]);
    expect(rig.recorder.sessions()).toBe(1);
  }, 90_000);
});
