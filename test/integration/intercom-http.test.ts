/**
 * The browser intercom against the whole gateway (SIP on, development sign-in with two users,
 * the demo camera at the door) with baresip as the door station and werift standing in for the
 * browser's talk connection:
 *  - rights filter the ring (a user without answer_intercom hears nothing, not even later);
 *  - answering carries an SDP offer: the door's G.711 reaches the "browser" and its tone
 *    reaches the door (in baresip's recording); open door sends DTMF; hang up sends BYE;
 *  - the first answer wins, the second gets 409 naming the first, and everyone who rang hears
 *    "answered by" and the end; decline; missed call in the history;
 *  - talk to the door needs `talk`; CSRF, content types and unknown ids answer as they should;
 *    a browser that gives up while the door rings cancels the call (487 from the door);
 *  - a revoked session loses its ring stream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { Baresip, tone, wav, wavSamples } from "../peers/baresip.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { analyse, GatewayClient, WeriftBrowserPhone, type SseClient } from "./intercom-support.ts";

const PASSWORD = "door-secret-1";
/** What baresip prints when the gateway's BYE ends its call (wording differs by call direction). */
const BYE_SEEN = /terminated|session closed: Connection reset by peer/;
const RIGHTS_VIEWER_LIVE = [
  { role: "gatehouse-viewer", cameras: ["demo"], actions: ["live"] },
  { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
];
const RIGHTS_VIEWER_ANSWERS = [
  { role: "gatehouse-viewer", cameras: ["demo"], actions: ["live", "answer_intercom"] },
  { role: "gatehouse-admin", cameras: ["*"], actions: ["admin"] },
];

let gw: Gateway;
let door: Baresip;
let admin: GatewayClient;
let viewer: GatewayClient;
const browsers: HttpBrowser[] = [];
const cleanups: Array<() => unknown> = [];

function config(rights: unknown) {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  return parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "dev", rights },
      demo: { enabled: true },
      log: { level: "warn" },
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { port: 0 },
        keepAliveSeconds: 0,
        ringTimeoutSeconds: 8,
        rtpPortRange: [base, base + 99],
        devices: [
          { id: "door1", name: "Front door", username: "door1", password: PASSWORD, camera: "demo", dtmf: { openDoor: "1#", durationMs: 120 } },
          { id: "door2", name: "Back door", username: "door2", password: PASSWORD, camera: "demo" },
        ],
      },
    },
    // The audit trail (the call log) in this file's own data directory (test/guard/setup.ts), not ./data.
    { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR },
  );
}

async function signedIn(user: string): Promise<GatewayClient> {
  const b = new HttpBrowser();
  browsers.push(b);
  const pw = gw.auth.devUsers!.find((u) => u.username === user)!.password;
  const res = await signIn(b, `${gw.url}/auth/login`, user, pw);
  expect(res.status).toBe(200);
  return new GatewayClient(gw.url, b);
}

async function stream(c: GatewayClient): Promise<SseClient> {
  const s = await c.events();
  cleanups.push(() => s.close());
  return s;
}

/** baresip dials the gateway; resolves with the call id from the ring `s` receives. */
async function ring(s: SseClient): Promise<Record<string, unknown>> {
  const next = s.next("ring");
  door.command("dial sip:gate@gatehouse");
  return next;
}

/** Answer `callId` as `c` with a werift "browser"; resolves once its audio connection is up. */
async function answerWithPhone(c: GatewayClient, callId: string): Promise<WeriftBrowserPhone> {
  const { phone, offer } = await WeriftBrowserPhone.create();
  cleanups.push(() => phone.close());
  const res = await c.post(`/api/intercom/calls/${callId}/answer`, { sdp: offer });
  expect(res.status, res.body).toBe(201);
  expect(res.headers.get("content-type")).toMatch(/^application\/sdp/);
  expect(res.headers.get("location")).toBe(`/api/intercom/calls/${callId}`);
  expect(res.body).toMatch(/a=rtpmap:0 PCMU\/8000/);
  await phone.accept(res.body);
  await phone.connected();
  return phone;
}

