/**
 * A grid tile in Chromium whose camera moves to another gateway node: three gateways of a cluster
 * in this process on a real Redis (test/peers/loopback-cluster.ts), forwarding mode `forward`. Node A
 * pulls the camera (a WHEP viewer there); the page, the live view as it opens by default (its grid
 * over one peer connection), talks to node B, where its slot plays from a relay of A's pull. A
 * leaves the cluster.
 * - The tile says "Moving" / "Camera moving to another gateway…", never Live before a frame decoded
 *   after the notice, and plays again on the same connection and session, with no new bind (the
 *   relay finds the camera's new owner).
 * - With a window shorter than the move (`?movingGiveUpMs=`, default 20 s), the page binds the slot
 *   again (DELETE, then PUT of that slot) when no picture came within it, and the tile plays again,
 *   still on the same connection.
 */
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/gateway.ts";
import { launchChromium, pageErrors, waitForNewFrames, type Chromium } from "../peers/chromium.ts";
import { signInPage } from "../peers/cluster-node.ts";
import { LoopbackRig, pageHeaders, until } from "../peers/loopback-cluster.ts";
import { signedInDevUser } from "../peers/oidc.ts";

const MOVING = "Camera moving to another gateway…";

interface Said {
  label: string;
  message: string;
  /** A slot request the page made (its method), logged in the same order as what the tile said. */
  request?: string;
  at: number;
}

/**
 * Records, in the page and in one order, every label and message the page's one tile shows (from
 * what it shows now, on each change of its DOM) and every slot request the page makes.
 */
async function recordTile(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __said: Said[] };
    w.__said = [];
    const el = document.querySelector("[data-camera]")!;
    let last: Said | undefined;
    const note = () => {
      const now = { label: el.querySelector(".badge-text")?.textContent ?? "", message: el.querySelector(".tile-message")?.textContent ?? "", at: Date.now() };
      if (last && last.label === now.label && last.message === now.message) return;
      last = now;
      w.__said.push(now);
    };
    note();
    new MutationObserver(note).observe(el, { subtree: true, childList: true, characterData: true });
    const fetchNow = window.fetch;
    window.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (/\/grid\/[^/]+\/slots/.test(new URL(url, location.href).pathname)) {
        w.__said.push({ label: "", message: "", request: (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase(), at: Date.now() });
      }
      return fetchNow.call(window, input, init);
    };
  });
}

const said = (page: Page) => page.evaluate(() => (window as unknown as { __said: Said[] }).__said);

/** The page's peer connections (ids as made) and its grid session's resource. */
const connections = (page: Page) =>
  page.evaluate(() => {
    const w = window as unknown as { __gh: { pcs(): (RTCPeerConnection & { __ghId: number })[] }; gatehouse: { grid(): { resource: string | null; state: string } | null } };
    return { pcs: w.__gh.pcs().map((p) => p.__ghId), session: w.gatehouse.grid()?.resource ?? null, state: w.gatehouse.grid()?.state ?? null };
  });

describe.each([
  { title: "the picture comes back within the window: the tile says the camera moves, then plays on without a new bind", query: "", rebind: false },
  // 10 ms: the new owner may already pull when the relay's silence ends (A left gracefully and
  // released the camera at once), and the picture may come back within a few tens of ms.
  { title: "no picture within the window (?movingGiveUpMs=10): the page binds the slot again, and the tile plays", query: "?movingGiveUpMs=10", rebind: true },
])("a grid tile's camera moves to another node (Chromium, three nodes in this process): $title", ({ query, rebind }) => {
  const rig = new LoopbackRig();
  let chromium: Chromium;
  // A loaded machine may stall a node's heartbeat past a short TTL (another node would take the camera over).
  beforeAll(async () => {
    await rig.start({ cluster: { nodeTtlMs: 5000, forward: { mode: "forward", above: 0, silenceMs: 1000 } } });
    chromium = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await chromium?.close();
    await rig.close();
  });

  it("Moving, then Live again on the same connection", async () => {
    const [a, b] = rig.nodes as [Gateway, Gateway, Gateway];
    // A pulls the camera: it has a viewer there.
    const browser = await signedInDevUser(a, "viewer", rig.browsers);
    const va = await rig.watch(a, await pageHeaders(browser, a, a));
    await va.video.waitForCount(10, 20_000);
    expect(a.cluster!.leases.holds("demo")).toBe(true);

    const page = await chromium.newPage();
    const passwords = new Map(b.auth.devUsers!.map((u) => [u.username, u.password]));
    await signInPage(page, { url: b.url, passwords }, "viewer", `/${query}`);
    await waitForNewFrames(page, 10, 30_000);
    await until("the tile to be Live", async () => (await page.$eval("[data-camera]", (el) => (el as HTMLElement).dataset.status)) === "live", 20_000);
    // B shows the camera in a slot of the page's one session, from a relay of A's pull.
    expect(b.sfu.sessionList()).toHaveLength(1);
    expect(b.sfu.sessionList()[0]!.slots().find((s) => s.kind === "video")?.camera).toBe("demo@relay");
    const before = await connections(page);
    expect(before.pcs).toHaveLength(1);
    await recordTile(page);

    const leftAt = Date.now();
    await a.close("owner leaves");
    rig.nodes.splice(0, 1);
    // The tile says so, then plays again: frames decoded after the notice, Live.
    await until("the tile to say the camera moves", async () => (await said(page)).some((x) => x.message === MOVING), 15_000);
    await waitForNewFrames(page, 20, 30_000);
    await until("the tile to be Live again", async () => (await said(page)).filter((x) => !x.request).at(-1)?.label === "Live", 20_000);
    const log = await said(page);
    const shown = log.filter((x) => !x.request);
    const requests = log.filter((x) => x.request);
    const movingAt = shown.findIndex((x) => x.message === MOVING);
    console.info(`grid tile: ${log.map((x) => `${x.request ?? x.label}${x.message ? ` "${x.message}"` : ""} +${x.at - leftAt} ms`).join(", ")}`);
    // Never Live between the notice and a picture after it (the last entry is Live again); the badge
    // says Moving meanwhile (Connecting while a slot is bound again, the message unchanged).
    const liveAgain = shown.findIndex((x, i) => i > movingAt && x.label === "Live");
    expect(liveAgain).toBeGreaterThan(movingAt);
    expect(shown.slice(movingAt, liveAgain).every((x) => x.label !== "Live")).toBe(true);
    expect(shown.slice(movingAt, liveAgain).some((x) => x.label === "Moving")).toBe(true);
    // The same connection and session throughout.
    const after = await connections(page);
    expect(after).toEqual({ ...before, state: "connected" });
    if (rebind) {
      // The slot bound again once the window passed without a picture, after the tile said why: its
      // DELETE, then its PUT (again if the new owner's relay fell silent once more meanwhile).
      expect(requests.map((r) => r.request).join(" ")).toMatch(/^DELETE PUT( DELETE PUT)*$/);
      expect(log.indexOf(requests[0]!)).toBeGreaterThan(log.findIndex((x) => x.message === MOVING));
    } else expect(requests).toEqual([]);
    // (The page's requests before its sign-in are refused, and logged by the browser as failed loads.)
    expect(pageErrors(page).filter((e) => !/status of 401/.test(e))).toEqual([]);
    await page.close();
  }, 120_000);
});
