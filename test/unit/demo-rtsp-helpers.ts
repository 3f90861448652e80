/**
 * Helpers for the demo recorder's tests: a recorder on a hand-cranked clock, and a raw RTSP
 * client over TCP that collects interleaved frames.
 */
import net from "node:net";
import { once } from "node:events";
import { silentLogger } from "../../config/log.ts";
import { startDemoRecorder, type DemoRecorderOptions } from "../../gateway/demo/recorder.ts";
import { RtspHeaders, RtspStreamParser, serializeRequest, type RtspResponse } from "../../gateway/rtsp/message.ts";

export const WALL0 = Date.UTC(2025, 5, 1, 12, 0, 0);

/** A recorder with a hand-cranked clock: `advance(ms)` runs the 10 ms ticks in between. */
export async function start(extra: Partial<DemoRecorderOptions> = {}) {
  let now = 1000;
  let tick: (() => void) | null = null;
  const rec = await startDemoRecorder({
    host: "127.0.0.1",
    port: 0,
    log: silentLogger,
    clock: () => now,
    wallClock: () => WALL0 + now,
    timers: {
      setInterval: (fn) => {
        tick = fn;
        return 1;
      },
      clearInterval: () => {
        tick = null;
      },
    },
    ...extra,
  });
  return {
    rec,
    now: () => now,
    /** Moves the clock forward in 10 ms ticks. */
    advance(ms: number) {
      for (let t = 0; t < ms; t += 10) {
        now += 10;
        tick?.();
      }
    },
  };
}

export interface Frame {
  channel: number;
  data: Buffer;
}

/** A raw RTSP client: one request at a time, interleaved frames collected. */
export class RawClient {
  readonly sock: net.Socket;
  readonly frames: Frame[] = [];
  private readonly parser = new RtspStreamParser();
  private readonly responses: RtspResponse[] = [];
  private waiters: ((r: RtspResponse) => void)[] = [];
  private frameWaiters: { n: number; resolve: () => void }[] = [];
  private cseq = 0;
  closed = false;

  constructor(port: number) {
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.on("data", (c: Buffer) => {
      for (const ev of this.parser.push(c)) {
        if (ev.type === "response") {
          const w = this.waiters.shift();
          if (w) w(ev.message);
          else this.responses.push(ev.message);
        } else if (ev.type === "interleaved") {
          this.frames.push({ channel: ev.channel, data: Buffer.from(ev.data) });
          this.frameWaiters = this.frameWaiters.filter((f) => (this.frames.length >= f.n ? (f.resolve(), false) : true));
        }
      }
    });
    this.sock.on("close", () => (this.closed = true));
    this.sock.on("error", () => {});
  }

  async ready(): Promise<void> {
    await once(this.sock, "connect");
  }

  next(): Promise<RtspResponse> {
    const r = this.responses.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  request(method: string, uri: string, headers: Record<string, string> = {}, body = ""): Promise<RtspResponse> {
    const h = new RtspHeaders({ CSeq: String(++this.cseq), ...headers });
    this.sock.write(serializeRequest({ method, uri, headers: h, body: Buffer.from(body) }));
    return this.next();
  }

  raw(bytes: string | Buffer): Promise<RtspResponse> {
    this.sock.write(bytes);
    return this.next();
  }

  /** Resolves once `n` interleaved frames have arrived in total. */
  frameCount(n: number): Promise<void> {
    if (this.frames.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.frameWaiters.push({ n, resolve }));
  }

  /** Waits until the socket has drained what the server wrote so far (a ping round trip). */
  async sync(): Promise<void> {
    await this.request("GET_PARAMETER", "*");
  }

  close(): void {
    this.sock.destroy();
  }
}

