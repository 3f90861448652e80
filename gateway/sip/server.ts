/**
 * The SIP server: sockets → parser → transaction layer → this dispatcher → registrar or
 * intercom. It owns the policy for who may do what:
 *  - a locked-out source gets 403 for everything;
 *  - REGISTER must authenticate as the device named in To;
 *  - an INVITE must come from an allow-listed address of a device, or from a registered
 *    device's address (then digest-challenged unless the device opts out); anyone else
 *    gets 403 and is counted — an unknown caller can never ring anyone;
 *  - we never proxy: nothing a device sends makes us send a request anywhere but back to
 *    that device.
 * SIP status codes for our error categories are mapped in one place (`statusFor`).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { BadInputError, isGatehouseError, type ErrorCode } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { SipConfig } from "../../config/sections/sip.ts";
import { realClock, type SipClock } from "./clock.ts";
import { ALLOW, SUPPORTED, randomIds, ourVia, type IdSource, type SipContext } from "./context.ts";
import { DeviceAuth, DeviceDirectory, type Device } from "./devices.ts";
import { DigestServer } from "../digest/server.ts";
import { responseDestination, stampReceived, type Endpoint } from "./endpoint.ts";
import { Intercom, type IntercomOptions } from "./intercom.ts";
import { Lockout } from "./lockout.ts";
import { MediaTicker } from "./media.ts";
import {
  callIdOf,
  contactsOf,
  fromOf,
  makeResponse,
  parseMessage,
  sipUriOf,
  tagOf,
  toOf,
  topVia,
  SipHeaders,
  type SipRequest,
  type SipResponse,
} from "./message.ts";
import { Registrar, bindingRequestUri, bindingTarget, type Binding } from "./registrar.ts";
import { RtpPortPool } from "./rtp-ports.ts";
import { TransactionLayer, type ServerTransaction, type TransactionStats } from "./transaction.ts";
import { SipSockets, type SipSocketsOptions, type SipTransportAdapter, type TransportStats } from "./transport.ts";

export interface SipServerOptions {
  config: SipConfig;
  log: Logger;
  clock?: SipClock;
  /** Camera ids the gateway knows; a device naming another camera is a configuration error. */
  cameras?: readonly string[];
  /** PEM paths used for TLS when `sip.tls` names none (the gateway's server.tls). */
  tlsFallback?: { cert: string; key: string };
  intercom?: IntercomOptions;
  ids?: IdSource;
  /** The network (default: real UDP/TCP/TLS sockets). Tests inject a fake one. */
  transport?: (opts: SipSocketsOptions) => Promise<SipTransportAdapter>;
  /**
   * Sources refused before any parsing: the TURN relay's own sockets, so that nobody can talk
   * SIP through the relay (and pass as a door allow-listed at the gateway's address).
   */
  refuseSource?: (address: string, port: number) => boolean;
}

export interface SipServerStats {
  transport: TransportStats;
  transactions: TransactionStats;
  parse: { invalid: number; rejected: number };
  requests: Record<string, number>;
  refused: { lockedOut: number; unknownCaller: number; badExtension: number; noDialog: number };
  auth: DeviceAuth["stats"];
  lockouts: number;
  registrar: Registrar["stats"];
  intercom: Intercom["stats"];
  calls: number;
  bindings: number;
  rtpPortsInUse: number;
}

/** Our category → SIP status, in one place (STYLE: one mapping per protocol). */
export function statusFor(code: ErrorCode): number {
  switch (code) {
    case "BAD_INPUT":
      return 400;
    case "UNAUTHORIZED":
      return 401;
    case "FORBIDDEN":
      return 403;
    case "NOT_FOUND":
      return 404;
    case "WRONG_STATE":
      return 481;
    case "OVERLOAD":
      return 503;
    case "UPSTREAM":
      return 502;
    case "CLOSED":
      return 503;
  }
}

const SUPPORTED_TAGS = new Set(["timer"]);

export class SipServer {
  readonly intercom: Intercom;
  readonly registrar: Registrar;
  private readonly ctx: SipContext;
  private readonly sockets: SipTransportAdapter;
  private readonly layer: TransactionLayer;
  private readonly devices: DeviceDirectory;
  private readonly auth: DeviceAuth;
  private readonly log: Logger;
  private readonly parseStats = { invalid: 0, rejected: 0 };
  private readonly requestCounts: Record<string, number> = {};
  private readonly refused = { lockedOut: 0, unknownCaller: 0, badExtension: 0, noDialog: 0 };
  private keepAliveTimer: { cancel(): void } | undefined;
  private closing: Promise<void> | undefined;

