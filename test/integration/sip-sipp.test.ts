/**
 * The SIP server against sipp (a real SIP implementation, run as a child process):
 * digest REGISTER over UDP and TCP, calls with RTP audio, CANCEL before answer, BYE from
 * each side, challenged INVITEs, refused strangers, brute-force lockout, and both sides'
 * retransmissions through a relay that loses chosen packets.
 */
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { parseConfig } from "../../config/load.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import type { SipCall } from "../../gateway/sip/call.ts";
import { linearToUlaw } from "../../gateway/sip/rtp.ts";
import type { MediaSink } from "../../sfu/types.ts";
import { describeRun, runSipp, type SippResult } from "../peers/sipp.ts";

const FIX = "test/fixtures/sip";
const PASSWORD = "door-secret-1";

let server: SipServer | undefined;
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  await server?.close();
  server = undefined;
});

/** One second of a 440 Hz tone in G.711 µ-law (sipp's rtp_stream loops it). */
const TONE = (() => {
  const b = Buffer.alloc(8000);
  for (let i = 0; i < b.length; i++) b[i] = linearToUlaw(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000));
  return b;
})();

async function start(input: Record<string, unknown> = {}): Promise<SipServer> {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  const config = parseConfig({
    sip: {
      enabled: true,
      udp: { port: 0 },
      tcp: { port: 0 },
      keepAliveSeconds: 0,
      rtpPortRange: [base, base + 99],
      lockout: { maxFailures: 3 },
      devices: [
        { id: "front", username: "front", password: PASSWORD },
        { id: "lobby", username: "lobby", allow: ["127.0.0.1"] },
      ],
      ...input,
    },
  }).sip;
  server = await startSipServer({ config, log: silentLogger });
  return server;
}

/** A sink that counts the door's packets and echoes them back (the browser's mic, in effect). */
function echoSink(call: () => SipCall | undefined): MediaSink & { packets: number } {
  return {
    packets: 0,
    setTracks() {},
    pushRtp(_t, p) {
      this.packets++;
      call()?.sendRtp(p);
    },
    pushRtcp() {},
    upstreamDown() {},
  };
}

function autoAnswer(srv: SipServer, opts: { hangupAfterMs?: number } = {}): { sink: ReturnType<typeof echoSink>; calls: SipCall[] } {
  const calls: SipCall[] = [];
  let current: SipCall | undefined;
  const sink = echoSink(() => current);
  srv.intercom.events.on("ring", (r) => {
    current = srv.intercom.answer(r.callId, { id: "tester" }, { sink });
    calls.push(current);
    if (opts.hangupAfterMs !== undefined) {
      const id = r.callId;
      setTimeout(() => srv.intercom.get(id)?.hangup(), opts.hangupAfterMs);
    }
  });
  return { sink, calls };
}

function expectOk(r: SippResult): void {
  expect(r.code, describeRun(r)).toBe(0);
}

