/**
 * Bounds on live viewers and on what their ICE may ask of the gateway (the `media.viewers`
 * and `media.ice` keys). Every field documents its default and unit.
 *
 * Sized for a video wall: one browser session with 64 tiles is 64 viewers.
 */
import { z } from "zod";

export const viewersSection = z
  .strictObject({
    /** Live viewers (connecting ones included) one sign-in session may hold. Default 64 (a wall of 64 tiles). */
    perSession: z.number().int().min(1).max(10000).default(64),
    /**
     * Live viewers one user may hold over all their sessions. Default 128. Clamped at start
     * to half of what the ICE port range holds, so one user always leaves room for others.
     */
    perUser: z.number().int().min(1).max(100000).default(128),
    /** A viewer whose ICE and DTLS have not connected this long after its POST is closed and its port freed, ms. Default 10000. */
    connectTimeoutMs: z.number().int().min(1000).max(120000).default(10000),
  })
  .refine((v) => v.perUser >= v.perSession, { message: "perUser must be at least perSession", path: ["perUser"] })
  .prefault({});

export const iceSection = z
  .strictObject({
    /** Most ICE candidates in one offer or one trickle PATCH; more is refused with 400. Default 32. */
    maxCandidatesPerRequest: z.number().int().min(1).max(256).default(32),
    /** Most candidates one viewer may give in all; beyond it they are dropped and counted. Default 64. */
    maxCandidatesPerViewer: z.number().int().min(1).max(1024).default(64),
    /**
     * Take viewers' candidates in private, CGNAT and unique-local ranges (viewers on the
     * site's own networks). false: such candidates are dropped; those viewers connect
     * through the addresses their checks come from. Default true.
     */
    privateCandidates: z.boolean().default(true),
  })
  .prefault({});

/**
 * Multi-camera sessions (the `media.grid` keys): a page's whole grid over one peer
 * connection, cameras bound to its slots (gateway/http/grid.ts).
 */
export const gridSection = z
  .strictObject({
    /**
     * Multi-camera sessions (`/grid`) offered at all. Off: the route answers 404 and the live view
     * plays each tile over a WHEP session of its own. Default true.
     */
    enabled: z.boolean().default(true),
    /** Most video slots (cameras shown at once) one session may offer. Default 36 (the "Fit all" layout's page). */
    slotsPerSession: z.number().int().min(1).max(64).default(36),
    /** Most multi-camera sessions one user may hold at once (one per open page, typically). Default 8. */
    sessionsPerUser: z.number().int().min(1).max(1000).default(8),
    /**
     * Slots bound with the offer start sending this long after the gateway's side of DTLS
     * completes, ms (the browser completes its side a moment later; what arrives before is
     * dropped, and a burst of it delayed the browser's handshake by 0.1–0.5 s). Default 40.
     */
    startHoldMs: z.number().int().min(0).max(1000).default(40),
  })
  .prefault({});