  private constructor(parts: {
    ctx: SipContext;
    sockets: SipTransportAdapter;
    layer: TransactionLayer;
    devices: DeviceDirectory;
    auth: DeviceAuth;
    registrar: Registrar;
    intercom: Intercom;
  }) {
    this.ctx = parts.ctx;
    this.sockets = parts.sockets;
    this.layer = parts.layer;
    this.devices = parts.devices;
    this.auth = parts.auth;
    this.registrar = parts.registrar;
    this.intercom = parts.intercom;
    this.log = parts.ctx.log;
  }

  /** Validate, bind sockets and start serving. Throws BadInputError on bad configuration. */
  static async start(opts: SipServerOptions): Promise<SipServer> {
    const cfg = opts.config;
    const log = opts.log.child({ component: "sip" });
    const clock = opts.clock ?? realClock;
    const problems: string[] = [];
    if (opts.cameras) {
      cfg.devices.forEach((d, i) => {
        if (d.camera !== undefined && !opts.cameras!.includes(d.camera)) problems.push(`sip.devices[${i}].camera: unknown camera "${d.camera}"`);
      });
    }
    let tls: { port: number; cert: Buffer; key: Buffer } | undefined;
    if (cfg.tls) {
      const certPath = cfg.tls.cert ?? opts.tlsFallback?.cert;
      const keyPath = cfg.tls.key ?? opts.tlsFallback?.key;
      if (!certPath || !keyPath) problems.push("sip.tls: needs cert and key (or server.tls)");
      else {
        try {
          tls = { port: cfg.tls.port, cert: readFileSync(certPath), key: readFileSync(keyPath) };
        } catch (err) {
          problems.push(`sip.tls: cannot read certificate or key: ${(err as Error).message}`);
        }
      }
    }
    if (problems.length) throw new BadInputError(`invalid SIP configuration:\n  ${problems.join("\n  ")}`);

    const devices = new DeviceDirectory(cfg.devices);
    const realm = cfg.realm ?? cfg.domain;
    const digest = new DigestServer({ now: () => clock.wallNow(), nonceLifetimeMs: cfg.nonceLifetimeSeconds * 1000 });
    const lockout = new Lockout(
      { maxFailures: cfg.lockout.maxFailures, windowMs: cfg.lockout.windowSeconds * 1000, lockMs: cfg.lockout.durationSeconds * 1000 },
      () => clock.now(),
    );
    const auth = new DeviceAuth({ devices, digest, lockout, realm, log });
    const registrar = new Registrar({ devices, auth, clock, policy: cfg.registration, log });

    // The transaction layer needs the sockets, the sockets deliver into the layer: tie the knot lazily.
    const ref: { server?: SipServer } = {};
    const listen = opts.transport ?? ((o: SipSocketsOptions) => SipSockets.listen(o));
    const sockets = await listen({
      bindAddress: cfg.bindAddress,
      udpPort: cfg.udp.enabled ? cfg.udp.port : undefined,
      tcpPort: cfg.tcp.enabled ? cfg.tcp.port : undefined,
      tls,
      log,
      onMessage: (data, source) => ref.server?.onMessage(data, source),
      onFlowClosed: (flow) => ref.server?.onFlowClosed(flow),
      maxConnections: cfg.connections.max,
      maxConnectionsPerSource: cfg.connections.perSource,
      messageTimeoutMs: cfg.connections.messageTimeoutSeconds * 1000,
      unregisteredIdleMs: cfg.connections.unregisteredIdleSeconds * 1000,
      streamIdleMs: cfg.connections.idleSeconds * 1000,
      registeredFlows: () => new Set(registrar.allBindings().map((b) => b.target.flow).filter((f): f is number => f !== undefined)),
      ...(opts.refuseSource ? { refuseSource: opts.refuseSource } : {}),
      onUdpLost: (reason) => ref.server?.onUdpLost?.(reason),
    });
    const layer = new TransactionLayer(
      {
        clock,
        timers: { T1: cfg.timers.t1Ms, T2: cfg.timers.t2Ms, T4: cfg.timers.t4Ms },
        log,
        send: (data, to, onError) => sockets.send(data, to, onError),
      },
      {
        onRequest: (req, tx, source) => ref.server?.onRequest(req, tx, source),
        onStrayResponse: (res, source) => ref.server?.onStrayResponse(res, source),
      },
    );
    const sipAddress = cfg.announcedAddress ?? concreteAddress(cfg.bindAddress);
    const ctx: SipContext = {
      cfg,
      log,
      clock,
      layer,
      rtpPorts: new RtpPortPool({ range: cfg.rtpPortRange, bindAddress: cfg.bindAddress }),
      ticker: new MediaTicker(),
      mediaAddress: sipAddress,
      sipAddress,
      listenPort: (t) => sockets.boundPorts[t],
      flowOpen: (f) => sockets.hasFlow(f),
      ids: opts.ids ?? randomIds(),
    };
    const intercom = new Intercom(ctx, devices, registrar, opts.intercom);
    const server = new SipServer({ ctx, sockets, layer, devices, auth, registrar, intercom });
    ref.server = server;
    server.armKeepAlive();
    log.info("sip: listening", { address: cfg.bindAddress, ...sockets.boundPorts, devices: cfg.devices.length, rtp: cfg.rtpPortRange });
    return server;
  }

