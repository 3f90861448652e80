/**
 * The werift adapter: one RTCPeerConnection per viewer, used for what werift does well
 * (ICE, DTLS, SRTP keys, SDP) and nothing on the forwarding path beyond SRTP + socket.
 *
 * We never call werift's RTCRtpSender.sendRtp: it parses every packet, keeps its own
 * 128-packet NACK cache and sends sender reports whose RTP/NTP pair comes from the last
 * packet's send time (wrong while a cached GOP is replayed). Instead we hand finished
 * headers to the DTLS transport's SRTP session and read RTCP from it ourselves.
 *
 * Transceivers are added before the remote offer is applied, each with a track that
 * carries the chosen codec: werift then answers exactly the payload type the plan chose
 * (without the track it takes the first H.264 of the offer, whatever its profile).
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import {
  MediaStream,
  MediaStreamTrack,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RtpHeader,
  type RTCDtlsTransport,
  type RtcpPacket,
} from "werift";
import { BadInputError, OverloadError } from "../config/errors.ts";
import type { Logger } from "../config/log.ts";
import type { AnswerPlan } from "./offer.ts";
import type { RtpHeaderFields } from "./rtp/packet.ts";
import type { TransportHandlers, TransportState, ViewerTransport } from "./transport.ts";

/** An ICE server for werift's own gathering (rarely needed: the SFU is the reachable side). */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface WeriftPeerOptions {
  offerSdp: string;
  plan: AnswerPlan;
  /** a=msid stream id, so the browser puts audio and video in one MediaStream (lip sync). */
  streamId: string;
  /** Inclusive UDP port range for ICE. */
  icePortRange: [number, number];
  /** Address to bind; "0.0.0.0"/"::" gathers every non-loopback interface. */
  bindAddress: string;
  /** Address written into host candidates instead of the bound one (1:1 NAT). */
  announcedAddress?: string | undefined;
  iceServers: IceServer[];
  /** Give up on applying the offer and gathering after this long, ms. Default 10000. */
  negotiationTimeoutMs?: number;
  /** Replace werift's raw SRTP key Buffers with KeyObjects once DTLS is up (cheaper per packet). Default true. */
  cacheKeyObjects?: boolean;
  log: Logger;
  handlers: TransportHandlers;
}

export interface WeriftPeer {
  transport: ViewerTransport;
  answerSdp: string;
  /** SSRC werift announced (a=ssrc) for the video / audio m-section we send on. */
  videoSsrc: number | undefined;
  audioSsrc: number | undefined;
  /** CNAME werift announced, for our SDES. */
  cname: string;
  /** Trickled candidates from the client (WHEP PATCH). */
  addRemoteCandidate(candidate: string, mid: string | undefined): Promise<void>;
  /** Current ICE ufrag of the client, for telling trickle from restart. */
  remoteUfrag(): string | undefined;
}

const WILDCARD = new Set(["0.0.0.0", "::", ""]);

/**
 * werift picks an ICE port by probing the range (bind, close) and binding again later;
 * two negotiations at once can pick the same port, and the loser then waits forever for
 * "listening". Negotiations (where gathering binds) therefore run one at a time.
 */
let negotiationChain: Promise<unknown> = Promise.resolve();
function serialized<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const run = negotiationChain.then(() => withTimeout(fn(), timeoutMs));
  negotiationChain = run.catch(() => {});
  return run;
}

