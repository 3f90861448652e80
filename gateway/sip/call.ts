/**
 * One intercom call: its dialog (RFC 3261 §12–§15), its media (media.ts), DTMF, the RFC 4028
 * session timer, and every way it can end. Incoming calls (the door rings us) and outgoing
 * calls ("talk to the door") share this class; `direction` says which side sent the INVITE.
 *
 * Ending a call is one idempotent path (`end`): stop timers, answer or cancel whatever SIP
 * transaction is pending, close media, emit `ended` once.
 */
import { SafeEmitter } from "../../config/events.ts";
import { WrongStateError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import type { TimerHandle } from "./clock.ts";
import { ALLOW, SUPPORTED, ourContact, ourVia, type SipContext } from "./context.ts";
import type { Device } from "./devices.ts";
import { Dialog } from "./dialog.ts";
import { dtmfRelayBody, parseDtmfInfo } from "./dtmf.ts";
import type { Endpoint } from "./endpoint.ts";
import type { CallMedia, MediaStats } from "./media.ts";
import {
  contactsOf,
  contentType,
  cseqOf,
  parseNameAddr,
  tagOf,
  toOf,
  SipHeaders,
  type SipRequest,
  type SipResponse,
} from "./message.ts";
import { answerOffer, createOffer, extractSdp, parseSdp, readAnswer, type AudioParams, type LocalMedia } from "./sdp.ts";
import { SessionTimer, parseSessionExpires, uasSessionTimer } from "./session-timer.ts";
import type { ClientTransaction, ServerTransaction } from "./transaction.ts";
import type { Brand } from "../../config/ids.ts";

export type CallId = Brand<string, "SipCallId">;

export type CallState = "ringing" | "calling" | "answered" | "ended";

export type EndReason =
  /** Incoming call not answered within the ring timeout (480). */
  | "missed"
  /** Declined by a user (603), or by the device for an outgoing call. */
  | "rejected"
  /** The caller cancelled before answer (CANCEL → 487), or we cancelled an outgoing call. */
  | "cancelled"
  | "remote-bye"
  | "local-bye"
  /** Answered by the gateway itself to send the open-door digits, then hung up (BYE). */
  | "door-opened"
  /** Our 2xx was never acknowledged. */
  | "no-ack"
  /** RFC 4028: no refresh in time, or our refresh failed. */
  | "session-expired"
  /** The device was busy (486/600). */
  | "busy"
  /** The device did not answer an outgoing call in time. */
  | "no-answer"
  /** Signalling failure (timeout, transport error, 4xx–6xx not listed above). */
  | "failed"
  | "shutdown";

export interface CallEnd {
  readonly reason: EndReason;
  /** SIP status that ended it, when one did. */
  readonly status?: number;
}

export type CallEvents = {
  state: [state: CallState];
  /** The door acknowledged our 200 OK (RFC 3261 §13.3.1.4): the dialog is confirmed, its media known. */
  confirmed: [];
  /** A DTMF digit from the device (RFC 4733 or INFO). */
  dtmf: [digit: string];
  ended: [end: CallEnd];
};

/** The application's handle on a call. */
export interface SipCall {
  readonly id: CallId;
  readonly device: Device;
  readonly direction: "incoming" | "outgoing";
  readonly state: CallState;
  /** Caller identity as presented (display name or URI user). */
  readonly from: string;
  /** Wall-clock ms. */
  readonly startedAt: number;
  readonly answeredAt: number | undefined;
  readonly answeredBy: string | undefined;
  readonly events: SafeEmitter<CallEvents>;
  /** The door's audio track as pushed into the sink (G.711, track index 0). */
  readonly audioTrack: TrackSpec | undefined;
  /** Attach where the door's RTP goes (the SFU source); null detaches. */
  setSink(sink: MediaSink | null): void;
  /** Audio back to the door: an RTP packet in the negotiated codec (see audioTrack.payloadType). */
  sendRtp(packet: Buffer): void;
  /** Send DTMF to the door with the device's configured method; resolves with the method used, once sent. */
  sendDtmf(digits: string): Promise<"rfc4733" | "info">;
  /** Send the device's configured open-door digits (as sendDtmf). */
  openDoor(): Promise<"rfc4733" | "info">;
  /**
   * Resolves once an answered incoming call is confirmed by the door's ACK (at once for an
   * outgoing call that was answered); rejects with WrongStateError if the call ends first.
   */
  confirmed(): Promise<void>;
  /** Hang up (BYE), decline (603) while ringing, or cancel an outgoing call. `reason` names an answered call's end. */
  hangup(reason?: "local-bye" | "door-opened"): void;
  mediaStats(): MediaStats;
}

export interface CallInit {
  ctx: SipContext;
  id: CallId;
  device: Device;
  media: CallMedia;
  log: Logger;
}

export class Call implements SipCall {
  readonly id: CallId;
  readonly device: Device;
  readonly direction: "incoming" | "outgoing";
  readonly events: SafeEmitter<CallEvents>;
  readonly startedAt: number;
  from = "";
  answeredAt: number | undefined;
  answeredBy: string | undefined;
  dialog!: Dialog;
  private st: CallState;
  private readonly ctx: SipContext;
  private readonly log: Logger;
  private readonly media: CallMedia;
  private local: LocalMedia;
  private localSdp = "";
  private ringTimer: TimerHandle | undefined;
  private readonly sessionTimer: SessionTimer;
  // Incoming: the INVITE transaction; the pending re-INVITE/UPDATE server transaction.
  private inviteTx: ServerTransaction | undefined;
  private reinviteTx: ServerTransaction | undefined;
  private awaitingAckAnswer = false;
  private sessionHeaders: [string, string][] = [];
  // Outgoing: our INVITE client transaction and request.
  private inviteClient: ClientTransaction | undefined;
  private inviteReq: SipRequest | undefined;
  private cancelPending = false;
  private ownReinvite: ClientTransaction | undefined;
  private ackFor2xx: SipRequest | undefined;
  private endInfo: CallEnd | undefined;
  private pendingTimer: { interval: number; weRefresh: boolean } | undefined;
  private endReasonWanted: EndReason | undefined;
  private cancelSent = false;
  private isConfirmed = false;

  constructor(init: CallInit, direction: "incoming" | "outgoing") {
    this.ctx = init.ctx;
    this.id = init.id;
    this.device = init.device;
    this.media = init.media;
    this.log = init.log;
    this.direction = direction;
    this.startedAt = init.ctx.clock.wallNow();
    this.st = direction === "incoming" ? "ringing" : "calling";
    this.events = new SafeEmitter((event, err) => this.log.error("sip call: listener threw", { event, err }));
    this.sessionTimer = new SessionTimer(init.ctx.clock, () => this.refreshSession(), () => this.hangupWith("session-expired"));
    this.local = {
      address: init.ctx.mediaAddress,
      rtpPort: init.media.localRtpPort,
      rtcpPort: init.media.localRtcpPort,
      sessionId: String(Math.floor(init.ctx.clock.wallNow() / 1000)),
      version: 1,
    };
    this.media.events.on("dtmf", (d) => this.events.emit("dtmf", d));
  }

  get state(): CallState {
    return this.st;
  }

  get ended(): CallEnd | undefined {
    return this.endInfo;
  }

  get audioTrack(): TrackSpec | undefined {
    return this.media.track();
  }

  get audio(): AudioParams | undefined {
    return this.media.params;
  }

  setSink(sink: MediaSink | null): void {
    this.media.setSink(sink);
  }

  sendRtp(packet: Buffer): void {
    if (this.st === "answered") this.media.sendRtp(packet);
  }

  mediaStats(): MediaStats {
    return this.media.stats;
  }

  private setState(s: CallState): void {
    if (this.st === s) return;
    this.st = s;
    this.events.emit("state", s);
  }

  // ------------------------------------------------------------------ incoming

  /**
   * Take an INVITE (already authorised): negotiate media, send 180 (or 183 with SDP for
   * early media) and start the ring timer. Returns false when the call was refused here
   * (the INVITE got its final response).
   */
  acceptInvite(req: SipRequest, tx: ServerTransaction, source: Endpoint, dest: Endpoint): boolean {
    this.inviteTx = tx;
    const from = parseNameAddr(req.headers.get("from") ?? "");
    const to = toOf(req);
    this.from = from?.display || from?.uri || "";
    const contact = contactsOf(req)?.[0];
    const rr = req.headers.getList("record-route");
    this.dialog = new Dialog(this.ctx, {
      callId: (req.headers.get("call-id") ?? "").trim(),
      localTag: this.ctx.ids.tag(),
      remoteTag: tagOf(from),
      localUri: `<${to?.uri ?? "sip:gatehouse"}>`,
      remoteUri: from?.display !== undefined ? `"${from.display.replace(/["\\]/g, "\\$&")}" <${from.uri}>` : `<${from?.uri ?? ""}>`,
      localSeq: 0,
      remoteSeq: cseqOf(req).seq,
      remoteTarget: contact && !contact.star ? contact.uri : from?.uri ?? "",
      routeSet: rr,
      dest,
    });

    // RFC 4028 §9: session timer, or 422 when the interval is too small.
    const st = uasSessionTimer(req, this.ctx.cfg.minSessionExpires);
    if (st?.status === 422) {
      this.finalIncoming(422, { headers: [["Min-SE", String(st.minSe)]] });
      this.end({ reason: "failed", status: 422 });
      return false;
    }
    if (st?.status === 200) {
      this.sessionHeaders = [["Session-Expires", `${st.se.interval};refresher=${st.se.refresher}`]];
      if (st.require) this.sessionHeaders.push(["Require", "timer"]);
      this.pendingTimer = { interval: st.se.interval, weRefresh: st.se.refresher === "uas" };
    }

    // §13.3.1: the offer is in the INVITE, or (offerless) we offer in the 2xx and read the answer in the ACK.
    const media = this.readOffer(req);
    if (media === "unsupported-type") {
      this.finalIncoming(415, { headers: [["Accept", "application/sdp"]] });
      this.end({ reason: "failed", status: 415 });
      return false;
    }
    if (media === "not-acceptable") {
      // RFC 4475 §3.3.15: the caller will not accept an SDP answer.
      this.finalIncoming(406);
      this.end({ reason: "failed", status: 406 });
      return false;
    }
    if (typeof media === "object" && !media.ok) {
      this.finalIncoming(488, { headers: [["Warning", `305 gatehouse "${media.reason}"`]] });
      this.end({ reason: "failed", status: 488 });
      return false;
    }
    if (media === "offerless") {
      this.localSdp = createOffer(this.local);
      this.awaitingAckAnswer = true;
    } else if (typeof media === "object") {
      this.localSdp = media.sdp;
      this.media.configure(media.audio, [source.address]);
    }

    const early = this.ctx.cfg.earlyMedia && media !== "offerless";
    const headers: [string, string][] = [
      ["Contact", ourContact(this.ctx, dest.transport)],
      ["Allow", ALLOW],
      ["Supported", SUPPORTED],
    ];
    if (early) {
      // Early media (RFC 3960 gateway model): the door hears ringback from us, and its audio can reach the browser.
      tx.reply(183, { toTag: this.dialog.localTag, headers, body: Buffer.from(this.localSdp, "latin1"), contentType: "application/sdp" });
      this.media.startTone();
    } else {
      tx.reply(180, { toTag: this.dialog.localTag, headers });
    }
    this.ringTimer = this.ctx.clock.setTimer(this.ctx.cfg.ringTimeoutSeconds * 1000, () => {
      this.ringTimer = undefined;
      if (this.st !== "ringing") return;
      this.finalIncoming(480, { headers: [["Retry-After", "60"]] });
      this.end({ reason: "missed", status: 480 });
    });
    return true;
  }

  private readOffer(req: SipRequest): "offerless" | "unsupported-type" | "not-acceptable" | ReturnType<typeof answerOffer> {
    const accept = req.headers.getList("accept").map((a) => a.split(";")[0]!.trim().toLowerCase());
    if (accept.length > 0 && !accept.some((a) => a === "application/sdp" || a === "application/*" || a === "*/*")) return "not-acceptable";
    if (req.body.length === 0) return "offerless";
    const ct = contentType(req);
    const boundary = ct?.params.get("boundary") ?? undefined;
    const sdpText = extractSdp(ct?.type, boundary ?? undefined, req.body);
    if (sdpText === undefined) return "unsupported-type";
    try {
      return answerOffer(parseSdp(sdpText), this.local);
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  }

  private finalIncoming(status: number, opts: { headers?: [string, string][] } = {}): void {
    const tx = this.inviteTx;
    if (!tx || !tx.pending) return;
    tx.reply(status, { toTag: this.dialog?.localTag, headers: opts.headers ?? [] });
  }

  /** Answer a ringing incoming call: 200 OK with our SDP. */
  answer(user: string): void {
    if (this.st !== "ringing" || this.direction !== "incoming") throw new WrongStateError(`call is ${this.st}`);
    const tx = this.inviteTx!;
    this.ringTimer?.cancel();
    this.ringTimer = undefined;
    this.media.stopTone();
    this.answeredBy = user;
    this.answeredAt = this.ctx.clock.wallNow();
    tx.onNoAck = () => this.hangupWith("no-ack");
    tx.reply(200, {
      toTag: this.dialog.localTag,
      headers: [
        ["Contact", ourContact(this.ctx, this.dialog.dest.transport)],
        ["Allow", ALLOW],
        ["Supported", SUPPORTED],
        ...this.sessionHeaders,
      ],
      body: Buffer.from(this.localSdp, "latin1"),
      contentType: "application/sdp",
    });
    if (this.pendingTimer) this.sessionTimer.arm(this.pendingTimer.interval, this.pendingTimer.weRefresh);
    this.setState("answered");
    this.media.start();
  }

  /** Decline a ringing incoming call (603). */
  reject(status = 603): void {
    if (this.st !== "ringing") throw new WrongStateError(`call is ${this.st}`);
    this.finalIncoming(status);
    this.end({ reason: "rejected", status });
  }

  /** CANCEL for our INVITE server transaction (§9.2): 487, unless already answered. */
  onCancel(): void {
    if (this.st !== "ringing") return;
    this.finalIncoming(487);
    this.end({ reason: "cancelled", status: 487 });
  }

  // ------------------------------------------------------------------ outgoing

  /**
   * Send the INVITE of an outgoing call to `target` (a device binding). The outcome is
   * reported by the `state` ("answered") and `ended` events.
   */
  startOutgoing(requestUri: string, target: Endpoint, user: string): void {
    const local = `<sip:gatehouse@${this.ctx.cfg.domain}>`;
    this.from = user;
    this.answeredBy = user;
    this.dialog = new Dialog(this.ctx, {
      callId: this.ctx.ids.callId(),
      localTag: this.ctx.ids.tag(),
      remoteTag: undefined,
      localUri: local,
      remoteUri: `<sip:${this.device.username}@${this.ctx.cfg.domain}>`,
      localSeq: 1,
      remoteSeq: undefined,
      remoteTarget: requestUri,
      routeSet: [],
      dest: target,
    });
    this.localSdp = createOffer(this.local);
    const h = new SipHeaders();
    h.append("Via", ourVia(this.ctx, target.transport, this.ctx.ids.branch()));
    h.append("Max-Forwards", "70");
    h.append("From", `${local};tag=${this.dialog.localTag}`);
    h.append("To", this.dialog.remoteUri);
    h.append("Call-ID", this.dialog.callId);
    h.append("CSeq", `1 INVITE`);
    h.append("Contact", ourContact(this.ctx, target.transport));
    h.append("Allow", ALLOW);
    h.append("Supported", SUPPORTED);
    h.append("Content-Type", "application/sdp");
    const req: SipRequest = { kind: "request", method: "INVITE", uri: requestUri, headers: h, body: Buffer.from(this.localSdp, "latin1") };
    this.inviteReq = req;
    this.ringTimer = this.ctx.clock.setTimer(this.ctx.cfg.ringTimeoutSeconds * 1000, () => {
      this.ringTimer = undefined;
      if (this.st === "calling") this.cancelOutgoing("no-answer");
    });
    this.inviteClient = this.ctx.layer.request(req, target, (res, synthetic) => this.onInviteResponse(res, synthetic));
  }

  private onInviteResponse(res: SipResponse, synthetic: boolean): void {
    if (res.status < 200) {
      if (this.cancelPending && this.inviteClient?.provisional) this.sendCancel();
      const tag = tagOf(toOf(res));
      if (tag && !this.dialog.remoteTag) this.dialog.remoteTag = tag;
      this.maybeEarlyMedia(res);
      return;
    }
    if (res.status < 300) {
      const tag = tagOf(toOf(res));
      if (this.st === "answered" || this.st === "ended") {
        // §13.2.2.4: a retransmitted 2xx (same dialog) gets the ACK again; a forked one is ACKed and hung up.
        if (tag === this.dialog.remoteTag && this.ackFor2xx) this.ctx.layer.sendStateless(this.ackFor2xx, this.dialog.dest);
        else this.ackAndBye(res);
        return;
      }
      this.dialog.remoteTag = tag;
      const contact = contactsOf(res)?.[0];
      if (contact && !contact.star) this.dialog.remoteTarget = contact.uri;
      this.dialog.routeSet = res.headers.getList("record-route").reverse();
      this.ackFor2xx = this.dialog.request("ACK", { cseq: cseqOf(res).seq });
      this.ctx.layer.sendStateless(this.ackFor2xx, this.dialog.dest);
      if (this.cancelPending) {
        this.hangupWith("cancelled");
        return;
      }
      const ok = this.readSdpAnswer(res);
      if (!ok) {
        this.hangupWith("failed");
        return;
      }
      this.ringTimer?.cancel();
      this.ringTimer = undefined;
      this.answeredAt = this.ctx.clock.wallNow();
      const se = parseSessionExpires(res);
      if (se) this.sessionTimer.arm(se.interval, (se.refresher ?? "uac") === "uac");
      this.setState("answered");
      this.media.start();
      return;
    }
    if (this.st === "ended") return;
    const reason: EndReason =
      res.status === 487 ? (this.endReasonWanted ?? "cancelled") : res.status === 486 || res.status === 600 ? "busy" : res.status === 603 ? "rejected" : "failed";
    if (synthetic) this.log.info("sip: outgoing call failed locally", { status: res.status });
    this.end({ reason, status: res.status });
  }

  private maybeEarlyMedia(res: SipResponse): void {
    if (res.body.length === 0 || this.media.params) return;
    const ct = contentType(res);
    const sdp = extractSdp(ct?.type, undefined, res.body);
    if (!sdp) return;
    try {
      const a = readAnswer(parseSdp(sdp));
      if (a.ok) this.media.configure(a.audio, [this.dialog.dest.address]);
    } catch {
      // a bad early SDP is ignored; the 2xx decides
    }
  }

  private readSdpAnswer(res: SipResponse): boolean {
    if (res.body.length === 0) return this.media.params !== undefined;
    const ct = contentType(res);
    const sdp = extractSdp(ct?.type, ct?.params.get("boundary") ?? undefined, res.body);
    if (!sdp) return false;
    try {
      const a = readAnswer(parseSdp(sdp));
      if (!a.ok) return false;
      this.media.configure(a.audio, [this.dialog.dest.address]);
      return true;
    } catch {
      return false;
    }
  }

  private ackAndBye(res: SipResponse): void {
    const tag = tagOf(toOf(res));
    const contact = contactsOf(res)?.[0];
    const d = new Dialog(this.ctx, {
      callId: this.dialog.callId,
      localTag: this.dialog.localTag,
      remoteTag: tag,
      localUri: this.dialog.localUri,
      remoteUri: this.dialog.remoteUri,
      localSeq: cseqOf(res).seq,
      remoteSeq: undefined,
      remoteTarget: contact && !contact.star ? contact.uri : this.dialog.remoteTarget,
      routeSet: res.headers.getList("record-route").reverse(),
      dest: this.dialog.dest,
    });
    this.ctx.layer.sendStateless(d.request("ACK", { cseq: cseqOf(res).seq }), d.dest);
    this.ctx.layer.request(d.request("BYE"), d.dest, () => {});
  }

  /** Stray 2xx for our INVITE after its transaction ended (§13.2.2.4): ACK again. */
  onStray2xx(res: SipResponse): void {
    if (this.direction !== "outgoing" || res.status < 200 || res.status >= 300) return;
    const tag = tagOf(toOf(res));
    if (tag === this.dialog.remoteTag && this.ackFor2xx) this.ctx.layer.sendStateless(this.ackFor2xx, this.dialog.dest);
    else this.ackAndBye(res);
  }

  private cancelOutgoing(reason: EndReason): void {
    this.endReasonWanted = reason;
    this.cancelPending = true;
    if (this.inviteClient?.provisional) {
      this.sendCancel();
      return;
    }
    // §9.1: no CANCEL before a provisional response. Nothing was heard from the device, so stop
    // retransmitting and end now; a late 2xx is ACKed and hung up (onStray2xx / ackAndBye).
    this.inviteClient?.terminate();
    this.end({ reason });
  }

  private sendCancel(): void {
    const inv = this.inviteReq;
    if (!inv || this.cancelSent) return;
    this.cancelSent = true;
    // §9.1: CANCEL copies Request-URI, Call-ID, To, From, the CSeq number and the top Via of the INVITE.
    const h = new SipHeaders();
    h.append("Via", inv.headers.getList("via")[0]!);
    h.append("Max-Forwards", "70");
    h.append("From", inv.headers.get("from")!);
    h.append("To", inv.headers.get("to")!);
    h.append("Call-ID", inv.headers.get("call-id")!);
    h.append("CSeq", `${cseqOf(inv).seq} CANCEL`);
    this.ctx.layer.request({ kind: "request", method: "CANCEL", uri: inv.uri, headers: h, body: Buffer.alloc(0) }, this.dialog.dest, () => {});
  }

  // ------------------------------------------------------------------ in-dialog

  /** A request inside this dialog (from the device). `tx` is undefined for ACK. */
  onRequest(req: SipRequest, tx: ServerTransaction | undefined): void {
    if (req.method === "ACK") return this.onAck(req);
    if (!tx) return;
    const seq = cseqOf(req).seq;
    // §12.2.2: a lower CSeq than the last one is out of order.
    if (this.dialog.remoteSeq !== undefined && seq < this.dialog.remoteSeq) {
      tx.reply(500, { reason: "Out of Order", headers: [["Retry-After", "1"]] });
      return;
    }
    this.dialog.remoteSeq = seq;
    switch (req.method) {
      case "BYE":
        tx.reply(200);
        if (this.st === "ringing") this.finalIncoming(487);
        this.end({ reason: "remote-bye" });
        return;
      case "INVITE":
      case "UPDATE":
        return this.onRefreshOrOffer(req, tx);
      case "INFO": {
        const ct = contentType(req)?.type ?? "";
        const digit = parseDtmfInfo(ct, req.body.toString("latin1"));
        tx.reply(200);
        if (digit) this.events.emit("dtmf", digit);
        return;
      }
      case "OPTIONS":
        tx.reply(200, { headers: [["Allow", ALLOW], ["Accept", "application/sdp"], ["Supported", SUPPORTED]] });
        return;
      default:
        tx.reply(501, { headers: [["Allow", ALLOW]] });
    }
  }

  private onAck(req: SipRequest): void {
    const first = this.inviteTx !== undefined && this.inviteTx.state === "accepted" && !this.isConfirmed;
    if (this.inviteTx && this.inviteTx.state === "accepted") this.inviteTx.ackReceived();
    if (this.reinviteTx && this.reinviteTx.state === "accepted") this.reinviteTx.ackReceived();
    if (this.awaitingAckAnswer && req.body.length > 0) {
      this.awaitingAckAnswer = false;
      try {
        const a = readAnswer(parseSdp(req.body.toString("latin1")));
        if (a.ok) this.media.configure(a.audio, [this.dialog.dest.address]);
        else this.hangupWith("failed");
      } catch {
        this.hangupWith("failed");
      }
    }
    if (first && this.st === "answered") {
      this.isConfirmed = true;
      this.events.emit("confirmed");
    }
  }

  /** re-INVITE or UPDATE: target refresh, new offer (answered with the same media), session refresh. */
  private onRefreshOrOffer(req: SipRequest, tx: ServerTransaction): void {
    if (req.method === "INVITE") {
      if (this.ownReinvite && this.ownReinvite.state !== "terminated" && this.ownReinvite.state !== "completed" && this.ownReinvite.state !== "accepted") {
        tx.reply(491); // §14.2: glare
        return;
      }
      if (this.reinviteTx?.pending) {
        tx.reply(500, { headers: [["Retry-After", "2"]] });
        return;
      }
      this.reinviteTx = tx;
    }
    if (this.st === "ended") {
      tx.reply(481);
      return;
    }
    const contact = contactsOf(req)?.[0];
    if (contact && !contact.star) this.dialog.remoteTarget = contact.uri; // §12.2.2 target refresh
    const st = uasSessionTimer(req, this.ctx.cfg.minSessionExpires);
    if (st?.status === 422) {
      tx.reply(422, { headers: [["Min-SE", String(st.minSe)]] });
      return;
    }
    const headers: [string, string][] = [
      ["Contact", ourContact(this.ctx, this.dialog.dest.transport)],
      ["Allow", ALLOW],
      ["Supported", SUPPORTED],
    ];
    if (st?.status === 200) {
      headers.push(["Session-Expires", `${st.se.interval};refresher=${st.se.refresher}`]);
      if (st.require) headers.push(["Require", "timer"]);
    }
    let body: Buffer | undefined;
    if (req.body.length > 0) {
      const ct = contentType(req);
      const sdp = extractSdp(ct?.type, ct?.params.get("boundary") ?? undefined, req.body);
      if (!sdp) {
        tx.reply(415, { headers: [["Accept", "application/sdp"]] });
        return;
      }
      let a: ReturnType<typeof answerOffer>;
      try {
        a = answerOffer(parseSdp(sdp), this.local);
      } catch (err) {
        a = { ok: false, reason: (err as Error).message };
      }
      if (!a.ok) {
        // The old session stays as it was (§14.2).
        tx.reply(488, { headers: [["Warning", `305 gatehouse "${a.reason}"`]] });
        return;
      }
      if (a.sdp !== this.localSdp) {
        // RFC 3264 §8: bump o= version only when our description changes.
        this.local = { ...this.local, version: this.local.version + 1 };
        a = answerOffer(parseSdp(sdp), this.local);
        if (!a.ok) return;
      }
      this.localSdp = a.sdp;
      this.media.configure(a.audio);
      body = Buffer.from(a.sdp, "latin1");
    } else if (req.method === "INVITE") {
      // Offerless re-INVITE: we offer (our current codec first), the ACK answers.
      body = Buffer.from(this.localSdp, "latin1");
      this.awaitingAckAnswer = true;
    }
    if (req.method === "INVITE") tx.onNoAck = () => this.hangupWith("no-ack");
    tx.reply(200, { headers, ...(body ? { body, contentType: "application/sdp" } : {}) });
    // RFC 4028 §9: every re-INVITE/UPDATE renegotiates the timer; one without Session-Expires turns it off.
    if (st?.status === 200 && this.st === "answered") this.sessionTimer.arm(st.se.interval, st.se.refresher === "uas");
    else if (!st) this.sessionTimer.cancel();
  }

  /** RFC 4028 §7.4: we are the refresher; re-INVITE with the unchanged SDP. */
  private refreshSession(): void {
    if (this.st !== "answered") return;
    const interval = this.sessionTimer.interval;
    const req = this.dialog.request("INVITE", {
      body: Buffer.from(this.localSdp, "latin1"),
      contentType: "application/sdp",
      headers: [["Session-Expires", `${interval};refresher=uac`], ["Supported", SUPPORTED], ["Allow", ALLOW]],
    });
    this.ownReinvite = this.ctx.layer.request(req, this.dialog.dest, (res) => {
      if (res.status < 200) return;
      if (res.status < 300) {
        this.ctx.layer.sendStateless(this.dialog.request("ACK", { cseq: cseqOf(res).seq }), this.dialog.dest);
        const se = parseSessionExpires(res);
        this.sessionTimer.arm(se?.interval ?? interval, (se?.refresher ?? "uac") === "uac");
        return;
      }
      if (res.status === 491) {
        // §14.1: glare; try again after 2.1–4 s (we own the Call-ID? either way the range is fine).
        this.ctx.clock.setTimer(2100 + Math.random() * 1900, () => this.refreshSession());
        return;
      }
      // §10 of RFC 4028: a failed refresh (408/481…) ends the session.
      this.hangupWith("session-expired");
    });
  }

  // ------------------------------------------------------------------ DTMF and hang-up

  async sendDtmf(digits: string): Promise<"rfc4733" | "info"> {
    if (this.st !== "answered") throw new WrongStateError(`call is ${this.st}`);
    const { method, durationMs } = this.device.dtmf;
    if (method === "rfc4733") {
      const ok = await this.media.sendDtmf(digits, durationMs);
      if (ok) return "rfc4733";
      if (this.st !== "answered") throw new WrongStateError("call ended while sending DTMF");
      // No telephone-event negotiated: fall back to INFO, which every SIP device can at least reject.
      this.log.info("sip: telephone-event not negotiated, sending DTMF by INFO", { call: this.id });
    }
    for (const d of digits) {
      if (this.st !== "answered") throw new WrongStateError("call ended while sending DTMF");
      const status = await new Promise<number>((resolve) => {
        const req = this.dialog.request("INFO", { body: Buffer.from(dtmfRelayBody(d, durationMs), "latin1"), contentType: "application/dtmf-relay" });
        this.ctx.layer.request(req, this.dialog.dest, (res) => {
          if (res.status >= 200) resolve(res.status);
        });
      });
      if (status >= 300) throw new WrongStateError(`device refused DTMF INFO with ${status}`);
    }
    return "info";
  }

  openDoor(): Promise<"rfc4733" | "info"> {
    return this.sendDtmf(this.device.dtmf.openDoor);
  }

  confirmed(): Promise<void> {
    if (this.st === "answered" && (this.isConfirmed || this.direction === "outgoing")) return Promise.resolve();
    if (this.st === "ended") return Promise.reject(new WrongStateError("the call has ended"));
    return new Promise((resolve, reject) => {
      const offs = [
        this.events.on("confirmed", () => {
          offs.forEach((off) => off());
          resolve();
        }),
        this.events.on("ended", (e) => {
          offs.forEach((off) => off());
          reject(new WrongStateError(`the call ended (${e.reason}) before the door acknowledged it`));
        }),
      ];
    });
  }

  hangup(reason: "local-bye" | "door-opened" = "local-bye"): void {
    if (this.st === "ringing") this.reject(603);
    else if (this.st === "calling") this.cancelOutgoing("cancelled");
    else if (this.st === "answered") this.hangupWith(reason);
  }

  /** BYE an established (or confirmed) dialog and end. */
  private hangupWith(reason: EndReason): void {
    if (this.st === "ended") return;
    if (this.dialog?.remoteTag !== undefined && (this.st === "answered" || reason === "no-ack" || reason === "cancelled")) {
      this.ctx.layer.request(this.dialog.request("BYE"), this.dialog.dest, () => {});
    }
    this.end({ reason });
  }

  /** Shutdown: answer a ringing INVITE with 480 (then end), or BYE an established call. */
  shutdown(): void {
    if (this.st === "ringing") {
      this.finalIncoming(480);
      this.end({ reason: "shutdown", status: 480 });
    } else if (this.st === "calling") {
      this.cancelOutgoing("shutdown");
      this.end({ reason: "shutdown" });
    } else this.hangupWith("shutdown");
  }

  /** The one ending path. Idempotent. */
  end(info: CallEnd): void {
    if (this.st === "ended") return;
    this.endInfo = info;
    this.ringTimer?.cancel();
    this.ringTimer = undefined;
    this.sessionTimer.cancel();
    this.media.close(info.reason);
    this.st = "ended";
    this.log.info("sip: call ended", { call: this.id, device: this.device.id, reason: info.reason, status: info.status });
    this.events.emit("state", "ended");
    this.events.emit("ended", info);
    this.events.removeAllListeners();
  }
}