beforeAll(async () => {
  gw = await startGateway({ config: config(RIGHTS_VIEWER_LIVE), log: silentLogger });
  admin = await signedIn("admin");
  viewer = await signedIn("viewer");
  door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sip!.ports.udp}`, microphone: wav(tone(440, 30)) });
  await door.waitFor(/registered successfully/);
}, 60_000);

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
  await door?.close();
  for (const b of browsers) b.close();
  await gw?.close("test done");
});

describe("intercom in the browser (HTTP + SSE + talk peer) with baresip at the door", () => {
  it("lists the doors each user may use", async () => {
    const a = (await admin.get("/api/intercom")).json() as { user: { sub: string; name: string }; devices: unknown[] };
    expect(a.user).toEqual({ sub: "dev-admin", name: "Demo Administrator" });
    expect(a.devices).toEqual([
      { id: "door1", name: "Front door", camera: "demo", cameraName: "Demo camera", online: true, canAnswer: true, canTalk: true },
      // Registers in its own test below.
      { id: "door2", name: "Back door", camera: "demo", cameraName: "Demo camera", online: false, canAnswer: true, canTalk: true },
    ]);
    // The viewer may watch the door camera but neither answer nor talk: no doors for them.
    expect((await viewer.get("/api/intercom")).json()).toMatchObject({ devices: [] });
  });

  it("rings only who may answer; the answerer talks both ways, opens the door and hangs up", async () => {
    const sa = await stream(admin);
    const sv = await stream(viewer);
    const r = await ring(sa);
    expect(r).toMatchObject({ deviceId: "door1", deviceName: "Front door", camera: "demo", cameraName: "Demo camera" });
    expect(String(r.from)).toContain("door1");
    expect(Number(r.expiresAt) - Number(r.at)).toBe(8000);
    const callId = String(r.callId);

    // Not the viewer's call: unknown to them, and they cannot act on it.
    expect((await viewer.post(`/api/intercom/calls/${callId}/reject`)).status).toBe(404);
    const list = (await viewer.get("/api/intercom/calls")).json() as { active: unknown[] };
    expect(list.active).toEqual([]);
    // The admin sees it ringing.
    expect((await admin.get("/api/intercom/calls")).json()).toMatchObject({ active: [{ callId, state: "ringing", mine: false, direction: "incoming" }] });

    const answered = sa.next("answered");
    const established = door.waitFor(/Call established/);
    const phone = await answerWithPhone(admin, callId);
    expect(await answered).toMatchObject({ callId, by: "dev-admin", byName: "Demo Administrator", you: true });
    await established;

    // The door's tone reaches the browser side; the browser's tone reaches the door.
    phone.startTone(1000);
    await phone.until(50);
    const heard = analyse(phone.heard.slice(-4000));
    expect(heard.level).toBeGreaterThan(1000);
    expect(heard.crossingsPerSecond).toBeGreaterThan(700); // 440 Hz → ~880 crossings/s
    expect(heard.crossingsPerSecond).toBeLessThan(1100);
    const mine = (await admin.get(`/api/intercom/calls/${callId}`)).json() as { talk: { fromBrowser: { packets: number }; toBrowser: { packets: number }; codec: string } };
    expect(mine.talk.codec).toBe("PCMU");
    expect(mine.talk.toBrowser.packets).toBeGreaterThan(0);

    // Open the door: the configured digits as RFC 4733 events at the door.
    const hash = door.waitFor(/received event: '#' \(end=1\)/);
    expect((await admin.post(`/api/intercom/calls/${callId}/open-door`)).status).toBe(204);
    await hash;
    expect(door.lines.some((l) => /received event: '1' \(end=1\)/.test(l))).toBe(true);
    const seven = door.waitFor(/received event: '7' \(end=1\)/);
    expect((await admin.post(`/api/intercom/calls/${callId}/dtmf`, { json: { digits: "7" } })).status).toBe(204);
    await seven;
    // Only who may answer the door: the viewer may watch its camera, so is refused (not told "no such call").
    expect((await viewer.post(`/api/intercom/calls/${callId}/open-door`)).status).toBe(403);

    const ended = sa.next("ended");
    const bye = door.waitFor(BYE_SEEN);
    expect((await admin.post(`/api/intercom/calls/${callId}/hangup`)).status).toBe(204);
    await bye;
    expect(await ended).toMatchObject({ callId, reason: "local-bye", answeredBy: "dev-admin", answeredByName: "Demo Administrator", missed: false });
    expect((await admin.get(`/api/intercom/calls/${callId}`)).status).toBe(404);

    // The viewer's stream never mentioned the call.
    expect(sv.events.filter((e) => e.data.callId === callId)).toEqual([]);
    expect((await admin.get("/api/intercom/calls")).json()).toMatchObject({ active: [], history: [{ callId, reason: "local-bye", answeredByName: "Demo Administrator" }] });

    // What the door recorded from the network includes the browser's 1 kHz tone.
    await door.stop();
    const rec = door.recordedFromNetwork();
    expect(rec).toBeDefined();
    const got = analyse(wavSamples(rec!));
    expect(got.peak).toBeGreaterThan(4000);
    expect(got.crossingsPerSecond).toBeGreaterThan(500);
    door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sip!.ports.udp}`, microphone: wav(tone(440, 30)) });
    await door.waitFor(/registered successfully/);
  }, 60_000);

  it("with the right given, both ring; the first answer wins, the second gets 409 naming the first", async () => {
    gw.auth.reload(config(RIGHTS_VIEWER_ANSWERS).auth);
    const sa = await stream(admin);
    const sv = await stream(viewer);
    const vRing = sv.next("ring");
    const r = await ring(sa);
    const callId = String(r.callId);
    expect(await vRing).toMatchObject({ callId, deviceId: "door1", camera: "demo" });

    const seen = sv.next("answered", (d) => d.callId === callId);
    await answerWithPhone(admin, callId);
    expect(await seen).toMatchObject({ by: "dev-admin", byName: "Demo Administrator", you: false });
    const { phone: late, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => late.close());
    const lost = await viewer.post(`/api/intercom/calls/${callId}/answer`, { sdp: offer });
    expect(lost.status).toBe(409);
    expect(lost.json()).toMatchObject({ error: "wrong_state", answeredBy: "dev-admin", answeredByName: "Demo Administrator" });
    // Hanging up is for the person in the call.
    expect((await viewer.post(`/api/intercom/calls/${callId}/hangup`)).status).toBe(403);

    // The door hangs up: both hear the end.
    const endA = sa.next("ended", (d) => d.callId === callId);
    const endV = sv.next("ended", (d) => d.callId === callId);
    door.command("hangup");
    expect(await endA).toMatchObject({ reason: "remote-bye", answeredBy: "dev-admin" });
    expect(await endV).toMatchObject({ reason: "remote-bye", answeredBy: "dev-admin" });
  }, 60_000);

  it("the answering browser's own candidates follow the viewers' rules: names and refused ranges dropped, the call still connects", async () => {
    const sa = await stream(admin);
    const r = await ring(sa);
    const callId = String(r.callId);
    const before = gw.sfu.candidateStats().dropped;
    const { phone, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => phone.close());
    // What a browser hiding its address sends: an mDNS name, plus a cloud metadata address.
    const hidden = offer
      .replace(/(a=candidate:\S+ 1 udp \d+ )127\.0\.0\.1( \d+ typ host)/g, "$1f3b1d1c4-3c3e-4c53-9d2e-31f4e8d3a9b7.local$2")
      .replace(/(a=mid:\S+\r\n)/, "$1a=candidate:9 1 udp 2122260223 169.254.169.254 80 typ host\r\n");
    expect(hidden).toContain(".local ");
    const res = await admin.post(`/api/intercom/calls/${callId}/answer`, { sdp: hidden });
    expect(res.status, res.body).toBe(201);
    await phone.accept(res.body);
    // The browser's own checks teach the talk peer its address (peer-reflexive).
    await phone.connected();
    const after = gw.sfu.candidateStats().dropped;
    expect(after.name - before.name).toBeGreaterThan(0);
    expect(after.range - before.range).toBe(1);
    const endA = sa.next("ended", (d) => d.callId === callId);
    door.command("hangup");
    await endA;
  }, 60_000);

  it("declines for everyone, and a call nobody answers is a missed call", async () => {
    const sa = await stream(admin);
    const sv = await stream(viewer);
    let r = await ring(sa);
    let callId = String(r.callId);
    await sv.next("ring", (d) => d.callId === callId);
    const endA = sa.next("ended", (d) => d.callId === callId);
    const declined = door.waitFor(/603/);
    expect((await viewer.post(`/api/intercom/calls/${callId}/reject`)).status).toBe(204);
    expect(await endA).toMatchObject({ reason: "rejected", status: 603, missed: false });
    await declined;

    r = await ring(sa);
    callId = String(r.callId);
    const missed = await sv.next("ended", (d) => d.callId === callId, 15_000);
    expect(missed).toMatchObject({ reason: "missed", status: 480, missed: true, answeredBy: null });
    const hist = (await viewer.get("/api/intercom/calls")).json() as { history: Array<{ callId: string; missed: boolean }> };
    expect(hist.history[0]).toMatchObject({ callId, missed: true });

    // The call log on its own: missed calls only, newest first.
    const log = (await viewer.get("/api/intercom/history?missed=1")).json() as { calls: Array<{ callId: string; missed: boolean; snapshot: boolean }> };
    expect(log.calls[0]).toMatchObject({ callId, missed: true, snapshot: false });
    expect(log.calls.every((c) => c.missed)).toBe(true);
    expect((await viewer.get("/api/intercom/history?limit=0")).status).toBe(400);

    // A picture of the door kept with the call: PNG or JPEG only, first one wins, CSRF required.
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 1)]);
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(64, 2)]);
    const snap = `/api/intercom/calls/${callId}/snapshot`;
    expect((await viewer.post(snap, { image: { type: "image/png", bytes: Buffer.from("not a picture at all") } })).status).toBe(400);
    expect((await viewer.post(snap, { json: { png: true } })).status).toBe(400);
    expect((await viewer.post(snap, { image: { type: "image/png", bytes: png } }, { csrf: false })).status).toBe(403);
    expect((await viewer.post("/api/intercom/calls/no-such-call/snapshot", { image: { type: "image/png", bytes: png } })).status).toBe(404);
    expect((await viewer.get(snap)).status).toBe(404);
    expect((await viewer.post(snap, { image: { type: "image/png", bytes: png } })).status).toBe(204);
    expect((await admin.post(snap, { image: { type: "image/jpeg", bytes: jpeg } })).status).toBe(204);
    const got = await viewer.get(snap);
    expect(got.status).toBe(200);
    expect(Buffer.from(got.body, "latin1").subarray(1, 4).toString("latin1")).toBe("PNG");
    const after = (await viewer.get("/api/intercom/history?missed=1")).json() as { calls: Array<{ callId: string; snapshot: boolean }> };
    expect(after.calls.find((c) => c.callId === callId)?.snapshot).toBe(true);
  }, 60_000);

  it("talks to the door with `talk` only; checks CSRF, content type and unknown ids", async () => {
    const { phone, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => phone.close());
    expect((await viewer.post("/api/intercom/devices/door1/call", { sdp: offer })).status).toBe(403);
    expect((await admin.post("/api/intercom/devices/nope/call", { sdp: offer })).status).toBe(404);
    expect((await admin.post("/api/intercom/devices/door1/call", { json: { sdp: offer } })).status).toBe(415);
    expect((await admin.post("/api/intercom/devices/door1/call", { sdp: offer }, { csrf: false })).status).toBe(403);
    expect((await admin.post("/api/intercom/calls/nope/answer", { sdp: offer })).status).toBe(404);
    expect((await admin.post("/api/intercom/calls/nope/dtmf", { json: { digits: "x" } })).status).toBe(400);

    const sa = await stream(admin);
    const res = await admin.post("/api/intercom/devices/door1/call", { sdp: offer });
    expect(res.status, res.body).toBe(201);
    const callId = res.headers.get("x-call-id")!;
    await phone.accept(res.body);
    await phone.connected();
    await phone.until(25);
    expect((await admin.get("/api/intercom/calls")).json()).toMatchObject({ active: [{ callId, direction: "outgoing", state: "answered", mine: true }] });
    const ended = sa.next("ended", (d) => d.callId === callId);
    const bye = door.waitFor(BYE_SEEN);
    expect((await admin.post(`/api/intercom/calls/${callId}/hangup`)).status).toBe(204);
    await bye;
    expect(await ended).toMatchObject({ direction: "outgoing", reason: "local-bye" });
  }, 60_000);

  it("a browser that gives up while the door rings cancels the call: the door stops ringing", async () => {
    // A door that rings until someone picks up (no auto answer).
    const back = Baresip.start({ user: "door2", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sip!.ports.udp}`, microphone: wav(tone(440, 5)), autoAnswer: false });
    cleanups.push(() => back.close());
    await back.waitFor(/registered successfully/);
    const { phone, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => phone.close());
    const ringing = back.waitFor(/Incoming call/i);
    const giveUp = new AbortController();
    const pending = admin.post("/api/intercom/devices/door2/call", { sdp: offer }, { signal: giveUp.signal }).then(
      () => "answered",
      (err: unknown) => (err as Error).name,
    );
    await ringing;
    // baresip reports a call cancelled before it answered as "session closed: Connection reset by peer".
    const stopped = back.waitFor(/session closed/);
    // The gateway records the call once the door's 487 has come back (after baresip printed that).
    const recorded = new Promise<unknown>((resolve) => {
      const off = gw.sip!.intercom.events.on("ended", (r) => {
        if (r.deviceId !== "door2") return;
        off();
        resolve(r);
      });
    });
    giveUp.abort();
    expect(await pending).toBe("AbortError");
    await stopped;
    expect(await recorded).toMatchObject({ direction: "outgoing", reason: "cancelled", status: 487, answeredAt: undefined });
  }, 60_000);

  it("ends the ring stream of a revoked session", async () => {
    const sv = await stream(viewer);
    expect(gw.auth.revokeUser("dev-viewer")).toBeGreaterThan(0);
    await sv.ended;
    expect(sv.all("bye")).toEqual([{ reason: "revoked" }]);
    expect((await viewer.get("/api/intercom")).status).toBe(401);
  });
});
