/**
 * A lightweight WebRTC receiver for load tests: werift does ICE and DTLS (so the
 * gateway under test sees a real, keyed peer), but received SRTP is never decrypted.
 * Each packet's RTP header is in the clear (RFC 3711 §3.1 encrypts only the payload),
 * so sequence number and SSRC are read straight from the datagram and counted.
 * That keeps the receiver's cost per packet at a few microseconds, so one process
 * can stand in for hundreds of viewers without becoming the bottleneck.
 *
 *   const v = await LightViewer.whep("http://127.0.0.1:8080/whep/cam");   // we offer (WHEP)
 *   const { viewer, answerSdp } = await LightViewer.answer(janusOfferSdp); // they offer (Janus)
 *   await v.connected; await v.firstPacket;
 *   v.video.snapshot()  // { received, expected, duplicates, reordered }
 *   v.sendReceiverReport();  // RTCP RR, so the sender sees a live viewer
 *   await v.close();
 *
 * The hook (werift 0.25 internals, not patched on disk): before DTLS completes we
 * replace `startSrtp` on this peer's RTCDtlsTransport instance. Ours still derives
 * the SRTP/SRTCP sessions (to encrypt our receiver reports), but instead of
 * subscribing werift's decrypting handler it replaces `datagramReceived` on each ICE
 * socket's StunProtocol instance: RTP/RTCP bytes (first byte 128–191, RFC 7983 §7)
 * go to our counter; STUN and DTLS go on to werift's own handler unchanged.
 */
import { RTCRtpCodecParameters, type RTCDtlsTransport, type RTCPeerConnection } from "werift";
import { createPeerConnection } from "../../sfu/peer-connection.ts";
// werift as the DTLS client survives a repeated HelloVerifyRequest (a loaded machine).
import "./werift-dtls-client.ts";
import { serializeRr } from "../../sfu/rtp/rtcp.ts";
import { SeqCounter } from "../bench/lib/seq.ts";
import { chromiumVideoCodecs } from "./werift-viewer.ts";

export interface LightViewerOptions {
  /** Local address for ICE (one host candidate). Default 127.0.0.1 (answer(): the offer's first IPv4 host candidate). */
  bindAddress?: string;
  /** Safety net for `connected` and `firstPacket`, ms. Default 15000. */
  timeoutMs?: number;
  /** Extra headers for the WHEP POST (cookies, bearer token). */
  headers?: Record<string, string>;
  /** Called with every RTP datagram's arrival (performance.now()), SSRC and sequence number. */
  onRtp?: (ssrc: number, seq: number, at: number) => void;
}

/** werift internals we touch (see the file comment). */
interface DtlsInternals {
  srtpStarted: boolean;
  updateSrtpSession(): void;
  startSrtp(): void;
  srtcp: { encrypt(buf: Buffer): Buffer };
  iceTransport: { connection: IceInternals };
  state: string;
}
interface IceInternals {
  protocols: ProtocolInternals[];
  send(data: Buffer): Promise<void>;
}
interface ProtocolInternals {
  datagramReceived(data: Buffer, addr: unknown): void;
}

/** Counters of one received SSRC. */
export class StreamCounter extends SeqCounter {
  readonly ssrc: number;
  bytes = 0;
  /** Packets with the RTP marker bit (RFC 6184 §5.1: the last packet of an access unit), i.e. frames. */
  frames = 0;
  constructor(ssrc: number) {
    super();
    this.ssrc = ssrc;
  }
}

const OUR_RTCP_SSRC_BASE = 0x4c000000;
let viewers = 0;

export class LightViewer {
  readonly pc: RTCPeerConnection;
  /** Resolves when ICE+DTLS are connected. */
  readonly connected: Promise<void>;
  /** Resolves with the arrival of the first RTP packet. */
  readonly firstPacket: Promise<void>;
  /** WHEP session URL (Location), when connected through WHEP. */
  resource: string | undefined;
  /** Every SSRC received, by SSRC. */
  readonly streams = new Map<number, StreamCounter>();
  packets = 0;
  bytes = 0;
  rtcpIn = 0;
  /** performance.now() of the first RTP packet, 0 before. */
  firstAt = 0;
  /** Milliseconds from the start of the connect call to connected / to the first packet. */
  connectMs = 0;
  firstPacketMs = 0;
  private readonly t0 = performance.now();
  private readonly headers: Record<string, string>;
  private readonly onRtp: LightViewerOptions["onRtp"];
  private readonly rtcpSsrc = (OUR_RTCP_SSRC_BASE + ++viewers) >>> 0;
  private dtls: DtlsInternals | undefined;
  private last: StreamCounter | undefined;
  private gotFirst: () => void = () => {};
  private closed = false;
  private readonly prevReport = new Map<number, { expected: number; received: number }>();

