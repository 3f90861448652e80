/**
 * A lightweight WebRTC receiver on werift that connects through WHEP, like a browser
 * would, and records every RTP packet it receives (decrypted, duplicates and
 * retransmissions included). Used by the SFU integration tests and the benchmark.
 *
 *   await using v = await WeriftViewer.connect({ whepUrl: `${base}/whep/cam1` });
 *   await v.connected;
 *   const first = await v.video.waitForCount(1);
 *
 * Offers the codecs Chromium offers (several H.264 profiles in both packetization
 * modes, VP8, VP9, AV1; Opus, PCMU, PCMA…) unless told otherwise, binds 127.0.0.1 only.
 */
import {
  type RTCPeerConnection,
  RTCRtpCodecParameters,
  type RTCDtlsTransport,
  type RTCIceServer,
  type RtpPacket,
} from "werift";
import { loopbackPeerConnection } from "./loopback-peer.ts";
// werift as the DTLS client survives a repeated HelloVerifyRequest (a loaded machine).
import "./werift-dtls-client.ts";
import { compound, serializeNack, serializePli, seqsToNackItems } from "../../sfu/rtp/rtcp.ts";

export interface ReceivedPacket {
  ssrc: number;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  marker: boolean;
  payload: Buffer;
  /** performance.now() at arrival, ms. */
  at: number;
}

/**
 * The packets in sequence order, each once (sequence numbers unwrapped from 16 bits along the
 * arrival order). A packet lost on loopback while the process was starved comes back by NACK,
 * late: arrival order is not the sender's.
 */
export function bySequence(packets: readonly ReceivedPacket[]): { ext: number; packet: ReceivedPacket }[] {
  const byExt = new Map<number, ReceivedPacket>();
  let ext = 0;
  let prev: number | undefined;
  for (const p of packets) {
    // Unwrapped: the signed 16-bit step from the previous arrival.
    ext = prev === undefined ? p.sequenceNumber : ext + ((((p.sequenceNumber - prev) & 0xffff) << 16) >> 16);
    prev = p.sequenceNumber;
    if (!byExt.has(ext)) byExt.set(ext, p);
  }
  return [...byExt].sort((a, b) => a[0] - b[0]).map(([e, packet]) => ({ ext: e, packet }));
}

/** The sequence numbers missing between the first and the last packet received; [] when the run is whole. */
export function sequenceGaps(packets: readonly ReceivedPacket[]): number[] {
  const run = bySequence(packets);
  const missing: number[] = [];
  for (let i = 1; i < run.length; i++) for (let x = run[i - 1]!.ext + 1; x < run[i]!.ext; x++) missing.push(x & 0xffff);
  return missing;
}

export interface WeriftViewerOptions {
  /** The WHEP endpoint, e.g. http://127.0.0.1:1234/whep/cam1 */
  whepUrl: string;
  /** Receive video / audio. Default true for both. */
  video?: boolean;
  audio?: boolean;
  /** Video codecs offered. Default: Chromium's list (H.264 42001f/42e01f/4d001f pm 1+0, VP8, VP9, AV1). */
  videoCodecs?: RTCRtpCodecParameters[];
  /** Audio codecs offered. Default: Opus, PCMU, PCMA. */
  audioCodecs?: RTCRtpCodecParameters[];
  /** Extra request headers (cookies, bearer token). */
  headers?: Record<string, string>;
  /** Keep at most this many packets per track in memory. Default 50000. */
  maxPackets?: number;
  /** Safety-net timeout for `connected` and waits, ms. Default 10000. */
  timeoutMs?: number;
  /** Rewrites the offer before it is POSTed (what a client with other candidates would send). */
  mungeOffer?: (sdp: string) => string;
  /** ICE servers (e.g. the gateway's TURN, from an OPTIONS request's Link headers). Default none. */
  iceServers?: RTCIceServer[];
  /** `relay`: gather relayed candidates only, as `?relay=1` makes the web client do. Default `all`. */
  iceTransportPolicy?: "all" | "relay";
}

/** The HTTP failure of a WHEP request, with status and body for assertions. */
export class WhepHttpError extends Error {
  readonly status: number;
  readonly body: string;
  constructor(status: number, body: string) {
    super(`WHEP request failed with ${status}: ${body}`);
    this.status = status;
    this.body = body;
  }
}

const fb = [{ type: "nack" }, { type: "nack", parameter: "pli" }, { type: "ccm", parameter: "fir" }, { type: "goog-remb" }];
const h264 = (pt: number, profile: string, mode: 0 | 1) =>
  new RTCRtpCodecParameters({
    mimeType: "video/H264",
    clockRate: 90000,
    payloadType: pt,
    rtcpFeedback: fb,
    parameters: `level-asymmetry-allowed=1;packetization-mode=${mode};profile-level-id=${profile}`,
  });

