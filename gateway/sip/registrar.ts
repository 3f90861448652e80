/**
 * Registrar for the configured device accounts (RFC 3261 §10.3). Bindings live in memory
 * with expiry on the injected clock; 423 below Min-Expires; NAT handling: the address we
 * later send requests to is the packet source unless the Contact names exactly that host
 * (a device behind NAT, or registering a hostname we would have to resolve, is reached
 * where its REGISTER came from, RFC 3581 §4 / RFC 5626 flows over TCP/TLS).
 *
 * A binding therefore can never point our requests at a third party: a Contact naming
 * another host is replaced by the device's own source address.
 */
import { SafeEmitter } from "../../config/events.ts";
import type { Logger } from "../../config/log.ts";
import type { SipClock } from "./clock.ts";
import type { Device, DeviceAuth, DeviceDirectory, DeviceId } from "./devices.ts";
import { isIpLiteral } from "../../config/net/ip.ts";
import { isReliable, type Endpoint } from "./endpoint.ts";
import {
  callIdOf,
  contactsOf,
  cseqOf,
  sipUriOf,
  toOf,
  topVia,
  type NameAddr,
  type SipRequest,
} from "./message.ts";
import { formatSipUri, socketHost, type SipUri } from "./uri.ts";

export interface RegistrationPolicy {
  /** Seconds. */
  minExpires: number;
  maxExpires: number;
  defaultExpires: number;
  maxBindings: number;
}

export interface Binding {
  readonly deviceId: DeviceId;
  /** The Contact URI as registered (returned in 200 OK). */
  readonly contact: string;
  readonly contactUri: SipUri;
  /** Where requests to this binding go (NAT-corrected). */
  readonly target: Endpoint;
  /** Source of the REGISTER. */
  readonly source: Endpoint;
  /** Monotonic ms. */
  expiresAt: number;
  /** Wall-clock ms of the first registration of this contact. */
  readonly since: number;
  callId: string;
  cseq: number;
  /** Consecutive OPTIONS keep-alives without an answer. */
  missedKeepAlives: number;
}

export type RegistrarEvents = {
  registered: [device: Device, binding: Binding];
  unregistered: [device: Device, binding: Binding, reason: "expired" | "removed" | "unreachable" | "replaced" | "shutdown"];
};

/** The registrar's answer: status plus headers. */
export interface RegisterOutcome {
  readonly status: number;
  readonly reason?: string;
  readonly headers: [string, string][];
  readonly device?: Device;
}

export interface RegistrarStats {
  registers: number;
  accepted: number;
  rejected: number;
  intervalTooBrief: number;
}

export class Registrar {
  readonly events: SafeEmitter<RegistrarEvents>;
  readonly stats: RegistrarStats = { registers: 0, accepted: 0, rejected: 0, intervalTooBrief: 0 };
  private readonly devices: DeviceDirectory;
  private readonly auth: DeviceAuth;
  private readonly clock: SipClock;
  private readonly policy: RegistrationPolicy;
  private readonly log: Logger;
  private readonly bindings = new Map<DeviceId, Binding[]>();
  private sweepTimer: { cancel(): void } | undefined;
  private closed = false;

  constructor(opts: { devices: DeviceDirectory; auth: DeviceAuth; clock: SipClock; policy: RegistrationPolicy; log: Logger }) {
    this.devices = opts.devices;
    this.auth = opts.auth;
    this.clock = opts.clock;
    this.policy = opts.policy;
    this.log = opts.log;
    this.events = new SafeEmitter((event, err) => this.log.error("sip registrar: listener threw", { event, err }));
  }

  /** Process a REGISTER (§10.3 steps 1–8). */
  register(req: SipRequest, source: Endpoint): RegisterOutcome {
    this.stats.registers++;
    const out = this.process(req, source);
    if (out.status === 200) this.stats.accepted++;
    else this.stats.rejected++;
    return out;
  }

