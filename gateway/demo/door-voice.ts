/**
 * What the demo door says in a call: a beeping tone, with what it hears from the call played
 * back a moment later (an echo), so whoever talks to it hears the door and themselves.
 * Pure: 20 ms G.711 frames in, 20 ms G.711 frames out; no sockets, no timers.
 */
import { alawToLinear, linearToAlaw, linearToUlaw, ulawToLinear } from "../sip/rtp.ts";
import type { G711 } from "../sip/sdp.ts";

/** Samples in one 20 ms frame at 8 kHz. */
export const FRAME_SAMPLES = 160;

export interface DoorVoiceOptions {
  codec: G711;
  /** Tone frequency, Hz. Default 440. */
  toneHz?: number;
  /** Tone amplitude, 16-bit linear. Default 6000. */
  toneLevel?: number;
  /** Tone cadence: on for this many ms of every `toneEveryMs`. Default 400 of 2000. */
  toneOnMs?: number;
  toneEveryMs?: number;
  /** How long after hearing a sound the door plays it back, ms. Default 300. */
  echoDelayMs?: number;
}

/** What the door has heard so far. */
export interface HeardStats {
  /** Frames received. */
  frames: number;
  /** Largest absolute sample ever heard (16-bit linear). */
  peak: number;
  /** RMS of the last second heard (16-bit linear). */
  level: number;
}

export class DoorVoice {
  private readonly encode: (s: number) => number;
  private readonly decode: (b: number) => number;
  private readonly toneHz: number;
  private readonly toneLevel: number;
  private readonly toneOnSamples: number;
  private readonly toneEverySamples: number;
  private readonly delayFrames: number;
  /** Heard frames waiting to be echoed, as linear samples. Bounded: never more than the delay plus a little. */
  private readonly echo: Int16Array[] = [];
  private sample = 0;
  private frames = 0;
  private peak = 0;
  /** Sum of squares per heard frame over the last second (ring buffer). */
  private readonly recent = new Float64Array(50);
  private recentIndex = 0;

  constructor(opts: DoorVoiceOptions) {
    this.encode = opts.codec === "PCMU" ? linearToUlaw : linearToAlaw;
    this.decode = opts.codec === "PCMU" ? ulawToLinear : alawToLinear;
    this.toneHz = opts.toneHz ?? 440;
    this.toneLevel = opts.toneLevel ?? 6000;
    this.toneOnSamples = Math.round(((opts.toneOnMs ?? 400) * 8000) / 1000);
    this.toneEverySamples = Math.max(1, Math.round(((opts.toneEveryMs ?? 2000) * 8000) / 1000));
    this.delayFrames = Math.max(0, Math.round((opts.echoDelayMs ?? 300) / 20));
  }

  /** A frame heard from the call (G.711 payload, any length up to a few frames). */
  hear(payload: Uint8Array): void {
    const pcm = new Int16Array(payload.length);
    let sq = 0;
    for (let i = 0; i < payload.length; i++) {
      const s = this.decode(payload[i]!);
      pcm[i] = s;
      sq += s * s;
      const a = Math.abs(s);
      if (a > this.peak) this.peak = a;
    }
    this.frames++;
    this.recent[this.recentIndex] = payload.length > 0 ? sq / payload.length : 0;
    this.recentIndex = (this.recentIndex + 1) % this.recent.length;
    this.echo.push(pcm);
    // A sender faster than our clock must not grow the delay without bound.
    while (this.echo.length > this.delayFrames + 10) this.echo.shift();
  }

  /** The next 20 ms frame to send: the tone's cadence mixed with the echo, in the call's codec. */
  next(): Buffer {
    const echoed = this.echo.length > this.delayFrames ? this.echo.shift() : undefined;
    const out = Buffer.allocUnsafe(FRAME_SAMPLES);
    for (let i = 0; i < FRAME_SAMPLES; i++) {
      const n = this.sample + i;
      const on = n % this.toneEverySamples < this.toneOnSamples;
      let s = on ? this.toneLevel * Math.sin((2 * Math.PI * this.toneHz * n) / 8000) : 0;
      if (echoed && i < echoed.length) s += echoed[i]!;
      out[i] = this.encode(Math.max(-32768, Math.min(32767, s)));
    }
    this.sample += FRAME_SAMPLES;
    return out;
  }

  get heard(): HeardStats {
    let sum = 0;
    let n = 0;
    for (const v of this.recent) {
      sum += v;
      n++;
    }
    return { frames: this.frames, peak: this.peak, level: Math.round(Math.sqrt(sum / Math.max(1, Math.min(n, this.frames)))) };
  }
}
