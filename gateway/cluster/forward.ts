/**
 * A viewer who reaches a node that does not pull the camera is answered through the node that
 * does: the WHEP offer is forwarded to the owner over the internal link (the owner's
 * `cluster.publicUrl`), the owner creates the viewer and its answer goes back unchanged, so the
 * browser's media flows to the owner directly while its signalling stays with the node it knows
 * (same origin, same cookie, nothing for the page to learn). The resource's later PATCH and
 * DELETE follow the same way.
 *
 * Chosen over a 307 to the owner: a redirect would send the page's POST to another origin, which
 * needs CORS and a cookie for that origin, and the resource URL would name a node a load balancer
 * may not even expose. Forwarding the RTP itself between nodes (so that a popular camera's
 * viewers spread over several nodes) would cost a second SFU hop; see README "Cluster".
 *
 * The internal request is authenticated by an HMAC under the cluster's shared secret (held in
 * Redis) over the time, method, path and the caller's session; the owner then checks the session
 * and the right itself, as for any request.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { Router, type NextFunction, type Request, type Response } from "express";
import { AuthError, BadInputError, OverloadError } from "../../config/errors.ts";
import type { CameraId, SessionId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import type { Auth } from "../auth/index.ts";
import { sendError } from "../http/errors.ts";
import type { ViewerOwner } from "../http/viewer-admission.ts";
import type { CameraLeases, CameraOwner } from "./leases.ts";
import type { NodeRegistry } from "./nodes.ts";

/** Path prefix of the internal WHEP link on every node. */
export const INTERNAL_WHEP = "/cluster/whep";
export const AUTH_HEADER = "gatehouse-cluster-auth";
const SESSION_HEADER = "gatehouse-cluster-session";
const NODE_HEADER = "gatehouse-cluster-node";
/** A forwarded request signed longer ago than this is refused (clock skew between nodes included), seconds. */
export const MAX_SKEW_SECONDS = 30;
/** Forwarded viewer resources remembered (for their PATCH and DELETE); beyond, the oldest are forgotten. */
const MAX_FORWARDED = 50_000;
/** Response headers of the owner passed on to the browser. */
const PASSED = ["content-type", "etag", "accept-patch", "accept-post", "allow", "retry-after", "cache-control"];

/** The key of the internal link's HMAC, derived from the cluster's shared secret. */
export function forwardKey(secret: Buffer): Buffer {
  return createHash("sha256").update("gatehouse cluster forward\n").update(secret).digest();
}

export function signature(key: Buffer, ts: string, method: string, path: string, session: string): string {
  return createHmac("sha256", key).update(`${ts}\n${method}\n${path}\n${session}`).digest("base64url");
}

/** Headers that make a request to another node's internal link one of this cluster, on behalf of `session` ("" for none). */
export function signedHeaders(key: Buffer, nodeId: string, method: string, path: string, session: string): Record<string, string> {
  const ts = String(Math.floor(Date.now() / 1000));
  return { [AUTH_HEADER]: `${ts}.${signature(key, ts, method, path, session)}`, [SESSION_HEADER]: session, [NODE_HEADER]: nodeId };
}

export interface ForwardDeps {
  nodeId: string;
  leases: CameraLeases;
  nodes: NodeRegistry;
  key: Buffer;
  cameraExists(id: string): boolean;
  /** Throws (404/403) when the caller may not watch the camera: checked here before asking anyone. */
  authorize(req: Request, cameraId: string): void;
  timeoutMs: number;
  /** How long until a dead owner's lease lapses at most, seconds (Retry-After). */
  leaseSeconds: number;
  /** RTP forwarding (forward-relay.ts): a relay source to serve the viewer from here instead of answering through the owner. */
  relay?: { route(camera: string, stream: string | undefined, node: string, always?: boolean): Promise<CameraId | undefined>; answered(camera: string, delta: number): void };
  /**
   * A viewer answered through a node that then left the cluster (died) went with it: its page is
   * told at once (its event stream on this node) so that it offers again now instead of waiting
   * for its connection to time out.
   */
  ownerGone?: { ownerOf(req: Request): ViewerOwner; tell(owner: ViewerOwner, camera: string, viewer: string): void };
  log: Logger;
}

