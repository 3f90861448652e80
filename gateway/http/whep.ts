/**
 * WHEP (draft-ietf-wish-whep, HTTP shape of RFC 9725 WHIP) signalling for live view:
 *
 *   OPTIONS /whep/:camera           → 204, Accept-Post, Link ice-server headers
 *   POST    /whep/:camera[?stream=] → 201 answer SDP, Location, ETag, Link ice-server headers
 *   PATCH   /whep/:camera/:viewer   → 204 trickled candidates (application/trickle-ice-sdpfrag, RFC 8840);
 *                                     405 for an ICE restart (not supported: POST again)
 *   PATCH   /whep/:camera/:viewer   → 202 {"stream": "sub"} (application/json): another of the camera's
 *                                     streams, switched at its next keyframe without renegotiation
 *
 * `stream` names one of the camera's streams: `main`, `sub` (its smallest), `auto` (main, then
 * whatever the viewer's network carries) or a configured stream id; 400 for any other.
 *   DELETE  /whep/:camera/:viewer   → 200, the viewer ends
 *
 * Category errors become statuses in gateway/http/errors.ts (the one place); only the
 * HTTP-level ones that have no category (415, 405, 412) are decided here. Every refusal
 * carries a short reason of ours, never an exception's text.
 *
 * A resource belongs to the session that created it (gateway/http/viewer-admission.ts):
 * anyone else's PATCH or DELETE gets 404, as for a resource that does not exist. Each user
 * and session holds a bounded number of viewers (429 + Retry-After beyond it); when the
 * SFU has no free media port the POST gets 503 + Retry-After, never an answer without
 * candidates.
 */
