/**
 * A whole grid over ONE RTCPeerConnection (one ICE/DTLS handshake, one ICE port, one set of
 * TURN allocations): the gateway's multi-camera session (`/grid`, gateway/http/grid.ts).
 *
 * Exchange:
 *   1. `OPTIONS grid` → ICE servers (Link headers) and the most video slots a session may have.
 *   2. Offer with N recvonly video transceivers (H.264 only, so the offer stays small) and N
 *      recvonly audio transceivers (the i-th carries the sound of the camera on the i-th video
 *      slot), candidates as whep.js `gatherCandidates` waits for them, its TURN credentials named
 *      (`relayUsernameHeader`); `POST grid` → 201, the answer, `Location`.
 *      The first tiles' cameras go WITH the offer (`POST grid` as JSON `{offer, slots: [{mid, camera}, …]}`,
 *      answered `{answer, slots}`): the gateway binds them before ICE and DTLS complete, and each
 *      slot's cached keyframe leaves the moment the connection is up. The offer can be made
 *      before any tile asks (`prepare()`, while the page loads its camera list); it is POSTed
 *      when the first tiles do. A gateway that only takes SDP (415) gets SDP, then step 3.
 *   3. Cameras are bound to slots by mid: `PUT <session>/slots/<mid> {"camera": id}`, or all the
 *      slots assigned at once in ONE request, `PUT <session>/slots {"slots": [{mid, camera}, …]}`
 *      (a browser sends at most six requests at a time to one origin: sixteen PUTs would take
 *      four round trips); a gateway without that route gets one PUT per slot. A slot
 *      given up is re-bound to the next camera that needs one (the gateway switches the slot's
 *      stream at the new camera's keyframe: no renegotiation, no new connection), or unbound
 *      (`DELETE <session>/slots/<mid>`) when nobody needs it.
 *   4. `DELETE <session>` when the page goes away, or when no tile holds a slot any more (a camera
 *      opened large plays in a WHEP session of its own): an empty session would hold an ICE port,
 *      TURN allocations and one of the user's live-viewer places for nothing. The next tile that
 *      asks starts a new one.
 *
 * Each tile holds a `SlotLease`, which looks to the page like a one-camera WhepSession
 * (`state`, `pc`, `stream`, `attempts`, `lastError`, `retryAt`, `statechange`/`stream` events,
 * `close()`), plus `getStats()` for its own receiver. A refused bind (403: no right to that
 * camera) fails only that lease, with the gateway's plain reason; the session goes on.
 *
 * The connection is watched like a WhepSession's: `failed`, or `disconnected` past a grace
 * period, starts a new session (capped exponential backoff) and every lease is bound again.
 * A page that needs more slots than the session has (a larger layout) also starts a new one.
 */

import { csrfHeaders, resetCsrf } from "./csrf.js";
import { cannotMend, retryAfterMs, retryDelayMs, Timer } from "./retry.js";
import { gatherCandidates, iceServersFromLinks, onlyTurnTransport, parseLinkHeader, relayUsernameHeader, WhepError } from "./whep.js";

/**
 * `unsupported`: the gateway has no grid endpoint (an older gateway, or one behind a proxy that only
 * passes `/whep/`); the page then plays each tile over a WHEP session of its own.
 * @typedef {"new"|"connecting"|"connected"|"disconnected"|"retrying"|"unauthorized"|"failed"|"unsupported"|"closed"} GridState
 */

/**
 * @typedef {object} GridOptions
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "relay" forces TURN
 * @property {"udp" | "tcp" | "tls"} [turnTransport] keep only TURN URLs of this transport
 * @property {number} [slots] video slots wanted (capped by the gateway's limit; default 16)
 * @property {number} [connectTimeoutMs] answer → connected limit before retrying, ms (default 10000)
 * @property {number} [disconnectGraceMs] how long `disconnected` may last before retrying, ms (default 8000)
 * @property {number} [backoffMinMs] first retry delay, ms (default 500)
 * @property {number} [backoffMaxMs] cap of the retry delay, ms (default 15000)
 * @property {number} [checkMs] how often bound slots are compared with the gateway's view, ms (default 5000)
 */

const DEFAULTS = {
  slots: 16,
  gatherQuietMs: 25,
  gatherMaxMs: 2000,
  connectTimeoutMs: 10_000,
  // Longer than a one-camera session's 2.5 s: every tile hangs on this one connection, and ICE
  // usually recovers from a few seconds without an answer to its checks (a busy host, a Wi-Fi hop).
  disconnectGraceMs: 8000,
  backoffMinMs: 500,
  backoffMaxMs: 15_000,
  checkMs: 5000,
};

/** Response header: the most video slots a session may offer. */
const SLOTS_HEADER = "Gatehouse-Grid-Slots";
/** `error` of the gateway's 429 for a user already holding `media.grid.sessionsPerUser` sessions. */
const SESSION_LIMIT = "grid_session_limit";

/**
 * One video slot of the connection, with its sound (the paired audio transceiver, bound with it).
 * @typedef {{ mid: string, transceiver: RTCRtpTransceiver, audio: RTCRtpTransceiver | null, lease: SlotLease | null, camera: string | null, chain: Promise<void> }} Slot
 */

