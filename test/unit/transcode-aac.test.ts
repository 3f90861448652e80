/**
 * AAC over RTP (RFC 3640 AAC-hbr, RFC 6416 LATM), ADTS framing, Ogg Opus reading and the
 * timestamping of ffmpeg's Opus on the camera's clock. Malformed input is a counted drop, never a throw.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AacDepacketizer, adtsHeader, parseAacFmtp, parseAscHex, type AacStreamConfig } from "../../gateway/transcode/aac.ts";
import { ClockMap, OggReader, opusHeadPreSkip, opusPacketSamples, OpusStamper } from "../../gateway/transcode/ogg-opus.ts";

const GENERIC_FMTP = "streamtype=5;profile-level-id=2;mode=AAC-hbr;config=140856e500;sizelength=13;indexlength=3;indexdeltalength=3";

function genericConfig(): AacStreamConfig {
  const c = parseAacFmtp("MPEG4-GENERIC", 16000, GENERIC_FMTP);
  if (typeof c === "string") throw new Error(c);
  return c;
}

/** An RFC 3640 payload: AU-headers-length, 13-bit size + 3-bit index per AU, then the AUs. */
function hbrPayload(aus: Buffer[], sizes = aus.map((a) => a.length)): Buffer {
  const headers = Buffer.alloc(2 * aus.length);
  sizes.forEach((s, i) => headers.writeUInt16BE((s << 3) & 0xffff, 2 * i));
  const len = Buffer.alloc(2);
  len.writeUInt16BE(16 * aus.length);
  return Buffer.concat([len, headers, ...aus]);
}

describe("AudioSpecificConfig and fmtp", () => {
  it("reads AAC-LC 16 kHz mono with GStreamer's SBR sync extension after it", () => {
    expect(parseAscHex("140856e500")).toEqual({ objectType: 2, frequencyIndex: 8, sampleRate: 16000, channelConfig: 1, frameLength: 1024, sbr: false });
    expect(parseAscHex("1210")).toMatchObject({ objectType: 2, sampleRate: 44100, channelConfig: 2 });
  });

  it("refuses what ADTS cannot carry, in words", () => {
    expect(parseAscHex("1200")).toMatch(/channel configuration 0/); // program config element
    expect(parseAscHex("zz")).toMatch(/hexadecimal/);
    expect(parseAscHex("12")).toMatch(/truncated/);
    expect(parseAacFmtp("MPEG4-GENERIC", 16000, "mode=CELP-cbr;config=1408")).toMatch(/not AAC/);
    expect(parseAacFmtp("MPEG4-GENERIC", 16000, "mode=AAC-hbr;config=1408")).toMatch(/sizelength/);
    expect(parseAacFmtp("MP4A-LATM", 44100, "cpresent=0")).toMatch(/needs a config/);
  });

  it("reads a LATM StreamMuxConfig, including GStreamer's short one", () => {
    const c = parseAacFmtp("MP4A-LATM", 44100, "cpresent=0;config=40002410adca00");
    expect(c).toMatchObject({ format: "MP4A-LATM", cpresent: false, asc: { objectType: 2, sampleRate: 44100, channelConfig: 1 } });
    expect(parseAacFmtp("MP4A-LATM", 44100, "cpresent=0;config=400024203fc0")).toMatchObject({ asc: { channelConfig: 2 } });
  });
});