  private constructor(pc: RTCPeerConnection, opts: LightViewerOptions) {
    this.pc = pc;
    this.headers = opts.headers ?? {};
    this.onRtp = opts.onRtp;
    const timeoutMs = opts.timeoutMs ?? 15_000;
    this.connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not connected after ${timeoutMs} ms`)), timeoutMs);
      const check = (s: string) => {
        if (s === "connected") {
          clearTimeout(timer);
          this.connectMs = performance.now() - this.t0;
          resolve();
        } else if (s === "failed" || s === "closed") {
          clearTimeout(timer);
          reject(new Error(`connection ${s}`));
        }
      };
      pc.connectionStateChange.subscribe(check);
      check(pc.connectionState);
    });
    this.connected.catch(() => {});
    this.firstPacket = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no RTP after ${timeoutMs} ms (state ${pc.connectionState})`)), timeoutMs);
      this.gotFirst = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.firstPacket.catch(() => {});
  }

  private static peer(opts: LightViewerOptions, codecs: RTCRtpCodecParameters[]): RTCPeerConnection {
    const addr = opts.bindAddress ?? "127.0.0.1";
    return createPeerConnection({
      iceServers: [],
      iceUseIpv4: false,
      iceUseIpv6: false,
      iceAdditionalHostAddresses: [addr],
      iceInterfaceAddresses: { udp4: addr },
      codecs: { video: codecs, audio: [] },
    });
  }

  /** Offers receive-only video, POSTs it to a WHEP endpoint, applies the answer. */
  static async whep(url: string, opts: LightViewerOptions = {}): Promise<LightViewer> {
    const pc = LightViewer.peer(opts, chromiumVideoCodecs());
    const v = new LightViewer(pc, opts);
    try {
      pc.addTransceiver("video", { direction: "recvonly" });
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(url, {
        method: "POST",
        headers: { ...v.headers, "Content-Type": "application/sdp" },
        body: pc.localDescription!.sdp,
      });
      const body = await res.text();
      if (res.status !== 201) throw new Error(`WHEP POST ${res.status}: ${body.slice(0, 300)}`);
      const location = res.headers.get("location");
      v.resource = location ? new URL(location, url).toString() : undefined;
      await pc.setRemoteDescription({ type: "answer", sdp: body });
      v.hook();
      return v;
    } catch (err) {
      await pc.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Answers a sender's offer (Janus offers to its viewers). Accepts the offer's H.264
   * codecs exactly as offered (same payload types and fmtp), receive-only.
   */
  static async answer(offerSdp: string, opts: LightViewerOptions = {}): Promise<{ viewer: LightViewer; answerSdp: string }> {
    // Janus gathers on every interface except loopback (libnice), and its checks from
    // there to 127.0.0.1 fail: by default, bind the offer's own IPv4 host address (a
    // local address, so the packets still never leave the machine).
    const bindAddress = opts.bindAddress ?? firstIpv4HostCandidate(offerSdp) ?? "127.0.0.1";
    const pc = LightViewer.peer({ ...opts, bindAddress }, h264CodecsOf(offerSdp));
    const v = new LightViewer(pc, opts);
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: offerSdp });
      for (const t of pc.getTransceivers()) t.setDirection("recvonly");
      await pc.setLocalDescription(await pc.createAnswer());
      v.hook();
      return { viewer: v, answerSdp: pc.localDescription!.sdp };
    } catch (err) {
      await pc.close().catch(() => {});
      throw err;
    }
  }

  /** Installs the counting path in place of SRTP decryption (see the file comment). */
  private hook(): void {
    const dtls = this.pc.dtlsTransports[0] as unknown as (RTCDtlsTransport & DtlsInternals) | undefined;
    if (!dtls) throw new Error("no DTLS transport after negotiation");
    if (dtls.srtpStarted) throw new Error("SRTP already started: too late to hook");
    this.dtls = dtls;
    dtls.startSrtp = () => {
      if (dtls.srtpStarted) return;
      dtls.srtpStarted = true;
      dtls.updateSrtpSession(); // keys for our own SRTCP receiver reports
      for (const protocol of dtls.iceTransport.connection.protocols) {
        const original = protocol.datagramReceived.bind(protocol);
        protocol.datagramReceived = (data: Buffer, addr: unknown) => {
          const b0 = data[0]!;
          // RFC 7983 §7: 128–191 is RTP/RTCP; STUN (0–3) and DTLS (20–63) stay with werift.
          if (b0 >= 128 && b0 <= 191) this.onMedia(data);
          else original(data, addr);
        };
      }
    };
  }

  private onMedia(data: Buffer): void {
    if (data.length < 12) return;
    const b1 = data[1]!;
    // RFC 5761 §4: packet types 192–223 in the second byte are RTCP (the gateway's sender reports).
    if (b1 >= 192 && b1 <= 223) {
      this.rtcpIn++;
      return;
    }
    const seq = (data[2]! << 8) | data[3]!;
    const ssrc = data.readUInt32BE(8);
    let s = this.last;
    if (!s || s.ssrc !== ssrc) {
      s = this.streams.get(ssrc);
      if (!s) {
        s = new StreamCounter(ssrc);
        this.streams.set(ssrc, s);
      }
      this.last = s;
    }
    s.push(seq);
    s.bytes += data.length;
    if (b1 & 0x80) s.frames++;
    this.packets++;
    this.bytes += data.length;
    if (this.onRtp) this.onRtp(ssrc, seq, performance.now());
    if (this.firstAt === 0) {
      this.firstAt = performance.now();
      this.firstPacketMs = this.firstAt - this.t0;
      this.gotFirst();
    }
  }

  /** The stream with the most packets (the video), if any. */
  get main(): StreamCounter | undefined {
    let best: StreamCounter | undefined;
    for (const s of this.streams.values()) if (!best || s.received > best.received) best = s;
    return best;
  }

  /** Sends an RTCP receiver report (RFC 3550 §6.4.2) for every stream received, through SRTCP. */
  sendReceiverReport(): boolean {
    const d = this.dtls;
    if (this.closed || !d || !d.srtpStarted || d.state !== "connected") return false;
    const reports = [...this.streams.values()].map((s) => {
      const prev = this.prevReport.get(s.ssrc) ?? { expected: 0, received: 0 };
      const expected = s.expected - prev.expected;
      const lost = Math.max(0, expected - (s.received - prev.received));
      this.prevReport.set(s.ssrc, { expected: s.expected, received: s.received });
      return {
        ssrc: s.ssrc,
        fractionLost: expected > 0 ? Math.min(255, Math.floor((lost * 256) / expected)) : 0,
        cumulativeLost: Math.min(0x7fffff, s.lost),
        highestSeq: s.highestExt >>> 0,
        jitter: 0,
        lsr: 0,
        dlsr: 0,
      };
    });
    try {
      const enc = d.srtcp.encrypt(serializeRr({ ssrc: this.rtcpSsrc, reports }));
      void d.iceTransport.connection.send(enc).catch(() => {});
      return true;
    } catch {
      return false;
    }
  }

  /** Ends the WHEP session (DELETE) when there is one, and the peer connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.resource) {
      try {
        const res = await fetch(this.resource, { method: "DELETE", headers: this.headers });
        await res.arrayBuffer();
      } catch {
        // the gateway may already be gone
      }
    }
    await this.pc.close().catch(() => {});
  }
}

/** The H.264 codecs of an SDP offer's video section, with their payload types and fmtp. */
export function h264CodecsOf(sdp: string): RTCRtpCodecParameters[] {
  const fmtp = new Map<number, string>();
  for (const m of sdp.matchAll(/^a=fmtp:(\d+) (.*?)\r?$/gm)) fmtp.set(Number(m[1]), m[2]!);
  const out: RTCRtpCodecParameters[] = [];
  for (const m of sdp.matchAll(/^a=rtpmap:(\d+) H264\/90000\r?$/gim)) {
    const pt = Number(m[1]);
    out.push(
      new RTCRtpCodecParameters({
        mimeType: "video/H264",
        clockRate: 90000,
        payloadType: pt,
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }, { type: "ccm", parameter: "fir" }],
        ...(fmtp.has(pt) ? { parameters: fmtp.get(pt)! } : {}),
      }),
    );
  }
  if (out.length === 0) throw new Error("the offer has no H.264 video");
  return out;
}

