/**
 * One browser's two-way audio for one intercom call: a 1:1 werift RTCPeerConnection with a
 * single sendrecv audio m-section in the door's G.711 codec. Not the SFU: nothing fans out,
 * and the browser sends media back.
 *
 *   door RTP ──(SIP call's MediaSink = this)──► re-stamped ──► werift sender ──SRTP──► browser
 *   browser mic ──SRTP──► werift receiver ──► uplink (the SIP call's sendRtp, re-stamped there)
 *
 * No transcoding: the browser is offered exactly the door's codec (PCMU or PCMA), so bytes
 * pass through. Audio is 50 packets/s each way, so werift's own send path is good enough
 * (the SFU's owned SRTP path exists for video fan-out rates).
 *
 * ICE ports: werift probes a port range from its low end and binds later, so two werift
 * negotiations at once can pick the same port (sfu/werift-peer.ts serialises its own). Talk
 * peers therefore negotiate one at a time among themselves and take their ports from the top
 * of the media range, far from where the SFU's viewers start, falling back to the whole range.
 */
import {
  type RTCPeerConnection,
  MediaStreamTrack,
  RTCRtpCodecParameters,
  type RTCRtpTransceiver,
  type RtpPacket,
} from "werift";
import { randomInt } from "node:crypto";
import dgram from "node:dgram";
import { BadInputError, OverloadError } from "../../config/errors.ts";
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import { createPeerConnection } from "../../sfu/peer-connection.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import type { EndReason as CallEndReason } from "../sip/call.ts";
import { RtpRestamper, type RestampOut, type RestamperStats } from "./restamp.ts";
import { announceAddress, readAudioOffer, type G711Codec } from "./sdp.ts";

/** An ICE server for werift's own gathering (rarely needed: the gateway is the reachable side). */
export interface TalkIceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface TalkPeerOptions {
  /** The browser's SDP offer (one audio m-section, microphone attached or recvonly). */
  offerSdp: string;
  /** The door's codec (the SIP call's audioTrack): the only one offered to the browser. */
  codec: G711Codec;
  /** Address the ICE socket binds ("0.0.0.0"/"::" gathers every interface). */
  bindAddress: string;
  /** Inclusive UDP range for the ICE socket (config.media.icePortRange). */
  icePortRange: readonly [number, number];
  /** Address written into host candidates instead of the bound one (1:1 NAT). */
  announcedAddress?: string | undefined;
  /** werift's own ICE servers. Default none. */
  iceServers?: TalkIceServer[];
  /** Offer applied and candidates gathered within this, ms. Default 10000. */
  negotiationTimeoutMs?: number;
  /** Not connected this long after the answer: state "failed", ms. Default 15000. */
  connectTimeoutMs?: number;
  /** "disconnected" this long: state "failed", ms. Default 10000. */
  disconnectGraceMs?: number;
  log: Logger;
  /** Monotonic ms. Default performance.now. */
  now?: () => number;
}

/** Why a talk peer was closed, besides its call ending (`call ended: <the call's end reason>`). */
export const TalkPeerCloseReasons = {
  /** The browser's answer could not be applied. */
  answerRefused: "answer refused",
  /** The call could not be set up with the browser's audio. */
  setupFailed: "call setup failed",
  /** The intercom service is shutting down. */
  closing: "intercom closing",
} as const;
export type TalkPeerCloseReason = (typeof TalkPeerCloseReasons)[keyof typeof TalkPeerCloseReasons] | `call ended: ${CallEndReason}`;

export type TalkPeerState = "connecting" | "connected" | "disconnected" | "failed" | "closed";

export type TalkPeerEvents = {
  state: [state: TalkPeerState, detail: string | undefined];
  /** Once, whatever closed it. */
  closed: [reason: TalkPeerCloseReason];
};

export interface TalkPeerStats {
  state: TalkPeerState;
  codec: G711Codec;
  /** Payload type negotiated with the browser. */
  payloadType: number;
  /** ms from creation to connected, once connected. */
  connectMs: number | undefined;
  toBrowser: { packets: number; bytes: number } & RestamperStats;
  fromBrowser: { packets: number; bytes: number };
  dropped: {
    /** Door packets while the door's codec differs from the negotiated one (offerless INVITE answered with another codec). */
    codecMismatch: number;
    /** Door packets that were not valid RTP. */
    malformed: number;
    /** Browser packets of another payload type (comfort noise, DTMF: not negotiated, so rare). */
    payloadType: number;
    /** Door packets before the browser was connected. */
    notConnected: number;
  };
  rtcpFromDoor: number;
}

