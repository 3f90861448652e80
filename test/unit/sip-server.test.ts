import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { AuthError, NotFoundError } from "../../config/errors.ts";
import { silentLogger } from "../../config/log.ts";
import { ManualClock } from "../../gateway/sip/clock.ts";
import type { Endpoint } from "../../gateway/sip/endpoint.ts";
import { CallAlreadyAnsweredError } from "../../gateway/sip/intercom.ts";
import { cseqOf, parseNameAddr, tagOf, toOf, type SipRequest, type SipResponse } from "../../gateway/sip/message.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import { FakeNet, Phone, SDP_OFFER, isRequest, isResponse, once, testConfig } from "./sip-helpers.ts";

const DOOR: Endpoint = { transport: "udp", address: "10.1.0.5", port: 5062 };
const devices = [
  { id: "front", username: "front", password: "front-secret", camera: "cam1", answerers: { users: ["alice", "bob"] } },
  { id: "back", username: "back", allow: ["10.9.0.0/24"], dtmf: { method: "info", openDoor: "*9" } },
];

let server: SipServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(extra: Record<string, unknown> = {}, clock = new ManualClock()): Promise<{ net: FakeNet; clock: ManualClock; srv: SipServer }> {
  const net = new FakeNet();
  server = await startSipServer({ config: testConfig({ devices, lockout: { maxFailures: 3 }, ...extra }), log: silentLogger, clock, transport: net.factory });
  return { net, clock, srv: server };
}