/** Where this node serves a camera stream's viewer from (`servedFrom`). */
export type ServedFrom = { readonly from: "here" } | { readonly from: "relay"; readonly source: CameraId } | { readonly from: "owner"; readonly owner: CameraOwner };

/**
 * Where this node serves a viewer of `camera`'s `stream` (default its main one) from: its own pull
 * (it holds the camera's lease, taken when free), a relay of the owner's pull (RTP forwarding,
 * when `cluster.forward` says so, or whatever it says with `relayAlways`), or else only through
 * the owner. The live-view routes and the grid's slots both ask here.
 */
export async function servedFrom(d: Pick<ForwardDeps, "leases" | "relay">, camera: string, stream: string | undefined, relayAlways = false): Promise<ServedFrom> {
  const owner = await d.leases.owner(camera);
  if (owner.self) return { from: "here" };
  const source = await d.relay?.route(camera, stream, owner.node, relayAlways);
  return source ? { from: "relay", source } : { from: "owner", owner };
}

/**
 * Mounted at `/whep` ahead of the local WHEP routes (after sign-in): passes to them what this node
 * serves, and forwards the rest to the camera's owner.
 */
export function forwardingRouter(d: ForwardDeps): Router {
  const r = Router();
  /** viewer id → the node that holds it (forwarded resources), the camera, and whose it is. */
  const forwarded = new Map<string, { node: string; camera: string; owner: ViewerOwner | undefined }>();
  d.nodes.events.on("left", (node) => {
    for (const [viewer, f] of [...forwarded]) {
      if (f.node !== node) continue;
      forwarded.delete(viewer);
      d.relay?.answered(f.camera, -1);
      if (f.owner) d.ownerGone?.tell(f.owner, f.camera, viewer);
    }
  });

  r.post("/:camera", async (req: Request, res: Response, next: NextFunction) => {
    const camera = String(req.params.camera ?? "");
    if (!d.cameraExists(camera)) return next();
    try {
      d.authorize(req, camera);
      const served = await servedFrom(d, camera, typeof req.query.stream === "string" ? req.query.stream : undefined);
      if (served.from === "here") return next();
      // Served from a relay of the camera on this node (the WHEP routes make the viewer on it).
      if (served.from === "relay") return void ((res.locals.relaySource = served.source), next());
      let owner = served.owner;
      const body = await readBody(req);
      let answer: globalThis.Response;
      try {
        const node = await nodeUrl(d, owner.node);
        if (!node) throw unreachableOwner(d, owner.node);
        answer = await send(d, req, `${node}${INTERNAL_WHEP}/${encodeURIComponent(camera)}`, body);
      } catch (err) {
        // The owner does not answer and no longer announces itself: it is gone (crashed, killed).
        // Take the camera over now instead of waiting for its lease to lapse.
        if (!(err instanceof OverloadError) || (await d.nodes.alive(owner.node))) throw err;
        owner = await d.leases.takeOver(camera, owner);
        if (!owner.self) throw err;
        req.body = body;
        return next();
      }
      const location = answer.headers.get("location");
      if (answer.status === 201 && location) {
        const viewer = location.slice(location.lastIndexOf("/") + 1);
        forwarded.set(viewer, { node: owner.node, camera, owner: d.ownerGone?.ownerOf(req) });
        d.relay?.answered(camera, 1);
        if (forwarded.size > MAX_FORWARDED) forwarded.delete(forwarded.keys().next().value!);
        res.set("Location", `${req.baseUrl}/${encodeURIComponent(camera)}/${viewer}`);
      }
      await relay(answer, res);
    } catch (err) {
      sendError(res, err);
    }
  });

  r.all("/:camera/:viewer", async (req: Request, res: Response, next: NextFunction) => {
    const owner = forwarded.get(String(req.params.viewer ?? ""))?.node;
    if (!owner || (req.method !== "PATCH" && req.method !== "DELETE")) return next();
    try {
      const camera = String(req.params.camera ?? "");
      d.authorize(req, camera);
      const node = await nodeUrl(d, owner);
      if (!node) throw unreachableOwner(d, owner);
      const body = req.method === "PATCH" ? await readBody(req) : undefined;
      const answer = await send(d, req, `${node}${INTERNAL_WHEP}/${encodeURIComponent(camera)}/${encodeURIComponent(String(req.params.viewer))}`, body);
      if (req.method === "DELETE" && answer.status < 300 && forwarded.delete(String(req.params.viewer))) d.relay?.answered(camera, -1);
      await relay(answer, res);
    } catch (err) {
      sendError(res, err);
    }
  });
  return r;
}

