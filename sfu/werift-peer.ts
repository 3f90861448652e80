/**
 * The werift adapter: one RTCPeerConnection per viewer, used for what werift does well
 * (ICE, DTLS, consent freshness, SDP) and nothing on the forwarding path.
 *
 * We never call werift's RTCRtpSender.sendRtp: it parses every packet, keeps its own
 * 128-packet NACK cache and sends sender reports whose RTP/NTP pair comes from the last
 * packet's send time (wrong while a cached GOP is replayed). Once ICE and DTLS are up,
 * the owned path takes over: SRTP keys are exported from werift's DTLS session (RFC 5764
 * §4.2), protected by our context (sfu/srtp/) and written straight to the nominated
 * pair's UDP socket (sfu/udp-writer.ts). werift keeps receiving: it answers STUN
 * consent checks and decrypts the viewer's SRTCP, which we read from its DTLS transport.
 *
 * Transceivers are added before the remote offer is applied, each with a track that
 * carries the chosen codec: werift then answers exactly the payload type the plan chose
 * (without the track it takes the first H.264 of the offer, whatever its profile).
 *
 * Start-up latency (time to first frame): we answer `a=setup:passive` and are the DTLS
 * server. As DTLS client werift waits 100 ms before its ClientHello; as server it
 * answers the browser's ClientHello at once. A ClientHello can arrive before werift's
 * own ICE agent reports "connected" (the browser's checks succeed first); werift drops
 * it and the browser retransmits only after ~50 ms, so it is held here and replayed the
 * moment werift's DTLS server exists.
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import type { Socket } from "node:dgram";
import {
  type RTCPeerConnection,
  MediaStream,
  useTransportWideCC,
  MediaStreamTrack,
  setTrackSourceCodecs,
  RTCDtlsTransport,
  RTCRtpCodecParameters,
  RtpHeader,
  type RtcpPacket,
} from "werift";
import { BadInputError, ClosedError, isGatehouseError, OverloadError } from "../config/errors.ts";
import type { Logger } from "../config/log.ts";
import type { AnswerPlan, Offer } from "./offer.ts";
import { rtpHeaderLength, type RtpHeaderFields } from "./rtp/packet.ts";
import { createPeerConnection } from "./peer-connection.ts";
import { SrtpSender } from "./srtp/context.ts";
import { deriveSrtpSessionKeys, srtpProfileName, srtpProfileParams } from "./srtp/kdf.ts";
import type { TransportHandlers, TransportInfo, TransportState, ViewerTransport } from "./transport.ts";
import { SendBatch, SendResult, UdpWriter, type LatencyRecorder } from "./udp-writer.ts";
import { TRANSPORT_CC_URI, TransportCcStamper } from "./transport-cc.ts";

/** An ICE server for werift's own gathering (rarely needed: the SFU is the reachable side). */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface WeriftPeerOptions {
  /** The viewer's offer as sfu/offer.ts read it: its candidates are IP literals the rules accept. */
  offer: Offer;
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
  /**
   * Protect and send media ourselves once DTLS is up (sfu/srtp + a direct socket write)
   * instead of through werift's SRTP session. Default true.
   */
  ownedSrtp?: boolean;
  /**
   * Offer transport-wide congestion control (header extension + feedback) for video, and
   * stamp the owned path's video packets with it (sfu/transport-cc.ts). Default true.
   */
  transportCc?: boolean;
  /** werift path only: replace its raw SRTP key Buffers with KeyObjects once DTLS is up. Default true. */
  cacheKeyObjects?: boolean;
  /** SO_SNDBUF for the nominated socket, bytes (the kernel caps it at net.core.wmem_max). Default 1 MiB. */
  sendBufferBytes?: number;
  /** The thread's send batch (owned path). Default: one shared by this thread's peers, without latency recording. */
  sendBatch?: SendBatch;
  /** werift path: where live packets' ingest → socket latency goes. */
  latency?: LatencyRecorder;
  log: Logger;
  handlers: TransportHandlers;
}

