/**
 * Sessions after a Redis outage: a session made on one node before Redis restarted (empty) must
 * become usable on every node once Redis is back, even when a write of the catch-up fails right
 * after Redis returns (a loaded machine times a command out; Redis refuses while it loads). Before,
 * such a write waited for the next "Redis back" event, which never came: the session stayed
 * unknown to the others (401 "sign-in required") and every later session made on that node too.
 * Three gateways in this process on a real Redis (Debian's redis-server), stopped and restarted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { cookieOf, LoopbackRig, until } from "../peers/loopback-cluster.ts";
import { signedInDevUser } from "../peers/oidc.ts";

const rig = new LoopbackRig();
const { nodes, browsers } = rig;
beforeAll(() => rig.start({ cameras: () => [] }), 60_000);
afterAll(() => rig.close());

const camerasStatus = async (node: Gateway, cookie: string) => (await fetch(`${node.url}/api/cameras`, { headers: { cookie, accept: "application/json" } })).status;

describe("sessions after Redis restarts empty", () => {
  it("a session made on node 3 before the outage works on node 1 although a catch-up write failed once; later sessions are shared too", async () => {
    const [n1, , n3] = nodes as [Gateway, Gateway, Gateway];
    const late = await signedInDevUser(n3, "viewer", browsers);
    const lateCookie = cookieOf(late, n3);

    await rig.redis.stop();
    await until("every node sees Redis gone", () => nodes.every((n) => !n.cluster!.link.available), 10_000);
    // Node 1 has never seen the session and cannot ask the cluster: 503 (not 401), and this answer is not remembered.
    const refused = await fetch(`${n1.url}/api/cameras`, { headers: { cookie: lateCookie, accept: "application/json" } });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("2");

    // A session made on node 3 during the outage (its development sign-in needs no Redis).
    const during = await signedInDevUser(n3, "viewer", browsers);
    const duringCookie = cookieOf(during, n3);

    // The first time node 3 shares a session once Redis is back, the write fails (as a timed-out
    // command would): on purpose, not by luck.
    const link = n3.cluster!.link;
    const run = link.run.bind(link);
    let failed = 0;
    let blocked = true;
    link.run = (async (what: string, fn: Parameters<typeof run>[1]) => {
      if (what === "share the session" && blocked) {
        failed++;
        throw new Error("injected: the write timed out");
      }
      return run(what, fn);
    }) as typeof link.run;

    await rig.redis.start();
    await until("every node reconnected", () => nodes.every((n) => n.cluster!.link.available), 15_000);
    await until("node 3 tried to share the session again and the write failed", () => failed >= 1, 10_000);
    // Meanwhile Redis does not have the session yet: node 1 says "try again", it does not end the
    // session (a 401 would clear the cookie and sign the user out for good).
    const catchingUp = await fetch(`${n1.url}/api/cameras`, { headers: { cookie: lateCookie, accept: "application/json" } });
    expect(catchingUp.status).toBe(503);
    expect(((await catchingUp.json()) as { reason: string }).reason).toMatch(/catching up/);
    expect(catchingUp.headers.get("set-cookie")).toBeNull();
    blocked = false;
    let last = 0;
    await until("the late session made on node 3 works on node 1", async () => (last = await camerasStatus(n1, lateCookie)) === 200, 15_000).catch(() => {});
    expect(last, "node 1's answer to the session made on node 3 before the outage").toBe(200);
    // The session made on node 3 while Redis was down (kept there, queued for the cluster) works on node 1 too.
    expect(await camerasStatus(n1, duringCookie)).toBe(200);

    // A session made on node 3 after the outage is usable on node 1 as well (nothing stuck behind the failed write).
    const after = await signedInDevUser(n3, "viewer", browsers);
    const afterCookie = cookieOf(after, n3);
    expect(await camerasStatus(n1, afterCookie)).toBe(200);
  }, 90_000);
});
