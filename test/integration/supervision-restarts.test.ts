/**
 * The supervisor restarts TURN in place, through the same policy as cameras and media
 * workers, on a whole gateway with coturn's real client (`turnutils_uclient`, echo peer
 * `turnutils_peer`):
 *  - the TURN UDP listener closed under the gateway is rebound on its port after the
 *    backoff, and the client allocates and relays again, without loss;
 *  - a listener lost again and again is restarted N times in the window, then left disabled
 *    with its reason (no loop), shown in the supervision API and /readyz; an administrator
 *    enables it and the client relays again.
 * A restart that itself fails (the port taken) counts as a failure: test/unit/supervision-restartable.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { stunProbe } from "../../gateway/supervision/probes.ts";
import type { SupervisionEvent } from "../../gateway/supervision/supervisor.ts";
import { runUclient, startTurnutilsPeer, type TurnutilsPeer } from "../peers/coturn.ts";

const SECRET = "supervision-restart-secret-0123456789";
const MAX_RESTARTS = 2;

let gw: Gateway;
let peer: TurnutilsPeer;

beforeAll(async () => {
  peer = await startTurnutilsPeer();
  gw = await startGateway({
    config: parseConfig(
      {
        server: { host: "127.0.0.1", port: 0 },
        auth: { mode: "none" },
        demo: { enabled: false },
        log: { level: "silent" },
        turn: {
          enabled: true,
          secret: SECRET,
          udp: [{ host: "127.0.0.1", port: 0 }],
          relay: { address: "127.0.0.1", portRange: [0, 0] },
          peers: { allow: ["127.0.0.1"] },
        },
        // Health checks rarely (they would also restart it): the listener's loss is what is tested.
        supervision: { maxRestarts: MAX_RESTARTS, windowSeconds: 600, backoffMinMs: 400, backoffMaxMs: 2000, checkIntervalSeconds: 3600 },
      },
      {},
    ),
    log: silentLogger,
  });
}, 60_000);

afterAll(async () => {
  await gw?.close("test done");
  await peer?.close();
});

/** Resolves with the first supervision event of TURN that `ok` takes (registered before the action). */
function nextTurnEvent(ok: (e: SupervisionEvent) => boolean, timeoutMs = 20_000): Promise<SupervisionEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no such TURN event; last ${JSON.stringify(gw.supervisor.recent().filter((e) => e.component === "turn").slice(-3))}`));
    }, timeoutMs);
    const off = gw.supervisor.events.on("event", (e) => {
      if (e.component !== "turn" || !ok(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

async function relaysWithoutLoss(port: number): Promise<void> {
  const r = await runUclient({ transport: "udp", port, secret: SECRET, peerPort: peer.port, messages: 40, intervalMs: 5, timeoutMs: 30_000 });
  expect(r.exitCode, r.tail).toBe(0);
  expect(r.sentMessages, r.tail).toBe(40);
  expect(r.receivedMessages, r.tail).toBe(40);
  expect(r.lostPackets, r.tail).toBe(0);
}

async function readyz(): Promise<Record<string, { ready: boolean; detail: string }>> {
  return ((await (await fetch(`${gw.url}/readyz`)).json()) as { components: Record<string, { ready: boolean; detail: string }> }).components;
}

describe("supervision restarts TURN in place", () => {
  it("rebinds a UDP listener closed under the gateway on its port; coturn's client allocates again", async () => {
    const port = gw.turn!.udp[0]!.port;
    await relaysWithoutLoss(port);

    const recovered = nextTurnEvent((e) => e.type === "recovered");
    const t0 = Date.now();
    expect(gw.turn!.injectUdpListenerFault(0)).toBe(true);
    expect(gw.supervisor.status("turn")).toMatchObject({ state: "restarting", failures: 1, restarts: 1 });
    // Nothing answers on the port until the restart.
    expect((await stunProbe("127.0.0.1", port, 200)).ok).toBe(false);
    await recovered;
    console.info(`TURN UDP listener rebound ${Date.now() - t0} ms after it was closed (backoff 400 ms)`);
    expect(gw.turn!.udp[0]!.port).toBe(port);
    expect(gw.supervisor.status("turn")).toMatchObject({ state: "ok", restarts: 1 });
    expect(gw.supervisor.recent().filter((e) => e.component === "turn").map((e) => [e.type, e.reason])).toEqual([
      ["failed", `UDP listener ${port}: the UDP listener was closed`],
      ["restarting", `attempt 1 of ${MAX_RESTARTS} in 10 min, in 400 ms`],
      ["recovered", "restarted"],
    ]);
    await relaysWithoutLoss(port);
  }, 90_000);

  it("a listener that keeps being lost is restarted N times in the window, then disabled with its reason (no loop), and enabled by an administrator", async () => {
    const port = gw.turn!.udp[0]!.port;
    // Lost again each time it is back, until the policy gives up.
    let faults = 0;
    for (;;) {
      const next = nextTurnEvent((e) => e.type === "recovered" || e.type === "disabled");
      expect(gw.turn!.injectUdpListenerFault(0)).toBe(true);
      faults++;
      if ((await next).type === "disabled") break;
      expect(faults).toBeLessThanOrEqual(MAX_RESTARTS);
    }
    // The first test's loss is in the same window: MAX_RESTARTS restarts in all, the next loss disables it.
    expect(faults).toBe(MAX_RESTARTS);
    const st = gw.supervisor.status("turn")!;
    expect(st).toMatchObject({ state: "disabled", canEnable: true, restarts: MAX_RESTARTS });
    expect(st.reason).toBe(`${MAX_RESTARTS + 1} failures in 10 min: UDP listener ${port}: the UDP listener was closed`);
    expect(st.disabledUntil! - Date.now()).toBeGreaterThan(500_000);
    const types = gw.supervisor.recent().filter((e) => e.component === "turn").map((e) => e.type);
    expect(types).toEqual(["failed", "restarting", "recovered", "failed", "restarting", "recovered", "failed", "disabled"]);
    // Not restarted: nothing answers on the port.
    expect((await stunProbe("127.0.0.1", port, 300)).ok).toBe(false);
    // Shown to administrators and to the load balancer.
    const api = (await (await fetch(`${gw.url}/api/admin/supervision`)).json()) as { components: { id: string; state: string; reason: string }[] };
    expect(api.components.find((c) => c.id === "turn")).toMatchObject({ state: "disabled", reason: st.reason });
    expect((await readyz()).turn).toMatchObject({ ready: false });

    // An administrator enables TURN: rebound on its port, relaying.
    const res = await fetch(`${gw.url}/api/admin/supervision/components/turn/enable`, { method: "POST" });
    expect(res.status).toBe(200);
    await expect.poll(async () => (await stunProbe("127.0.0.1", port, 300)).ok, { timeout: 10_000 }).toBe(true);
    expect(gw.supervisor.status("turn")).toMatchObject({ state: "ok" });
    expect(gw.supervisor.recent().filter((e) => e.component === "turn").at(-1)).toMatchObject({ type: "enabled", reason: "enabled by an administrator" });
    await relaysWithoutLoss(port);
  }, 90_000);
});
