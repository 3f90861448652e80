// @ts-check
/**
 * Recorder playback in the page: one PlaybackClient = one playback session of one camera
 * (a WebRTC viewer of its own, WHEP with a start time) and its controls.
 *
 *   import { PlaybackClient } from "./playback-client.js";
 *   const pb = new PlaybackClient({ camera: "lobby", start: new Date(Date.now() - 600_000), video });
 *   await pb.open();                 // resolves once the answer is applied (media follows)
 *   await pb.speed(4);               // → { position: Date, paused, rate, ended }
 *   await pb.seek(new Date(...));    // also pause(), resume(), step() (while paused), jump(-10)
 *   pb.currentTime();                // recorded wall-clock time of the frame on screen (Date), or null
 *   pb.addEventListener("state", (e) => e.detail);   // { position: Date, paused, rate, ended }
 *   await pb.close();                // ends the session at the gateway (DELETE); idempotent
 *   // Back to live: close() this, then open the live view again (web/whep.js).
 *
 * Options: `camera` (id), `start` (Date | ISO string | Unix ms), `video` (HTMLVideoElement
 * the stream is attached to), `iceServers` (RTCIceServer[], default none: the gateway's
 * Link headers are used), `base` (URL of the gateway, default this page's), `fetch`.
 *
 * Methods answer with the gateway's state once the recorder has taken the request (a
 * few tens of ms); they reject with a PlaybackError whose `status` is the HTTP status
 * (403 no `playback` right, 404 unknown camera or session, 409 the recorder cannot do
 * that — e.g. a speed or reverse it does not offer, or step while playing — 429/503
 * too many sessions, 502 the recorder failed) and `reason` the gateway's words.
 *
 * Events (EventTarget, `detail` as below): `state` {position, paused, rate, ended} after
 * every change, including a paused seek reaching its frame; `ended` {reason} when the
 * session ends (recorder gone, rights revoked, closed); `error` {error}.
 *
 * How `currentTime()` knows the recorded time of the frame on screen: the gateway sends
 * over Server-Sent Events (`<Location>/events`) each *segment* of its output — from
 * send time `wall` (gateway clock, Unix ms) on, recorded time = `recorded` + (t − wall) ×
 * `rate` — and the gateway's clock. The frame on screen was sent one playout delay ago
 * (network + jitter buffer + decode, from getStats), so its recorded time is the segment
 * mapping at (gateway now − playout delay). While paused it is the held frame's time.
 * Segments also carry `rtpTimestamp` (the gateway's outgoing video timestamp at `wall`,
 * before the SFU's per-viewer offset) for diagnostics.
 */
import { csrfHeaders } from "./csrf.js";

export class PlaybackError extends Error {
  /** @param {number} status @param {string} reason */
  constructor(status, reason) {
    super(`playback: ${status} ${reason}`);
    this.name = "PlaybackError";
    this.status = status;
    this.reason = reason;
  }
}

/**
 * @typedef {{ position: Date, paused: boolean, rate: number, ended: boolean }} PlaybackState
 * @typedef {{ wall: number, recorded: number, rate: number, rtpTimestamp: number }} Segment
 */

/** The segment in force at send time `t` (gateway clock), from a list sorted by `wall`. Exported for tests. */
export function segmentAt(/** @type {Segment[]} */ segments, /** @type {number} */ t) {
  let found = null;
  for (const s of segments) if (s.wall <= t) found = s;
  return found ?? segments[0] ?? null;
}

/** Recorded time (Unix ms) at send time `t` by `segments`, or null. Exported for tests. */
export function recordedAt(/** @type {Segment[]} */ segments, /** @type {number} */ t) {
  const s = segmentAt(segments, t);
  if (!s) return null;
  return s.recorded + Math.max(0, t - s.wall) * s.rate;
}

export class PlaybackClient extends EventTarget {
  /** @type {Segment[]} */
  #segments = [];
  /** @type {PlaybackState | null} */
  #state = null;
  /** Gateway clock − page clock, ms. */
  #clockOffset = 0;
  /** Network + jitter buffer + decode, ms. */
  #playoutMs = 80;
  /** @type {RTCPeerConnection | null} */
  #pc = null;
  /** @type {EventSource | null} */
  #events = null;
  /** @type {string | null} */
  #location = null;
  #closed = false;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #statsTimer;
  #opts;
  #fetch;
  #base;

  /**
   * @param {{ camera: string, start: Date | string | number, video: HTMLVideoElement,
   *   iceServers?: RTCIceServer[], base?: string | URL, fetch?: typeof fetch }} opts
   */
  constructor(opts) {
    super();
    this.#opts = opts;
    this.#fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.#base = new URL(opts.base ?? ".", document.baseURI);
  }

  /** The last state the gateway reported, or null before open(). */
  get state() {
    return this.#state;
  }

  /** The session's URL at the gateway (WHEP Location), once open. */
  get location() {
    return this.#location;
  }

