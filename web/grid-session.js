/**
 * A whole grid over ONE RTCPeerConnection (one ICE/DTLS handshake, one ICE port, one set of
 * TURN allocations): the gateway's multi-camera session (`/grid`, gateway/http/grid.ts).
 *
 * Exchange:
 *   1. `OPTIONS grid` → ICE servers (Link headers) and the most video slots a session may have.
 *   2. Offer with N recvonly video transceivers (H.264 only, so the offer stays small) and N
 *      recvonly audio transceivers (the i-th carries the sound of the camera on the i-th video
 *      slot), candidates gathered into the SDP; `POST grid` → 201, the answer, `Location`.
 *   3. Cameras are bound to slots by mid: `PUT <session>/slots/<mid> {"camera": id}`, or all the
 *      slots assigned at once in ONE request, `PUT <session>/slots {"slots": [{mid, camera}, …]}`
 *      (a browser sends at most six requests at a time to one origin: sixteen PUTs would take
 *      four round trips); a gateway without that route gets one PUT per slot. A slot
 *      given up is re-bound to the next camera that needs one (the gateway switches the slot's
 *      stream at the new camera's keyframe: no renegotiation, no new connection), or unbound
 *      (`DELETE <session>/slots/<mid>`) when nobody needs it.
 *   4. `DELETE <session>` when the page goes away.
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
import { gatherCandidates, iceServersFromLinks, onlyTurnTransport, parseLinkHeader, retryAfterMs, WhepError } from "./whep.js";

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
  /** @type {Record<string, number>} performance.now() marks of the current attempt */
  timings = {};
  /** Most video slots the gateway allows (from OPTIONS). */
  maxSlots = Infinity;

  #endpoint;
  #opts;
  #gen = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;
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
    return lease;
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
    if (this.#slots.length > 0 && this.#slots.length < want && this.state !== "closed") {
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
   * for ICE to notice. A session already retrying (or not started, or closed) is left as it is.
   * @param {string} message why, in plain words
   * @returns {boolean} whether the session started over
   */
  restart(message) {
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

  /** @param {SlotLease} lease */
  _release(lease) {
    this.#leases.delete(lease);
    this.#waiting = this.#waiting.filter((l) => l !== lease);
    const slot = this.#slots.find((s) => s.lease === lease);
    if (!slot) return;
    slot.lease = null;
    // Another tile waiting takes the slot over (a re-bind); else the slot is unbound.
    this.#queueAssign();
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
    if (binds.length > 1 && this.#batch) this.#bindAll(binds);
    else for (const [slot, lease] of binds) this.#bind(slot, lease);
    for (const slot of free) if (slot.camera !== null) this.#unbind(slot);
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
      for (const [slot, lease] of live) {
        const r = body.slots.find((x) => x && x.mid === slot.mid);
        if (r && r.status === undefined) {
          slot.camera = lease.camera;
          if (slot.lease === lease) lease._bound(slot);
          else this.#queueAssign();
          continue;
        }
        const status = r && typeof r.status === "number" ? r.status : 500;
        if (status === 401) return this.#fail(new WhepError(r?.reason ?? "sign-in required", 401));
        // This camera only: the tile says why; the slot goes to the next tile.
        if (slot.lease === lease) slot.lease = null;
        lease._refused(new WhepError(r?.reason ?? `HTTP ${status}`, status));
        this.#queueAssign();
      }
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
      // This camera only: the tile says why; the slot goes to the next tile.
      slot.lease = null;
      lease._refused(error);
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
      if (res.status === 404) return this.#fail(new WhepError("session ended", 404));
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
    let servers = await this.#discover();
    if (gen !== this.#gen) return;
    if (opts.turnTransport) servers = onlyTurnTransport(servers, opts.turnTransport);
    const count = Math.max(1, Math.min(this.#wanted, this.maxSlots));
    /** @type {RTCConfiguration} */
    const config = { iceServers: servers, bundlePolicy: "max-bundle" };
    if (opts.iceTransportPolicy) config.iceTransportPolicy = opts.iceTransportPolicy;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
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
    pc.onconnectionstatechange = () => this.#onConnectionState(gen);
    await pc.setLocalDescription(await pc.createOffer());
    await gatherCandidates(pc, opts, servers);
    if (gen !== this.#gen) return;
    this.timings.offered = performance.now();
    let res;
    try {
      res = await fetch(this.#endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", Accept: "application/sdp", ...(await csrfHeaders()) },
        body: pc.localDescription?.sdp ?? "",
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      throw new WhepError(`network error: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (gen !== this.#gen) return;
    if (res.status !== 201 && res.status !== 200) {
      if (res.status === 403) resetCsrf();
      throw new WhepError(await reasonOf(res), res.status, retryAfterMs(res.headers.get("Retry-After")));
    }
    const location = res.headers.get("Location");
    if (!location) throw new WhepError("the gateway named no session resource");
    const resource = new URL(location, res.url || this.#endpoint).href;
    const answer = await res.text();
    if (gen !== this.#gen) return void this.#deleteResource(resource, false);
    this.resource = resource;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    if (gen !== this.#gen) return;
    this.timings.answered = performance.now();
    const live = (/** @type {RTCRtpTransceiver} */ t) => t.mid !== null && t.currentDirection !== "inactive" && t.currentDirection !== "stopped";
    this.#slots = transceivers.flatMap((t, i) => {
      if (!live(t)) return [];
      const a = sounds[i];
      return [{ mid: /** @type {string} */ (t.mid), transceiver: t, audio: a && live(a) ? a : null, lease: null, camera: null, chain: Promise.resolve() }];
    });
    // Every open lease is bound (again) on this connection.
    this.#waiting = [...this.#leases];
    for (const l of this.#leases) l._unbound();
    this.#assign();
    this.#arm(opts.connectTimeoutMs, () => this.#fail(new WhepError("timed out waiting for the connection")));
    this.#onConnectionState(gen);
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
        this.#clearTimer();
        this.#setState("connected");
        clearInterval(this.#check);
        this.#check = setInterval(() => void this.#verify(), this.#opts.checkMs);
      }
    } else if (s === "disconnected") {
      if (this.state === "connected") {
        this.#setState("disconnected");
        this.#arm(this.#opts.disconnectGraceMs, () => this.#fail(new WhepError("connection lost")));
      }
    } else if (s === "failed" || s === "closed") {
      this.#fail(new WhepError("connection failed"));
    }
  }

  /** @param {WhepError} error */
  #fail(error) {
    if (this.state === "closed") return;
    const wasConnected = this.state === "connected" || this.state === "disconnected";
    this.#gen++;
    this.lastError = error;
    this.#teardown(false);
    for (const l of this.#leases) l._unbound();
    if (error.status === 401) return this.#setState("unauthorized");
    if (!this.resource && this.attempts === 1 && [404, 405, 501].includes(error.status)) return this.#setState("unsupported");
    if (error.status >= 400 && error.status < 500 && ![404, 408, 429].includes(error.status)) return this.#setState("failed");
    this.failures++;
    const o = this.#opts;
    const base = wasConnected && this.failures === 1 ? 100 : Math.min(o.backoffMaxMs, o.backoffMinMs * 2 ** (this.failures - 1));
    const delay = Math.max(Math.round(base * (0.8 + 0.4 * Math.random())), error.retryAfterMs);
    this.retryAt = performance.now() + delay;
    this.#setState("retrying");
    this.#arm(delay, () => this.#attempt());
  }

  /** @param {boolean} keepalive */
  #teardown(keepalive) {
    this.#clearTimer();
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

  /**
   * @param {number} ms
   * @param {() => void} fn
   */
  #arm(ms, fn) {
    this.#clearTimer();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      fn();
    }, ms);
  }

  #clearTimer() {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
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
    return this.#session.retryAt;
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

  /** @param {WhepError} error */
  _refused(error) {
    if (this.state === "closed") return;
    this.#slot = null;
    this.#refusal = error;
    this.#set(error.status === 401 ? "unauthorized" : "failed");
  }

  _sessionClosed() {
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
  try {
    const body = await res.json();
    if (body && typeof body.reason === "string" && body.reason) return body.reason;
  } catch {
    // not JSON
  }
  return `HTTP ${res.status}`;
}
