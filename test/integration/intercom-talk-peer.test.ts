/**
 * The talk peer against a real WebRTC peer (werift standing in for the browser): the door's
 * RTP arrives re-stamped in one stream, the browser's RTP reaches the uplink, the offer must
 * carry the door's codec, a codec the door switched to is dropped and counted, an unconnected
 * peer fails after its connect timeout, and close is idempotent.
 */
import { afterEach, describe, expect, it } from "vitest";
import { BadInputError } from "../../config/errors.ts";
import { silentLogger } from "../../config/log.ts";
import { TalkPeer, TalkPeerCloseReasons, type TalkPeerState } from "../../gateway/intercom/talk-peer.ts";
import { WeriftBrowserPhone } from "./intercom-support.ts";

const RANGE: [number, number] = [42000, 42999];
const open: Array<{ close(reason?: string): Promise<void> }> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close("test done");
});

async function pair(opts: { connectTimeoutMs?: number } = {}) {
  const { phone, offer } = await WeriftBrowserPhone.create();
  open.push(phone);
  const peer = await TalkPeer.create({ offerSdp: offer, codec: "PCMU", bindAddress: "127.0.0.1", icePortRange: RANGE, log: silentLogger, ...opts });
  open.push(peer);
  return { phone, peer };
}

/** A door RTP packet: PCMU, 160 bytes of `fill`. */
function doorPacket(seq: number, ts: number, ssrc: number, fill = 0x55): Buffer {
  const b = Buffer.alloc(12 + 160, fill);
  b[0] = 0x80;
  b[1] = 0;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  return b;
}

describe("talk peer", () => {
  it("carries the door's audio to the browser and the browser's to the uplink", async () => {
    const { phone, peer } = await pair();
    const uplink: Buffer[] = [];
    peer.setUplink((b) => uplink.push(Buffer.from(b)));
    peer.setTracks([{ kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" }]);
    expect(peer.answerSdp).toMatch(/a=rtpmap:0 PCMU\/8000/);
    expect(peer.answerSdp).not.toMatch(/opus|PCMA/i);
    await phone.accept(peer.answerSdp);
    await phone.connected();
    await new Promise<void>((resolve) => {
      if (peer.state === "connected") resolve();
      else peer.events.on("state", (s) => s === "connected" && resolve());
    });

    // Two door sources one after the other (a re-INVITE with a new SSRC): one stream at the browser.
    for (let i = 0; i < 20; i++) peer.pushRtp(0, doorPacket(100 + i, 1000 + i * 160, 0xaaaa));
    for (let i = 0; i < 20; i++) peer.pushRtp(0, doorPacket(5 + i, 7 + i * 160, 0xbbbb));
    await phone.until(40);
    expect(peer.stats().toBrowser).toMatchObject({ packets: 40, resyncs: 1 });

    phone.startTone(1000);
    await new Promise<void>((resolve) => {
      const t = setInterval(() => uplink.length >= 10 && (clearInterval(t), resolve()), 20);
    });
    phone.stop();
    expect(uplink[0]!.length).toBe(12 + 160);
    expect(uplink[0]![1]! & 0x7f).toBe(0);
    expect(peer.stats().fromBrowser.packets).toBeGreaterThanOrEqual(10);

    // The door switched codec (offerless INVITE answered differently): dropped, counted.
    peer.setTracks([{ kind: "audio", codec: "PCMA", clockRate: 8000, channels: 1, payloadType: 8, fmtp: "" }]);
    peer.pushRtp(0, doorPacket(1, 1, 0xcccc));
    expect(peer.stats().dropped.codecMismatch).toBe(1);
  });

  it("refuses an offer without the door's codec or without audio", async () => {
    const { phone, offer } = await WeriftBrowserPhone.create();
    open.push(phone);
    await expect(TalkPeer.create({ offerSdp: offer, codec: "PCMA", bindAddress: "127.0.0.1", icePortRange: RANGE, log: silentLogger })).rejects.toBeInstanceOf(BadInputError);
    const video = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n";
    await expect(TalkPeer.create({ offerSdp: video, codec: "PCMU", bindAddress: "127.0.0.1", icePortRange: RANGE, log: silentLogger })).rejects.toBeInstanceOf(BadInputError);
  });

  it("fails when the browser never connects, and closes once", async () => {
    const { peer } = await pair({ connectTimeoutMs: 300 });
    const states: TalkPeerState[] = [];
    const closed: string[] = [];
    peer.events.on("state", (s) => states.push(s));
    peer.events.on("closed", (r) => closed.push(r));
    await new Promise<void>((resolve) => peer.events.on("state", (s) => s === "failed" && resolve()));
    // Both callers get the same promise; the browser connection is closed, and "closed" told, once.
    const first = peer.close(TalkPeerCloseReasons.closing);
    const second = peer.close(TalkPeerCloseReasons.answerRefused);
    expect(second).toBe(first);
    await Promise.all([first, second]);
    expect((peer as unknown as { pc: { connectionState: string } }).pc.connectionState).toBe("closed");
    expect(states).toEqual(["failed", "closed"]);
    expect(closed).toEqual(["intercom closing"]);
  });
});
