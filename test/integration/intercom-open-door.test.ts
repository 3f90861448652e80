/**
 * "Open door" on a ringing call, with no browser media: the whole gateway (development
 * sign-in, the demo camera at the doors, SQLite audit in a temp data directory) and real door
 * stations: baresip taking RFC 4733 events, and sipp taking SIP INFO (`dtmf.method: info`).
 *  - the gateway answers the door itself, the door receives exactly the configured digits,
 *    then the gateway's BYE; no talk connection (WebRTC peer) is ever created;
 *  - every page that got the ring hears `door-opened` with who opened it, then `ended`
 *    (reason `door-opened`); the audit trail has `door_open` with its outcome;
 *  - a user who may watch the door but not answer it gets 403, recorded as denied, and the
 *    door keeps ringing; the second of two simultaneous openers gets 409.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { AuditRecord } from "../../gateway/audit/record.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { TalkPeer } from "../../gateway/intercom/talk-peer.ts";
import { Baresip, tone, wav } from "../peers/baresip.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { describeRun, startSipp } from "../peers/sipp.ts";
import { GatewayClient, type SseClient } from "./intercom-support.ts";

const PASSWORD = "door-secret-1";
const BYE_SEEN = /terminated|session closed: Connection reset by peer/;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-open-door-"));
const RIGHTS_BOTH_ANSWER = [
  { role: "gatehouse-viewer", cameras: ["demo"], actions: ["live", "answer_intercom"] },
  { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
];
const RIGHTS_VIEWER_WATCHES = [
  { role: "gatehouse-viewer", cameras: ["demo"], actions: ["live"] },
  { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
];

function config(rights: unknown) {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  return parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "dev", rights },
      demo: { enabled: true },
      log: { level: "warn" },
      dataDir,
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { port: 0 },
        keepAliveSeconds: 0,
        ringTimeoutSeconds: 20,
        rtpPortRange: [base, base + 99],
        devices: [
          { id: "door1", name: "Front door", username: "door1", password: PASSWORD, camera: "demo", dtmf: { openDoor: "1#", durationMs: 120 } },
          { id: "lobby", name: "Lobby", username: "lobby", allow: ["127.0.0.1"], camera: "demo", dtmf: { method: "info", openDoor: "*9", durationMs: 100 } },
        ],
      },
    },
    {},
  );
}

let gw: Gateway;
let admin: GatewayClient;
let viewer: GatewayClient;
let door: Baresip | undefined;
const browsers: HttpBrowser[] = [];
const cleanups: Array<() => unknown> = [];
const talkPeers = vi.spyOn(TalkPeer, "create");

async function signedIn(user: string): Promise<GatewayClient> {
  const b = new HttpBrowser();
  browsers.push(b);
  const pw = gw.auth.devUsers!.find((u) => u.username === user)!.password;
  expect((await signIn(b, `${gw.url}/auth/login`, user, pw)).status).toBe(200);
  return new GatewayClient(gw.url, b);
}

async function stream(c: GatewayClient): Promise<SseClient> {
  const s = await c.events();
  cleanups.push(() => s.close());
  return s;
}

/** The audit trail's door_open records of one call, once `n` of them are written. */
async function doorOpens(callId: string, n: number): Promise<AuditRecord[]> {
  for (;;) {
    await gw.audit!.flush();
    const rs = (await gw.audit!.query({ actions: ["door_open"], limit: 100 })).filter((r) => JSON.parse(r.detail ?? "{}").callId === callId);
    if (rs.length >= n) return rs;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  gw = await startGateway({ config: config(RIGHTS_BOTH_ANSWER), log: silentLogger });
  admin = await signedIn("admin");
  viewer = await signedIn("viewer");
}, 60_000);

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
  await door?.close();
  for (const b of browsers) b.close();
  await gw?.close("test done");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("open door on a ringing call, answered by the gateway itself", () => {
  it("RFC 4733: the door gets the digits then BYE; every page hears who opened it; no WebRTC session", async () => {
    door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sip!.ports.udp}`, microphone: wav(tone(440, 30)) });
    await door.waitFor(/registered successfully/);
    const sa = await stream(admin);
    const sv = await stream(viewer);
    const ring = sa.next("ring");
    const mark = door.lines.length;
    door.command("dial sip:gate@gatehouse");
    const callId = String((await ring).callId);
    await sv.next("ring", (d) => d.callId === callId);
    const peersBefore = talkPeers.mock.calls.length;

    const one = door.waitFor(/received event: '1' \(end=1\)/, 15_000, mark);
    const hash = door.waitFor(/received event: '#' \(end=1\)/, 15_000, mark);
    const bye = door.waitFor(BYE_SEEN, 15_000, mark);
    const res = await admin.post(`/api/intercom/calls/${callId}/open-door`);
    expect(res.status, res.body).toBe(204);
    // The answer resolves once the digits were sent and the BYE went out: all three reach the door, in order.
    const [l1, l2, l3] = await Promise.all([one, hash, bye]);
    expect(door.lines.indexOf(l1)).toBeLessThan(door.lines.indexOf(l2));
    expect(door.lines.indexOf(l2)).toBeLessThan(door.lines.indexOf(l3));
    expect(door.lines.slice(mark).filter((l) => /received event: '.' \(end=1\)/.test(l)).map((l) => /'(.)'/.exec(l)![1])).toEqual(["1", "#"]);

    // Every page that rang: answered (to open the door), who opened it, the end.
    for (const [s, you] of [[sa, true], [sv, false]] as const) {
      expect(await s.next("answered", (d) => d.callId === callId, 10_000, 0)).toMatchObject({ by: "dev-admin", purpose: "open-door", you });
      expect(await s.next("door-opened", (d) => d.callId === callId, 10_000, 0)).toMatchObject({ deviceId: "door1", deviceName: "Front door", by: "dev-admin", byName: "Demo Administrator", you });
      expect(await s.next("ended", (d) => d.callId === callId, 10_000, 0)).toMatchObject({ reason: "door-opened", answeredBy: "dev-admin", answeredByName: "Demo Administrator", missed: false });
      const order = s.events.filter((e) => e.data.callId === callId).map((e) => e.event);
      expect(order).toEqual(["ring", "answered", "door-opened", "ended"]);
    }
    // No browser media: no talk peer was created for the call.
    expect(talkPeers.mock.calls.length).toBe(peersBefore);
    expect(gw.sip!.intercom.stats.openedUnanswered).toBeGreaterThanOrEqual(1);
    expect(gw.sip!.intercom.history().at(-1)).toMatchObject({ callId, reason: "door-opened", answeredBy: "dev-admin" });

    const [rec] = await doorOpens(callId, 1);
    expect(rec).toMatchObject({ outcome: "success", subject: "dev-admin", name: "Demo Administrator", door: "door1", camera: "demo" });
    expect(JSON.parse(rec!.detail!)).toEqual({ callId, status: 204, answeredByGateway: true });
  }, 60_000);

  it("SIP INFO: the door gets one INFO per digit with the configured digits, then BYE", async () => {
    const sa = await stream(admin);
    const ring = sa.next("ring", (d) => d.deviceId === "lobby", 15_000);
    const sipp = await startSipp({ scenario: "test/fixtures/sip/open-door-info.xml", target: `127.0.0.1:${gw.sip!.ports.udp}`, keys: { user: "lobby" }, timeoutMs: 30_000 });
    cleanups.push(() => sipp.kill());
    const callId = String((await ring).callId);
    const peersBefore = talkPeers.mock.calls.length;
    expect((await admin.post(`/api/intercom/calls/${callId}/open-door`)).status).toBe(204);
    const run = await sipp.wait();
    expect(run.code, describeRun(run)).toBe(0);
    // sipp checked each INFO body (Signal=* then Signal=9); the trace shows them and the BYE after.
    const infos = [...run.messages.matchAll(/Signal=(\S+)/g)].map((m) => m[1]);
    expect(infos).toEqual(["*", "9"]);
    expect(run.messages).toMatch(/Content-Type: application\/dtmf-relay/);
    expect(run.messages.lastIndexOf("Signal=9")).toBeLessThan(run.messages.search(/^BYE sip:/m));
    expect(talkPeers.mock.calls.length).toBe(peersBefore);
    expect(await sa.next("ended", (d) => d.callId === callId, 10_000, 0)).toMatchObject({ deviceId: "lobby", reason: "door-opened" });
    const [rec] = await doorOpens(callId, 1);
    expect(rec).toMatchObject({ outcome: "success", subject: "dev-admin", door: "lobby" });
  }, 60_000);

  it("refuses a user who may watch the door but not answer it (403, audited as denied); the door keeps ringing", async () => {
    gw.auth.reload(config(RIGHTS_VIEWER_WATCHES).auth);
    const sa = await stream(admin);
    const ring = sa.next("ring");
    const mark = door!.lines.length;
    door!.command("dial sip:gate@gatehouse");
    const callId = String((await ring).callId);
    const refused = await viewer.post(`/api/intercom/calls/${callId}/open-door`);
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ reason: expect.stringMatching(/answer_intercom/) });
    // An unknown call is simply not found.
    expect((await viewer.post("/api/intercom/calls/no-such-call/open-door")).status).toBe(404);
    expect(gw.sip!.intercom.get(callId)?.state).toBe("ringing");
    const [rec] = await doorOpens(callId, 1);
    expect(rec).toMatchObject({ outcome: "denied", subject: "dev-viewer", door: "door1" });
    expect(JSON.parse(rec!.detail!)).toEqual({ callId, status: 403 });

    // Two openers at once: one wins, the other is told someone else answered.
    gw.auth.reload(config(RIGHTS_BOTH_ANSWER).auth);
    const bye = door!.waitFor(BYE_SEEN, 15_000, mark);
    const [a, v] = await Promise.all([admin.post(`/api/intercom/calls/${callId}/open-door`), viewer.post(`/api/intercom/calls/${callId}/open-door`)]);
    expect([a.status, v.status].sort()).toEqual([204, 409]);
    await bye;
    expect(door!.lines.slice(mark).filter((l) => /received event: '#' \(end=1\)/.test(l))).toHaveLength(1);
    await sa.next("ended", (d) => d.callId === callId && d.reason === "door-opened", 10_000, 0);
  }, 60_000);
});