  private process(req: SipRequest, source: Endpoint): RegisterOutcome {
    // Step 3: the To header names the address-of-record; it must be a SIP URI with a user.
    const to = sipUriOf(toOf(req));
    if (!to || to.user === undefined) return { status: 404, reason: "Not Found", headers: [] };
    const claimed = this.devices.byUsername(to.user);
    // Malformed Contacts are refused before authentication (RFC 4475 §3.1.2.13).
    const contacts = contactsOf(req);
    if (!contacts) return { status: 400, reason: "Malformed Contact", headers: [] };
    // Step 2/4: authenticate (unknown AORs are challenged too, then fail).
    const auth = this.auth.check(req, source.address, claimed, to.user);
    if (!auth.ok) {
      if (auth.status === 401) return { status: 401, headers: auth.challenge.map((c) => ["WWW-Authenticate", c] as [string, string]) };
      return { status: 403, reason: auth.reason, headers: [] };
    }
    const device = auth.device;
    // Step 5: the authenticated user must own the AOR (checked in DeviceAuth.check via `claimed`).
    const callId = callIdOf(req);
    const cseq = cseqOf(req).seq;
    const expiresHeader = parseExpires(req.headers.get("expires"));
    const now = this.clock.now();

    // Step 6: "*" removes every binding, only with Expires: 0 and as the only contact.
    if (contacts.some((c) => c.star)) {
      if (contacts.length !== 1 || expiresHeader !== 0) return { status: 400, reason: "Invalid Wildcard Contact", headers: [] };
      for (const b of [...this.bindingsOf(device.id)]) {
        if (b.callId === callId && cseq <= b.cseq) continue;
        this.remove(device, b, "removed");
      }
      return this.ok(device);
    }

    // Validate every contact before changing anything (the request is atomic, §10.3 step 7).
    const plans: { c: NameAddr; uri: SipUri; expires: number }[] = [];
    for (const c of contacts) {
      const uri = sipUriOf(c);
      if (!uri) return { status: 400, reason: "Unsupported Contact URI", headers: [] };
      const param = c.params.get("expires");
      let expires = param !== undefined && param !== null ? parseExpires(param) : expiresHeader;
      expires ??= this.policy.defaultExpires;
      if (expires > 0 && expires < this.policy.minExpires) {
        this.stats.intervalTooBrief++;
        return { status: 423, headers: [["Min-Expires", String(this.policy.minExpires)]] };
      }
      plans.push({ c, uri, expires: Math.min(expires, this.policy.maxExpires) });
    }
    const list = this.bindingsOf(device.id);
    for (const p of plans) {
      const key = contactKey(p.uri);
      const existing = list.find((b) => contactKey(b.contactUri) === key);
      if (existing && existing.callId === callId && cseq <= existing.cseq) {
        // Step 7: an out-of-order request for the same Call-ID.
        return { status: 500, reason: "Out of Order", headers: [["Retry-After", "1"]] };
      }
    }
    const via = topVia(req);
    const viaAskedRport = via?.rport !== undefined;
    for (const p of plans) {
      const key = contactKey(p.uri);
      const existing = list.find((b) => contactKey(b.contactUri) === key);
      if (p.expires === 0) {
        if (existing) this.remove(device, existing, "removed");
        continue;
      }
      const target = bindingTarget(p.uri, source, viaAskedRport);
      const binding: Binding = {
        deviceId: device.id,
        contact: p.c.uri,
        contactUri: p.uri,
        target,
        source,
        expiresAt: now + p.expires * 1000,
        since: existing?.since ?? this.clock.wallNow(),
        callId,
        cseq,
        missedKeepAlives: 0,
      };
      if (existing) list.splice(list.indexOf(existing), 1, binding);
      else {
        list.push(binding);
        while (list.length > this.policy.maxBindings) {
          const old = list.shift()!;
          this.events.emit("unregistered", device, old, "replaced");
        }
      }
      this.bindings.set(device.id, list);
      if (!existing) this.log.info("sip: device registered", { device: device.id, contact: p.c.uri, target: `${target.transport}:${target.address}:${target.port}`, expires: p.expires });
      this.events.emit("registered", device, binding);
    }
    this.armSweep();
    return this.ok(device);
  }

  private ok(device: Device): RegisterOutcome {
    const now = this.clock.now();
    const headers: [string, string][] = this.bindingsOf(device.id).map((b) => [
      "Contact",
      `<${b.contact}>;expires=${Math.max(0, Math.round((b.expiresAt - now) / 1000))}`,
    ]);
    headers.push(["Date", new Date(this.clock.wallNow()).toUTCString()]);
    return { status: 200, headers, device };
  }