  /** Opens the session: offer, answer, events. Rejects with PlaybackError. */
  async open() {
    const pc = new RTCPeerConnection({ iceServers: this.#opts.iceServers ?? [] });
    this.#pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      if (this.#opts.video.srcObject !== stream) this.#opts.video.srcObject = stream;
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc, 2000);
    const start = new Date(this.#opts.start).toISOString();
    const url = new URL(`whep/${encodeURIComponent(this.#opts.camera)}/playback?start=${encodeURIComponent(start)}`, this.#base);
    const res = await this.#fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/sdp", ...(await csrfHeaders(this.#base)) },
      body: pc.localDescription?.sdp ?? "",
    });
    if (res.status !== 201) {
      pc.close();
      this.#pc = null;
      throw await errorOf(res);
    }
    this.#location = new URL(res.headers.get("Location") ?? "", url).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    this.#state = { position: new Date(start), paused: false, rate: 1, ended: false };
    this.#listen();
    this.#statsTimer = setInterval(() => void this.#measurePlayout(), 500);
    return this.#state;
  }

  /** @param {Date | string | number} time */
  seek(time) {
    return this.#control({ action: "seek", time: new Date(time).toISOString() });
  }
  pause() {
    return this.#control({ action: "pause" });
  }
  resume() {
    return this.#control({ action: "resume" });
  }
  /** @param {number} rate 1/8…32; negative plays backwards where the recorder can. */
  speed(rate) {
    return this.#control({ action: "speed", rate });
  }
  /** One frame forward (while paused). */
  step() {
    return this.#control({ action: "step" });
  }
  /** @param {number} seconds e.g. −10, −30 */
  jump(seconds) {
    return this.#control({ action: "jump", seconds });
  }

  /** The recorded wall-clock time of the frame on screen, or null before the first one. */
  currentTime() {
    const st = this.#state;
    if (!st) return null;
    if (st.paused || this.#segments.length === 0) return st.position;
    const t = recordedAt(this.#segments, Date.now() + this.#clockOffset - this.#playoutMs);
    return t === null ? st.position : new Date(t);
  }

  /** Ends the session (DELETE) and the peer connection. Idempotent. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#statsTimer);
    this.#events?.close();
    this.#pc?.close();
    if (this.#location) {
      await this.#fetch(this.#location, { method: "DELETE", credentials: "same-origin", headers: await csrfHeaders(this.#base) }).catch(() => undefined);
    }
  }

  /** @param {Record<string, unknown>} body */
  async #control(body) {
    if (!this.#location || this.#closed) throw new PlaybackError(409, "playback not open");
    const res = await this.#fetch(`${this.#location}/control`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", ...(await csrfHeaders(this.#base)) },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw await errorOf(res);
    return this.#setState(await res.json());
  }

  /** @param {{ positionMs: number, paused: boolean, rate: number, ended: boolean }} s */
  #setState(s) {
    this.#state = { position: new Date(s.positionMs), paused: s.paused, rate: s.rate, ended: s.ended };
    this.dispatchEvent(new CustomEvent("state", { detail: this.#state }));
    return this.#state;
  }

  #listen() {
    const es = new EventSource(`${this.#location}/events`, { withCredentials: true });
    this.#events = es;
    const now = () => Date.now();
    es.addEventListener("hello", (e) => {
      const d = JSON.parse(/** @type {MessageEvent} */ (e).data);
      this.#clockOffset = d.serverTime - now();
      this.#segments = d.segments;
      this.#setState(d.state);
    });
    es.addEventListener("segment", (e) => {
      const s = JSON.parse(/** @type {MessageEvent} */ (e).data);
      this.#segments.push(s);
      if (this.#segments.length > 64) this.#segments.shift();
    });
    es.addEventListener("state", (e) => {
      const d = JSON.parse(/** @type {MessageEvent} */ (e).data);
      this.#setState(d);
    });
    es.addEventListener("end", (e) => {
      const d = JSON.parse(/** @type {MessageEvent} */ (e).data);
      es.close();
      this.dispatchEvent(new CustomEvent("ended", { detail: { reason: d.reason } }));
    });
  }

  async #measurePlayout() {
    const pc = this.#pc;
    if (!pc || this.#closed) return;
    try {
      const stats = await pc.getStats();
      let jitter = 0;
      let decode = 0;
      let rtt = 0;
      stats.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video" && r.jitterBufferEmittedCount > 0) {
          jitter = (r.jitterBufferDelay / r.jitterBufferEmittedCount) * 1000;
          decode = r.framesDecoded > 0 ? (r.totalDecodeTime / r.framesDecoded) * 1000 : 0;
        }
        if (r.type === "candidate-pair" && r.nominated && typeof r.currentRoundTripTime === "number") rtt = r.currentRoundTripTime * 1000;
      });
      this.#playoutMs = jitter + decode + rtt / 2;
    } catch (error) {
      this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
    }
  }
}

/** @param {RTCPeerConnection} pc @param {number} ms */
function waitForGathering(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve(undefined);
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

/** @param {Response} res */
async function errorOf(res) {
  let reason = res.statusText;
  try {
    const b = await res.json();
    if (b && typeof b.reason === "string") reason = b.reason;
  } catch {
    // not JSON: keep the status text
  }
  return new PlaybackError(res.status, reason);
}
