/**
 * RTP/RTCP socket pairs for calls from a configured UDP range: RTP on an even port, RTCP
 * on the next one (RFC 3550 §11). Ports taken by other processes are skipped; the cursor
 * rotates so a just-released pair is not reused at once (late packets of the old call).
 */
import dgram from "node:dgram";
import { OverloadError } from "../../config/errors.ts";

export interface RtpPair {
  readonly rtp: dgram.Socket;
  readonly rtcp: dgram.Socket;
  readonly rtpPort: number;
  readonly rtcpPort: number;
  /** Close both sockets and return the ports. Idempotent. */
  release(): void;
}

export interface RtpPortPoolOptions {
  /** Inclusive range [first, last]. */
  range: readonly [number, number];
  bindAddress: string;
  /** Socket receive buffer, bytes. Default 262144. */
  receiveBufferBytes?: number;
}

export class RtpPortPool {
  private readonly first: number;
  private readonly last: number;
  private readonly bind: string;
  private readonly rcvbuf: number;
  private readonly inUse = new Set<number>();
  private cursor: number;

  constructor(opts: RtpPortPoolOptions) {
    this.first = opts.range[0] % 2 === 0 ? opts.range[0] : opts.range[0] + 1;
    this.last = opts.range[1];
    this.bind = opts.bindAddress;
    this.rcvbuf = opts.receiveBufferBytes ?? 262_144;
    this.cursor = this.first;
    if (this.first + 1 > this.last) throw new OverloadError("RTP port range holds no even/odd pair");
  }

  /** Pairs in the range. */
  get capacity(): number {
    return Math.floor((this.last - this.first + 1) / 2);
  }

  get used(): number {
    return this.inUse.size;
  }

  /** Bind a free pair; throws OverloadError when the range is exhausted. */
  async allocate(): Promise<RtpPair> {
    const pairs = this.capacity;
    for (let tried = 0; tried < pairs; tried++) {
      const port = this.cursor;
      this.cursor = this.cursor + 2 > this.last - 1 ? this.first : this.cursor + 2;
      if (this.inUse.has(port)) continue;
      this.inUse.add(port);
      const pair = await this.tryBind(port);
      if (pair) return pair;
      this.inUse.delete(port);
    }
    throw new OverloadError("no free RTP port pair in the configured range");
  }

  private async tryBind(port: number): Promise<RtpPair | undefined> {
    const type = this.bind.includes(":") ? "udp6" : "udp4";
    const rtp = await bindSocket(type, this.bind, port);
    if (!rtp) return undefined;
    const rtcp = await bindSocket(type, this.bind, port + 1);
    if (!rtcp) {
      rtp.close();
      return undefined;
    }
    for (const s of [rtp, rtcp]) {
      try {
        s.setRecvBufferSize(this.rcvbuf);
      } catch {
        // The kernel caps it at net.core.rmem_max; the default still works.
      }
    }
    let released = false;
    return {
      rtp,
      rtcp,
      rtpPort: port,
      rtcpPort: port + 1,
      release: () => {
        if (released) return;
        released = true;
        rtp.close();
        rtcp.close();
        this.inUse.delete(port);
      },
    };
  }
}

function bindSocket(type: "udp4" | "udp6", address: string, port: number): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket({ type, reuseAddr: false });
    const onError = (): void => {
      s.close();
      resolve(undefined);
    };
    s.once("error", onError);
    s.bind(port, address, () => {
      s.off("error", onError);
      resolve(s);
    });
  });
}