/** Chromium 156's recvonly video offer, in its order. */
export function chromiumVideoCodecs(): RTCRtpCodecParameters[] {
  return [
    new RTCRtpCodecParameters({ mimeType: "video/VP8", clockRate: 90000, payloadType: 96, rtcpFeedback: fb }),
    new RTCRtpCodecParameters({ mimeType: "video/VP9", clockRate: 90000, payloadType: 98, rtcpFeedback: fb, parameters: "profile-id=0" }),
    h264(102, "42001f", 1),
    h264(104, "42001f", 0),
    h264(108, "42e01f", 1),
    h264(114, "42e01f", 0),
    h264(116, "4d001f", 1),
    h264(39, "4d001f", 0),
    new RTCRtpCodecParameters({ mimeType: "video/AV1", clockRate: 90000, payloadType: 45, rtcpFeedback: fb }),
  ];
}

/** A browser that decodes H.265 (Safari 18, Chrome with hardware decoding): H.265 (RFC 7798) first, then Chromium's list. */
export function h265VideoCodecs(): RTCRtpCodecParameters[] {
  return [
    new RTCRtpCodecParameters({ mimeType: "video/H265", clockRate: 90000, payloadType: 49, rtcpFeedback: fb, parameters: "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST" }),
    ...chromiumVideoCodecs(),
  ];
}

export function chromiumAudioCodecs(): RTCRtpCodecParameters[] {
  return [
    new RTCRtpCodecParameters({ mimeType: "audio/opus", clockRate: 48000, channels: 2, payloadType: 111, parameters: "minptime=10;useinbandfec=1" }),
    new RTCRtpCodecParameters({ mimeType: "audio/PCMU", clockRate: 8000, channels: 1, payloadType: 0 }),
    new RTCRtpCodecParameters({ mimeType: "audio/PCMA", clockRate: 8000, channels: 1, payloadType: 8 }),
  ];
}

type Waiter = { pred: (p: ReceivedPacket) => boolean; resolve: (p: ReceivedPacket) => void };

/** Packets of one kind, with event-driven waits. */
export class ReceivedTrack {
  readonly kind: "video" | "audio";
  readonly packets: ReceivedPacket[] = [];
  /** Total received (also counts packets beyond maxPackets). */
  count = 0;
  bytes = 0;
  private readonly max: number;
  private readonly timeoutMs: number;
  private waiters: Waiter[] = [];
  private listeners: ((p: ReceivedPacket) => void)[] = [];

  constructor(kind: "video" | "audio", max: number, timeoutMs: number) {
    this.kind = kind;
    this.max = max;
    this.timeoutMs = timeoutMs;
  }