/** A negotiation that never settles must not hold the chain (and every later viewer) forever. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OverloadError(`WebRTC negotiation took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Creates the peer connection, applies the offer, and returns the answer (all candidates gathered). */
export async function createWeriftPeer(o: WeriftPeerOptions): Promise<WeriftPeer> {
  const { plan } = o;
  const wildcard = WILDCARD.has(o.bindAddress);
  const v6 = o.bindAddress.includes(":");
  const videoCodec = plan.video
    ? new RTCRtpCodecParameters({
        mimeType: "video/H264",
        clockRate: 90000,
        payloadType: plan.video.choice.payloadType,
        parameters: plan.video.choice.fmtp,
        // RFC 4585 generic NACK + PLI, RFC 5104 FIR: what we answer from history and cache.
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }, { type: "ccm", parameter: "fir" }],
      })
    : undefined;
  const audioCodecs = (plan.audio?.choices ?? []).map(
    (c) =>
      new RTCRtpCodecParameters({
        mimeType: c.codec === "OPUS" ? "audio/opus" : `audio/${c.codec}`,
        clockRate: c.clockRate,
        channels: c.channels,
        payloadType: c.payloadType,
        parameters: c.fmtp || undefined,
        rtcpFeedback: [],
      }),
  );

  const pc = new RTCPeerConnection({
    iceServers: o.iceServers,
    icePortRange: o.icePortRange,
    // werift binds to iceInterfaceAddresses but advertises interface addresses it finds
    // itself, loopback excluded: with a fixed bind address, advertise exactly that one.
    iceUseIpv4: wildcard && !v6,
    iceUseIpv6: wildcard && v6,
    iceAdditionalHostAddresses: wildcard ? undefined : [o.bindAddress],
    iceInterfaceAddresses: wildcard ? undefined : v6 ? { udp6: o.bindAddress } : { udp4: o.bindAddress },
    codecs: { video: videoCodec ? [videoCodec] : [], audio: audioCodecs },
    headerExtensions: { video: [], audio: [] },
    bundlePolicy: "max-bundle",
  });

  let closed = false;
  let state: TransportState = "connecting";
  let dtls: RTCDtlsTransport | undefined;
  const setState = (s: TransportState, detail?: string) => {
    if (closed && s !== "closed") return;
    if (state === s) return;
    state = s;
    o.handlers.onState(s, detail);
  };

  try {
    const stream = new MediaStream({ id: o.streamId });
    const videoTransceiver = videoCodec
      ? pc.addTransceiver(new MediaStreamTrack({ kind: "video", codec: videoCodec }), {
          direction: "sendonly",
          streams: [stream],
        })
      : undefined;
    const audioTransceiver =
      audioCodecs.length > 0
        ? pc.addTransceiver(new MediaStreamTrack({ kind: "audio" }), { direction: "sendonly", streams: [stream] })
        : undefined;

    await serialized(async () => {
      try {
        await pc.setRemoteDescription({ type: "offer", sdp: o.offerSdp });
      } catch (err) {
        throw new BadInputError(`offer rejected: ${(err as Error).message ?? String(err)}`, { cause: err });
      }
      await pc.setLocalDescription(await pc.createAnswer());
    }, o.negotiationTimeoutMs ?? 10_000);
    const local = pc.localDescription;
    if (!local) throw new Error("werift produced no local description");

    if (videoTransceiver && plan.video) {
      const pt = videoTransceiver.codecs.find((c) => c.name.toLowerCase() === "h264")?.payloadType;
      if (pt !== plan.video.choice.payloadType) {
        throw new BadInputError(`no common video codec (negotiated ${pt ?? "none"})`);
      }
    }
    dtls = (videoTransceiver ?? audioTransceiver)?.sender.dtlsTransport ?? pc.dtlsTransports[0];
    if (!dtls) throw new BadInputError("offer produced no transport");
    const dtlsTransport = dtls;

    const answerSdp = o.announcedAddress ? announce(local.sdp, o.announcedAddress) : local.sdp;

    pc.connectionStateChange.subscribe((s) => {
      if (s === "connected") {
        if (o.cacheKeyObjects !== false) cacheKeys(dtlsTransport, o.log);
        setState("connected");
      } else if (s === "failed") setState("failed", "ice/dtls failed");
      else if (s === "disconnected") setState("disconnected", "ice disconnected");
      else if (s === "closed") setState("closed");
    });
    pc.iceConnectionStateChange.subscribe((s) => {
      // werift leaves connectionState at "disconnected" when ICE recovers: follow ICE here.
      if ((s === "connected" || s === "completed") && state === "disconnected" && dtlsTransport.state === "connected") {
        setState("connected", "ice recovered");
      } else if (s === "failed") setState("failed", "ice failed");
    });
    dtlsTransport.onRtcp.subscribe((packet: RtcpPacket) => {
      let bytes: Buffer;
      try {
        bytes = packet.serialize();
      } catch {
        return; // werift parsed a feedback type it cannot rebuild (unknown PSFB): nothing we act on
      }
      o.handlers.onRtcp(bytes);
    });

    const transport = new WeriftTransport(pc, dtlsTransport, () => state, async () => {
      closed = true;
      await pc.close().catch(() => {});
      setState("closed");
    });

    return {
      transport,
      answerSdp,
      videoSsrc: videoTransceiver?.sender.ssrc,
      audioSsrc: audioTransceiver?.sender.ssrc,
      cname: pc.cname,
      addRemoteCandidate: async (candidate, mid) => {
        await pc.addIceCandidate({ candidate, sdpMid: mid ?? null });
      },
      remoteUfrag: () => pc.remoteDescription?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1],
    };
  } catch (err) {
    closed = true;
    await pc.close().catch(() => {});
    throw err;
  }
}

