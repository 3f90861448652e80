/**
 * The browser side of the door intercoms: who is told about which call (the ring event
 * stream), who may act on it (rights + the device's answerer lists), and the talk peer that
 * carries a call's audio to and from one browser. See index.ts for the design and routes.
 */
import type { ServerResponse } from "node:http";
import { AuthError, BadInputError, NotFoundError, OverloadError, WrongStateError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { AuthAction, User, WatchReason } from "../auth/index.ts";
import {
  CallAlreadyAnsweredError,
  type CallId,
  type CallRecord,
  type Intercom,
  type IntercomUser,
  type RingEvent,
  type SipCall,
} from "../sip/index.ts";
import { readAudioOffer, type G711Codec } from "./sdp.ts";
import { sessionEnded, SseStream, StreamEndReasons } from "../http/sse.ts";
import { TalkPeer, TalkPeerCloseReasons, type TalkPeerStats } from "./talk-peer.ts";

/** Largest door snapshot kept with a call, bytes. */
export const MAX_SNAPSHOT_BYTES = 512 * 1024;

/** PNG or JPEG by magic bytes, else null. */
function imageType(b: Buffer): "image/png" | "image/jpeg" | null {
  if (b.length > 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return "image/png";
  if (b.length > 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  return null;
}

/** What the intercom needs from sign-in (gateway/auth): rights per camera and session watching. */
export interface IntercomAuth {
  can(user: User, cameraId: string, action: AuthAction): boolean;
  canSee(user: User, cameraId: string): boolean;
  watch(user: User, cb: (reason: WatchReason) => void, scope?: { cameraId: string; action: AuthAction }): () => void;
}

export interface IntercomServiceOptions {
  /** The SIP server's application side (`sip.intercom`). */
  intercom: Intercom;
  auth: IntercomAuth;
  /**
   * Talk peers' ICE: the address they bind, the UDP range, the announced address (config.media),
   * and how the browser's own candidates are screened (the SFU's rules: IP literals only, no
   * refused ranges; throws BadInputError).
   */
  media: {
    bindAddress: string;
    icePortRange: readonly [number, number];
    announcedAddress?: string | undefined;
    screenOffer?: ((sdp: string) => string) | undefined;
  };
  /** A camera's display name, for the ring card. */
  cameraName?: (id: string) => string | undefined;
  log: Logger;
  /** SSE heartbeat period, ms. Default 15000. */
  heartbeatMs?: number;
  /** Event streams one user may hold open (tabs, devices). Default 8. */
  maxStreamsPerUser?: number;
  /** Event streams in all. Default 2000. */
  maxStreams?: number;
  /** Finished calls listed by GET /calls. Default 50. */
  historyLimit?: number;
  /** Finished calls, oldest first (the audit trail's call log, which survives restarts). Default: the SIP side's in-memory list. */
  history?: () => readonly CallRecord[];
  /** Talk peer timing, ms (see TalkPeerOptions). */
  talk?: { negotiationTimeoutMs?: number; connectTimeoutMs?: number; disconnectGraceMs?: number };
  /**
   * In a cluster (gateway/cluster/intercom.ts): the first answer anywhere wins by a claim in the
   * shared store; resolves to the winner's user id (the caller's own when it won). Throws when
   * the store cannot be asked: the SIP layer, which holds the call, then decides alone.
   */
  claimAnswer?: (callId: string, userId: string) => Promise<string>;
  /** In a cluster: doors registered with another node (online there), by device id. */
  doorsElsewhere?: () => ReadonlySet<string>;
}

/** A call whose SIP dialog another node of the cluster holds: its state as that node reported it. */
interface RemoteState {
  node: string;
  state: "ringing" | "calling" | "answered";
  answeredAt: number | undefined;
  answeredBy: string | undefined;
}

/** A configured door as the browser sees it. */
export interface DeviceView {
  id: string;
  name: string;
  /** The door's camera, when the user may watch it live (else null). */
  camera: string | null;
  cameraName: string | null;
  online: boolean;
  canAnswer: boolean;
  canTalk: boolean;
}

/** The `ring` event. */
export interface RingView {
  callId: string;
  deviceId: string;
  deviceName: string;
  /** Camera to show live with the ring (null: none, or the user may not watch it). */
  camera: string | null;
  cameraName: string | null;
  /** Caller as presented by the door. */
  from: string;
  /** Wall-clock ms when it started ringing, and when it stops ringing unanswered. */
  at: number;
  expiresAt: number;
}

/** An active call in GET /calls and the `ready` event. */
export interface CallView {
  callId: string;
  deviceId: string;
  deviceName: string;
  camera: string | null;
  cameraName: string | null;
  direction: "incoming" | "outgoing";
  state: "ringing" | "calling" | "answered" | "ended";
  from: string;
  startedAt: number;
  answeredAt: number | null;
  answeredBy: string | null;
  answeredByName: string | null;
  /** This user holds the call (answered it, or placed it). */
  mine: boolean;
}

/** A finished call in GET /calls. */
export interface HistoryView {
  callId: string;
  deviceId: string;
  deviceName: string;
  direction: "incoming" | "outgoing";
  from: string;
  startedAt: number;
  answeredAt: number | null;
  answeredBy: string | null;
  answeredByName: string | null;
  endedAt: number;
  reason: CallRecord["reason"];
  status: number | null;
  missed: boolean;
  /** A door camera picture is kept with the call (GET …/calls/:id/snapshot). */
  snapshot: boolean;
}

interface DeviceInfo {
  id: string;
  name: string;
  camera: string | undefined;
}

interface Subscriber {
  readonly user: User;
  readonly stream: SseStream;
  unwatch: () => void;
}

interface CallEntry {
  readonly callId: CallId;
  readonly device: DeviceInfo;
  readonly direction: "incoming" | "outgoing";
  readonly from: string;
  readonly startedAt: number;
  readonly expiresAt: number;
  owner: { sub: string; name: string | undefined } | undefined;
  peer: TalkPeer | undefined;
  /** Stops watching the owner's session and right. */
  unwatch: (() => void) | undefined;
  /** Streams told about this call: they hear `answered` and `ended`. */
  readonly told: Set<Subscriber>;
  /** Who asked the gateway to open the door of this ringing call (Intercom.openRinging). */
  openedBy?: { sub: string; name: string | undefined };
  /** Set when another node of the cluster holds the call (its actions are forwarded there). */
  remote?: RemoteState;
}

/** Display names remembered for "answered by" (user ids → names), most recent last. */
const MAX_NAMES = 1000;

export class IntercomService {
  private readonly ic: Intercom;
  private readonly auth: IntercomAuth;
  private readonly opts: IntercomServiceOptions;
  private readonly log: Logger;
  private readonly devices = new Map<string, DeviceInfo>();
  private readonly calls = new Map<string, CallEntry>();
  private readonly subscribers = new Set<Subscriber>();
  private readonly names = new Map<string, string>();
  /** Door camera pictures of recent calls (call id → image), oldest first; bounded like the history. */
  private readonly snapshots = new Map<string, { type: "image/jpeg" | "image/png"; bytes: Buffer }>();
  private readonly offs: Array<() => void> = [];
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Counters for logs and tests. */
  readonly stats = { streams: 0, ringsSent: 0, answers: 0, answerConflicts: 0, outgoing: 0, talkFailures: 0, doorOpens: 0 };

  constructor(opts: IntercomServiceOptions) {
    this.ic = opts.intercom;
    this.auth = opts.auth;
    this.opts = opts;
    this.log = opts.log;
    for (const d of this.ic.devices()) {
      this.devices.set(d.id, { id: d.id, name: d.name, camera: d.camera });
      if (!d.camera) this.log.warn("intercom: door without a camera: rights are per camera, so only auth.mode none can answer it", { device: d.id });
    }
    this.offs.push(
      this.ic.events.on("ring", (r) => this.onRing(r)),
      this.ic.events.on("answered", (a) => this.onAnswered(a.callId, a.user, a.purpose)),
      this.ic.events.on("ended", (rec) => this.onEnded(rec)),
      this.ic.events.on("dtmf", (d) => this.onDoorDtmf(d.callId, d.digit)),
      this.ic.events.on("device", (d) => this.onDevice(d.deviceId, d.online)),
    );
  }

  /** The call's state, answerer and answer time, whichever node holds it. */
  private stateOf(e: CallEntry): { state: CallView["state"]; answeredAt: number | undefined; answeredBy: string | undefined } | undefined {
    return e.remote ?? this.ic.get(e.callId);
  }

  // ------------------------------------------------------------------ rights

  private right(user: User, d: DeviceInfo, action: AuthAction): boolean {
    // Rights are per camera; a door without one is answerable only when nobody signs in.
    return d.camera !== undefined ? this.auth.can(user, d.camera, action) : user.via === "none";
  }

  /** May the user know this door exists? Invisible doors answer exactly like unknown ones (404). */
  private visible(user: User, d: DeviceInfo): boolean {
    return d.camera !== undefined ? this.auth.canSee(user, d.camera) : user.via === "none";
  }

  /** `answer_intercom` on the door's camera and on the door's own answerer lists. */
  mayAnswer(user: User, deviceId: string): boolean {
    const d = this.devices.get(deviceId);
    return d !== undefined && this.right(user, d, "answer_intercom") && this.ic.mayAnswer(d.id, intercomUser(user));
  }

  mayTalk(user: User, deviceId: string): boolean {
    const d = this.devices.get(deviceId);
    return d !== undefined && this.right(user, d, "talk");
  }

  private videoOf(user: User, d: DeviceInfo): string | null {
    return d.camera !== undefined && this.auth.can(user, d.camera, "live") ? d.camera : null;
  }

  /** The device, or NotFoundError when unknown or invisible to the user. */
  private deviceFor(user: User, deviceId: string): DeviceInfo {
    const d = this.devices.get(deviceId);
    if (!d || !this.visible(user, d)) throw new NotFoundError("no such door");
    return d;
  }

  /** The call, or NotFoundError when unknown or not this user's business. */
  private entryFor(user: User, callId: string): CallEntry {
    const e = this.calls.get(callId);
    if (!e || !(e.owner?.sub === user.sub || this.mayAnswer(user, e.device.id))) throw new NotFoundError("no such call");
    return e;
  }

  private mustOwn(user: User, e: CallEntry): SipCall {
    const call = this.ic.get(e.callId);
    if (!call) throw new NotFoundError("no such call");
    if (e.owner?.sub !== user.sub) throw new AuthError("FORBIDDEN", "only the person in the call can do that");
    return call;
  }

  // ------------------------------------------------------------------ views

  /** The display name last seen for a user id (who answered), or null. */
  displayName(sub: string | undefined): string | null {
    return this.nameOf(sub);
  }

  private nameOf(sub: string | undefined): string | null {
    return sub === undefined ? null : (this.names.get(sub) ?? null);
  }

  private rememberName(user: User): void {
    this.rememberNameOf(user.sub, user.name ?? user.sub);
  }

  private rememberNameOf(sub: string, name: string): void {
    this.names.delete(sub);
    this.names.set(sub, name);
    if (this.names.size > MAX_NAMES) this.names.delete(this.names.keys().next().value!);
  }

  private ringView(e: CallEntry, user: User): RingView {
    const camera = this.videoOf(user, e.device);
    return {
      callId: e.callId,
      deviceId: e.device.id,
      deviceName: e.device.name,
      camera,
      cameraName: camera ? (this.opts.cameraName?.(camera) ?? camera) : null,
      from: e.from,
      at: e.startedAt,
      expiresAt: e.expiresAt,
    };
  }

  private callView(e: CallEntry, user: User): CallView {
    const call = this.stateOf(e);
    const camera = this.videoOf(user, e.device);
    const by = call?.answeredBy ?? e.owner?.sub;
    const answered = call?.state === "answered";
    return {
      callId: e.callId,
      deviceId: e.device.id,
      deviceName: e.device.name,
      camera,
      cameraName: camera ? (this.opts.cameraName?.(camera) ?? camera) : null,
      direction: e.direction,
      state: call?.state ?? "ended",
      from: e.from,
      startedAt: e.startedAt,
      answeredAt: call?.answeredAt ?? null,
      answeredBy: answered ? (by ?? null) : null,
      answeredByName: answered ? this.nameOf(by) : null,
      mine: e.owner?.sub === user.sub,
    };
  }

  private historyView(r: CallRecord): HistoryView {
    return {
      callId: r.callId,
      deviceId: r.deviceId,
      deviceName: this.devices.get(r.deviceId)?.name ?? r.deviceId,
      direction: r.direction,
      from: r.from,
      startedAt: r.startedAt,
      answeredAt: r.answeredAt ?? null,
      answeredBy: r.answeredBy ?? null,
      answeredByName: this.nameOf(r.answeredBy),
      endedAt: r.endedAt,
      reason: r.reason,
      status: r.status ?? null,
      missed: r.reason === "missed",
      snapshot: this.snapshots.has(r.callId),
    };
  }

  /**
   * A picture of the door camera taken while `callId` rang (by a page that showed it), kept with
   * the call for the call log. The first one wins; later ones are ignored. Only users who may
   * answer the door, only for a call of the log or ringing now; PNG or JPEG by their magic bytes.
   */
  attachSnapshot(user: User, callId: string, bytes: Buffer): void {
    const deviceId = this.calls.get(callId)?.device.id ?? (this.opts.history?.() ?? this.ic.history()).find((r) => r.callId === callId)?.deviceId;
    if (!deviceId) throw new NotFoundError("no such call");
    if (!this.mayAnswer(user, deviceId)) throw new AuthError("FORBIDDEN", "not a door you may answer");
    const type = imageType(bytes);
    if (!type) throw new BadInputError("a snapshot must be a PNG or JPEG image");
    if (bytes.length > MAX_SNAPSHOT_BYTES) throw new BadInputError(`a snapshot must be at most ${MAX_SNAPSHOT_BYTES} bytes`);
    if (this.snapshots.has(callId)) return;
    this.snapshots.set(callId, { type, bytes: Buffer.from(bytes) });
    const keep = (this.opts.historyLimit ?? 50) + 16;
    while (this.snapshots.size > keep) this.snapshots.delete(this.snapshots.keys().next().value!);
  }

  /** The picture kept with `callId`, for a user who may see that call. */
  snapshotOf(user: User, callId: string): { type: string; bytes: Buffer } {
    const deviceId = this.calls.get(callId)?.device.id ?? (this.opts.history?.() ?? this.ic.history()).find((r) => r.callId === callId)?.deviceId;
    const snap = this.snapshots.get(callId);
    if (!deviceId || !snap || !this.mayAnswer(user, deviceId)) throw new NotFoundError("no snapshot for this call");
    return snap;
  }

  /** Doors this user may answer or talk to. */
  deviceViews(user: User): DeviceView[] {
    const elsewhere = this.opts.doorsElsewhere?.();
    const online = new Map<string, boolean>(this.ic.devices().map((d) => [d.id, d.online || elsewhere?.has(d.id) === true]));
    const out: DeviceView[] = [];
    for (const d of this.devices.values()) {
      if (!this.visible(user, d)) continue;
      const canAnswer = this.mayAnswer(user, d.id);
      const canTalk = this.mayTalk(user, d.id);
      if (!canAnswer && !canTalk) continue;
      const camera = this.videoOf(user, d);
      out.push({
        id: d.id,
        name: d.name,
        camera,
        cameraName: camera ? (this.opts.cameraName?.(camera) ?? camera) : null,
        online: online.get(d.id) ?? false,
        canAnswer,
        canTalk,
      });
    }
    return out;
  }

  /** Active calls the user may act on or holds, and recent finished ones of their doors, newest first. */
  callsFor(user: User): { active: CallView[]; history: HistoryView[] } {
    const active: CallView[] = [];
    for (const e of this.calls.values()) if (e.owner?.sub === user.sub || this.mayAnswer(user, e.device.id)) active.push(this.callView(e, user));
    return { active, history: this.history(user) };
  }

  /**
   * Finished calls of the doors this user may answer (and outgoing calls they held), newest
   * first: the call log behind the web client's missed calls. Read through here so the record
   * store can change underneath (today the SIP layer's bounded memory).
   */
  history(user: User, opts: { missedOnly?: boolean; limit?: number } = {}): HistoryView[] {
    const out: HistoryView[] = [];
    const all = this.opts.history?.() ?? this.ic.history();
    const limit = Math.min(opts.limit ?? Infinity, this.opts.historyLimit ?? 50);
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const r = all[i]!;
      const mine = r.direction === "outgoing" ? r.answeredBy === user.sub : this.mayAnswer(user, r.deviceId) || r.answeredBy === user.sub;
      if (!mine) continue;
      const v = this.historyView(r);
      if (opts.missedOnly && !v.missed) continue;
      out.push(v);
    }
    return out;
  }

  // ------------------------------------------------------------------ event stream

  /** Open the user's event stream on `res` (GET /events). Throws OverloadError past the stream limits. */
  openStream(user: User, res: ServerResponse): void {
    if (this.closed) throw new WrongStateError("intercom closing");
    let mine = 0;
    for (const s of this.subscribers) if (s.user.sub === user.sub) mine++;
    if (mine >= (this.opts.maxStreamsPerUser ?? 8) || this.subscribers.size >= (this.opts.maxStreams ?? 2000)) {
      throw new OverloadError("too many intercom event streams");
    }
    // eslint-disable-next-line prefer-const -- assigned after the stream exists (its close callback needs it)
    let sub: Subscriber;
    const stream = new SseStream(res, {
      heartbeatMs: this.opts.heartbeatMs ?? 15_000,
      retryMs: 3000,
      maxBufferedBytes: 256 * 1024,
      onClose: (reason) => {
        this.subscribers.delete(sub);
        sub.unwatch();
        for (const e of this.calls.values()) e.told.delete(sub);
        this.log.debug("intercom: event stream closed", { sub: user.sub, reason });
      },
    });
    sub = { user, stream, unwatch: () => {} };
    this.subscribers.add(sub);
    this.stats.streams++;
    // A signed-out or revoked session loses its ring stream at once.
    sub.unwatch = this.auth.watch(user, (reason) => stream.close(sessionEnded(reason), { event: "bye", data: { reason } }));
    const ringing: RingView[] = [];
    const calls: CallView[] = [];
    for (const e of this.calls.values()) {
      const call = this.stateOf(e);
      if (e.owner?.sub === user.sub) {
        e.told.add(sub);
        calls.push(this.callView(e, user));
      } else if (call?.state === "ringing" && this.mayAnswer(user, e.device.id)) {
        e.told.add(sub);
        ringing.push(this.ringView(e, user));
      }
    }
    stream.send("ready", { user: { sub: user.sub, name: user.name ?? user.sub }, ringing, calls });
  }

  private onRing(r: RingEvent, remote?: RemoteState): void {
    if (this.closed || this.calls.has(r.callId)) return;
    const device = this.devices.get(r.deviceId) ?? { id: r.deviceId, name: r.deviceName, camera: r.camera };
    const e: CallEntry = {
      callId: r.callId,
      device,
      direction: "incoming",
      from: r.from,
      startedAt: r.at,
      expiresAt: r.at + r.ringTimeoutMs,
      owner: undefined,
      peer: undefined,
      unwatch: undefined,
      told: new Set(),
      ...(remote ? { remote } : {}),
    };
    this.calls.set(r.callId, e);
    let n = 0;
    for (const s of this.subscribers) {
      if (!this.mayAnswer(s.user, device.id)) continue;
      e.told.add(s);
      if (s.stream.send("ring", this.ringView(e, s.user))) n++;
    }
    this.stats.ringsSent += n;
    this.log.info("intercom: ring sent to browsers", { call: r.callId, device: device.id, streams: n, ...(remote ? { node: remote.node } : {}) });
  }

  // ------------------------------------------------------------------ calls held by other nodes

  /** A door registered with another node rings (gateway/cluster/intercom.ts): this node's pages ring too. */
  remoteRing(r: RingEvent, node: string): void {
    this.onRing(r, { node, state: "ringing", answeredAt: undefined, answeredBy: undefined });
  }

  /** Another node's call was answered (by anyone, anywhere). */
  remoteAnswered(callId: string, by: string, byName: string | null, at: number, purpose: "open-door" | undefined): void {
    const e = this.calls.get(callId);
    if (!e?.remote) return;
    if (byName !== null && !this.names.has(by)) this.rememberNameOf(by, byName);
    e.remote.state = "answered";
    e.remote.answeredBy = by;
    e.remote.answeredAt = at;
    // Answered by the gateway to open the door: the end says who opened it (`door-opened`).
    if (purpose === "open-door") e.openedBy = { sub: by, name: byName ?? undefined };
    this.onAnswered(callId, by, purpose);
  }

  /** Another node's call ended: its record, for the pages told of it here. */
  remoteEnded(rec: CallRecord): void {
    if (this.calls.get(rec.callId)?.remote) this.onEnded(rec);
  }

  /** The node holding the call is gone: the call ends on this node's pages. */
  remoteLost(callId: string): void {
    const e = this.calls.get(callId);
    if (!e?.remote) return;
    const now = Date.now();
    this.onEnded({ callId: e.callId, deviceId: e.device.id as CallRecord["deviceId"], direction: e.direction, from: e.from, startedAt: e.startedAt, answeredAt: e.remote.answeredAt, answeredBy: e.remote.answeredBy, endedAt: now, reason: "failed", status: undefined });
  }

  remoteDtmf(callId: string, digit: string): void {
    if (this.calls.get(callId)?.remote) this.onDoorDtmf(callId, digit);
  }

  /** A door came online or went offline at another node (and is not registered here). */
  remoteDevice(deviceId: string, online: boolean): void {
    if (this.ic.devices().some((d) => d.id === deviceId && d.online)) return;
    this.onDevice(deviceId, online);
  }

  /**
   * A user of this node holds a call another node holds the dialog of (their answer or their
   * "talk to the door" went there): this node's pages of that user follow it.
   */
  remoteHeld(call: { callId: string; deviceId: string; direction: "incoming" | "outgoing"; from: string; startedAt: number }, node: string, user: User): void {
    let e = this.calls.get(call.callId);
    if (!e) {
      const device = this.devices.get(call.deviceId);
      if (!device) return;
      e = {
        callId: call.callId as CallId,
        device,
        direction: call.direction,
        from: call.from,
        startedAt: call.startedAt,
        expiresAt: call.startedAt,
        owner: undefined,
        peer: undefined,
        unwatch: undefined,
        told: new Set(),
        remote: { node, state: "answered", answeredAt: Date.now(), answeredBy: user.sub },
      };
      this.calls.set(call.callId, e);
    }
    if (!e.remote) return;
    e.owner = { sub: user.sub, name: user.name };
    this.rememberName(user);
  }

  private onAnswered(callId: string, userId: string, purpose: "open-door" | undefined): void {
    const e = this.calls.get(callId);
    if (!e) return;
    const data = { callId, deviceId: e.device.id, by: userId, byName: this.nameOf(userId) ?? userId, ...(purpose ? { purpose } : {}) };
    for (const s of e.told) s.stream.send("answered", { ...data, you: s.user.sub === userId });
  }

  private onEnded(rec: CallRecord): void {
    const e = this.calls.get(rec.callId);
    if (!e) return;
    this.calls.delete(rec.callId);
    e.unwatch?.();
    void e.peer?.close(`call ended: ${rec.reason}`);
    const data = { ...this.historyView(rec) };
    const recipients = this.recipients(e);
    if (rec.reason === "door-opened" && e.openedBy) {
      // Before `ended`, so a ring card says who opened the door rather than "Call ended".
      const by = e.openedBy.sub;
      const opened = { callId: rec.callId, deviceId: e.device.id, deviceName: e.device.name, by, byName: this.nameOf(by) ?? by, at: rec.endedAt };
      for (const s of recipients) s.stream.send("door-opened", { ...opened, you: s.user.sub === by });
    }
    for (const s of recipients) s.stream.send("ended", data);
  }

  private onDoorDtmf(callId: string, digit: string): void {
    const e = this.calls.get(callId);
    if (!e?.owner) return;
    for (const s of this.subscribers) if (s.user.sub === e.owner.sub) s.stream.send("dtmf", { callId, digit });
  }

  private onDevice(deviceId: string, online: boolean): void {
    for (const s of this.subscribers) if (this.mayAnswer(s.user, deviceId) || this.mayTalk(s.user, deviceId)) s.stream.send("device", { deviceId, online });
  }

  /** Streams told about the call, plus every stream of the person holding it. */
  private recipients(e: CallEntry): Set<Subscriber> {
    const out = new Set(e.told);
    if (e.owner) for (const s of this.subscribers) if (s.user.sub === e.owner.sub) out.add(s);
    return out;
  }

  // ------------------------------------------------------------------ actions

  /**
   * Answer a ringing call with the browser's SDP offer; returns the answer SDP. The first
   * answer wins: later ones throw CallAlreadyAnsweredError (409, with who answered).
   */
  async answer(user: User, callId: string, offerSdp: string): Promise<{ answerSdp: string; call: CallView }> {
    // Unknown, or not a door this user may answer: 404 either way (entryFor).
    const e = this.entryFor(user, callId);
    if (e.direction !== "incoming") throw new WrongStateError("not an incoming call");
    const call = this.ic.get(callId);
    if (!call) throw new NotFoundError("no such call");
    if (call.state === "answered") throw new CallAlreadyAnsweredError(call.answeredBy ?? "someone");
    if (call.state !== "ringing") throw new WrongStateError(`call is ${call.state}`);
    await this.claim(callId, user.sub);
    const codec = pickCodec(call, offerSdp);
    const peer = await this.createPeer(offerSdp, codec, callId);
    this.rememberName(user);
    let answered: SipCall;
    try {
      // Another browser may have answered while we negotiated: intercom.answer decides (first wins).
      answered = this.ic.answer(callId, intercomUser(user), { sink: peer });
    } catch (err) {
      if (err instanceof CallAlreadyAnsweredError) this.stats.answerConflicts++;
      await peer.close(TalkPeerCloseReasons.answerRefused);
      throw err;
    }
    this.stats.answers++;
    this.attach(e, answered, peer, user, "answer_intercom");
    this.log.info("intercom: answered in the browser", { call: callId, device: e.device.id, sub: user.sub, codec });
    return { answerSdp: peer.answerSdp, call: this.callView(e, user) };
  }

  /** The cluster's claim on answering (first anywhere wins); without a cluster, or its store, the SIP layer decides. */
  private async claim(callId: string, sub: string): Promise<void> {
    if (!this.opts.claimAnswer) return;
    let winner: string;
    try {
      winner = await this.opts.claimAnswer(callId, sub);
    } catch (err) {
      this.log.warn("intercom: the cluster cannot be asked who answers first; this node decides", { call: callId, err });
      return;
    }
    if (winner !== sub) {
      this.stats.answerConflicts++;
      throw new CallAlreadyAnsweredError(winner);
    }
  }

  /** Decline a ringing call for everyone (603 to the door). */
  reject(user: User, callId: string): void {
    const e = this.entryFor(user, callId);
    if (!this.mayAnswer(user, e.device.id)) throw new AuthError("FORBIDDEN", "only those who may answer this door can decline");
    const call = this.ic.get(callId);
    if (!call) throw new NotFoundError("no such call");
    if (call.state !== "ringing") throw new WrongStateError(`call is ${call.state}`);
    this.ic.reject(callId, intercomUser(user));
  }

  /** Hang up the user's call; on a ringing call, the same as reject. */
  hangup(user: User, callId: string): void {
    const e = this.entryFor(user, callId);
    if (this.ic.get(callId)?.state === "ringing" && e.direction === "incoming") return this.reject(user, callId);
    this.mustOwn(user, e);
    this.ic.hangup(callId);
  }

  /**
   * "Open door". On a call the user holds: the door's configured digits in that call. On a
   * ringing call: the gateway answers it itself, with no browser media, sends the digits,
   * waits until they are sent and hangs up (Intercom.openRinging); everyone who got the ring
   * hears `door-opened` with who opened it. Needs `answer_intercom` on the door (and, for a
   * ringing call, the door's answerer lists), checked now: a user who may see the door but not
   * answer it gets 403, one who may not see it 404, exactly like an unknown call.
   */
  async openDoor(user: User, callId: string): Promise<{ answeredByGateway: boolean }> {
    const e = this.calls.get(callId);
    if (!e || !this.visible(user, e.device)) throw new NotFoundError("no such call");
    const call = this.ic.get(callId);
    if (!call) throw new NotFoundError("no such call");
    if (call.state === "ringing" && e.direction === "incoming") {
      if (!this.mayAnswer(user, e.device.id)) throw new AuthError("FORBIDDEN", "opening this door needs the answer_intercom right");
      await this.claim(callId, user.sub);
      this.rememberName(user);
      e.openedBy = { sub: user.sub, name: user.name };
      try {
        await this.ic.openRinging(callId, intercomUser(user));
      } catch (err) {
        if (err instanceof CallAlreadyAnsweredError) this.stats.answerConflicts++;
        throw err;
      }
      this.stats.doorOpens++;
      this.log.info("intercom: door opened without answering", { call: callId, device: e.device.id, sub: user.sub });
      return { answeredByGateway: true };
    }
    if (!this.right(user, e.device, "answer_intercom")) throw new AuthError("FORBIDDEN", "opening this door needs the answer_intercom right");
    // Someone is opening it already (the gateway answered for them): the same answer as a lost race to answer.
    if (e.openedBy) throw new CallAlreadyAnsweredError(e.openedBy.sub);
    this.mustOwn(user, e);
    await this.ic.openDoor(callId);
    this.stats.doorOpens++;
    this.log.info("intercom: door opened", { call: callId, device: e.device.id, sub: user.sub });
    return { answeredByGateway: false };
  }

  async dtmf(user: User, callId: string, digits: string): Promise<void> {
    if (!/^[0-9*#A-Da-d]{1,32}$/.test(digits)) throw new BadInputError("digits: 1 to 32 of 0-9 * # A-D");
    const e = this.entryFor(user, callId);
    this.mustOwn(user, e);
    await this.ic.sendDtmf(callId, digits.toUpperCase());
  }

  /**
   * "Talk to the door": call a configured door (needs `talk`). Resolves once the door has
   * answered and the browser's offer is answered. `gone` aborts when the browser gives up:
   * while the door rings, the call is cancelled (the door stops ringing); after it
   * answered, it is hung up at once.
   */
  async call(user: User, deviceId: string, offerSdp: string, gone: AbortSignal): Promise<{ answerSdp: string; call: CallView }> {
    const d = this.deviceFor(user, deviceId);
    if (!this.mayTalk(user, d.id)) throw new AuthError("FORBIDDEN", "talk not allowed on this door");
    const offer = readAudioOffer(offerSdp);
    if (!offer || offer.payloadTypes.size === 0) throw new BadInputError("the offer has no PCMU or PCMA audio");
    this.rememberName(user);
    this.stats.outgoing++;
    const call = await this.ic.call(d.id, intercomUser(user), { signal: gone });
    const entry: CallEntry = {
      callId: call.id,
      device: d,
      direction: "outgoing",
      from: call.from,
      startedAt: call.startedAt,
      expiresAt: call.startedAt,
      owner: { sub: user.sub, name: user.name },
      peer: undefined,
      unwatch: undefined,
      told: new Set(),
    };
    let peer: TalkPeer | undefined;
    try {
      if (gone.aborted) throw new WrongStateError("the browser left before the door answered");
      peer = await this.createPeer(offerSdp, pickCodec(call, offerSdp), call.id);
      if (call.state !== "answered") throw new WrongStateError(`the door ended the call (${call.state})`);
      if (gone.aborted) throw new WrongStateError("the browser left before the call was set up");
    } catch (err) {
      await peer?.close(TalkPeerCloseReasons.setupFailed);
      call.hangup();
      throw err;
    }
    this.calls.set(call.id, entry);
    call.setSink(peer);
    this.attach(entry, call, peer, user, "talk");
    this.log.info("intercom: talking to the door from the browser", { call: call.id, device: d.id, sub: user.sub });
    return { answerSdp: peer.answerSdp, call: this.callView(entry, user) };
  }

  /** The talk peer's figures for the user's own call (diagnostics, tests). */
  talkStats(user: User, callId: string): TalkPeerStats | undefined {
    const e = this.entryFor(user, callId);
    return e.owner?.sub === user.sub ? e.peer?.stats() : undefined;
  }

  private async createPeer(offerSdp: string, codec: G711Codec, callId: string): Promise<TalkPeer> {
    const m = this.opts.media;
    return TalkPeer.create({
      offerSdp: m.screenOffer ? m.screenOffer(offerSdp) : offerSdp,
      codec,
      bindAddress: m.bindAddress,
      icePortRange: m.icePortRange,
      announcedAddress: m.announcedAddress,
      log: this.log.child({ call: callId, component: "talk" }),
      ...this.opts.talk,
    });
  }

  /** Wire a connected call to its talk peer and its owner; hang up when either side goes. */
  private attach(e: CallEntry, call: SipCall, peer: TalkPeer, user: User, action: AuthAction): void {
    e.owner = { sub: user.sub, name: user.name };
    e.peer = peer;
    peer.setUplink((packet) => call.sendRtp(packet));
    peer.events.on("state", (s, detail) => {
      if (s !== "failed") return;
      this.stats.talkFailures++;
      this.log.warn("intercom: browser audio failed; hanging up", { call: e.callId, detail });
      this.ic.get(e.callId)?.hangup();
    });
    // Signed out, revoked, or the right withdrawn: the call ends like a stream would.
    const scope = e.device.camera !== undefined ? { cameraId: e.device.camera, action } : undefined;
    e.unwatch = this.auth.watch(
      user,
      (reason) => {
        this.log.info("intercom: hanging up, the user's sign-in ended", { call: e.callId, reason });
        this.ic.get(e.callId)?.hangup();
      },
      scope,
    );
    // The call may have ended while we wired it (the door hung up at once).
    if (call.state === "ended") {
      const rec = this.ic.history().findLast((r) => r.callId === e.callId);
      if (rec) this.onEnded(rec);
    }
  }

  /**
   * End every event stream and talk peer (calls are ended by the SIP server). Every caller gets
   * the same promise. `reason` is for the log.
   */
  close(reason = "closed"): Promise<void> {
    this.closing ??= this.doClose(reason);
    return this.closing;
  }

  private async doClose(reason: string): Promise<void> {
    this.closed = true;
    this.log.debug("intercom: closing", { reason });
    for (const off of this.offs.splice(0)) off();
    for (const s of [...this.subscribers]) s.stream.close(StreamEndReasons.closing, { event: "bye", data: { reason: "closing" } });
    const peers: Promise<void>[] = [];
    for (const e of this.calls.values()) {
      e.unwatch?.();
      if (e.peer) peers.push(e.peer.close(TalkPeerCloseReasons.closing));
    }
    this.calls.clear();
    await Promise.all(peers);
  }
}

/** The SIP layer's view of a signed-in user. */
function intercomUser(user: User): IntercomUser {
  return { id: user.sub, groups: user.roles };
}

/** The door's codec when known, else the first of PCMU, PCMA the browser offers. */
function pickCodec(call: SipCall, offerSdp: string): G711Codec {
  const door = call.audioTrack?.codec;
  if (door === "PCMU" || door === "PCMA") return door;
  const offered = readAudioOffer(offerSdp)?.payloadTypes;
  return offered?.has("PCMU") || !offered?.has("PCMA") ? "PCMU" : "PCMA";
}