export interface WeriftPeer {
  transport: ViewerTransport;
  answerSdp: string;
  /** SSRC werift announced (a=ssrc) for the video / audio m-section we send on. */
  videoSsrc: number | undefined;
  audioSsrc: number | undefined;
  /** Every sending m-section: its mid, kind and the SSRC announced for it (several video ones in a multi-camera session). */
  slots: { mid: string; kind: "video" | "audio"; ssrc: number }[];
  /** CNAME werift announced, for our SDES. */
  cname: string;
  /**
   * A trickled candidate from the client (WHEP PATCH), checked and rewritten by
   * sfu/candidates.ts (an IP literal: werift never resolves a name for us), for one of the
   * offer's mids. Throws ClosedError once the peer is closed, BadInputError if werift refuses it.
   */
  addRemoteCandidate(candidate: string, mid: string): Promise<void>;
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

/** werift creates its DTLS certificate on first use (~30 ms); start it early so no viewer waits. */
export function prewarmDtlsCertificate(): void {
  RTCDtlsTransport.SetupCertificate().catch(() => {});
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
        // RFC 4585 generic NACK + PLI, RFC 5104 FIR: what we answer from history and cache;
        // transport-wide congestion control feedback (sfu/transport-cc.ts) for the estimator.
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }, { type: "ccm", parameter: "fir" }, { type: "transport-cc" }],
      })
    : undefined;
  // RFC 7798: the camera's H.265 passed through to a viewer that offered it (same feedback).
  const hevc = plan.video?.h265;
  const h265Codec = hevc
    ? new RTCRtpCodecParameters({
        mimeType: "video/H265",
        clockRate: 90000,
        payloadType: hevc.payloadType,
        parameters: hevc.fmtp || undefined,
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }, { type: "ccm", parameter: "fir" }, { type: "transport-cc" }],
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

  const pc = createPeerConnection({
    iceServers: o.iceServers,
    icePortRange: o.icePortRange,
    // werift binds to iceInterfaceAddresses but advertises interface addresses it finds
    // itself, loopback excluded: with a fixed bind address, advertise exactly that one.
    iceUseIpv4: wildcard && !v6,
    iceUseIpv6: wildcard && v6,
    iceAdditionalHostAddresses: wildcard ? undefined : [o.bindAddress],
    iceInterfaceAddresses: wildcard ? undefined : v6 ? { udp6: o.bindAddress } : { udp4: o.bindAddress },
    codecs: { video: videoCodec ? (h265Codec ? [h265Codec, videoCodec] : [videoCodec]) : [], audio: audioCodecs },
    // Video only: the estimator needs the video's arrivals; audio is a small, steady share.
    headerExtensions: { video: o.transportCc === false ? [] : [useTransportWideCC()], audio: [] },
    bundlePolicy: "max-bundle",
  });

  let closed = false;
  let state: TransportState = "connecting";
  const setState = (s: TransportState, detail?: string) => {
    if (closed && s !== "closed") return;
    if (state === s) return;
    state = s;
    o.handlers.onState(s, detail);
  };

  try {
    const stream = new MediaStream({ id: o.streamId });
    // A multi-camera session sends one video track per slot, each in a stream of its own with
    // the slot's sound (the i-th audio section): the browser lip-syncs a camera's picture with
    // its own sound, never with another camera's.
    const slotCount = plan.videoSlots?.length ?? (videoCodec ? 1 : 0);
    const slotStreams = Array.from({ length: slotCount }, (_, i) => (plan.videoSlots ? new MediaStream({ id: `${o.streamId}-${i}` }) : stream));
    const videoTransceivers = videoCodec
      ? slotStreams.map((s) => pc.addTransceiver(videoTrack(videoCodec, h265Codec), { direction: "sendonly", streams: [s] }))
      : [];
    const videoTransceiver = videoTransceivers[0];
    const audioCount = audioCodecs.length === 0 ? 0 : plan.videoSlots ? (plan.audioSlots?.length ?? 1) : 1;
    const audioTransceivers = Array.from({ length: audioCount }, (_, i) =>
      pc.addTransceiver(new MediaStreamTrack({ kind: "audio" }), { direction: "sendonly", streams: [slotStreams[i] ?? stream] }),
    );
    const audioTransceiver = audioTransceivers[0];

    await serialized(async () => {
      try {
        await pc.setRemoteDescription({ type: "offer", sdp: o.offer.sdp });
        // RFC 5763 §5: to an actpass (or active) offer the answerer picks active or passive;
        // passive makes us the DTLS server (see the file comment: it saves werift's 100 ms
        // client delay). An offer that insists on passive (RFC 8842 allows it) gets active.
        if (o.offer.parsed.dtlsSetup !== "passive") for (const t of pc.dtlsTransports) t.role = "server";
        await pc.setLocalDescription(await pc.createAnswer());
      } catch (err) {
        // What werift says is for our logs, not for the client.
        o.log.debug("werift refused an offer", { err });
        throw new BadInputError("offer refused by the WebRTC stack", { cause: err });
      }
    }, o.negotiationTimeoutMs ?? 10_000);
    const local = pc.localDescription;
    if (!local) throw new BadInputError("offer refused by the WebRTC stack");
    // werift answers without candidates when no port of the range could be bound: a
    // viewer that can never connect. Say so (503) instead of answering it.
    if (!/^a=candidate:/m.test(local.sdp)) throw new OverloadError("no free media port");

    for (const t of plan.video ? videoTransceivers : []) {
      const pt = t.codecs.find((c) => c.name.toLowerCase() === "h264")?.payloadType;
      if (pt !== plan.video!.choice.payloadType) {
        throw new BadInputError(`no common video codec (negotiated ${pt ?? "none"})`);
      }
      if (hevc && t.codecs.find((c) => c.name.toLowerCase() === "h265")?.payloadType !== hevc.payloadType) {
        throw new BadInputError("H.265 offered but not negotiated");
      }
    }
    const dtls = (videoTransceiver ?? audioTransceiver)?.sender.dtlsTransport ?? pc.dtlsTransports[0];
    if (!dtls) throw new BadInputError("offer produced no transport");
    holdEarlyDtls(dtls);

    const answerSdp = o.announcedAddress ? announce(local.sdp, o.announcedAddress) : local.sdp;
    const owned =
      o.ownedSrtp !== false
        ? new OwnedTransport(dtls, o.log, o.sendBufferBytes ?? 1024 * 1024, o.sendBatch ?? (sharedBatch ??= new SendBatch()), transportCcOf(videoTransceivers))
        : undefined;

    pc.connectionStateChange.subscribe((s) => {
      if (s === "connected") {
        if (owned) owned.start();
        else if (o.cacheKeyObjects !== false) cacheKeys(dtls, o.log);
        setState("connected");
      } else if (s === "failed") setState("failed", "ice/dtls failed");
      else if (s === "disconnected") setState("disconnected", "ice disconnected");
      else if (s === "closed") setState("closed");
    });
    pc.iceConnectionStateChange.subscribe((s) => {
      // werift leaves connectionState at "disconnected" when ICE recovers: follow ICE here.
      if ((s === "connected" || s === "completed") && state === "disconnected" && dtls.state === "connected") {
        setState("connected", "ice recovered");
      } else if (s === "failed") setState("failed", "ice failed");
    });
    dtls.onRtcp.subscribe((packet: RtcpPacket) => {
      let bytes: Buffer;
      try {
        bytes = wordAligned(packet.serialize());
      } catch {
        return; // werift parsed a feedback type it cannot rebuild (unknown PSFB): nothing we act on
      }
      o.handlers.onRtcp(bytes);
    });

    const closeFn = async () => {
      closed = true;
      await pc.close().catch(() => {});
      setState("closed");
    };
    const transport: ViewerTransport = owned
      ? owned.bind(() => state, closeFn)
      : new WeriftTransport(pc, dtls, () => state, closeFn, o.latency);

    return {
      transport,
      answerSdp,
      videoSsrc: videoTransceiver?.sender.ssrc,
      audioSsrc: audioTransceiver?.sender.ssrc,
      slots: [
        ...videoTransceivers.map((t) => ({ mid: t.mid ?? "", kind: "video" as const, ssrc: t.sender.ssrc })),
        ...audioTransceivers.map((t) => ({ mid: t.mid ?? "", kind: "audio" as const, ssrc: t.sender.ssrc })),
      ],
      cname: pc.cname,
      addRemoteCandidate: async (candidate, mid) => {
        if (closed) throw new ClosedError("viewer closed");
        try {
          await pc.addIceCandidate({ candidate, sdpMid: mid });
        } catch (err) {
          if (closed) throw new ClosedError("viewer closed", { cause: err });
          if (isGatehouseError(err)) throw err;
          o.log.debug("werift refused a candidate", { err });
          throw new BadInputError("ICE candidate refused", { cause: err });
        }
      },
    };
  } catch (err) {
    closed = true;
    await pc.close().catch(() => {});
    throw err;
  }
}