import express, { Router, type Request, type Response } from "express";
import { BadInputError, isGatehouseError, NotFoundError } from "../../config/errors.ts";
import { cameraId as toCameraId, viewerId as toViewerId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import { MAX_OFFER_CHARS, offersH265 } from "../../sfu/offer.ts";
import type { Sfu, TrickledCandidate, ViewerHandle } from "../../sfu/sfu.ts";
import { ViewerCloseReasons } from "../../sfu/api.ts";
import { errorHandler, sendError } from "./errors.ts";
import { ViewerAdmission, type ViewerOwner } from "./viewer-admission.ts";

/** One ICE server as handed to the browser (our TURN with time-limited credentials, typically). */
export interface WhepIceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

/** A camera stream's SFU source; `unplayable`: why a viewer gets nothing to play from it, in words. */
export interface StreamFound {
  stream: string;
  source: string;
  unplayable?: string | undefined;
}

export interface WhepDeps {
  sfu: Sfu;
  /** Is this a configured camera? Unknown cameras answer 404. */
  cameraExists(id: string): boolean;
  /**
   * The SFU source of a camera's stream (`main`, `sub`, `auto` or a stream id), or undefined
   * for a stream it does not have. Default: the camera's own source, `main`/`auto` only.
   */
  /**
   * `h265`: the viewer's offer has H.265 (an H.265 stream passed through is playable for it).
   * `unplayable`: the stream has nothing that viewer can play (H.265 video only), in words.
   */
  streamSource?(camera: string, stream: string, h265?: boolean): StreamFound | undefined | Promise<StreamFound | undefined>;
  /**
   * A viewer's stream choice: its ladder (sources, largest first) and whether the SFU may
   * move it along the ladder as its network allows (`auto`) or keeps it on one; `h265`: the
   * viewer receives H.265 (its answer has it). Default none.
   */
  onStreamChoice?(viewer: ViewerHandle, camera: string, stream: string, h265: boolean): void;
  /**
   * In a cluster, for a viewer served here from a relay (`current`: its source now), the
   * source on this node of the stream it asks for (`streamSource`'s `stream`): a relay of the
   * owner's pull of that stream, or this node's own pull once it holds the camera. Undefined
   * for a viewer that is not served from a relay.
   */
  relayedSource?(camera: string, stream: string, current: string): Promise<string | undefined>;
  /** Throws AuthError (401/403) when the request may not watch this camera. */
  authorize?(req: Request, cameraId: string): void;
  /** ICE servers for this client (Link headers). */
  iceServers(req: Request): WhepIceServer[];
  /** Who is asking, for logs and viewer stats, and whose limits apply. */
  userOf?(req: Request): string | undefined;
  /**
   * The sign-in session (or token) asking: it owns the viewers it creates. Default: the
   * user; without either, every caller is one anonymous owner.
   */
  sessionOf?(req: Request): string | undefined;
  /** Live-viewer limits per user and session. Default: none (ownership is still enforced). */
  admission?: ViewerAdmission;
  /** Called once a viewer exists, e.g. to end it when the caller's session is revoked. */
  onViewer?(req: Request, viewer: ViewerHandle): void;
  /** The audit trail: told of each live view that starts (it follows the viewer to its end). */
  audit?: { viewerStarted(req: Request, viewer: ViewerHandle): void };
  log: Logger;
}

const SDP = "application/sdp";
const SDPFRAG = "application/trickle-ice-sdpfrag";
const JSON_TYPE = "application/json";

export function whepRouter(deps: WhepDeps): Router {
  const r = Router();
  const admission = deps.admission ?? ViewerAdmission.unlimited();
  const ownerOf = (req: Request): ViewerOwner => {
    const user = deps.userOf?.(req) ?? "";
    return { user, session: deps.sessionOf?.(req) ?? user };
  };
  const sdpBody = express.text({ type: SDP, limit: MAX_OFFER_CHARS });
  const fragBody = express.text({ type: SDPFRAG, limit: 16 * 1024 });
  const jsonBody = express.json({ type: JSON_TYPE, limit: 1024, strict: true });
  /** Viewers whose answer has H.265: an H.265 stream passed through plays for them. */
  const h265Viewers = new Set<string>();

  /** The source for the asked stream (absent = `auto`); 400 for a stream the camera does not have. */
  const streamOf = async (camera: string, asked: unknown, h265 = false): Promise<{ stream: string; source: string }> => {
    const name = asked === undefined ? "auto" : asked;
    if (typeof name !== "string" || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(name)) throw new BadInputError("stream must be main, sub, auto or a stream id");
    const found = deps.streamSource
      ? await deps.streamSource(camera, name, h265)
      : name === "main" || name === "auto"
        ? { stream: "main", source: camera }
        : undefined;
    if (!found) throw new BadInputError(`camera has no stream '${name}'`);
    // Said as it is rather than answered with nothing to play: the tile shows these words.
    if (found.unplayable !== undefined) throw new BadInputError(found.unplayable);
    return found;
  };

  const camera = (req: Request): string => {
    const id = String(req.params.camera ?? "");
    if (!deps.cameraExists(id)) throw new NotFoundError("no such camera");
    deps.authorize?.(req, id);
    return id;
  };

  r.options("/:camera", (req, res) => {
    try {
      camera(req);
      res.set("Accept-Post", SDP);
      res.set("Allow", "OPTIONS, POST");
      setLinks(res, deps.iceServers(req));
      res.status(204).end();
    } catch (err) {
      sendError(res, err);
    }
  });

  r.post("/:camera", (req, res, next) => {
    try {
      camera(req);
    } catch (err) {
      return sendError(res, err);
    }
    // RFC 9725 §4.2: the offer is application/sdp; anything else is 415.
    if (!req.is(SDP)) {
      res.status(415).set("Accept-Post", SDP).json({ error: "unsupported_media_type", reason: `Content-Type must be ${SDP}` });
      return;
    }
    sdpBody(req, res, next);
  });
  r.post("/:camera", async (req, res) => {
    const id = String(req.params.camera);
    try {
      if (typeof req.body !== "string" || req.body.length === 0) throw new BadInputError("empty SDP offer");
      const asked = req.query.stream;
      // A viewer of a camera another node pulls may be served from this node's relay of it (gateway/cluster/forward-relay.ts).
      const relayed = res.locals.relaySource as string | undefined;
      const source = relayed ?? (await streamOf(id, asked, offersH265(req.body))).source;
      const user = deps.userOf?.(req);
      const ticket = admission.admit(ownerOf(req));
      let viewer: ViewerHandle;
      let answerSdp: string;
      try {
        ({ viewer, answerSdp } = await deps.sfu.createViewer(toCameraId(source), req.body, { user, cameraId: toCameraId(id) }));
        ticket.bind(viewer);
      } catch (err) {
        ticket.release();
        throw err;
      }
      // H.265 in the answer: this viewer can be moved to an H.265 stream later (a stream change by PATCH).
      const h265 = offersH265(answerSdp);
      if (h265) {
        const v = viewer;
        h265Viewers.add(v.id);
        v.once("closed", () => h265Viewers.delete(v.id));
      }
      try {
        deps.onViewer?.(req, viewer);
        // A viewer served from a relay keeps the stream it asked for: its ladder would be this
        // node's own pulls of the camera, which only the camera's owner may pull.
        if (!relayed) deps.onStreamChoice?.(viewer, id, typeof asked === "string" ? asked : "auto", h265);
      } catch (err) {
        await viewer.close(ViewerCloseReasons.rejectedByGateway);
        throw err;
      }
      deps.audit?.viewerStarted(req, viewer);
      const location = `${req.baseUrl}/${encodeURIComponent(id)}/${viewer.id}`;
      res.status(201);
      res.set("Content-Type", SDP);
      res.set("Location", location);
      res.set("ETag", etagOf(viewer.id));
      res.set("Accept-Patch", `${SDPFRAG}, ${JSON_TYPE}`);
      res.set("Cache-Control", "no-store");
      setLinks(res, deps.iceServers(req));
      res.send(answerSdp);
    } catch (err) {
      if (!isGatehouseError(err)) deps.log.error("WHEP offer failed", { camera: id, err });
      sendError(res, err);
    }
  });

  r.patch("/:camera/:viewer", (req, res, next) => {
    try {
      viewerOf(req);
    } catch (err) {
      return sendError(res, err);
    }
    if (req.is(JSON_TYPE)) return jsonBody(req, res, next);
    if (!req.is(SDPFRAG)) {
      res
        .status(415)
        .set("Accept-Patch", `${SDPFRAG}, ${JSON_TYPE}`)
        .json({ error: "unsupported_media_type", reason: `Content-Type must be ${SDPFRAG} or ${JSON_TYPE}` });
      return;
    }
    fragBody(req, res, next);
  });
  r.patch("/:camera/:viewer", async (req, res, next) => {
    if (!req.is(JSON_TYPE)) return next();
    // A stream change: `{"stream": "main" | "sub" | "auto" | <id>}`, made at the stream's next keyframe.
    try {
      const cam = camera(req);
      const v = viewerOf(req);
      const body: unknown = req.body;
      if (typeof body !== "object" || body === null || Array.isArray(body) || Object.keys(body).some((k) => k !== "stream"))
        throw new BadInputError('body must be {"stream": "<main|sub|auto|id>"}');
      const asked = (body as { stream?: unknown }).stream;
      const h265 = h265Viewers.has(v);
      const found = await streamOf(cam, asked, h265);
      const viewer = deps.sfu.viewer(v);
      if (!viewer) throw new NotFoundError("no such viewer session");
      const { stream } = found;
      // A viewer served from a relay moves to a relay of the asked stream (or to this node's own
      // pull once it holds the camera), never to a pull of this node's own beside the owner's.
      const relayed = await deps.relayedSource?.(cam, found.stream, viewer.sourceId);
      if (viewer.state === "closed") throw new NotFoundError("no such viewer session");
      viewer.switchSource(toCameraId(relayed ?? found.source), `asked for ${String(asked)}`);
      if (relayed === undefined) deps.onStreamChoice?.(viewer, cam, String(asked), h265);
      res.status(202).set("Cache-Control", "no-store").json({ stream: String(asked), source: stream });
    } catch (err) {
      sendError(res, err);
    }
  });
  r.patch("/:camera/:viewer", async (req, res) => {
    try {
      const v = viewerOf(req);
      const match = req.get("If-Match");
      // RFC 9725 §4.3.1: the entity tag names the ICE session; a stale one fails the precondition.
      if (match !== undefined && match.trim() !== "*" && match.trim() !== etagOf(v)) {
        res.status(412).json({ error: "precondition_failed", reason: "ICE session changed" });
        return;
      }
      const frag = parseSdpFrag(typeof req.body === "string" ? req.body : "");
      const current = deps.sfu.remoteIceUfrag(v);
      if (frag.ufrag !== undefined && current !== undefined && frag.ufrag !== current) {
        res.status(405).set("Allow", "DELETE, PATCH").json({ error: "method_not_allowed", reason: "ICE restart not supported: POST a new offer" });
        return;
      }
      // Names and refused addresses are dropped and counted (sfu/candidates.ts): still a 204.
      await deps.sfu.addIceCandidates(v, frag.candidates);
      res.status(204).end();
    } catch (err) {
      sendError(res, err);
    }
  });

  r.delete("/:camera/:viewer", async (req, res) => {
    try {
      const v = viewerOf(req);
      await deps.sfu.viewer(v)?.close(ViewerCloseReasons.clientDelete);
      res.status(200).end();
    } catch (err) {
      sendError(res, err);
    }
  });

  r.all("/:camera/:viewer", (_req, res) => {
    res.status(405).set("Allow", "DELETE, PATCH").json({ error: "method_not_allowed", reason: "use PATCH or DELETE" });
  });
  r.all("/:camera", (_req, res) => {
    res.status(405).set("Allow", "OPTIONS, POST").json({ error: "method_not_allowed", reason: "use POST" });
  });

  // Body parser failures (413 too large, 400 bad charset) keep their status, with a reason of ours (the one mapping).
  r.use(errorHandler(deps.log));

  /** The viewer of this resource, if it exists and the caller's session created it; else 404. */
  function viewerOf(req: Request) {
    const cam = camera(req);
    const v = toViewerId(String(req.params.viewer ?? ""));
    const viewer = deps.sfu.viewer(v);
    if (!viewer || viewer.cameraId !== cam || !admission.owns(v, ownerOf(req))) throw new NotFoundError("no such viewer session");
    return v;
  }

  return r;
}

function etagOf(viewer: string): string {
  return `"${viewer}"`;
}

/** RFC 8288 quoted-string: backslash-escape `"` and `\`. */
function quote(s: string): string {
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * One Link header per ICE server URL, as WHEP/WHIP (RFC 9725 §4.6) and RFC 8288 write them:
 * `<turn:host:port?transport=udp>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`.
 */
export function iceServerLinks(servers: readonly WhepIceServer[]): string[] {
  const out: string[] = [];
  for (const s of servers) {
    for (const url of s.urls) {
      if (/[<>\s]/.test(url)) continue; // would break the header; never comes from our own config
      let v = `<${url}>; rel="ice-server"`;
      if (s.username !== undefined) v += `; username=${quote(s.username)}`;
      if (s.credential !== undefined) v += `; credential=${quote(s.credential)}; credential-type="password"`;
      out.push(v);
    }
  }
  return out;
}

function setLinks(res: Response, servers: readonly WhepIceServer[]): void {
  for (const l of iceServerLinks(servers)) res.append("Link", l);
}

/**
 * Candidates (each with the mid above it) and the ufrag of a trickle-ice-sdpfrag body
 * (RFC 8840 §9). Every line must be an SDP line; the candidates themselves are read by
 * the SFU (sfu/candidates.ts), which also bounds their number.
 */
export function parseSdpFrag(body: string): { ufrag: string | undefined; candidates: TrickledCandidate[] } {
  let ufrag: string | undefined;
  let mid: string | undefined;
  const candidates: TrickledCandidate[] = [];
  for (const raw of body.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "") continue;
    if (!/^[a-z]=/.test(line)) throw new BadInputError("not a trickle-ice-sdpfrag (every line must be <type>=<value>)");
    if (line.length > 1024) throw new BadInputError("sdpfrag line too long");
    if (line.startsWith("a=ice-ufrag:")) ufrag = line.slice(12).trim();
    else if (line.startsWith("m=")) mid = undefined; // a new media description: its a=mid follows
    else if (line.startsWith("a=mid:")) mid = line.slice(6).trim();
    else if (line.startsWith("a=candidate:")) candidates.push({ candidate: line.slice(2), mid });
  }
  return { ufrag, candidates };
}
