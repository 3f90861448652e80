import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import { CallMedia, MediaTicker } from "../../gateway/sip/media.ts";
import { RtpPortPool } from "../../gateway/sip/rtp-ports.ts";
import { emptyRtpHeader, readRtpHeader, writeRtpHeader } from "../../sfu/rtp/packet.ts";
import type { AudioParams } from "../../gateway/sip/sdp.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A random even range below Linux's ephemeral ports (32768+), so no client socket lands in it. */
function randomRange(): [number, number] {
  const base = 20000 + 2 * Math.floor(Math.random() * 6000);
  return [base, base + 39];
}

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  cleanups.push(() => s.close());
  return s;
}

class RecordingSink implements MediaSink {
  tracks: TrackSpec[] = [];
  rtp: Buffer[] = [];
  rtcp: Buffer[] = [];
  down: string[] = [];
  waiter: (() => void) | undefined;
  setTracks(t: readonly TrackSpec[]): void {
    this.tracks = [...t];
  }
  pushRtp(_track: number, p: Buffer): void {
    this.rtp.push(Buffer.from(p));
    this.waiter?.();
  }
  pushRtcp(_track: number, p: Buffer): void {
    this.rtcp.push(Buffer.from(p));
  }
  upstreamDown(reason: string): void {
    this.down.push(reason);
  }
  until(n: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${this.rtp.length} packets`)), 3000);
      const check = (): void => {
        if (this.rtp.length >= n) {
          clearTimeout(t);
          resolve();
        }
      };
      this.waiter = check;
      check();
    });
  }
}

function rtp(pt: number, seq: number, ts: number, ssrc: number, payload: Buffer, marker = false): Buffer {
  const b = Buffer.alloc(12 + payload.length);
  writeRtpHeader(b, { payloadType: pt, marker, sequenceNumber: seq, timestamp: ts, ssrc });
  payload.copy(b, 12);
  return b;
}

function collect(sock: dgram.Socket): { packets: Buffer[]; until(n: number, pred?: (b: Buffer) => boolean): Promise<Buffer[]> } {
  const packets: Buffer[] = [];
  sock.on("message", (m) => packets.push(m));
  return {
    packets,
    until: (n, pred = () => true) =>
      new Promise((resolve, reject) => {
        const t0 = Date.now();
        const iv = setInterval(() => {
          const got = packets.filter(pred);
          if (got.length >= n) {
            clearInterval(iv);
            resolve(got);
          } else if (Date.now() - t0 > 4000) {
            clearInterval(iv);
            reject(new Error(`only ${got.length} of ${n} packets`));
          }
        }, 5);
      }),
  };
}

async function setup(audio: Partial<AudioParams> = {}) {
  const pool = new RtpPortPool({ range: randomRange(), bindAddress: "127.0.0.1" });
  const ticker = new MediaTicker();
  cleanups.push(() => ticker.close());
  const device = await udp();
  const pair = await pool.allocate();
  const media = new CallMedia({ pair, allowedSources: ["127.0.0.1"], log: silentLogger, ticker, now: () => performance.now() });
  cleanups.push(() => media.close("test"));
  const params: AudioParams = {
    codec: "PCMU", payloadType: 0, clockRate: 8000, dtmfPayloadType: 101, remoteAddress: "127.0.0.1",
    remoteRtpPort: device.address().port, remoteRtcpPort: device.address().port + 1, direction: "sendrecv", ptime: 20, ...audio,
  };
  media.configure(params);
  return { pool, media, device, pair };
}

describe("call media", () => {
  it("pushes the door's RTP and RTCP into the sink with the negotiated track", async () => {
    const { media, device } = await setup();
    const sink = new RecordingSink();
    media.setSink(sink);
    expect(sink.tracks).toEqual([{ kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" }]);
    for (let i = 0; i < 5; i++) device.send(rtp(0, i, i * 160, 0x1234, Buffer.alloc(160, 0x7f)), media.localRtpPort, "127.0.0.1");
    device.send(Buffer.from([0x80, 200, 0, 6, ...Buffer.alloc(24)]), media.localRtcpPort, "127.0.0.1");
    await sink.until(5);
    expect(media.stats.packetsIn).toBe(5);
    media.close("bye");
    expect(sink.down).toEqual(["bye"]);
  });

  it("drops RTP from addresses that are not the door's, and non-negotiated payload types", async () => {
    const { media, device } = await setup();
    const sink = new RecordingSink();
    media.setSink(sink);
    const stranger = dgram.createSocket("udp4");
    await new Promise<void>((r) => stranger.bind(0, "127.0.0.2", () => r()));
    cleanups.push(() => stranger.close());
    stranger.send(rtp(0, 1, 160, 9, Buffer.alloc(160)), media.localRtpPort, "127.0.0.1");
    device.send(rtp(13, 1, 160, 9, Buffer.alloc(1)), media.localRtpPort, "127.0.0.1"); // comfort noise
    device.send(rtp(0, 2, 320, 9, Buffer.alloc(160)), media.localRtpPort, "127.0.0.1");
    await sink.until(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(sink.rtp).toHaveLength(1);
    expect(media.stats.dropped.foreign).toBe(1);
    expect(media.stats.dropped.payloadType).toBe(1);
  });

  it("re-stamps application audio into one stream (our SSRC, contiguous sequence) and latches the door's port", async () => {
    const { media, device } = await setup({ remoteRtpPort: 9 }); // SDP lies (NAT): latching fixes it
    const out = collect(device);
    device.send(rtp(0, 1, 160, 77, Buffer.alloc(160, 1)), media.localRtpPort, "127.0.0.1");
    await new Promise((r) => setTimeout(r, 30));
    const f = emptyRtpHeader();
    for (const [ssrc, seq0, ts0] of [[0xaaaa, 100, 5000], [0xbbbb, 9000, 123456]] as const) {
      for (let i = 0; i < 3; i++) media.sendRtp(rtp(0, seq0 + i, ts0 + i * 160, ssrc, Buffer.alloc(160, 2 + i)));
    }
    media.start();
    const got = await out.until(6, (b) => readRtpHeader(b, f) && b[12] !== 0xff);
    const heads = got.map((b) => (readRtpHeader(b, f), { ...f }));
    expect(new Set(heads.map((h) => h.ssrc)).size).toBe(1);
    for (let i = 1; i < heads.length; i++) expect((heads[i]!.sequenceNumber - heads[i - 1]!.sequenceNumber) & 0xffff).toBe(1);
    // Timestamps keep advancing across the application's SSRC change.
    for (let i = 1; i < heads.length; i++) expect((heads[i]!.timestamp - heads[i - 1]!.timestamp) >>> 0).toBeGreaterThan(0);
    expect(heads[0]!.marker).toBe(true);
  });

  it("fills silence when the application is quiet, and sends RFC 4733 DTMF with marker, fixed timestamp and three end packets", async () => {
    const { media, device } = await setup();
    const out = collect(device);
    media.start();
    await out.until(3, (b) => (b[1]! & 0x7f) === 0 && b[12] === 0xff);
    const sent = media.sendDtmf("1#", 60);
    expect(await sent).toBe(true);
    const f = emptyRtpHeader();
    // 60 ms per digit = 3 progress packets, then 3 end packets: 12 in all.
    await out.until(12, (b) => readRtpHeader(b, f) && f.payloadType === 101);
    const events = out.packets.filter((b) => readRtpHeader(b, f) && f.payloadType === 101).map((b) => {
      readRtpHeader(b, f);
      return { ts: f.timestamp, marker: f.marker, code: b[12]!, end: (b[13]! & 0x80) !== 0, duration: b.readUInt16BE(14) };
    });
    for (const code of [1, 11]) {
      const ev = events.filter((e) => e.code === code);
      expect(new Set(ev.map((e) => e.ts)).size).toBe(1);
      expect(ev[0]!.marker).toBe(true);
      expect(ev.filter((e) => e.end)).toHaveLength(3);
      expect(ev.filter((e) => e.end).every((e) => e.duration === 480)).toBe(true);
      expect(ev.filter((e) => !e.end).map((e) => e.duration)).toEqual([160, 320, 480]);
    }
    expect(media.stats.dtmfOut).toBe(2);
  });

  it("reports DTMF events from the door once each", async () => {
    const { media, device } = await setup();
    const digits: string[] = [];
    media.events.on("dtmf", (d) => digits.push(d));
    const ev = (code: number, end: boolean, dur: number): Buffer => Buffer.from([code, end ? 0x8a : 0x0a, dur >> 8, dur & 0xff]);
    let seq = 1;
    for (const [code, ts] of [[5, 1000], [9, 3000]] as const) {
      for (const d of [160, 320]) device.send(rtp(101, seq++, ts, 3, ev(code, false, d), d === 160), media.localRtpPort, "127.0.0.1");
      for (let i = 0; i < 3; i++) device.send(rtp(101, seq++, ts, 3, ev(code, true, 400)), media.localRtpPort, "127.0.0.1");
    }
    await new Promise<void>((resolve) => {
      const iv = setInterval(() => {
        if (digits.length >= 2) {
          clearInterval(iv);
          resolve();
        }
      }, 5);
    });
    expect(digits).toEqual(["5", "9"]);
  });
});

describe("rtp port pool", () => {
  it("allocates even/odd pairs, skips ports in use elsewhere, and frees them on release", async () => {
    const [lo] = randomRange();
    const pool = new RtpPortPool({ range: [lo, lo + 5], bindAddress: "127.0.0.1" });
    const squatter = dgram.createSocket("udp4");
    await new Promise<void>((r) => squatter.bind(lo + 1, "127.0.0.1", () => r()));
    cleanups.push(() => squatter.close());
    const a = await pool.allocate();
    const b = await pool.allocate();
    expect([a.rtpPort, b.rtpPort]).toEqual([lo + 2, lo + 4]);
    expect(a.rtcpPort).toBe(lo + 3);
    await expect(pool.allocate()).rejects.toThrow(/no free RTP port/);
    a.release();
    a.release();
    const c = await pool.allocate();
    expect(c.rtpPort).toBe(lo + 2);
    b.release();
    c.release();
    expect(pool.used).toBe(0);
  });
});