  /** Live bindings of a device, most recent last. */
  bindingsOf(id: DeviceId): Binding[] {
    const list = this.bindings.get(id);
    if (!list) return [];
    const now = this.clock.now();
    const live = list.filter((b) => b.expiresAt > now);
    if (live.length !== list.length) this.expire();
    return live;
  }

  /** Every live binding (keep-alives, ops). */
  allBindings(): Binding[] {
    return [...this.bindings.keys()].flatMap((id) => this.bindingsOf(id));
  }

  /** The device registered from `source` (same address; same flow or port unless `addressOnly`). */
  deviceAt(source: Endpoint, addressOnly: boolean): Device | undefined {
    for (const b of this.allBindings()) {
      const s = b.source;
      if (s.address !== source.address) continue;
      if (!addressOnly) {
        const same = isReliable(source.transport) ? s.flow === source.flow || (s.transport === source.transport && s.port === source.port) : s.transport === "udp" && s.port === source.port;
        if (!same) continue;
      }
      const d = this.devices.get(b.deviceId);
      if (d) return d;
    }
    return undefined;
  }

  /** Remove a binding (keep-alive failure, explicit). */
  remove(device: Device, binding: Binding, reason: RegistrarEvents["unregistered"][2]): void {
    const list = this.bindings.get(device.id);
    if (!list) return;
    const i = list.indexOf(binding);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.bindings.delete(device.id);
    this.log.info("sip: device binding removed", { device: device.id, contact: binding.contact, reason });
    this.events.emit("unregistered", device, binding, reason);
  }

  /** Drop expired bindings now. */
  expire(): void {
    const now = this.clock.now();
    for (const [id, list] of this.bindings) {
      const d = this.devices.get(id);
      for (const b of [...list]) if (b.expiresAt <= now && d) this.remove(d, b, "expired");
    }
  }

  private armSweep(): void {
    if (this.closed) return;
    this.sweepTimer?.cancel();
    let next = Infinity;
    for (const list of this.bindings.values()) for (const b of list) next = Math.min(next, b.expiresAt);
    if (next === Infinity) return;
    this.sweepTimer = this.clock.setTimer(Math.max(0, next - this.clock.now()) + 1, () => {
      this.expire();
      this.armSweep();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sweepTimer?.cancel();
    for (const [id, list] of this.bindings) {
      const d = this.devices.get(id);
      if (d) for (const b of list) this.events.emit("unregistered", d, b, "shutdown");
    }
    this.bindings.clear();
  }
}

/** Expires value (§20.19: delta-seconds); undefined when absent or not a number. */
function parseExpires(v: string | null | undefined): number | undefined {
  if (v === undefined || v === null) return undefined;
  const t = v.trim();
  if (!/^\d{1,10}$/.test(t)) return undefined;
  return Math.min(Number(t), 2 ** 31 - 1);
}

/** Comparable identity of a contact URI (§19.1.4, simplified: scheme, user, host, port, transport). */
function contactKey(u: SipUri): string {
  return `${u.scheme}:${u.user ?? ""}@${u.host}:${u.port ?? ""};${(u.params.get("transport") ?? "udp")?.toLowerCase()}`;
}

/**
 * Where requests to a binding go. Streams: back over the device's connection. UDP: the
 * Contact's address only when it is the IP literal the REGISTER came from and the device
 * did not ask for rport; otherwise the source address and port (NAT).
 */
export function bindingTarget(contact: SipUri, source: Endpoint, askedRport: boolean): Endpoint {
  if (isReliable(source.transport)) return source;
  const host = socketHost(contact.host);
  if (!askedRport && isIpLiteral(host) && host === source.address) {
    return { transport: "udp", address: host, port: contact.port ?? 5060 };
  }
  return { transport: "udp", address: source.address, port: source.port };
}

/** Request-URI for a binding: the Contact without URI headers (§19.1.5) or its display parts. */
export function bindingRequestUri(b: Binding): string {
  return formatSipUri(b.contactUri, { withHeaders: false });
}
