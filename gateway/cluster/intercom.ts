/**
 * Door intercoms across the cluster. A door registers with one node, which holds its SIP dialogs;
 * every node's pages ring, and the call works from any of them:
 *
 * - **Events.** The node holding a call publishes its ring, answer, end, the door's digits and the
 *   door's presence on the Redis channel `intercom`; every other node hands them to its own
 *   intercom service, which tells its permitted pages exactly as for a local call (`remote*`).
 * - **First answer wins** by an atomic claim in Redis (`intercom:call:<id>:answer`, set once): the
 *   SIP layer of the holding node stays the last word when Redis cannot be asked.
 * - **Actions.** A page's answer (with its WebRTC offer), decline, hang-up, "Open door", digits
 *   and snapshot for a call another node holds are forwarded to that node over the signed internal
 *   link (`/cluster/intercom`, the same HMAC as WHEP's, see forward.ts), on behalf of the page's
 *   session; that node answers the offer with its own talk peer, so the browser's audio flows to
 *   the node with the SIP dialog directly, as a camera's viewer's media flows to its owner.
 *   "Talk to the door" goes to the node the door is registered with (nodes announce their doors).
 *
 * A node that dies with calls in hand: its calls end on the other nodes' pages once its
 * announcement lapses (`cluster.nodeTtlMs`).
 *
 * - **Call history.** Each node adds its finished calls to a Redis list (`intercom:history`, the
 *   newest `cluster.callHistoryMax` kept) and publishes them; every node keeps the other nodes'
 *   calls beside its own, read back from the list when it starts and when Redis returns, so a
 *   page's call log (missed calls) lists the calls held on any node.
 */