  /** Told when the UDP socket fails or closes under the server (the supervisor rebinds it). */
  onUdpLost: ((reason: string) => void) | undefined;

  /** Opens the UDP socket again on its port (after it was lost, or when it stopped answering). */
  async rebindUdp(): Promise<void> {
    if (!this.sockets.rebindUdp) throw new Error("this transport cannot rebind UDP");
    await this.sockets.rebindUdp();
  }

  /** Closes the UDP socket as the system would (drills and tests); false when none is open. */
  injectUdpFault(): boolean {
    return this.sockets.injectUdpFault?.() ?? false;
  }

  /** Bound ports (useful when 0 was configured). */
  get ports(): Readonly<{ udp?: number; tcp?: number; tls?: number }> {
    return this.sockets.boundPorts;
  }

  /** The address written in Via/Contact/SDP. */
  get address(): string {
    return this.ctx.sipAddress;
  }

  stats(): SipServerStats {
    return {
      transport: { ...this.sockets.stats },
      transactions: { ...this.layer.stats },
      parse: { ...this.parseStats },
      requests: { ...this.requestCounts },
      refused: { ...this.refused },
      auth: { ...this.auth.stats },
      lockouts: this.auth.lockouts.lockouts,
      registrar: { ...this.registrar.stats },
      intercom: { ...this.intercom.stats },
      calls: this.intercom.active().length,
      bindings: this.registrar.allBindings().length,
      rtpPortsInUse: this.ctx.rtpPorts.used,
    };
  }

  // ---------------------------------------------------------------- inbound path

  private onMessage(data: Buffer, source: Endpoint): void {
    const r = parseMessage(data, { datagram: source.transport === "udp" });
    switch (r.kind) {
      case "request":
      case "response":
        this.layer.receive(r.message, source);
        return;
      case "reject": {
        this.parseStats.rejected++;
        if (r.message.method === "ACK") return; // never answer an ACK (§17.2.1)
        this.log.debug("sip: rejecting malformed request", { status: r.status, reason: r.reason, address: source.address });
        // §18.2.1: stamp received/rport first, so the answer goes back to the sender.
        const via = topVia(r.message);
        const stamped = via ? stampReceived(r.message, via, source) : undefined;
        const res = makeResponse(r.message, r.status, { reason: r.reason });
        this.layer.sendStateless(res, responseDestination(stamped, source));
        return;
      }
      case "invalid":
        this.parseStats.invalid++;
        this.log.debug("sip: dropped unparseable message", { reason: r.reason, address: source.address });
        return;
    }
  }

  /** A device's TCP/TLS connection is gone: so are the bindings that could only be reached over it. */
  private onFlowClosed(flow: number): void {
    for (const b of this.registrar.allBindings()) {
      if (b.target.flow !== flow) continue;
      const d = this.devices.get(b.deviceId);
      if (d) this.registrar.remove(d, b, "unreachable");
    }
  }

