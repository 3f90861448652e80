/**
 * A TURN client for tests, built on our STUN codec, over UDP, TCP or TLS: long-term
 * credentials with the 401/438 round trip, Allocate/Refresh/CreatePermission/ChannelBind,
 * Send indications and ChannelData, and a view of what the server sent back. Every wait
 * has a deadline; nothing sleeps.
 */
import dgram from "node:dgram";
import net from "node:net";
import tls from "node:tls";
import { StreamFramer } from "../../turn/framing.ts";
import type { TransportAddress } from "../../turn/stun/address.ts";
import { Attr, MessageClass, Method } from "../../turn/stun/constants.ts";
import { longTermKey } from "../../turn/stun/integrity.ts";
import { attrErrorCode, attrString, attrXorAddress, getAttr, parseStun, type StunMessage } from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

export interface TurnClientOptions {
  transport: "udp" | "tcp" | "tls";
  host: string;
  port: number;
  username: string;
  password: string;
  realm?: string;
  /** Local address to bind (UDP) or connect from (TCP/TLS). Default 127.0.0.1. */
  localAddress?: string;
  /** Per-request deadline, ms (UDP requests are retransmitted meanwhile). Default 3000. */
  timeoutMs?: number;
}

export class TurnTestClient {
  readonly opts: TurnClientOptions;
  /** Everything that was not a response to one of our requests (Data indications, ChannelData). */
  readonly received: Buffer[] = [];
  /** Resolves when a TCP/TLS connection closes (never for UDP until close()). */
  readonly closed: Promise<void>;
  private udp: dgram.Socket | undefined;
  private stream: net.Socket | undefined;
  private nonce = "";
  private realm: string;
  private readonly waiting = new Map<string, (m: StunMessage) => void>();
  private markClosed!: () => void;

  private constructor(opts: TurnClientOptions) {
    this.opts = opts;
    this.realm = opts.realm ?? "gatehouse";
    this.closed = new Promise((r) => (this.markClosed = r));
  }

  static async connect(opts: TurnClientOptions): Promise<TurnTestClient> {
    const c = new TurnTestClient(opts);
    await c.open();
    return c;
  }

  private async open(): Promise<void> {
    const o = this.opts;
    const local = o.localAddress ?? "127.0.0.1";
    if (o.transport === "udp") {
      const s = dgram.createSocket(local.includes(":") ? "udp6" : "udp4");
      this.udp = s;
      await new Promise<void>((r) => s.bind(0, local, () => r()));
      s.on("message", (b) => this.onFrame(b));
      return;
    }
    const framer = new StreamFramer({ frame: (_k, f) => this.onFrame(Buffer.from(f)) });
    const sock =
      o.transport === "tcp"
        ? net.connect({ host: o.host, port: o.port, localAddress: local })
        : tls.connect({ socket: net.connect({ host: o.host, port: o.port, localAddress: local }), rejectUnauthorized: false, ALPNProtocols: ["stun.turn"] });
    this.stream = sock;
    sock.on("data", (chunk: Buffer) => {
      if (framer.push(chunk)) sock.destroy();
    });
    sock.on("error", () => {});
    sock.once("close", () => this.markClosed());
    await new Promise<void>((resolve, reject) => {
      sock.once(o.transport === "tcp" ? "connect" : "secureConnect", () => resolve());
      sock.once("error", reject);
    });
  }

  private onFrame(b: Buffer): void {
    const r = b[0]! < 0x40 ? parseStun(b) : undefined;
    if (r?.ok && (r.msg.cls === MessageClass.Success || r.msg.cls === MessageClass.Error)) {
      this.waiting.get(r.msg.transactionId.toString("hex"))?.(r.msg);
      return;
    }
    this.received.push(b);
  }

  /** Send raw bytes to the server (ChannelData, indications, garbage). */
  raw(b: Buffer): void {
    if (this.udp) this.udp.send(b, this.opts.port, this.opts.host);
    else this.stream!.write(b);
  }

