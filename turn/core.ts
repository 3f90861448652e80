/**
 * The TURN server's protocol core (RFC 8489 STUN, RFC 8656 TURN over UDP relays).
 *
 * No sockets, no timers: bytes, a 5-tuple and the time come in; typed actions come
 * out (reply to the client, open or release a relay socket, send to a peer, or
 * ignore — with the reason). The adapter in `turn/server.ts` performs them.
 *
 * Two entry points are the relay hot path and return no action objects:
 * `channelDataFromClient` returns the channel to forward through, and `fromPeer`
 * returns the bytes to send to the client; every drop is counted in `metrics`.
 */
import { randomBytes, randomFillSync } from "node:crypto";
import { allocationId, type AllocationId } from "../config/ids.ts";
import { SafeEmitter } from "../config/events.ts";
import type { Logger } from "../config/log.ts";
import { Allocation, Channel, Permission, type ClientTuple, type RelayEndpoint } from "./allocation.ts";
import { CredentialKeys, parseRestUsername } from "./credentials.ts";
import { reject, stunErrorFor, type TurnReject } from "./errors.ts";
import { TurnMetrics } from "./metrics.ts";
import { NonceIssuer } from "./nonce.ts";
import type { PeerPolicy, PeerVerdict } from "./policy.ts";
import { addressKey, ipKey, ipv4ToInt, parseIp, type IpFamily, type TransportAddress } from "./stun/address.ts";
import { Attr, ErrorCode, Family, HEADER_LENGTH, MAGIC_COOKIE, MessageClass, Method, TRANSPORT_UDP } from "./stun/constants.ts";
import { fingerprintOk, integrityAlgorithmOf, verifyIntegrity, type IntegrityAlgorithm } from "./stun/integrity.ts";
import {
  attrBytes,
  attrChannelNumber,
  attrString,
  attrU32,
  attrXorAddress,
  getAttr,
  getAttrs,
  parseStun,
  type StunMessage,
} from "./stun/message.ts";
import { StunWriter } from "./stun/writer.ts";

/** What the core asks the adapter to do. */
export type TurnAction =
  /** Send `data` to the client of `to` (through `to.link`). */
  | { readonly kind: "reply"; readonly to: ClientTuple; readonly data: Buffer }
  /** Bind relay socket(s), then call `relayOpened(request.id, …)` or `relayFailed(request.id)`. */
  | { readonly kind: "open-relay"; readonly request: RelayRequest }
  /** Send `data` from `relay` to `peer` (a Send indication's payload). */
  | { readonly kind: "send-peer"; readonly relay: RelayEndpoint; readonly peer: TransportAddress; readonly data: Buffer }
  /** Close a relay socket: its allocation or reservation ended. */
  | { readonly kind: "release-relay"; readonly endpoint: RelayEndpoint }
  /**
   * End the client's TCP/TLS connection: its allocation ended (RFC 8656 §3.1: they share a
   * fate). Always comes after any reply in the same list, so the last answer is written first.
   */
  | { readonly kind: "end-client"; readonly tuple: ClientTuple }
  /** Nothing to do; the reason is counted and may be logged. */
  | { readonly kind: "ignore"; readonly reason: IgnoreReason };

export type IgnoreReason =
  | "malformed" // not STUN, truncated, bad length, bad attribute layout
  | "bad-fingerprint"
  | "rate-limited" // source exceeded its failed-auth budget
  | "not-a-request" // responses from a client, Binding indications
  | "indication-dropped" // Send indication without allocation, attributes or permission
  | "retransmission" // Allocate retransmitted while its relay is being opened
  | "stale-relay" // relayOpened for a request that no longer exists
  | "closed"; // the server is closing

export interface RelayRequest {
  readonly id: number;
  /** Families to open, in order: [4], [6] or [4, 6] (dual allocation). */
  readonly families: readonly IpFamily[];
  /** EVEN-PORT: the (first) relay port must be even (RFC 8656 §7.2). */
  readonly evenPort: boolean;
  /** EVEN-PORT with R=1: also hold port+1 for a later Allocate with RESERVATION-TOKEN. */
  readonly reserveNext: boolean;
}

export interface AllocationInfo {
  readonly id: AllocationId;
  /** The 5-tuple's lookup key (the adapter finds its connection by it). */
  readonly tupleKey: number | string;
  readonly subject: string;
  readonly session: string | undefined;
  readonly username: string;
  readonly transport: ClientTuple["transport"];
  readonly client: TransportAddress;
  readonly relays: readonly TransportAddress[];
}

export type AllocationCloseReason = "expired" | "refresh-zero" | "transport-closed" | "revoked" | "session-ended" | "client-gone" | "server-closed";

/** Why an authenticated request was refused for quota or capacity (logged and counted). */
export type RefusalReason = "user-quota" | "server-full" | "relay-ports" | "permissions" | "channels";

export type TurnEvents = {
  "allocation-created": [info: AllocationInfo];
  "allocation-closed": [info: AllocationInfo, reason: AllocationCloseReason];
  "auth-failure": [source: string, reason: string];
  "peer-denied": [id: AllocationId, peer: string, verdict: PeerVerdict];
  "refused": [subject: string, reason: RefusalReason];
};

export interface TurnCoreOptions {
  /** REALM (RFC 8489 §14.9). */
  realm: string;
  /** Accepted shared secrets, newest first. */
  secrets: readonly string[];
  /** NONCE validity, seconds. */
  nonceLifetimeSeconds: number;
  lifetimes: {
    /** Default allocation lifetime, seconds (600). */
    allocationSeconds: number;
    /** Maximum allocation lifetime, seconds (3600). */
    maxAllocationSeconds: number;
    /** Permission lifetime, seconds (300). */
    permissionSeconds: number;
    /** Channel lifetime, seconds (600). */
    channelSeconds: number;
  };
  quotas: {
    allocationsPerUser: number;
    totalAllocations: number;
    /** Per allocation and direction, bytes/s; 0 = unlimited. */
    bandwidthBytesPerSecond: number;
    authFailuresPerMinute: number;
    permissionsPerAllocation: number;
    channelsPerAllocation: number;
  };
  policy: PeerPolicy;
  /** Address families the adapter can open relays in. */
  families: { v4: boolean; v6: boolean };
  log: Logger;
  metrics?: TurnMetrics;
  /** Nonce MAC key (tests); random otherwise. */
  nonceKey?: Buffer;
  /**
   * How long an ended session's reference is remembered (its credentials refused), ms:
   * at least the longest lifetime of credentials minted for a session. Default 24 h.
   */
  endedSessionMemoryMs?: number;
  /**
   * Whether a sign-in session (by reference) is still live: the authority when given (the
   * gateway's auth). Credentials of a session it does not know are refused, and allocations
   * of such sessions close at the next tick; this also covers ends the relay was not told of.
   */
  sessionActive?: (ref: string) => boolean;
}