/**
 * Mounted at `/cluster/whep` before sign-in: a request another node forwarded, signed with the
 * cluster's key, becomes a request of the session it names (checked here again), and goes on to
 * the local WHEP routes. Anything unsigned is refused.
 */
export function inboundRouter(d: { key: Buffer; auth: Pick<Auth, "sessionUser" | "authenticate">; log: Logger }): Router {
  const r = Router();
  r.use((req, res, next) => {
    void (async () => {
      const presented = req.get(AUTH_HEADER) ?? "";
      const [ts = "", sig = ""] = presented.split(".", 2);
      const session = req.get(SESSION_HEADER) ?? "";
      const age = Math.abs(Date.now() / 1000 - Number(ts));
      const want = Buffer.from(signature(d.key, ts, req.method, req.originalUrl, session));
      const got = Buffer.from(sig);
      if (!(age <= MAX_SKEW_SECONDS) || got.length !== want.length || !timingSafeEqual(got, want))
        throw new AuthError("UNAUTHORIZED", "not a request of this cluster");
      // A session vouched for by the forwarding node, or the caller's own bearer token.
      const user = session ? await d.auth.sessionUser(session as SessionId) : await d.auth.authenticate(req);
      if (!user) throw new AuthError("UNAUTHORIZED", "session ended");
      req.user = user;
    })().then(
      () => next(),
      (err: unknown) => sendError(res, err),
    );
  });
  return r;
}

async function nodeUrl(d: ForwardDeps, node: string): Promise<string | undefined> {
  let n = d.nodes.node(node);
  if (!n) {
    await d.nodes.beat(); // a node newer than this node's listing
    n = d.nodes.node(node);
  }
  return n?.url;
}

function unreachableOwner(d: ForwardDeps, node: string): OverloadError {
  return new OverloadError(`the gateway node that pulls this camera (${node}) does not answer; another node takes the camera over within ${d.leaseSeconds} s`, {
    retryAfterSeconds: 1,
  });
}

async function send(d: ForwardDeps, req: Request, url: string, body: string | undefined): Promise<globalThis.Response> {
  const path = new URL(url).pathname;
  const session = req.user?.sessionId ?? "";
  const headers = signedHeaders(d.key, d.nodeId, req.method, path, session);
  // A bearer caller has no session the owner could look up: its own token goes along.
  if (!session && req.get("authorization")) headers.authorization = req.get("authorization")!;
  if (body !== undefined) headers["content-type"] = req.get("content-type") ?? "application/octet-stream";
  const ifMatch = req.get("if-match");
  if (ifMatch) headers["if-match"] = ifMatch;
  try {
    return await fetch(url, { method: req.method, headers, body, redirect: "manual", signal: AbortSignal.timeout(d.timeoutMs) });
  } catch (cause) {
    d.log.warn("cluster: forwarding to the camera's node failed", { url, err: cause });
    const owner = new URL(url).host;
    throw new OverloadError(`the gateway node that pulls this camera (${owner}) does not answer; another node takes the camera over within ${d.leaseSeconds} s`, {
      cause,
      retryAfterSeconds: 1,
    });
  }
}

async function relay(answer: globalThis.Response, res: Response): Promise<void> {
  for (const h of PASSED) {
    const v = answer.headers.get(h);
    if (v !== null) res.set(h, v);
  }
  const link = answer.headers.get("link");
  if (link) res.set("Link", link);
  res.status(answer.status).send(Buffer.from(await answer.arrayBuffer()));
}

/** The request body as text (the offer or sdpfrag), bounded like the local routes bound it. */
function readBody(req: Request): Promise<string> {
  if (typeof req.body === "string") return Promise.resolve(req.body);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 128 * 1024) {
        req.destroy();
        reject(new BadInputError("request body too large"));
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