  private onStrayResponse(res: SipResponse, _source: Endpoint): void {
    this.intercom.onStrayResponse(res, callIdOf(res), tagOf(fromOf(res)));
  }

  private onRequest(req: SipRequest, tx: ServerTransaction | undefined, source: Endpoint): void {
    this.requestCounts[req.method] = (this.requestCounts[req.method] ?? 0) + 1;
    const toTag = tagOf(toOf(req));
    if (req.method === "ACK") {
      this.intercom.findDialog(callIdOf(req), toTag, tagOf(fromOf(req)))?.onRequest(req, undefined);
      return;
    }
    if (!tx) return;
    if (this.auth.locked(source.address)) {
      this.refused.lockedOut++;
      tx.reply(403, { reason: "Locked Out" });
      return;
    }
    // §8.2.2.3: refuse extensions we do not support (not for CANCEL).
    if (req.method !== "CANCEL") {
      const unsupported = req.headers.getList("require").filter((t) => !SUPPORTED_TAGS.has(t.toLowerCase()));
      if (unsupported.length > 0) {
        this.refused.badExtension++;
        tx.reply(420, { headers: [["Unsupported", unsupported.join(", ")]] });
        return;
      }
    }
    if (toTag !== undefined && req.method !== "CANCEL") {
      const call = this.intercom.findDialog(callIdOf(req), toTag, tagOf(fromOf(req)));
      if (call) call.onRequest(req, tx);
      else {
        this.refused.noDialog++;
        tx.reply(481);
      }
      return;
    }
    switch (req.method) {
      case "REGISTER": {
        const out = this.registrar.register(req, source);
        tx.reply(out.status, { ...(out.reason ? { reason: out.reason } : {}), headers: out.headers, toTag: this.ctx.ids.tag() });
        return;
      }
      case "INVITE":
        this.onInvite(req, tx, source);
        return;
      case "CANCEL": {
        // §9.2: match the INVITE's transaction; 200 to the CANCEL, the call answers 487.
        const inv = this.layer.findInviteFor(req);
        if (!inv) {
          tx.reply(481);
          return;
        }
        tx.reply(200, { toTag: this.ctx.ids.tag() });
        // A CANCEL can overtake the call setup (RTP ports are still being bound): answer the
        // INVITE here; the setup sees the transaction finished and backs out.
        if (!this.intercom.onCancel(inv.key) && inv.pending) inv.reply(487, { toTag: this.ctx.ids.tag() });
        return;
      }
      case "OPTIONS":
        tx.reply(200, { toTag: this.ctx.ids.tag(), headers: [["Allow", ALLOW], ["Accept", "application/sdp"], ["Supported", SUPPORTED]] });
        return;
      case "BYE":
      case "INFO":
      case "UPDATE":
      case "PRACK":
        tx.reply(481);
        return;
      case "SUBSCRIBE":
      case "NOTIFY":
      case "MESSAGE":
      case "PUBLISH":
      case "REFER":
        tx.reply(405, { headers: [["Allow", ALLOW]] });
        return;
      default:
        // RFC 4475 §3.1.1.2: unknown methods get 501 with our Allow list.
        tx.reply(501, { headers: [["Allow", ALLOW]] });
    }
  }