/** How long an Allocate may wait for its relay socket before it is forgotten, ms. */
const PENDING_TIMEOUT_MS = 10_000;
/** RFC 8656 §7.2: a reserved port is held for about 30 s. */
const RESERVATION_MS = 30_000;
/** RFC 8656 §12: an expired channel's number and peer stay tied to each other for 5 minutes. */
const CHANNEL_COOLDOWN_MS = 300_000;
/** Sources remembered by the failed-auth limiter (bounded whatever the traffic). */
const LIMITER_ENTRIES = 16_384;
/** Ended sessions remembered (bounded; sessions end at human rates, far below this). */
const ENDED_SESSIONS = 262_144;
/** One refusal log line per subject and reason per this many ms (the counter counts them all). */
const REFUSAL_LOG_MS = 10_000;

interface Pending {
  readonly id: number;
  readonly tuple: ClientTuple;
  readonly transaction: string;
  readonly username: string;
  readonly subject: string;
  readonly session: string | undefined;
  readonly key: Buffer;
  readonly integrity: IntegrityAlgorithm;
  readonly lifetimeSeconds: number;
  readonly transactionId: Buffer;
  /** ADDITIONAL-ADDRESS-FAMILY asked for IPv6 and we cannot: answer ADDRESS-ERROR-CODE 440. */
  readonly v6Unavailable: boolean;
  readonly reserveNext: boolean;
  readonly deadline: number;
}

interface Authenticated {
  readonly username: string;
  readonly subject: string;
  readonly session: string | undefined;
  readonly key: Buffer;
  readonly integrity: IntegrityAlgorithm;
  readonly expired: boolean;
}

/** Per-source failed-auth counter over a one-minute window; bounded in size. */
class AuthLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  limited(ip: string, now: number): boolean {
    const w = this.windows.get(ip);
    if (!w) return false;
    if (now - w.start >= 60_000) {
      this.windows.delete(ip);
      return false;
    }
    return w.count >= this.limit;
  }
  fail(ip: string, now: number): void {
    const w = this.windows.get(ip);
    if (w && now - w.start < 60_000) {
      w.count++;
      return;
    }
    if (w) this.windows.delete(ip);
    if (this.windows.size >= LIMITER_ENTRIES) {
      const first = this.windows.keys().next();
      if (!first.done) this.windows.delete(first.value);
    }
    this.windows.set(ip, { start: now, count: 1 });
  }
  sweep(now: number): void {
    for (const [ip, w] of this.windows) if (now - w.start >= 60_000) this.windows.delete(ip);
  }
  get size(): number {
    return this.windows.size;
  }
}

export class TurnCore {
  readonly metrics: TurnMetrics;
  /** Monitoring events; a throwing listener is reported, never propagated. */
  readonly events: SafeEmitter<TurnEvents>;
  private readonly opts: TurnCoreOptions;
  private readonly log: Logger;
  private readonly keys: CredentialKeys;
  private readonly nonces: NonceIssuer;
  private readonly limiter: AuthLimiter;
  private readonly byTuple = new Map<number | string, Allocation>();
  private readonly byId = new Map<AllocationId, Allocation>();
  private readonly pending = new Map<number, Pending>();
  private readonly pendingByTuple = new Map<number | string, Pending>();
  private readonly perSubject = new Map<string, number>();
  private readonly reservations = new Map<string, { endpoint: RelayEndpoint; expiresAt: number }>();
  /** Ended sessions' references → when to forget them (ms). */
  private readonly endedSessions = new Map<string, number>();
  private readonly refusalLogged = new Map<string, number>();
  private nextPending = 1;
  private nextAllocation = 1;
  private closed = false;

  constructor(opts: TurnCoreOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.metrics = opts.metrics ?? new TurnMetrics();
    this.events = new SafeEmitter<TurnEvents>((event, err) => this.log.warn("turn event listener threw", { event, err }));
    this.keys = new CredentialKeys({ secrets: opts.secrets, realm: opts.realm });
    this.nonces = new NonceIssuer({ lifetimeSeconds: opts.nonceLifetimeSeconds, ...(opts.nonceKey ? { key: opts.nonceKey } : {}) });
    this.limiter = new AuthLimiter(opts.quotas.authFailuresPerMinute);
  }

  /** Live allocations (gauge). */
  get allocationCount(): number {
    return this.byId.size;
  }

  /** Every live allocation (ops pages, tests). */
  listAllocations(): AllocationInfo[] {
    return [...this.byId.values()].map(allocationInfo);
  }

  /** Allocation of a 5-tuple (tests and adapters). */
  allocationFor(key: number | string): Allocation | undefined {
    return this.byTuple.get(key);
  }

  /** Sizes of every table, for leak checks: all must stay bounded under hostile input. */
  tableSizes(): { allocations: number; tuples: number; pending: number; subjects: number; reservations: number; limiter: number } {
    return {
      allocations: this.byId.size,
      tuples: this.byTuple.size,
      pending: this.pending.size,
      subjects: this.perSubject.size,
      reservations: this.reservations.size,
      limiter: this.limiter.size,
    };
  }

  // ---------------------------------------------------------------------------
  // Control path: STUN messages from clients.

