/**
 * WHEP client (draft-ietf-wish-whep): one receive-only WebRTC session per camera,
 * with reconnection.
 *
 * Exchange, per attempt:
 *   1. `OPTIONS <endpoint>` → ICE servers from `Link: <uri>; rel="ice-server"` headers
 *      (they must be known before the RTCPeerConnection gathers candidates).
 *   2. Offer with recvonly video + audio, sent at once (no trickle; relay-only connections wait
 *      for their relay candidates, see `gatherCandidates`), naming its TURN credentials.
 *   3. `POST <endpoint>` (`application/sdp`) → `201 Created`, the answer, and `Location`
 *      naming the session resource. ICE servers in the POST's Link headers are
 *      remembered for the next attempt when OPTIONS gave none (two-step fallback).
 *   4. `DELETE <Location>` when the session ends (keepalive on page hide).
 *
 * The connection is watched: `failed`, or `disconnected` for longer than a grace
 * period, tears the attempt down and starts a new one with capped exponential
 * backoff. A recorder restart does not need a new session: the gateway keeps the
 * viewer's stream continuous, so the same session just resumes.
 */


import { csrfHeaders, resetCsrf } from "./csrf.js";
import { cannotMend, retryAfterMs, retryDelayMs, Timer } from "./retry.js";

/** @typedef {"new"|"connecting"|"connected"|"disconnected"|"retrying"|"unauthorized"|"failed"|"closed"} WhepState */

/**
 * @typedef {object} WhepOptions
 * @property {RTCIceServer[]} [iceServers] fixed ICE servers; when given, OPTIONS is skipped
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "relay" forces TURN (tests, strict networks)
 * @property {"udp" | "tcp" | "tls"} [turnTransport] keep only TURN URLs of this transport (checks one firewall path)
 * @property {string} [stream] the camera's stream to play: `auto` (the server's default: main, then what the
 *   network carries), `main`, `sub` or a stream id; change it on the live session with `setStream`
 * @property {number} [gatherQuietMs] relay-only connections: send the offer once no new candidate arrived for this long after a relay one, ms (default 25)
 * @property {number} [gatherMaxMs] relay-only connections: upper bound on candidate gathering, ms (default 2000)
 * @property {number} [connectTimeoutMs] answer → connected limit before retrying, ms (default 10000)
 * @property {number} [disconnectGraceMs] how long `disconnected` may last before retrying, ms (default 2500)
 * @property {number} [backoffMinMs] first retry delay after a failed attempt, ms (default 500)
 * @property {number} [backoffMaxMs] cap of the retry delay, ms (default 15000)
 * @property {() => Promise<Record<string, string>>} [headers] extra headers for POST/DELETE (default: CSRF token)
 */

const DEFAULTS = {
  gatherQuietMs: 25,
  gatherMaxMs: 2000,
  connectTimeoutMs: 10_000,
  disconnectGraceMs: 2500,
  backoffMinMs: 500,
  backoffMaxMs: 15_000,
};

