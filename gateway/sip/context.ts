/**
 * What calls and dialogs need from the running SIP server, passed explicitly (no globals):
 * configuration, clock, logger, the transaction layer, media resources, our own addresses,
 * and id generators (injectable for tests).
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "../../config/log.ts";
import type { SipConfig } from "../../config/sections/sip.ts";
import type { SipClock } from "./clock.ts";
import type { SipTransport } from "./endpoint.ts";
import type { MediaTicker } from "./media.ts";
import { MAGIC_COOKIE } from "./message.ts";
import type { RtpPortPool } from "./rtp-ports.ts";
import type { TransactionLayer } from "./transaction.ts";
import { uriHost } from "./uri.ts";

export interface SipContext {
  readonly cfg: SipConfig;
  readonly log: Logger;
  readonly clock: SipClock;
  readonly layer: TransactionLayer;
  readonly rtpPorts: RtpPortPool;
  readonly ticker: MediaTicker;
  /** Address written in SDP c=/o=. */
  readonly mediaAddress: string;
  /** Address written in Via and Contact. */
  readonly sipAddress: string;
  /** Our listening port for a transport, or undefined when that transport is off. */
  listenPort(t: SipTransport): number | undefined;
  /** True while a TCP/TLS flow is open. */
  flowOpen(flow: number): boolean;
  readonly ids: IdSource;
}

export interface IdSource {
  branch(): string;
  tag(): string;
  callId(): string;
  /** Our public call id (API, logs). */
  call(): string;
}

export function randomIds(random: (n: number) => Buffer = randomBytes): IdSource {
  return {
    branch: () => MAGIC_COOKIE + random(9).toString("base64url"),
    tag: () => random(6).toString("hex"),
    callId: () => random(12).toString("base64url"),
    call: () => "c_" + random(9).toString("base64url"),
  };
}

/** `SIP/2.0/UDP host:port;branch=…;rport` for requests we originate (RFC 3581 rport). */
export function ourVia(ctx: SipContext, transport: SipTransport, branch: string): string {
  const port = ctx.listenPort(transport) ?? 5060;
  return `SIP/2.0/${transport.toUpperCase()} ${uriHost(ctx.sipAddress)}:${port};branch=${branch};rport`;
}

/** Our Contact URI on a transport (§8.1.1.8). */
export function ourContact(ctx: SipContext, transport: SipTransport): string {
  const port = ctx.listenPort(transport) ?? 5060;
  const scheme = transport === "tls" ? "sips" : "sip";
  const t = transport === "udp" ? "" : transport === "tls" ? "" : ";transport=tcp";
  return `<${scheme}:gatehouse@${uriHost(ctx.sipAddress)}:${port}${t}>`;
}

/** Methods we accept, for Allow headers. */
export const ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";
/** Extensions we support (RFC 4028 session timer). */
export const SUPPORTED = "timer";