  /** A STUN message from a client (a whole UDP datagram or one TCP frame). */
  handleStun(buf: Buffer, tuple: ClientTuple, now: number): TurnAction[] {
    if (this.closed) return [{ kind: "ignore", reason: "closed" }];
    const parsed = parseStun(buf);
    if (!parsed.ok) {
      this.metrics.malformed++;
      return [{ kind: "ignore", reason: "malformed" }];
    }
    const msg = parsed.msg;
    // RFC 8489 §7.3: a message whose FINGERPRINT does not check is discarded.
    if (!fingerprintOk(msg)) {
      this.metrics.malformed++;
      return [{ kind: "ignore", reason: "bad-fingerprint" }];
    }
    try {
      if (msg.cls === MessageClass.Indication) {
        if (msg.method === Method.Send) return [this.sendIndication(msg, tuple, now)];
        return [{ kind: "ignore", reason: "not-a-request" }];
      }
      if (msg.cls !== MessageClass.Request) return [{ kind: "ignore", reason: "not-a-request" }];
      switch (msg.method) {
        case Method.Binding:
          return [this.binding(msg, tuple)];
        case Method.Allocate:
        case Method.Refresh:
        case Method.CreatePermission:
        case Method.ChannelBind:
          return this.authenticatedRequest(msg, tuple, now);
        default:
          // RFC 8489 §6.3.1: a request for a method we do not know gets 400.
          return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "Unknown Method"))];
      }
    } catch (e) {
      this.log.error("turn request handler failed", { method: msg.method, err: e });
      return [this.error(msg, tuple, stunErrorFor(e))];
    }
  }

  private binding(msg: StunMessage, tuple: ClientTuple): TurnAction {
    if (msg.unknownRequired.length) return this.error(msg, tuple, reject(ErrorCode.UnknownAttribute, undefined, msg.unknownRequired));
    const w = new StunWriter(Method.Binding, MessageClass.Success, msg.transactionId);
    w.xorAddress(Attr.XorMappedAddress, tuple.remote.address, tuple.remote.port);
    w.fingerprint();
    return { kind: "reply", to: tuple, data: w.finish() };
  }

  /** RFC 8489 §9.2.4 long-term credential checks, then the TURN method. */
  private authenticatedRequest(msg: StunMessage, tuple: ClientTuple, now: number): TurnAction[] {
    const source = tuple.remote.address;
    if (this.limiter.limited(source, now)) {
      this.metrics.authRateLimited++;
      return [{ kind: "ignore", reason: "rate-limited" }];
    }
    const algo = integrityAlgorithmOf(msg);
    if (!algo) {
      this.metrics.challenges++;
      return [this.challenge(msg, tuple, now, ErrorCode.Unauthorized)];
    }
    const userAttr = getAttr(msg, Attr.Username);
    const realmAttr = getAttr(msg, Attr.Realm);
    const nonceAttr = getAttr(msg, Attr.Nonce);
    if (!userAttr || !realmAttr || !nonceAttr) {
      return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "Missing USERNAME, REALM or NONCE"))];
    }
    const nonceState = this.nonces.check(attrString(msg, nonceAttr), source, now);
    if (nonceState !== "ok") {
      this.metrics.staleNonces++;
      return [this.challenge(msg, tuple, now, ErrorCode.StaleNonce)];
    }
    const username = attrString(msg, userAttr);
    const fail = (why: string): TurnAction[] => {
      this.metrics.authFailures++;
      this.limiter.fail(source, now);
      this.events.emit("auth-failure", source, why);
      this.log.debug("turn auth failure", { source, reason: why });
      return [this.challenge(msg, tuple, now, ErrorCode.Unauthorized)];
    };
    if (attrString(msg, realmAttr) !== this.opts.realm) return fail("wrong realm");
    const rest = parseRestUsername(username);
    if (!rest) return fail("username is not expiry:subject");
    let key: Buffer | undefined;
    for (const k of this.keys.keysFor(username)) {
      if (verifyIntegrity(msg, k)) {
        key = k;
        break;
      }
    }
    if (!key) return fail("bad message integrity");
    const auth: Authenticated = {
      username,
      subject: rest.subject,
      session: rest.session,
      key,
      integrity: algo,
      expired: rest.expiresAt * 1000 <= now,
    };
    // Genuine credentials (the MAC checked) that are no longer valid: refused, but not counted
    // against the source's failure budget (a stale tab must not lock its network out).
    if (auth.session !== undefined && !this.sessionLive(auth.session)) {
      this.metrics.authFailures++;
      this.metrics.sessionEndedRefusals++;
      this.events.emit("auth-failure", source, "session ended");
      return [this.challenge(msg, tuple, now, ErrorCode.Unauthorized, "Session Ended")];
    }
    if (auth.expired && !isDeallocation(msg)) {
      // RFC 8656 §5: every request is authenticated; credentials past their expiry neither
      // create nor maintain an allocation (no Refresh, CreatePermission or ChannelBind).
      // Only a Refresh with LIFETIME 0 (the client giving the allocation back) is still taken.
      this.metrics.authFailures++;
      this.events.emit("auth-failure", source, "credentials expired");
      return [this.challenge(msg, tuple, now, ErrorCode.Unauthorized, "Credentials Expired")];
    }
    // RFC 8489 §6.3.1.1: unknown comprehension-required attributes → 420, once we know who asks.
    if (msg.unknownRequired.length) {
      return [this.error(msg, tuple, reject(ErrorCode.UnknownAttribute, undefined, msg.unknownRequired), auth)];
    }
    switch (msg.method) {
      case Method.Allocate:
        return this.allocate(msg, tuple, auth, now);
      case Method.Refresh:
        return this.refresh(msg, tuple, auth, now);
      case Method.CreatePermission:
        return [this.createPermission(msg, tuple, auth, now)];
      default:
        return [this.channelBind(msg, tuple, auth, now)];
    }
  }

  /** Existing allocation checks shared by Refresh, CreatePermission and ChannelBind. */
  private existing(msg: StunMessage, tuple: ClientTuple, auth: Authenticated): Allocation | TurnAction {
    const alloc = this.byTuple.get(tuple.key);
    if (!alloc) return this.error(msg, tuple, reject(ErrorCode.AllocationMismatch), auth);
    // RFC 8656 §5: later requests must use the allocation's credentials (expired or revoked
    // ones never get here: authenticatedRequest refused them).
    if (alloc.username !== auth.username) return this.error(msg, tuple, reject(ErrorCode.WrongCredentials), auth);
    return alloc;
  }

  // RFC 8656 §7.2 Receiving an Allocate Request.
  private allocate(msg: StunMessage, tuple: ClientTuple, auth: Authenticated, now: number): TurnAction[] {
    const tid = msg.transactionId.toString("hex");
    const current = this.byTuple.get(tuple.key);
    if (current) {
      // A retransmission of the request that created it gets the same answer.
      if (current.allocateTransaction === tid && current.allocateResponse && current.username === auth.username)
        return [{ kind: "reply", to: tuple, data: current.allocateResponse }];
      return [this.error(msg, tuple, reject(ErrorCode.AllocationMismatch), auth)];
    }
    const pend = this.pendingByTuple.get(tuple.key);
    if (pend) {
      if (pend.transaction === tid) return [{ kind: "ignore", reason: "retransmission" }];
      return [this.error(msg, tuple, reject(ErrorCode.AllocationMismatch), auth)];
    }
    const transportAttr = getAttr(msg, Attr.RequestedTransport);
    if (!transportAttr || transportAttr.length !== 4) return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "Missing REQUESTED-TRANSPORT"), auth)];
    if (msg.raw[transportAttr.offset] !== TRANSPORT_UDP) return [this.error(msg, tuple, reject(ErrorCode.UnsupportedTransportProtocol), auth)];

    const evenAttr = getAttr(msg, Attr.EvenPort);
    const tokenAttr = getAttr(msg, Attr.ReservationToken);
    const familyAttr = getAttr(msg, Attr.RequestedAddressFamily);
    const additionalAttr = getAttr(msg, Attr.AdditionalAddressFamily);
    if (tokenAttr && (evenAttr || familyAttr || additionalAttr))
      return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "RESERVATION-TOKEN excludes EVEN-PORT and address families"), auth)];
    if (familyAttr && additionalAttr)
      return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "REQUESTED- and ADDITIONAL-ADDRESS-FAMILY together"), auth)];
    if (evenAttr && evenAttr.length < 1) return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "Malformed EVEN-PORT"), auth)];

    let family: IpFamily = 4;
    if (familyAttr) {
      const f = familyAttr.length === 4 ? msg.raw[familyAttr.offset] : -1;
      if (f === Family.IPv6) family = 6;
      else if (f !== Family.IPv4) return [this.error(msg, tuple, reject(ErrorCode.AddressFamilyNotSupported), auth)];
    }
    if ((family === 4 && !this.opts.families.v4) || (family === 6 && !this.opts.families.v6))
      return [this.error(msg, tuple, reject(ErrorCode.AddressFamilyNotSupported), auth)];
    const families: IpFamily[] = [family];
    let v6Unavailable = false;
    if (additionalAttr) {
      // RFC 8656 §7.2: ADDITIONAL-ADDRESS-FAMILY may only ask for IPv6 (the default family is IPv4).
      if (additionalAttr.length !== 4 || msg.raw[additionalAttr.offset] !== Family.IPv6)
        return [this.error(msg, tuple, reject(ErrorCode.BadRequest, "ADDITIONAL-ADDRESS-FAMILY must be IPv6"), auth)];
      if (this.opts.families.v6) families.push(6);
      else v6Unavailable = true;
    }

    // Quotas count live and pending allocations.
    const q = this.opts.quotas;
    if ((this.perSubject.get(auth.subject) ?? 0) >= q.allocationsPerUser) {
      this.refused(auth.subject, "user-quota", now);
      return [this.error(msg, tuple, reject(ErrorCode.AllocationQuotaReached), auth)];
    }
    if (this.byId.size + this.pending.size >= q.totalAllocations) {
      this.refused(auth.subject, "server-full", now);
      return [this.error(msg, tuple, reject(ErrorCode.InsufficientCapacity, "Server Full"), auth)];
    }

    const lifetimeAttr = getAttr(msg, Attr.Lifetime);
    const lifetimeSeconds = this.allocationLifetime(lifetimeAttr ? attrU32(msg, lifetimeAttr) : undefined);
    const id = this.nextPending++;
    const reserveNext = !!evenAttr && (msg.raw[evenAttr.offset]! & 0x80) !== 0;
    const p: Pending = {
      id,
      tuple,
      transaction: tid,
      username: auth.username,
      subject: auth.subject,
      session: auth.session,
      key: auth.key,
      integrity: auth.integrity,
      lifetimeSeconds,
      transactionId: Buffer.from(msg.transactionId),
      v6Unavailable,
      reserveNext,
      deadline: now + PENDING_TIMEOUT_MS,
    };

    if (tokenAttr) {
      // A port held by an earlier EVEN-PORT R=1 allocation (RFC 8656 §7.2).
      const token = attrBytes(msg, tokenAttr).toString("hex");
      const r = this.reservations.get(token);
      if (tokenAttr.length !== 8 || !r || r.expiresAt <= now)
        return [this.error(msg, tuple, reject(ErrorCode.InsufficientCapacity, "Unknown Reservation"), auth)];
      this.reservations.delete(token);
      this.countSubject(auth.subject, +1);
      return this.finishAllocate(p, [r.endpoint], undefined, now);
    }

    this.pending.set(id, p);
    this.pendingByTuple.set(tuple.key, p);
    this.countSubject(auth.subject, +1);
    return [{ kind: "open-relay", request: { id, families, evenPort: !!evenAttr, reserveNext } }];
  }

  /** The adapter bound the relay socket(s) for `id`; `reserved` is port+1 when R=1 was asked. */
  relayOpened(id: number, endpoints: RelayEndpoint[], reserved: RelayEndpoint | undefined, now: number): TurnAction[] {
    const p = this.pending.get(id);
    if (!p || this.closed) {
      const out: TurnAction[] = endpoints.map((endpoint) => ({ kind: "release-relay", endpoint }));
      if (reserved) out.push({ kind: "release-relay", endpoint: reserved });
      return out.length ? out : [{ kind: "ignore", reason: "stale-relay" }];
    }
    this.pending.delete(id);
    this.pendingByTuple.delete(p.tuple.key);
    return this.finishAllocate(p, endpoints, reserved, now);
  }

  /** The adapter could not bind a relay socket for `id`: 508 (RFC 8656 §7.2). */
  relayFailed(id: number): TurnAction[] {
    const p = this.pending.get(id);
    if (!p) return [{ kind: "ignore", reason: "stale-relay" }];
    this.pending.delete(id);
    this.pendingByTuple.delete(p.tuple.key);
    this.countSubject(p.subject, -1);
    this.refused(p.subject, "relay-ports", p.deadline - PENDING_TIMEOUT_MS);
    return [this.errorFor(p, reject(ErrorCode.InsufficientCapacity))];
  }

  private finishAllocate(p: Pending, endpoints: RelayEndpoint[], reserved: RelayEndpoint | undefined, now: number): TurnAction[] {
    const alloc = new Allocation({
      id: allocationId(`a${this.nextAllocation++}`),
      tuple: p.tuple,
      username: p.username,
      subject: p.subject,
      session: p.session,
      key: p.key,
      integrity: p.integrity,
      allocateTransaction: p.transaction,
      relays: endpoints,
      expiresAt: now + p.lifetimeSeconds * 1000,
      now,
      bandwidthBytesPerSecond: this.opts.quotas.bandwidthBytesPerSecond,
    });
    for (const e of endpoints) e.allocation = alloc;
    this.byTuple.set(p.tuple.key, alloc);
    this.byId.set(alloc.id, alloc);
    this.metrics.allocations = this.byId.size;
    this.metrics.allocationsCreated++;

    const w = new StunWriter(Method.Allocate, MessageClass.Success, p.transactionId);
    for (const e of endpoints) w.xorAddress(Attr.XorRelayedAddress, e.external, e.port);
    if (p.v6Unavailable) w.bytes(Attr.AddressErrorCode, addressErrorCode(Family.IPv6, ErrorCode.AddressFamilyNotSupported));
    w.u32(Attr.Lifetime, p.lifetimeSeconds);
    if (reserved) {
      const token = randomBytes(8);
      this.reservations.set(token.toString("hex"), { endpoint: reserved, expiresAt: now + RESERVATION_MS });
      w.bytes(Attr.ReservationToken, token);
    }
    w.xorAddress(Attr.XorMappedAddress, p.tuple.remote.address, p.tuple.remote.port);
    w.integrity(p.key, p.integrity).fingerprint();
    const data = w.finish();
    alloc.allocateResponse = data;
    const info = allocationInfo(alloc);
    this.log.info("turn allocation created", {
      allocation: alloc.id,
      subject: alloc.subject,
      transport: p.tuple.transport,
      relay: info.relays.map((r) => `${r.address}:${r.port}`),
      lifetime: p.lifetimeSeconds,
    });
    this.events.emit("allocation-created", info);
    return [{ kind: "reply", to: p.tuple, data }];
  }

  // RFC 8656 §7.4 Receiving a Refresh Request.
  private refresh(msg: StunMessage, tuple: ClientTuple, auth: Authenticated, now: number): TurnAction[] {
    const alloc = this.existing(msg, tuple, auth);
    if (!(alloc instanceof Allocation)) return [alloc];
    const famAttr = getAttr(msg, Attr.RequestedAddressFamily);
    if (famAttr) {
      const f = famAttr.length === 4 ? msg.raw[famAttr.offset] : -1;
      const fam: IpFamily | undefined = f === Family.IPv4 ? 4 : f === Family.IPv6 ? 6 : undefined;
      if (!fam || !alloc.relayFor(fam)) return [this.error(msg, tuple, reject(ErrorCode.PeerAddressFamilyMismatch), auth)];
    }
    const lifetimeAttr = getAttr(msg, Attr.Lifetime);
    const requested = lifetimeAttr ? attrU32(msg, lifetimeAttr) : undefined;
    const w = new StunWriter(Method.Refresh, MessageClass.Success, msg.transactionId);
    if (requested === 0) {
      const out = this.deleteAllocation(alloc, "refresh-zero");
      w.u32(Attr.Lifetime, 0).integrity(auth.key, auth.integrity).fingerprint();
      out.unshift({ kind: "reply", to: tuple, data: w.finish() });
      return out;
    }
    const lifetime = this.allocationLifetime(requested);
    alloc.expiresAt = now + lifetime * 1000;
    this.metrics.refreshes++;
    w.u32(Attr.Lifetime, lifetime).integrity(auth.key, auth.integrity).fingerprint();
    return [{ kind: "reply", to: tuple, data: w.finish() }];
  }

  /** RFC 8656 §7.2: min(requested, max), but never below the default. */
  private allocationLifetime(requested: number | undefined): number {
    const def = this.opts.lifetimes.allocationSeconds;
    if (requested === undefined) return def;
    const v = Math.min(requested, this.opts.lifetimes.maxAllocationSeconds);
    return v > def ? v : def;
  }

  /** Validate a peer for CreatePermission/ChannelBind: 400, 403 or 443 (RFC 8656 §9.1, §11.2). */
  private checkPeer(alloc: Allocation, peer: TransportAddress | undefined, withPort: boolean): TurnReject | RelayEndpoint {
    if (!peer) return reject(ErrorCode.BadRequest, "Malformed XOR-PEER-ADDRESS");
    const verdict = this.opts.policy.check(peer.address, withPort ? peer.port : undefined);
    if (verdict !== "allow" || peer.port === 0) {
      this.metrics.peerDenials++;
      this.events.emit("peer-denied", alloc.id, peer.address, verdict === "allow" ? "unspecified" : verdict);
      this.log.debug("turn peer denied", { allocation: alloc.id, peer: peer.address, verdict });
      return reject(ErrorCode.Forbidden, verdict === "allow" ? "Port 0" : `Peer ${verdict}`);
    }
    const relay = alloc.relayFor(peer.family);
    if (!relay) return reject(ErrorCode.PeerAddressFamilyMismatch);
    return relay;
  }

  private installPermission(alloc: Allocation, address: string, now: number): Permission {
    const k = ipKey(address);
    const expiresAt = now + this.opts.lifetimes.permissionSeconds * 1000;
    let p = alloc.permissions.get(k);
    if (p) p.expiresAt = expiresAt;
    else {
      p = new Permission(address, k, expiresAt);
      alloc.permissions.set(k, p);
      this.metrics.permissions++;
    }
    return p;
  }

  // RFC 8656 §9.2 Receiving a CreatePermission Request.
  private createPermission(msg: StunMessage, tuple: ClientTuple, auth: Authenticated, now: number): TurnAction {
    const alloc = this.existing(msg, tuple, auth);
    if (!(alloc instanceof Allocation)) return alloc;
    const attrs = getAttrs(msg, Attr.XorPeerAddress);
    if (attrs.length === 0) return this.error(msg, tuple, reject(ErrorCode.BadRequest, "Missing XOR-PEER-ADDRESS"), auth);
    const peers: TransportAddress[] = [];
    // All addresses are checked before any permission is installed (the request is atomic).
    for (const a of attrs) {
      const peer = attrXorAddress(msg, a);
      // CreatePermission ignores the port; only port 0 with an unspecified IP is meaningless.
      const checked = this.checkPeer(alloc, peer ? { ...peer, port: peer.port || 1 } : undefined, false);
      if ("code" in checked) return this.error(msg, tuple, checked, auth);
      peers.push(peer!);
    }
    let fresh = 0;
    for (const p of peers) if (!alloc.permissions.has(ipKey(p.address))) fresh++;
    if (alloc.permissions.size + fresh > this.opts.quotas.permissionsPerAllocation) {
      this.refused(alloc.subject, "permissions", now);
      return this.error(msg, tuple, reject(ErrorCode.InsufficientCapacity, "Too Many Permissions"), auth);
    }
    for (const p of peers) this.installPermission(alloc, p.address, now);
    return this.success(msg, tuple, auth);
  }

  // RFC 8656 §11.2 Receiving a ChannelBind Request.
  private channelBind(msg: StunMessage, tuple: ClientTuple, auth: Authenticated, now: number): TurnAction {
    const alloc = this.existing(msg, tuple, auth);
    if (!(alloc instanceof Allocation)) return alloc;
    const numAttr = getAttr(msg, Attr.ChannelNumber);
    const num = numAttr ? attrChannelNumber(msg, numAttr) : undefined;
    if (num === undefined) return this.error(msg, tuple, reject(ErrorCode.BadRequest, "Bad CHANNEL-NUMBER"), auth);
    const peerAttr = getAttr(msg, Attr.XorPeerAddress);
    if (!peerAttr) return this.error(msg, tuple, reject(ErrorCode.BadRequest, "Missing XOR-PEER-ADDRESS"), auth);
    const peer = attrXorAddress(msg, peerAttr);
    const relay = this.checkPeer(alloc, peer, true);
    if ("code" in relay) return this.error(msg, tuple, relay, auth);
    const peerKey = addressKey(peer!.address, peer!.port);
    const byNum = alloc.channels.get(num);
    const byPeer = alloc.channelsByPeer.get(peerKey);
    // A number is bound to one peer and a peer to one number, also while cooling down.
    if ((byNum && byNum.peerKey !== peerKey) || (byPeer && byPeer.number !== num))
      return this.error(msg, tuple, reject(ErrorCode.BadRequest, "Channel Or Peer Already Bound"), auth);
    const expiresAt = now + this.opts.lifetimes.channelSeconds * 1000;
    if (byNum) {
      byNum.expiresAt = expiresAt;
      this.installPermission(alloc, peer!.address, now);
    } else {
      if (alloc.channels.size >= this.opts.quotas.channelsPerAllocation) {
        this.refused(alloc.subject, "channels", now);
        return this.error(msg, tuple, reject(ErrorCode.InsufficientCapacity, "Too Many Channels"), auth);
      }
      if (!alloc.permissions.has(ipKey(peer!.address)) && alloc.permissions.size >= this.opts.quotas.permissionsPerAllocation) {
        this.refused(alloc.subject, "permissions", now);
        return this.error(msg, tuple, reject(ErrorCode.InsufficientCapacity, "Too Many Permissions"), auth);
      }
      const permission = this.installPermission(alloc, peer!.address, now);
      permission.refs++;
      const ch = new Channel({ number: num, peer: peer!, peerKey, permission, relay, allocation: alloc, expiresAt });
      alloc.channels.set(num, ch);
      alloc.channelsByPeer.set(peerKey, ch);
      this.metrics.channels++;
    }
    return this.success(msg, tuple, auth);
  }

  // RFC 8656 §10.2 Receiving a Send Indication (no authentication, silently dropped on any problem).
  private sendIndication(msg: StunMessage, tuple: ClientTuple, now: number): TurnAction {
    const alloc = this.byTuple.get(tuple.key);
    const peerAttr = getAttr(msg, Attr.XorPeerAddress);
    const dataAttr = getAttr(msg, Attr.Data);
    if (!alloc || !peerAttr || !dataAttr || msg.unknownRequired.length) {
      if (!alloc) this.metrics.dropNoAllocation++;
      return { kind: "ignore", reason: "indication-dropped" };
    }
    const peer = attrXorAddress(msg, peerAttr);
    const relay = peer ? alloc.relayFor(peer.family) : undefined;
    const perm = peer ? alloc.permissions.get(ipKey(peer.address)) : undefined;
    if (!peer || !relay || !perm || perm.expiresAt <= now || peer.port === 0) {
      this.metrics.dropNoPermission++;
      return { kind: "ignore", reason: "indication-dropped" };
    }
    // A permission is per IP (RFC 8656 §9); the port must pass the policy too (the gateway's
    // own address is reachable on its media ports only).
    if (this.opts.policy.check(peer.address, peer.port) !== "allow") {
      this.metrics.peerDenials++;
      return { kind: "ignore", reason: "indication-dropped" };
    }
    if (!alloc.toPeer.take(dataAttr.length, now)) {
      this.metrics.dropBandwidth++;
      return { kind: "ignore", reason: "indication-dropped" };
    }
    this.metrics.packetsToPeer++;
    this.metrics.bytesToPeer += dataAttr.length;
    return { kind: "send-peer", relay, peer, data: attrBytes(msg, dataAttr) };
  }

  // ---------------------------------------------------------------------------
  // Relay hot path.

  /**
   * ChannelData from a client (RFC 8656 §12.4). Returns the channel to relay through —
   * the adapter sends `buf[4, 4 + length)` from `channel.relay` to `channel.peer` — or
   * undefined when the packet is dropped (counted).
   */
  channelDataFromClient(key: number | string, buf: Buffer, now: number): Channel | undefined {
    const alloc = this.byTuple.get(key);
    if (alloc === undefined) {
      this.metrics.dropNoAllocation++;
      return undefined;
    }
    const len = (buf[2]! << 8) | buf[3]!;
    if (len + 4 > buf.length) {
      this.metrics.malformed++;
      return undefined;
    }
    const ch = alloc.channels.get((buf[0]! << 8) | buf[1]!);
    if (ch === undefined || ch.expiresAt <= now || ch.permission.expiresAt <= now) {
      this.metrics.dropNoPermission++;
      return undefined;
    }
    if (!alloc.toPeer.take(len, now)) {
      this.metrics.dropBandwidth++;
      return undefined;
    }
    this.metrics.packetsToPeer++;
    this.metrics.bytesToPeer += len;
    return ch;
  }

  /**
   * A datagram from a peer to a relay socket (RFC 8656 §10.3, §12.5). Returns the bytes
   * to send to the allocation's client — ChannelData when a channel is bound (padded to
   * 4 bytes over TCP/TLS, §12.5), a Data indication otherwise — or undefined (counted).
   */
  fromPeer(relay: RelayEndpoint, buf: Buffer, address: string, port: number, now: number): Buffer | undefined {
    const alloc = relay.allocation;
    if (alloc === undefined || alloc.closed) {
      this.metrics.dropNoAllocation++;
      return undefined;
    }
    const v4 = ipv4ToInt(address);
    let ch: Channel | undefined;
    let perm: Permission | undefined;
    if (v4 >= 0) {
      ch = alloc.channelsByPeer.get(v4 * 65536 + port);
      perm = ch !== undefined ? ch.permission : alloc.permissions.get(v4);
    } else {
      ch = alloc.channelsByPeer.get(`${address}|${port}`);
      perm = ch !== undefined ? ch.permission : alloc.permissions.get(address);
    }
    if (perm === undefined || perm.expiresAt <= now) {
      this.metrics.dropNoPermission++;
      return undefined;
    }
    const len = buf.length;
    if (!alloc.toClient.take(len, now)) {
      this.metrics.dropBandwidth++;
      return undefined;
    }
    this.metrics.packetsToClient++;
    this.metrics.bytesToClient += len;
    if (ch !== undefined && ch.expiresAt > now) {
      const padded = alloc.tuple.transport === "udp" ? len + 4 : (len + 7) & ~3;
      const out = Buffer.allocUnsafe(padded);
      out[0] = ch.number >> 8;
      out[1] = ch.number & 0xff;
      out[2] = len >> 8;
      out[3] = len & 0xff;
      buf.copy(out, 4);
      if (padded > len + 4) out.fill(0, len + 4);
      return out;
    }
    return dataIndication(buf, address, port);
  }

  // ---------------------------------------------------------------------------
  // Lifecycle.

  /** Expire allocations, permissions, channels, reservations and stale pending requests. */
  tick(now: number): TurnAction[] {
    const out: TurnAction[] = [];
    for (const alloc of this.byId.values()) {
      if (alloc.expiresAt <= now) {
        out.push(...this.deleteAllocation(alloc, "expired"));
        continue;
      }
      if (alloc.session !== undefined && !this.sessionLive(alloc.session)) {
        out.push(...this.deleteAllocation(alloc, "session-ended"));
        continue;
      }
      for (const [num, ch] of alloc.channels) {
        if (ch.expiresAt + CHANNEL_COOLDOWN_MS <= now) {
          alloc.channels.delete(num);
          alloc.channelsByPeer.delete(ch.peerKey);
          ch.permission.refs--;
          this.metrics.channels--;
        }
      }
      for (const [k, p] of alloc.permissions) {
        if (p.expiresAt <= now && p.refs === 0) {
          alloc.permissions.delete(k);
          this.metrics.permissions--;
        }
      }
    }
    for (const [token, r] of this.reservations) {
      if (r.expiresAt <= now) {
        this.reservations.delete(token);
        out.push({ kind: "release-relay", endpoint: r.endpoint });
      }
    }
    for (const p of this.pending.values()) {
      if (p.deadline <= now) {
        this.pending.delete(p.id);
        this.pendingByTuple.delete(p.tuple.key);
        this.countSubject(p.subject, -1);
      }
    }
    this.limiter.sweep(now);
    for (const [ref, forgetAt] of this.endedSessions) {
      if (forgetAt > now) break; // insertion order is forget order (constant memory time)
      this.endedSessions.delete(ref);
    }
    for (const [k, at] of this.refusalLogged) if (now - at >= REFUSAL_LOG_MS) this.refusalLogged.delete(k);
    return out;
  }

  /** The client's TCP/TLS connection closed: its allocation goes with it (RFC 8656 §3.1). */
  transportClosed(key: number | string): TurnAction[] {
    const p = this.pendingByTuple.get(key);
    if (p) {
      this.pending.delete(p.id);
      this.pendingByTuple.delete(key);
      this.countSubject(p.subject, -1);
    }
    const alloc = this.byTuple.get(key);
    return alloc ? this.deleteAllocation(alloc, "transport-closed") : [];
  }

  /** End every allocation of `subject` (the gateway revoked the user's session). */
  closeSubject(subject: string): TurnAction[] {
    const out: TurnAction[] = [];
    for (const a of [...this.byId.values()]) if (a.subject === subject) out.push(...this.deleteAllocation(a, "revoked"));
    return out;
  }

  /**
   * A sign-in session ended (sign-out, expiry, revocation, back-channel logout): its
   * allocations close now, and credentials minted for it are refused from now on, for
   * Allocate as for Refresh, CreatePermission and ChannelBind.
   */
  closeSession(ref: string, now: number): TurnAction[] {
    if (!this.endedSessions.has(ref)) {
      if (this.endedSessions.size >= ENDED_SESSIONS) {
        const first = this.endedSessions.keys().next();
        if (!first.done) this.endedSessions.delete(first.value);
      }
      this.endedSessions.set(ref, now + (this.opts.endedSessionMemoryMs ?? 86_400_000));
    }
    const out: TurnAction[] = [];
    for (const a of [...this.byId.values()]) if (a.session === ref) out.push(...this.deleteAllocation(a, "session-ended"));
    return out;
  }

  /** Credentials are being minted for a live session again (it lapsed and was revived): stop refusing them. */
  sessionRevived(ref: string): void {
    this.endedSessions.delete(ref);
  }

  private sessionLive(ref: string): boolean {
    if (this.endedSessions.has(ref)) return false;
    return this.opts.sessionActive ? this.opts.sessionActive(ref) : true;
  }

  /**
   * The client behind some relayed addresses, or some credentials, is gone (the viewer they
   * served closed): close the allocations of `subject` relayed at those addresses or made with
   * those usernames, and every allocation made with the same credentials (the other TURN
   * transports the same peer connection allocated on). Allocations of other subjects are never
   * touched, whatever is named.
   */
  closeClientOf(subject: string, relayed: readonly TransportAddress[], named: readonly string[] = []): TurnAction[] {
    const wanted = new Set(relayed.map((r) => `${r.address}|${r.port}`));
    const usernames = new Set<string>(named);
    for (const a of this.byId.values()) {
      if (a.subject !== subject) continue;
      for (const r of a.relays) if (wanted.has(`${r.external}|${r.port}`)) usernames.add(a.username);
    }
    const out: TurnAction[] = [];
    if (usernames.size === 0) return out;
    for (const a of [...this.byId.values()]) if (a.subject === subject && usernames.has(a.username)) out.push(...this.deleteAllocation(a, "client-gone"));
    return out;
  }

  /** Release everything; later messages are ignored. Idempotent. */
  close(): TurnAction[] {
    if (this.closed) return [];
    this.closed = true;
    const out: TurnAction[] = [];
    for (const a of [...this.byId.values()]) out.push(...this.deleteAllocation(a, "server-closed"));
    for (const r of this.reservations.values()) out.push({ kind: "release-relay", endpoint: r.endpoint });
    this.reservations.clear();
    this.pending.clear();
    this.pendingByTuple.clear();
    return out;
  }

  private deleteAllocation(alloc: Allocation, reason: AllocationCloseReason): TurnAction[] {
    if (alloc.closed) return [];
    alloc.closed = true;
    this.byId.delete(alloc.id);
    if (this.byTuple.get(alloc.tuple.key) === alloc) this.byTuple.delete(alloc.tuple.key);
    this.countSubject(alloc.subject, -1);
    this.metrics.allocations = this.byId.size;
    this.metrics.permissions -= alloc.permissions.size;
    this.metrics.channels -= alloc.channels.size;
    if (reason === "expired") this.metrics.allocationsExpired++;
    else this.metrics.allocationsDeleted++;
    const info = allocationInfo(alloc);
    this.log.info("turn allocation closed", { allocation: alloc.id, subject: alloc.subject, reason });
    this.events.emit("allocation-closed", info, reason);
    const out: TurnAction[] = alloc.relays.map((endpoint) => ({ kind: "release-relay", endpoint }));
    if (alloc.tuple.transport !== "udp" && reason !== "transport-closed") out.push({ kind: "end-client", tuple: alloc.tuple });
    return out;
  }

  /** A quota or capacity refusal: counted, and logged once per subject and reason every few seconds. */
  private refused(subject: string, reason: RefusalReason, now: number): void {
    this.metrics.quotaRejections++;
    this.events.emit("refused", subject, reason);
    const k = `${reason}|${subject}`;
    if (this.refusalLogged.has(k)) return;
    if (this.refusalLogged.size >= LIMITER_ENTRIES) return;
    this.refusalLogged.set(k, now);
    const q = this.opts.quotas;
    this.log.warn("turn request refused", {
      subject,
      reason,
      allocations: this.perSubject.get(subject) ?? 0,
      limit: reason === "user-quota" ? q.allocationsPerUser : reason === "server-full" ? q.totalAllocations : undefined,
    });
  }

  private countSubject(subject: string, delta: number): void {
    const n = (this.perSubject.get(subject) ?? 0) + delta;
    if (n <= 0) this.perSubject.delete(subject);
    else this.perSubject.set(subject, n);
  }

  // ---------------------------------------------------------------------------
  // Responses.

  /** 401 or 438 with REALM and a fresh NONCE, no integrity (RFC 8489 §9.2.4). */
  private challenge(msg: StunMessage, tuple: ClientTuple, now: number, code: ErrorCode, reason?: string): TurnAction {
    const w = new StunWriter(msg.method, MessageClass.Error, msg.transactionId);
    w.errorCode(code, reason);
    w.string(Attr.Realm, this.opts.realm);
    w.string(Attr.Nonce, this.nonces.issue(tuple.remote.address, now));
    w.fingerprint();
    return { kind: "reply", to: tuple, data: w.finish() };
  }

  private error(msg: StunMessage, tuple: ClientTuple, r: TurnReject, auth?: Authenticated): TurnAction {
    if (r.code !== ErrorCode.Forbidden && r.code < 486) this.metrics.errorResponses++;
    const w = new StunWriter(msg.method, MessageClass.Error, msg.transactionId);
    w.errorCode(r.code, r.reason);
    if (r.unknown) w.unknownAttributes(r.unknown);
    if (auth) w.integrity(auth.key, auth.integrity);
    w.fingerprint();
    return { kind: "reply", to: tuple, data: w.finish() };
  }

  private errorFor(p: Pending, r: TurnReject): TurnAction {
    const w = new StunWriter(Method.Allocate, MessageClass.Error, p.transactionId);
    w.errorCode(r.code, r.reason).integrity(p.key, p.integrity).fingerprint();
    return { kind: "reply", to: p.tuple, data: w.finish() };
  }

  private success(msg: StunMessage, tuple: ClientTuple, auth: Authenticated): TurnAction {
    const w = new StunWriter(msg.method, MessageClass.Success, msg.transactionId);
    w.integrity(auth.key, auth.integrity).fingerprint();
    return { kind: "reply", to: tuple, data: w.finish() };
  }
}