/**
 * The transport-wide sequence numbering of the video m-sections that negotiated it (werift
 * keeps the offer's extension ids on each transceiver), or undefined when none did.
 */
function transportCcOf(transceivers: readonly { headerExtensions: { uri: string; id: number }[]; sender: { ssrc: number } }[]): TransportCcStamper | undefined {
  let id: number | undefined;
  const ssrcs: number[] = [];
  for (const t of transceivers) {
    const ext = t.headerExtensions.find((e) => e.uri === TRANSPORT_CC_URI);
    // BUNDLE: one id per URI across the connection (RFC 8285 §6); a one-byte id only.
    if (!ext || ext.id < 1 || ext.id > 14 || (id !== undefined && ext.id !== id)) continue;
    id = ext.id;
    ssrcs.push(t.sender.ssrc);
  }
  return id === undefined ? undefined : new TransportCcStamper(id, ssrcs);
}

/**
 * werift re-serializes a transport-wide feedback packet without its padding when the
 * sender padded without the P bit: the length field then falls short of the deltas.
 * Zero-pad it to a whole word and fix the length (RFC 3550 §6.4.1); others pass untouched.
 */
export function wordAligned(b: Buffer): Buffer {
  if (b.length % 4 === 0 || b.length < 4) return b;
  const out = Buffer.alloc(b.length + 4 - (b.length % 4));
  b.copy(out);
  out.writeUInt16BE(out.length / 4 - 1, 2);
  return out;
}