  private once(method: number, add: ((w: StunWriter) => void) | undefined, auth: boolean): Promise<StunMessage> {
    const w = new StunWriter(method, MessageClass.Request);
    add?.(w);
    if (auth) {
      w.string(Attr.Username, this.opts.username).string(Attr.Realm, this.realm).string(Attr.Nonce, this.nonce);
      w.integrity(longTermKey(this.opts.username, this.realm, this.opts.password));
    }
    const b = w.fingerprint().finish();
    const tid = b.subarray(8, 20).toString("hex");
    const deadline = this.opts.timeoutMs ?? 3000;
    return new Promise((resolve, reject) => {
      let retry: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        clearTimeout(retry);
        this.waiting.delete(tid);
        reject(new Error(`no answer to TURN method 0x${method.toString(16)} within ${deadline} ms`));
      }, deadline);
      this.waiting.set(tid, (m) => {
        clearTimeout(timer);
        clearTimeout(retry);
        this.waiting.delete(tid);
        resolve(m);
      });
      const send = (): void => {
        this.raw(b);
        // RFC 8489 §6.2.1: UDP requests are retransmitted.
        if (this.udp) retry = setTimeout(send, 250);
      };
      send();
    });
  }

  /** A request with credentials, taking REALM and NONCE from a 401/438 and retrying once. */
  async request(method: number, add?: (w: StunWriter) => void): Promise<StunMessage> {
    let m = await this.once(method, add, this.nonce !== "");
    const c = codeOf(m);
    if (c === 401 || c === 438) {
      const n = getAttr(m, Attr.Nonce);
      const r = getAttr(m, Attr.Realm);
      if (n && r) {
        this.nonce = attrString(m, n);
        this.realm = attrString(m, r);
        m = await this.once(method, add, true);
      }
    }
    return m;
  }

  /** Allocate a UDP relay; returns the response (check `relayed` on success). */
  allocate(lifetime?: number): Promise<StunMessage> {
    return this.request(Method.Allocate, (w) => {
      w.u32(Attr.RequestedTransport, 17 << 24);
      if (lifetime !== undefined) w.u32(Attr.Lifetime, lifetime);
    });
  }

  refresh(lifetime?: number): Promise<StunMessage> {
    return this.request(Method.Refresh, (w) => {
      if (lifetime !== undefined) w.u32(Attr.Lifetime, lifetime);
    });
  }

  createPermission(address: string): Promise<StunMessage> {
    return this.request(Method.CreatePermission, (w) => w.xorAddress(Attr.XorPeerAddress, address, 0));
  }

  channelBind(channel: number, address: string, port: number): Promise<StunMessage> {
    return this.request(Method.ChannelBind, (w) => w.u32(Attr.ChannelNumber, channel << 16).xorAddress(Attr.XorPeerAddress, address, port));
  }

  /** A Send indication to `address:port` carrying `data`. */
  send(address: string, port: number, data: Buffer): void {
    this.raw(new StunWriter(Method.Send, MessageClass.Indication).xorAddress(Attr.XorPeerAddress, address, port).bytes(Attr.Data, data).finish());
  }

  /** ChannelData on a bound channel (padded over streams). */
  channelData(channel: number, data: Buffer): void {
    const pad = this.udp ? 0 : (4 - (data.length & 3)) & 3;
    const b = Buffer.alloc(4 + data.length + pad);
    b.writeUInt16BE(channel, 0);
    b.writeUInt16BE(data.length, 2);
    data.copy(b, 4);
    this.raw(b);
  }

  close(): void {
    this.udp?.close();
    this.udp = undefined;
    this.stream?.destroy();
  }
}

export function codeOf(m: StunMessage): number {
  const a = getAttr(m, Attr.ErrorCode);
  return a ? attrErrorCode(m, a)!.code : 0;
}

export function reasonOf(m: StunMessage): string {
  const a = getAttr(m, Attr.ErrorCode);
  return a ? attrErrorCode(m, a)!.reason : "";
}

/** XOR-RELAYED-ADDRESS of an Allocate success. */
export function relayedOf(m: StunMessage): TransportAddress {
  return attrXorAddress(m, getAttr(m, Attr.XorRelayedAddress)!)!;
}
