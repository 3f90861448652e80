/**
 * A fake recorder for SFU tests: replays the captured GStreamer H.264 RTP stream
 * (test/fixtures/h264, 47 frames, IDR every 25) into a MediaSink in a loop, with
 * continuous sequence numbers and timestamps, and can "reconnect" with a new SSRC,
 * sequence and timestamp base like a real recorder session would.
 */
import { randomInt } from "node:crypto";
import { GST_CAPTURE, GST_SPROP, rtpCapture } from "../fixtures/h264/fixtures.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";

/** The capture's frames: packets grouped by timestamp (the trailing lone AUD left out). */
export function captureFrames(): Buffer[][] {
  const pk = rtpCapture(GST_CAPTURE);
  const frames: Buffer[][] = [];
  let ts = -1;
  for (const p of pk) {
    const t = p.readUInt32BE(4);
    if (t !== ts) {
      frames.push([]);
      ts = t;
    }
    frames[frames.length - 1]!.push(p);
  }
  const last = frames[frames.length - 1]!;
  if (!last.some((p) => (p[1]! & 0x80) !== 0)) frames.pop(); // incomplete trailing frame
  return frames;
}

export const VIDEO_TRACK: TrackSpec = {
  kind: "video",
  codec: "H264",
  clockRate: 90000,
  channels: 1,
  payloadType: 96,
  fmtp: `packetization-mode=1;profile-level-id=42c00d;sprop-parameter-sets=${GST_SPROP}`,
};

export const PCMU_TRACK: TrackSpec = { kind: "audio", codec: "PCMU", clockRate: 8000, channels: 1, payloadType: 0, fmtp: "" };

/** Frame period of the capture in RTP ticks (25 fps). */
export const FRAME_TICKS = 3600;

export class FakeRecorder {
  readonly frames = captureFrames();
  /** Index of the next frame to send (grows forever; the capture loops). */
  frameIndex = 0;
  ssrc = randomInt(1, 0xffffffff);
  audioSsrc = randomInt(1, 0xffffffff);
  /** Packets pushed, per session. */
  sent = 0;
  private seq = randomInt(0, 0x10000);
  private tsBase = randomInt(0, 0xffffffff);
  private audioSeq = randomInt(0, 0x10000);
  private audioTs = randomInt(0, 0xffffffff);
  private timer: NodeJS.Timeout | undefined;
  private readonly sink: MediaSink;
  private readonly audio: boolean;
  /** Packets to skip (simulated upstream loss), by absolute packet counter. */
  readonly loseNext = new Set<number>();
  private counter = 0;

  constructor(sink: MediaSink, opts: { audio?: boolean } = {}) {
    this.sink = sink;
    this.audio = opts.audio ?? false;
  }

  /** Announces the tracks (as ingest does after PLAY). */
  announce(): void {
    this.sink.setTracks(this.audio ? [VIDEO_TRACK, PCMU_TRACK] : [VIDEO_TRACK]);
  }

  /** GOP position of the next frame: 0 means it is an IDR frame. */
  get gopPosition(): number {
    const i = this.frameIndex % this.frames.length;
    return i < 25 ? i : i - 25;
  }

  /** Pushes the next `n` frames synchronously (and 40 ms of PCMU per frame when audio is on). */
  pushFrames(n: number): void {
    for (let k = 0; k < n; k++) {
      const f = this.frames[this.frameIndex % this.frames.length]!;
      const ts = (this.tsBase + this.frameIndex * FRAME_TICKS) >>> 0;
      for (const p of f) {
        const out = Buffer.from(p);
        out.writeUInt16BE(this.seq, 2);
        out.writeUInt32BE(ts, 4);
        out.writeUInt32BE(this.ssrc, 8);
        this.seq = (this.seq + 1) & 0xffff;
        if (this.loseNext.has(this.counter++)) continue;
        this.sink.pushRtp(0, out);
        this.sent++;
      }
      if (this.audio) {
        for (let a = 0; a < 2; a++) {
          const pk = Buffer.alloc(12 + 160, 0xff);
          pk[0] = 0x80;
          pk[1] = 0;
          pk.writeUInt16BE(this.audioSeq, 2);
          pk.writeUInt32BE(this.audioTs, 4);
          pk.writeUInt32BE(this.audioSsrc, 8);
          this.audioSeq = (this.audioSeq + 1) & 0xffff;
          this.audioTs = (this.audioTs + 160) >>> 0;
          this.sink.pushRtp(1, pk);
        }
      }
      this.frameIndex++;
    }
  }

  /** Pushes frames until the next one would be an IDR (position 0). */
  pushToGopEnd(): void {
    while (this.gopPosition !== 0) this.pushFrames(1);
  }

  /** Pushes one frame every `intervalMs` until stopped. */
  start(intervalMs = 10): void {
    this.stop();
    this.timer = setInterval(() => this.pushFrames(1), intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Simulates a recorder reconnect: upstreamDown, a new SSRC and random sequence and
   * timestamp bases, setTracks again. The replay restarts at an IDR (as a recorder does after PLAY).
   */
  reconnect(): void {
    this.sink.upstreamDown("test reconnect");
    this.ssrc = randomInt(1, 0xffffffff);
    this.audioSsrc = randomInt(1, 0xffffffff);
    this.seq = randomInt(0, 0x10000);
    this.audioSeq = randomInt(0, 0x10000);
    this.tsBase = randomInt(0, 0xffffffff);
    this.audioTs = randomInt(0, 0xffffffff);
    this.frameIndex = 0;
    this.sent = 0;
    this.announce();
  }

  /** A new SSRC/seq/ts mid-stream without upstreamDown (a recorder restarting its stream). */
  switchSsrc(): void {
    this.ssrc = randomInt(1, 0xffffffff);
    this.seq = randomInt(0, 0x10000);
    this.tsBase = randomInt(0, 0xffffffff);
    this.frameIndex = 0;
  }
}