/** The batch of peers created without one of their own (one per thread: module state is per isolate). */
let sharedBatch: SendBatch | undefined;

/** werift internals the adapter reads (0.25; checked at run time, never patched on disk). */
interface DtlsInternals {
  dtls?: {
    srtp: { srtpProfile?: number };
    extractSessionKeys(keyLength: number, saltLength: number): { localKey: Buffer; localSalt: Buffer; remoteKey: Buffer; remoteSalt: Buffer };
  };
}
interface PairInternals {
  protocol: { type?: string; transport?: { socket?: unknown } };
  remoteAddr: [string, number];
}
interface ConnectionInternals {
  nominated?: PairInternals;
  consentFresh?: boolean;
  iceLite?: boolean;
  onData: { subscribe(fn: (b: Buffer) => void): { unSubscribe(): void }; execute(b: Buffer): void };
  send(data: Buffer): Promise<void>;
}

/** Early DTLS records are held at most this many (a ClientHello is one or two). */
const MAX_EARLY_DTLS = 16;

/**
 * Holds DTLS records (RFC 7983: first byte 20–63) that reach the ICE connection before
 * werift's DTLS transport starts, and replays them once its DTLS server exists.
 */
function holdEarlyDtls(dtls: RTCDtlsTransport): void {
  const conn = dtls.iceTransport.connection as unknown as ConnectionInternals;
  const early: Buffer[] = [];
  const sub = conn.onData.subscribe((b: Buffer) => {
    const first = b[0]!;
    if (first >= 20 && first <= 63 && dtls.state === "new" && early.length < MAX_EARLY_DTLS) early.push(Buffer.from(b));
  });
  const states = dtls.onStateChange.subscribe((s) => {
    if (s === "new") return;
    sub.unSubscribe();
    states.unSubscribe();
    // "connecting" is emitted just before werift constructs its DTLS server (same tick):
    // replay after it, to the server's subscription only (ours is gone).
    if (s === "connecting" && early.length > 0) queueMicrotask(() => {
      for (const b of early) conn.onData.execute(b);
    });
  });
}