describe("sipp: registration", () => {
  for (const transport of ["udp", "tcp"] as const) {
    it(`registers with digest over ${transport.toUpperCase()} and is refused with a wrong password`, async () => {
      const srv = await start();
      const target = `127.0.0.1:${transport === "udp" ? srv.ports.udp : srv.ports.tcp}`;
      const keys = { user: "front", domain: "gatehouse", expires: 300 };
      const registered = new Promise<string>((resolve) => srv.registrar.events.once("registered", (_d, b) => resolve(b.target.transport)));
      const removed = new Promise<string>((resolve) => srv.registrar.events.once("unregistered", (_d, _b, reason) => resolve(reason)));
      expectOk(await runSipp({ scenario: `${FIX}/register.xml`, target, transport, keys, auth: { user: "front", password: PASSWORD } }));
      expect(await registered).toBe(transport);
      if (transport === "udp") {
        expect(srv.intercom.devices().find((d) => d.id === "front")!.bindings[0]).toMatchObject({ transport, address: "127.0.0.1" });
      } else {
        // sipp closed its connection on exit: a TCP binding cannot outlive it (RFC 5626 flow failure).
        expect(await removed).toBe("unreachable");
      }
      expectOk(await runSipp({ scenario: `${FIX}/register-bad.xml`, target, transport, keys, auth: { user: "front", password: "not-the-password" } }));
      expect(srv.stats().auth.failures).toBe(1);
    });
  }

  it("locks a source out after repeated failures (brute force), counted", async () => {
    const srv = await start();
    const target = `127.0.0.1:${srv.ports.udp}`;
    const keys = { user: "front", domain: "gatehouse", expires: 300 };
    for (let i = 0; i < 3; i++) expectOk(await runSipp({ scenario: `${FIX}/register-bad.xml`, target, keys, auth: { user: "front", password: `guess-${i}` } }));
    // Now even the first REGISTER, with no credentials, is refused.
    expectOk(await runSipp({ scenario: `${FIX}/register-locked.xml`, target, keys, auth: { user: "front", password: PASSWORD } }));
    const s = srv.stats();
    expect(s.lockouts).toBe(1);
    expect(s.refused.lockedOut).toBeGreaterThanOrEqual(1);
    expect(srv.intercom.devices().find((d) => d.id === "front")!.online).toBe(false);
  });
});

