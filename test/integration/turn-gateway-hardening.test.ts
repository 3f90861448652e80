/**
 * The relay on the whole gateway (development sign-in, TURN and SIP enabled), as a signed-in
 * viewer uses it with the credentials the WHEP Link headers hand out:
 * - the relay reaches the gateway's address on its media ports only: ChannelBind and Send to
 *   the SIP port, the TURN port or the HTTP port are refused;
 * - relay access ends with the session: sign-out and an administrator's revocation close the
 *   session's allocations and refuse its credentials, for a new Allocate too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { MessageClass } from "../../turn/stun/constants.ts";
import type { HttpBrowser} from "../peers/oidc.ts";
import { signedInDevUser } from "../peers/oidc.ts";
import { codeOf, reasonOf, TurnTestClient } from "../peers/turn-client.ts";

let gw: Gateway;
let mediaBase: number;
const browsers: HttpBrowser[] = [];
const clients: TurnTestClient[] = [];

beforeAll(async () => {
  mediaBase = 41000 + 100 * Math.floor(Math.random() * 200);
  gw = await startGateway({
    config: parseConfig(
      {
        server: { host: "127.0.0.1", port: 0 },
        auth: { mode: "dev" },
        log: { level: "silent" },
        media: { icePortRange: [mediaBase, mediaBase + 99] },
        turn: { enabled: true, secret: "gateway-hardening-secret-0123", udp: [{ host: "127.0.0.1", port: 0 }], relay: { address: "127.0.0.1", portRange: [0, 0] } },
        sip: { enabled: true, udp: { port: 0 }, tcp: { port: 0 }, keepAliveSeconds: 0, rtpPortRange: [mediaBase + 100, mediaBase + 109] },
      },
      {},
    ),
    log: silentLogger,
  });
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const b of browsers) b.close();
  await gw?.close("test done");
});

const signedIn = (user: "admin" | "viewer"): Promise<HttpBrowser> => signedInDevUser(gw, user, browsers);

/** TURN credentials from the WHEP OPTIONS Link headers, as the web client gets them. */
async function turnCredentials(b: HttpBrowser): Promise<{ username: string; password: string }> {
  const r = await b.request(`${gw.url}/whep/demo`, { method: "OPTIONS" });
  expect(r.status).toBe(204);
  const link = r.headers.get("link") ?? "";
  const m = /username="([^"]+)"; credential="([^"]+)"/.exec(link);
  expect(m, link).not.toBeNull();
  return { username: m![1]!, password: m![2]! };
}

async function client(transport: "udp" | "tcp", creds: { username: string; password: string }): Promise<TurnTestClient> {
  const port = transport === "udp" ? gw.turn!.udp[0]!.port : gw.httpPort; // TCP shares the HTTP port
  const c = await TurnTestClient.connect({ transport, host: "127.0.0.1", port, ...creds });
  clients.push(c);
  return c;
}

async function csrfHeaders(b: HttpBrowser): Promise<Record<string, string>> {
  const me = await b.request(`${gw.url}/auth/me`, { headers: { accept: "application/json" } });
  return { accept: "application/json", origin: gw.url, "x-csrf-token": (JSON.parse(me.body) as { csrfToken: string }).csrfToken };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

describe("the relay reaches every UDP port of the gateway's media address", () => {
  it("a signed-in viewer's allocation cannot ChannelBind or Send to the gateway's SIP, TURN or HTTP port; media ports are fine", async () => {
    const viewer = await signedIn("viewer");
    const c = await client("udp", await turnCredentials(viewer));
    expect((await c.allocate()).cls).toBe(MessageClass.Success);
    expect((await c.createPermission("127.0.0.1")).cls).toBe(MessageClass.Success); // permissions are per IP
    const sip = gw.sip!;
    const ports = { sip: sip.ports.udp!, turn: gw.turn!.udp[0]!.port, http: gw.httpPort, sipTcp: sip.ports.tcp! };
    let channel = 0x4000;
    for (const [what, port] of Object.entries(ports)) {
      const m = await c.channelBind(channel++, "127.0.0.1", port);
      expect([what, codeOf(m), reasonOf(m)]).toEqual([what, 403, "Peer port-not-allowed"]);
    }
    expect((await c.channelBind(channel, "127.0.0.1", mediaBase + 7)).cls).toBe(MessageClass.Success);
    // Send indications to the SIP port are dropped before they leave the relay.
    const before = { denials: gw.turn!.metrics.peerDenials, sipIn: sip.stats().transport.datagramsIn, toPeer: gw.turn!.metrics.packetsToPeer };
    for (let i = 0; i < 3; i++) c.send("127.0.0.1", ports.sip, Buffer.from(`OPTIONS sip:gate@127.0.0.1 SIP/2.0\r\nCall-ID: x${i}\r\n\r\n`));
    const t0 = Date.now();
    while (gw.turn!.metrics.peerDenials < before.denials + 3 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    expect(gw.turn!.metrics.peerDenials).toBe(before.denials + 3);
    expect(gw.turn!.metrics.packetsToPeer).toBe(before.toPeer);
    expect(sip.stats().transport.datagramsIn).toBe(before.sipIn);
  });
});

describe("relay access outlives the session", () => {
  it("sign-out closes the session's allocations (UDP and TCP) and refuses its credentials; another session of the same user keeps its relay", async () => {
    const viewer = await signedIn("viewer");
    const creds = await turnCredentials(viewer);
    expect(creds.username).toMatch(/^\d+:dev-viewer#[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{8}$/);
    const otherSession = await signedIn("viewer");
    const kept = await client("udp", await turnCredentials(otherSession));
    expect((await kept.allocate()).cls).toBe(MessageClass.Success);
    const udp = await client("udp", creds);
    const tcp = await client("tcp", creds);
    expect((await udp.allocate()).cls).toBe(MessageClass.Success);
    expect((await tcp.allocate()).cls).toBe(MessageClass.Success);
    const before = gw.turn!.core.allocationCount;

    const out = await viewer.request(`${gw.url}/auth/logout`, { method: "POST", headers: await csrfHeaders(viewer) });
    expect(out.status).toBe(200);
    await within(tcp.closed, 3000, "the TCP allocation's connection ends with the session");
    expect(gw.turn!.core.allocationCount).toBe(before - 2);
    for (const m of [await udp.refresh(), await udp.createPermission("127.0.0.1"), await udp.channelBind(0x4000, "127.0.0.1", mediaBase + 1)]) {
      expect([codeOf(m), reasonOf(m)]).toEqual([401, "Session Ended"]);
    }
    const again = await client("udp", creds);
    const m = await again.allocate();
    expect([codeOf(m), reasonOf(m)]).toEqual([401, "Session Ended"]);
    expect((await kept.refresh()).cls).toBe(MessageClass.Success);
  });

  it("an administrator ending all of a user's sessions closes their allocations and refuses their credentials", async () => {
    const admin = await signedIn("admin");
    const viewer = await signedIn("viewer");
    const creds = await turnCredentials(viewer);
    const c = await client("udp", creds);
    expect((await c.allocate()).cls).toBe(MessageClass.Success);
    const r = await admin.request(`${gw.url}/api/admin/users/dev-viewer/sessions`, { method: "DELETE", headers: await csrfHeaders(admin) });
    expect(r.status).toBe(200);
    expect(gw.turn!.core.listAllocations().some((a) => a.username === creds.username)).toBe(false);
    const m = await c.refresh();
    expect([codeOf(m), reasonOf(m)]).toEqual([401, "Session Ended"]);
    const fresh = await client("udp", creds);
    expect(reasonOf(await fresh.allocate())).toBe("Session Ended");
  });
});
