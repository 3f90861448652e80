/**
 * Allocation state (RFC 8656 §2.2, §7–§12): the relayed transport address(es), the
 * permissions (per peer IP) and the channel bindings. Plain data with number-keyed
 * maps so the relay path does one or two lookups per packet; all timing is in
 * milliseconds of the injected clock.
 */
import type { AllocationId } from "../config/ids.ts";
import type { IpFamily, TransportAddress } from "./stun/address.ts";
import type { IntegrityAlgorithm } from "./stun/integrity.ts";

export type TransportKind = "udp" | "tcp" | "tls";

/** How the adapter reaches a client; the core hands it back in actions and never calls it itself. */
export interface ClientLink {
  /** Send one message (STUN or ChannelData, already framed) to the client. */
  send(data: Buffer): void;
}

/** The client side of a 5-tuple, as the server sees it. */
export interface ClientTuple {
  readonly transport: TransportKind;
  /** The client's address and port. */
  readonly remote: TransportAddress;
  /** The server address and port the client reached. */
  readonly local: TransportAddress;
  /** Unique lookup key of this 5-tuple (a number for UDP/IPv4, any unique value otherwise). */
  readonly key: number | string;
  readonly link: ClientLink;
}

/** An adapter-owned relay socket; the core stores it for the adapter's hot path. */
export interface RelayHandle {
  send(data: Uint8Array, port: number, address: string): void;
  close(): void;
}

/** A relayed transport address (one per address family of the allocation). */
export interface RelayEndpoint {
  readonly family: IpFamily;
  /** Address the socket is bound to. */
  readonly address: string;
  readonly port: number;
  /** Address announced in XOR-RELAYED-ADDRESS (external address behind NAT). */
  readonly external: string;
  readonly handle: RelayHandle;
  /** Set when the endpoint is attached to an allocation; undefined while reserved. */
  allocation: Allocation | undefined;
}

export class Permission {
  readonly ip: string;
  readonly ipKey: number | string;
  expiresAt: number;
  /** Channels referring to this permission; it is kept (expired) while any do. */
  refs = 0;
  constructor(ip: string, ipKey: number | string, expiresAt: number) {
    this.ip = ip;
    this.ipKey = ipKey;
    this.expiresAt = expiresAt;
  }
}

export class Channel {
  readonly number: number;
  readonly peer: TransportAddress;
  readonly peerKey: number | string;
  readonly permission: Permission;
  /** The relay socket of the peer's address family. */
  readonly relay: RelayEndpoint;
  readonly allocation: Allocation;
  expiresAt: number;
  constructor(o: {
    number: number;
    peer: TransportAddress;
    peerKey: number | string;
    permission: Permission;
    relay: RelayEndpoint;
    allocation: Allocation;
    expiresAt: number;
  }) {
    this.number = o.number;
    this.peer = o.peer;
    this.peerKey = o.peerKey;
    this.permission = o.permission;
    this.relay = o.relay;
    this.allocation = o.allocation;
    this.expiresAt = o.expiresAt;
  }
}

/** Token bucket in bytes; `rate` 0 means unlimited. */
export class Bandwidth {
  private tokens: number;
  private last: number;
  private readonly rate: number; // bytes per ms
  private readonly burst: number;
  constructor(bytesPerSecond: number, now: number) {
    this.rate = bytesPerSecond / 1000;
    this.burst = bytesPerSecond; // one second's worth
    this.tokens = this.burst;
    this.last = now;
  }
  /** Take `n` bytes; false means drop the packet. */
  take(n: number, now: number): boolean {
    if (this.rate === 0) return true;
    if (now > this.last) {
      this.tokens += (now - this.last) * this.rate;
      if (this.tokens > this.burst) this.tokens = this.burst;
      this.last = now;
    }
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

export class Allocation {
  readonly id: AllocationId;
  readonly tuple: ClientTuple;
  readonly username: string;
  /** The credential's subject: quotas count per subject, not per (expiring) username. */
  readonly subject: string;
  /** Reference of the sign-in session the credentials were minted for; the allocation ends with it. */
  readonly session: string | undefined;
  /** Long-term key the allocation was created with; later requests must match (441 otherwise). */
  readonly key: Buffer;
  readonly integrity: IntegrityAlgorithm;
  /** Allocate transaction id (hex) and its success response, for retransmissions (RFC 8656 §7.2). */
  readonly allocateTransaction: string;
  allocateResponse: Buffer | undefined;
  readonly relays: RelayEndpoint[];
  relay4: RelayEndpoint | undefined;
  relay6: RelayEndpoint | undefined;
  expiresAt: number;
  readonly createdAt: number;
  readonly permissions = new Map<number | string, Permission>();
  readonly channels = new Map<number, Channel>();
  readonly channelsByPeer = new Map<number | string, Channel>();
  readonly toPeer: Bandwidth;
  readonly toClient: Bandwidth;
  closed = false;

  constructor(o: {
    id: AllocationId;
    tuple: ClientTuple;
    username: string;
    subject: string;
    session: string | undefined;
    key: Buffer;
    integrity: IntegrityAlgorithm;
    allocateTransaction: string;
    relays: RelayEndpoint[];
    expiresAt: number;
    now: number;
    bandwidthBytesPerSecond: number;
  }) {
    this.id = o.id;
    this.tuple = o.tuple;
    this.username = o.username;
    this.subject = o.subject;
    this.session = o.session;
    this.key = o.key;
    this.integrity = o.integrity;
    this.allocateTransaction = o.allocateTransaction;
    this.relays = o.relays;
    this.relay4 = o.relays.find((r) => r.family === 4);
    this.relay6 = o.relays.find((r) => r.family === 6);
    this.expiresAt = o.expiresAt;
    this.createdAt = o.now;
    this.toPeer = new Bandwidth(o.bandwidthBytesPerSecond, o.now);
    this.toClient = new Bandwidth(o.bandwidthBytesPerSecond, o.now);
  }

  relayFor(family: IpFamily): RelayEndpoint | undefined {
    return family === 4 ? this.relay4 : this.relay6;
  }
}