/** A registered door calling in: challenge, then 100/180 and the ring event. */
async function ringingCall(net: FakeNet, srv: SipServer, phone: Phone, extraHeaders: [string, string][] = []) {
  expect((await phone.register()).status).toBe(200);
  const inv = phone.request("INVITE", { body: SDP_OFFER(40000), headers: extraHeaders });
  const challenge = await phone.transact(inv);
  expect(challenge.status).toBe(401);
  net.mark = net.sent.length;
  const ring = once(srv.intercom.events, "ring");
  const authed = phone.authorize(inv, challenge);
  phone.send(authed);
  const [info] = await ring;
  const ringing = (await net.next(isResponse(180, "INVITE"))).msg as SipResponse;
  return { info, invite: authed, ringing, toTag: tagOf(toOf(ringing))! };
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function ackFor(phone: Phone, invite: SipRequest, toTag: string): SipRequest {
  return phone.request("ACK", { callId: invite.headers.get("call-id")!, fromTag: tagOf(parseNameAddr(invite.headers.get("from")!))!, toTag, cseq: cseqOf(invite).seq });
}

function inDialog(phone: Phone, invite: SipRequest, toTag: string, method: string, opts: Parameters<Phone["request"]>[1] = {}): SipRequest {
  return phone.request(method, { callId: invite.headers.get("call-id")!, fromTag: tagOf(parseNameAddr(invite.headers.get("from")!))!, toTag, ...opts });
}

describe("registrar", () => {
  it("challenges, accepts the password, lists the binding and expires it", async () => {
    const { net, clock, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const ok = await phone.register({ expires: 120 });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("contact")).toBe("<sip:front@10.1.0.5:5062>;expires=120");
    expect(srv.intercom.devices().find((d) => d.id === "front")).toMatchObject({ online: true, bindings: [{ address: "10.1.0.5", port: 5062 }] });
    const offline = once(srv.intercom.events, "device");
    clock.advance(121_000);
    expect((await offline)[0]).toEqual({ deviceId: "front", online: false });
  });

  it("answers 423 below Min-Expires and clamps above the maximum", async () => {
    const { net } = await start({ registration: { minExpires: 60, maxExpires: 600 } });
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const brief = await phone.register({ expires: 10 });
    expect(brief.status).toBe(423);
    expect(brief.headers.get("min-expires")).toBe("60");
    expect((await phone.register({ expires: 99999 })).headers.get("contact")).toContain("expires=600");
  });

  it("refuses a wrong password with 403 and locks the source out after repeated failures", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    for (let i = 0; i < 3; i++) expect((await phone.register({ password: "guess" + i })).status).toBe(403);
    // Locked: even the right password is refused, and unrelated requests too.
    const locked = await phone.register();
    expect(locked.status).toBe(403);
    expect(locked.reason).toBe("Locked Out");
    expect(srv.stats()).toMatchObject({ lockouts: 1, auth: { failures: 3 } });
    // Another source is unaffected.
    const other = new Phone(net, { user: "front", password: "front-secret", src: { ...DOOR, address: "10.1.0.6" } });
    expect((await other.register()).status).toBe(200);
  });

  it("a forged source can lock a door out: blind REGISTERs with the door's address neither count nor lock it", async () => {
    const { net, srv } = await start();
    // The attacker gets a genuine challenge at its own address…
    const attacker = new Phone(net, { user: "front", password: "guess", src: { ...DOOR, address: "10.66.0.1" } });
    const reg = attacker.request("REGISTER", { uri: "sip:gatehouse", headers: [["Expires", "300"]] });
    const challenge = await attacker.transact(reg);
    expect(challenge.status).toBe(401);
    // …and sends wrong passwords with the door's source address (spoofed UDP needs no reply),
    // with that nonce, and with forged ones.
    const spoofed = new Phone(net, { user: "front", password: "guess", src: DOOR });
    for (let i = 0; i < 6; i++) {
      const forged = spoofed.authorize(spoofed.request("REGISTER", { uri: "sip:gatehouse" }), challenge, { password: "guess" + i });
      if (i % 2) forged.headers.set("Authorization", forged.headers.get("authorization")!.replace(/nonce="[^"]+"/, `nonce="${Buffer.alloc(31, i).toString("base64url")}"`));
      expect((await spoofed.transact(forged)).status).toBe(401); // a fresh challenge to the real door, no failure counted
    }
    expect(srv.stats()).toMatchObject({ lockouts: 0, auth: { failures: 0 } });
    const door = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    expect((await door.register()).status).toBe(200);
  });

  it("a device set to non-MD5 digest algorithms is challenged like an unknown user (no username enumeration)", async () => {
    const { net } = await start({
      devices: [
        { id: "front", username: "front", password: "front-secret", digestAlgorithms: ["SHA-256", "MD5"] },
        { id: "side", username: "side", password: "side-secret" },
      ],
    });
    const algorithmsFor = async (user: string): Promise<string> => {
      const p = new Phone(net, { user, src: DOOR });
      const r = await p.transact(p.request("REGISTER", { uri: "sip:gatehouse" }));
      expect(r.status).toBe(401);
      return r.headers.getAll("www-authenticate").map((h) => /algorithm=([A-Z0-9-]+)/.exec(h)![1]).join(",");
    };
    expect(await algorithmsFor("front")).toBe("SHA-256,MD5");
    expect(await algorithmsFor("side")).toBe("MD5");
    const seen = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const name = `guess${i}`;
      const a = await algorithmsFor(name);
      expect(await algorithmsFor(name)).toBe(a); // the same name is always challenged the same way
      seen.set(a, (seen.get(a) ?? 0) + 1);
    }
    // Unknown names get both configured kinds of challenge: "SHA-256,MD5" no longer means "a real door".
    expect([...seen.keys()].sort()).toEqual(["MD5", "SHA-256,MD5"]);
    expect(Math.min(...seen.values())).toBeGreaterThanOrEqual(8);
  });

  it("does not reveal unknown users: they are challenged, then refused", async () => {
    const { net } = await start();
    const ghost = new Phone(net, { user: "ghost", password: "whatever1", src: DOOR });
    expect((await ghost.register()).status).toBe(403);
  });

  it("uses the source address when the Contact is behind NAT, and drops a binding that stops answering OPTIONS", async () => {
    const { net, clock, srv } = await start({ keepAliveSeconds: 30 });
    const natted: Endpoint = { transport: "udp", address: "203.0.113.7", port: 40123 };
    const phone = new Phone(net, { user: "front", password: "front-secret", src: natted, contactHost: "192.168.1.20", contactPort: 5060 });
    expect((await phone.register()).status).toBe(200);
    expect(srv.intercom.devices().find((d) => d.id === "front")!.bindings[0]).toMatchObject({ address: "203.0.113.7", port: 40123 });
    clock.advance(30_000);
    const ping = await net.next(isRequest("OPTIONS"));
    expect(ping.to).toMatchObject({ address: "203.0.113.7", port: 40123 });
    expect((ping.msg as SipRequest).uri).toBe("sip:front@192.168.1.20:5060");
    // The device never answers: the OPTIONS transaction times out twice and the binding goes.
    const gone = once(srv.registrar.events, "unregistered", 5000);
    clock.advance(30_000 + 64 * 500);
    clock.advance(30_000 + 64 * 500);
    expect((await gone)[2]).toBe("unreachable");
  });

  it("removes every binding with Contact: * and Expires: 0, and rejects * otherwise", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    await phone.register();
    const bad = phone.request("REGISTER", { callId: "reg-x", uri: "sip:gatehouse", headers: [["Expires", "30"]] });
    bad.headers.set("Contact", "*");
    const ch = await phone.transact(bad);
    expect((await phone.transact(phone.authorize(bad, ch))).status).toBe(400);
    const wipe = phone.request("REGISTER", { callId: "reg-y", uri: "sip:gatehouse", headers: [["Expires", "0"]] });
    wipe.headers.set("Contact", "*");
    const c1 = await phone.transact(wipe);
    expect((await phone.transact(phone.authorize(wipe, c1))).status).toBe(200);
    expect(srv.registrar.allBindings()).toHaveLength(0);
  });
});