describe("sipp: calls", () => {
  for (const transport of ["udp", "tcp"] as const) {
    it(`carries RTP both ways in a call from an allow-listed door over ${transport.toUpperCase()}, BYE from the door`, async () => {
      const srv = await start();
      const { sink, calls } = autoAnswer(srv);
      const ended = new Promise((r) => srv.intercom.events.once("ended", r));
      const r = await runSipp({
        scenario: `${FIX}/call-rtp.xml`,
        target: `127.0.0.1:${transport === "udp" ? srv.ports.udp : srv.ports.tcp}`,
        transport,
        keys: { user: "lobby" },
        files: { "door.ulaw": TONE },
        extraArgs: ["-d", "3000"],
      });
      expectOk(r);
      expect(await ended).toMatchObject({ reason: "remote-bye", deviceId: "lobby", answeredBy: "tester" });
      // 3 s at 50 packets/s from the door: more than a third reached the sink (sipp's RTP thread may
      // start late on a loaded machine), and every one went back.
      expect(sink.packets).toBeGreaterThan(50);
      const media = calls[0]!.mediaStats();
      expect(media.packetsOut).toBeGreaterThanOrEqual(sink.packets);
      expect(media.dropped.foreign).toBe(0);
      expect(srv.stats().rtpPortsInUse).toBe(0);
    });
  }

  it("challenges the INVITE of a registered door and accepts the digest answer", async () => {
    const srv = await start();
    const { sink } = autoAnswer(srv);
    const r = await runSipp({
      scenario: `${FIX}/call-auth.xml`,
      target: `127.0.0.1:${srv.ports.udp}`,
      keys: { user: "front", domain: "gatehouse", expires: 300 },
      auth: { user: "front", password: PASSWORD },
      files: { "door.ulaw": TONE },
      extraArgs: ["-d", "800"],
    });
    expectOk(r);
    expect(sink.packets).toBeGreaterThan(20);
    expect(srv.intercom.history()[0]).toMatchObject({ deviceId: "front", reason: "remote-bye" });
  });

  it("handles CANCEL before answer: 200 to the CANCEL, 487 to the INVITE, recorded as cancelled", async () => {
    const srv = await start();
    let rang = 0;
    srv.intercom.events.on("ring", () => rang++);
    expectOk(await runSipp({ scenario: `${FIX}/cancel.xml`, target: `127.0.0.1:${srv.ports.udp}`, keys: { user: "lobby" } }));
    expect(rang).toBe(1);
    expect(srv.intercom.history()[0]).toMatchObject({ reason: "cancelled", status: 487 });
    expect(srv.stats().rtpPortsInUse).toBe(0);
  });

  it("hangs up from the gateway side: the door gets a BYE and answers it", async () => {
    const srv = await start();
    const { sink } = autoAnswer(srv, { hangupAfterMs: 600 });
    const r = await runSipp({ scenario: `${FIX}/bye-from-gateway.xml`, target: `127.0.0.1:${srv.ports.udp}`, keys: { user: "lobby" }, files: { "door.ulaw": TONE } });
    expectOk(r);
    expect(sink.packets).toBeGreaterThan(10);
    expect(srv.intercom.history()[0]).toMatchObject({ reason: "local-bye" });
  });

  it("refuses a caller that is neither registered nor allow-listed, without ringing anyone", async () => {
    const srv = await start({ devices: [{ id: "front", username: "front", password: PASSWORD }] });
    let rang = false;
    srv.intercom.events.on("ring", () => (rang = true));
    expectOk(await runSipp({ scenario: `${FIX}/call-refused.xml`, target: `127.0.0.1:${srv.ports.udp}`, keys: { user: "front" } }));
    expect(rang).toBe(false);
    expect(srv.stats().refused.unknownCaller).toBe(1);
  });

  it("recovers lost packets by retransmission on both sides (relay dropping the first INVITE, 200 OK and 401)", async () => {
    const srv = await start();
    autoAnswer(srv);
    const relay = await lossyRelay(srv.ports.udp!, [
      { dir: "up", match: /^INVITE /, count: 1 },
      { dir: "down", match: /^SIP\/2\.0 200 [^\r]*\r\n(?:[^\r]*\r\n)*?CSeq: 1 INVITE/, count: 1 },
      { dir: "down", match: /^SIP\/2\.0 401 /, count: 1 },
    ]);
    cleanups.push(() => relay.close());
    const target = `127.0.0.1:${relay.port}`;
    // REGISTER: our first 401 is lost; sipp retransmits; our transaction answers from its cache.
    expectOk(await runSipp({ scenario: `${FIX}/register.xml`, target, keys: { user: "front", domain: "gatehouse", expires: 300 }, auth: { user: "front", password: PASSWORD } }));
    // INVITE: sipp's first INVITE is lost (sipp retransmits, Timer A), then our first 200 (we retransmit it until the ACK).
    expectOk(await runSipp({ scenario: `${FIX}/call-rtp.xml`, target, keys: { user: "lobby" }, files: { "door.ulaw": TONE }, extraArgs: ["-d", "300"] }));
    expect(relay.dropped).toBe(3);
    const t = srv.stats().transactions;
    expect(t.retransmissionsSent).toBeGreaterThanOrEqual(1); // the 2xx (Timer G-style, §13.3.1.4)
    expect(t.retransmissionsAbsorbed).toBeGreaterThanOrEqual(1); // sipp's REGISTER retransmission got the cached 401
    expect(srv.intercom.history().at(-1)).toMatchObject({ reason: "remote-bye" });
  });
});

interface DropRule {
  dir: "up" | "down";
  match: RegExp;
  count: number;
}

/** A UDP relay between one client and the server that drops the first packets matching rules. */
async function lossyRelay(serverPort: number, rules: DropRule[]): Promise<{ port: number; dropped: number; close(): void }> {
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  let client: { address: string; port: number } | undefined;
  const state = { port: sock.address().port, dropped: 0, close: () => sock.close() };
  sock.on("message", (m, r) => {
    const fromServer = r.port === serverPort;
    if (!fromServer) client = { address: r.address, port: r.port };
    const dir = fromServer ? "down" : "up";
    const text = m.toString("latin1");
    const rule = rules.find((x) => x.dir === dir && x.count > 0 && x.match.test(text));
    if (rule) {
      rule.count--;
      state.dropped++;
      return;
    }
    if (fromServer) {
      if (client) sock.send(m, client.port, client.address);
    } else sock.send(m, serverPort, "127.0.0.1");
  });
  return state;
}