/**
 * The owned send path: our SRTP context (keys exported from werift's DTLS session) and
 * a direct write to the nominated pair's socket. Falls back to werift's connection for
 * a nominated pair that is not a plain UDP socket (TURN or TCP candidates).
 */
class OwnedTransport implements ViewerTransport {
  private readonly dtlsTransport: RTCDtlsTransport;
  private readonly conn: ConnectionInternals;
  private readonly log: Logger;
  private readonly sendBufferBytes: number;
  private readonly batch: SendBatch;
  private sender: SrtpSender | undefined;
  private pair: PairInternals | undefined;
  private writer: UdpWriter | undefined;
  /** Counters of writers of earlier nominated pairs. */
  private readonly earlier = { queued: 0, failed: 0 };
  private readonly sockets = new WeakSet<object>();
  private stateOf: () => TransportState = () => "connecting";
  private closeFn: () => Promise<void> = async () => {};
  private closing: Promise<void> | undefined;
  readonly transportCc: TransportCcStamper | undefined;

  constructor(dtls: RTCDtlsTransport, log: Logger, sendBufferBytes: number, batch: SendBatch, transportCc: TransportCcStamper | undefined) {
    this.transportCc = transportCc;
    this.dtlsTransport = dtls;
    this.conn = dtls.iceTransport.connection as unknown as ConnectionInternals;
    this.log = log;
    this.sendBufferBytes = sendBufferBytes;
    this.batch = batch;
  }

  bind(stateOf: () => TransportState, closeFn: () => Promise<void>): this {
    this.stateOf = stateOf;
    this.closeFn = closeFn;
    return this;
  }

  describe(): TransportInfo | undefined {
    const s = this.sender;
    if (!s) return undefined;
    const w = this.writer;
    return {
      srtpProfile: srtpProfileName(s.profile),
      path: "owned",
      directWrites: w?.direct ?? false,
      nativeSrtp: s.native,
      sendsQueued: this.earlier.queued + (w?.stats.queued ?? 0),
      sendsFailed: this.earlier.failed + (w?.stats.failed ?? 0),
    };
  }

  /** DTLS is up: derive our outbound keys (RFC 5764 §4.2 exporter, RFC 3711 §4.3 KDF). */
  start(): void {
    if (this.sender) return;
    try {
      const d = (this.dtlsTransport as unknown as DtlsInternals).dtls;
      const profile = d?.srtp.srtpProfile;
      const p = profile === undefined ? undefined : srtpProfileParams(profile);
      if (!d || profile === undefined || !p) throw new Error(`no usable SRTP profile (${profile})`);
      const { localKey, localSalt } = d.extractSessionKeys(p.keyLength, p.saltLength);
      this.sender = new SrtpSender(deriveSrtpSessionKeys(profile, localKey, localSalt));
      this.log.debug("owned SRTP path", { profile: srtpProfileName(profile) });
    } catch (err) {
      this.log.warn("cannot key the owned SRTP path", { err });
    }
  }

  sendRtp(h: RtpHeaderFields, payload: Buffer, arrivalMs = 0): boolean {
    const s = this.sender;
    if (!s || this.closing) return false;
    const w = this.writerFor();
    if (!w && !this.pair) return false;
    const tcc = this.transportCc;
    tcc?.stamp(h, payload.length);
    if (w) this.batch.addRtp(w, s, h, payload, arrivalMs);
    else {
      // Not a plain UDP pair (relay or TCP): werift's connection sends a buffer of our own.
      const out = Buffer.allocUnsafe(rtpHeaderLength(h) + payload.length + s.rtpOverhead);
      const n = s.protectRtp(out, h, payload);
      this.conn.send(out.subarray(0, n)).catch(() => {});
    }
    tcc?.unstamp(h);
    return true;
  }

