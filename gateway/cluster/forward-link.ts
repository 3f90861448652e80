/**
 * A node's end of the RTP forwarding links: one UDP socket on the internal address
 * (`cluster.forward.address`), shared by the links this node sends as a camera's owner
 * (forward-sender.ts) and those it receives as a relaying node (forward-receiver.ts).
 * Datagrams are told apart by channel and direction; anything else is dropped and counted,
 * never thrown.
 */
import dgram from "node:dgram";
import { isIP } from "node:net";
import type { Logger } from "../../config/log.ts";
import { relayChannelOf, RelayType, type RelayDropReason } from "./forward-wire.ts";

/** What receives the datagrams of one channel. */
export interface RelayChannelHandler {
  datagram(buf: Buffer, from: dgram.RemoteInfo): void;
}

/** Bigger than the default 208 KiB: a keyframe replayed to a new link arrives as one burst. */
const RECV_BUFFER = 4 * 1024 * 1024;

export class RelayEndpoint {
  readonly drops: Record<RelayDropReason, number> = { malformed: 0, unknownChannel: 0, badAuth: 0, replay: 0, staleEpoch: 0, unexpected: 0 };
  /** Datagrams sent and received (accepted or not). */
  sent = 0;
  received = 0;
  /** Links this node sends (as the owner), by channel: keep-alives, keyframe requests and byes come here. */
  readonly owned = new Map<number, RelayChannelHandler>();
  /** Links this node receives (as a relaying node), by channel: media comes here. */
  readonly relayed = new Map<number, RelayChannelHandler>();
  private readonly socket: dgram.Socket;
  private closed = false;

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
  }

  /** Binds the socket (port 0: any free port). */
  static async bind(o: { address: string; port: number; log: Logger }): Promise<RelayEndpoint> {
    const family = isIP(o.address) === 6 ? "udp6" : "udp4";
    const socket = dgram.createSocket({ type: family, recvBufferSize: RECV_BUFFER, sendBufferSize: RECV_BUFFER });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(o.port, o.address, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const ep = new RelayEndpoint(socket);
    socket.on("error", (err) => o.log.warn("cluster: forwarding socket error", { err }));
    socket.on("message", (buf, from) => ep.onMessage(buf, from));
    return ep;
  }

  /** The bound address and port. */
  get address(): { address: string; port: number } {
    const a = this.socket.address();
    return { address: a.address, port: a.port };
  }

  /** The bound address is one address (not 0.0.0.0 / ::): the one to tell the other node. */
  get specific(): string | undefined {
    const a = this.socket.address().address;
    return a === "0.0.0.0" || a === "::" ? undefined : a;
  }

  drop(reason: RelayDropReason): void {
    this.drops[reason]++;
  }

  send(buf: Buffer, port: number, address: string): void {
    if (this.closed) return;
    this.sent++;
    this.socket.send(buf, port, address);
  }

  private onMessage(buf: Buffer, from: dgram.RemoteInfo): void {
    this.received++;
    const channel = relayChannelOf(buf);
    if (channel === undefined) return this.drop("malformed");
    const type = buf[3]!;
    // Keep-alives and keyframe requests go to the owner's side; media to the relaying side; a bye to either.
    const toOwner = type === RelayType.keep || type === RelayType.keyframe || (type === RelayType.bye && this.owned.has(channel));
    const h = toOwner ? this.owned.get(channel) : this.relayed.get(channel);
    if (!h) return this.drop("unknownChannel");
    try {
      h.datagram(buf, from);
    } catch {
      this.drop("unexpected");
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owned.clear();
    this.relayed.clear();
    this.socket.close();
  }
}
