/**
 * Test helpers for the browser intercom: an event-stream client (SSE over node:http, with the
 * session cookie), a werift peer playing the browser's side of a talk connection (microphone
 * tone in PCMU, counting what it hears), and a signed-in HTTP client for the gateway's JSON
 * and SDP routes with the CSRF header.
 */
import http from "node:http";
import { MediaStreamTrack, RTCRtpCodecParameters, type RTCPeerConnection, type RTCRtpTransceiver } from "werift";
// werift as the DTLS client survives a repeated HelloVerifyRequest (a loaded machine).
import "../peers/werift-dtls-client.ts";
import { linearToUlaw, ulawToLinear } from "../../gateway/sip/rtp.ts";
import type { HttpBrowser } from "../peers/oidc.ts";
import { loopbackPeerConnection } from "../peers/loopback-peer.ts";

export interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** An event stream reader: every event kept in order; wait for the next one matching a predicate. */
export class SseClient {
  readonly events: SseEvent[] = [];
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  private readonly req: http.ClientRequest;
  private waiters: { pred: (e: SseEvent) => boolean; from: number; resolve: (e: SseEvent) => void }[] = [];

  private constructor(req: http.ClientRequest, res: http.IncomingMessage) {
    this.req = req;
    let buf = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue; // retry: or a heartbeat comment
        const e = { event, data: JSON.parse(data) as Record<string, unknown> };
        this.events.push(e);
        for (const w of [...this.waiters]) {
          if (w.pred(e)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(e);
          }
        }
      }
    });
    this.ended = new Promise((resolve) => res.on("close", () => resolve()));
  }

  /** Open `url` with these headers (cookie); resolves once the `first` event (default `ready`) arrived. */
  static async open(url: string, headers: Record<string, string> = {}, first = "ready"): Promise<SseClient> {
    const { req, res } = await new Promise<{ req: http.ClientRequest; res: http.IncomingMessage }>((resolve, reject) => {
      const req = http.get(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => resolve({ req, res }));
      req.on("error", reject);
    });
    if (res.statusCode !== 200) {
      res.resume();
      throw new Error(`event stream answered ${res.statusCode}`);
    }
    const c = new SseClient(req, res);
    await c.next(first);
    return c;
  }

  /** The first event named `event` (matching `pred`) from index `from` on (default: from now). */
  next(event: string, pred: (d: Record<string, unknown>) => boolean = () => true, timeoutMs = 10_000, from = this.events.length): Promise<Record<string, unknown>> {
    const match = (e: SseEvent) => e.event === event && pred(e.data);
    for (let i = from; i < this.events.length; i++) if (match(this.events[i]!)) return Promise.resolve(this.events[i]!.data);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${event} event within ${timeoutMs} ms; got ${JSON.stringify(this.events.map((e) => e.event))}`)), timeoutMs);
      this.waiters.push({ pred: match, from, resolve: (e) => (clearTimeout(t), resolve(e.data)) });
    });
  }

  /** Every event named `event` so far. */
  all(event: string): Record<string, unknown>[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  close(): void {
    this.req.destroy();
  }
}

/** The cookie header of a signed-in HttpBrowser for `url`'s host. */
export function cookieHeader(b: HttpBrowser, url: string): Record<string, string> {
  const host = new URL(url).hostname;
  const jar = b.jar.get(host);
  if (!jar) return {};
  return { cookie: [...jar].map(([k, c]) => `${k}=${c.value}`).join("; ") };
}

/** A signed-in client of the gateway's intercom routes (cookie + CSRF + Origin, like the page). */
export class GatewayClient {
  readonly base: string;
  readonly browser: HttpBrowser | undefined;
  private csrf: string | undefined;

  constructor(base: string, browser?: HttpBrowser) {
    this.base = base;
    this.browser = browser;
  }

  private async headers(): Promise<Record<string, string>> {
    if (!this.browser) return {};
    if (this.csrf === undefined) {
      const r = await this.browser.request(`${this.base}/auth/csrf`, { headers: { accept: "application/json" } });
      this.csrf = (JSON.parse(r.body) as { token: string }).token;
    }
    return { "x-csrf-token": this.csrf, origin: new URL(this.base).origin };
  }

  async get(path: string): Promise<{ status: number; body: string; json: () => unknown }> {
    const url = `${this.base}${path}`;
    const r = this.browser
      ? await this.browser.request(url, { headers: { accept: "application/json" } })
      : await fetch(url, { headers: { accept: "application/json" } }).then(async (x) => ({ status: x.status, body: await x.text(), headers: x.headers }));
    return { status: r.status, body: r.body, json: () => JSON.parse(r.body) };
  }

  async post(
    path: string,
    body?: { sdp?: string; json?: unknown; image?: { type: string; bytes: Buffer } },
    opts: { csrf?: boolean; signal?: AbortSignal } = {},
  ): Promise<{ status: number; body: string; headers: Headers; json: () => Record<string, unknown> }> {
    const url = `${this.base}${path}`;
    const headers: Record<string, string> = opts.csrf === false ? {} : await this.headers();
    let payload: string | Uint8Array<ArrayBuffer> | undefined;
    if (body?.image !== undefined) {
      headers["content-type"] = body.image.type;
      payload = new Uint8Array(body.image.bytes);
    } else if (body?.sdp !== undefined) {
      headers["content-type"] = "application/sdp";
      payload = body.sdp;
    } else if (body?.json !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body.json);
    }
    const init = { method: "POST", headers, ...(payload !== undefined ? { body: payload } : {}), ...(opts.signal ? { signal: opts.signal } : {}) };
    const r = this.browser
      ? await this.browser.request(url, init)
      : await fetch(url, init).then(async (x) => ({ status: x.status, body: await x.text(), headers: x.headers }));
    return { status: r.status, body: r.body, headers: r.headers, json: () => JSON.parse(r.body) as Record<string, unknown> };
  }

  /** Open the ring stream as this user. */
  events(): Promise<SseClient> {
    return SseClient.open(`${this.base}/api/intercom/events`, this.browser ? cookieHeader(this.browser, this.base) : {});
  }
}

const PCMU = () => new RTCRtpCodecParameters({ mimeType: "audio/PCMU", clockRate: 8000, channels: 1, payloadType: 0, rtcpFeedback: [] });

/**
 * werift standing in for the browser's talk connection: sendrecv PCMU, a microphone playing a
 * sine tone (20 ms packets), and what it hears decoded to linear samples.
 */
export class WeriftBrowserPhone {
  readonly pc: RTCPeerConnection;
  readonly heard: number[] = [];
  packetsIn = 0;
  private readonly tr: RTCRtpTransceiver;
  private timer: NodeJS.Timeout | undefined;
  private waiters: { n: number; resolve: () => void }[] = [];

  private constructor(pc: RTCPeerConnection, tr: RTCRtpTransceiver) {
    this.pc = pc;
    this.tr = tr;
    tr.onTrack.subscribe((track) =>
      track.onReceiveRtp.subscribe((rtp) => {
        this.packetsIn++;
        for (const b of rtp.payload) this.heard.push(ulawToLinear(b));
        for (const w of [...this.waiters]) if (this.packetsIn >= w.n) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve();
        }
      }),
    );
  }

  static async create(): Promise<{ phone: WeriftBrowserPhone; offer: string }> {
    const pc = loopbackPeerConnection({
      codecs: { audio: [PCMU()], video: [] },
      headerExtensions: { audio: [], video: [] },
    });
    const tr = pc.addTransceiver(new MediaStreamTrack({ kind: "audio", codec: PCMU() }), { direction: "sendrecv" });
    await pc.setLocalDescription(await pc.createOffer());
    return { phone: new WeriftBrowserPhone(pc, tr), offer: pc.localDescription!.sdp };
  }

  async accept(answerSdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: "answer", sdp: answerSdp });
  }

  /** Resolves once connected (ICE + DTLS). */
  connected(timeoutMs = 10_000): Promise<void> {
    if (this.pc.connectionState === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`talk connection not up in ${timeoutMs} ms (${this.pc.connectionState})`)), timeoutMs);
      const sub = this.pc.connectionStateChange.subscribe((s) => {
        if (s === "connected") {
          clearTimeout(t);
          sub.unSubscribe();
          resolve();
        }
      });
    });
  }

  /** Resolves when the connection closes (the gateway hung up). */
  closedByPeer(timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`talk connection still ${this.pc.connectionState}`)), timeoutMs);
      const check = (s: string) => {
        if (s === "closed" || s === "failed" || s === "disconnected") {
          clearTimeout(t);
          resolve(s);
        }
      };
      this.pc.connectionStateChange.subscribe(check);
      check(this.pc.connectionState);
    });
  }

  /** Wait until `n` packets were heard in all. */
  until(n: number, timeoutMs = 10_000): Promise<void> {
    if (this.packetsIn >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`heard ${this.packetsIn} of ${n} packets`)), timeoutMs);
      this.waiters.push({ n, resolve: () => (clearTimeout(t), resolve()) });
    });
  }

  /** The microphone: a sine tone in 20 ms PCMU packets until stop(). */
  startTone(freq: number, amplitude = 8000): void {
    let seq = 1000;
    let ts = 5000;
    let n = 0;
    this.timer = setInterval(() => {
      const payload = Buffer.alloc(160);
      for (let i = 0; i < 160; i++) payload[i] = linearToUlaw(Math.round(amplitude * Math.sin((2 * Math.PI * freq * (n + i)) / 8000)));
      n += 160;
      const h = Buffer.alloc(12);
      h[0] = 0x80;
      h[1] = 0;
      h.writeUInt16BE(seq++ & 0xffff, 2);
      h.writeUInt32BE(ts >>> 0, 4);
      ts += 160;
      h.writeUInt32BE(0x1234, 8);
      void this.tr.sender.sendRtp(Buffer.concat([h, payload])).catch(() => {});
    }, 20);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async close(): Promise<void> {
    this.stop();
    await this.pc.close().catch(() => {});
  }
}

/** Mean absolute amplitude and zero crossings per second of 8 kHz samples. */
export function analyse(samples: ArrayLike<number>): { level: number; crossingsPerSecond: number; peak: number } {
  let sum = 0;
  let crossings = 0;
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i]!;
    sum += Math.abs(v);
    peak = Math.max(peak, Math.abs(v));
    if (i > 0 && samples[i - 1]! < 0 !== v < 0) crossings++;
  }
  return { level: sum / Math.max(1, samples.length), crossingsPerSecond: (crossings * 8000) / Math.max(1, samples.length), peak };
}
