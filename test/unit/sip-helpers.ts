/**
 * Test doubles for the SIP server: an in-memory network (FakeNet, injected as the server's
 * transport) and a scripted SIP phone that builds requests, answers digest challenges and
 * waits for responses. Used by the sip-*.test.ts unit tests.
 */
import { randomBytes } from "node:crypto";
import type { SafeEmitter, EventMap } from "../../config/events.ts";
import { parseConfig } from "../../config/load.ts";
import type { SipConfig } from "../../config/sections/sip.ts";
import { digestResponse } from "../../gateway/digest/client.ts";
import { parseCredentials, type DigestAlgorithm } from "../../gateway/digest/server.ts";
import type { Endpoint } from "../../gateway/sip/endpoint.ts";
import { cseqOf, parseMessage, serializeMessage, SipHeaders, type SipMessage, type SipRequest, type SipResponse } from "../../gateway/sip/message.ts";
import type { SipSocketsOptions, SipTransportAdapter, TransportStats } from "../../gateway/sip/transport.ts";

export interface Sent {
  readonly msg: SipMessage;
  readonly to: Endpoint;
}

/** An in-memory network: what the server sends is recorded; tests deliver what devices send. */
export class FakeNet implements SipTransportAdapter {
  readonly boundPorts = { udp: 5060, tcp: 5060 };
  readonly stats: TransportStats = {
    datagramsIn: 0, datagramsOut: 0, streamMessagesIn: 0, streamMessagesOut: 0, connectionsAccepted: 0,
    connectionsOpened: 0, connectionsRefused: 0, framingErrors: 0, sendErrors: 0, keepAlives: 0,
    connectionsRefusedPerSource: 0, messageTimeouts: 0, idleClosed: 0, refusedSources: 0,
  };
  readonly sent: Sent[] = [];
  private onMessage: ((data: Buffer, source: Endpoint) => void) | undefined;
  private waiters: { pred: (s: Sent) => boolean; resolve: (s: Sent) => void; from: number }[] = [];
  /** Endpoints whose packets are "lost" (sent but not recorded), to test retransmissions. */
  drop: ((s: Sent) => boolean) | undefined;

  readonly factory = async (opts: SipSocketsOptions): Promise<SipTransportAdapter> => {
    this.onMessage = opts.onMessage;
    return this;
  };

  deliver(msg: SipMessage | Buffer, from: Endpoint): void {
    const data = Buffer.isBuffer(msg) ? msg : serializeMessage(msg);
    this.onMessage?.(data, from);
  }

  send(data: Buffer, to: Endpoint): void {
    const r = parseMessage(data);
    let msg: SipMessage;
    if (r.kind === "request" || r.kind === "response") msg = r.message;
    else {
      // A 400 to a malformed request echoes the sender's own malformed headers (§8.2.6.2):
      // keep the status line and the raw headers.
      const m = /^SIP\/2\.0 (\d{3}) ?(.*)\r\n/.exec(data.toString("latin1"));
      if (!m) throw new Error(`server sent an unparseable message: ${data.toString("latin1")}`);
      const headers = new SipHeaders();
      for (const line of data.toString("latin1").split("\r\n").slice(1)) {
        const c = line.indexOf(":");
        if (c > 0) headers.append(line.slice(0, c), line.slice(c + 1).trim());
      }
      msg = { kind: "response", status: Number(m[1]), reason: m[2] ?? "", headers, body: Buffer.alloc(0) };
    }
    const s: Sent = { msg, to };
    if (this.drop?.(s)) return;
    this.sent.push(s);
    for (const w of [...this.waiters]) {
      if (w.pred(s)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(s);
      }
    }
  }

  hasFlow(): boolean {
    return true;
  }

  async close(): Promise<void> {}

  /** The next sent message (after index `from`, default: messages not yet seen) matching `pred`. */
  next(pred: (s: Sent) => boolean, opts: { from?: number; timeoutMs?: number } = {}): Promise<Sent> {
    const from = opts.from ?? this.mark;
    for (let i = from; i < this.sent.length; i++) {
      if (pred(this.sent[i]!)) {
        this.mark = i + 1;
        return Promise.resolve(this.sent[i]!);
      }
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("timed out waiting for a SIP message")), opts.timeoutMs ?? 3000);
      this.waiters.push({
        pred,
        from,
        resolve: (s) => {
          clearTimeout(timer);
          this.mark = this.sent.indexOf(s) + 1;
          resolve(s);
        },
      });
    });
  }

  /** Index after the last message returned by next(). */
  mark = 0;
}

export const isResponse = (status: number, method?: string) => (s: Sent): boolean =>
  s.msg.kind === "response" && s.msg.status === status && (method === undefined || cseqOf(s.msg).method === method);
export const isRequest = (method: string) => (s: Sent): boolean => s.msg.kind === "request" && s.msg.method === method;

/** Config for tests: fake ports, a random RTP range, fast keep-alive off unless asked. */
export function testConfig(input: Record<string, unknown>): SipConfig {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  return parseConfig({ sip: { enabled: true, keepAliveSeconds: 0, rtpPortRange: [base, base + 199], ...input } }).sip;
}