describe("incoming calls", () => {
  it("refuses unknown callers with 403 without a challenge, and counts them", async () => {
    const { net, srv } = await start();
    let rang = false;
    srv.intercom.events.on("ring", () => (rang = true));
    const stranger = new Phone(net, { user: "front", password: "front-secret", src: { transport: "udp", address: "10.66.0.1", port: 5060 } });
    const res = await stranger.transact(stranger.request("INVITE", { body: SDP_OFFER(40000) }));
    expect(res.status).toBe(403);
    expect(res.headers.has("www-authenticate")).toBe(false);
    expect(rang).toBe(false);
    expect(srv.stats().refused.unknownCaller).toBe(1);
  });

  it("rings a registered door after digest, answers with SDP, and ends on the door's BYE", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone);
    expect(info).toMatchObject({ deviceId: "front", camera: "cam1", answerers: { users: ["alice", "bob"], groups: [] } });
    const call = srv.intercom.answer(info.callId, { id: "alice" });
    const ok = (await net.next(isResponse(200, "INVITE"))).msg as SipResponse;
    expect(ok.body.toString()).toMatch(/m=audio \d+ RTP\/AVP 0 101/);
    expect(call.audioTrack).toMatchObject({ codec: "PCMU", payloadType: 0, clockRate: 8000 });
    phone.send(ackFor(phone, invite, toTag));
    const ended = once(srv.intercom.events, "ended");
    const bye = await phone.transact(inDialog(phone, invite, toTag, "BYE"));
    expect(bye.status).toBe(200);
    expect((await ended)[0]).toMatchObject({ reason: "remote-bye", answeredBy: "alice", deviceId: "front" });
    expect(srv.stats().rtpPortsInUse).toBe(0);
  });

  it("lets an allow-listed door call without registering or authenticating", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "back", src: { transport: "udp", address: "10.9.0.44", port: 5060 } });
    const ring = once(srv.intercom.events, "ring");
    phone.send(phone.request("INVITE", { body: SDP_OFFER(40000) }));
    expect((await ring)[0].deviceId).toBe("back");
  });

  it("identifies the caller by From: a registered door sharing an allow-listed address is still challenged as itself", async () => {
    const { net, srv } = await start();
    const shared: Endpoint = { transport: "udp", address: "10.9.0.44", port: 5070 }; // "back" is allow-listed here
    const front = new Phone(net, { user: "front", password: "front-secret", src: shared });
    expect((await front.register()).status).toBe(200);
    const inv = front.request("INVITE", { body: SDP_OFFER(40000) });
    const challenge = await front.transact(inv);
    expect(challenge.status).toBe(401);
    const ring = once(srv.intercom.events, "ring");
    front.send(front.authorize(inv, challenge));
    expect((await ring)[0].deviceId).toBe("front");
    // Claiming to be "front" from there without registering as it gets no free pass as "back".
    const impostor = new Phone(net, { user: "front", src: { ...shared, port: 5071, address: "10.9.0.45" } });
    expect((await impostor.transact(impostor.request("INVITE", { body: SDP_OFFER(40000) }))).status).toBe(403);
  });

  it("first answer wins; the second user learns who answered; non-answerers are refused", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info } = await ringingCall(net, srv, phone);
    expect(() => srv.intercom.answer(info.callId, { id: "mallory" })).toThrow(AuthError);
    srv.intercom.answer(info.callId, { id: "bob" });
    try {
      srv.intercom.answer(info.callId, { id: "alice" });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CallAlreadyAnsweredError);
      expect((e as CallAlreadyAnsweredError).answeredBy).toBe("bob");
    }
  });

  it("ends unanswered calls with 480 after the ring timeout and records them as missed", async () => {
    const { net, clock, srv } = await start({ ringTimeoutSeconds: 30 });
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info } = await ringingCall(net, srv, phone);
    const ended = once(srv.intercom.events, "ended");
    clock.advance(29_999);
    expect(srv.intercom.get(info.callId)?.state).toBe("ringing");
    clock.advance(1);
    expect((await net.next(isResponse(480, "INVITE"))).msg.kind).toBe("response");
    expect((await ended)[0]).toMatchObject({ reason: "missed", status: 480 });
    expect(srv.intercom.history().at(-1)!.reason).toBe("missed");
    expect(srv.stats().intercom.missed).toBe(1);
  });

  it("answers CANCEL with 200 and the INVITE with 487", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { invite } = await ringingCall(net, srv, phone);
    const cancel = phone.request("CANCEL", {
      callId: invite.headers.get("call-id")!,
      fromTag: tagOf(parseNameAddr(invite.headers.get("from")!))!,
      cseq: cseqOf(invite).seq,
      branch: invite.headers.getList("via")[0]!.match(/branch=([^;]+)/)![1]!,
    });
    cancel.headers.set("CSeq", `${cseqOf(invite).seq} CANCEL`);
    const ended = once(srv.intercom.events, "ended");
    expect((await phone.transact(cancel)).status).toBe(200);
    expect((await net.next(isResponse(487, "INVITE"))).msg.kind).toBe("response");
    expect((await ended)[0].reason).toBe("cancelled");
  });

  it("hangs up from our side with a BYE to the door's address", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone);
    srv.intercom.answer(info.callId, { id: "alice" });
    phone.send(ackFor(phone, invite, toTag));
    const ended = once(srv.intercom.events, "ended");
    srv.intercom.hangup(info.callId);
    const bye = await net.next(isRequest("BYE"));
    expect(bye.to).toMatchObject({ address: "10.1.0.5", port: 5062 });
    expect((bye.msg as SipRequest).uri).toBe("sip:front@10.1.0.5:5062");
    expect((await ended)[0].reason).toBe("local-bye");
  });

  it("retransmits the 2xx until the ACK, then gives up with a BYE (no-ack)", async () => {
    const { net, clock, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info } = await ringingCall(net, srv, phone);
    srv.intercom.answer(info.callId, { id: "alice" });
    const ended = once(srv.intercom.events, "ended");
    clock.advance(64 * 500);
    expect(net.sent.filter(isResponse(200, "INVITE")).length).toBeGreaterThanOrEqual(7);
    expect((await net.next(isRequest("BYE"))).msg.kind).toBe("request");
    expect((await ended)[0].reason).toBe("no-ack");
  });

  it("answers a re-INVITE with the same media and the same o= version", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone);
    srv.intercom.answer(info.callId, { id: "alice" });
    const ok1 = (await net.next(isResponse(200, "INVITE"))).msg as SipResponse;
    phone.send(ackFor(phone, invite, toTag));
    const re = inDialog(phone, invite, toTag, "INVITE", { body: SDP_OFFER(40010) });
    const ok2 = await phone.transact(re);
    expect(ok2.status).toBe(200);
    expect(ok2.body.toString()).toBe(ok1.body.toString());
    expect(srv.intercom.get(info.callId)!.state).toBe("answered");
  });

  it("negotiates an RFC 4028 session timer and hangs up when the door stops refreshing", async () => {
    const { net, clock, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone, [["Session-Expires", "120"], ["Supported", "timer"]]);
    srv.intercom.answer(info.callId, { id: "alice" });
    const ok = (await net.next(isResponse(200, "INVITE"))).msg as SipResponse;
    expect(ok.headers.get("session-expires")).toBe("120;refresher=uac");
    expect(ok.headers.get("require")).toBe("timer");
    phone.send(ackFor(phone, invite, toTag));
    // A refresh (UPDATE) at 60 s restarts the timer…
    clock.advance(60_000);
    expect((await phone.transact(inDialog(phone, invite, toTag, "UPDATE", { headers: [["Session-Expires", "120;refresher=uac"], ["Supported", "timer"]] }))).status).toBe(200);
    const ended = once(srv.intercom.events, "ended");
    clock.advance(79_000); // 120 − min(32, 40) = 88 s after the refresh: not yet
    expect(srv.intercom.get(info.callId)!.state).toBe("answered");
    clock.advance(10_000);
    expect((await ended)[0].reason).toBe("session-expired");
    expect((await net.next(isRequest("BYE"))).msg.kind).toBe("request");
  });

  it("refreshes the session itself when the door asks us to (refresher=uas)", async () => {
    const { net, clock, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone, [["Session-Expires", "100;refresher=uas"], ["Supported", "timer"]]);
    srv.intercom.answer(info.callId, { id: "alice" });
    phone.send(ackFor(phone, invite, toTag));
    net.mark = net.sent.length;
    clock.advance(50_000);
    const re = (await net.next(isRequest("INVITE"))).msg as SipRequest;
    expect(re.headers.get("session-expires")).toBe("100;refresher=uac");
    expect(re.body.toString()).toContain("m=audio");
  });

  it("refuses a too-short Session-Expires with 422 and Min-SE", async () => {
    const { net } = await start();
    const phone = new Phone(net, { user: "back", src: { transport: "udp", address: "10.9.0.44", port: 5060 } });
    const res = await phone.transact(phone.request("INVITE", { body: SDP_OFFER(40000), headers: [["Session-Expires", "30"]] }));
    expect(res.status).toBe(422);
    expect(res.headers.get("min-se")).toBe("90");
  });

  it("refuses media it cannot take (488), unknown bodies (415) and unsupported extensions (420)", async () => {
    const { net } = await start();
    const phone = new Phone(net, { user: "back", src: { transport: "udp", address: "10.9.0.44", port: 5060 } });
    const g722 = "v=0\r\no=- 1 1 IN IP4 10.9.0.44\r\ns=-\r\nc=IN IP4 10.9.0.44\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n";
    const r488 = await phone.transact(phone.request("INVITE", { body: g722 }));
    expect(r488.status).toBe(488);
    expect((await phone.transact(phone.request("INVITE", { body: "<x/>", contentType: "application/xml" }))).status).toBe(415);
    const r420 = await phone.transact(phone.request("INVITE", { body: SDP_OFFER(4000), headers: [["Require", "100rel, foo"]] }));
    expect(r420.status).toBe(420);
    expect(r420.headers.get("unsupported")).toBe("100rel, foo");
  });

  it("reports DTMF from the door sent by SIP INFO", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone);
    srv.intercom.answer(info.callId, { id: "alice" });
    phone.send(ackFor(phone, invite, toTag));
    const dtmf = once(srv.intercom.events, "dtmf");
    const res = await phone.transact(inDialog(phone, invite, toTag, "INFO", { body: "Signal=5\r\nDuration=160\r\n", contentType: "application/dtmf-relay" }));
    expect(res.status).toBe(200);
    expect((await dtmf)[0]).toMatchObject({ callId: info.callId, digit: "5" });
  });

  it("opens the door with SIP INFO digits for a device configured so", async () => {
    const { net, srv } = await start();
    const src: Endpoint = { transport: "udp", address: "10.9.0.44", port: 5060 };
    const phone = new Phone(net, { user: "back", src });
    const ring = once(srv.intercom.events, "ring");
    const inv = phone.request("INVITE", { body: SDP_OFFER(40000) });
    phone.send(inv);
    const [info] = await ring;
    srv.intercom.answer(info.callId, { id: "anyone" });
    const ok = (await net.next(isResponse(200, "INVITE"))).msg as SipResponse;
    phone.send(ackFor(phone, inv, tagOf(toOf(ok))!));
    const done = srv.intercom.openDoor(info.callId);
    for (const digit of ["*", "9"]) {
      const infoReq = (await net.next(isRequest("INFO"))).msg as SipRequest;
      expect(infoReq.body.toString()).toBe(`Signal=${digit}\r\nDuration=160\r\n`);
      expect(infoReq.headers.get("content-type")).toBe("application/dtmf-relay");
      net.deliver({ kind: "response", status: 200, reason: "OK", headers: infoReq.headers.clone(), body: Buffer.alloc(0) }, src);
    }
    await done;
  });

  it("answers a CANCEL that overtakes the call setup with 487 and never rings", async () => {
    const { net, srv } = await start();
    let rang = false;
    srv.intercom.events.on("ring", () => (rang = true));
    const src: Endpoint = { transport: "udp", address: "10.9.0.44", port: 5060 };
    const phone = new Phone(net, { user: "back", src });
    const inv = phone.request("INVITE", { body: SDP_OFFER(40000) });
    const cancel = phone.request("CANCEL", {
      callId: inv.headers.get("call-id")!,
      fromTag: tagOf(parseNameAddr(inv.headers.get("from")!))!,
      branch: inv.headers.getList("via")[0]!.match(/branch=([^;]+)/)![1]!,
      cseq: cseqOf(inv).seq,
    });
    cancel.headers.set("CSeq", `${cseqOf(inv).seq} CANCEL`);
    phone.send(inv);
    phone.send(cancel); // before the RTP ports are bound
    expect((await net.next(isResponse(487, "INVITE"))).msg.kind).toBe("response");
    await new Promise((r) => setTimeout(r, 50));
    expect(rang).toBe(false);
    expect(srv.stats().rtpPortsInUse).toBe(0);
  });

  it("offers early media (183 + SDP) and plays a ringback tone to the door while ringing", async () => {
    // The door's RTP socket is on loopback, so that is where it calls from.
    const { net, srv } = await start({ earlyMedia: true, devices: [{ id: "back", username: "back", allow: ["127.0.0.1"] }] });
    const door = dgram.createSocket("udp4");
    await new Promise<void>((r) => door.bind(0, "127.0.0.1", () => r()));
    const heard: Buffer[] = [];
    door.on("message", (m) => heard.push(m));
    try {
      const phone = new Phone(net, { user: "back", src: { transport: "udp", address: "127.0.0.1", port: 5090 } });
      const ring = once(srv.intercom.events, "ring");
      phone.send(phone.request("INVITE", { body: SDP_OFFER(door.address().port) }));
      await ring;
      const progress = (await net.next(isResponse(183, "INVITE"))).msg as SipResponse;
      expect(progress.body.toString()).toMatch(/m=audio \d+ RTP\/AVP 0 101/);
      await until(() => heard.length >= 10);
      // The tone's first second: loud G.711, not the 0xFF of µ-law silence.
      expect(heard.slice(0, 10).some((p) => p.subarray(12).some((b) => b !== 0xff))).toBe(true);
    } finally {
      door.close();
    }
  });

  it("handles an offerless INVITE: our offer in the 200, the door's answer in the ACK", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "back", src: { transport: "udp", address: "10.9.0.44", port: 5060 } });
    const ring = once(srv.intercom.events, "ring");
    const inv = phone.request("INVITE");
    phone.send(inv);
    const [info] = await ring;
    const call = srv.intercom.answer(info.callId, { id: "x" });
    const ok = (await net.next(isResponse(200, "INVITE"))).msg as SipResponse;
    expect(ok.body.toString()).toMatch(/m=audio \d+ RTP\/AVP 0 8 101/);
    expect(call.audioTrack).toBeUndefined();
    const ack = ackFor(phone, inv, tagOf(toOf(ok))!);
    ack.body = Buffer.from(SDP_OFFER(40000).replace("RTP/AVP 0 8 101", "RTP/AVP 8"), "latin1");
    ack.headers.set("Content-Type", "application/sdp");
    phone.send(ack);
    expect(call.audioTrack).toMatchObject({ codec: "PCMA", payloadType: 8 });
  });

  it("never lets a device make us call elsewhere: REFER is refused and no request leaves", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    const { info, invite, toTag } = await ringingCall(net, srv, phone);
    srv.intercom.answer(info.callId, { id: "alice" });
    phone.send(ackFor(phone, invite, toTag));
    const before = net.sent.length;
    const inDialogRefer = await phone.transact(inDialog(phone, invite, toTag, "REFER", { headers: [["Refer-To", "<sip:victim@198.51.100.9>"]] }));
    expect(inDialogRefer.status).toBe(501);
    const refer = await phone.transact(phone.request("REFER", { headers: [["Refer-To", "<sip:victim@198.51.100.9>"]] }));
    expect(refer.status).toBe(405);
    expect(net.sent.slice(before).filter((s) => s.msg.kind === "request")).toHaveLength(0);
  });

  it("answers a ringing call with 480 on shutdown", async () => {
    const { net, srv } = await start();
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    await ringingCall(net, srv, phone);
    const ended = once(srv.intercom.events, "ended");
    await srv.close();
    expect(net.sent.some(isResponse(480, "INVITE"))).toBe(true);
    expect((await ended)[0].reason).toBe("shutdown");
  });
});

