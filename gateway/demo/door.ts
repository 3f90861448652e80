/**
 * The built-in demo door station: an in-process SIP user agent that behaves like a real door
 * intercom towards the gateway, so the whole intercom flow works without hardware.
 *
 *  - registers with the gateway's registrar over UDP (digest), refreshes, answers keep-alives;
 *  - `ring()` calls in (INVITE with an SDP offer, digest when challenged) and resolves once
 *    the gateway rings its users (180); the call is answered in the browser, declined, or
 *    ends unanswered (480), as with any door;
 *  - answers a call from the gateway ("talk to the door") after ringing briefly;
 *  - in a call it plays a beeping tone and echoes what it hears (door-voice.ts), and reports
 *    the open-door digits it receives.
 *
 * Everything SIP is gateway/sip's own code seen from the other side: its parser, transaction
 * layer (retransmissions, timers), dialogs, SDP offer/answer, UDP sockets and call media (RTP
 * both ways, RFC 4733 events). Only the requests a door sends and the gateway never does are
 * built here (door-sip.ts).
 */
import { randomBytes } from "node:crypto";
import { SafeEmitter } from "../../config/events.ts";
import { ClosedError, UpstreamError, WrongStateError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { SipConfig } from "../../config/sections/sip.ts";
import type { MediaSink } from "../../sfu/types.ts";
import { writeRtpHeader } from "../../sfu/rtp/packet.ts";
import { realClock, type SipClock, type TimerHandle } from "../sip/clock.ts";
import { randomIds, type IdSource, type SipContext } from "../sip/context.ts";
import { Dialog } from "../sip/dialog.ts";
import { parseDtmfInfo } from "../sip/dtmf.ts";
import type { Endpoint } from "../sip/endpoint.ts";
import { CallMedia, MediaTicker, type MediaStats } from "../sip/media.ts";
import {
  callIdOf,
  contactsOf,
  contentType,
  cseqOf,
  fromOf,
  parseMessage,
  parseNameAddr,
  tagOf,
  toOf,
  type SipRequest,
  type SipResponse,
} from "../sip/message.ts";
import { RtpPortPool, type RtpPair } from "../sip/rtp-ports.ts";
import { answerOffer, createOffer, extractSdp, parseSdp, readAnswer, type AudioParams, type LocalMedia } from "../sip/sdp.ts";
import { TransactionLayer, type ServerTransaction } from "../sip/transaction.ts";
import { SipSockets } from "../sip/transport.ts";
import { DoorVoice, type HeardStats } from "./door-voice.ts";
import { DOOR_ALLOW, answerChallenge, cancelRequest, doorContact, inviteRequest, registerRequest, type DoorIdentity } from "./door-sip.ts";

export type DoorState =
  /** Not (or no longer) registered: cannot ring or be called. */
  | "offline"
  | "idle"
  /** The door called; the gateway rings its users. */
  | "ringing"
  /** The gateway called; the door rings before it answers. */
  | "incoming"
  | "in-call";

export interface DoorCallEnd {
  direction: "outgoing" | "incoming";
  /** `answered` calls end by BYE; others by the status that ended them. */
  answered: boolean;
  /** The final SIP status of an unanswered call (480 unanswered, 603 declined, 487 cancelled…). */
  status?: number;
  reason: "bye" | "hung-up" | "failed" | "cancelled" | "declined" | "unanswered" | "no-ack" | "closed";
}

export type DemoDoorEvents = {
  state: [state: DoorState];
  /** A call ended. */
  ended: [end: DoorCallEnd];
  /** A DTMF digit from the gateway (RFC 4733 or SIP INFO): the open-door signal. */
  dtmf: [digit: string];
};

export interface DemoDoorStats {
  state: DoorState;
  registered: boolean;
  /** Calls the door placed / answered. */
  calls: { outgoing: number; incoming: number };
  /** What the door heard in the current (or last) call. */
  heard: HeardStats;
  /** RTP of the current (or last) call. */
  media: Pick<MediaStats, "packetsIn" | "packetsOut"> | null;
  /** Open-door digits received. */
  digits: string;
}

export interface DemoDoorOptions {
  /** The gateway's SIP configuration (domain, timers, RTP port range). */
  sip: SipConfig;
  /** The gateway's SIP UDP listener. */
  registrar: { address: string; port: number };
  username: string;
  password: string;
  displayName: string;
  /** Milliseconds the door rings before it answers a call. Default 800. */
  answerAfterMs?: number;
  /** Registration lifetime asked for, seconds (the registrar may shorten it). Default 600. */
  expiresSeconds?: number;
  /** How long start() waits for the registration, ms. Default 10000. */
  registerTimeoutMs?: number;
  log: Logger;
  clock?: SipClock;
  ids?: IdSource;
}

interface Call {
  direction: "outgoing" | "incoming";
  callId: string;
  localTag: string;
  media: CallMedia;
  pair: RtpPair;
  local: LocalMedia;
  voice: DoorVoice | undefined;
  pacer: TimerHandle | undefined;
  dialog: Dialog | undefined;
  /** Outgoing: the INVITE in flight (for CANCEL) and the ACK of its 2xx (re-sent on retransmissions). */
  invite?: SipRequest;
  ack?: SipRequest;
  /** A provisional response arrived: a CANCEL may be sent (§9.1). */
  provisional?: boolean;
  cancelled?: boolean;
  /** Incoming: the INVITE's server transaction until the ACK. */
  inviteTx?: ServerTransaction;
  answerTimer?: TimerHandle;
  answered: boolean;
}

const FRAME_MS = 20;

export class DemoDoor {
  readonly events: SafeEmitter<DemoDoorEvents>;
  private readonly opts: DemoDoorOptions;
  private readonly log: Logger;
  private readonly clock: SipClock;
  private readonly ids: IdSource;
  private readonly sockets: SipSockets;
  private readonly layer: TransactionLayer;
  private readonly ctx: SipContext;
  private readonly id: DoorIdentity;
  private readonly gateway: Endpoint;
  private readonly ticker = new MediaTicker();
  private readonly rtpPorts: RtpPortPool;
  private st: DoorState = "offline";
  private call: Call | undefined;
  private lastHeard: HeardStats = { frames: 0, peak: 0, level: 0 };
  private lastMedia: MediaStats | undefined;
  private digits = "";
  private readonly counts = { outgoing: 0, incoming: 0 };
  private readonly registration = { callId: "", tag: "", cseq: 0, registered: false, timer: undefined as TimerHandle | undefined };
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(opts: DemoDoorOptions, sockets: SipSockets, ref: { door?: DemoDoor }) {
    this.opts = opts;
    this.log = opts.log;
    this.clock = opts.clock ?? realClock;
    this.ids = opts.ids ?? randomIds();
    this.sockets = sockets;
    this.events = new SafeEmitter((event, err) => this.log.error("demo door: listener threw", { event, err }));
    this.gateway = { transport: "udp", address: opts.registrar.address, port: opts.registrar.port };
    const address = opts.registrar.address;
    this.id = { username: opts.username, domain: opts.sip.domain, displayName: opts.displayName, address, port: sockets.boundPorts.udp! };
    this.layer = new TransactionLayer(
      {
        clock: this.clock,
        timers: { T1: opts.sip.timers.t1Ms, T2: opts.sip.timers.t2Ms, T4: opts.sip.timers.t4Ms },
        log: this.log,
        send: (data, to, onError) => sockets.send(data, to, onError),
      },
      { onRequest: (req, tx) => this.onRequest(req, tx) },
    );
    this.rtpPorts = new RtpPortPool({ range: opts.sip.rtpPortRange, bindAddress: address });
    this.ctx = {
      cfg: opts.sip,
      log: this.log,
      clock: this.clock,
      layer: this.layer,
      rtpPorts: this.rtpPorts,
      ticker: this.ticker,
      mediaAddress: address,
      sipAddress: address,
      listenPort: (t) => (t === "udp" ? this.id.port : undefined),
      flowOpen: () => false,
      ids: this.ids,
    };
    ref.door = this;
  }

  /** Bind the door's SIP socket and register; rejects (closing everything) if registration fails. */
  static async start(opts: DemoDoorOptions): Promise<DemoDoor> {
    const ref: { door?: DemoDoor } = {};
    const sockets = await SipSockets.listen({
      bindAddress: opts.registrar.address,
      udpPort: 0,
      log: opts.log,
      onMessage: (data, source) => ref.door?.onMessage(data, source),
    });
    const door = new DemoDoor(opts, sockets, ref);
    try {
      await door.register(opts.expiresSeconds ?? 600, opts.registerTimeoutMs ?? 10_000);
    } catch (err) {
      await door.close("registration failed");
      throw err;
    }
    return door;
  }

  get state(): DoorState {
    return this.st;
  }

  /** The door's AOR, `sip:<username>@<domain>`. */
  get aor(): string {
    return `sip:${this.id.username}@${this.id.domain}`;
  }

  stats(): DemoDoorStats {
    const m = this.call?.media.stats ?? this.lastMedia;
    return {
      state: this.st,
      registered: this.registration.registered,
      calls: { ...this.counts },
      heard: this.call?.voice?.heard ?? this.lastHeard,
      media: m ? { packetsIn: m.packetsIn, packetsOut: m.packetsOut } : null,
      digits: this.digits,
    };
  }

  // ---------------------------------------------------------------- registration

  private register(expires: number, timeoutMs: number): Promise<void> {
    const r = this.registration;
    if (!r.callId) {
      r.callId = this.ids.callId();
      r.tag = this.ids.tag();
    }
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const done = (err?: Error): void => {
        if (settled) return;
        settled = true;
        guard.cancel();
        if (err) reject(err);
        else resolve();
      };
      const guard = this.clock.setTimer(timeoutMs, () => done(new UpstreamError(`the gateway did not accept the registration within ${timeoutMs} ms`)));
      let authTries = 0;
      const send = (authorization?: string): void => {
        const req = registerRequest(this.id, { branch: this.ids.branch(), callId: r.callId, fromTag: r.tag, cseq: ++r.cseq, expires, authorization });
        this.layer.request(req, this.gateway, (res) => {
          if (res.status < 200) return;
          if ((res.status === 401 || res.status === 407) && authTries < 2 && !this.closed) {
            authTries++;
            const a = this.authorize(res, "REGISTER", req.uri);
            if (a) return send(a.value);
          }
          if (res.status >= 300) {
            this.setRegistered(false);
            done(new UpstreamError(`the gateway refused the registration: ${res.status} ${res.reason}`));
            return;
          }
          if (expires === 0) return done();
          const granted = grantedExpiry(res, this.id) ?? expires;
          this.setRegistered(true);
          r.timer?.cancel();
          // Refresh at half the granted lifetime (and retry a failed refresh the same way).
          r.timer = this.clock.setTimer(Math.max(5, granted / 2) * 1000, () => {
            this.register(expires, timeoutMs).catch((err: unknown) => this.log.warn("demo door: registration refresh failed", { err }));
          });
          done();
        });
      };
      send();
    });
  }

  private setRegistered(on: boolean): void {
    this.registration.registered = on;
    if (!on && this.st === "idle") this.setState("offline");
    if (on && this.st === "offline") this.setState("idle");
  }

  private authorize(res: SipResponse, method: string, uri: string) {
    return answerChallenge(res, {
      username: this.opts.username,
      password: this.opts.password,
      method,
      uri,
      cnonce: randomBytes(8).toString("hex"),
    });
  }

  // ---------------------------------------------------------------- the door rings

  /**
   * Call the gateway: resolves once it rings its users (180/183), rejects with WrongStateError
   * when the door is busy or not registered, UpstreamError when the gateway refuses the call.
   */
  async ring(): Promise<void> {
    if (this.closed) throw new ClosedError("the demo door is closed");
    if (this.st === "offline") throw new WrongStateError("the demo door is not registered");
    if (this.st !== "idle") throw new WrongStateError(`the demo door is busy (${this.st})`);
    const call = await this.newCall("outgoing", this.ids.callId(), this.ids.tag());
    this.counts.outgoing++;
    this.setState("ringing");
    const target = `sip:${this.id.domain}`;
    const sdp = createOffer(call.local);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      };
      let authTries = 0;
      let cseq = 0;
      const send = (authorization?: string): void => {
        const invite = inviteRequest(this.id, { branch: this.ids.branch(), callId: call.callId, fromTag: call.localTag, cseq: ++cseq, target, sdp, authorization });
        call.invite = invite;
        this.layer.request(invite, this.gateway, (res) => {
          if (this.call !== call) return;
          if (res.status < 200) {
            if (res.status === 180 || res.status === 183) settle();
            const first = !call.provisional;
            call.provisional = true;
            // The door hung up before any provisional response: cancel now that it may.
            if (first && call.cancelled) this.sendCancel(call);
            return;
          }
          if (res.status < 300) {
            this.outgoingAnswered(call, res);
            settle();
            return;
          }
          if ((res.status === 401 || res.status === 407) && authTries < 2 && !call.cancelled) {
            authTries++;
            const a = this.authorize(res, "INVITE", target);
            if (a) return send(a.value);
          }
          const reason: DoorCallEnd["reason"] =
            res.status === 487 ? "cancelled" : res.status === 480 || res.status === 408 ? "unanswered" : res.status === 603 || res.status === 486 ? "declined" : "failed";
          settle(new UpstreamError(`the gateway answered the door's call with ${res.status} ${res.reason}`));
          this.endCall(call, { direction: "outgoing", answered: false, status: res.status, reason });
        });
      };
      send();
    });
  }

  private outgoingAnswered(call: Call, res: SipResponse): void {
    if (call.ack) {
      // A retransmitted 2xx: its ACK went missing (§13.2.2.4).
      this.layer.sendStateless(call.ack, this.gateway);
      return;
    }
    const contact = contactsOf(res)?.[0]?.uri;
    const to = parseNameAddr(call.invite!.headers.get("to") ?? "");
    const dialog = new Dialog(this.ctx, {
      callId: call.callId,
      localTag: call.localTag,
      remoteTag: tagOf(toOf(res)),
      localUri: `<${this.aor}>`,
      remoteUri: `<${to?.uri ?? call.invite!.uri}>`,
      localSeq: cseqOf(call.invite!).seq,
      remoteSeq: undefined,
      remoteTarget: contact ?? call.invite!.uri,
      routeSet: [],
      dest: this.gateway,
    });
    call.dialog = dialog;
    call.ack = dialog.request("ACK", { cseq: cseqOf(call.invite!).seq });
    this.layer.sendStateless(call.ack, this.gateway);
    const audio = sdpAnswerOf(res);
    if (!audio || call.cancelled) {
      // Nothing we can play, or we gave up meanwhile: end the call properly.
      this.hangupCall(call);
      return;
    }
    this.startTalking(call, audio);
  }

  /** The door hangs up: CANCEL while it rings, BYE in a call, decline a call it has not answered. */
  hangup(): void {
    const call = this.call;
    if (!call) return;
    this.hangupCall(call);
  }

  private hangupCall(call: Call): void {
    if (call.direction === "outgoing" && !call.dialog) {
      if (call.cancelled) return;
      call.cancelled = true;
      if (call.provisional) this.sendCancel(call);
      return;
    }
    if (call.direction === "incoming" && !call.answered) {
      call.answerTimer?.cancel();
      if (call.inviteTx?.pending) call.inviteTx.reply(603, { toTag: call.localTag });
      this.endCall(call, { direction: "incoming", answered: false, status: 603, reason: "declined" });
      return;
    }
    if (call.dialog) {
      const bye = call.dialog.request("BYE");
      this.layer.request(bye, call.dialog.dest, () => {});
    }
    this.endCall(call, { direction: call.direction, answered: true, reason: "hung-up" });
  }

  /** §9.1: CANCEL the INVITE in flight; the call ends with its 487. */
  private sendCancel(call: Call): void {
    if (call.invite) this.layer.request(cancelRequest(call.invite), this.gateway, () => {});
  }

  // ---------------------------------------------------------------- the gateway calls

  private onMessage(data: Buffer, source: Endpoint): void {
    if (this.closed) return;
    const r = parseMessage(data, { datagram: true });
    if (r.kind === "request" || r.kind === "response") this.layer.receive(r.message, source);
    else if (r.kind === "reject") this.log.debug("demo door: malformed request", { reason: r.reason });
  }

  private onRequest(req: SipRequest, tx: ServerTransaction | undefined): void {
    const call = this.call && this.call.callId === callIdOf(req) ? this.call : undefined;
    if (!tx) {
      // The ACK of our 2xx (§13.3.1.4).
      if (req.method === "ACK" && call?.inviteTx) {
        call.inviteTx.ackReceived();
        call.inviteTx = undefined;
      }
      return;
    }
    switch (req.method) {
      case "OPTIONS":
        tx.reply(200, { headers: [["Allow", DOOR_ALLOW], ["Accept", "application/sdp"]] });
        return;
      case "INVITE":
        if (call && tagOf(toOf(req))) {
          // A re-INVITE in our call: accept the same media again.
          this.reanswer(call, req, tx);
          return;
        }
        void this.incomingInvite(req, tx);
        return;
      case "BYE":
        if (!call) {
          tx.reply(481);
          return;
        }
        tx.reply(200);
        this.endCall(call, { direction: call.direction, answered: call.answered, reason: "bye" });
        return;
      case "CANCEL": {
        const invite = this.layer.findInviteFor(req);
        if (!invite) {
          tx.reply(481);
          return;
        }
        tx.reply(200);
        if (call && invite.pending) {
          call.answerTimer?.cancel();
          invite.reply(487, { toTag: call.localTag });
          this.endCall(call, { direction: "incoming", answered: false, status: 487, reason: "cancelled" });
        }
        return;
      }
      case "INFO": {
        if (!call) {
          tx.reply(481);
          return;
        }
        const digit = parseDtmfInfo(contentType(req)?.type ?? "", req.body.toString("latin1"));
        tx.reply(200);
        if (digit) this.onDigit(digit);
        return;
      }
      default:
        tx.reply(405, { headers: [["Allow", DOOR_ALLOW]] });
    }
  }

  private async incomingInvite(req: SipRequest, tx: ServerTransaction): Promise<void> {
    const toTag = this.ids.tag();
    if (this.st !== "idle" || this.call) {
      tx.reply(486, { toTag });
      return;
    }
    let call: Call;
    try {
      call = await this.newCall("incoming", callIdOf(req), toTag);
    } catch (err) {
      this.log.warn("demo door: no RTP ports for a call", { err });
      tx.reply(503, { toTag });
      return;
    }
    const answer = readOffer(req, call.local);
    if (!answer) {
      tx.reply(488, { toTag });
      this.endCall(call, { direction: "incoming", answered: false, status: 488, reason: "failed" });
      return;
    }
    if (!tx.pending) {
      // Cancelled while the ports were bound.
      this.endCall(call, { direction: "incoming", answered: false, status: 487, reason: "cancelled" });
      return;
    }
    this.counts.incoming++;
    call.inviteTx = tx;
    const from = fromOf(req);
    const to = parseNameAddr(req.headers.get("to") ?? "");
    call.dialog = new Dialog(this.ctx, {
      callId: call.callId,
      localTag: toTag,
      remoteTag: tagOf(from),
      localUri: `<${to?.uri ?? this.aor}>`,
      remoteUri: `<${from?.uri ?? req.uri}>`,
      localSeq: Math.floor(Math.random() * 10_000),
      remoteSeq: cseqOf(req).seq,
      remoteTarget: contactsOf(req)?.[0]?.uri ?? from?.uri ?? req.uri,
      routeSet: [],
      dest: this.gateway,
    });
    this.setState("incoming");
    tx.reply(180, { toTag, headers: [["Contact", doorContact(this.id)]] });
    call.answerTimer = this.clock.setTimer(this.opts.answerAfterMs ?? 800, () => {
      if (this.call !== call || !tx.pending) return;
      tx.onNoAck = () => {
        this.log.warn("demo door: the gateway never acknowledged the answer");
        this.hangupCall(call);
      };
      tx.reply(200, {
        toTag,
        headers: [["Contact", doorContact(this.id)], ["Allow", DOOR_ALLOW]],
        body: Buffer.from(answer.sdp, "latin1"),
        contentType: "application/sdp",
      });
      this.startTalking(call, answer.audio);
    });
  }

  private reanswer(call: Call, req: SipRequest, tx: ServerTransaction): void {
    const answer = readOffer(req, { ...call.local, version: call.local.version + 1 });
    if (!answer) {
      tx.reply(488);
      return;
    }
    call.local = { ...call.local, version: call.local.version + 1 };
    tx.reply(200, { headers: [["Contact", doorContact(this.id)]], body: Buffer.from(answer.sdp, "latin1"), contentType: "application/sdp" });
    call.media.configure(answer.audio, [this.gateway.address]);
  }

  // ---------------------------------------------------------------- media

  private async newCall(direction: Call["direction"], callId: string, localTag: string): Promise<Call> {
    const pair = await this.rtpPorts.allocate();
    const media = new CallMedia({ pair, allowedSources: [this.gateway.address], log: this.log, ticker: this.ticker, now: () => this.clock.now() });
    const call: Call = {
      direction,
      callId,
      localTag,
      media,
      pair,
      local: { address: this.id.address, rtpPort: pair.rtpPort, rtcpPort: pair.rtcpPort, sessionId: String(Date.now()), version: 1 },
      voice: undefined,
      pacer: undefined,
      dialog: undefined,
      answered: false,
    };
    if (this.closed) {
      media.close("door closed");
      throw new ClosedError("the demo door is closed");
    }
    this.call = call;
    media.events.on("dtmf", (d) => this.onDigit(d));
    return call;
  }

  /** Media agreed: hear the call, and every 20 ms send the tone mixed with the echo. */
  private startTalking(call: Call, audio: AudioParams): void {
    call.answered = true;
    const voice = new DoorVoice({ codec: audio.codec });
    call.voice = voice;
    const sink: MediaSink = {
      setTracks: () => {},
      pushRtp: (_track, packet) => {
        const cc = packet[0]! & 0x0f;
        const offset = 12 + 4 * cc;
        if (packet.length > offset) voice.hear(packet.subarray(offset));
      },
      pushRtcp: () => {},
      upstreamDown: () => {},
    };
    call.media.configure(audio, [this.gateway.address]);
    call.media.setSink(sink);
    call.media.start();
    const packet = Buffer.alloc(12 + 160);
    const header = { marker: true, payloadType: audio.payloadType, sequenceNumber: 0, timestamp: 0, ssrc: 0x0d0012 };
    const start = this.clock.now();
    let n = 0;
    const tick = (): void => {
      if (this.call !== call) return;
      // Catch up after a stall without a burst: skip the frames that are already late.
      const due = Math.floor((this.clock.now() - start) / FRAME_MS);
      if (due - n > 10) n = due;
      header.sequenceNumber = n & 0xffff;
      header.timestamp = (n * 160) >>> 0;
      writeRtpHeader(packet, header);
      voice.next().copy(packet, 12);
      call.media.sendRtp(packet);
      header.marker = false;
      n++;
      call.pacer = this.clock.setTimer(Math.max(0, start + n * FRAME_MS - this.clock.now()), tick);
    };
    tick();
    this.setState("in-call");
  }

  private onDigit(digit: string): void {
    this.digits = (this.digits + digit).slice(-32);
    this.log.info("demo door: digit received", { digit });
    this.events.emit("dtmf", digit);
  }

  private endCall(call: Call, end: DoorCallEnd): void {
    if (this.call !== call) return;
    this.call = undefined;
    call.answerTimer?.cancel();
    call.pacer?.cancel();
    if (call.voice) this.lastHeard = call.voice.heard;
    this.lastMedia = { ...call.media.stats };
    call.media.close(`demo door: ${end.reason}`);
    this.setState(this.registration.registered ? "idle" : "offline");
    this.log.info("demo door: call ended", { ...end });
    this.events.emit("ended", end);
  }

  private setState(s: DoorState): void {
    if (this.st === s) return;
    this.st = s;
    this.events.emit("state", s);
  }

  /** Hang up, unregister (briefly waiting for the answer), close sockets. Idempotent. */
  close(reason = "closed"): Promise<void> {
    this.closing ??= this.shutdown(reason);
    return this.closing;
  }

  private async shutdown(reason: string): Promise<void> {
    const call = this.call;
    if (call) this.hangupCall(call);
    if (this.call) this.endCall(this.call, { direction: this.call.direction, answered: this.call.answered, reason: "closed" });
    this.registration.timer?.cancel();
    if (this.registration.registered) {
      await this.register(0, 500).catch(() => {});
      this.registration.registered = false;
    }
    this.closed = true;
    this.layer.close();
    this.ticker.close();
    await this.sockets.close();
    this.st = "offline";
    this.log.debug("demo door closed", { reason });
    this.events.removeAllListeners();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close("disposed");
  }
}