  sendRtcp(compound: Buffer): boolean {
    const s = this.sender;
    if (!s || this.closing) return false;
    const out = Buffer.allocUnsafe(compound.length + s.rtcpOverhead);
    const n = s.protectRtcp(out, compound);
    const w = this.writerFor();
    if (w) return w.send(out, n) !== SendResult.FAILED;
    if (!this.pair) return false;
    this.conn.send(out.subarray(0, n)).catch(() => {});
    return true;
  }

  get inFlight(): number {
    return this.writer?.inFlight ?? 0;
  }

  get state(): TransportState {
    return this.stateOf();
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = this.closeFn();
      // Nothing is protected once closing (sendRtp checks it): free the native key now.
      this.sender?.release();
    }
    return this.closing;
  }

  /**
   * The writer for the current nominated pair, or undefined (none yet, consent expired
   * (RFC 7675 §5.1: no media without fresh consent), or not a UDP socket pair).
   */
  private writerFor(): UdpWriter | undefined {
    const conn = this.conn;
    const pair = conn.nominated;
    if (!pair || (conn.consentFresh === false && conn.iceLite !== true)) {
      this.pair = undefined;
      return undefined;
    }
    if (pair === this.pair) return this.writer;
    this.pair = pair;
    if (this.writer) {
      this.earlier.queued += this.writer.stats.queued;
      this.earlier.failed += this.writer.stats.failed;
    }
    this.writer = undefined;
    const socket = pair.protocol.type === "stun" ? pair.protocol.transport?.socket : undefined;
    if (!isDgramSocket(socket)) return undefined;
    if (!this.sockets.has(socket)) {
      this.sockets.add(socket);
      try {
        socket.setSendBufferSize(this.sendBufferBytes);
      } catch {
        // the kernel keeps its default
      }
    }
    const [address, port] = pair.remoteAddr;
    this.writer = new UdpWriter(socket, port, address);
    return this.writer;
  }
}

function isDgramSocket(s: unknown): s is Socket {
  return typeof s === "object" && s !== null && typeof (s as Socket).send === "function" && typeof (s as Socket).setSendBufferSize === "function";
}

/** The werift send path (kept for comparison and as a fallback: `ownedSrtp: false`). */
class WeriftTransport implements ViewerTransport {
  private readonly header = new RtpHeader();
  private readonly pc: RTCPeerConnection;
  private readonly dtls: RTCDtlsTransport;
  private readonly stateOf: () => TransportState;
  private readonly closeFn: () => Promise<void>;
  private readonly latency: LatencyRecorder | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    pc: RTCPeerConnection,
    dtls: RTCDtlsTransport,
    stateOf: () => TransportState,
    closeFn: () => Promise<void>,
    latency: LatencyRecorder | undefined,
  ) {
    this.pc = pc;
    this.dtls = dtls;
    this.stateOf = stateOf;
    this.closeFn = closeFn;
    this.latency = latency;
  }

  sendRtp(h: RtpHeaderFields, payload: Buffer, arrivalMs = 0): boolean {
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
    if (arrivalMs > 0) this.latency?.record(performance.now() - arrivalMs);
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

  describe(): TransportInfo | undefined {
    const profile = (this.dtls as unknown as DtlsInternals).dtls?.srtp.srtpProfile;
    if (profile === undefined || this.dtls.state !== "connected") return undefined;
    return { srtpProfile: srtpProfileName(profile), path: "werift", directWrites: false, nativeSrtp: false, sendsQueued: 0, sendsFailed: 0 };
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

/**
 * A video track whose codecs limit the answer to what the plan chose (werift answers the
 * offer's first payload type of a codec's name otherwise, whatever its H.264 profile): the
 * chosen H.264 and, when planned, H.265.
 */
function videoTrack(h264: RTCRtpCodecParameters, h265: RTCRtpCodecParameters | undefined): MediaStreamTrack {
  const track = new MediaStreamTrack({ kind: "video", codec: h264 });
  if (h265) setTrackSourceCodecs(track, [h265, h264]);
  return track;
}