describe("outgoing calls (talk to the door)", () => {
  it("calls only configured, registered devices, at their registered address", async () => {
    const { net, srv } = await start();
    await expect(srv.intercom.call("nonexistent", { id: "alice" })).rejects.toBeInstanceOf(NotFoundError);
    await expect(srv.intercom.call("front", { id: "alice" })).rejects.toBeInstanceOf(NotFoundError);
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    await phone.register();
    const pending = srv.intercom.call("front", { id: "alice" });
    const inv = await net.next(isRequest("INVITE"));
    expect(inv.to).toMatchObject({ address: "10.1.0.5", port: 5062 });
    const req = inv.msg as SipRequest;
    expect(req.uri).toBe("sip:front@10.1.0.5:5062");
    const ok: SipResponse = {
      kind: "response",
      status: 200,
      reason: "OK",
      headers: req.headers.clone(),
      body: Buffer.from(SDP_OFFER(41000, "10.1.0.5").replace("RTP/AVP 0 8 101", "RTP/AVP 8 101"), "latin1"),
    };
    ok.headers.set("To", `${req.headers.get("to")};tag=door77`);
    ok.headers.set("Contact", "<sip:front@10.1.0.5:5062>");
    ok.headers.delete("content-type");
    ok.headers.append("Content-Type", "application/sdp");
    net.deliver(ok, DOOR);
    const call = await pending;
    expect(call.state).toBe("answered");
    expect(call.audioTrack?.codec).toBe("PCMA");
    const ack = (await net.next(isRequest("ACK"))).msg as SipRequest;
    expect(ack.headers.get("to")).toContain("tag=door77");
    expect(cseqOf(ack)).toEqual({ seq: 1, method: "ACK" });
  });

  it("cancels an outgoing call that rings too long", async () => {
    const { net, clock, srv } = await start({ ringTimeoutSeconds: 10 });
    const phone = new Phone(net, { user: "front", password: "front-secret", src: DOOR });
    await phone.register();
    const pending = srv.intercom.call("front", { id: "alice" });
    const req = (await net.next(isRequest("INVITE"))).msg as SipRequest;
    const ringing: SipResponse = { kind: "response", status: 180, reason: "Ringing", headers: req.headers.clone(), body: Buffer.alloc(0) };
    ringing.headers.set("To", `${req.headers.get("to")};tag=door78`);
    net.deliver(ringing, DOOR);
    clock.advance(10_000);
    const cancel = (await net.next(isRequest("CANCEL"))).msg as SipRequest;
    expect(cancel.headers.getList("via")[0]).toBe(req.headers.getList("via")[0]);
    const terminated: SipResponse = { ...ringing, status: 487, reason: "Request Terminated" };
    net.deliver(terminated, DOOR);
    await expect(pending).rejects.toThrow(/no-answer/);
  });
});