/** The registrar's granted lifetime for our contact (its `expires` parameter, else Expires). */
function grantedExpiry(res: SipResponse, id: DoorIdentity): number | undefined {
  for (const c of contactsOf(res) ?? []) {
    if (!c.uri.includes(`@${id.address}:${id.port}`)) continue;
    const e = Number(c.params.get("expires"));
    if (Number.isFinite(e) && e > 0) return e;
  }
  const h = Number(res.headers.get("expires"));
  return Number.isFinite(h) && h > 0 ? h : undefined;
}

function readOffer(req: SipRequest, local: LocalMedia): { sdp: string; audio: AudioParams } | undefined {
  const ct = contentType(req);
  const text = extractSdp(ct?.type, ct?.params.get("boundary") ?? undefined, req.body);
  if (!text) return undefined;
  try {
    const a = answerOffer(parseSdp(text), local);
    return a.ok ? { sdp: a.sdp, audio: a.audio } : undefined;
  } catch {
    return undefined;
  }
}

function sdpAnswerOf(res: SipResponse): AudioParams | undefined {
  const ct = contentType(res);
  const text = extractSdp(ct?.type, ct?.params.get("boundary") ?? undefined, res.body);
  if (!text) return undefined;
  try {
    const a = readAnswer(parseSdp(text));
    return a.ok ? a.audio : undefined;
  } catch {
    return undefined;
  }
}