/** Failure of one attempt, with the HTTP status when the server answered. */
export class WhepError extends Error {
  /**
   * @param {string} message
   * @param {number} [status] HTTP status, 0 for a network or local failure
   */
  constructor(message, status = 0, retryAfterMs = 0) {
    super(message);
    this.name = "WhepError";
    this.status = status;
    /** The server's `Retry-After`, ms (0: none). */
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * A WHEP viewer session that keeps itself connected until closed.
 *
 * Events (all plain `Event`s; read the session's fields):
 * - `statechange`: `state` changed (see WhepState).
 * - `stream`: a new MediaStream is ready in `stream` (once per successful attempt).
 */
export class WhepSession extends EventTarget {
  /** @type {WhepState} */
  state = "new";
  /** @type {RTCPeerConnection | null} the current attempt's connection */
  pc = null;
  /** @type {MediaStream | null} the current attempt's remote media */
  stream = null;
  /** @type {string | null} absolute URL of the session resource (from `Location`) */
  resource = null;
  /** Whether the server accepted audio in the current attempt. */
  hasAudio = false;
  /** Attempts started so far (1 for the first). */
  attempts = 0;
  /** Consecutive failed attempts; drives the backoff. */
  failures = 0;
  /** @type {WhepError | null} */
  lastError = null;
  /** `performance.now()` when the next attempt starts, while `state` is "retrying". */
  retryAt = 0;
  /**
   * `performance.now()` marks of the current attempt: start, offered (gathering done),
   * post (just before POST), answered, connected.
   * @type {Record<string, number>}
   */
  timings = {};
  /** @type {RTCIceServer[]} ICE servers used by the current attempt */
  iceServers = [];

  #endpoint;
  #opts;
  /** Bumped by every attempt and by close(): stale async continuations compare and stop. */
  #gen = 0;
  /** The connect timeout, the disconnect grace or the next attempt. */
  #timer = new Timer();
  /** @type {RTCIceServer[] | null} learnt from a POST's Link headers when OPTIONS gave none */
  #learntServers = null;
  /** @type {AbortController | null} */
  #abort = null;
  /** The stream asked for (undefined: the server's default). */
  #stream;

  /**
   * @param {string | URL} endpoint the camera's WHEP endpoint, e.g. `whep/front-door`
   * @param {WhepOptions} [options]
   */
  constructor(endpoint, options = {}) {
    super();
    this.#endpoint = new URL(endpoint, document.baseURI).href;
    this.#opts = { ...DEFAULTS, ...options };
    this.#stream = options.stream;
  }

  /** The stream asked for: `auto`, `main`, `sub`, a stream id, or undefined (the server's default). */
  get streamChoice() {
    return this.#stream;
  }

  /**
   * Play another of the camera's streams. On a live session this is a PATCH of the resource:
   * the server switches at the stream's next keyframe, on the same connection (no
   * renegotiation, no gap); later attempts ask for it in their POST. Resolves true when the
   * server took it (or there was no live session to tell), false when it refused.
   * @param {string} stream `auto`, `main`, `sub` or a stream id
   * @returns {Promise<boolean>}
   */
  async setStream(stream) {
    if (this.#stream === stream || this.state === "closed") return true;
    this.#stream = stream;
    return this.#patchStream();
  }

  /** Tells the live session (if any) the stream asked for now. */
  async #patchStream() {
    const resource = this.resource;
    const stream = this.#stream;
    if (!resource || stream === undefined) return true;
    try {
      const headers = { "Content-Type": "application/json", ...(await (this.#opts.headers ?? csrfHeaders)()) };
      const res = await fetch(resource, { method: "PATCH", headers, body: JSON.stringify({ stream }), credentials: "same-origin", cache: "no-store" });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** The POST URL: the endpoint, with `?stream=` when one is asked for. */
  #postUrl() {
    if (this.#stream === undefined) return this.#endpoint;
    const u = new URL(this.#endpoint);
    u.searchParams.set("stream", this.#stream);
    return u.href;
  }

  /** The endpoint URL this session posts to. */
  get endpoint() {
    return this.#endpoint;
  }

  /** Start connecting. Calling it again is harmless. */
  start() {
    if (this.state !== "new") return;
    this.#attempt();
  }

  /**
   * End the session for good: close the connection and DELETE the resource.
   * Idempotent.
   * @param {string} [_reason] why (for the caller's logs)
   * @param {{ keepalive?: boolean }} [opts] keepalive: let the DELETE outlive the page
   */
  close(_reason = "closed", opts = {}) {
    if (this.state === "closed") return;
    this.#gen++;
    this.#teardown(opts.keepalive === true);
    this.#setState("closed");
  }

  /**
   * The gateway said the viewer behind this session is gone (its media worker died): start
   * over at once instead of waiting for ICE to notice. Ignored unless `viewerId` names the
   * current resource (an older attempt's notice changes nothing).
   * @param {string} viewerId the last segment of the resource URL
   * @param {string} message why, in plain words
   * @returns {boolean} whether the session started over
   */
  lost(viewerId, message) {
    if (this.state === "closed" || !this.isViewer(viewerId)) return false;
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

  /**
   * Whether `viewerId` names this session's current resource.
   * @param {string} viewerId the last segment of the resource URL
   * @returns {boolean}
   */
  isViewer(viewerId) {
    const r = this.resource;
    return !!r && new URL(r).pathname.split("/").pop() === encodeURIComponent(viewerId);
  }

  async #attempt() {
    const gen = ++this.#gen;
    this.attempts++;
    this.timings = { start: performance.now() };
    this.#setState("connecting");
    try {
      await this.#negotiate(gen);
    } catch (err) {
      if (gen !== this.#gen) return; // superseded or closed meanwhile
      const error = err instanceof WhepError ? err : new WhepError(err instanceof Error ? err.message : String(err));
      this.#fail(error);
    }
  }

  /** @param {number} gen */
  async #negotiate(gen) {
    const opts = this.#opts;
    let servers = opts.iceServers ?? (await this.#discoverIceServers());
    if (gen !== this.#gen) return;
    if (opts.turnTransport) servers = onlyTurnTransport(servers, opts.turnTransport);
    this.iceServers = servers;

    /** @type {RTCConfiguration} */
    const config = { iceServers: servers };
    if (opts.iceTransportPolicy) config.iceTransportPolicy = opts.iceTransportPolicy;
    const { pc, audio, offer } = await openReceiver(config);
    if (gen !== this.#gen) {
      pc.close();
      return;
    }
    this.pc = pc;
    const stream = new MediaStream();
    // The server may leave out msid; collect tracks ourselves rather than trust e.streams.
    pc.ontrack = (e) => {
      if (!stream.getTracks().includes(e.track)) stream.addTrack(e.track);
    };
    pc.onconnectionstatechange = () => this.#onConnectionState(gen);
    // Firefox before 113 and old Safari lack connectionState: fall back to the ICE state.
    pc.oniceconnectionstatechange = () => {
      if (!("connectionState" in pc)) this.#onConnectionState(gen);
    };

    await pc.setLocalDescription(offer);
    await gatherCandidates(pc, opts, servers);
    if (gen !== this.#gen) return;
    this.timings.offered = performance.now();

    const headers = {
      "Content-Type": "application/sdp",
      Accept: "application/sdp",
      ...relayUsernameHeader(servers),
      ...(await (opts.headers ?? csrfHeaders)()),
    };
    this.#abort = new AbortController();
    this.timings.post = performance.now();
    let res;
    let asked;
    try {
      asked = this.#stream;
      res = await fetch(this.#postUrl(), {
        method: "POST",
        headers,
        body: pc.localDescription?.sdp ?? "",
        credentials: "same-origin",
        cache: "no-store",
        signal: this.#abort.signal,
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
    if (location) this.resource = new URL(location, res.url || this.#endpoint).href;
    // Another stream was asked for while the offer was on its way.
    if (this.#stream !== asked) void this.#patchStream();
    const linked = iceServersFromLinks(parseLinkHeader(res.headers.get("Link")));
    // Two-step fallback: a server that only advertises ICE servers on POST gets them used next time.
    if (!opts.iceServers && servers.length === 0 && linked.length > 0) this.#learntServers = linked;
    const answer = await res.text();
    if (gen !== this.#gen) return;

    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    if (gen !== this.#gen) return;
    this.timings.answered = performance.now();
    this.hasAudio = audio.currentDirection === "recvonly" || audio.currentDirection === "sendrecv";
    this.stream = stream;
    this.dispatchEvent(new Event("stream"));
    this.#timer.arm(opts.connectTimeoutMs, () => this.#fail(new WhepError("timed out waiting for the connection")));
    this.#onConnectionState(gen);
  }

  /** @returns {Promise<RTCIceServer[]>} */
  async #discoverIceServers() {
    try {
      const res = await fetch(this.#endpoint, { method: "OPTIONS", credentials: "same-origin", cache: "no-store" });
      const servers = res.ok ? iceServersFromLinks(parseLinkHeader(res.headers.get("Link"))) : [];
      if (servers.length > 0) return servers;
    } catch {
      // OPTIONS is optional in WHEP: fall through to what a previous POST taught us.
    }
    return this.#learntServers ?? [];
  }

  /** @param {number} gen */
  #onConnectionState(gen) {
    const pc = this.pc;
    if (gen !== this.#gen || !pc) return;
    const s = "connectionState" in pc ? pc.connectionState : mapIceState(pc.iceConnectionState);
    if (s === "connected") {
      if (this.state !== "connected") {
        this.timings.connected ??= performance.now();
        this.failures = 0;
        this.lastError = null;
        this.#timer.clear();
        this.#setState("connected");
      }
    } else if (s === "disconnected") {
      // Often transient (a lost path that ICE recovers); give it a grace period.
      if (this.state === "connected") {
        this.#setState("disconnected");
        this.#timer.arm(this.#opts.disconnectGraceMs, () => this.#fail(new WhepError("connection lost")));
      }
    } else if (s === "failed" || s === "closed") {
      // "closed" without close() here: the remote ended DTLS (close_notify).
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
    if (error.status === 401) {
      this.#setState("unauthorized");
      return;
    }
    if (cannotMend(error.status)) {
      this.#setState("failed");
      return;
    }
    this.failures++;
    const delay = retryDelayMs(this.failures, wasConnected, this.#opts, error.retryAfterMs);
    this.retryAt = performance.now() + delay;
    this.#setState("retrying");
    this.#timer.arm(delay, () => this.#attempt());
  }

  /**
   * Close the current attempt's connection and release its server resource.
   * @param {boolean} keepalive
   */
  #teardown(keepalive) {
    this.#timer.clear();
    this.#abort?.abort();
    this.#abort = null;
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.oniceconnectionstatechange = null;
      pc.close();
    }
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    const resource = this.resource;
    this.resource = null;
    if (resource) void this.#delete(resource, keepalive);
  }

  /**
   * @param {string} resource
   * @param {boolean} keepalive
   */
  async #delete(resource, keepalive) {
    try {
      const headers = await (this.#opts.headers ?? csrfHeaders)();
      await fetch(resource, { method: "DELETE", headers, credentials: "same-origin", keepalive });
    } catch {
      // The server also expires sessions whose connection died; nothing more to do.
    }
  }

  /** @param {WhepState} state */
  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new Event("statechange"));
  }
}

/**
 * Whether this browser's "max-bundle" offers carry `a=bundle-only` sections (learnt once).
 *
 * Firefox then offers every m-section after the first with port 0 and `a=bundle-only`
 * (RFC 8843 §6); Chromium and Safari never do. A server without bundle-only support reads
 * port 0 as "rejected" (RFC 3264 §6) and answers without audio — the gateway's own SFU
 * did. Such browsers use "balanced" instead: each section has its own port and
 * candidates, all still in one BUNDLE group, so the answer bundles them just the same;
 * the only cost is a second ICE transport gathered until the answer arrives.
 */
let bundleOnlyOffers = false;

/**
 * A receive-only connection (video, then audio) and its offer, with no bundle-only section.
 * @param {RTCConfiguration} config without bundlePolicy (chosen here)
 * @returns {Promise<{ pc: RTCPeerConnection, audio: RTCRtpTransceiver, offer: RTCSessionDescriptionInit }>}
 */
async function openReceiver(config) {
  for (;;) {
    const policy = bundleOnlyOffers ? "balanced" : "max-bundle";
    const pc = new RTCPeerConnection({ ...config, bundlePolicy: policy });
    pc.addTransceiver("video", { direction: "recvonly" });
    const audio = pc.addTransceiver("audio", { direction: "recvonly" });
    let offer;
    try {
      offer = await pc.createOffer();
    } catch (err) {
      pc.close();
      throw err;
    }
    if (policy === "balanced" || !/^a=bundle-only/m.test(offer.sdp ?? "")) return { pc, audio, offer };
    pc.close();
    bundleOnlyOffers = true;
  }
}

/**
 * Wait, when it matters, until the offer carries the candidates the gateway needs.
 *
 * It matters only when the connection may use nothing but the relay (`iceTransportPolicy:
 * "relay"`): then until a relay candidate came and no other for `gatherQuietMs`, or gathering
 * completed, capped at `gatherMaxMs`. Chromium reports "complete" only after its TCP candidates,
 * about 120 ms after the UDP ones, which would delay every start for nothing.
 *
 * Otherwise the offer goes at once, with whatever candidates it holds (often none): the browser
 * checks from its candidates as they come, and the gateway answers a check from wherever it comes
 * (a peer-reflexive candidate, RFC 8445 §7.3.1.3), as an ICE-lite server would. Relay candidates
 * come 150–250 ms after the host ones (a TURN allocation), and browsers deliver candidates on the
 * page's main thread, which is busiest while a page opens: waiting for the host ones alone cost a
 * grid page 40–200 ms (measured with 16 tiles). The allocations the gateway closes with the viewer
 * (so that a page that dies does not hold its user's relay quota) are named by their credentials
 * instead (`relayUsernameHeader`). In real browsers host candidates are mDNS names, which the
 * gateway does not resolve anyway.
 * @param {RTCPeerConnection} pc
 * @param {{ gatherQuietMs: number, gatherMaxMs: number }} opts
 * @param {RTCIceServer[]} servers
 * @returns {Promise<void>}
 */
export function gatherCandidates(pc, opts, servers) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  const urls = servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
  const relayOnly = pc.getConfiguration().iceTransportPolicy === "relay";
  if (!relayOnly || !urls.some((u) => /^turns?:/i.test(u))) return Promise.resolve();
  return new Promise((resolve) => {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let quiet;
    let satisfied = false;
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(cap);
      pc.removeEventListener("icecandidate", onCandidate);
      pc.removeEventListener("icegatheringstatechange", onState);
      resolve();
    };
    /** @param {RTCPeerConnectionIceEvent} e */
    const onCandidate = (e) => {
      if (!e.candidate) return done(); // end-of-candidates
      const type = e.candidate.type ?? /typ (\w+)/.exec(e.candidate.candidate)?.[1];
      if (type === "relay") satisfied = true;
      if (!satisfied) return;
      clearTimeout(quiet);
      quiet = setTimeout(done, opts.gatherQuietMs);
    };
    const onState = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const cap = setTimeout(done, opts.gatherMaxMs);
    pc.addEventListener("icecandidate", onCandidate);
    pc.addEventListener("icegatheringstatechange", onState);
  });
}

/** The header naming the TURN credentials of an offer's peer connection (gateway/relay-access.ts). */
export const RELAY_USERNAME = "Gatehouse-Relay-Username";

/**
 * `RELAY_USERNAME` for an offer made with `servers`: the usernames of its TURN servers, so the
 * gateway closes the allocations made with them when the viewer ends, whether or not the offer
 * names its relay candidates. None without a TURN server.
 * @param {RTCIceServer[]} servers
 * @returns {Record<string, string>}
 */
export function relayUsernameHeader(servers) {
  /** @type {string[]} */
  const names = [];
  for (const s of servers) {
    const urls = Array.isArray(s.urls) ? s.urls : [s.urls];
    if (typeof s.username === "string" && /^[\x21-\x7e]{1,256}$/.test(s.username) && urls.some((u) => /^turns?:/i.test(u)) && !names.includes(s.username)) names.push(s.username);
  }
  return names.length > 0 ? { [RELAY_USERNAME]: names.join(",") } : {};
}

/**
 * Parse an HTTP `Link` header (RFC 8288 §3) into URI + parameters. Several headers
 * arrive joined by commas; commas inside `<…>` and quoted strings are not separators.
 * Parameter names are lower-cased; values are unquoted.
 * @param {string | null | undefined} value
 * @returns {{ uri: string, params: Record<string, string> }[]}
 */
export function parseLinkHeader(value) {
  /** @type {{ uri: string, params: Record<string, string> }[]} */
  const out = [];
  if (!value) return out;
  let i = 0;
  const n = value.length;
  const skipWs = () => {
    while (i < n && (value[i] === " " || value[i] === "\t")) i++;
  };
  while (i < n) {
    skipWs();
    if (value[i] === ",") {
      i++;
      continue;
    }
    if (value[i] !== "<") {
      // Malformed link-value: skip to the next comma outside quotes.
      i = skipToComma(value, i);
      continue;
    }
    const end = value.indexOf(">", i + 1);
    if (end < 0) break;
    const uri = value.slice(i + 1, end).trim();
    i = end + 1;
    /** @type {Record<string, string>} */
    const params = {};
    while (i < n) {
      skipWs();
      if (value[i] !== ";") break;
      i++;
      skipWs();
      let name = "";
      while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(value[i] ?? "")) name += value[i++];
      skipWs();
      let val = "";
      if (value[i] === "=") {
        i++;
        skipWs();
        if (value[i] === '"') {
          i++;
          while (i < n && value[i] !== '"') {
            if (value[i] === "\\" && i + 1 < n) i++;
            val += value[i++];
          }
          i++; // closing quote
        } else {
          while (i < n && value[i] !== ";" && value[i] !== "," && value[i] !== " " && value[i] !== "\t") val += value[i++];
        }
      }
      // RFC 8288 §3.3: only the first occurrence of a parameter counts.
      if (name && !(name.toLowerCase() in params)) params[name.toLowerCase()] = val;
    }
    out.push({ uri, params });
    i = skipToComma(value, i);
  }
  return out;
}

/**
 * @param {string} s
 * @param {number} i
 */
function skipToComma(s, i) {
  let quoted = false;
  while (i < s.length) {
    const c = s[i];
    if (c === '"') quoted = !quoted;
    else if (c === "\\" && quoted) i++;
    else if (c === "," && !quoted) return i + 1;
    i++;
  }
  return i;
}

/**
 * The ICE servers reduced to the TURN URLs of one transport (`turn:…?transport=udp|tcp`, `turns:`).
 * @param {RTCIceServer[]} servers
 * @param {"udp" | "tcp" | "tls"} transport
 * @returns {RTCIceServer[]}
 */
export function onlyTurnTransport(servers, transport) {
  /** @param {string} url */
  const keep = (url) =>
    transport === "tls" ? /^turns:/i.test(url) : /^turn:/i.test(url) && new RegExp(`[?&]transport=${transport}(&|$)`, "i").test(url);
  return servers
    .map((s) => ({ ...s, urls: (Array.isArray(s.urls) ? s.urls : [s.urls]).filter(keep) }))
    .filter((s) => s.urls.length > 0);
}

/**
 * ICE servers from parsed Link values with `rel="ice-server"` (WHEP §4.4),
 * one RTCIceServer per URI, with `username` / `credential` when present.
 * @param {{ uri: string, params: Record<string, string> }[]} links
 * @returns {RTCIceServer[]}
 */
export function iceServersFromLinks(links) {
  /** @type {RTCIceServer[]} */
  const servers = [];
  for (const { uri, params } of links) {
    const rels = (params.rel ?? "").toLowerCase().split(/\s+/);
    if (!rels.includes("ice-server")) continue;
    if (!/^(stun|stuns|turn|turns):/i.test(uri)) continue;
    /** @type {RTCIceServer} */
    const server = { urls: uri };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

/**
 * Human-readable reason from an error response: JSON `{reason}` / `{error}` or text.
 * @param {Response} res
 */
async function reasonOf(res) {
  let text = "";
  try {
    text = (await res.text()).trim();
  } catch {
    // body unreadable: the status is enough
  }
  if (text.startsWith("{")) {
    try {
      const body = JSON.parse(text);
      const r = body.reason ?? body.error ?? body.message;
      if (typeof r === "string" && r) return r;
    } catch {
      // not JSON after all
    }
  }
  return text && text.length < 200 && !text.startsWith("<") ? text : `HTTP ${res.status}`;
}

/**
 * connectionState equivalent of an iceConnectionState.
 * @param {RTCIceConnectionState} s
 */
function mapIceState(s) {
  if (s === "completed") return "connected";
  if (s === "checking") return "connecting";
  return s;
}