import { Router, type NextFunction, type Request, type Response } from "express";
import { BadInputError, OverloadError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { IntercomService, IntercomServiceOptions } from "../intercom/service.ts";
import { sendError } from "../http/errors.ts";
import type { CallRecord, Intercom, RingEvent } from "../sip/index.ts";
import { signedHeaders } from "./forward.ts";
import type { NodeRegistry } from "./nodes.ts";
import type { RedisLink } from "./redis.ts";

/** Path prefix of the internal intercom link on every node. */
export const INTERNAL_INTERCOM = "/cluster/intercom";
const CHANNEL = "intercom";
const HISTORY = "intercom:history";
/** Calls remembered with the node holding them (for late actions such as a snapshot); beyond, the oldest go. */
const MAX_KNOWN_CALLS = 10_000;
/** How long an answer claim is kept in Redis, ms (longer than any ring). */
const CLAIM_MS = 3_600_000;
/** Largest request body forwarded (an SDP offer, a snapshot), bytes. */
const MAX_BODY = 600 * 1024;
/** Response headers of the holding node passed on to the browser. */
const PASSED = ["content-type", "x-call-id", "cache-control", "retry-after", "accept-post"];

// Set the claim when nobody holds it; either way, return who does.
const CLAIM = `
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`;

type Message =
  | { t: "ring"; node: string; ring: RingEvent }
  | { t: "answered"; node: string; callId: string; by: string; byName: string | null; at: number; purpose?: "open-door" }
  | { t: "ended"; node: string; record: CallRecord }
  | { t: "dtmf"; node: string; callId: string; digit: string }
  | { t: "device"; node: string; deviceId: string; online: boolean };

export interface ClusterIntercomOptions {
  link: RedisLink;
  nodes: NodeRegistry;
  nodeId: string;
  /** Key of the internal link's signatures. */
  key: Buffer;
  /** This node's SIP side (the calls it holds). */
  intercom: Intercom;
  /** A forwarded action gives up after this long, ms (`cluster.forwardTimeoutMs`). */
  timeoutMs: number;
  /** A forwarded "talk to the door" waits this long for the door to answer, ms. */
  callTimeoutMs: number;
  /** Finished calls kept in the shared history (`cluster.callHistoryMax`). */
  historyMax: number;
  /** This node's own finished calls, oldest first (its call log). */
  localHistory: () => readonly CallRecord[];
  log: Logger;
}

export class ClusterIntercom {
  private readonly o: ClusterIntercomOptions;
  private service: IntercomService | undefined;
  /** Calls other nodes hold → the node (ringing, answered or ended). */
  private readonly known = new Map<string, string>();
  /** Calls other nodes hold that have not ended → the node. */
  private readonly live = new Map<string, string>();
  private readonly offs: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Finished calls other nodes held, oldest first (bounded by `historyMax`), and their ids. */
  private readonly remote: CallRecord[] = [];
  private readonly remoteIds = new Set<string>();
  /**
   * The last presence each other node published for a door (at once, on its registration or its
   * end), newer than the nodes' announcements (each heartbeat): a call to a door that has just
   * registered elsewhere finds its node before the next announcement lists it. A node's entries
   * go when it leaves the listing.
   */
  private readonly presence = new Map<string, { node: string; online: boolean }>();

  constructor(o: ClusterIntercomOptions) {
    this.o = o;
  }

  /** What the intercom service needs from the cluster (its options `claimAnswer`, `doorsElsewhere`, `history`). */
  hooks(): Pick<IntercomServiceOptions, "claimAnswer" | "doorsElsewhere" | "history"> {
    return { claimAnswer: (callId, userId) => this.claimAnswer(callId, userId), doorsElsewhere: () => this.doorsElsewhere(), history: () => this.history() };
  }

  /** The cluster's finished calls, this node's and the others', oldest first (by their end). */
  history(): CallRecord[] {
    const all = [...this.o.localHistory(), ...this.remote];
    all.sort((a, b) => a.endedAt - b.endedAt);
    return all.length > this.o.historyMax ? all.slice(all.length - this.o.historyMax) : all;
  }

  private addRemote(record: CallRecord, node: string): void {
    if (this.remoteIds.has(record.callId) || typeof record.endedAt !== "number") return;
    this.remoteIds.add(record.callId);
    this.remote.push(record);
    this.remember(record.callId, node, false);
    if (this.remote.length > this.o.historyMax) this.remoteIds.delete(this.remote.shift()!.callId);
  }

  /** Adds a finished call of this node to the shared list (best effort: Redis may be away). */
  private share(record: CallRecord): void {
    const { link, historyMax } = this.o;
    if (historyMax === 0) return;
    link
      .run("share a finished call", async (c) => {
        await c.rPush(link.key(HISTORY), JSON.stringify({ node: this.o.nodeId, record }));
        await c.lTrim(link.key(HISTORY), -historyMax, -1);
      })
      .catch((err: unknown) => this.o.log.debug("cluster: a finished call was not added to the shared history", { err }));
  }

  /** Reads the other nodes' finished calls from the shared list (at start, and when Redis returns). */
  private async loadHistory(): Promise<void> {
    const { link, historyMax } = this.o;
    if (historyMax === 0) return;
    let items: string[];
    try {
      items = await link.run("read the shared call history", (c) => c.lRange(link.key(HISTORY), -historyMax, -1));
    } catch {
      return; // read again when Redis returns
    }
    for (const item of items) {
      try {
        const v = JSON.parse(item) as { node?: unknown; record?: CallRecord };
        if (typeof v.node === "string" && v.node !== this.o.nodeId && v.record && typeof v.record.callId === "string") this.addRemote(v.record, v.node);
      } catch {
        // not one of ours
      }
    }
    this.remote.sort((a, b) => a.endedAt - b.endedAt);
  }

  /** Joins the service built with `hooks()`: subscribes to the cluster's intercom channel and publishes this node's calls. */
  async attach(service: IntercomService): Promise<void> {
    if (this.closed || this.service) return;
    this.service = service;
    const { nodeId } = this.o;
    const ev = this.o.intercom.events;
    this.offs.push(
      ev.on("ring", (ring) => this.publish({ t: "ring", node: nodeId, ring })),
      ev.on("answered", (a) => this.publish({ t: "answered", node: nodeId, callId: a.callId, by: a.user, byName: service.displayName(a.user), at: Date.now(), ...(a.purpose ? { purpose: a.purpose } : {}) })),
      ev.on("ended", (record) => {
        this.publish({ t: "ended", node: nodeId, record });
        this.share(record);
      }),
      ev.on("dtmf", (d) => this.publish({ t: "dtmf", node: nodeId, callId: d.callId, digit: d.digit })),
      ev.on("device", (d) => this.publish({ t: "device", node: nodeId, deviceId: d.deviceId, online: d.online })),
    );
    // A node gone (or started again) lost its registrations: what it last said of its doors goes.
    this.offs.push(
      this.o.nodes.events.on("left", (node) => {
        for (const [door, p] of this.presence) if (p.node === node) this.presence.delete(door);
      }),
    );
    // Calls of a node that is gone end on this node's pages.
    this.timer = setInterval(() => this.endOrphans(), 1000);
    this.timer.unref();
    await this.o.link.subscribe(CHANNEL, (m) => this.onMessage(m));
    this.offs.push(this.o.link.events.on("up", () => void this.loadHistory()));
    await this.loadHistory();
  }

  /** The first answer anywhere wins: the user id holding the claim (the caller's own when it won). */
  async claimAnswer(callId: string, userId: string): Promise<string> {
    const { link } = this.o;
    const v = await link.run("claim the answer", (c) => c.eval(CLAIM, { keys: [link.key(`intercom:call:${callId}:answer`)], arguments: [userId, String(CLAIM_MS)] }));
    return String(v);
  }

  /** Doors registered with another node now (see `doorNode`). */
  doorsElsewhere(): Set<string> {
    const ids = new Set<string>(this.presence.keys());
    for (const n of this.o.nodes.nodes) if (n.id !== this.o.nodeId) for (const d of n.doors ?? []) ids.add(d);
    return new Set([...ids].filter((d) => this.doorNode(d) !== undefined));
  }

  /**
   * The other node a door is registered with: the one whose last presence message said so (if it
   * is still listed: a node gone lost its registrations), else one whose announcement lists it,
   * unless that node's last message said the door left it.
   */
  private doorNode(deviceId: string): string | undefined {
    const others = this.o.nodes.nodes.filter((n) => n.id !== this.o.nodeId);
    const seen = this.presence.get(deviceId);
    if (seen?.online && others.some((n) => n.id === seen.node)) return seen.node;
    return others.find((n) => n.doors?.includes(deviceId) && !(seen && !seen.online && seen.node === n.id))?.id;
  }

  /**
   * Mounted at `/api/intercom` ahead of the intercom's own routes (after sign-in and CSRF): an
   * action on a call another node holds, or a call to a door registered elsewhere, goes there.
   */
  router(): Router {
    const r = Router();
    r.all(["/calls/:callId", "/calls/:callId/:action"], (req: Request, res: Response, next: NextFunction) => {
      const callId = String(req.params.callId ?? "");
      const node = this.known.get(callId);
      if (!node) return next();
      void this.forward(req, res, node, `/calls/${encodeURIComponent(callId)}${req.params.action ? `/${encodeURIComponent(String(req.params.action))}` : ""}`, this.o.timeoutMs).then((answer) => {
        if (answer?.status === 201 && req.params.action === "answer") {
          this.service?.remoteHeld({ callId, deviceId: "", direction: "incoming", from: "", startedAt: Date.now() }, node, req.user!);
        }
      });
    });
    r.post("/devices/:deviceId/call", (req: Request, res: Response, next: NextFunction) => {
      const deviceId = String(req.params.deviceId ?? "");
      const here = this.o.intercom.devices().find((d) => d.id === deviceId);
      if (!here || here.bindings.length > 0) return next();
      const node = this.doorNode(deviceId);
      if (!node) return next(); // registered nowhere: the local route says so
      void this.forward(req, res, node, `/devices/${encodeURIComponent(deviceId)}/call`, this.o.callTimeoutMs).then((answer) => {
        const callId = answer?.headers.get("x-call-id");
        if (answer?.status !== 201 || !callId) return;
        this.remember(callId, node, true);
        this.service?.remoteHeld({ callId, deviceId, direction: "outgoing", from: here.name, startedAt: Date.now() }, node, req.user!);
      });
    });
    return r;
  }

  /** Forward the request to `node`'s internal link and relay its answer; resolves to that answer (undefined when it failed). */
  private async forward(req: Request, res: Response, node: string, path: string, timeoutMs: number): Promise<globalThis.Response | undefined> {
    const gone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const base = await this.nodeUrl(node);
      if (!base) throw unreachable(node);
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await readBody(req);
      const url = `${base}${INTERNAL_INTERCOM}${path}`;
      const session = req.user?.sessionId ?? "";
      const headers = signedHeaders(this.o.key, this.o.nodeId, req.method, new URL(url).pathname, session);
      if (!session && req.get("authorization")) headers.authorization = req.get("authorization")!;
      if (body !== undefined && req.get("content-type")) headers["content-type"] = req.get("content-type")!;
      let answer: globalThis.Response;
      try {
        answer = await fetch(url, { method: req.method, headers, body: body === undefined ? undefined : new Uint8Array(body), redirect: "manual", signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), gone.signal]) });
      } catch (cause) {
        if (gone.signal.aborted) return undefined;
        this.o.log.warn("cluster: forwarding an intercom action to the node holding the call failed", { url, err: cause });
        throw unreachable(node, cause);
      }
      for (const h of PASSED) {
        const v = answer.headers.get(h);
        if (v !== null) res.set(h, v);
      }
      // The holder's resource is this node's call resource for the page.
      const location = answer.headers.get("location");
      if (location) res.set("Location", `${req.baseUrl}${location.slice(location.indexOf("/calls/"))}`);
      res.status(answer.status).send(Buffer.from(await answer.arrayBuffer()));
      return answer;
    } catch (err) {
      if (!res.headersSent) sendError(res, err);
      return undefined;
    }
  }

  private async nodeUrl(node: string): Promise<string | undefined> {
    let n = this.o.nodes.node(node);
    if (!n) {
      await this.o.nodes.beat();
      n = this.o.nodes.node(node);
    }
    return n?.url;
  }

  private publish(m: Message): void {
    if (this.closed) return;
    this.o.link.publish(CHANNEL, JSON.stringify(m)).catch((err: unknown) => {
      // Redis unreachable: this node's own pages still ring; the others cannot be told.
      this.o.log.warn("cluster: an intercom event could not reach the other nodes", { event: m.t, err });
    });
  }

  private remember(callId: string, node: string, live: boolean): void {
    this.known.delete(callId);
    this.known.set(callId, node);
    if (this.known.size > MAX_KNOWN_CALLS) this.known.delete(this.known.keys().next().value!);
    if (live) this.live.set(callId, node);
  }

  private onMessage(raw: string): void {
    if (this.closed) return;
    let m: Message;
    try {
      m = JSON.parse(raw) as Message;
    } catch {
      return void this.o.log.warn("cluster: unreadable intercom message ignored");
    }
    const s = this.service;
    if (!s || m.node === this.o.nodeId || typeof m.node !== "string") return;
    switch (m.t) {
      case "ring":
        this.remember(m.ring.callId, m.node, true);
        s.remoteRing(m.ring, m.node);
        break;
      case "answered":
        s.remoteAnswered(m.callId, m.by, m.byName, m.at, m.purpose === "open-door" ? "open-door" : undefined);
        break;
      case "ended":
        this.live.delete(m.record.callId);
        this.addRemote(m.record, m.node);
        s.remoteEnded(m.record);
        break;
      case "dtmf":
        s.remoteDtmf(m.callId, m.digit);
        break;
      case "device":
        this.presence.set(m.deviceId, { node: m.node, online: m.online });
        s.remoteDevice(m.deviceId, m.online);
        break;
    }
  }

  private endOrphans(): void {
    if (this.live.size === 0 || !this.o.link.available) return;
    const alive = new Set(this.o.nodes.nodes.map((n) => n.id));
    for (const [callId, node] of this.live) {
      if (alive.has(node)) continue;
      this.live.delete(callId);
      this.o.log.warn("cluster: a call's node is gone; the call ends here", { call: callId, node });
      this.service?.remoteLost(callId);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const off of this.offs.splice(0)) off();
  }
}

function unreachable(node: string, cause?: unknown): OverloadError {
  return new OverloadError(`the gateway node that holds this door's call (${node}) does not answer`, { cause, retryAfterSeconds: 1 });
}

/** The raw request body, bounded. */
function readBody(req: Request): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.destroy();
        reject(new BadInputError("request body too large"));
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
