/**
 * Gatehouse door intercom in the browser: rings, answering with two-way audio, opening the
 * door, and "talk to the door".
 *
 * - `GET api/intercom` says who we are, which doors we may answer or talk to, and the ICE
 *   servers for talk connections. `{ enabled: false }`: no intercom here, nothing is shown.
 * - `GET api/intercom/events` (Server-Sent Events) delivers `ready`, `ring`, `answered`,
 *   `ended`, `dtmf`, `device` and `bye`. A ring shows a card with the door camera's live
 *   video (its ordinary WHEP live view), the caller, Answer and Decline; a soft ringtone
 *   plays when the page may play sound.
 * - Answer: the microphone (listen-only when refused), an RTCPeerConnection with one audio
 *   transceiver, the offer POSTed to `api/intercom/calls/<id>/answer`; the answer comes back
 *   in the door's G.711 codec. 409 means someone else was first: the card says who.
 * - In a call: door video, mute, open door, hang up, call timer. Others who got the ring see
 *   "Answered by …" and the card goes away; an unanswered ring leaves a missed-call entry.
 * - "Open door" on a ringing card (after a confirmation) needs no microphone and no talk
 *   connection: `POST api/intercom/calls/<id>/open-door` makes the gateway answer the door
 *   itself, send the open-door digits and hang up. Every page that rang hears `door-opened`
 *   and says "Door opened by …" before the card goes.
 * - `window.gatehouseIntercom` exposes state and talk statistics for tests and diagnostics.
 *
 * No inline scripts or styles (the page's CSP forbids them): classes and DOM properties only.
 */

import { csrfHeaders, resetCsrf } from "./csrf.js";
import { WhepSession, gatherCandidates } from "./whep.js";

/** How long "Answered by …" / "Call ended" stay before the card goes, ms. */
const LINGER_MS = 4000;
/** Event stream reconnect delay after it failed for good (the browser retries transient drops itself), ms. */
const STREAM_RETRY_MS = 5000;
/** Missed calls kept on screen. */
const MAX_MISSED = 5;

const base = new URL(".", document.baseURI);
const api = (/** @type {string} */ path) => new URL(`api/intercom${path}`, base);

/**
 * @typedef {{ callId: string, deviceId: string, deviceName: string, camera: string | null, cameraName: string | null,
 *             from: string, at: number, expiresAt: number }} RingInfo
 * @typedef {{ id: string, name: string, camera: string | null, cameraName: string | null, online: boolean,
 *             canAnswer: boolean, canTalk: boolean }} DoorInfo
 */

/** @type {{ sub: string, name: string } | null} */
let me = null;
/** @type {RTCIceServer[]} */
let iceServers = [];
/** @type {Map<string, DoorInfo>} */
const doors = new Map();
/** @type {Map<string, CallCard>} call id (or a temporary key while calling out) → card */
const cards = new Map();
/** @type {EventSource | null} */
let source = null;
let streamState = "closed";
/** Missed calls on screen, newest first: the server's call log less those dismissed here. */
/** @type {Array<{ callId: string, deviceName: string, at: number, snapshot: boolean }>} */
const missed = [];
/** The gateway's built-in demo door station, when it runs: `GET api/intercom/demo-door`. */
const DEMO_DOOR = "demo-door";
/** @type {{ device: string, canRing: boolean } | null} */
let demoDoor = null;
let demoNote = "";

// ---------------------------------------------------------------- DOM scaffolding

const layer = document.createElement("section");
layer.className = "ic-layer";
layer.setAttribute("aria-label", "Door intercom");
const stack = document.createElement("div");
stack.className = "ic-stack";
const missedBox = document.createElement("div");
missedBox.className = "ic-missed";
missedBox.hidden = true;
missedBox.setAttribute("role", "status");
layer.append(missedBox, stack);

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * @param {string} label
 * @param {string} className
 * @param {() => void} onClick
 */
