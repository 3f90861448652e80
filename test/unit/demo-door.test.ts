/**
 * The demo door's pure parts and the embedded defaults: the door's voice (tone cadence, echo
 * after its delay, bounded queue, what it heard), its requests and digest answers checked by
 * the gateway's own DigestServer, and what `npm start` without a file configures.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { embeddedDefaults } from "../../config/embedded.ts";
import { loadConfig, parseConfig } from "../../config/load.ts";
import { DoorVoice, FRAME_SAMPLES } from "../../gateway/demo/door-voice.ts";
import { answerChallenge, cancelRequest, inviteRequest, registerRequest, type DoorIdentity } from "../../gateway/demo/door-sip.ts";
import { DigestServer } from "../../gateway/digest/server.ts";
import { makeResponse, parseMessage, serializeMessage, type SipRequest } from "../../gateway/sip/message.ts";
import { linearToUlaw, ulawToLinear } from "../../gateway/sip/rtp.ts";

const peak = (frame: Buffer) => Math.max(...[...frame].map((b) => Math.abs(ulawToLinear(b))));
const loud = (level: number) => Buffer.from(Array.from({ length: FRAME_SAMPLES }, (_, i) => linearToUlaw(level * Math.sin((2 * Math.PI * 1000 * i) / 8000))));

describe("demo door voice", () => {
  it("beeps: tone for toneOnMs of every toneEveryMs, silence between", () => {
    const v = new DoorVoice({ codec: "PCMU", toneOnMs: 200, toneEveryMs: 1000, toneLevel: 6000 });
    const frames = Array.from({ length: 100 }, () => peak(v.next()));
    expect(frames.slice(0, 10).every((p) => p > 5000 && p <= 6500)).toBe(true); // 200 ms on
    expect(frames.slice(10, 50).every((p) => p < 50)).toBe(true); // 800 ms off
    expect(frames.slice(50, 60).every((p) => p > 5000)).toBe(true);
  });

  it("echoes what it hears after its delay, and measures it", () => {
    const v = new DoorVoice({ codec: "PCMU", toneLevel: 0, echoDelayMs: 100 });
    expect(v.heard).toEqual({ frames: 0, peak: 0, level: 0 });
    for (let i = 0; i < 5; i++) v.hear(loud(12000));
    // 100 ms = 5 frames held back: nothing yet, then the echo.
    v.hear(loud(12000));
    expect(peak(v.next())).toBeGreaterThan(11000);
    expect(v.heard.frames).toBe(6);
    expect(v.heard.peak).toBeGreaterThan(11000);
    expect(v.heard.level).toBeGreaterThan(7000);
    const quiet = new DoorVoice({ codec: "PCMU", toneLevel: 0, echoDelayMs: 100 });
    for (let i = 0; i < 5; i++) quiet.hear(loud(12000));
    expect(peak(quiet.next())).toBeLessThan(50); // still within the delay
  });

  it("never lets a fast sender grow the echo delay without bound", () => {
    const v = new DoorVoice({ codec: "PCMA", toneLevel: 0, echoDelayMs: 60 });
    for (let i = 0; i < 1000; i++) v.hear(Buffer.alloc(FRAME_SAMPLES, 0xd5));
    let echoed = 0;
    while (v["echo"].length > 3) {
      v.next();
      echoed++;
    }
    expect(echoed).toBeLessThanOrEqual(10);
  });
});

const id: DoorIdentity = { username: "demo-door", domain: "gatehouse", displayName: "Demo \"front\" door", address: "127.0.0.1", port: 40123 };
const reparse = (req: SipRequest) => {
  const r = parseMessage(serializeMessage(req), { datagram: true });
  if (r.kind !== "request") throw new Error(`not a valid request: ${r.kind}`);
  return r.message;
};

describe("demo door requests", () => {
  it("builds REGISTER, INVITE and CANCEL that the gateway's parser accepts", () => {
    const reg = reparse(registerRequest(id, { branch: "z9hG4bKa", callId: "c1", fromTag: "t1", cseq: 3, expires: 600 }));
    expect(reg.uri).toBe("sip:gatehouse");
    expect(reg.headers.get("contact")).toBe("<sip:demo-door@127.0.0.1:40123>");
    expect(reg.headers.get("expires")).toBe("600");
    const inv = reparse(inviteRequest(id, { branch: "z9hG4bKb", callId: "c2", fromTag: "t2", cseq: 1, target: "sip:gatehouse", sdp: "v=0\r\n" }));
    expect(inv.headers.get("from")).toBe('"Demo \\"front\\" door" <sip:demo-door@gatehouse>;tag=t2');
    expect(inv.body.toString()).toBe("v=0\r\n");
    const cancel = reparse(cancelRequest(inv));
    expect(cancel.method).toBe("CANCEL");
    expect(cancel.headers.get("via")).toBe(inv.headers.get("via"));
    expect(cancel.headers.get("cseq")).toBe("1 CANCEL");
    expect(cancel.uri).toBe(inv.uri);
  });

  it("answers the gateway's digest challenge (the strongest algorithm it offers) so that its DigestServer accepts it", () => {
    const server = new DigestServer({ now: () => 1_000_000 });
    const req = registerRequest(id, { branch: "z9hG4bKa", callId: "c1", fromTag: "t1", cseq: 1, expires: 600 });
    const challenge = makeResponse(req, 401, { headers: server.challenge("gatehouse", ["MD5", "SHA-256"], "127.0.0.1").map((c) => ["WWW-Authenticate", c] as [string, string]) });
    const a = answerChallenge(challenge, { username: "demo-door", password: "pw-123456789", method: "REGISTER", uri: "sip:gatehouse", cnonce: "abc" });
    expect(a?.header).toBe("Authorization");
    expect(a?.value).toContain("algorithm=SHA-256");
    const ok = server.verify(a!.value, "REGISTER", "gatehouse", ["MD5", "SHA-256"], (u) => (u === "demo-door" ? "pw-123456789" : undefined), "127.0.0.1");
    expect(ok).toMatchObject({ ok: true, username: "demo-door", algorithm: "SHA-256" });
    const wrong = answerChallenge(challenge, { username: "demo-door", password: "other", method: "REGISTER", uri: "sip:gatehouse", cnonce: "abd" });
    expect(server.verify(wrong!.value, "REGISTER", "gatehouse", ["MD5", "SHA-256"], () => "pw-123456789", "127.0.0.1")).toMatchObject({ ok: false, reason: "bad-response" });
    // 407 → Proxy-Authorization; no qop=auth or no Digest → nothing to answer with.
    const proxy = makeResponse(req, 407, { headers: [["Proxy-Authenticate", server.challenge("gatehouse", ["MD5"], "127.0.0.1")[0]!]] });
    expect(answerChallenge(proxy, { username: "u", password: "p", method: "INVITE", uri: "sip:x", cnonce: "c" })?.header).toBe("Proxy-Authorization");
    const basic = makeResponse(req, 401, { headers: [["WWW-Authenticate", 'Basic realm="x"'], ["WWW-Authenticate", 'Digest realm="x", nonce="n"']] });
    expect(answerChallenge(basic, { username: "u", password: "p", method: "REGISTER", uri: "sip:x", cnonce: "c" })).toBeUndefined();
  });
});

describe("embedded defaults", () => {
  it("without a file, run everything: TURN (UDP 14049 + TCP on the front door, a fresh secret each start), SIP and the demo door", () => {
    const a = loadConfig({ env: {} });
    const b = loadConfig({ env: {} });
    expect(a.turn).toMatchObject({ enabled: true, udp: [{ host: "127.0.0.1", port: 14049 }], shareHttpsPort: true });
    expect(a.turn.secret!.length).toBeGreaterThanOrEqual(32);
    expect(a.turn.secret).not.toBe(b.turn.secret);
    expect(a.sip).toMatchObject({ enabled: true, udp: { enabled: true, port: 5060 }, tcp: { enabled: true, port: 5060 } });
    expect(a.demo).toMatchObject({ enabled: "auto", door: { enabled: true, name: "Demo door" } });
    expect(a.auth.mode).toBe("dev");
    expect(a.server.port).toBe(8080);
    expect(embeddedDefaults(() => Buffer.alloc(24, 1)).turn).toEqual({ enabled: true, secret: Buffer.alloc(24, 1).toString("base64url") });
  });

  it("a configuration file starts from the closed defaults: no TURN, no SIP, no demo door", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gh-cfg-"));
    try {
      const file = path.join(dir, "g.yaml");
      writeFileSync(file, "server:\n  port: 8443\n");
      const cfg = loadConfig({ file, env: {} });
      expect(cfg.turn.enabled).toBe(false);
      expect(cfg.sip.enabled).toBe(false);
      expect(cfg.demo.door.enabled).toBe(false);
      expect(parseConfig({}).demo.door).toEqual({ enabled: false, name: "Demo door", answerAfterMs: 800 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
