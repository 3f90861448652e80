/**
 * The built-in demo door station against the gateway's real SIP server on loopback: it
 * registers with digest, rings (the intercom sees a ring from it), its tone reaches whoever
 * answers and what they say comes back to it (it hears it, and echoes it), the open-door
 * digits reach it, it answers a call from the gateway by itself, and every way a call ends
 * (BYE either side, unanswered 480, CANCEL, busy) leaves both sides idle.
 */
import { afterEach, describe, expect, it } from "vitest";
import { UpstreamError, WrongStateError } from "../../config/errors.ts";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { SipConfig } from "../../config/sections/sip.ts";
import { DemoDoor, type DemoDoorEvents } from "../../gateway/demo/door.ts";
import { startSipServer, type IntercomEvents, type SipServer } from "../../gateway/sip/index.ts";
import { linearToUlaw, ulawToLinear } from "../../gateway/sip/rtp.ts";
import type { MediaSink } from "../../sfu/types.ts";

const PASSWORD = "demo-door-password-1";
const USER = { id: "alice" };
const open: Array<{ close(reason?: string): Promise<void> }> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close("test done");
});

async function setUp(sip: Record<string, unknown> = {}, door: { password?: string; answerAfterMs?: number } = {}) {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  const cfg: SipConfig = parseConfig(
    {
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { enabled: false },
        keepAliveSeconds: 0,
        rtpPortRange: [base, base + 39],
        devices: [{ id: "demo-door", name: "Demo door", username: "demo-door", password: PASSWORD, camera: "demo", digestAlgorithms: ["SHA-256", "MD5"] }],
        ...sip,
      },
    },
    {},
  ).sip;
  const server = await startSipServer({ config: cfg, log: silentLogger, cameras: ["demo"] });
  open.push(server);
  const d = await DemoDoor.start({
    sip: cfg,
    registrar: { address: "127.0.0.1", port: server.ports.udp! },
    username: "demo-door",
    password: door.password ?? PASSWORD,
    displayName: "Demo door",
    answerAfterMs: door.answerAfterMs ?? 200,
    log: silentLogger,
  });
  open.push(d);
  return { server, door: d };
}

function next<K extends keyof IntercomEvents>(server: SipServer, event: K, pred: (...a: IntercomEvents[K]) => boolean = () => true, timeoutMs = 10_000): Promise<IntercomEvents[K]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no intercom ${String(event)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = server.intercom.events.on(event, (...a) => {
      if (!pred(...a)) return;
      clearTimeout(t);
      off();
      resolve(a);
    });
  });
}

function doorEvent<K extends keyof DemoDoorEvents>(door: DemoDoor, event: K, pred: (...a: DemoDoorEvents[K]) => boolean = () => true, timeoutMs = 10_000): Promise<DemoDoorEvents[K]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no demo door ${String(event)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = door.events.on(event, (...a) => {
      if (!pred(...a)) return;
      clearTimeout(t);
      off();
      resolve(a);
    });
  });
}

/** Plays the browser's side: counts and measures the door's audio. */
class Ear implements MediaSink {
  packets = 0;
  peak = 0;
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  setTracks(): void {}
  pushRtp(_t: number, packet: Buffer): void {
    this.packets++;
    for (let i = 12; i < packet.length; i++) this.peak = Math.max(this.peak, Math.abs(ulawToLinear(packet[i]!)));
    for (const w of [...this.waiters]) if (this.packets >= w.n) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve();
    }
  }
  pushRtcp(): void {}
  upstreamDown(): void {}
  until(n: number, timeoutMs = 10_000): Promise<void> {
    if (this.packets >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`heard ${this.packets} of ${n} packets from the door`)), timeoutMs);
      this.waiters.push({ n, resolve: () => (clearTimeout(t), resolve()) });
    });
  }
}

/** The browser's microphone: a loud 1 kHz tone as PCMU RTP, every 20 ms while `on`. */
function speak(send: (p: Buffer) => void): () => void {
  let n = 0;
  const timer = setInterval(() => {
    const p = Buffer.alloc(12 + 160);
    p[0] = 0x80;
    p.writeUInt16BE(n & 0xffff, 2);
    p.writeUInt32BE(n * 160, 4);
    p.writeUInt32BE(0xb0b, 8);
    for (let i = 0; i < 160; i++) p[12 + i] = linearToUlaw(12000 * Math.sin((2 * Math.PI * 1000 * (n * 160 + i)) / 8000));
    n++;
    send(p);
  }, 20);
  return () => clearInterval(timer);
}