/** Address of the first IPv4 UDP host candidate in an SDP, if any. */
export function firstIpv4HostCandidate(sdp: string): string | undefined {
  const m = /^a=candidate:\S+ \d+ udp \d+ (\d+\.\d+\.\d+\.\d+) \d+ typ host/im.exec(sdp);
  return m?.[1];
}

/** A viewer receiving media, and how to end it (WHEP DELETE or Janus detach included). */
export interface PlayingViewer {
  viewer: LightViewer;
  end: () => Promise<void>;
}

/** Connect through WHEP and wait for the first packet; a failure closes what was opened. */
export async function playWhep(url: string, opts: LightViewerOptions = {}): Promise<PlayingViewer> {
  const viewer = await LightViewer.whep(url, opts);
  await untilPlaying(viewer, () => viewer.close());
  return { viewer, end: () => viewer.close() };
}

/**
 * Answer a Janus streaming watch (Janus offers) and wait for the first packet; a failure closes
 * the viewer and detaches the handle. Structural, so this file does not depend on the Janus peer.
 */
export async function playJanusWatch(watch: { offerSdp: string; start(answerSdp: string): Promise<void>; detach(): Promise<void> }): Promise<PlayingViewer> {
  const { viewer, answerSdp } = await LightViewer.answer(watch.offerSdp);
  const end = async () => {
    await watch.detach();
    await viewer.close();
  };
  await untilPlaying(viewer, end, () => watch.start(answerSdp));
  return { viewer, end };
}

async function untilPlaying(viewer: LightViewer, end: () => Promise<void>, start?: () => Promise<void>): Promise<void> {
  try {
    await start?.();
    await viewer.connected;
    await viewer.firstPacket;
  } catch (err) {
    await end();
    throw err;
  }
}