class WeriftTransport implements ViewerTransport {
  private readonly header = new RtpHeader();
  private readonly pc: RTCPeerConnection;
  private readonly dtls: RTCDtlsTransport;
  private readonly stateOf: () => TransportState;
  private readonly closeFn: () => Promise<void>;
  private closing: Promise<void> | undefined;

  constructor(pc: RTCPeerConnection, dtls: RTCDtlsTransport, stateOf: () => TransportState, closeFn: () => Promise<void>) {
    this.pc = pc;
    this.dtls = dtls;
    this.stateOf = stateOf;
    this.closeFn = closeFn;
  }

  sendRtp(h: RtpHeaderFields, payload: Buffer): boolean {
    if (this.closing || this.dtls.state !== "connected") return false;
    const hdr = this.header;
    hdr.marker = h.marker;
    hdr.payloadType = h.payloadType;
    hdr.sequenceNumber = h.sequenceNumber;
    hdr.timestamp = h.timestamp;
    hdr.ssrc = h.ssrc;
    // SRTP protection and the socket write run synchronously inside (werift sends to a
    // resolved address without a callback); the promise never rejects.
    void this.dtls.sendRtp(payload, hdr);
    return true;
  }

  /**
   * Datagrams waiting in libuv because the kernel send buffer is full: werift writes
   * without callbacks, so the socket's own queue is the only backpressure signal.
   */
  get inFlight(): number {
    const protocol = this.dtls.iceTransport.connection.nominated?.protocol as { transport?: { socket?: { getSendQueueCount?: () => number } } } | undefined;
    return protocol?.transport?.socket?.getSendQueueCount?.() ?? 0;
  }

  sendRtcp(compound: Buffer): boolean {
    if (this.closing || this.dtls.state !== "connected") return false;
    try {
      const enc = this.dtls.srtcp.encrypt(compound);
      this.dtls.iceTransport.connection.send(enc).catch(() => {});
      return true;
    } catch {
      return false;
    }
  }

  get state(): TransportState {
    return this.stateOf();
  }

  close(): Promise<void> {
    this.closing ??= this.closeFn();
    return this.closing;
  }

  /** werift's connection, for tests and diagnostics only. */
  get peerConnection(): RTCPeerConnection {
    return this.pc;
  }
}

/**
 * werift builds an AES key from a raw Buffer on every packet (createCipheriv with a
 * Buffer key); a KeyObject skips that. The fields are public and only ever handed to
 * node:crypto, which accepts KeyObjects, so swapping them is safe and reversible.
 */
function cacheKeys(dtls: RTCDtlsTransport, log: Logger): void {
  try {
    for (const session of [dtls.srtp, dtls.srtcp]) {
      for (const ctx of [session.localContext, session.remoteContext]) {
        const c = ctx.cipher as unknown as Record<string, Buffer | KeyObject>;
        for (const field of ["srtpSessionKey", "srtcpSessionKey", "srtpSessionAuthTag", "srtcpSessionAuthTag"]) {
          const v = c[field];
          if (Buffer.isBuffer(v)) c[field] = createSecretKey(v);
        }
      }
    }
  } catch (err) {
    log.debug("could not cache SRTP KeyObjects", { err });
  }
}

/** Writes `address` into every host candidate of the answer (1:1 NAT, RFC 8839 §5.1). */
function announce(sdp: string, address: string): string {
  return sdp.replace(
    /^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)/gm,
    (_m, pre: string, _addr: string, post: string) => `${pre}${address}${post}`,
  );
}