/** Resolve on the next `event` of a SafeEmitter. */
export function once<E extends EventMap, K extends keyof E>(em: SafeEmitter<E>, event: K, timeoutMs = 3000): Promise<E[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${String(event)}`)), timeoutMs);
    em.once(event, (...args: E[K]) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

/** A scripted SIP endpoint (a door station) speaking through a FakeNet. */
export class Phone {
  readonly net: FakeNet;
  readonly user: string;
  readonly password: string | undefined;
  readonly src: Endpoint;
  readonly contactHost: string;
  readonly contactPort: number;
  private cseq = 1;

  constructor(net: FakeNet, opts: { user: string; password?: string; src: Endpoint; contactHost?: string; contactPort?: number }) {
    this.net = net;
    this.user = opts.user;
    this.password = opts.password;
    this.src = opts.src;
    this.contactHost = opts.contactHost ?? opts.src.address;
    this.contactPort = opts.contactPort ?? opts.src.port;
  }

  newBranch(): string {
    return "z9hG4bK" + randomBytes(6).toString("hex");
  }

  /** Build a request from this phone. */
  request(method: string, opts: { callId?: string; fromTag?: string; to?: string; toTag?: string; cseq?: number; branch?: string; uri?: string; headers?: [string, string][]; body?: string; contentType?: string; rport?: boolean } = {}): SipRequest {
    const h = new SipHeaders();
    h.append("Via", `SIP/2.0/${this.src.transport.toUpperCase()} ${this.contactHost}:${this.contactPort};branch=${opts.branch ?? this.newBranch()}${opts.rport === false ? "" : ";rport"}`);
    h.append("Max-Forwards", "70");
    h.append("From", `<sip:${this.user}@gatehouse>;tag=${opts.fromTag ?? "ft" + randomBytes(3).toString("hex")}`);
    h.append("To", `${opts.to ?? (method === "REGISTER" ? `<sip:${this.user}@gatehouse>` : "<sip:gate@gatehouse>")}${opts.toTag ? `;tag=${opts.toTag}` : ""}`);
    h.append("Call-ID", opts.callId ?? randomBytes(8).toString("hex"));
    h.append("CSeq", `${opts.cseq ?? this.cseq++} ${method}`);
    h.append("Contact", `<sip:${this.user}@${this.contactHost}:${this.contactPort}>`);
    for (const [k, v] of opts.headers ?? []) h.append(k, v);
    const body = Buffer.from(opts.body ?? "", "latin1");
    if (body.length > 0) h.append("Content-Type", opts.contentType ?? "application/sdp");
    return { kind: "request", method, uri: opts.uri ?? "sip:gate@gatehouse", headers: h, body };
  }

  send(req: SipRequest): void {
    this.net.deliver(req, this.src);
  }

  /** Send and wait for the final response (provisional ones are skipped). */
  async transact(req: SipRequest): Promise<SipResponse> {
    const branch = req.headers.getList("via")[0]!.match(/branch=([^;]+)/)![1]!;
    const method = req.method;
    const p = this.net.next((s) => s.msg.kind === "response" && s.msg.status >= 200 && cseqOf(s.msg).method === method && (s.msg.headers.getList("via")[0] ?? "").includes(branch), { from: this.net.sent.length });
    this.send(req);
    return (await p).msg as SipResponse;
  }

  /** Answer a 401 by repeating the request (new branch and CSeq) with credentials. */
  authorize(req: SipRequest, challenge: SipResponse, opts: { password?: string; algorithm?: DigestAlgorithm; nc?: string } = {}): SipRequest {
    const chs = challenge.headers.getAll("www-authenticate").map((c) => parseCredentials(c)!);
    const ch = opts.algorithm ? chs.find((c) => c.params.get("algorithm") === opts.algorithm)! : chs[0]!;
    const algorithm = (ch.params.get("algorithm") ?? "MD5") as DigestAlgorithm;
    const nonce = ch.params.get("nonce")!;
    const realm = ch.params.get("realm")!;
    const nc = opts.nc ?? "00000001";
    const cnonce = randomBytes(4).toString("hex");
    const response = digestResponse({ algorithm, username: this.user, realm, password: opts.password ?? this.password ?? "", method: req.method, uri: req.uri, nonce, cnonce, nc, qop: "auth" });
    const again = { ...req, headers: req.headers.clone() };
    again.headers.replaceFirstItem("via", (again.headers.getList("via")[0] ?? "").replace(/branch=[^;]+/, `branch=${this.newBranch()}`));
    again.headers.set("CSeq", `${cseqOf(req).seq + 1} ${req.method}`);
    again.headers.append("Authorization", `Digest username="${this.user}", realm="${realm}", nonce="${nonce}", uri="${req.uri}", response="${response}", algorithm=${algorithm}, cnonce="${cnonce}", qop=auth, nc=${nc}`);
    this.cseq = Math.max(this.cseq, cseqOf(req).seq + 2);
    return again;
  }

  /** REGISTER, answering the challenge; resolves with the final response. */
  async register(opts: { expires?: number; password?: string; headers?: [string, string][] } = {}): Promise<SipResponse> {
    const callId = `reg-${this.user}-${this.src.port}`;
    const req = this.request("REGISTER", { callId, uri: "sip:gatehouse", headers: [["Expires", String(opts.expires ?? 300)], ...(opts.headers ?? [])] });
    const first = await this.transact(req);
    if (first.status !== 401) return first;
    return this.transact(this.authorize(req, first, opts.password !== undefined ? { password: opts.password } : {}));
  }
}

export const SDP_OFFER = (port: number, address = "127.0.0.1", extra = ""): string =>
  `v=0\r\no=door 1 1 IN IP4 ${address}\r\ns=door\r\nc=IN IP4 ${address}\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n${extra}`;