describe("AacDepacketizer (RFC 3640)", () => {
  it("splits several AUs of one packet, each with its own timestamp", () => {
    const d = new AacDepacketizer(genericConfig());
    const a = Buffer.from([1, 2, 3]);
    const b = Buffer.from([4, 5]);
    const out = d.push(hbrPayload([a, b]), 1000, true, false);
    expect(out).toEqual([
      { data: a, ts: 1000 },
      { data: b, ts: 1000 + 1024 },
    ]);
  });

  it("joins an AU fragmented over packets, and drops it whole when a piece is lost", () => {
    const d = new AacDepacketizer(genericConfig());
    const au = Buffer.alloc(3000, 7);
    const part = (data: Buffer) => hbrPayload([data], [au.length]);
    expect(d.push(part(au.subarray(0, 1400)), 5, false, false)).toEqual([]);
    expect(d.push(part(au.subarray(1400, 2800)), 5, false, false)).toEqual([]);
    expect(d.push(part(au.subarray(2800)), 5, true, false)).toEqual([{ data: au, ts: 5 }]);
    // Second AU: the middle piece is lost.
    expect(d.push(part(au.subarray(0, 1400)), 9, false, false)).toEqual([]);
    expect(d.push(part(au.subarray(2800)), 9, true, true)).toEqual([]);
    expect(d.drops.fragmentLost).toBeGreaterThan(0);
  });

  it("counts malformed packets and never throws (property)", () => {
    const d = new AacDepacketizer(genericConfig());
    expect(d.push(Buffer.from([0]), 0, true, false)).toEqual([]);
    expect(d.push(Buffer.from([0xff, 0xff, 1, 2]), 0, true, false)).toEqual([]); // headers longer than the packet
    expect(d.push(hbrPayload([Buffer.from([1, 2])], [50]), 0, true, false)).toEqual([]); // size beyond the data, one AU → a fragment never completed
    expect(d.drops.malformed + d.drops.fragmentLost).toBeGreaterThanOrEqual(2);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), fc.boolean(), (bytes, marker, lost) => {
        const out = d.push(Buffer.from(bytes), 1, marker, lost);
        for (const au of out) expect(au.data.length).toBeGreaterThan(0);
      }),
    );
  });
});

describe("AacDepacketizer (RFC 6416 LATM)", () => {
  const latm = (): AacDepacketizer => {
    const c = parseAacFmtp("MP4A-LATM", 44100, "cpresent=0;config=40002410adca00");
    if (typeof c === "string") throw new Error(c);
    return new AacDepacketizer(c);
  };

  it("reads PayloadLengthInfo (255 continues) and the AU after it", () => {
    const au = Buffer.alloc(300, 3);
    const payload = Buffer.concat([Buffer.from([255, 45]), au]);
    expect(latm().push(payload, 77, true, false)).toEqual([{ data: au, ts: 77 }]);
  });

  it("joins a fragmented AudioMuxElement (marker on the last) and drops it on loss", () => {
    const d = latm();
    const au = Buffer.alloc(100, 9);
    const el = Buffer.concat([Buffer.from([100]), au]);
    expect(d.push(el.subarray(0, 40), 1, false, false)).toEqual([]);
    expect(d.push(el.subarray(40), 1, true, false)).toEqual([{ data: au, ts: 1 }]);
    expect(d.push(el.subarray(0, 40), 2, false, false)).toEqual([]);
    expect(d.push(el.subarray(40), 2, true, true)).toEqual([]);
    expect(d.drops.fragmentLost).toBe(1);
  });

  it("learns the config in band with cpresent=1, and counts AUs before it", () => {
    const c = parseAacFmtp("MP4A-LATM", 44100, "cpresent=1");
    if (typeof c === "string") throw new Error(c);
    const d = new AacDepacketizer(c);
    // useSameStreamMux=1 before any config: nothing to decode with.
    expect(d.push(Buffer.from([0x80 | 1, 0xaa]), 0, true, false)).toEqual([]);
    expect(d.drops.noConfig).toBe(1);
    // useSameStreamMux=0 + StreamMuxConfig 400024203fc0 (shifted by one bit) + length 2 + AU.
    const smc = Buffer.from("400024203fc0", "hex");
    const bits = [0, ...[...smc].flatMap((b) => [7, 6, 5, 4, 3, 2, 1, 0].map((i) => (b >> i) & 1)).slice(0, 44)];
    bits.push(...[0, 0, 0, 0, 0, 0, 1, 0], ...[1, 1, 1, 1, 0, 0, 0, 0], ...[0, 0, 0, 0, 1, 1, 1, 1]);
    while (bits.length % 8) bits.push(0);
    const bytes = Buffer.alloc(bits.length / 8);
    bits.forEach((b, i) => (bytes[i >> 3]! |= b << (7 - (i & 7))));
    expect(d.push(bytes, 5, true, false)).toEqual([{ data: Buffer.from([0xf0, 0x0f]), ts: 5 }]);
    expect(d.asc).toMatchObject({ sampleRate: 44100, channelConfig: 2 });
  });
});

