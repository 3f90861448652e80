/**
 * Three gateways as one cluster on a real Redis, behind one public address (a load balancer's,
 * `server.publicUrl`), each reachable by the others at its own 127.0.0.x address. Proves: the
 * public discovery document names no node's internal address, an administrator sees them; an
 * `alwaysOn` camera is pulled by the node holding its lease only (the recorder counts one
 * session), and by another node once that one leaves.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { LoopbackRig, until } from "../peers/loopback-cluster.ts";

/** A loopback name (sign-in is off, which only runs on loopback), never listened on: what clients are told. */
const PUBLIC_URL = "http://localhost:9443";
const rig = new LoopbackRig();
const { nodes } = rig;
beforeAll(
  () => rig.start({ server: { publicUrl: PUBLIC_URL }, auth: { mode: "none" }, idleStopSeconds: 1, cameras: (url) => [{ id: "gate", name: "Gate", url, transport: "tcp", alwaysOn: true }] }),
  60_000,
);
afterAll(() => rig.close());

const live = () => nodes.filter((n) => !closed.has(n));
const closed = new Set<Gateway>();
const holders = () => live().filter((n) => n.cluster!.leases.holds("gate"));
/** The node's ingest of the camera (idle, connecting, playing…). */
const ingestState = (n: Gateway) => n.cameras.status("gate")?.state;

describe("a cluster behind one public address", () => {
  it("lists its nodes publicly without their internal addresses; an administrator sees them", async () => {
    await until("three nodes in every listing", () => nodes.every((n) => n.cluster!.nodes.nodes.length === 3));
    const internalUrls = nodes.map((n) => n.cluster!.nodeUrl);
    for (const u of internalUrls) expect(u).toMatch(/^http:\/\/127\.0\.0\.[234]:\d+$/);
    const res = await fetch(`${nodes[0]!.cluster!.nodeUrl}/.well-known/gatehouse`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const doc = JSON.parse(text) as { url: string; cluster: { nodes: Array<{ id: string; url?: string; endpoints: { whep: string } }> } };
    expect(doc.url).toBe(PUBLIC_URL);
    expect(doc.cluster.nodes.map((n) => n.id).sort()).toEqual(["node-1", "node-2", "node-3"]);
    for (const n of doc.cluster.nodes) {
      expect(n.url).toBeUndefined();
      expect(n.endpoints.whep).toBe(`${PUBLIC_URL}/whep`);
    }
    // Not one internal address anywhere in the public document.
    expect(text).not.toMatch(/127\.0\.0\.[234]/);

    const admin = await fetch(`${nodes[1]!.cluster!.nodeUrl}/api/admin/cluster`);
    expect(admin.status).toBe(200);
    const view = (await admin.json()) as { node: string; nodes: Array<{ id: string; url: string; owns: string[] }> };
    expect(view.node).toBe("node-2");
    expect(view.nodes.map((n) => n.url).sort()).toEqual([...internalUrls].sort());
  });

  it("pulls an alwaysOn camera from the lease holder only, and from another node once it leaves", async () => {
    await until("one node pulls the camera", () => holders().length === 1 && ingestState(holders()[0]!) === "playing" && rig.recorder.sessions() === 1);
    const owner = holders()[0]!;
    // Every other node has looked for the lease since (each renews its view of the listing every
    // heartbeat and tries for the lease every third of leaseMs) and found it held: they stay idle.
    const others = nodes.filter((n) => n !== owner);
    const beats = others.map((n) => n.cluster!.nodes.nodes.find((x) => x.id === n.cluster!.nodeId)!.heartbeatAt);
    await until("two heartbeats of the other nodes", () => others.every((n, i) => (n.cluster!.nodes.nodes.find((x) => x.id === n.cluster!.nodeId)?.heartbeatAt ?? 0) > beats[i]! + 600));
    for (const n of others) expect(ingestState(n)).toBe("idle");
    expect(rig.recorder.sessions()).toBe(1);
    const listed = (await (await fetch(`${others[0]!.cluster!.nodeUrl}/api/admin/cluster`)).json()) as { nodes: Array<{ id: string; owns: string[] }> };
    expect(listed.nodes.find((n) => n.id === owner.cluster!.nodeId)?.owns).toEqual(["gate"]);

    // The holder leaves (its lease is given back): another node takes the camera and pulls it, once.
    closed.add(owner);
    await owner.close("leaving the cluster");
    await until("another node pulls the camera", () => holders().length === 1 && ingestState(holders()[0]!) === "playing" && rig.recorder.sessions() === 1, 20_000);
    const next = holders()[0]!;
    expect(next).not.toBe(owner);
    for (const n of live()) if (n !== next) expect(ingestState(n)).toBe("idle");
  }, 60_000);
});