export class GridSession extends EventTarget {
  /** @type {GridState} */
  state = "new";
  /** @type {RTCPeerConnection | null} */
  pc = null;
  /** @type {string | null} absolute URL of the session resource */
  resource = null;
  attempts = 0;
  failures = 0;
  /** @type {WhepError | null} */
  lastError = null;
  retryAt = 0;
  /**
   * performance.now() marks of the current attempt: `start`, `created` (offer made), `discovered`
   * (ICE servers known), `gathered` (candidates in the offer), `offered` (POSTed), `answered`, `connected`.
   * @type {Record<string, number>}
   */
  timings = {};
  /** Most video slots the gateway allows (from OPTIONS). */
  maxSlots = Infinity;

  #endpoint;
  #opts;
  #gen = 0;
  /** The connect timeout, the disconnect grace or the next attempt. */
  #timer = new Timer();
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #check;
  /** @type {Slot[]} */
  #slots = [];
  /** Leases waiting for a slot, in the order asked. @type {SlotLease[]} */
  #waiting = [];
  /** Every open lease. @type {Set<SlotLease>} */
  #leases = new Set();
  #assignQueued = false;
  /** The gateway binds several slots in one request (until it answers that it cannot). */
  #batch = true;
  /** The gateway takes the first binds with the offer (until it answers 415). */
  #bindInOffer = true;
  /** Video transceivers of the current connection's offer (0: none made). */
  #offered = 0;
  /** The current attempt's ICE servers (their TURN credentials are named with the offer). @type {RTCIceServer[]} */
  #servers = [];
  /** Resolves the current attempt's wait for a first tile (see `#demand`). @type {(() => void) | null} */
  #demanded = null;
  /** The last refusal was the user's session limit (before the gateway made this grid a session, that gives the grid up). */
  #atLimit = false;
  /**
   * The gateway made a session for this grid since it last started from `new`. Until then a
   * refusal of the route (404, 405, 501) or the user's session limit gives the grid up, whichever
   * attempt it ends: a connection replaced for more slots before the first answer is not a retry.
   */
  #made = false;
  #wanted;

  /**
   * @param {string | URL} endpoint e.g. `grid`
   * @param {GridOptions} [options]
   */
  constructor(endpoint, options = {}) {
    super();
    this.#endpoint = new URL(endpoint, document.baseURI).href;
    this.#opts = { ...DEFAULTS, ...options };
    this.#wanted = this.#opts.slots;
  }

  /** Video slots of the current connection. */
  get slotCount() {
    return this.#slots.length;
  }

  /** Mid → camera as this page last bound them (tests, diagnostics). */
  get bindings() {
    return this.#slots.map((s) => ({ mid: s.mid, camera: s.camera, lease: s.lease?.camera ?? null }));
  }

  /**
   * A slot for `camera` (given as soon as one is free). Starts the session on first use.
   * @param {string} camera
   * @returns {SlotLease}
   */
  lease(camera) {
    const lease = new SlotLease(this, camera);
    this.#leases.add(lease);
    this.#waiting.push(lease);
    if (this.state === "new") this.#attempt();
    else this.#queueAssign();
    this.#demanded?.();
    this.#demanded = null;
    return lease;
  }

  /**
   * Make the connection's offer now, before any tile asks (a page still loading its camera
   * list): ICE servers, the offer and its candidates are ready when the first tiles lease their
   * slots, and go to the gateway with their binds in one request. Nothing reaches the gateway
   * before a tile asks. No effect once started.
   */
  prepare() {
    if (this.state === "new") this.#attempt();
  }

