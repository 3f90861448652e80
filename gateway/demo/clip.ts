/**
 * The demo recorder's clip, prepared once at start: the H.264 stream is split into
 * frames, parameter sets are guaranteed before every IDR, every frame is packetized,
 * and the µ-law audio is cut into 20 ms packets. Sessions then only stamp headers.
 *
 * Pure: bytes in, a frozen packet schedule out.
 */

import { BadInputError } from "../../config/errors.ts";
import { NalType, formatSpropParameterSets, parseSps, profileLevelIdFromSps, splitAnnexB, type SpsInfo } from "../../sfu/h264/nal.ts";
import { packetizeAccessUnit } from "../../sfu/h264/packetizer.ts";

/** One RTP payload at its place in the loop. */
export interface ClipPacket {
  /** Offset from the loop start, in RTP clock units of the track. */
  ts: number;
  /** Offset from the loop start, ms (when it is due). */
  atMs: number;
  payload: Buffer;
  marker: boolean;
  /** First packet of an IDR frame (SPS/PPS first): where a lagging session may resume. */
  keyframe: boolean;
}

/** A track's packets for one loop of the clip. */
export interface ClipTrack {
  /** RTP clock rate, Hz. */
  clockRate: number;
  payloadType: number;
  packets: readonly ClipPacket[];
  /** Loop length in RTP clock units (the next loop's timestamps continue from here). */
  loopTs: number;
}

export interface DemoClip {
  video: ClipTrack;
  audio: ClipTrack | null;
  /** Loop length, ms. */
  loopMs: number;
  frames: number;
  /** Frames per second. */
  fps: number;
  sps: Buffer;
  pps: Buffer;
  spsInfo: SpsInfo;
  /** For SDP: sprop-parameter-sets and profile-level-id. */
  spropParameterSets: string;
  profileLevelId: string;
}

export interface ClipOptions {
  /** Annex-B H.264 elementary stream. */
  h264: Buffer;
  /** Raw G.711 µ-law, 8 kHz mono; omitted = no audio track. */
  ulaw?: Buffer | undefined;
  /** Frames per second of the H.264 stream (Annex-B carries no timing). */
  fps: number;
  /** Largest RTP payload, bytes (a recorder typically fills a 1500-byte MTU: default 1400). */
  maxPayload?: number;
}

const isSlice = (t: number) => t === NalType.SLICE || t === NalType.IDR;

/**
 * True when a slice NAL starts a new picture: first_mb_in_slice (the first ue(v) of the
 * slice header, H.264 §7.3.3) is 0, which is a single '1' bit.
 */
function firstSliceOfPicture(nal: Buffer): boolean {
  return nal.length > 1 && (nal[1]! & 0x80) !== 0;
}

/** Splits NAL units into access units (H.264 §7.4.1.2.3, simplified for one-layer streams). */
export function groupAccessUnits(nals: readonly Buffer[]): Buffer[][] {
  const aus: Buffer[][] = [];
  let cur: Buffer[] = [];
  let hasSlice = false;
  for (const n of nals) {
    const t = n[0]! & 0x1f;
    const startsNew = hasSlice && (isSlice(t) ? firstSliceOfPicture(n) : t === NalType.AUD || t === NalType.SPS || t === NalType.PPS || t === NalType.SEI);
    if (startsNew) {
      aus.push(cur);
      cur = [];
      hasSlice = false;
    }
    cur.push(n);
    if (isSlice(t)) hasSlice = true;
  }
  if (hasSlice) aus.push(cur);
  return aus;
}

/** Builds the packet schedule. Throws BadInputError when the stream has no SPS/PPS or no frames. */
export function prepareClip(opts: ClipOptions): DemoClip {
  const maxPayload = opts.maxPayload ?? 1400;
  const nals = splitAnnexB(opts.h264);
  const sps = nals.find((n) => (n[0]! & 0x1f) === NalType.SPS);
  const pps = nals.find((n) => (n[0]! & 0x1f) === NalType.PPS);
  if (!sps || !pps) throw new BadInputError("demo clip: no SPS/PPS in the H.264 stream");
  const spsInfo = parseSps(sps);
  if (!spsInfo) throw new BadInputError("demo clip: unreadable SPS");
  const aus = groupAccessUnits(nals);
  if (aus.length === 0) throw new BadInputError("demo clip: no frames in the H.264 stream");
  if (!aus[0]!.some((n) => (n[0]! & 0x1f) === NalType.IDR)) throw new BadInputError("demo clip: does not start with an IDR");

  const frameTs = Math.round(90000 / opts.fps);
  const video: ClipPacket[] = [];
  aus.forEach((au, i) => {
    const idr = au.some((n) => (n[0]! & 0x1f) === NalType.IDR);
    // Keep slices and parameter sets; drop SEI/AUD/filler (x264's SEI is its option string).
    let keep = au.filter((n) => {
      const t = n[0]! & 0x1f;
      return isSlice(t) || t === NalType.SPS || t === NalType.PPS;
    });
    if (idr && !keep.some((n) => (n[0]! & 0x1f) === NalType.SPS)) keep = [sps, pps, ...keep]; // in band before every IDR
    const payloads = packetizeAccessUnit(keep, { maxPayload });
    const ts = i * frameTs;
    payloads.forEach((p, j) =>
      video.push({ ts, atMs: (ts * 1000) / 90000, payload: p, marker: j === payloads.length - 1, keyframe: idr && j === 0 }),
    );
  });
  const loopTs = aus.length * frameTs;
  const loopMs = (loopTs * 1000) / 90000;

  let audio: ClipTrack | null = null;
  if (opts.ulaw && opts.ulaw.length > 0) {
    // Fit the audio to the video loop exactly so the tracks never drift apart across loops.
    const samples = Math.round((loopMs * 8000) / 1000);
    const pcm = Buffer.alloc(samples, 0xff); // 0xFF is µ-law silence
    opts.ulaw.copy(pcm, 0, 0, Math.min(samples, opts.ulaw.length));
    const packets: ClipPacket[] = [];
    for (let s = 0; s < samples; s += 160) {
      packets.push({ ts: s, atMs: s / 8, payload: pcm.subarray(s, Math.min(samples, s + 160)), marker: false, keyframe: false });
    }
    audio = { clockRate: 8000, payloadType: 0, packets, loopTs: samples };
  }

  return {
    video: { clockRate: 90000, payloadType: 96, packets: video, loopTs },
    audio,
    loopMs,
    frames: aus.length,
    fps: opts.fps,
    sps: Buffer.from(sps),
    pps: Buffer.from(pps),
    spsInfo,
    spropParameterSets: formatSpropParameterSets({ sps: [sps], pps: [pps] }),
    profileLevelId: profileLevelIdFromSps(sps)!,
  };
}
