/**
 * Reading ffmpeg's Ogg Opus output (RFC 3533 pages, RFC 7845 headers) and stamping each
 * Opus packet on the camera's clock. Pure: bytes in, packets out; never throws.
 */

export interface OggPacket {
  data: Buffer;
  /** Granule position of the page this packet ends on (−1 when it ends on a later page). */
  granule: number;
}

const CAPTURE = Buffer.from("OggS");

/** Largest page (header + 255 segments of 255 bytes). */
const MAX_PAGE = 27 + 255 + 255 * 255;

/**
 * A streaming Ogg page reader for ONE logical stream: push bytes as they arrive, get the
 * completed packets. Bytes that are not a page are skipped up to the next capture pattern
 * and counted in `skipped`.
 */
export class OggReader {
  skipped = 0;
  private buf: Buffer = Buffer.alloc(0);
  private partial: Buffer[] = [];
  private partialBytes = 0;

  push(chunk: Buffer): OggPacket[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: OggPacket[] = [];
    for (;;) {
      if (this.buf.length < 27) break;
      if (!this.buf.subarray(0, 4).equals(CAPTURE)) {
        const next = this.buf.indexOf(CAPTURE, 1);
        const drop = next < 0 ? this.buf.length - 3 : next;
        this.skipped += drop;
        this.buf = this.buf.subarray(drop);
        continue;
      }
      const nsegs = this.buf[26]!;
      if (this.buf.length < 27 + nsegs) break;
      let body = 0;
      for (let i = 0; i < nsegs; i++) body += this.buf[27 + i]!;
      const total = 27 + nsegs + body;
      if (this.buf.length < total) break;
      const granuleLo = this.buf.readUInt32LE(6);
      const granuleHi = this.buf.readInt32LE(10);
      const granule = granuleHi * 0x1_0000_0000 + granuleLo;
      const continued = (this.buf[5]! & 1) !== 0;
      if (!continued && this.partial.length > 0) {
        this.skipped += this.partialBytes; // a continuation went missing
        this.partial = [];
        this.partialBytes = 0;
      }
      let p = 27 + nsegs;
      let start = p;
      const lastComplete = this.lastCompleteIndex(nsegs);
      for (let i = 0; i < nsegs; i++) {
        const lace = this.buf[27 + i]!;
        p += lace;
        if (lace < 255) {
          this.partial.push(this.buf.subarray(start, p));
          const data = Buffer.concat(this.partial);
          this.partial = [];
          this.partialBytes = 0;
          out.push({ data, granule: i === lastComplete ? granule : -1 });
          start = p;
        }
      }
      if (start < p) {
        this.partial.push(Buffer.from(this.buf.subarray(start, p)));
        this.partialBytes += p - start;
        if (this.partialBytes > MAX_PAGE * 4) {
          this.skipped += this.partialBytes;
          this.partial = [];
          this.partialBytes = 0;
        }
      }
      this.buf = this.buf.subarray(total);
    }
    if (this.buf.length > 0 && this.buf.byteOffset !== 0) this.buf = Buffer.from(this.buf);
    return out;
  }

  private lastCompleteIndex(nsegs: number): number {
    for (let i = nsegs - 1; i >= 0; i--) if (this.buf[27 + i]! < 255) return i;
    return -1;
  }
}

/** RFC 7845 §5.1: the pre-skip of an OpusHead packet, or undefined when it is not one. */
export function opusHeadPreSkip(packet: Buffer): number | undefined {
  if (packet.length < 19 || packet.toString("latin1", 0, 8) !== "OpusHead") return undefined;
  return packet.readUInt16LE(10);
}

