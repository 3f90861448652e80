/**
 * baresip as a door station (a real SIP phone, child process, no audio hardware): it
 * registers with digest, calls in, our side answers through the Intercom API with a sink
 * that echoes the door's audio back. We check RTP reaching the MediaSink, our audio in what
 * baresip recorded, DTMF both ways (RFC 4733), hang-up from each side, and "talk to the
 * door" (our call to the device, over the TCP connection it registered on).
 */
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { SipCall } from "../../gateway/sip/call.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import { Baresip, tone, wav, wavSamples } from "../peers/baresip.ts";

const PASSWORD = "door-secret-1";
let server: SipServer | undefined;
let phone: Baresip | undefined;
afterEach(async () => {
  await phone?.close();
  phone = undefined;
  await server?.close();
  server = undefined;
});

async function start(): Promise<SipServer> {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  server = await startSipServer({
    config: parseConfig({
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { port: 0 },
        keepAliveSeconds: 0,
        rtpPortRange: [base, base + 99],
        devices: [{ id: "door1", username: "door1", password: PASSWORD, camera: "front", dtmf: { openDoor: "1#", durationMs: 120 } }],
      },
    }).sip,
    log: silentLogger,
  });
  return server;
}

/** The SFU's side in these tests: records the tracks and counts packets, echoing them back. */
class EchoSink implements MediaSink {
  tracks: TrackSpec[] = [];
  packets = 0;
  call: SipCall | undefined;
  private waiters: { n: number; resolve: () => void }[] = [];
  setTracks(t: readonly TrackSpec[]): void {
    this.tracks = [...t];
  }
  pushRtp(_track: number, p: Buffer): void {
    this.packets++;
    this.call?.sendRtp(p);
    for (const w of [...this.waiters]) if (this.packets >= w.n) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve();
    }
  }
  pushRtcp(): void {}
  upstreamDown(): void {}
  until(n: number, timeoutMs = 8000): Promise<void> {
    if (this.packets >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sink got ${this.packets} of ${n} packets`)), timeoutMs);
      this.waiters.push({ n, resolve: () => (clearTimeout(t), resolve()) });
    });
  }
}

/** Mean absolute amplitude and zero crossings per second of a recording. */
function analyse(samples: Int16Array): { level: number; crossingsPerSecond: number } {
  let sum = 0;
  let crossings = 0;
  for (let i = 0; i < samples.length; i++) {
    sum += Math.abs(samples[i]!);
    if (i > 0 && samples[i - 1]! < 0 !== samples[i]! < 0) crossings++;
  }
  return { level: sum / Math.max(1, samples.length), crossingsPerSecond: (crossings * 8000) / Math.max(1, samples.length) };
}

describe("baresip door station", () => {
  it("registers, calls in, and talks both ways with DTMF in each direction", async () => {
    const srv = await start();
    const sink = new EchoSink();
    const ring = new Promise<string>((resolve) => srv.intercom.events.once("ring", (r) => resolve(r.callId)));
    phone = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${srv.ports.udp}`, microphone: wav(tone(440, 4)) });
    await phone.waitFor(/registered successfully/);
    expect(srv.intercom.devices()[0]).toMatchObject({ id: "door1", online: true });

    phone.command("dial sip:gate@gatehouse");
    const callId = await ring;
    expect(srv.intercom.get(callId)).toMatchObject({ state: "ringing", from: expect.stringContaining("door1") });
    sink.call = srv.intercom.answer(callId, { id: "alice" }, { sink });
    await phone.waitFor(/Call established/);
    expect(sink.tracks).toEqual([{ kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" }]);

    // The door's microphone reaches the sink; the echo is what baresip hears from us.
    await sink.until(75);

    // Open the door: RFC 4733 events that baresip reports as received.
    const events = phone.waitFor(/received event: '#' \(end=1\)/);
    await srv.intercom.openDoor(callId);
    await events;
    expect(phone.lines.some((l) => /received event: '1' \(end=1\)/.test(l))).toBe(true);

    // A key pressed on the door reaches the application.
    const dtmf = new Promise<string>((resolve) => srv.intercom.events.once("dtmf", (d) => resolve(d.digit)));
    phone.type("7");
    expect(await dtmf).toBe("7");

    const ended = new Promise((resolve) => srv.intercom.events.once("ended", resolve));
    srv.intercom.hangup(callId);
    await phone.waitFor(/terminated/);
    expect(await ended).toMatchObject({ reason: "local-bye", answeredBy: "alice", deviceId: "door1" });
    await phone.stop();

    // What baresip decoded from the network: our echo of its 440 Hz tone, clearly not silence.
    const rec = phone.recordedFromNetwork();
    expect(rec).toBeDefined();
    const heard = analyse(wavSamples(rec!));
    expect(heard.level).toBeGreaterThan(2000);
    expect(heard.crossingsPerSecond).toBeGreaterThan(700);
    expect(heard.crossingsPerSecond).toBeLessThan(1100);
  });

  it("talks to the door: calls the device over the TCP connection it registered on; the door hangs up", async () => {
    const srv = await start();
    const sink = new EchoSink();
    phone = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${srv.ports.tcp}`, transport: "tcp", microphone: wav(tone(440, 4)) });
    await phone.waitFor(/registered successfully/);
    expect(srv.intercom.devices()[0]!.bindings[0]).toMatchObject({ transport: "tcp" });

    const call = await srv.intercom.call("door1", { id: "bob" }, { sink });
    sink.call = call;
    expect(call).toMatchObject({ state: "answered", direction: "outgoing", answeredBy: "bob" });
    await sink.until(50);
    expect(call.mediaStats().packetsOut).toBeGreaterThan(0);

    const ended = new Promise((resolve) => srv.intercom.events.once("ended", resolve));
    phone.command("hangup");
    expect(await ended).toMatchObject({ reason: "remote-bye", direction: "outgoing" });
  });
});