  /**
   * Who is calling? By From user first: an allow-listed device (no challenge), then a device
   * registered from this address (digest unless it opted out). A From naming no configured
   * device falls back to the only candidate of either kind; a From naming another configured
   * device never does (it must prove to be that device).
   */
  private onInvite(req: SipRequest, tx: ServerTransaction, source: Endpoint): void {
    const fromUser = sipUriOf(fromOf(req))?.user;
    const named = this.devices.byUsername(fromUser);
    const listed = this.devices.allowListed(source.address);
    const registered = this.registeredFrom(source.address);
    const only = (list: Device[]): Device | undefined => (list.length === 1 && (!named || named === list[0]) ? list[0] : undefined);
    let device: Device | undefined = named && listed.includes(named) ? named : undefined;
    if (!device) {
      const claimed = named && registered.includes(named) ? named : listed.length === 0 ? only(registered) : undefined;
      if (claimed) {
        if (claimed.authenticateCalls) {
          const a = this.auth.check(req, source.address, claimed);
          if (!a.ok) {
            if (a.status === 401) tx.reply(401, { toTag: this.ctx.ids.tag(), headers: a.challenge.map((c) => ["WWW-Authenticate", c] as [string, string]) });
            else tx.reply(403, { reason: a.reason, toTag: this.ctx.ids.tag() });
            return;
          }
          device = a.device;
        } else if (this.registrar.deviceAt(source, false)?.id === claimed.id) device = claimed;
      }
    }
    device ??= only(listed);
    if (!device) {
      // Neither allow-listed nor registered: refuse without a challenge, and count it.
      this.refused.unknownCaller++;
      this.intercom.stats.refusedUnknown++;
      this.log.info("sip: refused call from an unknown source", { address: source.address, from: fromUser });
      tx.reply(403, { toTag: this.ctx.ids.tag() });
      return;
    }
    // In-dialog requests go where the registrar would send them (NAT rule of bindingTarget).
    const contactUri = sipUriOf(contactsOf(req)?.[0]);
    const dest = contactUri ? bindingTarget(contactUri, source, topVia(req)?.rport !== undefined) : source;
    this.intercom.onInvite(device, req, tx, source, dest).catch((err: unknown) => {
      this.log.error("sip: INVITE handling failed", { err });
      if (tx.pending) tx.reply(isGatehouseError(err) ? statusFor(err.code) : 500);
    });
  }

  private registeredFrom(address: string): Device[] {
    const out: Device[] = [];
    for (const b of this.registrar.allBindings()) {
      if (b.source.address !== address) continue;
      const d = this.devices.get(b.deviceId);
      if (d && !out.includes(d)) out.push(d);
    }
    return out;
  }

  // ---------------------------------------------------------------- keep-alive

  private armKeepAlive(): void {
    const s = this.ctx.cfg.keepAliveSeconds;
    if (s <= 0 || this.closing) return;
    this.keepAliveTimer = this.ctx.clock.setTimer(s * 1000, () => {
      for (const b of this.registrar.allBindings()) this.ping(b);
      this.armKeepAlive();
    });
  }

  /** OPTIONS to a binding; two unanswered in a row drop it (the device is gone). */
  private ping(b: Binding): void {
    const device = this.devices.get(b.deviceId);
    if (!device) return;
    const h = new SipHeaders();
    h.append("Via", ourVia(this.ctx, b.target.transport, this.ctx.ids.branch()));
    h.append("Max-Forwards", "70");
    h.append("From", `<sip:gatehouse@${this.ctx.cfg.domain}>;tag=${this.ctx.ids.tag()}`);
    h.append("To", `<sip:${device.username}@${this.ctx.cfg.domain}>`);
    h.append("Call-ID", this.ctx.ids.callId());
    h.append("CSeq", "1 OPTIONS");
    h.append("Accept", "application/sdp");
    const req: SipRequest = { kind: "request", method: "OPTIONS", uri: bindingRequestUri(b), headers: h, body: Buffer.alloc(0) };
    this.layer.request(req, b.target, (res, synthetic) => {
      if (res.status < 200) return;
      if (!synthetic) {
        b.missedKeepAlives = 0;
        return;
      }
      b.missedKeepAlives++;
      if (b.missedKeepAlives >= 2) this.registrar.remove(device, b, "unreachable");
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /** End calls (BYE / 480), stop timers, close sockets. Idempotent. */
  close(reason = "shutdown"): Promise<void> {
    this.closing ??= (async () => {
      this.log.info("sip: closing", { reason });
      this.keepAliveTimer?.cancel();
      this.intercom.close();
      // Let the final responses / BYEs leave before the sockets close.
      await new Promise((r) => setTimeout(r, 20));
      this.registrar.close();
      this.layer.close();
      this.ctx.ticker.close();
      await this.sockets.close();
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close("disposed");
  }
}

/** Start the SIP server (registrar + intercom UAS). */
export function startSipServer(opts: SipServerOptions): Promise<SipServer> {
  return SipServer.start(opts);
}

/** A concrete address for Via/Contact/SDP when bound to a wildcard. */
function concreteAddress(bind: string): string {
  if (bind !== "0.0.0.0" && bind !== "::") return bind;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === "IPv4") return a.address;
  }
  return "127.0.0.1";
}