  /** @internal */
  push(p: ReceivedPacket): void {
    this.count++;
    this.bytes += p.payload.length;
    if (this.packets.length < this.max) this.packets.push(p);
    for (const l of this.listeners) l(p);
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.pred(p)) w.resolve(p);
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Calls `fn` for every packet from now on; returns an unsubscribe function. */
  onPacket(fn: (p: ReceivedPacket) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /** Resolves with the first packet (already received or future) matching `pred`. */
  waitFor(pred: (p: ReceivedPacket) => boolean, what = "packet", timeoutMs = this.timeoutMs): Promise<ReceivedPacket> {
    const have = this.packets.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${this.kind} ${what} (have ${this.count})`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Resolves once `n` packets have arrived in total. */
  waitForCount(n: number, timeoutMs = this.timeoutMs): Promise<ReceivedPacket> {
    if (this.count >= n) return Promise.resolve(this.packets[Math.min(n, this.packets.length) - 1]!);
    let seen = this.count;
    return this.waitFor(() => ++seen >= n, `${n} packets`, timeoutMs);
  }

  get ssrcs(): number[] {
    return [...new Set(this.packets.map((p) => p.ssrc))];
  }
}

export class WeriftViewer {
  readonly pc: RTCPeerConnection;
  /** Absolute URL of the WHEP session resource (from Location). */
  readonly resource: string;
  readonly answerSdp: string;
  readonly etag: string | undefined;
  /** Link headers of the POST answer. */
  readonly links: string[];
  readonly video: ReceivedTrack;
  readonly audio: ReceivedTrack;
  /** Resolves when ICE+DTLS are connected; rejects on failure or timeout. */
  readonly connected: Promise<void>;
  /** Milliseconds: POST round trip, and from the start of connect() to connected. */
  readonly timings: { postMs: number; connectMs: number | undefined };
  private readonly headers: Record<string, string>;
  private readonly t0: number;
  private dtls: RTCDtlsTransport | undefined;
  private closed = false;

  private constructor(init: {
    pc: RTCPeerConnection;
    resource: string;
    answerSdp: string;
    etag: string | undefined;
    links: string[];
    video: ReceivedTrack;
    audio: ReceivedTrack;
    headers: Record<string, string>;
    t0: number;
    postMs: number;
    timeoutMs: number;
  }) {
    this.pc = init.pc;
    this.resource = init.resource;
    this.answerSdp = init.answerSdp;
    this.etag = init.etag;
    this.links = init.links;
    this.video = init.video;
    this.audio = init.audio;
    this.headers = init.headers;
    this.t0 = init.t0;
    this.timings = { postMs: init.postMs, connectMs: undefined };
    this.connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not connected after ${init.timeoutMs} ms`)), init.timeoutMs);
      const check = (s: string) => {
        if (s === "connected") {
          clearTimeout(timer);
          this.timings.connectMs = performance.now() - this.t0;
          resolve();
        } else if (s === "failed" || s === "closed") {
          clearTimeout(timer);
          reject(new Error(`connection ${s}`));
        }
      };
      this.pc.connectionStateChange.subscribe(check);
      check(this.pc.connectionState);
    });
    this.connected.catch(() => {});
  }

  /** Offers, POSTs to the WHEP endpoint, applies the answer. Throws WhepHttpError on a non-201. */
  static async connect(o: WeriftViewerOptions): Promise<WeriftViewer> {
    const t0 = performance.now();
    const timeoutMs = o.timeoutMs ?? 10_000;
    const max = o.maxPackets ?? 50_000;
    const wantVideo = o.video ?? true;
    const wantAudio = o.audio ?? true;
    const videoCodecs = o.videoCodecs ?? chromiumVideoCodecs();
    const audioCodecs = o.audioCodecs ?? chromiumAudioCodecs();
    const pc = loopbackPeerConnection({
      iceServers: o.iceServers ?? [],
      ...(o.iceTransportPolicy ? { iceTransportPolicy: o.iceTransportPolicy } : {}),
      codecs: { video: videoCodecs, audio: audioCodecs },
    });
    const video = new ReceivedTrack("video", max, timeoutMs);
    const audio = new ReceivedTrack("audio", max, timeoutMs);
    const videoPts = new Set(videoCodecs.map((c) => c.payloadType));
    try {
      if (wantVideo) pc.addTransceiver("video", { direction: "recvonly" });
      if (wantAudio) pc.addTransceiver("audio", { direction: "recvonly" });
      await pc.setLocalDescription(await pc.createOffer());
      const headers = { ...(o.headers ?? {}) };
      const res = await fetch(o.whepUrl, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/sdp" },
        body: o.mungeOffer ? o.mungeOffer(pc.localDescription!.sdp) : pc.localDescription!.sdp,
      });
      const body = await res.text();
      if (res.status !== 201) throw new WhepHttpError(res.status, body);
      const postMs = performance.now() - t0;
      const location = res.headers.get("location");
      if (!location) throw new Error("WHEP answer without Location");
      const links = (res.headers.get("link") ?? "").split(/,\s*(?=<)/).filter(Boolean);
      const viewer = new WeriftViewer({
        pc,
        resource: new URL(location, o.whepUrl).toString(),
        answerSdp: body,
        etag: res.headers.get("etag") ?? undefined,
        links,
        video,
        audio,
        headers,
        t0,
        postMs,
        timeoutMs,
      });
      await pc.setRemoteDescription({ type: "answer", sdp: body });
      viewer.tap(videoPts);
      return viewer;
    } catch (err) {
      await pc.close().catch(() => {});
      throw err;
    }
  }

  /** Raw decrypted RTP straight from the DTLS transport: every packet, retransmissions included. */
  private tap(videoPts: Set<number>): void {
    const dtls = this.pc.dtlsTransports[0];
    if (!dtls) throw new Error("no DTLS transport after the answer");
    this.dtls = dtls;
    dtls.onRtp.subscribe((rtp: RtpPacket) => {
      const h = rtp.header;
      const p: ReceivedPacket = {
        ssrc: h.ssrc,
        payloadType: h.payloadType,
        sequenceNumber: h.sequenceNumber,
        timestamp: h.timestamp,
        marker: h.marker,
        payload: Buffer.from(rtp.payload),
        at: performance.now(),
      };
      (videoPts.has(h.payloadType) ? this.video : this.audio).push(p);
    });
  }

  /** Sends an RTCP generic NACK (RFC 4585 §6.2.1) for `seqs` of the track with `mediaSsrc`. */
  sendNack(mediaSsrc: number, seqs: number[]): void {
    this.sendRtcp(compound([serializeNack({ senderSsrc: 1, mediaSsrc, items: seqsToNackItems(seqs) })]));
  }

  /** Sends an RTCP PLI (RFC 4585 §6.3.1) for the track with `mediaSsrc`. */
  sendPli(mediaSsrc: number): void {
    this.sendRtcp(serializePli({ senderSsrc: 1, mediaSsrc }));
  }

  /** Sends plain RTCP bytes through SRTCP. */
  sendRtcp(bytes: Buffer): void {
    const d = this.dtls;
    if (!d || d.state !== "connected") throw new Error("not connected");
    const enc = d.srtcp.encrypt(bytes);
    void d.iceTransport.connection.send(enc).catch(() => {});
  }

  /** Ends the WHEP session (HTTP DELETE) and the peer connection. Returns the DELETE status, or −1 if it failed. */
  async close(): Promise<number> {
    if (this.closed) return -1;
    this.closed = true;
    let status = -1;
    try {
      const res = await fetch(this.resource, { method: "DELETE", headers: this.headers });
      status = res.status;
      await res.arrayBuffer();
    } catch {
      // the server may already be gone
    }
    await this.pc.close().catch(() => {});
    return status;
  }

  /** Closes the peer connection without telling the server (a vanished browser tab). */
  async abandon(): Promise<void> {
    this.closed = true;
    await this.pc.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