function allocationInfo(a: Allocation): AllocationInfo {
  return {
    id: a.id,
    tupleKey: a.tuple.key,
    subject: a.subject,
    session: a.session,
    username: a.username,
    transport: a.tuple.transport,
    client: a.tuple.remote,
    relays: a.relays.map((r) => ({ family: r.family, address: r.external, port: r.port })),
  };
}

/** A Refresh asking for LIFETIME 0: the client releases its allocation (RFC 8656 §7.4). */
function isDeallocation(msg: StunMessage): boolean {
  if (msg.method !== Method.Refresh) return false;
  const a = getAttr(msg, Attr.Lifetime);
  return a !== undefined && a.length === 4 && attrU32(msg, a) === 0;
}

/** ADDRESS-ERROR-CODE (RFC 8656 §18.10): family, reserved, class, number, reason. */
function addressErrorCode(family: number, code: number): Buffer {
  const reason = Buffer.from("Address Family not Supported");
  const b = Buffer.alloc(4 + reason.length);
  b[0] = family;
  b[2] = Math.floor(code / 100);
  b[3] = code % 100;
  reason.copy(b, 4);
  return b;
}

/** A Data indication (RFC 8656 §10.3) carrying `data` from `address:port`. */
export function dataIndication(data: Buffer, address: string, port: number): Buffer {
  const ip = parseIp(address)!;
  const addrLen = 4 + ip.length;
  const pad = (4 - (data.length & 3)) & 3;
  const bodyLen = 4 + addrLen + 4 + data.length + pad;
  const out = Buffer.allocUnsafe(HEADER_LENGTH + bodyLen);
  out.writeUInt16BE(0x0017, 0); // Data indication
  out.writeUInt16BE(bodyLen, 2);
  out.writeUInt32BE(MAGIC_COOKIE, 4);
  randomFillSync(out, 8, 12);
  let o = HEADER_LENGTH;
  out.writeUInt16BE(Attr.XorPeerAddress, o);
  out.writeUInt16BE(addrLen, o + 2);
  out[o + 4] = 0;
  out[o + 5] = ip.length === 4 ? Family.IPv4 : Family.IPv6;
  out.writeUInt16BE((port ^ (MAGIC_COOKIE >>> 16)) & 0xffff, o + 6);
  for (let i = 0; i < ip.length; i++) out[o + 8 + i] = ip[i]! ^ (i < 4 ? (MAGIC_COOKIE >>> (24 - 8 * i)) & 0xff : out[8 + i - 4]!);
  o += 4 + addrLen;
  out.writeUInt16BE(Attr.Data, o);
  out.writeUInt16BE(data.length, o + 2);
  data.copy(out, o + 4);
  if (pad) out.fill(0, o + 4 + data.length, o + 4 + data.length + pad);
  return out;
}