/** Samples at 48 kHz in an Opus packet (RFC 6716 §3.1), 0 when the packet is malformed. */
export function opusPacketSamples(packet: Buffer): number {
  if (packet.length < 1) return 0;
  const toc = packet[0]!;
  const config = toc >> 3;
  let frame: number;
  if (config < 12) frame = [480, 960, 1920, 2880][config & 3]!;
  else if (config < 16) frame = config & 1 ? 960 : 480;
  else frame = [120, 240, 480, 960][config & 3]!;
  const c = toc & 3;
  let frames: number;
  if (c === 0) frames = 1;
  else if (c === 1 || c === 2) frames = 2;
  else {
    if (packet.length < 2) return 0;
    frames = packet[1]! & 0x3f;
  }
  const samples = frame * frames;
  return samples > 5760 ? 0 : samples; // §3.2.5: at most 120 ms
}

/**
 * A linear map from the camera's RTP clock to a 48 kHz RTP clock, unwrapped around an
 * anchor: `map(ts)` of consecutive timestamps is consecutive, across 32-bit wraps too.
 * It is kept for the camera's whole life so restarts of ffmpeg and the camera's sender
 * reports all land on one output timeline.
 */
export class ClockMap {
  private anchorIn: number | undefined;
  private anchorOut = 0;
  private readonly inRate: number;
  private readonly outRate: number;
  constructor(inRate: number, outRate = 48000) {
    this.inRate = inRate;
    this.outRate = outRate;
  }

  map(ts: number): number {
    if (this.anchorIn === undefined) {
      this.anchorIn = ts >>> 0;
      this.anchorOut = ts >>> 0;
    }
    const d = ((ts - this.anchorIn) | 0) * (this.outRate / this.inRate);
    const out = (this.anchorOut + Math.round(d)) >>> 0;
    // Move the anchor along so the signed difference never nears 2^31.
    if (Math.abs(d) > 0x2000_0000) {
      this.anchorIn = ts >>> 0;
      this.anchorOut = out;
    }
    return out;
  }
}

/**
 * Stamps ffmpeg's output packets with the camera's time. ffmpeg turns N input samples into N
 * output samples (after the encoder's pre-skip), so the k-th output sample is the k-th input
 * sample: each input AU is remembered with its position in the sample stream, and an output
 * packet takes the time of the input sample it starts with. Input that never reached ffmpeg
 * (lost packets) leaves a jump in the timestamps, not a drift.
 */
export class OpusStamper {
  private readonly inputs: { pos: number; ts48: number; at: number }[] = [];
  /**
   * When the content of the last `output()` packet reached us: the arrival (`at` given to
   * `input`) of the AU it starts in, plus how far into that AU it starts (ms).
   */
  lastInputAt = 0;
  private inPos = 0;
  private outPos = 0;
  private preSkip = 0;
  private readonly clock: ClockMap;
  private readonly inRate: number;
  constructor(clock: ClockMap, inRate: number) {
    this.clock = clock;
    this.inRate = inRate;
  }

  /** One AU of `durationTs` (camera clock units), which arrived at `at` (ms), was written to ffmpeg. */
  input(ts: number, durationTs: number, at = 0): void {
    this.inputs.push({ pos: this.inPos, ts48: this.clock.map(ts), at });
    this.inPos += (durationTs * 48000) / this.inRate;
    // Bound the memory when ffmpeg produces nothing (its failure is handled elsewhere).
    if (this.inputs.length > 4096) this.inputs.splice(0, this.inputs.length - 4096);
  }

  setPreSkip(samples: number): void {
    this.preSkip = samples;
  }

  /** The RTP timestamp (48 kHz) of the next output packet of `samples`; undefined if nothing was fed. */
  output(samples: number): number | undefined {
    const pos = this.outPos - this.preSkip;
    this.outPos += samples;
    const list = this.inputs;
    if (list.length === 0) return undefined;
    let i = 0;
    while (i + 1 < list.length && list[i + 1]!.pos <= pos) i++;
    if (i > 0) list.splice(0, i);
    const at = list[0]!;
    this.lastInputAt = at.at + (pos - at.pos) / 48;
    return (at.ts48 + Math.round(pos - at.pos)) >>> 0;
  }
}
