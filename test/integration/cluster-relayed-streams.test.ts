/**
 * A live viewer served from a relay (a camera another node of the cluster pulls) and the
 * camera's streams: three gateways in this process on a real Redis, one demo recorder (which
 * counts its RTSP sessions) for both the main and the substream. Proves that such a viewer
 * never makes its own node pull the camera: on Auto it keeps the relayed stream (no warm
 * substream held here), and a stream change by PATCH moves it to a relay of the owner's pull
 * of the asked stream, still one pull per stream for the whole cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { LoopbackRig, until } from "../peers/loopback-cluster.ts";
import { GridClient } from "../peers/werift-grid.ts";
import type { WeriftViewer } from "../peers/werift-viewer.ts";

const rig = new LoopbackRig();
const { nodes, browsers } = rig;
beforeAll(
  () => rig.start({ cameras: (url) => [{ id: "gate", url, transport: "tcp", streams: [{ id: "sub", url }] }], cluster: { forward: { mode: "forward", above: 0, silenceMs: 1000 } } }),
  60_000,
);
afterAll(() => rig.close());

/** A viewer of `gate` on the node `c` signed in at; `query` e.g. `?stream=sub`. */
const watch = (c: GridClient, query = ""): Promise<WeriftViewer> => rig.watch(c, c.headers(), `gate${query}`);

const sourceOf = (n: Gateway, v: WeriftViewer) => n.sfu.viewerList().find((x) => v.resource.endsWith(x.id))?.sourceId;

describe("relayed viewers and a camera's streams", () => {
  it("an Auto viewer on a relaying node pulls nothing there; a stream change moves it to a relay of the owner's pull of that stream", async () => {
    const [a, b] = nodes as [Gateway, Gateway];
    const onA = await GridClient.signIn(a, "admin", browsers);
    const onB = await GridClient.signIn(b, "admin", browsers);

    // An Auto viewer on A: A takes the lease, pulls the main stream and keeps the substream warm.
    const va = await watch(onA);
    await va.video.waitForCount(25);
    expect(a.cluster!.leases.holds("gate")).toBe(true);
    await until("main and sub pulled by A", () => rig.recorder.sessions() === 2);

    // An Auto viewer on B plays from a relay of A's main stream; B pulls nothing itself.
    const vb = await watch(onB);
    await vb.video.waitForCount(25);
    expect(sourceOf(b, vb)).toBe("gate@relay");
    expect(rig.recorder.sessions()).toBe(2);

    // B's viewer asks for the substream: a relay of A's substream, still two pulls in all.
    const patched = await fetch(vb.resource, { method: "PATCH", headers: { ...onB.headers(), "content-type": "application/json" }, body: JSON.stringify({ stream: "sub" }) });
    expect(patched.status, await patched.text()).toBe(202);
    await until("B's viewer on the relayed substream", () => sourceOf(b, vb)?.endsWith("@relay") === true && sourceOf(b, vb) !== "gate@relay");
    const at = vb.video.count;
    await vb.video.waitForCount(at + 25);
    expect(rig.recorder.sessions()).toBe(2);

    // And back to the main stream: the relay of A's main stream again.
    const back = await fetch(vb.resource, { method: "PATCH", headers: { ...onB.headers(), "content-type": "application/json" }, body: JSON.stringify({ stream: "main" }) });
    expect(back.status, await back.text()).toBe(202);
    await until("B's viewer back on the relayed main stream", () => sourceOf(b, vb) === "gate@relay");
    expect(rig.recorder.sessions()).toBe(2);
  }, 90_000);
});
