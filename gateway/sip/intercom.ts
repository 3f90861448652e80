/**
 * The application's view of the door intercoms: rings, answers (first wins), rejections,
 * missed calls, outgoing "talk to the door" calls, DTMF / open door, and device presence.
 * SIP details stay below this line; the web layer and the SFU only see these events and
 * the SipCall handle (media sink in, RTP back, DTMF).
 *
 * Rights are the caller's business (`answer_intercom`, `talk` from sign-in); this class
 * enforces the per-device answerer lists and the call state rules.
 */
import { SafeEmitter } from "../../config/events.ts";
import { AuthError, NotFoundError, OverloadError, UpstreamError, WrongStateError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { MediaSink } from "../../sfu/types.ts";
import { Call, type CallEnd, type CallId, type EndReason, type SipCall } from "./call.ts";
import type { SipContext } from "./context.ts";
import type { Device, DeviceDirectory, DeviceId } from "./devices.ts";
import type { Endpoint } from "./endpoint.ts";
import { CallMedia } from "./media.ts";
import { bindingRequestUri, type Registrar } from "./registrar.ts";
import type { SipRequest, SipResponse } from "./message.ts";
import type { ServerTransaction } from "./transaction.ts";
import { dialogKey } from "./dialog.ts";

export type { CallId, SipCall, EndReason } from "./call.ts";

export interface RingEvent {
  readonly callId: CallId;
  readonly deviceId: DeviceId;
  readonly deviceName: string;
  /** Camera to show with the ring, if the device has one. */
  readonly camera: string | undefined;
  /** Caller as presented by the device (display name or URI). */
  readonly from: string;
  /** Who may answer (both empty: anyone with the answer right). */
  readonly answerers: Device["answerers"];
  /** Wall-clock ms. */
  readonly at: number;
  /** Ring timeout, ms from `at`. */
  readonly ringTimeoutMs: number;
}

export interface IntercomUser {
  /** Stable user id (as in rights and audit). */
  readonly id: string;
  /** Groups from the identity provider. */
  readonly groups?: readonly string[];
}

export interface CallRecord {
  readonly callId: CallId;
  readonly deviceId: DeviceId;
  readonly direction: "incoming" | "outgoing";
  readonly from: string;
  readonly startedAt: number;
  readonly answeredAt: number | undefined;
  readonly answeredBy: string | undefined;
  readonly endedAt: number;
  readonly reason: EndReason;
  readonly status: number | undefined;
}

export interface DeviceStatus {
  readonly id: DeviceId;
  readonly name: string;
  readonly camera: string | undefined;
  readonly online: boolean;
  readonly bindings: readonly { contact: string; transport: string; address: string; port: number; expiresInSeconds: number; since: number }[];
  readonly activeCalls: number;
}

export type IntercomEvents = {
  ring: [ring: RingEvent];
  /** `purpose: "open-door"`: the gateway answered for `user` only to open the door (openRinging). */
  answered: [info: { callId: CallId; deviceId: DeviceId; user: string; purpose?: "open-door" }];
  ended: [record: CallRecord];
  dtmf: [info: { callId: CallId; deviceId: DeviceId; digit: string }];
  device: [info: { deviceId: DeviceId; online: boolean }];
};

/** Thrown by answer() when another user was first. */
export class CallAlreadyAnsweredError extends WrongStateError {
  readonly answeredBy: string;
  constructor(answeredBy: string) {
    super(`already answered by ${answeredBy}`);
    this.answeredBy = answeredBy;
  }
}

export interface IntercomOptions {
  /** Where a call's audio goes once media is negotiated (default: none until setSink/answer). */
  sinkFor?: (call: SipCall) => MediaSink | undefined;
  /** Finished calls kept by history(). Default 200. */
  historySize?: number;
}

export interface IntercomStats {
  rings: number;
  answered: number;
  missed: number;
  rejected: number;
  cancelled: number;
  outgoing: number;
  refusedUnknown: number;
  refusedBusy: number;
  /** Ringing calls the gateway answered itself to open the door (openRinging). */
  openedUnanswered: number;
}

export class Intercom {
  readonly events: SafeEmitter<IntercomEvents>;
  readonly stats: IntercomStats = { rings: 0, answered: 0, missed: 0, rejected: 0, cancelled: 0, outgoing: 0, refusedUnknown: 0, refusedBusy: 0, openedUnanswered: 0 };
  private readonly ctx: SipContext;
  private readonly devicesDir: DeviceDirectory;
  private readonly registrar: Registrar;
  private readonly log: Logger;
  private readonly opts: IntercomOptions;
  private readonly calls = new Map<CallId, Call>();
  private readonly byDialog = new Map<string, Call>();
  private readonly byInviteKey = new Map<string, Call>();
  private readonly records: CallRecord[] = [];
  private closed = false;

  constructor(ctx: SipContext, devices: DeviceDirectory, registrar: Registrar, opts: IntercomOptions = {}) {
    this.ctx = ctx;
    this.devicesDir = devices;
    this.registrar = registrar;
    this.log = ctx.log;
    this.opts = opts;
    this.events = new SafeEmitter((event, err) => this.log.error("intercom: listener threw", { event, err }));
    registrar.events.on("registered", (d) => {
      if (this.registrar.bindingsOf(d.id).length === 1) this.events.emit("device", { deviceId: d.id, online: true });
    });
    registrar.events.on("unregistered", (d) => {
      if (this.registrar.bindingsOf(d.id).length === 0) this.events.emit("device", { deviceId: d.id, online: false });
    });
  }

  // ---------------------------------------------------------------- application API

  /** May `user` answer calls from `deviceId` (per the device's answerer lists)? Rights are checked by the caller. */
  mayAnswer(deviceId: string, user: IntercomUser): boolean {
    const d = this.devicesDir.get(deviceId);
    if (!d) return false;
    const { users, groups } = d.answerers;
    if (users.length === 0 && groups.length === 0) return true;
    return users.includes(user.id) || (user.groups ?? []).some((g) => groups.includes(g));
  }

  /**
   * Answer a ringing call. The first answer wins (200 OK to the door); later ones throw
   * CallAlreadyAnsweredError naming the winner. `sink` receives the door's audio.
   */
  answer(callId: string, user: IntercomUser, opts: { sink?: MediaSink } = {}): SipCall {
    const call = this.mustGet(callId);
    if (!this.mayAnswer(call.device.id, user)) throw new AuthError("FORBIDDEN", "not an answerer of this door");
    if (call.direction !== "incoming") throw new WrongStateError("not an incoming call");
    if (call.state === "answered") throw new CallAlreadyAnsweredError(call.answeredBy ?? "someone");
    if (call.state !== "ringing") throw new WrongStateError(`call is ${call.state}`);
    if (opts.sink) call.setSink(opts.sink);
    call.answer(user.id);
    this.stats.answered++;
    this.events.emit("answered", { callId: call.id, deviceId: call.device.id, user: user.id });
    return call;
  }

  /** Decline a ringing call for everyone (603 to the door). */
  reject(callId: string, user: IntercomUser): void {
    const call = this.mustGet(callId);
    if (!this.mayAnswer(call.device.id, user)) throw new AuthError("FORBIDDEN", "not an answerer of this door");
    call.reject(603);
  }

  /** Hang up an answered call, or cancel an outgoing one. */
  hangup(callId: string): void {
    this.mustGet(callId).hangup();
  }

  /**
   * Open the door of a ringing call without anyone talking: the gateway answers it itself
   * (its own RTP endpoint, no browser media), waits for the door's ACK (§13.3.1.4), sends the
   * device's open-door digits with its `dtmf.method` (RFC 4733 events, or SIP INFO), waits
   * until they are sent (the last event's end packets, or each INFO's 2xx), then hangs up
   * with BYE. The first answer wins, as for answer(). Rejects with UpstreamError when the
   * door hung up, never acknowledged, or refused the digits (the call is then ended too).
   */
  async openRinging(callId: string, user: IntercomUser): Promise<void> {
    const call = this.mustGet(callId);
    if (!this.mayAnswer(call.device.id, user)) throw new AuthError("FORBIDDEN", "not an answerer of this door");
    if (call.direction !== "incoming") throw new WrongStateError("not an incoming call");
    if (call.state === "answered") throw new CallAlreadyAnsweredError(call.answeredBy ?? "someone");
    if (call.state !== "ringing") throw new WrongStateError(`call is ${call.state}`);
    call.answer(user.id);
    this.stats.answered++;
    this.stats.openedUnanswered++;
    this.events.emit("answered", { callId: call.id, deviceId: call.device.id, user: user.id, purpose: "open-door" });
    try {
      await call.confirmed();
      const method = await call.openDoor();
      // RFC 4733: let the door's jitter buffer play the last event out before the BYE.
      const delay = method === "rfc4733" ? this.ctx.cfg.openDoorHangupDelayMs : 0;
      if (delay > 0 && call.ended === undefined) await new Promise<void>((resolve) => this.ctx.clock.setTimer(delay, resolve));
    } catch (err) {
      const ended = call.ended !== undefined;
      call.hangup();
      this.log.warn("intercom: the door could not be opened", { call: call.id, device: call.device.id, err });
      throw new UpstreamError(ended ? "the call ended before the door could be opened" : "the door did not take the open-door digits", { cause: err });
    }
    call.hangup("door-opened");
    this.log.info("intercom: door opened by the gateway, call ended", { call: call.id, device: call.device.id, user: user.id });
  }

  /** Send the device's open-door DTMF digits in an answered call. */
  openDoor(callId: string): Promise<"rfc4733" | "info"> {
    return this.mustGet(callId).openDoor();
  }

  sendDtmf(callId: string, digits: string): Promise<"rfc4733" | "info"> {
    return this.mustGet(callId).sendDtmf(digits);
  }

  /**
   * "Talk to the door": call a configured, registered device. Resolves when it answers;
   * rejects with NotFoundError (unknown or unregistered device), OverloadError (no RTP
   * ports / too many calls) or UpstreamError carrying the device's final status.
   * Only configured devices can be called: the target is the device's own registration.
   */
  async call(deviceId: string, user: IntercomUser, opts: { sink?: MediaSink; signal?: AbortSignal } = {}): Promise<SipCall> {
    if (this.closed) throw new WrongStateError("intercom closed");
    if (opts.signal?.aborted) throw new WrongStateError("call given up before it was placed");
    const device = this.devicesDir.get(deviceId);
    if (!device) throw new NotFoundError(`unknown device ${deviceId}`);
    const binding = this.registrar.bindingsOf(device.id).at(-1);
    if (!binding) throw new NotFoundError(`device ${deviceId} is not registered`);
    if (binding.target.flow !== undefined && !this.ctx.flowOpen(binding.target.flow)) throw new NotFoundError(`device ${deviceId} connection is closed`);
    if (this.calls.size >= this.ctx.cfg.maxCalls) throw new OverloadError("too many calls");
    const pair = await this.ctx.rtpPorts.allocate();
    const id = this.ctx.ids.call() as CallId;
    const media = new CallMedia({ pair, allowedSources: [binding.target.address, binding.source.address], log: this.log.child({ call: id }), ticker: this.ctx.ticker, now: () => this.ctx.clock.now() });
    const call = new Call({ ctx: this.ctx, id, device, media, log: this.log.child({ call: id, device: device.id }) }, "outgoing");
    if (opts.sink) call.setSink(opts.sink);
    else this.attachDefaultSink(call);
    this.track(call);
    this.stats.outgoing++;
    // Given up while the door rings (the browser left): CANCEL (RFC 3261 §9.1), the door stops ringing.
    const giveUp = () => call.hangup();
    opts.signal?.addEventListener("abort", giveUp, { once: true });
    const done = new Promise<SipCall>((resolve, reject) => {
      call.events.on("state", (s) => {
        if (s === "answered") resolve(call);
      });
      call.events.on("ended", (e) => reject(new UpstreamError(`call to ${deviceId} ended: ${e.reason}${e.status ? ` (${e.status})` : ""}`)));
    }).finally(() => opts.signal?.removeEventListener("abort", giveUp));
    call.startOutgoing(bindingRequestUri(binding), binding.target, user.id);
    this.byDialog.set(dialogKey(call.dialog.callId, call.dialog.localTag, ""), call);
    return done;
  }

  get(callId: string): SipCall | undefined {
    return this.calls.get(callId as CallId);
  }

  /** Active calls. */
  active(): SipCall[] {
    return [...this.calls.values()];
  }

  /** Finished calls, newest last. */
  history(): readonly CallRecord[] {
    return this.records;
  }

  devices(): DeviceStatus[] {
    const now = this.ctx.clock.now();
    return this.devicesDir.all().map((d) => {
      const bindings = this.registrar.bindingsOf(d.id);
      return {
        id: d.id,
        name: d.name,
        camera: d.camera,
        online: bindings.length > 0 || d.allow.size > 0,
        bindings: bindings.map((b) => ({
          contact: b.contact,
          transport: b.target.transport,
          address: b.target.address,
          port: b.target.port,
          expiresInSeconds: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
          since: b.since,
        })),
        activeCalls: [...this.calls.values()].filter((c) => c.device.id === d.id).length,
      };
    });
  }

  // ---------------------------------------------------------------- SIP side (server.ts)

  /** An authorised out-of-dialog INVITE from `device`. */
  async onInvite(device: Device, req: SipRequest, tx: ServerTransaction, source: Endpoint, dest: Endpoint): Promise<void> {
    if (this.closed) {
      tx.reply(503);
      return;
    }
    if (this.calls.size >= this.ctx.cfg.maxCalls) {
      this.stats.refusedBusy++;
      tx.reply(503, { headers: [["Retry-After", "5"]] });
      return;
    }
    let pair;
    try {
      pair = await this.ctx.rtpPorts.allocate();
    } catch (err) {
      this.log.warn("intercom: no RTP ports for a call", { err, device: device.id });
      this.stats.refusedBusy++;
      tx.reply(503, { headers: [["Retry-After", "5"]] });
      return;
    }
    if (!tx.pending) {
      // CANCELled (or shut down) while we bound sockets.
      pair.release();
      return;
    }
    const id = this.ctx.ids.call() as CallId;
    const media = new CallMedia({ pair, allowedSources: [source.address], log: this.log.child({ call: id }), ticker: this.ctx.ticker, now: () => this.ctx.clock.now() });
    const call = new Call({ ctx: this.ctx, id, device, media, log: this.log.child({ call: id, device: device.id }) }, "incoming");
    this.track(call);
    this.byInviteKey.set(tx.key, call);
    if (!call.acceptInvite(req, tx, source, dest)) return;
    this.byDialog.set(dialogKey(call.dialog.callId, call.dialog.localTag, ""), call);
    this.attachDefaultSink(call);
    this.stats.rings++;
    this.log.info("intercom: ringing", { call: id, device: device.id, from: call.from });
    this.events.emit("ring", {
      callId: id,
      deviceId: device.id,
      deviceName: device.name,
      camera: device.camera,
      from: call.from,
      answerers: device.answerers,
      at: call.startedAt,
      ringTimeoutMs: this.ctx.cfg.ringTimeoutSeconds * 1000,
    });
  }

  /** CANCEL matched the INVITE server transaction `inviteKey`; false when no call owns it (yet). */
  onCancel(inviteKey: string): boolean {
    const call = this.byInviteKey.get(inviteKey);
    call?.onCancel();
    return call !== undefined;
  }

  /** The call owning an in-dialog request (Call-ID + our tag in To + their tag in From). */
  findDialog(callId: string, localTag: string | undefined, remoteTag: string | undefined): Call | undefined {
    if (!localTag) return undefined;
    const call = this.byDialog.get(dialogKey(callId, localTag, ""));
    if (!call) return undefined;
    if (call.dialog.remoteTag !== undefined && remoteTag !== call.dialog.remoteTag) return undefined;
    return call;
  }

  /** A 2xx nobody claimed: maybe a retransmission for one of our outgoing calls. */
  onStrayResponse(res: SipResponse, callId: string, localTag: string | undefined): void {
    if (!localTag) return;
    this.byDialog.get(dialogKey(callId, localTag, ""))?.onStray2xx(res);
  }

  private attachDefaultSink(call: Call): void {
    const sink = this.opts.sinkFor?.(call);
    if (sink) call.setSink(sink);
  }

  private track(call: Call): void {
    this.calls.set(call.id, call);
    call.events.on("dtmf", (digit) => this.events.emit("dtmf", { callId: call.id, deviceId: call.device.id, digit }));
    call.events.on("ended", (end) => this.finish(call, end));
  }

  private finish(call: Call, end: CallEnd): void {
    this.calls.delete(call.id);
    if (call.dialog) this.byDialog.delete(dialogKey(call.dialog.callId, call.dialog.localTag, ""));
    for (const [k, c] of this.byInviteKey) if (c === call) this.byInviteKey.delete(k);
    if (end.reason === "missed") this.stats.missed++;
    else if (end.reason === "rejected") this.stats.rejected++;
    else if (end.reason === "cancelled") this.stats.cancelled++;
    const record: CallRecord = {
      callId: call.id,
      deviceId: call.device.id,
      direction: call.direction,
      from: call.from,
      startedAt: call.startedAt,
      answeredAt: call.answeredAt,
      answeredBy: call.state === "ended" && call.answeredAt !== undefined ? call.answeredBy : undefined,
      endedAt: this.ctx.clock.wallNow(),
      reason: end.reason,
      status: end.status,
    };
    this.records.push(record);
    const max = this.opts.historySize ?? 200;
    if (this.records.length > max) this.records.splice(0, this.records.length - max);
    this.events.emit("ended", record);
  }

  private mustGet(callId: string): Call {
    const c = this.calls.get(callId as CallId);
    if (!c) throw new NotFoundError(`no call ${callId}`);
    return c;
  }

  /** End every call (480 to ringing ones, BYE to answered ones). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.calls.values()]) c.shutdown();
  }
}
