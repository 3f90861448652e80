/**
 * Nothing leaves the host unless the configuration says so: a whole gateway (media workers,
 * TURN on UDP and on the front door's TCP port, SIP with a door talking to a browser) serves
 * real peers under the test network guard (test/guard/), and not one name lookup or packet
 * off this host is refused.
 *
 * Before the fix, werift's ICE agents fell back to the public STUN server
 * stun.l.google.com:19302: each WHEP viewer (in the media worker threads), each intercom talk
 * peer and each werift test peer asked the system resolver for that name.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RTCIceServer } from "werift";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { formatRefusals, readRefusals } from "../guard/records.ts";
import { GUARD_FILE_ENV } from "../guard/net-guard.ts";
import { Baresip, tone, wav } from "../peers/baresip.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";
import { cookieHeader, GatewayClient, WeriftBrowserPhone } from "./intercom-support.ts";

const PASSWORD = "door-secret-egress";

let gw: Gateway;
let door: Baresip | undefined;
let browser: HttpBrowser;
let client: GatewayClient;
const cleanups: Array<() => unknown> = [];

/** Refusals of this file: this process and the threads and children it started. */
function refusedHere() {
  const file = process.env[GUARD_FILE_ENV];
  return readRefusals().filter((r) => r.pid === process.pid || (file !== undefined && r.file === file));
}

/** The TURN servers the gateway hands this signed-in user (WHEP OPTIONS Link headers), by transport. */
async function turnServers(headers: Record<string, string>): Promise<Map<string, RTCIceServer>> {
  const res = await fetch(`${gw.url}/whep/demo`, { method: "OPTIONS", headers });
  expect(res.status).toBe(204);
  const out = new Map<string, RTCIceServer>();
  for (const link of (res.headers.get("link") ?? "").split(/,\s*(?=<)/)) {
    const m = /^<(turns?:[^>]+)>.*username="([^"]+)".*credential="([^"]+)"/.exec(link);
    if (!m) continue;
    const url = m[1]!;
    const transport = url.startsWith("turns:") ? "tls" : (/transport=(\w+)/.exec(url)?.[1] ?? "udp");
    out.set(transport, { urls: url, username: m[2]!, credential: m[3]! });
  }
  return out;
}

beforeAll(async () => {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  gw = await startGateway({
    config: parseConfig(
      {
        server: { host: "127.0.0.1", port: 0 },
        auth: { mode: "dev", rights: [{ role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] }] },
        demo: { enabled: true },
        log: { level: "warn" },
        // Viewers' peers live in a media worker thread, as in production.
        media: { workers: 1 },
        turn: {
          enabled: true,
          secret: "no-egress-turn-secret-0123456789",
          udp: [{ host: "127.0.0.1", port: 0 }],
          relay: { address: "127.0.0.1", portRange: [0, 0] },
        },
        sip: {
          enabled: true,
          udp: { port: 0 },
          tcp: { port: 0 },
          keepAliveSeconds: 0,
          ringTimeoutSeconds: 15,
          rtpPortRange: [base, base + 99],
          devices: [{ id: "door1", name: "Front door", username: "door1", password: PASSWORD, camera: "demo" }],
        },
      },
      {},
    ),
    log: silentLogger,
  });
  browser = new HttpBrowser();
  const pw = gw.auth.devUsers!.find((u) => u.username === "admin")!.password;
  expect((await signIn(browser, `${gw.url}/auth/login`, "admin", pw)).status).toBe(200);
  client = new GatewayClient(gw.url, browser);
}, 60_000);

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
  await door?.close();
  browser?.close();
  await gw?.close("test done");
});

describe("nothing leaves the host", () => {
  it("every viewer makes the gateway look up a public STUN server: no longer — viewers, TURN and SIP refuse nothing under the network guard", async () => {
    const csrf = JSON.parse((await browser.request(`${gw.url}/auth/csrf`, { headers: { accept: "application/json" } })).body) as { token: string };
    const headers = { ...cookieHeader(browser, gw.url), "x-csrf-token": csrf.token, origin: new URL(gw.url).origin };

    // Viewers straight to the media worker, as many as a small wall.
    const direct: WeriftViewer[] = [];
    for (let i = 0; i < 3; i++) {
      const v = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo`, headers, audio: false });
      cleanups.push(() => v.close());
      direct.push(v);
    }
    // Relayed viewers: TURN over UDP and over TCP on the front door's port.
    const turn = await turnServers(headers);
    const relayed: WeriftViewer[] = [];
    for (const transport of ["udp", "tcp"]) {
      const server = turn.get(transport);
      expect(server, `TURN/${transport} offered`).toBeDefined();
      const v = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo`, headers, audio: false, iceServers: [server!], iceTransportPolicy: "relay", timeoutMs: 20_000 });
      cleanups.push(() => v.close());
      relayed.push(v);
    }
    for (const v of [...direct, ...relayed]) {
      await v.connected;
      await v.video.waitForCount(20);
    }
    expect(gw.turn!.metrics.packetsToClient).toBeGreaterThan(0);

    // SIP: a door registers and calls; the browser answers with two-way audio through a talk peer.
    door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sip!.ports.udp}`, microphone: wav(tone(440, 20)) });
    await door.waitFor(/registered successfully/);
    const events = await client.events();
    cleanups.push(() => events.close());
    const ringing = events.next("ring", () => true, 15_000);
    door.command("dial sip:gate@gatehouse");
    const callId = String((await ringing).callId);
    const { phone, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => phone.close());
    const res = await client.post(`/api/intercom/calls/${callId}/answer`, { sdp: offer });
    expect(res.status, res.body).toBe(201);
    await phone.accept(res.body);
    await phone.connected();
    phone.startTone(660);
    await phone.until(25);
    expect((await client.post(`/api/intercom/calls/${callId}/hangup`)).status).toBe(204);

    const refused = refusedHere();
    expect(refused, `refused:\n${formatRefusals(refused)}`).toEqual([]);
  }, 90_000);
});