async function waitFor(cond: () => boolean, what: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("demo door station", () => {
  it("registers with digest; rings; its tone reaches the answerer, what they say reaches it, the open-door digits too; BYE ends it", async () => {
    const { server, door } = await setUp();
    expect(door.state).toBe("idle");
    expect(server.intercom.devices().find((d) => d.id === "demo-door")?.online).toBe(true);

    const ring = next(server, "ring");
    await door.ring();
    const [r] = await ring;
    expect(r).toMatchObject({ deviceId: "demo-door", deviceName: "Demo door", camera: "demo" });
    expect(door.state).toBe("ringing");
    await expect(door.ring()).rejects.toBeInstanceOf(WrongStateError);

    const ear = new Ear();
    const inCall = doorEvent(door, "state", (s) => s === "in-call");
    const call = server.intercom.answer(r.callId, USER, { sink: ear });
    await inCall;
    await ear.until(50);
    expect(ear.peak).toBeGreaterThan(3000); // the door's tone, not silence fill

    const stop = speak((p) => call.sendRtp(p));
    try {
      await waitFor(() => door.stats().heard.frames > 25 && door.stats().heard.peak > 8000, () => JSON.stringify(door.stats()));
    } finally {
      stop();
    }

    const hash = doorEvent(door, "dtmf", (d) => d === "#");
    await call.openDoor();
    await hash;
    expect(door.stats().digits).toContain("#");

    const ended = doorEvent(door, "ended");
    const record = next(server, "ended");
    call.hangup();
    expect((await ended)[0]).toMatchObject({ direction: "outgoing", answered: true, reason: "bye" });
    expect((await record)[0]).toMatchObject({ deviceId: "demo-door", reason: "local-bye", answeredBy: "alice" });
    expect(door.state).toBe("idle");
    expect(door.stats().calls).toEqual({ outgoing: 1, incoming: 0 });
  });

  it("answers a call from the gateway by itself after ringing, plays its tone and echoes what it hears; it can hang up", async () => {
    const { server, door } = await setUp({}, { answerAfterMs: 300 });
    const ear = new Ear();
    const started = Date.now();
    const call = await server.intercom.call("demo-door", USER, { sink: ear });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(door.state).toBe("in-call");
    await ear.until(25);
    const toneOnly = ear.peak;
    expect(toneOnly).toBeGreaterThan(3000);

    // What the gateway's side says comes back: 12000-peak tone plus the door's 6000 tone.
    const stop = speak((p) => call.sendRtp(p));
    try {
      await waitFor(() => door.stats().heard.peak > 8000, () => JSON.stringify(door.stats()));
      const before = ear.packets;
      await ear.until(before + 40);
      expect(ear.peak).toBeGreaterThan(toneOnly + 4000);
    } finally {
      stop();
    }

    const ended = next(server, "ended");
    door.hangup();
    expect((await ended)[0]).toMatchObject({ deviceId: "demo-door", direction: "outgoing", reason: "remote-bye" });
    expect(door.state).toBe("idle");
    expect(door.stats().calls.incoming).toBe(1);
  });

  it("a ring nobody answers ends with 480 at the door; hanging up while it rings cancels", async () => {
    const { server, door } = await setUp({ ringTimeoutSeconds: 1 });
    const ended = doorEvent(door, "ended");
    await door.ring();
    expect((await ended)[0]).toMatchObject({ answered: false, status: 480, reason: "unanswered" });
    expect(door.state).toBe("idle");

    const ring = next(server, "ring");
    await door.ring();
    await ring;
    const record = next(server, "ended");
    const cancelled = doorEvent(door, "ended");
    door.hangup();
    expect((await record)[0]).toMatchObject({ deviceId: "demo-door", reason: "cancelled" });
    expect((await cancelled)[0]).toMatchObject({ status: 487, reason: "cancelled" });
  });

  it("a wrong password is refused at start; close unregisters the door", async () => {
    await expect(setUp({}, { password: "not-the-password" })).rejects.toBeInstanceOf(UpstreamError);

    const { server, door } = await setUp();
    const offline = next(server, "device", (d) => d.deviceId === "demo-door" && !d.online);
    await door.close("test");
    await offline;
    await door.close("again");
    await expect(door.ring()).rejects.toMatchObject({ code: "CLOSED" });
  });
});