/** Ports at the top of the media range reserved in practice for talk peers (see the file comment). */
const TOP_BLOCK = 64;

let negotiationChain: Promise<unknown> = Promise.resolve();
/** One werift negotiation at a time among talk peers, each bounded in time. */
function serialized<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const run = negotiationChain.then(() => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new OverloadError(`talk negotiation took longer than ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([fn(), timeout]).finally(() => clearTimeout(timer));
  });
  negotiationChain = run.catch(() => {});
  return run;
}

/**
 * The ICE port range for the next talk peer: from the highest free port of the top
 * TOP_BLOCK ports of `range` (probed by binding it) to the top; the whole range when that
 * block is full. `address` undefined probes the wildcard address.
 */
export async function talkPortRange(range: readonly [number, number], address: string | undefined, v6 = false): Promise<[number, number]> {
  const floor = Math.max(range[0], range[1] - TOP_BLOCK + 1);
  for (let p = range[1]; p >= floor; p--) {
    // werift refuses a range of one port: start one below when the free port is the top one.
    if (await portFree(p, address, v6)) return address === undefined ? [floor, range[1]] : [Math.max(range[0], Math.min(p, range[1] - 1)), range[1]];
  }
  return [range[0], range[1]];
}

function portFree(port: number, address: string | undefined, v6: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(v6 ? "udp6" : "udp4");
    s.once("error", () => {
      try {
        s.close();
      } catch {
        // never bound: nothing to close
      }
      resolve(false);
    });
    s.bind({ port, address, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

const WILDCARD = new Set(["0.0.0.0", "::", ""]);

export class TalkPeer implements MediaSink {
  readonly events: SafeEmitter<TalkPeerEvents>;
  readonly answerSdp: string;
  readonly codec: G711Codec;
  readonly payloadType: number;
  private readonly pc: RTCPeerConnection;
  private readonly transceiver: RTCRtpTransceiver;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly createdAt: number;
  private readonly restamper = new RtpRestamper({ initialSeq: randomInt(0, 0x10000), initialTs: randomInt(0, 0x7fffffff) });
  private readonly stamp: RestampOut = { sequenceNumber: 0, timestamp: 0, marker: false };
  private readonly connectTimeoutMs: number;
  private readonly disconnectGraceMs: number;
  private st: TalkPeerState = "connecting";
  private connectMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The door's current track, from setTracks. */
  private upstream: TrackSpec | undefined;
  private uplink: ((packet: Buffer) => void) | null = null;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly counters = {
    toBrowser: { packets: 0, bytes: 0 },
    fromBrowser: { packets: 0, bytes: 0 },
    dropped: { codecMismatch: 0, malformed: 0, payloadType: 0, notConnected: 0 },
    rtcpFromDoor: 0,
  };

  private constructor(init: {
    pc: RTCPeerConnection;
    transceiver: RTCRtpTransceiver;
    answerSdp: string;
    codec: G711Codec;
    payloadType: number;
    opts: TalkPeerOptions;
  }) {
    this.pc = init.pc;
    this.transceiver = init.transceiver;
    this.answerSdp = init.answerSdp;
    this.codec = init.codec;
    this.payloadType = init.payloadType;
    this.log = init.opts.log;
    this.now = init.opts.now ?? (() => performance.now());
    this.createdAt = this.now();
    this.connectTimeoutMs = init.opts.connectTimeoutMs ?? 15_000;
    this.disconnectGraceMs = init.opts.disconnectGraceMs ?? 10_000;
    this.events = new SafeEmitter((event, err) => this.log.error("talk peer: listener threw", { event, err }));
  }

  /**
   * Apply the browser's offer and answer it. Throws BadInputError when the offer has no
   * audio or not the door's codec (→ 400), OverloadError when negotiation times out.
   */
  static async create(opts: TalkPeerOptions): Promise<TalkPeer> {
    const offer = readAudioOffer(opts.offerSdp);
    if (!offer) throw new BadInputError("the offer has no audio section");
    const pt = offer.payloadTypes.get(opts.codec);
    if (pt === undefined) throw new BadInputError(`the offer lacks ${opts.codec}/8000, the door's codec`);
    const codec = new RTCRtpCodecParameters({ mimeType: `audio/${opts.codec}`, clockRate: 8000, channels: 1, payloadType: pt, rtcpFeedback: [] });
    const timeoutMs = opts.negotiationTimeoutMs ?? 10_000;

    const wildcard = WILDCARD.has(opts.bindAddress);
    const v6 = opts.bindAddress.includes(":");
    const made = await serialized(async () => {
      const range = await talkPortRange(opts.icePortRange, wildcard ? undefined : opts.bindAddress, v6);
      const pc = createPeerConnection({
        iceServers: opts.iceServers ?? [],
        icePortRange: range,
        // As the SFU: with a fixed bind address, advertise exactly that one (werift skips loopback otherwise).
        iceUseIpv4: wildcard && !v6,
        iceUseIpv6: wildcard && v6,
        iceAdditionalHostAddresses: wildcard ? undefined : [opts.bindAddress],
        iceInterfaceAddresses: wildcard ? undefined : v6 ? { udp6: opts.bindAddress } : { udp4: opts.bindAddress },
        codecs: { audio: [codec], video: [] },
        headerExtensions: { audio: [], video: [] },
        bundlePolicy: "max-bundle",
      });
      try {
        // The track carries the codec, so werift answers exactly this payload type.
        const transceiver = pc.addTransceiver(new MediaStreamTrack({ kind: "audio", codec }), { direction: "sendrecv" });
        try {
          await pc.setRemoteDescription({ type: "offer", sdp: opts.offerSdp });
        } catch (err) {
          // What werift says is for our logs, not for the browser.
          opts.log.debug("werift refused a talk offer", { err });
          throw new BadInputError("offer refused by the WebRTC stack", { cause: err });
        }
        // RFC 5763 §5: passive (DTLS server) answers the browser's ClientHello at once.
        for (const t of pc.dtlsTransports) t.role = "server";
        await pc.setLocalDescription(await pc.createAnswer());
        const local = pc.localDescription;
        if (!local) throw new OverloadError("werift produced no answer");
        const negotiated = transceiver.codecs.find((c) => c.name.toUpperCase() === opts.codec)?.payloadType;
        if (negotiated !== pt) throw new BadInputError(`no common audio codec (negotiated ${negotiated ?? "none"})`);
        return { pc, transceiver, sdp: opts.announcedAddress ? announceAddress(local.sdp, opts.announcedAddress) : local.sdp };
      } catch (err) {
        await pc.close().catch(() => {});
        throw err;
      }
    }, timeoutMs);
    const peer = new TalkPeer({ pc: made.pc, transceiver: made.transceiver, answerSdp: made.sdp, codec: opts.codec, payloadType: pt, opts });
    peer.wire();
    return peer;
  }

  private wire(): void {
    this.pc.connectionStateChange.subscribe((s) => {
      if (s === "connected") this.setState("connected");
      else if (s === "disconnected") this.setState("disconnected", "ice disconnected");
      else if (s === "failed") this.setState("failed", "ice/dtls failed");
      else if (s === "closed") this.setState("closed");
    });
    this.pc.iceConnectionStateChange.subscribe((s) => {
      // werift leaves connectionState at "disconnected" when ICE recovers: follow ICE.
      if ((s === "connected" || s === "completed") && this.st === "disconnected") this.setState("connected", "ice recovered");
      else if (s === "failed") this.setState("failed", "ice failed");
    });
    // werift creates the remote track while applying the offer (a=ssrc), before this runs;
    // a track announced later (re-offer) arrives through onTrack.
    const listened = new WeakSet<MediaStreamTrack>();
    const listen = (track: MediaStreamTrack) => {
      if (listened.has(track)) return;
      listened.add(track);
      track.onReceiveRtp.subscribe((rtp) => this.fromBrowser(rtp));
    };
    for (const t of this.transceiver.receiver.tracks) listen(t);
    this.transceiver.onTrack.subscribe(listen);
    this.arm(this.connectTimeoutMs, "not connected in time");
  }

  get state(): TalkPeerState {
    return this.st;
  }

  /** Where the browser's microphone goes (the SIP call's sendRtp); null stops it. */
  setUplink(fn: ((packet: Buffer) => void) | null): void {
    this.uplink = fn;
  }

  // ---------------------------------------------------------------- MediaSink (the door's audio)

  setTracks(tracks: readonly TrackSpec[]): void {
    this.upstream = tracks.find((t) => t.kind === "audio");
    if (this.upstream && this.upstream.codec !== this.codec) {
      this.log.warn("talk peer: the door's codec differs from the browser's; its audio is dropped", { door: this.upstream.codec, browser: this.codec });
    }
    this.restamper.resync();
  }

  pushRtp(track: number, packet: Buffer): void {
    const up = this.upstream;
    if (this.closed || track !== 0 || !up) return;
    if (up.codec !== this.codec) {
      this.counters.dropped.codecMismatch++;
      return;
    }
    if (this.st !== "connected") {
      this.counters.dropped.notConnected++;
      return;
    }
    if (packet.length < 12 || packet[0]! >> 6 !== 2) {
      this.counters.dropped.malformed++;
      return;
    }
    const cc = packet[0]! & 0x0f;
    let off = 12 + 4 * cc;
    if (packet[0]! & 0x10) {
      if (packet.length < off + 4) {
        this.counters.dropped.malformed++;
        return;
      }
      off += 4 + 4 * packet.readUInt16BE(off + 2);
    }
    let end = packet.length;
    if (packet[0]! & 0x20) end -= packet[packet.length - 1]!;
    if (off >= end || (packet[1]! & 0x7f) !== up.payloadType) {
      this.counters.dropped.malformed++;
      return;
    }
    const s = this.stamp;
    if (!this.restamper.map(packet.readUInt16BE(2), packet.readUInt32BE(4), packet.readUInt32BE(8), this.now(), s)) return;
    // werift keeps sent packets for NACK answers: a fresh buffer each (50 packets/s).
    const out = Buffer.allocUnsafe(12 + end - off);
    out[0] = 0x80;
    out[1] = (s.marker ? 0x80 : 0) | this.payloadType;
    out.writeUInt16BE(s.sequenceNumber, 2);
    out.writeUInt32BE(s.timestamp, 4);
    out.writeUInt32BE(this.transceiver.sender.ssrc >>> 0, 8);
    packet.copy(out, 12, off, end);
    this.counters.toBrowser.packets++;
    this.counters.toBrowser.bytes += out.length;
    void this.transceiver.sender.sendRtp(out).catch(() => {});
  }

  pushRtcp(): void {
    // The door's reports describe its leg; werift reports on ours to the browser.
    this.counters.rtcpFromDoor++;
  }

  upstreamDown(reason: string): void {
    this.log.debug("talk peer: door audio stopped", { reason });
    this.restamper.resync();
  }

  // ---------------------------------------------------------------- browser → door

  private fromBrowser(rtp: RtpPacket): void {
    if (this.closed) return;
    if (rtp.header.payloadType !== this.payloadType) {
      this.counters.dropped.payloadType++;
      return;
    }
    this.counters.fromBrowser.packets++;
    this.counters.fromBrowser.bytes += 12 + rtp.payload.length;
    this.uplink?.(rtp.serialize());
  }

  // ---------------------------------------------------------------- lifecycle

  stats(): TalkPeerStats {
    return {
      state: this.st,
      codec: this.codec,
      payloadType: this.payloadType,
      connectMs: this.connectMs,
      toBrowser: { ...this.counters.toBrowser, ...this.restamper.stats },
      fromBrowser: { ...this.counters.fromBrowser },
      dropped: { ...this.counters.dropped },
      rtcpFromDoor: this.counters.rtcpFromDoor,
    };
  }

  /** Close the connection (DTLS close_notify to the browser). Idempotent. */
  /** Closes the browser connection once; every caller gets the same promise. */
  close(reason: TalkPeerCloseReason): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.disarm();
    this.uplink = null;
    this.setStateForce("closed", reason);
    this.events.emit("closed", reason);
    this.events.removeAllListeners();
    this.closing = this.pc.close().catch(() => {});
    return this.closing;
  }

  private setState(s: TalkPeerState, detail?: string): void {
    if (this.closed || this.st === s || this.st === "failed") return;
    this.setStateForce(s, detail);
    if (s === "connected") {
      this.connectMs ??= Math.round(this.now() - this.createdAt);
      this.disarm();
    } else if (s === "disconnected") this.arm(this.disconnectGraceMs, "connection lost");
    else if (s === "failed") this.disarm();
  }

  private setStateForce(s: TalkPeerState, detail?: string): void {
    if (this.st === s) return;
    this.st = s;
    this.log.debug("talk peer: state", { state: s, detail });
    this.events.emit("state", s, detail);
  }

  private arm(ms: number, why: string): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.setState("failed", why);
    }, ms);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
