/**
 * Door intercoms in the browser: the ring, answering with two-way audio, opening the door,
 * and "talk to the door". Public surface of gateway/intercom; the SIP side is gateway/sip.
 *
 * ## Use
 * ```ts
 * const sip = await startSipServer({ config: cfg.sip, log, cameras });
 * const web = createIntercomWeb({ intercom: sip.intercom, auth, publicOrigin, log,
 *   media: { bindAddress, icePortRange: cfg.media.icePortRange, announcedAddress } });
 * app.use("/api/intercom", web.router);   // below auth.requireUser + auth.csrf
 * await web.close(reason);                 // before sip.close()
 * ```
 *
 * ## Routes (JSON unless noted; POSTs need the app's CSRF header for cookie sessions)
 *   GET  /api/intercom                          → { user, iceServers, devices[] } (doors the user may answer or talk to)
 *   GET  /api/intercom/events                   → text/event-stream: ready, ring, answered, door-opened, ended, dtmf, device, bye
 *   GET  /api/intercom/calls                    → { active[], history[] } (newest first)
 *   GET  /api/intercom/calls/:callId            → one active call, with the talk peer's figures for its holder
 *   POST /api/intercom/calls/:callId/answer     (application/sdp offer) → 201 answer SDP, Location, X-Call-Id;
 *                                                 409 { answeredBy, answeredByName } when someone else was first
 *   POST /api/intercom/calls/:callId/reject     → 204 (603 to the door, for everyone)
 *   POST /api/intercom/calls/:callId/hangup     → 204 (BYE; on a ringing call the same as reject)
 *   POST /api/intercom/calls/:callId/open-door  → 204 once the door's digits were sent (RFC 4733 or SIP INFO); on a
 *                                                 ringing call the gateway answers it itself, sends them and hangs up
 *   POST /api/intercom/calls/:callId/dtmf       ({ digits }) → 204
 *   POST /api/intercom/devices/:deviceId/call   (application/sdp offer) → 201 answer SDP once the door answered
 *
 * ## Decisions
 * - Ringing uses Server-Sent Events, not a WebSocket: one direction, plain HTTP through every
 *   proxy, the browser reconnects by itself, and the session cookie authenticates it like any
 *   GET (requireUser). An Origin other than ours is refused. A stream ends with a `bye` event
 *   when its session ends (auth.watch); a comment line every 15 s keeps it open.
 * - Who hears a ring: users with `answer_intercom` on the door's camera AND on the door's own
 *   answerer lists (sip `mayAnswer`). Everyone who got the ring hears `answered` (with who) and
 *   `ended`. A door without a camera has no rights to check: only `auth.mode: none` answers it.
 *   A door the user may not see at all answers 404, exactly like an unknown one.
 * - Answering carries the browser's SDP offer (sendrecv audio, the microphone): the gateway
 *   creates a 1:1 werift peer for that call only (talk-peer.ts), negotiated in the door's
 *   G.711 codec, so audio passes through without transcoding in both directions; the door's
 *   RTP is re-stamped into one stream (restamp.ts), the browser's goes to the SIP call, which
 *   re-stamps it with its DTMF and silence fill. The first answer wins in the SIP layer; a
 *   loser's peer is closed and it gets 409 naming the winner.
 * - The door's video is the door camera's ordinary live view (WHEP), which the page opens with
 *   the ring; nothing here touches video.
 * - "Open door" on a ringing call needs no browser media: the gateway answers the door with
 *   its own RTP endpoint (enough for RFC 4733 events; SIP INFO per the device's `dtmf.method`),
 *   waits for the ACK, sends the open-door digits, waits until they are sent and hangs up with
 *   BYE (the call ends as `door-opened`). Every page that got the ring hears `answered`
 *   (`purpose: "open-door"`), then `door-opened` with who opened it, then `ended`. A user who
 *   may see the door but not answer it gets 403.
 * - Only the person holding a call (who answered or placed it) can hang it up, open the door
 *   or send digits; opening the door re-checks `answer_intercom`. A call ends when its
 *   holder's sign-in ends or the right is withdrawn, and when the browser's audio connection
 *   fails (not connected within 15 s, or disconnected for 10 s).
 * - "Talk to the door" needs `talk` and only reaches configured, registered doors (the SIP
 *   layer enforces it). The POST stays open until the door answers, because the browser's
 *   answer must name the codec the door picks; a browser that gives up ends the call.
 */
import type { Request, Router } from "express";
import type { WhepIceServer } from "../http/whep.ts";
import { intercomRouter } from "./routes.ts";
import { IntercomService, type IntercomServiceOptions } from "./service.ts";

export { IntercomService, type IntercomAuth, type IntercomServiceOptions, type DeviceView, type RingView, type CallView, type HistoryView } from "./service.ts";
export { TalkPeer, type TalkPeerOptions, type TalkPeerStats, type TalkPeerState } from "./talk-peer.ts";

export interface IntercomWebOptions extends IntercomServiceOptions {
  /** The gateway's public origin (`http://127.0.0.1:8080`): event streams from other origins are refused. */
  publicOrigin: string;
  /** ICE servers handed to the browser for talk connections (our TURN, time-limited credentials). Default none. */
  iceServers?: (req: Request) => WhepIceServer[];
}

export interface IntercomWeb {
  readonly service: IntercomService;
  /** Mount at /api/intercom, below requireUser + csrf. */
  readonly router: Router;
  /** End event streams and talk peers. Idempotent. */
  close(reason?: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function createIntercomWeb(opts: IntercomWebOptions): IntercomWeb {
  const service = new IntercomService(opts);
  const router = intercomRouter({ service, publicOrigin: opts.publicOrigin, log: opts.log, ...(opts.iceServers ? { iceServers: opts.iceServers } : {}) });
  return {
    service,
    router,
    close: (reason) => service.close(reason),
    [Symbol.asyncDispose]: () => service.close("disposed"),
  };
}