  /**
   * At least `n` video slots wanted (a layout showing more tiles): a connection with fewer
   * is replaced by one with enough, its leases bound again there.
   * @param {number} n
   */
  wantSlots(n) {
    const want = Math.max(1, Math.min(n, this.maxSlots));
    if (want <= this.#wanted) return;
    this.#wanted = want;
    if (this.#offered > 0 && this.#offered < want && this.state !== "closed") {
      this.#gen++;
      this.#teardown(false);
      this.#attempt();
    }
  }

  /** End the session for good (DELETE on the gateway). Idempotent. */
  close(_reason = "closed", opts = {}) {
    if (this.state === "closed") return;
    this.#gen++;
    this.#teardown(/** @type {{ keepalive?: boolean }} */ (opts).keepalive === true);
    for (const l of [...this.#leases]) l._sessionClosed();
    this.#setState("closed");
  }

  /**
   * Whether `id` names this session's current resource (the gateway's notices name it).
   * @param {string} id the last segment of the resource URL
   */
  isSession(id) {
    const r = this.resource;
    return !!r && new URL(r).pathname.split("/").pop() === encodeURIComponent(id);
  }

  /**
   * The gateway said this session is gone (its media worker died): start over at once instead of
   * waiting for ICE to notice; every tile says why meanwhile. Ignored unless `id` names the
   * current resource (an older session's notice changes nothing).
   * @param {string} id the last segment of the resource URL
   * @param {string} message why, in plain words
   * @returns {boolean} whether the session started over
   */
  lost(id, message) {
    if (this.state === "closed" || !this.isSession(id)) return false;
    this.#fail(new WhepError(message));
    return true;
  }

  /**
   * The gateway this session was made through is gone (the page's event stream to it dropped and
   * came back from another gateway process, or not at all): start over at once instead of waiting
   * for ICE to notice. A session already retrying keeps its retry, with this reason; one not started,
   * failed for good or closed is left as it is.
   * @param {string} message why, in plain words
   * @returns {boolean} whether the session starts over (now, or at its pending retry)
   */
  restart(message) {
    // Already waiting to try again (a request that failed as the node went): the retry goes through
    // whichever node answers now; only the reason changes.
    if (this.state === "retrying") {
      this.lastError = new WhepError(message);
      return true;
    }
    if (this.state !== "connected" && this.state !== "disconnected" && this.state !== "connecting") return false;
    this.#fail(new WhepError(message));
    return true;
  }

  // ---- leases ----

  /**
   * The lease's slot bound again (unbound, then bound): the gateway looks for the camera's source
   * anew (a camera that moved to another node and did not come back on its own).
   * @param {SlotLease} lease
   * @returns {boolean} whether a bind was sent
   */
  _rebind(lease) {
    const slot = this.#slots.find((s) => s.lease === lease);
    if (!slot || !this.resource || this.state === "closed") return false;
    const gen = this.#gen;
    const resource = this.resource;
    slot.camera = null;
    lease._unbound();
    slot.chain = slot.chain.then(async () => {
      if (gen !== this.#gen || slot.lease !== lease) return;
      try {
        await fetch(`${resource}/slots/${encodeURIComponent(slot.mid)}`, { method: "DELETE", headers: await csrfHeaders(), credentials: "same-origin" });
      } catch {
        // the bind below says what is wrong
      }
    });
    this.#bind(slot, lease);
    return true;
  }

  /**
   * A tile whose camera was refused for a while (a refusal that may pass) asks again: a free slot
   * now, or the next one. Nothing when it holds or awaits a slot already (a new connection took it).
   * @param {SlotLease} lease
   */
  _retry(lease) {
    if (this.state === "closed" || !this.#leases.has(lease) || this.#waiting.includes(lease) || this.#slots.some((s) => s.lease === lease)) return;
    this.#waiting.push(lease);
    this.#queueAssign();
  }

  /** @param {SlotLease} lease */
  _release(lease) {
    this.#leases.delete(lease);
    this.#waiting = this.#waiting.filter((l) => l !== lease);
    if (this.#leases.size === 0) this.#queueIdle();
    const slot = this.#slots.find((s) => s.lease === lease);
    if (!slot) return;
    slot.lease = null;
    // Another tile waiting takes the slot over (a re-bind); else the slot is unbound.
    this.#queueAssign();
  }

  /**
   * No tile holds or wants a slot (all released in this task: a page turn re-leases in the same
   * one, and keeps the session): end the session on the gateway and the connection here, back
   * to `new`. The next lease starts again.
   */
  #queueIdle() {
    queueMicrotask(() => {
      if (this.#leases.size > 0 || this.state === "new" || this.state === "closed") return;
      this.#gen++;
      this.#teardown(false);
      // The next session is a new one: its first refusal is read as a first attempt's.
      this.attempts = 0;
      this.#made = false;
      this.failures = 0;
      this.lastError = null;
      this.#setState("new");
    });
  }

  #queueAssign() {
    if (this.#assignQueued) return;
    this.#assignQueued = true;
    queueMicrotask(() => {
      this.#assignQueued = false;
      this.#assign();
    });
  }

  /** Free slots go to waiting leases (a slot already showing the camera first); slots left over are unbound. */
  #assign() {
    if (!this.resource || this.state === "closed") return;
    const binds = this.#place();
    if (binds.length > 1 && this.#batch) this.#bindAll(binds);
    else for (const [slot, lease] of binds) this.#bind(slot, lease);
    for (const slot of this.#slots) if (!slot.lease && slot.camera !== null) this.#unbind(slot);
  }

  /**
   * Gives free slots to waiting leases, in the order asked (a slot already showing the camera
   * first); nothing is sent.
   * @returns {Array<[Slot, SlotLease]>}
   */
  #place() {
    const free = this.#slots.filter((s) => !s.lease);
    /** @type {Array<[Slot, SlotLease]>} */
    const binds = [];
    for (const lease of [...this.#waiting]) {
      if (free.length === 0) break;
      let i = free.findIndex((s) => s.camera === lease.camera);
      if (i < 0) i = free.findIndex((s) => s.camera === null);
      if (i < 0) i = 0;
      const slot = /** @type {Slot} */ (free.splice(i, 1)[0]);
      this.#waiting = this.#waiting.filter((l) => l !== lease);
      slot.lease = lease;
      binds.push([slot, lease]);
    }
    return binds;
  }

  /**
   * The gateway's answers to several binds sent at once (`{mid, …}` bound, or `{mid, status, reason}`
   * refused), each handled as its own PUT's would be.
   * @param {Array<[Slot, SlotLease]>} pairs
   * @param {Array<{ mid?: string, status?: number, reason?: string, retryAfterSeconds?: number }>} results
   */
  #settle(pairs, results) {
    for (const [slot, lease] of pairs) {
      const r = results.find((x) => x && x.mid === slot.mid);
      if (r && r.status === undefined) {
        slot.camera = lease.camera;
        if (slot.lease === lease) lease._bound(slot);
        else this.#queueAssign();
        continue;
      }
      const status = r && typeof r.status === "number" ? r.status : 500;
      if (status === 401) return this.#fail(new WhepError(r?.reason ?? "sign-in required", 401));
      // This camera only: the tile says why (and asks again, when the refusal may pass); the slot goes to the next tile.
      if (slot.lease === lease) slot.lease = null;
      // The batched answer's `retryAfterSeconds`, read as a PUT's Retry-After header would be.
      const after = retryAfterMs(typeof r?.retryAfterSeconds === "number" ? String(r.retryAfterSeconds) : null);
      lease._refused(new WhepError(r?.reason ?? `HTTP ${status}`, status, after), this.#opts);
      this.#queueAssign();
    }
  }

  /**
   * Binds several slots in one request (`PUT <session>/slots`); each answer is handled as its own
   * PUT's would be. A gateway without the route gets one PUT per slot from then on.
   * @param {Array<[Slot, SlotLease]>} pairs
   */
  #bindAll(pairs) {
    const gen = this.#gen;
    const resource = /** @type {string} */ (this.resource);
    const done = Promise.all(pairs.map(([slot]) => slot.chain)).then(async () => {
      const live = pairs.filter(([slot, lease]) => slot.lease === lease);
      if (gen !== this.#gen || live.length === 0) return;
      const res = await this.#put(`${resource}/slots`, { slots: live.map(([slot, lease]) => ({ mid: slot.mid, camera: lease.camera })) }, gen);
      if (!res) return;
      /** @type {{ slots?: Array<{ mid?: string, status?: number, reason?: string }> } | null} */
      let body = null;
      if (res.ok) body = await res.json().catch(() => null);
      if (!body || !Array.isArray(body.slots)) {
        if (res.status === 401) return this.#fail(new WhepError(await reasonOf(res), 401));
        // No such route (an older gateway), or a refusal of the whole request: slot by slot, which says why.
        if (res.status === 404 || res.status === 405) this.#batch = false;
        for (const [slot, lease] of live) this.#bind(slot, lease);
        return;
      }
      this.#settle(live, body.slots);
    });
    for (const [slot] of pairs) slot.chain = done;
  }

  /**
   * PUT `body` as JSON to `url` for the session of generation `gen`. A network error fails the
   * session; either way, and when the session moved on meanwhile, the answer is null.
   * @param {string} url
   * @param {unknown} body
   * @param {number} gen
   * @returns {Promise<Response | null>}
   */
  async #put(url, body, gen) {
    let res;
    try {
      res = await fetch(url, {
        method: "PUT",
        headers: { "Content-Type": "application/json", ...(await csrfHeaders()) },
        body: JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      if (gen === this.#gen) this.#fail(new WhepError(`network error: ${err instanceof Error ? err.message : String(err)}`));
      return null;
    }
    return gen === this.#gen ? res : null;
  }

  /**
   * @param {Slot} slot
   * @param {SlotLease} lease
   */
  #bind(slot, lease) {
    const gen = this.#gen;
    const resource = /** @type {string} */ (this.resource);
    slot.chain = slot.chain.then(async () => {
      if (gen !== this.#gen || slot.lease !== lease) return;
      const res = await this.#put(`${resource}/slots/${encodeURIComponent(slot.mid)}`, { camera: lease.camera }, gen);
      if (!res) return;
      if (res.ok) {
        slot.camera = lease.camera;
        if (slot.lease === lease) lease._bound(slot);
        else this.#queueAssign();
        return;
      }
      const error = new WhepError(await reasonOf(res), res.status, retryAfterMs(res.headers.get("Retry-After")));
      if (res.status === 401) return this.#fail(error);
      if (res.status === 403) resetCsrf();
      // The session is gone on the gateway (closed, restarted): a new one.
      if (res.status === 404 && /session/.test(error.message)) return this.#fail(error);
      // This camera only: the tile says why (and asks again, when the refusal may pass); the slot goes to the next tile.
      slot.lease = null;
      lease._refused(error, this.#opts);
      this.#queueAssign();
    });
  }

  /** @param {Slot} slot */
  #unbind(slot) {
    const gen = this.#gen;
    const resource = /** @type {string} */ (this.resource);
    slot.camera = null;
    slot.chain = slot.chain.then(async () => {
      if (gen !== this.#gen || slot.lease) return;
      try {
        await fetch(`${resource}/slots/${encodeURIComponent(slot.mid)}`, {
          method: "DELETE",
          headers: await csrfHeaders(),
          credentials: "same-origin",
        });
      } catch {
        // the next bind or the session's end settles it
      }
    });
  }

  /** Slots the gateway no longer shows (a right withdrawn, a camera removed) are bound again, or refused with a reason. */
  async #verify() {
    const gen = this.#gen;
    const resource = this.resource;
    if (!resource || this.state !== "connected") return;
    let body;
    try {
      const res = await fetch(resource, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
      if (gen !== this.#gen) return;
      if (res.status === 404) return this.#fail(new WhepError("the gateway no longer has this view's connection; reconnecting", 404));
      if (!res.ok) return;
      body = await res.json();
    } catch {
      return;
    }
    if (gen !== this.#gen || !body || !Array.isArray(body.slots)) return;
    for (const s of body.slots) {
      const slot = this.#slots.find((x) => x.mid === s.mid);
      if (!slot || !slot.lease || slot.camera === null || s.camera === slot.camera) continue;
      slot.camera = null;
      const lease = slot.lease;
      lease._unbound();
      this.#bind(slot, lease);
    }
  }

  // ---- the connection ----

  async #attempt() {
    const gen = ++this.#gen;
    this.attempts++;
    this.timings = { start: performance.now() };
    this.#setState("connecting");
    // The CSRF token (a request of its own, once per page) is fetched while the offer is made.
    void csrfHeaders();
    try {
      await this.#negotiate(gen);
    } catch (err) {
      if (gen !== this.#gen) return;
      this.#fail(err instanceof WhepError ? err : new WhepError(err instanceof Error ? err.message : String(err)));
    }
  }

  /** @param {number} gen */
  async #negotiate(gen) {
    const opts = this.#opts;
    // ICE servers are asked for while the offer is made (they are needed from setLocalDescription on).
    const discovered = this.#discover();
    discovered.catch(() => {}); // read below; an attempt that moved on meanwhile does not care
    const count = Math.max(1, Math.min(this.#wanted, this.maxSlots));
    /** @type {RTCConfiguration} */
    const config = { bundlePolicy: "max-bundle" };
    if (opts.iceTransportPolicy) config.iceTransportPolicy = opts.iceTransportPolicy;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    this.#offered = count;
    const h264 = h264Codecs();
    /** @type {RTCRtpTransceiver[]} */
    const transceivers = [];
    for (let i = 0; i < count; i++) {
      const t = pc.addTransceiver("video", { direction: "recvonly" });
      // H.264 only (what the gateway sends): each section stays a few hundred bytes.
      if (h264.length > 0 && typeof t.setCodecPreferences === "function") {
        try {
          t.setCodecPreferences(h264);
        } catch {
          // an older browser: the full list is offered, and answered with H.264 just the same
        }
      }
      transceivers.push(t);
    }
    // Each tile's sound: muted by the page until the user picks the tile.
    const sounds = transceivers.map(() => pc.addTransceiver("audio", { direction: "recvonly" }));
    // Only the sounds the gateway sends (Opus, G.711): the full list made each audio section
    // about 2 kB, two thirds of a 16-slot offer, parsed by the browser and the gateway alike.
    const voice = audioCodecs();
    if (voice.length > 0) {
      for (const t of sounds) {
        if (typeof t.setCodecPreferences !== "function") break;
        try {
          t.setCodecPreferences(voice);
        } catch {
          break; // an older browser: the full list, answered with one of these just the same
        }
      }
    }
    pc.onconnectionstatechange = () => this.#onConnectionState(gen);
    const offer = await pc.createOffer();
    this.timings.created = performance.now();
    let servers = await discovered;
    if (gen !== this.#gen) return;
    this.timings.discovered = performance.now();
    if (count > this.maxSlots) {
      // More slots than the gateway allows (learnt just now): the offer again, with as many as it does.
      this.pc = null;
      pc.onconnectionstatechange = null;
      pc.close();
      return this.#negotiate(gen);
    }
    if (opts.turnTransport) servers = onlyTurnTransport(servers, opts.turnTransport);
    if (servers.length > 0) pc.setConfiguration({ ...config, iceServers: servers });
    this.#servers = servers;
    await pc.setLocalDescription(offer);
    await gatherCandidates(pc, opts, servers);
    if (gen !== this.#gen) return;
    this.timings.gathered = performance.now();
    // Nothing reaches the gateway before a tile asks; then the first tiles' binds go with the offer.
    await this.#demand();
    if (gen !== this.#gen) return;
    // The mids are known since setLocalDescription: every open tile (a new connection: all of
    // them, in the order they asked) is placed on a slot now.
    this.#slots = transceivers.map((t, i) => ({ mid: t.mid ?? String(i), transceiver: t, audio: sounds[i] ?? null, lease: null, camera: null, chain: Promise.resolve() }));
    this.#waiting = [...this.#leases];
    let binds = this.#bindInOffer ? this.#place() : [];
    const sdp = pc.localDescription?.sdp ?? "";
    this.timings.offered = performance.now();
    let res = await this.#postOffer(sdp, binds);
    if (gen !== this.#gen) return;
    if (res.status === 415 && binds.length > 0) {
      // A gateway that takes SDP alone: the slots are bound after the answer (PUT).
      this.#bindInOffer = false;
      for (const [slot, lease] of binds) if (slot.lease === lease) slot.lease = null;
      binds = [];
      res = await this.#postOffer(sdp, binds);
      if (gen !== this.#gen) return;
    }
    if (res.status !== 201 && res.status !== 200) {
      if (res.status === 403) resetCsrf();
      const { reason, code } = await refusalOf(res);
      this.#atLimit = res.status === 429 && code === SESSION_LIMIT;
      throw new WhepError(reason, res.status, retryAfterMs(res.headers.get("Retry-After")));
    }
    this.#made = true;
    const location = res.headers.get("Location");
    if (!location) throw new WhepError("the gateway named no session resource");
    const resource = new URL(location, res.url || this.#endpoint).href;
    /** @type {string} */
    let answer;
    /** @type {Array<{ mid?: string, status?: number, reason?: string }>} */
    let results = [];
    if (binds.length > 0) {
      /** @type {{ answer?: unknown, slots?: unknown } | null} */
      const body = await res.json().catch(() => null);
      if (gen !== this.#gen) return void this.#deleteResource(resource, false);
      if (!body || typeof body.answer !== "string") {
        this.resource = resource;
        throw new WhepError("the gateway sent an unreadable answer");
      }
      answer = body.answer;
      if (Array.isArray(body.slots)) results = body.slots;
    } else answer = await res.text();
    if (gen !== this.#gen) return void this.#deleteResource(resource, false);
    this.resource = resource;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    if (gen !== this.#gen) return;
    this.timings.answered = performance.now();
    const live = (/** @type {RTCRtpTransceiver} */ t) => t.mid !== null && t.currentDirection !== "inactive" && t.currentDirection !== "stopped";
    this.#slots = this.#slots.filter((slot) => {
      if (slot.audio && !live(slot.audio)) slot.audio = null;
      if (live(slot.transceiver)) return true;
      // A section the gateway did not take: its tile waits for another slot.
      if (slot.lease) this.#waiting.push(slot.lease);
      slot.lease = null;
      return false;
    });
    // The binds sent with the offer, as the gateway answered them; every other open lease is
    // bound (again) on this connection.
    const sent = binds.filter(([slot, lease]) => slot.lease === lease && this.#slots.includes(slot));
    const placed = new Set(sent.map(([, lease]) => lease));
    this.#waiting = [...this.#leases].filter((l) => !placed.has(l));
    for (const l of this.#waiting) l._unbound();
    this.#settle(sent, results);
    if (gen !== this.#gen) return;
    this.#assign();
    this.#timer.arm(opts.connectTimeoutMs, () => this.#fail(new WhepError("timed out waiting for the connection")));
    this.#onConnectionState(gen);
  }

  /**
   * POSTs the offer: with `binds`, as JSON with the slots to bind at once; else as SDP. A network
   * error is a WhepError.
   * @param {string} sdp
   * @param {Array<[Slot, SlotLease]>} binds
   * @returns {Promise<Response>}
   */
  async #postOffer(sdp, binds) {
    const json = binds.length > 0;
    try {
      return await fetch(this.#endpoint, {
        method: "POST",
        headers: {
          "Content-Type": json ? "application/json" : "application/sdp",
          Accept: json ? "application/json" : "application/sdp",
          ...relayUsernameHeader(this.#servers),
          ...(await csrfHeaders()),
        },
        body: json ? JSON.stringify({ offer: sdp, slots: binds.map(([slot, lease]) => ({ mid: slot.mid, camera: lease.camera })) }) : sdp,
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      throw new WhepError(`network error: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Resolves once a tile holds or wants a slot (at once if one does); a teardown resolves it too (the attempt then ends). @returns {Promise<void>} */
  #demand() {
    if (this.#leases.size > 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#demanded = resolve;
    });
  }

  /** ICE servers and the slot limit (OPTIONS); none when it fails. @returns {Promise<RTCIceServer[]>} */
  async #discover() {
    try {
      const res = await fetch(this.#endpoint, { method: "OPTIONS", credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) throw new WhepError("sign-in required", 401);
      // No such route: retrying cannot help, and the tiles must not wait on it.
      if (res.status === 404 || res.status === 405 || res.status === 501) throw new WhepError("this gateway has no grid endpoint", res.status);
      const max = Number(res.headers.get(SLOTS_HEADER));
      if (Number.isInteger(max) && max > 0) this.maxSlots = max;
      return res.ok ? iceServersFromLinks(parseLinkHeader(res.headers.get("Link"))) : [];
    } catch (err) {
      if (err instanceof WhepError) throw err;
      return [];
    }
  }

  /** @param {number} gen */
  #onConnectionState(gen) {
    const pc = this.pc;
    if (gen !== this.#gen || !pc) return;
    const s = pc.connectionState;
    if (s === "connected") {
      if (this.state !== "connected") {
        this.timings.connected ??= performance.now();
        this.failures = 0;
        this.lastError = null;
        this.#timer.clear();
        this.#setState("connected");
        clearInterval(this.#check);
        this.#check = setInterval(() => void this.#verify(), this.#opts.checkMs);
      }
    } else if (s === "disconnected") {
      if (this.state === "connected") {
        this.#setState("disconnected");
        this.#timer.arm(this.#opts.disconnectGraceMs, () => this.#fail(new WhepError("connection lost")));
      }
    } else if (s === "failed" || s === "closed") {
      this.#fail(new WhepError("connection failed"));
    }
  }

  /** @param {WhepError} error */
  #fail(error) {
    if (this.state === "closed") return;
    const wasConnected = this.state === "connected" || this.state === "disconnected";
    // Read before the teardown clears it: a 404 about a session the gateway made (the periodic
    // check reaching another node after the one holding it died) is not a missing grid route.
    const hadSession = this.resource !== null;
    this.#gen++;
    this.lastError = error;
    this.#teardown(false);
    for (const l of this.#leases) l._unbound();
    const atLimit = this.#atLimit;
    this.#atLimit = false;
    const next = afterFailure(error.status, { hadSession, madeBefore: this.#made, atLimit });
    if (next !== "retrying") return this.#setState(next);
    this.failures++;
    const delay = retryDelayMs(this.failures, wasConnected, this.#opts, error.retryAfterMs);
    this.retryAt = performance.now() + delay;
    this.#setState("retrying");
    this.#timer.arm(delay, () => this.#attempt());
  }

  /** @param {boolean} keepalive */
  #teardown(keepalive) {
    this.#demanded?.();
    this.#demanded = null;
    this.#offered = 0;
    this.#timer.clear();
    clearInterval(this.#check);
    this.#check = undefined;
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      pc.onconnectionstatechange = null;
      pc.close();
    }
    this.#slots = [];
    const resource = this.resource;
    this.resource = null;
    if (resource) void this.#deleteResource(resource, keepalive);
  }

  /**
   * @param {string} resource
   * @param {boolean} keepalive
   */
  async #deleteResource(resource, keepalive) {
    try {
      await fetch(resource, { method: "DELETE", headers: await csrfHeaders(), credentials: "same-origin", keepalive });
    } catch {
      // the gateway also ends sessions whose connection died
    }
  }

  /** @param {GridState} state */
  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new Event("statechange"));
    for (const l of this.#leases) l._sessionState();
  }
}

/**
 * One tile's share of a GridSession: looks like a one-camera WhepSession to the page.
 *
 * Events: `statechange` (read `state`), `stream` (a new MediaStream in `stream`: the slot's
 * track, once the gateway sends this camera on it).
 */
export class SlotLease extends EventTarget {
  /** @type {GridState} */
  state = "connecting";
  /** @type {MediaStream | null} */
  stream = null;
  /** The slot carries the camera's sound (muted by the page until the tile is picked). */
  hasAudio = false;
  /** @type {WhepError | null} this camera's own refusal */
  #refusal = null;
  /** Refusals in a row that may pass (no relay of the camera yet, a limit): they drive this tile's backoff. */
  #refusals = 0;
  /** This tile asks for its camera again (after a refusal that may pass). */
  #retry = new Timer();
  #retryAt = 0;
  /** @type {Slot | null} */
  #slot = null;
  #session;

  /**
   * @param {GridSession} session
   * @param {string} camera
   */
  constructor(session, camera) {
    super();
    this.#session = session;
    this.camera = camera;
  }

  /** The shared connection (one for every tile). */
  get pc() {
    return this.#slot ? this.#session.pc : null;
  }

  get attempts() {
    return this.#session.attempts;
  }

  get retryAt() {
    return this.state === "retrying" && this.#refusal ? this.#retryAt : this.#session.retryAt;
  }

  get lastError() {
    return this.#refusal ?? this.#session.lastError;
  }

  /** The session resource and this tile's slot (diagnostics). */
  get resource() {
    return this.#slot && this.#session.resource ? `${this.#session.resource}/slots/${this.#slot.mid}` : null;
  }

  get mid() {
    return this.#slot?.mid ?? null;
  }

  /** Statistics of this tile's receivers only (its inbound picture and sound, the shared transport), as one report. */
  async getStats() {
    const slot = this.#slot;
    if (!slot) throw new Error("not bound");
    const reports = await Promise.all([slot.transceiver.receiver.getStats(), ...(slot.audio ? [slot.audio.receiver.getStats()] : [])]);
    /** @type {Map<string, any>} */
    const all = new Map();
    for (const r of reports) r.forEach((v, k) => all.set(k, v));
    return /** @type {RTCStatsReport} */ (/** @type {unknown} */ (all));
  }

  /**
   * Whether `id` names the session this lease's slot belongs to (the gateway's notices name it).
   * @param {string} id
   */
  isViewer(id) {
    return this.#slot !== null && this.#session.isSession(id);
  }

  /**
   * The camera of this slot did not come back after a move to another node: bind the slot again
   * (the connection and the other tiles stay). Named as WhepSession's `lost`, which offers anew.
   * @param {string} id the session's id, as the notice named it
   * @param {string} _message why (the tile says it meanwhile)
   * @returns {boolean} whether a bind was sent
   */
  lost(id, _message) {
    if (this.state === "closed" || !this.isViewer(id)) return false;
    return this.#session._rebind(this);
  }

  /** Grid tiles play the camera's substream (the gateway's default for slots): nothing to change. */
  async setStream(/** @type {string} */ _stream) {}

  /** The lease asks for its slot when made: nothing more to start (WhepSession's interface). */
  start() {}

  /** Give the slot back (another tile may take it at once). Idempotent. */
  close() {
    if (this.state === "closed") return;
    this.#retry.clear();
    this.#slot = null;
    this.stream = null;
    this.#session._release(this);
    this.#set("closed");
  }

  // ---- from the session ----

  /** @param {Slot} slot */
  _bound(slot) {
    if (this.state === "closed") return;
    this.#slot = slot;
    this.#refusal = null;
    this.#refusals = 0;
    this.#retry.clear();
    // A new stream per bind: the element shows nothing of the slot's previous camera.
    const tracks = [slot.transceiver.receiver.track];
    if (slot.audio) tracks.push(slot.audio.receiver.track);
    this.hasAudio = Boolean(slot.audio);
    this.stream = new MediaStream(tracks);
    this.dispatchEvent(new Event("stream"));
    this._sessionState();
  }

  _unbound() {
    if (this.state === "closed") return;
    this.#slot = null;
    this._sessionState();
  }

  /**
   * The gateway refused this tile's camera. A refusal retrying cannot mend (403: no right to it)
   * is final; another (503: no relay of the camera here yet, as while a cluster node takes over a
   * dead one's cameras; 404: no such camera, which may be added) is asked again after the
   * gateway's Retry-After or a backoff, as a WHEP session would (retry.js); the tile says why meanwhile.
   * @param {WhepError} error
   * @param {{ backoffMinMs: number, backoffMaxMs: number }} backoff
   */
  _refused(error, backoff) {
    if (this.state === "closed") return;
    this.#slot = null;
    this.#refusal = error;
    if (error.status === 401) return this.#set("unauthorized");
    if (cannotMend(error.status)) return this.#set("failed");
    this.#refusals++;
    const delay = retryDelayMs(this.#refusals, false, backoff, error.retryAfterMs);
    this.#retryAt = performance.now() + delay;
    this.#set("retrying");
    this.#retry.arm(delay, () => this.#session._retry(this));
  }

  _sessionClosed() {
    this.#retry.clear();
    this.#slot = null;
    this.#set("closed");
  }

  _sessionState() {
    if (this.state === "closed" || this.#refusal) return;
    const s = this.#session.state;
    if (s === "connected") this.#set(this.#slot ? "connected" : "connecting");
    else if (s === "new") this.#set("connecting");
    else this.#set(s);
  }

  /** @param {GridState} state */
  #set(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new Event("statechange"));
  }
}

/**
 * Where a failed attempt leads: a new attempt (`retrying`), or a state the session stays in.
 * - `unauthorized` on 401 (the page signs in again).
 * - `unsupported` when the gateway has no grid route: a request for a new session answered 404,
 *   405 or 501 before the gateway ever made one for this grid. Never for a session the gateway had
 *   made (a 404 then says that session is gone, e.g. its node died and another answered): a new
 *   session follows.
 * - `failed` when the user's other pages hold every session they may have, before the gateway made
 *   one for this grid (the page plays its tiles over WHEP rather than wait; later, its own earlier
 *   session may still count), and on a client error that retrying cannot mend.
 * @param {number} status the HTTP status of the refusal (0: no answer, a lost connection)
 * @param {{ hadSession: boolean, madeBefore: boolean, atLimit: boolean }} at `hadSession`: this
 *   attempt's session was made; `madeBefore`: one was made for this grid since it last started
 * @returns {"retrying" | "unauthorized" | "unsupported" | "failed"}
 */
export function afterFailure(status, { hadSession, madeBefore, atLimit }) {
  if (status === 401) return "unauthorized";
  if (!hadSession && !madeBefore && [404, 405, 501].includes(status)) return "unsupported";
  if (atLimit && !madeBefore) return "failed";
  if (cannotMend(status)) return "failed";
  return "retrying";
}

/** The browser's Opus, PCMU and PCMA, as the gateway sends sound (sfu/offer.ts). @returns {RTCRtpCodec[]} */
function audioCodecs() {
  const caps = typeof RTCRtpReceiver !== "undefined" && RTCRtpReceiver.getCapabilities ? RTCRtpReceiver.getCapabilities("audio") : null;
  if (!caps) return [];
  return caps.codecs.filter((c) => (/^audio\/opus$/i.test(c.mimeType) && c.clockRate === 48000) || (/^audio\/pcm[ua]$/i.test(c.mimeType) && c.clockRate === 8000));
}

/** The browser's H.264 packetization-mode=1 receive codecs (what the gateway sends). @returns {RTCRtpCodec[]} */
function h264Codecs() {
  const caps = typeof RTCRtpReceiver !== "undefined" && RTCRtpReceiver.getCapabilities ? RTCRtpReceiver.getCapabilities("video") : null;
  if (!caps) return [];
  return caps.codecs.filter((c) => /^video\/h264$/i.test(c.mimeType) && /packetization-mode=1/.test(c.sdpFmtpLine ?? ""));
}

/**
 * A plain reason from an error response: JSON `{reason}` or the status.
 * @param {Response} res
 */
async function reasonOf(res) {
  return (await refusalOf(res)).reason;
}

/**
 * An error response's plain reason (JSON `{reason}`, else the status) and code (JSON `{error}`, else "").
 * @param {Response} res
 * @returns {Promise<{ reason: string, code: string }>}
 */
async function refusalOf(res) {
  let reason = `HTTP ${res.status}`;
  let code = "";
  try {
    const body = await res.json();
    if (body && typeof body.reason === "string" && body.reason) reason = body.reason;
    if (body && typeof body.error === "string") code = body.error;
  } catch {
    // not JSON
  }
  return { reason, code };
}
