/**
 * The supervisor restarts the SIP server's UDP socket in place, through the same policy as
 * TURN, cameras and media workers, on a whole gateway with baresip as the door station:
 *  - the socket closed under the gateway is rebound on its port after the backoff; a door
 *    registers over UDP again (200 to its REGISTER);
 *  - a socket that keeps being lost is restarted N times in the window, then SIP is disabled
 *    with its reason (no loop), shown in the supervision API and /readyz; an administrator
 *    enables it and doors register again.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { sipOptionsProbe } from "../../gateway/supervision/probes.ts";
import type { SupervisionEvent } from "../../gateway/supervision/supervisor.ts";
import { Baresip, tone, wav } from "../peers/baresip.ts";

const PASSWORD = "door-secret-restart-1";
const MAX_RESTARTS = 2;

let gw: Gateway;
const doors: Baresip[] = [];

beforeAll(async () => {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  gw = await startGateway({
    config: parseConfig(
      {
        server: { host: "127.0.0.1", port: 0 },
        auth: { mode: "none" },
        demo: { enabled: false },
        log: { level: "silent" },
        sip: {
          enabled: true,
          bindAddress: "127.0.0.1",
          udp: { port: 0 },
          tcp: { enabled: false },
          keepAliveSeconds: 0,
          rtpPortRange: [base, base + 99],
          devices: [{ id: "door1", name: "Front door", username: "door1", password: PASSWORD }],
        },
        // Health checks rarely (they would also restart it): the socket's loss is what is tested.
        supervision: { maxRestarts: MAX_RESTARTS, windowSeconds: 600, backoffMinMs: 400, backoffMaxMs: 2000, checkIntervalSeconds: 3600 },
      },
      {},
    ),
    log: silentLogger,
  });
}, 60_000);

afterEach(async () => {
  for (const d of doors.splice(0)) await d.close();
});

afterAll(async () => {
  await gw?.close("test done");
});

/** Resolves with the first supervision event of SIP that `ok` takes (registered before the action). */
function nextSipEvent(ok: (e: SupervisionEvent) => boolean, timeoutMs = 20_000): Promise<SupervisionEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no such SIP event; last ${JSON.stringify(gw.supervisor.recent().filter((e) => e.component === "sip").slice(-3))}`));
    }, timeoutMs);
    const off = gw.supervisor.events.on("event", (e) => {
      if (e.component !== "sip" || !ok(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** A door station registers over UDP and is answered 200. */
async function doorRegisters(port: number): Promise<void> {
  const door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${port}`, microphone: wav(tone(440, 1)) });
  doors.push(door);
  await door.waitFor(/registered successfully/, 20_000);
}

async function readyz(): Promise<Record<string, { ready: boolean; detail: string }>> {
  return ((await (await fetch(`${gw.url}/readyz`)).json()) as { components: Record<string, { ready: boolean; detail: string }> }).components;
}

describe("supervision restarts SIP's UDP socket in place", () => {
  it("rebinds the UDP socket closed under the gateway on its port; baresip registers again", async () => {
    const port = gw.sip!.ports.udp!;
    await doorRegisters(port);

    const recovered = nextSipEvent((e) => e.type === "recovered");
    const t0 = Date.now();
    expect(gw.sip!.injectUdpFault()).toBe(true);
    expect(gw.supervisor.status("sip")).toMatchObject({ state: "restarting", failures: 1, restarts: 1 });
    // Nothing answers on the port until the restart.
    expect((await sipOptionsProbe("127.0.0.1", port, 200)).ok).toBe(false);
    await recovered;
    console.info(`SIP UDP socket rebound ${Date.now() - t0} ms after it was closed (backoff 400 ms)`);
    expect(gw.sip!.ports.udp).toBe(port);
    expect(gw.supervisor.status("sip")).toMatchObject({ state: "ok", restarts: 1 });
    expect(gw.supervisor.recent().filter((e) => e.component === "sip").map((e) => [e.type, e.reason])).toEqual([
      ["failed", `UDP socket ${port}: the socket closed`],
      ["restarting", `attempt 1 of ${MAX_RESTARTS} in 10 min, in 400 ms`],
      ["recovered", "restarted"],
    ]);
    await doorRegisters(port);
  }, 90_000);

  it("a socket that keeps being lost is restarted N times in the window, then disabled with its reason (no loop), and enabled by an administrator", async () => {
    const port = gw.sip!.ports.udp!;
    let faults = 0;
    for (;;) {
      const next = nextSipEvent((e) => e.type === "recovered" || e.type === "disabled");
      expect(gw.sip!.injectUdpFault()).toBe(true);
      faults++;
      if ((await next).type === "disabled") break;
      expect(faults).toBeLessThanOrEqual(MAX_RESTARTS);
    }
    // The first test's loss is in the same window: MAX_RESTARTS restarts in all, the next loss disables it.
    expect(faults).toBe(MAX_RESTARTS);
    const st = gw.supervisor.status("sip")!;
    expect(st).toMatchObject({ state: "disabled", canEnable: true, restarts: MAX_RESTARTS });
    expect(st.reason).toBe(`${MAX_RESTARTS + 1} failures in 10 min: UDP socket ${port}: the socket closed`);
    expect((await sipOptionsProbe("127.0.0.1", port, 300)).ok).toBe(false);
    const api = (await (await fetch(`${gw.url}/api/admin/supervision`)).json()) as { components: { id: string; state: string; reason: string }[] };
    expect(api.components.find((c) => c.id === "sip")).toMatchObject({ state: "disabled", reason: st.reason });
    expect((await readyz()).sip).toMatchObject({ ready: false });

    const res = await fetch(`${gw.url}/api/admin/supervision/components/sip/enable`, { method: "POST" });
    expect(res.status).toBe(200);
    await expect.poll(async () => (await sipOptionsProbe("127.0.0.1", port, 300)).ok, { timeout: 10_000 }).toBe(true);
    expect(gw.supervisor.status("sip")).toMatchObject({ state: "ok" });
    await doorRegisters(port);
  }, 90_000);
});