function button(label, className, onClick) {
  const b = /** @type {HTMLButtonElement} */ (el("button", `btn ${className}`, label));
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

// ---------------------------------------------------------------- ringtone

/** A soft two-tone ring through WebAudio; silent when the page may not play sound yet. */
class Ringtone {
  /** @type {AudioContext | null} */
  ctx = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  timer;

  start() {
    if (this.timer !== undefined) return;
    try {
      this.ctx ??= new AudioContext();
      void this.ctx.resume().catch(() => {});
    } catch {
      return;
    }
    const ring = () => {
      const ctx = this.ctx;
      if (!ctx || ctx.state !== "running") return;
      const t0 = ctx.currentTime;
      for (const [i, freq] of [
        [0, 880],
        [1, 660],
      ]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0, t0 + i * 0.25);
        gain.gain.linearRampToValueAtTime(0.08, t0 + i * 0.25 + 0.02);
        gain.gain.linearRampToValueAtTime(0, t0 + i * 0.25 + 0.22);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t0 + i * 0.25);
        osc.stop(t0 + i * 0.25 + 0.25);
      }
    };
    ring();
    this.timer = setInterval(ring, 2000);
  }

  stop() {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
const ringtone = new Ringtone();

function updateRinging() {
  const ringing = [...cards.values()].filter((c) => c.state === "ringing");
  if (ringing.length > 0 && ![...cards.values()].some((c) => c.inCall)) ringtone.start();
  else ringtone.stop();
  // The tab title tells a background tab that the door is ringing.
  const prefix = "🔔 ";
  const title = document.title.startsWith(prefix) ? document.title.slice(prefix.length) : document.title;
  document.title = ringing.length > 0 ? prefix + title : title;
}

// ---------------------------------------------------------------- one call

/**
 * One call on screen: a ring (incoming), a call we place (outgoing), then the call itself.
 * States: ringing → answering → in-call → ended; ringing → opening → ended (the gateway opens
 * the door without a call here); calling → in-call → ended; gone.
 */
class CallCard {
  /** @type {"ringing"|"answering"|"opening"|"calling"|"in-call"|"ended"} */
  state;
  /** @type {string} */
  callId;
  /** @type {RTCPeerConnection | null} */
  pc = null;
  /** @type {MediaStream | null} */
  mic = null;
  /** @type {WhepSession | null} */
  video = null;
  answeredAt = 0;
  muted = false;
  /** @type {string | null} */
  answeredBy = null;
  /** @type {AbortController | null} */
  abort = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  clock;
  /** A short message shown with the call timer until `until` (Date.now ms). */
  note = { text: "", until: 0 };
  /** Someone (on another page) is opening the door of this ring: `door-opened` or `ended` follows. */
  opening = false;
  /** The card is on its way out (linger() was called). */
  lingering = false;

  /**
   * @param {{ callId: string, deviceId: string, deviceName: string, camera: string | null, from: string, expiresAt?: number }} info
   * @param {"ringing" | "calling"} state
   */
  constructor(info, state) {
    this.callId = info.callId;
    this.deviceId = info.deviceId;
    this.deviceName = info.deviceName;
    this.camera = info.camera;
    this.from = info.from;
    /** When the ring times out (Date.now ms), for the countdown; 0 unknown. */
    this.expiresAt = typeof info.expiresAt === "number" ? info.expiresAt : 0;
    this.state = state;

    const id = `ic-${Math.random().toString(36).slice(2, 10)}`;
    this.el = el("article", "ic-card");
    this.el.setAttribute("role", "alertdialog");
    this.el.setAttribute("aria-labelledby", `${id}-title`);
    this.el.setAttribute("aria-describedby", `${id}-desc`);
    this.el.dataset.call = this.callId;
    this.el.dataset.device = this.deviceId;

    const media = el("div", "ic-media");
    this.videoEl = /** @type {HTMLVideoElement} */ (el("video", "ic-video"));
    this.videoEl.muted = true;
    this.videoEl.autoplay = true;
    this.videoEl.playsInline = true;
    this.videoEl.disablePictureInPicture = true;
    const noVideo = el("p", "ic-novideo", this.camera ? "Connecting to the door camera…" : "No camera at this door");
    this.noVideo = noVideo;
    media.append(this.videoEl, noVideo);

    const body = el("div", "ic-body");
    const kicker = el("p", "ic-kicker", state === "ringing" ? "Door intercom · ringing" : "Door intercom · calling");
    this.kicker = kicker;
    const title = el("h2", "ic-title", this.deviceName);
    title.id = `${id}-title`;
    const desc = el("p", "ic-desc", state === "ringing" ? "Ringing" : "Talking to the door");
    this.desc = desc;
    desc.id = `${id}-desc`;
    this.status = el("p", "ic-status");
    this.status.setAttribute("role", "status");
    this.actions = el("div", "ic-actions");
    body.append(kicker, title, desc, this.status, this.actions);
    // The remote audio plays through a media element (not shown).
    this.audioEl = /** @type {HTMLAudioElement} */ (el("audio", "ic-audio"));
    this.audioEl.autoplay = true;
    this.el.append(media, body, this.audioEl);
    this.el.dataset.state = state;
    this.render();
    this.startVideo();
    if (state === "ringing") {
      this.countdown();
      this.clock = setInterval(() => this.countdown(), 1000);
    }
  }

  /** "Ringing · 23 s left to answer" while it rings. */
  countdown() {
    if (this.state !== "ringing") return;
    const left = this.expiresAt ? Math.max(0, Math.ceil((this.expiresAt - Date.now()) / 1000)) : null;
    const text = left === null ? "Ringing" : `Ringing · ${left} s left to answer`;
    if (this.desc.textContent !== text) this.desc.textContent = text;
  }

  /**
   * Ask before opening the door, in the card: "Open <door>?" with Open and Cancel.
   * @param {() => void} open
   */
  confirmOpen(open) {
    const keep = [...this.actions.children];
    const ask = el("p", "ic-confirm-text", `Open ${this.deviceName}?`);
    const yes = button("Open", "ic-open-confirm", () => {
      open();
    });
    yes.setAttribute("aria-label", `Yes, open ${this.deviceName}`);
    const no = button("Cancel", "ic-open-cancel", () => {
      this.actions.replaceChildren(...keep);
      this.el.classList.remove("is-confirming");
      /** @type {HTMLElement | undefined} */ (keep.find((b) => b.classList.contains("ic-open")))?.focus();
    });
    this.el.classList.add("is-confirming");
    this.actions.replaceChildren(ask, yes, no);
    no.focus();
  }

  /**
   * Open the door of this ring without answering it here: the gateway answers the door itself,
   * sends its open-door digits and hangs up; no microphone, no talk connection.
   */
  async openRinging() {
    if (this.state !== "ringing") return;
    if (this.clock !== undefined) clearInterval(this.clock);
    this.clock = undefined;
    this.el.classList.remove("is-confirming");
    this.state = "opening";
    this.kicker.textContent = "Door intercom";
    this.desc.textContent = "Opening the door";
    this.render();
    this.say("Opening the door…");
    updateRinging();
    const ok = await this.post("open-door");
    if (this.state !== "opening") return; // door-opened or ended arrived first
    if (ok) return this.opened("Door opened");
    // Refused (the call still rings, or its end is on the way): back to the ring's buttons, with the reason.
    const reason = this.status.textContent ?? "";
    this.state = "ringing";
    this.render();
    this.say(reason);
    this.countdown();
    this.clock = setInterval(() => this.countdown(), 1000);
    updateRinging();
  }

  /**
   * The door was opened (by the gateway, for someone): say so, then the card goes.
   * @param {string} text
   */
  opened(text) {
    this.opening = false;
    this.release();
    this.state = "ended";
    this.kicker.textContent = "Door intercom";
    this.desc.textContent = "Door opened";
    this.render();
    this.say(text);
    this.el.classList.add("is-opened");
    this.linger();
  }

  /**
   * Someone else asked the gateway to open this ring's door.
   * @param {string} name
   */
  openingElsewhere(name) {
    this.answeredBy = name;
    this.opening = true;
    this.release();
    this.state = "ended";
    this.kicker.textContent = "Door intercom";
    this.render();
    this.say(`Opening the door: ${name}`);
  }

  /** The call is over (checked after each await: the ended event may have arrived meanwhile). */
  get over() {
    return this.state === "ended";
  }

  get inCall() {
    return this.state === "in-call" || this.state === "answering" || this.state === "calling";
  }

  /** The door camera's live view (WHEP), muted: the call's audio is the talk connection. */
  startVideo() {
    if (!this.camera || this.video) return;
    const session = new WhepSession(new URL(`whep/${encodeURIComponent(this.camera)}`, base));
    this.video = session;
    session.addEventListener("stream", () => {
      this.videoEl.srcObject = session.stream;
      void this.videoEl.play().catch(() => {});
    });
    // Keep a picture of who rang with the call, for the call log (the first page to send one wins).
    this.videoEl.addEventListener("playing", () => void this.sendSnapshot(), { once: true });
    session.addEventListener("statechange", () => {
      const s = session.state;
      this.noVideo.hidden = s === "connected";
      if (s === "failed") this.noVideo.textContent = session.lastError?.status === 403 ? "You may not watch this camera" : "Door camera unavailable";
      else if (s === "retrying") this.noVideo.textContent = "Reconnecting to the door camera…";
    });
    session.start();
  }

  async sendSnapshot() {
    if (this.sentSnapshot || this.callId.startsWith("calling-")) return;
    this.sentSnapshot = true;
    // A frame or two after "playing", so the picture is not the decoder's first grey frame.
    await new Promise((r) => setTimeout(r, 300));
    const v = this.videoEl;
    if (!v.videoWidth || !v.videoHeight) return;
    const scale = Math.min(1, 640 / v.videoWidth);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(v.videoWidth * scale);
    canvas.height = Math.round(v.videoHeight * scale);
    canvas.getContext("2d")?.drawImage(v, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
    if (!blob) return;
    try {
      await fetch(api(`/calls/${encodeURIComponent(this.callId)}/snapshot`), {
        method: "POST",
        headers: { "Content-Type": "image/jpeg", ...(await csrfHeaders(base)) },
        body: /** @type {Blob} */ (blob),
        credentials: "same-origin",
      });
    } catch {
      // best effort: the call log then shows no picture
    }
  }

  /** Buttons and texts for the current state. */
  render() {
    this.el.dataset.state = this.state;
    this.actions.replaceChildren();
    if (this.state === "ringing") {
      this.answerBtn = button("Answer", "ic-answer", () => void this.answer());
      this.answerBtn.setAttribute("aria-label", `Answer ${this.deviceName}`);
      const open = button("Open door", "ic-open", () => this.confirmOpen(() => void this.openRinging()));
      open.setAttribute("aria-label", `Open ${this.deviceName}`);
      const decline = button("Decline", "ic-decline", () => void this.post("reject"));
      decline.setAttribute("aria-label", `Decline ${this.deviceName}`);
      this.actions.append(this.answerBtn, open, decline);
    } else if (this.state === "answering" || this.state === "calling") {
      const cancel = button(this.state === "calling" ? "Cancel" : "Hang up", "ic-hangup", () => this.cancel());
      this.actions.append(cancel);
    } else if (this.state === "in-call") {
      this.muteBtn = button("Mute", "ic-mute", () => this.toggleMute());
      this.muteBtn.setAttribute("aria-pressed", "false");
      this.muteBtn.disabled = !this.mic;
      if (!this.mic) this.muteBtn.title = "No microphone: listening only";
      this.openBtn = button("Open door", "ic-open", () => this.confirmOpen(() => void this.openDoor()));
      this.openBtn.setAttribute("aria-label", `Open ${this.deviceName}`);
      const hangup = button("Hang up", "ic-hangup", () => void this.post("hangup"));
      this.actions.append(this.muteBtn, this.openBtn, hangup);
    }
  }

  /** @param {string} text */
  say(text) {
    if (this.status.textContent !== text) this.status.textContent = text;
  }

  /** Answer with the microphone (listen-only when the browser refuses it). */
  async answer() {
    if (this.state !== "ringing") return;
    if (this.clock !== undefined) clearInterval(this.clock);
    this.clock = undefined;
    this.el.classList.remove("is-confirming");
    this.state = "answering";
    this.render();
    this.say("Connecting…");
    updateRinging();
    try {
      const answer = await this.negotiate(api(`/calls/${encodeURIComponent(this.callId)}/answer`));
      if (!answer) return;
      await this.connected(answer.sdp);
    } catch (err) {
      this.fail(err instanceof Error ? err.message : String(err));
    }
  }

  /** Place a call to the door (talk): the POST returns once the door answered. */
  async call() {
    try {
      const answer = await this.negotiate(api(`/devices/${encodeURIComponent(this.deviceId)}/call`), true);
      if (!answer) return;
      if (answer.callId) {
        cards.delete(this.callId);
        this.callId = answer.callId;
        this.el.dataset.call = this.callId;
        cards.set(this.callId, this);
      }
      await this.connected(answer.sdp);
    } catch (err) {
      if (this.state === "ended") return;
      this.fail(err instanceof Error ? err.message : String(err));
    }
  }

  /**
   * Microphone, offer, POST; the answer SDP, or null when the server said no (handled here).
   * @param {URL} url
   * @param {boolean} [toDoor] a call to the door (talk): a 404 says the door cannot be reached
   *   (not registered anywhere), in the gateway's words, not that a call ended
   * @returns {Promise<{ sdp: string, callId: string | null } | null>}
   */
  async negotiate(url, toDoor = false) {
    try {
      this.mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    } catch {
      this.mic = null; // refused or none: listen only
    }
    if (this.over) {
      this.release();
      return null;
    }
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    const track = this.mic?.getAudioTracks()[0];
    if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [this.mic ?? new MediaStream()] });
    else pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (e) => {
      this.audioEl.srcObject = e.streams[0] ?? new MediaStream([e.track]);
      void this.audioEl.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") this.say("Audio connection lost");
      else if (pc.connectionState === "connected" && this.state === "in-call") this.tick();
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gatherCandidates(pc, { gatherQuietMs: 25, gatherMaxMs: 2000 }, iceServers);
    if (this.over) {
      this.release();
      return null;
    }
    this.abort = new AbortController();
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Accept: "application/sdp", ...(await csrfHeaders(base)) },
      body: pc.localDescription?.sdp ?? "",
      credentials: "same-origin",
      cache: "no-store",
      signal: this.abort.signal,
    });
    this.abort = null;
    if (res.status === 201) return { sdp: await res.text(), callId: res.headers.get("X-Call-Id") };
    const body = await res.json().catch(() => ({}));
    if (res.status === 403) resetCsrf();
    this.release();
    if (res.status === 409 && typeof body.answeredBy === "string") {
      this.answeredElsewhere(body.answeredByName || body.answeredBy);
      return null;
    }
    if ((res.status === 404 || res.status === 410) && !toDoor) {
      this.end("The call has ended");
      return null;
    }
    throw new Error(typeof body.reason === "string" ? body.reason : `HTTP ${res.status}`);
  }

  /** @param {string} answerSdp */
  async connected(answerSdp) {
    if (!this.pc || this.over) return;
    await this.pc.setRemoteDescription({ type: "answer", sdp: answerSdp });
    this.state = "in-call";
    this.answeredAt = Date.now();
    this.kicker.textContent = "Door intercom · in call";
    this.render();
    this.tick();
    this.clock = setInterval(() => this.tick(), 1000);
    this.openBtn?.focus();
    updateRinging();
  }

  tick() {
    if (this.state !== "in-call") return;
    const s = Math.max(0, Math.floor((Date.now() - this.answeredAt) / 1000));
    const mm = String(Math.floor(s / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    const tail = this.mic ? (this.muted ? " · microphone muted" : "") : " · listening only (no microphone)";
    const note = this.note.text && Date.now() < this.note.until ? ` · ${this.note.text}` : "";
    this.say(`In call ${mm}:${ss}${note}${tail}`);
  }

  /**
   * A message next to the call timer for a few seconds (or alone outside a call).
   * @param {string} text
   */
  notify(text) {
    if (this.state !== "in-call") return this.say(text);
    this.note = { text, until: Date.now() + LINGER_MS };
    this.tick();
  }

  toggleMute() {
    if (!this.mic) return;
    this.muted = !this.muted;
    for (const t of this.mic.getAudioTracks()) t.enabled = !this.muted;
    if (this.muteBtn) {
      this.muteBtn.setAttribute("aria-pressed", String(this.muted));
      this.muteBtn.textContent = this.muted ? "Unmute" : "Mute";
    }
    this.tick();
  }

  async openDoor() {
    this.el.classList.remove("is-confirming");
    if (this.state === "in-call") this.render();
    const btn = this.openBtn;
    if (btn) btn.disabled = true;
    this.notify("Opening the door…");
    const ok = await this.post("open-door");
    if (btn) btn.disabled = false;
    if (ok) {
      this.notify("Door opened");
      this.el.classList.add("is-opened");
    }
  }

  /**
   * POST an action on this call; true on success.
   * @param {string} action reject, hangup, open-door
   */
  async post(action) {
    try {
      const res = await fetch(api(`/calls/${encodeURIComponent(this.callId)}/${action}`), {
        method: "POST",
        headers: { Accept: "application/json", ...(await csrfHeaders(base)) },
        credentials: "same-origin",
        keepalive: action === "hangup",
      });
      if (res.ok) return true;
      if (res.status === 403) resetCsrf();
      const body = await res.json().catch(() => ({}));
      this.notify(typeof body.reason === "string" ? `Could not ${action.replace("-", " ")}: ${body.reason}` : `Could not ${action.replace("-", " ")} (HTTP ${res.status})`);
    } catch {
      this.notify("The gateway cannot be reached");
    }
    return false;
  }

  /** Give up a call we are still setting up (the server ends it). */
  cancel() {
    if (this.state === "calling") {
      this.abort?.abort();
      this.end("Cancelled");
    } else void this.post("hangup");
  }

  /** @param {string} name */
  answeredElsewhere(name) {
    this.answeredBy = name;
    this.release();
    this.state = "ended";
    this.kicker.textContent = "Door intercom";
    this.render();
    this.say(`Answered by ${name}`);
    this.el.classList.add("is-elsewhere");
    this.linger();
  }

  /** @param {string} message */
  fail(message) {
    this.release();
    if (this.state === "ended") return;
    this.state = "ended";
    this.render();
    this.say(`Call failed: ${message}`);
    this.linger();
  }

  /** @param {string} text */
  end(text) {
    const wasEnded = this.state === "ended";
    this.release();
    this.state = "ended";
    this.kicker.textContent = "Door intercom";
    this.render();
    if (!wasEnded || !this.status.textContent) this.say(text);
    this.linger();
  }

  linger() {
    updateRinging();
    if (this.lingering) return;
    this.lingering = true;
    setTimeout(() => this.remove(), LINGER_MS);
  }

  /** Stop the talk connection and the microphone (the door video stays until removal). */
  release() {
    if (this.clock !== undefined) clearInterval(this.clock);
    this.clock = undefined;
    this.abort?.abort();
    this.abort = null;
    if (this.pc) {
      this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
    if (this.mic) for (const t of this.mic.getTracks()) t.stop();
    this.mic = null;
    this.audioEl.srcObject = null;
  }

  remove() {
    this.release();
    this.video?.close("intercom card closed");
    this.video = null;
    this.videoEl.srcObject = null;
    this.el.remove();
    if (cards.get(this.callId) === this) cards.delete(this.callId);
    updateRinging();
    syncLayer();
  }
}

// ---------------------------------------------------------------- events from the gateway

/** @param {RingInfo} r */
function showRing(r) {
  if (cards.has(r.callId)) return;
  const card = new CallCard(r, "ringing");
  cards.set(r.callId, card);
  stack.prepend(card.el);
  syncLayer();
  updateRinging();
  // An alert dialog takes focus, unless the user is typing somewhere.
  const active = document.activeElement;
  if (!active || !/^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) card.answerBtn?.focus();
}

/** @param {{ callId: string, by: string, byName: string, you: boolean, purpose?: string }} a */
function onAnswered(a) {
  const card = cards.get(a.callId);
  if (!card) return;
  if (a.purpose === "open-door") {
    // The gateway answered only to open the door: `door-opened` (or `ended`) follows.
    if (card.state === "ringing") card.openingElsewhere(a.you ? "you, on another page" : a.byName || a.by);
    return;
  }
  // This page's own answer is in flight ("answering"); any other answer ends the ring here.
  if (a.you && card.state === "ringing") card.answeredElsewhere("you, on another page");
  else if (!a.you && (card.state === "ringing" || card.state === "answering")) card.answeredElsewhere(a.byName || a.by);
}

/** @param {{ callId: string, deviceName: string, reason: string, missed: boolean, answeredByName: string | null, startedAt: number }} e */
function onEnded(e) {
  const card = cards.get(e.callId);
  if (e.missed) {
    try {
      addMissed({ callId: e.callId, deviceName: e.deviceName, at: e.startedAt });
    } catch (err) {
      console.warn("intercom: missed call not listed", err); // the card must still end below
    }
  }
  if (!card) return;
  if (card.state === "ended" && !card.opening) return;
  const opening = card.opening;
  card.opening = false;
  const why =
    e.missed ? "Missed call"
    : e.reason === "rejected" ? "Declined"
    : e.reason === "cancelled" ? "The caller hung up"
    : e.reason === "remote-bye" ? "The door hung up"
    : e.reason === "local-bye" ? "Call ended"
    : "Call ended";
  if (opening) {
    // Someone else's opening ended without `door-opened`: the door could not be opened.
    card.say(`The door was not opened (${why.toLowerCase()})`);
    card.linger();
    return;
  }
  card.end(why);
}

/** @param {{ callId: string, by: string, byName: string, you: boolean }} d */
function onDoorOpened(d) {
  const card = cards.get(d.callId);
  if (!card) return;
  if (card.state === "opening") card.opened("Door opened");
  else if (card.opening || card.state === "ringing") card.opened(`Door opened by ${d.you ? "you, on another page" : d.byName || d.by}`);
}

/** @param {{ callId: string, deviceName: string, at: number }} m */
function addMissed(m) {
  if (!missed.some((x) => x.callId === m.callId) && !dismissed().has(m.callId)) {
    // An event without a usable time (older gateways) is listed at its arrival.
    missed.unshift({ ...m, at: Number.isFinite(m.at) && m.at > 0 ? m.at : Date.now(), snapshot: false });
    missed.length = Math.min(missed.length, MAX_MISSED);
    renderMissed();
  }
  // The server's call log is the record (time, picture); this page's memory is only a first draft.
  void loadMissed();
}

const dismissedKey = () => `gatehouse.intercom.dismissed.${me?.sub ?? ""}`;

/** Missed calls this user dismissed in this browser (call ids). @returns {Set<string>} */
function dismissed() {
  try {
    const v = JSON.parse(localStorage.getItem(dismissedKey()) ?? "[]");
    return new Set(Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
  } catch {
    return new Set();
  }
}

/** @param {string} callId */
function dismiss(callId) {
  const set = dismissed();
  set.add(callId);
  try {
    localStorage.setItem(dismissedKey(), JSON.stringify([...set].slice(-200)));
  } catch {
    // no storage: dismissed until the next reload
  }
  const i = missed.findIndex((m) => m.callId === callId);
  if (i >= 0) missed.splice(i, 1);
  renderMissed();
}

/** Missed calls from the server's call log (`GET api/intercom/history?missed=1`). */
async function loadMissed() {
  let res;
  try {
    res = await fetch(api("/history?missed=1&limit=20"), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    return;
  }
  if (!res.ok) return;
  const body = await res.json().catch(() => null);
  if (!body || !Array.isArray(body.calls)) return;
  const gone = dismissed();
  const list = body.calls
    .filter((/** @type {any} */ c) => c && c.missed && c.direction === "incoming" && typeof c.callId === "string" && !gone.has(c.callId))
    .slice(0, MAX_MISSED)
    .map((/** @type {any} */ c) => ({ callId: c.callId, deviceName: String(c.deviceName ?? ""), at: Number.isFinite(Number(c.startedAt)) && Number(c.startedAt) > 0 ? Number(c.startedAt) : Date.now(), snapshot: Boolean(c.snapshot) }));
  missed.splice(0, missed.length, ...list);
  renderMissed();
}

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
/** "17:45" today, else the date too. @param {number} at */
function whenText(at) {
  const d = new Date(at);
  return d.toDateString() === new Date().toDateString() ? timeOfDay.format(d) : dateAndTime.format(d);
}

function renderMissed() {
  missedBox.replaceChildren();
  missedBox.hidden = missed.length === 0;
  if (missed.length === 0) return syncLayer();
  const list = el("ul", "ic-missed-list");
  for (const m of missed) {
    const li = el("li", "ic-missed-item");
    li.dataset.call = m.callId;
    if (m.snapshot) {
      const img = /** @type {HTMLImageElement} */ (el("img", "ic-missed-snapshot"));
      img.src = api(`/calls/${encodeURIComponent(m.callId)}/snapshot`).href;
      img.alt = `${m.deviceName} when it rang`;
      img.width = 96;
      img.height = 54;
      li.append(img);
    }
    li.dataset.at = new Date(m.at).toISOString();
    li.append(el("span", "ic-missed-text", `Missed call from ${m.deviceName} at ${whenText(m.at)}`));
    const close = button("Dismiss", "ic-dismiss", () => dismiss(m.callId));
    close.setAttribute("aria-label", `Dismiss missed call from ${m.deviceName}`);
    li.append(close);
    list.append(li);
  }
  missedBox.append(list);
  syncLayer();
}

function syncLayer() {
  layer.hidden = cards.size === 0 && missed.length === 0;
}

function connectStream() {
  if (source) return;
  streamState = "connecting";
  const es = new EventSource(api("/events"), { withCredentials: true });
  source = es;
  /**
   * @param {string} name
   * @param {(data: any) => void} fn
   */
  const on = (name, fn) =>
    es.addEventListener(name, (e) => {
      try {
        fn(JSON.parse(/** @type {MessageEvent} */ (e).data));
      } catch (err) {
        console.warn("intercom: bad event", name, err);
      }
    });
  on("ready", (d) => {
    streamState = "open";
    if (d.user) me = d.user;
    // After a reconnect: rings that stopped while the stream was down go away.
    const still = new Set((d.ringing ?? []).map((/** @type {RingInfo} */ r) => r.callId));
    for (const c of [...cards.values()]) if (c.state === "ringing" && !still.has(c.callId)) c.end("No longer ringing");
    for (const r of d.ringing ?? []) showRing(r);
    // A call this user holds (answered on another page, or before a reload): its audio is elsewhere.
    for (const c of d.calls ?? []) if (!cards.has(c.callId)) showHeldElsewhere(c);
  });
  on("ring", showRing);
  on("answered", onAnswered);
  on("door-opened", onDoorOpened);
  on("ended", onEnded);
  on("dtmf", (d) => cards.get(d.callId)?.notify(`The door sent “${d.digit}”`));
  on("device", (d) => {
    const door = doors.get(d.deviceId);
    if (door) door.online = Boolean(d.online);
    renderDoors();
  });
  on("bye", () => {
    // Signed out or revoked: the page will be sent to sign-in by the camera list's next refresh.
    es.close();
    source = null;
    streamState = "closed";
  });
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    source = null;
    streamState = "closed";
    setTimeout(() => void start(), STREAM_RETRY_MS);
  };
}

/** @param {{ callId: string, deviceId: string, deviceName: string, camera: string | null, from: string }} c */
function showHeldElsewhere(c) {
  const card = new CallCard(c, "ringing");
  card.state = "ended";
  card.render();
  card.say("You are in this call on another page");
  const hangup = button("Hang up", "ic-hangup", () => void card.post("hangup"));
  card.actions.append(hangup);
  cards.set(c.callId, card);
  stack.prepend(card.el);
  syncLayer();
}

// ---------------------------------------------------------------- doors menu (talk to the door)

const doorsBtn = /** @type {HTMLButtonElement} */ (el("button", "btn ic-doors-btn"));
doorsBtn.type = "button";
doorsBtn.hidden = true;
doorsBtn.setAttribute("aria-haspopup", "true");
doorsBtn.setAttribute("aria-expanded", "false");
doorsBtn.setAttribute("aria-label", "Doors: talk to a door");
doorsBtn.title = "Talk to a door";
{
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(NS, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M6 2h12a1 1 0 0 1 1 1v18h2v2H3v-2h2V3a1 1 0 0 1 1-1zm1 2v17h10V4zm7 7h2v2h-2z");
  svg.append(path);
  doorsBtn.append(svg, el("span", "btn-label", "Doors"));
}
const doorsMenu = el("div", "ic-doors");
doorsMenu.hidden = true;
doorsMenu.id = "ic-doors";
doorsBtn.setAttribute("aria-controls", doorsMenu.id);
doorsBtn.addEventListener("click", () => showDoors(doorsMenu.hidden));
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !doorsMenu.hidden) {
    showDoors(false);
    doorsBtn.focus();
  }
});

/** @type {Map<string, WhepSession>} door id → live preview of its camera while the menu is open */
const previews = new Map();

/** @param {boolean} show */
function showDoors(show) {
  doorsMenu.hidden = !show;
  doorsBtn.setAttribute("aria-expanded", String(show));
  if (show) {
    startPreviews();
    /** @type {HTMLElement | null} */ (doorsMenu.querySelector("button"))?.focus();
  } else stopPreviews();
}

/** Each door's camera, small and muted, while the menu is open (closed with it: no idle streams). */
function startPreviews() {
  for (const li of doorsMenu.querySelectorAll(".ic-door")) {
    const id = /** @type {HTMLElement} */ (li).dataset.device ?? "";
    const door = doors.get(id);
    const video = /** @type {HTMLVideoElement | null} */ (li.querySelector(".ic-door-preview video"));
    if (!door?.camera || !video || previews.has(id)) continue;
    const session = new WhepSession(new URL(`whep/${encodeURIComponent(door.camera)}`, base));
    previews.set(id, session);
    const note = /** @type {HTMLElement} */ (li.querySelector(".ic-door-preview p"));
    session.addEventListener("stream", () => {
      video.srcObject = session.stream;
      void video.play().catch(() => {});
    });
    session.addEventListener("statechange", () => {
      note.hidden = session.state === "connected";
      if (session.state === "failed") note.textContent = "Camera unavailable";
    });
    session.start();
  }
}

function stopPreviews() {
  for (const [id, session] of previews) {
    session.close("doors menu closed");
    const video = /** @type {HTMLVideoElement | null} */ (doorsMenu.querySelector(`.ic-door[data-device="${CSS.escape(id)}"] .ic-door-preview video`));
    if (video) video.srcObject = null;
  }
  previews.clear();
}

function renderDoors() {
  const talkable = [...doors.values()].filter((d) => d.canTalk);
  doorsBtn.hidden = talkable.length === 0;
  const open = !doorsMenu.hidden;
  if (open) stopPreviews();
  doorsMenu.replaceChildren();
  const list = el("ul", "ic-doors-list");
  for (const d of talkable) {
    const li = el("li", "ic-door");
    li.dataset.device = d.id;
    const name = el("span", "ic-door-name", d.name);
    const state = el("span", `ic-door-state ${d.online ? "is-online" : ""}`, d.online ? "online" : "offline");
    const talk = button("Talk", "ic-talk", () => {
      showDoors(false);
      talkTo(d);
    });
    talk.disabled = !d.online;
    talk.setAttribute("aria-label", `Talk to ${d.name}`);
    if (d.camera) {
      const preview = el("div", "ic-door-preview");
      const video = /** @type {HTMLVideoElement} */ (el("video"));
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      video.disablePictureInPicture = true;
      video.setAttribute("aria-label", `${d.cameraName ?? d.name}, live`);
      preview.append(video, el("p", "", "Connecting…"));
      li.append(preview);
    }
    li.append(name, state, talk);
    list.append(li);
  }
  doorsMenu.append(list);
  const demo = demoDoor?.canRing ? doors.get(demoDoor.device) : undefined;
  if (demo) {
    // The demo door calls in like a real one: its ring reaches everyone who may answer it.
    const box = el("div", "ic-demo");
    const ring = button("Ring the demo door", "ic-ring-demo", () => void ringDemoDoor());
    ring.disabled = !demo.online;
    const note = el("p", "ic-demo-note", demoNote);
    note.setAttribute("role", "status");
    box.append(ring, note);
    doorsMenu.append(box);
  }
  if (open) startPreviews();
}

/** Ask the demo door to call in; the ring arrives on the event stream like any door's. */
async function ringDemoDoor() {
  demoNote = "Ringing…";
  renderDoors();
  try {
    const res = await fetch(api("/demo-door/ring"), {
      method: "POST",
      headers: { Accept: "application/json", ...(await csrfHeaders(base)) },
      credentials: "same-origin",
    });
    if (res.ok) {
      demoNote = "";
      showDoors(false);
    } else {
      if (res.status === 403) resetCsrf();
      const body = await res.json().catch(() => ({}));
      demoNote = typeof body.reason === "string" ? `The demo door cannot ring: ${body.reason}` : `The demo door cannot ring (HTTP ${res.status})`;
    }
  } catch {
    demoNote = "The gateway cannot be reached";
  }
  renderDoors();
}

/** @param {DoorInfo} d */
function talkTo(d) {
  if ([...cards.values()].some((c) => c.inCall)) return;
  const key = `calling-${d.id}-${Date.now()}`;
  const card = new CallCard({ callId: key, deviceId: d.id, deviceName: d.name, camera: d.camera, from: me?.name ?? "" }, "calling");
  cards.set(key, card);
  stack.prepend(card.el);
  card.render();
  card.say("Calling the door…");
  syncLayer();
  void card.call();
}

// ---------------------------------------------------------------- start

async function start() {
  let res;
  try {
    res = await fetch(api(""), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    setTimeout(() => void start(), STREAM_RETRY_MS);
    return;
  }
  // 401: the live view sends the page to sign in; 404 from an older gateway: no intercom.
  if (!res.ok) return;
  const info = await res.json().catch(() => null);
  // `{ enabled: false }`: the gateway runs without door intercoms.
  if (!info || typeof info !== "object" || info.enabled === false) return;
  me = info.user ?? null;
  iceServers = Array.isArray(info.iceServers) ? info.iceServers : [];
  doors.clear();
  for (const d of Array.isArray(info.devices) ? info.devices : []) doors.set(d.id, d);
  if (doors.has(DEMO_DOOR)) {
    const r = await fetch(api("/demo-door"), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" }).catch(() => null);
    demoDoor = r?.ok ? await r.json().catch(() => null) : null;
  }
  if (!layer.isConnected) document.body.append(layer);
  const topbar = document.querySelector(".topbar");
  if (topbar && !doorsBtn.isConnected) {
    const anchor = document.getElementById("stats-toggle");
    topbar.insertBefore(doorsBtn, anchor);
    topbar.append(doorsMenu);
  }
  renderDoors();
  syncLayer();
  connectStream();
  void loadMissed();
}

// The page is going away: a call held here ends (keepalive POST survives the unload).
window.addEventListener("pagehide", () => {
  for (const c of cards.values()) if (c.state === "in-call" || c.state === "answering") void c.post("hangup");
});

Object.defineProperty(window, "gatehouseIntercom", {
  value: Object.freeze({
    /** Cards, stream and doors, for tests and diagnostics. */
    state: () => ({
      stream: streamState,
      me,
      doors: [...doors.values()],
      missed: missed.map((m) => ({ ...m })),
      previews: [...previews.keys()],
      cards: [...cards.values()].map((c) => ({ callId: c.callId, deviceId: c.deviceId, state: c.state, status: c.status.textContent, answeredBy: c.answeredBy, video: c.video?.state ?? null, muted: c.muted, mic: Boolean(c.mic) })),
    }),
    /** Statistics of the talk connection of the call on screen: inbound and outbound audio. */
    async talkStats() {
      const card = [...cards.values()].find((c) => c.pc);
      if (!card?.pc) return null;
      const out = { callId: card.callId, state: card.pc.connectionState, inbound: /** @type {any} */ (null), outbound: /** @type {any} */ (null), codec: /** @type {string | null} */ (null) };
      const report = await card.pc.getStats();
      for (const s of report.values()) {
        if (s.type === "inbound-rtp" && s.kind === "audio") out.inbound = { packetsReceived: s.packetsReceived ?? 0, totalAudioEnergy: s.totalAudioEnergy ?? 0, audioLevel: s.audioLevel ?? 0, codecId: s.codecId };
        if (s.type === "outbound-rtp" && s.kind === "audio") out.outbound = { packetsSent: s.packetsSent ?? 0, bytesSent: s.bytesSent ?? 0 };
      }
      const codecId = out.inbound?.codecId;
      if (codecId) out.codec = report.get(codecId)?.mimeType ?? null;
      return out;
    },
  }),
  configurable: true,
});

void start();