describe("ADTS", () => {
  it("writes a header ffmpeg's demuxer reads: sync word, profile, rate, channels, length", () => {
    const asc = parseAscHex("1408");
    if (typeof asc === "string") throw new Error(asc);
    const h = adtsHeader(asc, 200);
    expect(h.length).toBe(7);
    expect(h.readUInt16BE(0) & 0xfff6).toBe(0xfff0);
    expect(h[2]! >> 6).toBe(1); // AAC-LC = object type 2 − 1
    expect((h[2]! >> 2) & 15).toBe(8); // 16000 Hz
    expect(((h[2]! & 1) << 2) | (h[3]! >> 6)).toBe(1);
    expect(((h[3]! & 3) << 11) | (h[4]! << 3) | (h[5]! >> 5)).toBe(207);
  });
});

/** One Ogg page holding `packets` (no CRC: the reader does not need it). */
function oggPage(packets: Buffer[], granule: number, continued = false): Buffer {
  const lacing: number[] = [];
  for (const p of packets) {
    let n = p.length;
    while (n >= 255) {
      lacing.push(255);
      n -= 255;
    }
    lacing.push(n);
  }
  const h = Buffer.alloc(27 + lacing.length);
  h.write("OggS", 0, "latin1");
  h[5] = continued ? 1 : 0;
  h.writeUInt32LE(granule, 6);
  h[26] = lacing.length;
  lacing.forEach((l, i) => (h[27 + i] = l));
  return Buffer.concat([h, ...packets]);
}

describe("Ogg Opus", () => {
  it("reads packets across chunk boundaries and skips garbage", () => {
    const head = Buffer.alloc(19);
    head.write("OpusHead", 0, "latin1");
    head.writeUInt16LE(312, 10);
    const big = Buffer.alloc(600, 1);
    const stream = Buffer.concat([Buffer.from("junk"), oggPage([head], 0), oggPage([Buffer.from([0x78, 1]), big], 1920)]);
    const r = new OggReader();
    const out = [];
    for (let i = 0; i < stream.length; i += 7) out.push(...r.push(stream.subarray(i, i + 7)));
    expect(out.map((p) => p.data.length)).toEqual([19, 2, 600]);
    expect(opusHeadPreSkip(out[0]!.data)).toBe(312);
    expect(out[2]!.granule).toBe(1920);
    expect(r.skipped).toBe(4);
  });

  it("counts samples from the TOC byte", () => {
    expect(opusPacketSamples(Buffer.from([0xf8]))).toBe(960); // CELT 20 ms, one frame
    expect(opusPacketSamples(Buffer.from([0x78 | 1]))).toBe(1920); // SILK 20 ms, two frames
    expect(opusPacketSamples(Buffer.from([0xf8 | 3, 3]))).toBe(2880);
    expect(opusPacketSamples(Buffer.from([0xf8 | 3, 63]))).toBe(0); // beyond 120 ms: malformed
    expect(opusPacketSamples(Buffer.alloc(0))).toBe(0);
  });

  it("stamps output on the camera's clock: pre-skip removed, a gap in the input stays a gap", () => {
    const clock = new ClockMap(16000);
    const s = new OpusStamper(clock, 16000);
    s.setPreSkip(312);
    // AUs of 1024 samples at 16 kHz (3072 at 48 kHz); the third one was lost upstream.
    s.input(1000, 1024);
    s.input(2024, 1024);
    s.input(5096, 1024);
    // The map anchors the camera's first timestamp as is; 48 kHz is three ticks per 16 kHz tick.
    const ts48 = (ts: number) => 1000 + (ts - 1000) * 3;
    // The first packet starts 312 samples (the encoder's pre-skip) before the first input sample.
    expect(s.output(960)).toBe(1000 - 312);
    const outs = [1000 - 312];
    for (let i = 0; i < 9; i++) outs.push(s.output(960)!);
    // Contiguous while the input is: 960 apart.
    expect(outs[1]! - outs[0]!).toBe(960);
    // The third AU written starts at output position 2·3072 (+ pre-skip): the packet starting
    // there or after carries the time of the AU after the gap, not a time counted on from before it.
    const firstAfterGap = Math.ceil((2 * 3072 + 312) / 960);
    const pos = firstAfterGap * 960 - 312 - 2 * 3072;
    expect(outs[firstAfterGap]).toBe(ts48(5096) + pos);
    expect(outs[firstAfterGap - 1]).toBe(ts48(2024) + (firstAfterGap - 1) * 960 - 312 - 3072);
  });

  it("maps clocks across a 32-bit wrap without a jump", () => {
    const m = new ClockMap(16000);
    const a = m.map(0xffff_fc00);
    const b = m.map(0x0000_0400);
    expect((b - a) >>> 0).toBe(2048 * 3);
  });
});
