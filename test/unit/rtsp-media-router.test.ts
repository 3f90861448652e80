import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { hasBye, MediaRouter } from "../../gateway/rtsp/media-router.ts";
import { RtspStreamParser } from "../../gateway/rtsp/message.ts";

function rtp(seq: number, pt = 96): Buffer {
  const b = Buffer.alloc(20);
  b[0] = 0x80;
  b[1] = pt;
  b.writeUInt16BE(seq, 2);
  return b;
}
const sr = Buffer.from("80c8000600000001" + "00".repeat(20), "hex");

function recorder() {
  const got: string[] = [];
  const sink = {
    pushRtp: (t: number, p: Buffer) => void got.push(`rtp${t}:${p.readUInt16BE(2)}`),
    pushRtcp: (t: number, p: Buffer) => void got.push(`rtcp${t}:${p[1]}`),
  };
  return { got, router: new MediaRouter(sink) };
}

describe("MediaRouter", () => {
  it("routes interleaved channels to tracks and drops unknown channels and garbage, counted", () => {
    const { got, router } = recorder();
    router.mapChannels(0, 0, 1);
    router.mapChannels(1, 10, 11); // the server may pick other channels than requested
    router.start();
    router.onInterleaved(0, rtp(1));
    router.onInterleaved(1, sr);
    router.onInterleaved(10, rtp(7, 0));
    router.onInterleaved(5, rtp(2)); // unassigned channel
    router.onInterleaved(0, Buffer.from([0x40, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])); // version 1
    router.onInterleaved(0, Buffer.alloc(11, 0x80)); // too short
    router.onInterleaved(0, Buffer.concat([Buffer.from([0x8f]), Buffer.alloc(20)])); // 15 CSRCs past the end
    router.onInterleaved(1, Buffer.from([0x80, 96, 0, 1, 0, 0, 0, 1])); // not an RTCP type
    router.onInterleaved(0, Buffer.from("81c90001deadbeef", "hex")); // RTCP multiplexed on the RTP channel (RFC 5761)
    expect(got).toEqual(["rtp0:1", "rtcp0:200", "rtp1:7", "rtcp0:201"]);
    expect(router.stats).toMatchObject({
      packetsIn: 2, bytesIn: 40, rtcpIn: 2, malformed: 5,
      drops: { unknownChannel: 1, badRtp: 3, badRtcp: 1, foreign: 0, queueOverflow: 0, sinkError: 0 },
    });
  });

  it("queues packets that arrive before PLAY completes and delivers them first, in order", () => {
    const { got, router } = recorder();
    router.mapChannels(0, 0, 1);
    const reused = rtp(1);
    router.onInterleaved(0, reused);
    reused.writeUInt16BE(999, 2); // the caller's buffer is reused: the queue must hold a copy
    router.onInterleaved(0, rtp(2));
    expect(got).toEqual([]);
    router.start();
    router.onInterleaved(0, rtp(3));
    expect(got).toEqual(["rtp0:1", "rtp0:2", "rtp0:3"]);
    router.stop();
    router.onInterleaved(0, rtp(4));
    expect(got).toHaveLength(3);
  });

  it("bounds the queue and keeps going when the sink throws", () => {
    let n = 0;
    const router = new MediaRouter({
      pushRtp: () => {
        if (++n % 2) throw new Error("sink bug");
      },
      pushRtcp: () => {},
    });
    router.mapChannels(0, 0, 1);
    for (let i = 0; i < 3000; i++) router.onRtp(0, rtp(i & 0xffff));
    expect(router.stats.drops.queueOverflow).toBe(3000 - 2048);
    router.start();
    expect(n).toBe(2048);
    expect(router.stats.drops.sinkError).toBe(1024);
  });

  it("routes a captured GStreamer session: increasing H.264 sequence numbers and PCMU", () => {
    const bytes = readFileSync(new URL("../fixtures/rtsp/gst-tcp-digest.bin", import.meta.url));
    const seqs: number[][] = [[], []];
    const pts = new Set<string>();
    const router = new MediaRouter({
      pushRtp: (t, p) => {
        seqs[t]!.push(p.readUInt16BE(2));
        pts.add(`${t}:${p[1]! & 0x7f}`);
      },
      pushRtcp: () => {},
    });
    router.mapChannels(0, 0, 1);
    router.mapChannels(1, 2, 3);
    router.start();
    for (const e of new RtspStreamParser().push(bytes)) if (e.type === "interleaved") router.onInterleaved(e.channel, e.data);
    expect([...pts].sort()).toEqual(["0:96", "1:0"]);
    expect(seqs[0]!.length).toBeGreaterThan(20);
    for (const s of seqs) for (let i = 1; i < s.length; i++) expect((s[i]! - s[i - 1]! + 65536) % 65536).toBe(1);
    expect(router.stats.malformed).toBe(0);
  });

  it("never throws on arbitrary frames (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 50 }), (frames) => {
        const { router } = recorder();
        router.mapChannels(0, 0, 1);
        router.start();
        for (const [ch, d] of frames) router.onInterleaved(ch, Buffer.from(d));
        const s = router.stats;
        expect(s.packetsIn + s.rtcpIn + s.malformed).toBe(frames.length);
      }),
    );
  });
});

describe("RTCP BYE (the recorder ended the stream)", () => {
  // RFC 3550 §6.4.2 RR (no report blocks) and §6.6 BYE, one SSRC each.
  const rr = Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 7]);
  const bye = Buffer.from([0x81, 203, 0, 1, 0, 0, 0, 7]);

  it("finds a BYE anywhere in a compound, and only a BYE", () => {
    expect(hasBye(Buffer.concat([rr, bye]))).toBe(true);
    expect(hasBye(bye)).toBe(true);
    expect(hasBye(rr)).toBe(false);
    expect(hasBye(Buffer.concat([rr, Buffer.from([0x00, 203, 0, 1])]))).toBe(false); // not version 2
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => typeof hasBye(Buffer.from(b)) === "boolean"));
  });

  it("tells the client once media flows, never for a BYE queued before PLAY", () => {
    const byes: number[] = [];
    const router = new MediaRouter({ pushRtp: () => {}, pushRtcp: () => {} });
    router.onBye = (t) => void byes.push(t);
    router.mapChannels(1, 2, 3);
    router.onInterleaved(3, Buffer.concat([rr, bye])); // before PLAY answered: an old session's goodbye
    router.start();
    expect(byes).toEqual([]);
    router.onInterleaved(3, rr);
    router.onInterleaved(3, Buffer.concat([rr, bye]));
    expect(byes).toEqual([1]);
  });
});
