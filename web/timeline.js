/**
 * The single view's timeline and playback controls.
 *
 * `Timeline` draws what the recorder holds (`GET api/cameras/<id>/recordings`: recorded ranges
 * and the gaps between them) on a track zoomable from an hour to a week (wheel, pinch, buttons,
 * `[` `]`), with a playhead, a date and time picker, and the controls: back to live, jump back
 * 30 s / 10 s, play/pause, step one frame while paused, speed (1/8× … 32×, reverse where the
 * recorder offers it). A click on the track seeks there; dragging the playhead scrubs and seeks
 * where it is let go; dragging elsewhere pans.
 *
 * `PlaybackController` turns those intents into a playback session (`PlaybackClient`,
 * web/playback-client.js: WHEP with a start time, then controls): every control answers at once
 * on screen (optimistic), then follows what the gateway says, and a refusal is shown in plain
 * words and undone. The clock shows the recorded wall-clock time of the frame on screen (the
 * client's `currentTime()`), never the time of viewing.
 *
 * Only for users with the `playback` right on the camera (`actions` in `api/cameras`); the
 * gateway checks the same (403).
 */

import { PlaybackClient } from "./playback-client.js";

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Spans the zoom buttons step through, ms: an hour to a week. */
export const ZOOM_SPANS = [HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 3 * DAY, 7 * DAY];
export const MIN_SPAN = ZOOM_SPANS[0];
export const MAX_SPAN = ZOOM_SPANS[ZOOM_SPANS.length - 1];

/** Speeds offered (reverse ones only work where the recorder plays backwards). */
export const SPEEDS = [-16, -4, -1, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32];

/** Tick spacings, ms, smallest first. */
const TICK_STEPS = [5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY];

/** A playback whose first picture has not arrived this long after it was asked for is given up, ms. */
const OPEN_TIMEOUT_MS = 15_000;

/** How often the recorded ranges are fetched again while the view stays open, ms. */
const REFRESH_MS = 30_000;

/** @param {number} n */
export function clampSpan(n) {
  return Math.min(MAX_SPAN, Math.max(MIN_SPAN, n));
}

/**
 * The tick spacing that keeps labels at least `minPx` apart on a track `widthPx` wide.
 * @param {number} span ms
 * @param {number} widthPx
 * @param {number} [minPx]
 */
export function tickStep(span, widthPx, minPx = 70) {
  const maxTicks = Math.max(2, Math.floor(widthPx / minPx));
  for (const s of TICK_STEPS) if (span / s <= maxTicks) return s;
  return TICK_STEPS[TICK_STEPS.length - 1];
}

/**
 * Tick times in [start, start + span), aligned to local midnight so that labels read as
 * round hours and days.
 * @param {number} start @param {number} span @param {number} step
 */
export function ticks(start, span, step) {
  const d = new Date(start);
  d.setHours(0, 0, 0, 0);
  let t = d.getTime();
  const out = [];
  // Local days can be 23 or 25 hours long: step from each midnight.
  while (t < start + span) {
    const next = new Date(t);
    next.setDate(next.getDate() + 1);
    for (let x = t; x < next.getTime() && x < start + span; x += step) if (x >= start) out.push(x);
    t = next.getTime();
  }
  return out;
}

/**
 * Recorded ranges as fractions of the view (0…1), clipped to it.
 * @param {{ start: number, end: number }[]} ranges
 * @param {number} start view start, ms @param {number} span ms
 */
export function layoutRanges(ranges, start, span) {
  const out = [];
  for (const r of ranges) {
    const a = Math.max(r.start, start);
    const b = Math.min(r.end, start + span);
    if (b <= a) continue;
    out.push({ left: (a - start) / span, width: (b - a) / span });
  }
  return out;
}

/** @param {number} ms */
function pad2(ms) {
  return String(ms).padStart(2, "0");
}

/**
 * The recorded time for the clock: weekday, date and time to the second, in the viewer's zone.
 * @param {number} ms
 */
export function formatClock(ms) {
  const d = new Date(ms);
  const day = d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" });
  return `${day} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** @param {number} ms for `<input type="datetime-local" step="1">` (local time) */
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** @param {string} v a datetime-local value (local time) @returns {number} ms, NaN when empty or invalid */
export function fromLocalInput(v) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(v);
  if (!m) return NaN;
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0)).getTime();
}

/** @param {number} rate */
export function speedLabel(rate) {
  const abs = Math.abs(rate);
  const s = abs >= 1 ? String(abs) : `1/${Math.round(1 / abs)}`;
  return `${rate < 0 ? "−" : ""}${s}×`;
}

/** @param {number} span */
function spanLabel(span) {
  if (span >= DAY) {
    const d = Math.round(span / DAY);
    return d === 7 ? "1 week" : `${d} day${d === 1 ? "" : "s"}`;
  }
  const h = Math.round(span / HOUR);
  return `${h} hour${h === 1 ? "" : "s"}`;
}

const ICONS = {
  play: "M8 5v14l11-7z",
  pause: "M6 5h4v14H6zm8 0h4v14h-4z",
  step: "M6 5v14l8-7zM16 5h2v14h-2z",
  back: "M12 5V2L7 6l5 4V7a6 6 0 1 1-6 6H4a8 8 0 1 0 8-8z",
  live: "M12 8a4 4 0 1 1 0 8 4 4 0 0 1 0-8zM4.9 4.9l1.4 1.4a8 8 0 0 0 0 11.4l-1.4 1.4a10 10 0 0 1 0-14.2zm14.2 0a10 10 0 0 1 0 14.2l-1.4-1.4a8 8 0 0 0 0-11.4z",
  zoomIn: "M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z",
  zoomOut: "M5 11h14v2H5z",
};

/**
 * @param {string} tag @param {string} cls @param {Record<string, string>} [attrs]
 * @returns {HTMLElement}
 */
function el(tag, cls, attrs = {}) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** @param {keyof typeof ICONS} name @param {string} label @param {string} title */
function iconButton(name, label, title, text = "") {
  const b = /** @type {HTMLButtonElement} */ (el("button", "btn tl-btn", { type: "button", "aria-label": label, title }));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  b.append(svg);
  if (text) {
    const span = el("span", "tl-btn-text");
    span.textContent = text;
    b.append(span);
  }
  return b;
}

/**
 * @typedef {object} PlaybackView what the timeline shows of playback
 * @property {"live" | "playback"} mode
 * @property {number} position recorded time of the picture, ms (live: now)
 * @property {boolean} paused
 * @property {number} rate
 * @property {boolean} busy a request is on its way (controls still answer)
 */

/**
 * The timeline widget. Dispatches `intent` events ({ detail: { action, ... } }) for the
 * controller: seek {time}, pause, resume, speed {rate}, step, jump {seconds}, live.
 */
export class Timeline extends EventTarget {
  /** @type {HTMLElement} */
  root;
  /** View: start of the visible span, and its length, ms. */
  viewStart = 0;
  span = DAY;
  /** @type {{ start: number, end: number }[]} */
  ranges = [];
  /** @type {{ start: number, end: number } | null} */
  retention = null;
  /** @type {PlaybackView} */
  state = { mode: "live", position: Date.now(), paused: false, rate: 1, busy: false };
  /** Recorded time under the playhead while it is dragged (null when not). @type {number | null} */
  scrubbing = null;
  #els;
  /** @type {Map<number, { x: number }>} */
  #pointers = new Map();
  /** @type {{ id: number, x: number, startX: number, viewStart: number, onHead: boolean, moved: boolean } | null} */
  #drag = null;
  /** @type {{ dist: number, span: number, center: number } | null} */
  #pinch = null;
  /** The user moved the view: do not follow the playhead until it leaves the view. */
  #followHead = true;
  /** The reverse speeds are offered (off once the camera's recorder refused one). */
  #reverse = true;

  /** @param {HTMLElement} root an empty element; the timeline fills it */
  constructor(root) {
    super();
    this.root = root;
    root.classList.add("timeline");
    root.setAttribute("role", "region");
    root.setAttribute("aria-label", "Recordings timeline");

    const bar = el("div", "tl-bar");
    const live = iconButton("live", "Back to live", "Back to live (End)", "Live");
    live.classList.add("tl-live");
    const back30 = iconButton("back", "Jump back 30 seconds", "Back 30 s (H)", "30");
    const back10 = iconButton("back", "Jump back 10 seconds", "Back 10 s (J)", "10");
    const play = iconButton("pause", "Pause", "Play or pause (Space, K)");
    play.classList.add("tl-play");
    const step = iconButton("step", "Next frame", "Next frame while paused (.)");
    const speed = /** @type {HTMLSelectElement} */ (el("select", "select tl-speed", { "aria-label": "Playback speed", title: "Speed (< >)" }));
    for (const r of SPEEDS) {
      const o = document.createElement("option");
      o.value = String(r);
      o.textContent = speedLabel(r);
      speed.append(o);
    }
    speed.value = "1";
    const clock = el("time", "tl-clock", { "aria-live": "off", title: "Recorded time of the picture" });
    const mode = el("span", "tl-mode");
    const clockBox = el("span", "tl-clockbox");
    clockBox.append(mode, clock);
    const picker = /** @type {HTMLInputElement} */ (el("input", "tl-picker", { type: "datetime-local", step: "1", "aria-label": "Go to date and time" }));
    const go = /** @type {HTMLButtonElement} */ (el("button", "btn tl-go", { type: "submit", title: "Play from this date and time (T to pick)" }));
    go.textContent = "Go";
    const pickerBox = /** @type {HTMLFormElement} */ (el("form", "tl-pickerbox"));
    pickerBox.append(picker, go);
    bar.append(live, back30, back10, play, step, speed, clockBox, pickerBox);

    const zoomBar = el("div", "tl-zoombar");
    const zoomOut = iconButton("zoomOut", "Show a longer time", "Zoom out the timeline ([)");
    const zoomIn = iconButton("zoomIn", "Show a shorter time", "Zoom in the timeline (])");
    const spanText = el("span", "tl-span", { "aria-live": "polite" });
    const error = el("p", "tl-error", { role: "alert" });
    error.hidden = true;
    zoomBar.append(zoomOut, spanText, zoomIn, error);

    const track = el("div", "tl-track", { role: "slider", tabindex: "0", "aria-label": "Recorded time", "aria-valuemin": "0", "aria-valuemax": "0", "aria-valuenow": "0" });
    const lanes = el("div", "tl-lanes");
    const future = el("div", "tl-future");
    const head = el("div", "tl-head");
    const hover = el("div", "tl-hover");
    hover.hidden = true;
    const axis = el("div", "tl-axis", { "aria-hidden": "true" });
    track.append(lanes, future, head, hover);
    root.append(bar, zoomBar, track, axis);
    this.#els = { live, back30, back10, play, step, speed, clock, mode, picker, go, pickerBox, zoomOut, zoomIn, spanText, error, track, lanes, future, head, hover, axis };

    live.addEventListener("click", () => this.#intent({ action: "live" }));
    back30.addEventListener("click", () => this.#intent({ action: "jump", seconds: -30 }));
    back10.addEventListener("click", () => this.#intent({ action: "jump", seconds: -10 }));
    play.addEventListener("click", () => this.togglePause());
    step.addEventListener("click", () => this.#intent({ action: "step" }));
    speed.addEventListener("change", () => this.#intent({ action: "speed", rate: Number(speed.value) }));
    zoomIn.addEventListener("click", () => this.zoom(-1));
    zoomOut.addEventListener("click", () => this.zoom(1));
    pickerBox.addEventListener("submit", (e) => {
      e.preventDefault();
      this.#seekPicker();
    });
    picker.addEventListener("change", () => {
      // Native pickers fire change when a value is chosen; typing fires it per field: Go or Enter seeks then.
      if (picker.dataset.typing !== "1") this.#seekPicker();
    });
    picker.addEventListener("keydown", (e) => {
      picker.dataset.typing = "1";
      if (e.key === "Enter") {
        e.preventDefault();
        this.#seekPicker();
      }
    });
    picker.addEventListener("blur", () => delete picker.dataset.typing);
    track.addEventListener("wheel", (e) => this.#onWheel(e), { passive: false });
    track.addEventListener("pointerdown", (e) => this.#onPointerDown(e));
    track.addEventListener("pointermove", (e) => this.#onPointerMove(e));
    track.addEventListener("pointerup", (e) => this.#onPointerUp(e));
    track.addEventListener("pointercancel", (e) => this.#onPointerUp(e, true));
    track.addEventListener("pointerleave", () => (this.#els.hover.hidden = true));
    track.addEventListener("keydown", (e) => this.#onTrackKey(e));
    new ResizeObserver(() => this.render()).observe(track);
  }

  /** Show the timeline around `now` (a camera was opened). */
  reset(now = Date.now()) {
    this.span = DAY;
    this.viewStart = now - this.span * 0.9;
    this.ranges = [];
    this.retention = null;
    this.#followHead = true;
    this.state = { mode: "live", position: now, paused: false, rate: 1, busy: false };
    this.showError("");
    this.render();
  }

  /** @param {{ ranges: { start: number, end: number }[], retention: { start: number, end: number } }} r */
  setRecordings(r) {
    this.ranges = r.ranges;
    this.retention = r.retention;
    this.render();
  }

  /** @param {Partial<PlaybackView>} s */
  setState(s) {
    this.state = { ...this.state, ...s };
    this.render();
  }

  /** @param {string} text plain words; "" hides */
  showError(text) {
    const e = this.#els.error;
    e.hidden = !text;
    if (e.textContent !== text) e.textContent = text;
  }

  /** The recorded time the picture shows, or now in live. */
  get position() {
    return this.state.mode === "live" ? Date.now() : this.state.position;
  }

  togglePause() {
    this.#intent({ action: this.state.mode === "live" || !this.state.paused ? "pause" : "resume" });
  }

  /** @param {number} seconds */
  jump(seconds) {
    this.#intent({ action: "jump", seconds });
  }

  step() {
    this.#intent({ action: "step" });
  }

  /**
   * Offer the reverse speeds or not (a recorder that does not play backwards): disabled in the
   * list, skipped by the keys, and the list says why.
   * @param {boolean} allowed
   */
  setReverse(allowed) {
    this.#reverse = allowed;
    const { speed } = this.#els;
    for (const o of speed.options) if (Number(o.value) < 0) o.disabled = !allowed;
    speed.title = allowed ? "Speed (< >)" : "Speed (< >); this recorder does not play backwards";
  }

  /** Whether the reverse speeds are offered. */
  get reverse() {
    return this.#reverse;
  }

  /** One speed up (+1) or down (−1) in the list. @param {1 | -1} dir */
  nudgeSpeed(dir) {
    const speeds = this.#reverse ? SPEEDS : SPEEDS.filter((r) => r > 0);
    const i = speeds.indexOf(this.state.rate);
    const next = speeds[Math.min(speeds.length - 1, Math.max(0, (i < 0 ? speeds.indexOf(1) : i) + dir))];
    if (next !== undefined && next !== this.state.rate) this.#intent({ action: "speed", rate: next });
  }

  live() {
    this.#intent({ action: "live" });
  }

  focusPicker() {
    this.#els.picker.value = toLocalInput(this.position);
    this.#els.picker.focus();
  }

  /**
   * Zoom out (+1) or in (−1) one step of ZOOM_SPANS, around `at` (default the playhead when in
   * view, else the view's middle).
   * @param {number} dir @param {number} [at]
   */
  zoom(dir, at) {
    const i = ZOOM_SPANS.findIndex((s) => s >= this.span - 1);
    const idx = dir > 0 ? (ZOOM_SPANS[i] !== undefined && ZOOM_SPANS[i] > this.span + 1 ? i : i + 1) : i - 1;
    const next = ZOOM_SPANS[Math.min(ZOOM_SPANS.length - 1, Math.max(0, idx))] ?? this.span;
    this.setSpan(next, at);
  }

  /** @param {number} span @param {number} [at] the time that stays under the same point */
  setSpan(span, at) {
    const pos = this.position;
    const anchor = at ?? (pos >= this.viewStart && pos <= this.viewStart + this.span ? pos : this.viewStart + this.span / 2);
    const frac = (anchor - this.viewStart) / this.span;
    this.span = clampSpan(span);
    this.viewStart = anchor - frac * this.span;
    this.#clampView();
    this.render();
    this.dispatchEvent(new CustomEvent("view"));
  }

  render() {
    const { track, lanes, future, head, axis, clock, mode, play, step, speed, spanText, live, zoomIn, zoomOut } = this.#els;
    const now = Date.now();
    const s = this.state;
    const pos = this.scrubbing ?? this.position;
    // Follow the playhead (playback runs on, live moves): keep it in view unless the user looks elsewhere.
    if (this.#followHead && !this.#drag && (pos > this.viewStart + this.span * 0.95 || pos < this.viewStart)) {
      this.viewStart = pos - this.span * (s.mode === "live" ? 0.9 : 0.5);
      this.#clampView();
    }
    const start = this.viewStart;
    const span = this.span;
    // Recorded ranges on top of the gap background.
    const boxes = layoutRanges(this.ranges, start, span);
    while (lanes.children.length > boxes.length) lanes.lastElementChild?.remove();
    while (lanes.children.length < boxes.length) lanes.append(el("div", "tl-range"));
    boxes.forEach((b, i) => {
      const d = /** @type {HTMLElement} */ (lanes.children[i]);
      d.style.left = `${(b.left * 100).toFixed(4)}%`;
      d.style.width = `${(b.width * 100).toFixed(4)}%`;
    });
    const fut = Math.min(1, Math.max(0, (now - start) / span));
    future.style.left = `${(fut * 100).toFixed(4)}%`;
    const headFrac = (pos - start) / span;
    head.hidden = headFrac < 0 || headFrac > 1;
    head.style.left = `${(Math.min(1, Math.max(0, headFrac)) * 100).toFixed(4)}%`;
    head.classList.toggle("is-live", s.mode === "live");
    track.setAttribute("aria-valuemin", String(Math.round(start)));
    track.setAttribute("aria-valuemax", String(Math.round(start + span)));
    track.setAttribute("aria-valuenow", String(Math.round(pos)));
    track.setAttribute("aria-valuetext", `${s.mode === "live" ? "Live, " : ""}${formatClock(pos)}`);
    // Axis labels.
    const width = track.clientWidth || 600;
    const stepMs = tickStep(span, width);
    // Labels whose text would be cut at either edge are left out.
    const edge = 28 / width;
    const times = ticks(start, span, stepMs).filter((t) => (t - start) / span > edge && (t - start) / span < 1 - edge);
    while (axis.children.length > times.length) axis.lastElementChild?.remove();
    while (axis.children.length < times.length) axis.append(el("span", "tl-tick"));
    times.forEach((t, i) => {
      const d = /** @type {HTMLElement} */ (axis.children[i]);
      const date = new Date(t);
      const midnight = date.getHours() === 0 && date.getMinutes() === 0;
      const text = midnight ? date.toLocaleDateString([], { weekday: "short", day: "numeric" }) : `${pad2(date.getHours())}:${pad2(date.getMinutes())}`;
      if (d.textContent !== text) d.textContent = text;
      d.classList.toggle("is-day", midnight);
      d.style.left = `${(((t - start) / span) * 100).toFixed(4)}%`;
    });
    // Controls and clock.
    const isLive = s.mode === "live";
    const clockText = formatClock(pos);
    if (clock.textContent !== clockText) clock.textContent = clockText;
    clock.setAttribute("datetime", new Date(pos).toISOString());
    const modeText = isLive ? "Live" : s.paused ? "Paused" : s.rate === 1 ? "Recorded" : `Recorded ${speedLabel(s.rate)}`;
    if (mode.textContent !== modeText) mode.textContent = modeText;
    this.root.dataset.mode = isLive ? "live" : s.paused ? "paused" : "playing";
    const showPlay = !isLive && s.paused;
    play.setAttribute("aria-label", showPlay ? "Play" : "Pause");
    play.querySelector("path")?.setAttribute("d", showPlay ? ICONS.play : ICONS.pause);
    step.disabled = isLive || !s.paused;
    live.disabled = isLive;
    live.setAttribute("aria-pressed", String(isLive));
    if (speed.value !== String(s.rate)) speed.value = String(s.rate);
    const label = spanLabel(span);
    if (spanText.textContent !== label) spanText.textContent = label;
    zoomIn.disabled = span <= MIN_SPAN;
    zoomOut.disabled = span >= MAX_SPAN;
  }

  /** Keep the view on what can exist: not past now + a little, not before a week before the retention. */
  #clampView() {
    const now = Date.now();
    const maxStart = now + this.span * 0.1 - this.span;
    if (this.viewStart > maxStart) this.viewStart = maxStart;
    const earliest = (this.retention?.start ?? now - MAX_SPAN) - this.span * 0.5;
    if (this.viewStart < earliest) this.viewStart = earliest;
  }

  /** @param {Record<string, unknown>} detail */
  #intent(detail) {
    this.showError("");
    this.dispatchEvent(new CustomEvent("intent", { detail }));
  }

  #seekPicker() {
    const picker = this.#els.picker;
    delete picker.dataset.typing;
    const t = fromLocalInput(picker.value);
    if (!Number.isFinite(t)) return this.showError("Choose a date and a time first.");
    if (t > Date.now()) return this.showError("That time is in the future: nothing is recorded yet.");
    this.#followHead = true;
    this.#intent({ action: "seek", time: t });
  }

  /** @param {number} clientX */
  #timeAt(clientX) {
    const r = this.#els.track.getBoundingClientRect();
    const frac = Math.min(1, Math.max(0, (clientX - r.left) / (r.width || 1)));
    return this.viewStart + frac * this.span;
  }

  /** @param {WheelEvent} e */
  #onWheel(e) {
    e.preventDefault();
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      // A sideways swipe pans.
      this.#followHead = false;
      this.viewStart += (e.deltaX / (this.#els.track.clientWidth || 600)) * this.span;
      this.#clampView();
      this.render();
      this.dispatchEvent(new CustomEvent("view"));
      return;
    }
    const factor = Math.exp(Math.max(-1, Math.min(1, e.deltaY / 300)));
    this.#followHead = false;
    this.setSpan(this.span * factor, this.#timeAt(e.clientX));
  }

  /** @param {PointerEvent} e */
  #onPointerDown(e) {
    if (e.button !== 0) return;
    this.#els.track.setPointerCapture?.(e.pointerId);
    this.#pointers.set(e.pointerId, { x: e.clientX });
    if (this.#pointers.size === 2) {
      // Two fingers: pinch to zoom around their middle; no seek.
      const [a, b] = [...this.#pointers.values()];
      const dist = Math.abs(/** @type {{x:number}} */ (a).x - /** @type {{x:number}} */ (b).x) || 1;
      this.#pinch = { dist, span: this.span, center: this.#timeAt((/** @type {{x:number}} */ (a).x + /** @type {{x:number}} */ (b).x) / 2) };
      this.#drag = null;
      this.scrubbing = null;
      return;
    }
    const headRect = this.#els.head.getBoundingClientRect();
    const onHead = !this.#els.head.hidden && Math.abs(e.clientX - (headRect.left + headRect.width / 2)) <= 14;
    this.#drag = { id: e.pointerId, x: e.clientX, startX: e.clientX, viewStart: this.viewStart, onHead, moved: false };
  }

  /** @param {PointerEvent} e */
  #onPointerMove(e) {
    const hover = this.#els.hover;
    if (e.pointerType === "mouse" && !this.#drag) {
      const t = this.#timeAt(e.clientX);
      const r = this.#els.track.getBoundingClientRect();
      hover.hidden = false;
      hover.textContent = formatClock(t);
      hover.style.left = `${(((e.clientX - r.left) / (r.width || 1)) * 100).toFixed(2)}%`;
    }
    const p = this.#pointers.get(e.pointerId);
    if (p) p.x = e.clientX;
    if (this.#pinch && this.#pointers.size >= 2) {
      const [a, b] = [...this.#pointers.values()];
      const dist = Math.abs(/** @type {{x:number}} */ (a).x - /** @type {{x:number}} */ (b).x) || 1;
      this.#followHead = false;
      this.setSpan((this.#pinch.span * this.#pinch.dist) / dist, this.#pinch.center);
      return;
    }
    const d = this.#drag;
    if (!d || d.id !== e.pointerId) return;
    if (Math.abs(e.clientX - d.startX) > 4) d.moved = true;
    if (!d.moved) return;
    if (d.onHead) {
      this.scrubbing = this.#timeAt(e.clientX);
      this.render();
    } else {
      this.#followHead = false;
      const w = this.#els.track.clientWidth || 600;
      this.viewStart = d.viewStart - ((e.clientX - d.startX) / w) * this.span;
      this.#clampView();
      this.render();
    }
  }

  /** @param {PointerEvent} e @param {boolean} [cancel] */
  #onPointerUp(e, cancel = false) {
    this.#pointers.delete(e.pointerId);
    if (this.#pinch) {
      if (this.#pointers.size < 2) this.#pinch = null;
      this.dispatchEvent(new CustomEvent("view"));
      return;
    }
    const d = this.#drag;
    if (!d || d.id !== e.pointerId) return;
    this.#drag = null;
    const scrubbed = this.scrubbing;
    this.scrubbing = null;
    if (cancel) return this.render();
    if (d.moved && !d.onHead) {
      this.dispatchEvent(new CustomEvent("view"));
      return;
    }
    const t = d.moved && scrubbed !== null ? scrubbed : this.#timeAt(e.clientX);
    this.#followHead = true;
    this.#seekTo(t);
  }

  /** @param {number} t */
  #seekTo(t) {
    const now = Date.now();
    if (t >= now - 1000) return this.#intent({ action: "live" });
    this.#intent({ action: "seek", time: t });
  }

  /** Arrow keys on the focused track move the playhead by a tick; Enter plays from there. @param {KeyboardEvent} e */
  #onTrackKey(e) {
    const step = tickStep(this.span, this.#els.track.clientWidth || 600) / 5;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      e.stopPropagation();
      this.#seekTo(this.position + (e.key === "ArrowLeft" ? -step : step));
    }
  }
}

// ---------------------------------------------------------------- the controller

/** Plain words for a playback request's failure. @param {number} status @param {string} [action] */
export function playbackErrorText(status, action = "") {
  if (status === 403) return "You are not allowed to play back recordings of this camera.";
  if (status === 404) return "There is no recording to play for this camera.";
  if (status === 405 || status === 501) return "This gateway does not offer playback.";
  if (status === 409 && action === "speed") return "The recorder cannot play at that speed (it may not play backwards).";
  if (status === 409 && action === "step") return "Pause first to step one frame.";
  if (status === 409) return "The recorder refused that just now.";
  if (status === 416 || status === 457) return "Nothing is recorded at that time.";
  if (status === 429 || status === 503) return "Too many playbacks are running; try again in a moment.";
  if (status === 502 || status === 504) return "The recorder does not answer.";
  if (status === 0) return "The gateway cannot be reached.";
  return `Playback failed (HTTP ${status}).`;
}

/**
 * @typedef {object} PlaybackHost what the controller needs from the page
 * @property {() => HTMLVideoElement | null} video the open tile's video element (the playback stream goes there)
 * @property {(stream: MediaStream | null) => void} show put a stream on the open tile's video (null: none)
 * @property {() => void} goLive close playback on the tile and let the live session run again
 * @property {(label: string | null, message?: string) => void} status the tile's badge in playback (null: live)
 * @property {() => void} [unauthorized] the session ended: sign in again
 */

/**
 * One camera's playback: opens a playback session at a time, sends controls, keeps what the
 * page shows (position, pause, speed) answering at once.
 */
export class PlaybackController {
  /** @type {Timeline} */
  #tl;
  /** @type {PlaybackHost} */
  #host;
  /** @type {URL} */
  #base;
  /** @type {string | null} */
  #camera = null;
  /** @type {PlaybackClient | null} */
  #session = null;
  /** The session's offer/answer is done (controls can go). @type {Promise<unknown> | null} */
  #opening = null;
  /** Media of the session reached the page. */
  #streaming = false;
  /** Where the recorded time was at `#atPerf` (performance.now()), and how it moves. */
  #pos = 0;
  #atPerf = 0;
  #paused = false;
  #rate = 1;
  /** Bumped on every camera change and every new session: stale answers are dropped. */
  #gen = 0;
  /** Serialises control requests so that their answers arrive in order. */
  #queue = Promise.resolve();
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #timer;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #refresh;
  /** @type {AbortController | null} */
  #fetching = null;
  /** Cameras whose recorder refused (or never answered) a reverse speed. @type {Set<string>} */
  #noReverse = new Set();

  /** @param {{ timeline: Timeline, host: PlaybackHost, base: URL }} o */
  constructor(o) {
    this.#tl = o.timeline;
    this.#host = o.host;
    this.#base = o.base;
    this.#tl.addEventListener("intent", (e) => this.#onIntent(/** @type {CustomEvent} */ (e).detail));
    this.#tl.addEventListener("view", () => void this.loadRecordings());
  }

  get mode() {
    return this.#session ? "playback" : "live";
  }

  /** The camera whose timeline is shown, or null. @param {string | null} id */
  setCamera(id) {
    if (id === this.#camera) return;
    this.#stopSession();
    this.#camera = id;
    this.#gen++;
    clearInterval(this.#timer);
    clearInterval(this.#refresh);
    if (!id) return;
    this.#tl.reset();
    this.#tl.setReverse(!this.#noReverse.has(id));
    this.#timer = setInterval(() => this.#tick(), 250);
    this.#refresh = setInterval(() => void this.loadRecordings(), REFRESH_MS);
    void this.loadRecordings();
  }

  /** The recorded time of the picture on screen, ms (live: null). */
  get frameTime() {
    return this.#session ? this.#frameNow() : null;
  }

  /** The recorded time the client measured for the frame on screen, else the estimate. */
  #frameNow() {
    const t = this.#streaming ? this.#session?.currentTime() : null;
    return t ? t.getTime() : this.#now();
  }

  /** Fetch the recorded ranges around the view. Resolves false when the camera has none (the timeline hides). */
  async loadRecordings() {
    const id = this.#camera;
    if (!id) return false;
    this.#fetching?.abort();
    const ctl = new AbortController();
    this.#fetching = ctl;
    const from = Math.round(this.#tl.viewStart - this.#tl.span);
    const to = Math.round(Math.min(Date.now(), this.#tl.viewStart + 2 * this.#tl.span));
    const url = new URL(`api/cameras/${encodeURIComponent(id)}/recordings?from=${from}&to=${Math.max(from, to)}`, this.#base);
    let res;
    try {
      res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store", signal: ctl.signal });
    } catch {
      if (!ctl.signal.aborted && id === this.#camera) this.#tl.showError("The recordings cannot be listed: the gateway cannot be reached.");
      return false;
    }
    if (id !== this.#camera) return false;
    if (res.status === 401) {
      this.#host.unauthorized?.();
      return false;
    }
    if (!res.ok) {
      this.#tl.root.hidden = true;
      this.#tl.dispatchEvent(new CustomEvent("availability", { detail: { available: false, status: res.status } }));
      return false;
    }
    /** @type {any} */
    let body;
    try {
      body = await res.json();
    } catch {
      return false;
    }
    if (id !== this.#camera || !body || !Array.isArray(body.ranges)) return false;
    const ranges = body.ranges
      .map((/** @type {{start: string, end: string}} */ r) => ({ start: Date.parse(r.start), end: Date.parse(r.end) }))
      .filter((/** @type {{start: number, end: number}} */ r) => Number.isFinite(r.start) && Number.isFinite(r.end) && r.end > r.start);
    const retention = body.retention ? { start: Date.parse(body.retention.from), end: Date.parse(body.retention.to) } : null;
    this.#tl.setRecordings({ ranges, retention: retention ?? { start: Date.now() - DAY, end: Date.now() } });
    if (this.#tl.root.hidden) {
      this.#tl.root.hidden = false;
      this.#tl.dispatchEvent(new CustomEvent("availability", { detail: { available: true } }));
    }
    return true;
  }

  /** End playback and everything this controller holds (leaving the single view). */
  close() {
    this.setCamera(null);
  }

  #now() {
    if (this.#paused) return this.#pos;
    return this.#pos + (performance.now() - this.#atPerf) * this.#rate;
  }

  /** @param {number} pos @param {boolean} paused @param {number} rate */
  #set(pos, paused, rate) {
    this.#pos = pos;
    this.#atPerf = performance.now();
    this.#paused = paused;
    this.#rate = rate;
    this.#show();
  }

  #show() {
    const playing = Boolean(this.#session);
    this.#tl.setState({ mode: playing ? "playback" : "live", position: playing ? this.#frameNow() : Date.now(), paused: this.#paused, rate: this.#rate });
    if (playing) {
      const label = this.#paused ? "Paused" : this.#rate === 1 ? "Recorded" : `Recorded ${speedLabel(this.#rate)}`;
      this.#host.status(label, this.#streaming ? "" : "Opening the recording…");
    }
  }

  #tick() {
    if (this.#session && !this.#paused) {
      const p = this.#frameNow();
      // Played into the present: that is live.
      if (this.#rate > 0 && p >= Date.now() - 500) return this.#goLive();
    }
    this.#show();
  }

  /** @param {{ action: string, time?: number, seconds?: number, rate?: number }} d */
  #onIntent(d) {
    if (!this.#camera) return;
    switch (d.action) {
      case "live":
        return this.#goLive();
      case "seek":
        return this.#seek(/** @type {number} */ (d.time));
      case "jump": {
        const to = Math.min(Date.now(), (this.#session ? this.#frameNow() : Date.now()) + (d.seconds ?? 0) * 1000);
        if (!this.#session) return this.#open(to, false);
        this.#set(to, this.#paused, this.#rate);
        return this.#control("jump", [d.seconds]);
      }
      case "pause":
        // Pausing live holds the picture of now: playback from now, paused.
        if (!this.#session) return this.#open(Date.now() - 1000, true);
        this.#set(this.#frameNow(), true, this.#rate);
        return this.#control("pause", []);
      case "resume":
        if (!this.#session) return;
        this.#set(this.#frameNow(), false, this.#rate);
        return this.#control("resume", []);
      case "speed": {
        const rate = /** @type {number} */ (d.rate);
        if (!this.#session) return this.#open(Date.now() - (rate > 1 ? 60_000 : 1000), false, rate);
        const before = this.#rate;
        this.#set(this.#frameNow(), this.#paused, rate);
        return this.#control("speed", [rate], () => this.#set(this.#now(), this.#paused, before));
      }
      case "step":
        if (!this.#session || !this.#paused) return this.#tl.showError("Pause first to step one frame.");
        this.#set(this.#pos + 40, true, this.#rate);
        return this.#control("step", []);
    }
  }

  /** @param {number} t */
  #seek(t) {
    const to = Math.min(t, Date.now() - 1000);
    if (!this.#session) return this.#open(to, false);
    this.#set(to, this.#paused, this.#rate);
    this.#control("seek", [new Date(to)]);
  }

  /**
   * Open a playback session at `t`; the tile shows it as soon as media flows.
   * @param {number} t @param {boolean} paused @param {number} [rate]
   */
  #open(t, paused, rate = 1) {
    const id = this.#camera;
    const video = this.#host.video();
    if (!id || !video) return;
    this.#stopSession();
    const gen = ++this.#gen;
    // The tile leaves live first (its stream goes), then the recording takes its video element.
    this.#streaming = false;
    const client = new PlaybackClient({ camera: id, start: new Date(t), video, base: this.#base.href });
    this.#session = client;
    this.#set(t, paused, rate);
    client.addEventListener("state", (e) => {
      if (gen !== this.#gen) return;
      const st = /** @type {CustomEvent} */ (e).detail;
      const pos = st.position instanceof Date ? st.position.getTime() : Number(st.position);
      if (Number.isFinite(pos)) this.#set(pos, Boolean(st.paused), Number(st.rate) || this.#rate);
    });
    client.addEventListener("ended", (e) => {
      if (gen !== this.#gen) return;
      const reason = /** @type {CustomEvent} */ (e).detail?.reason;
      this.#fail(reason ? `Playback ended: ${reason}.` : "Playback ended.");
    });
    video.addEventListener(
      "loadeddata",
      () => {
        if (gen !== this.#gen) return;
        this.#streaming = true;
        this.#show();
      },
      { once: true },
    );
    this.#opening = client.open().then(
      () => {
        if (gen !== this.#gen) return;
        if (video.srcObject instanceof MediaStream) this.#host.show(video.srcObject);
        this.#show();
      },
      (/** @type {any} */ err) => {
        if (gen !== this.#gen) return;
        if (err?.status === 401) return this.#host.unauthorized?.();
        this.#fail(playbackErrorText(typeof err?.status === "number" ? err.status : 0));
      },
    );
    // No spinner that waits for ever: a recording that does not arrive is said so.
    setTimeout(() => {
      if (gen === this.#gen && !this.#streaming) this.#fail("The recording did not arrive from the recorder.");
    }, OPEN_TIMEOUT_MS);
    // Controls given before it opened: the gateway gets them once it has.
    if (paused) this.#control("pause", []);
    if (rate !== 1) this.#control("speed", [rate]);
    this.#show();
  }

  /**
   * Send one control; the screen already shows its effect. On refusal: say why and `undo`.
   * @param {"seek" | "pause" | "resume" | "speed" | "step" | "jump"} method @param {unknown[]} args @param {() => void} [undo]
   */
  #control(method, args, undo) {
    const client = this.#session;
    const gen = this.#gen;
    const opening = this.#opening;
    this.#queue = this.#queue.then(async () => {
      if (gen !== this.#gen || !client) return;
      await opening;
      if (gen !== this.#gen || !client.location) return;
      try {
        // The answer arrives as a `state` event too (handled above).
        await /** @type {(...a: unknown[]) => Promise<unknown>} */ (client[method]).apply(client, args);
      } catch (/** @type {any} */ err) {
        if (gen !== this.#gen) return;
        if (err?.status === 401) return this.#host.unauthorized?.();
        undo?.();
        if (method === "speed" && err?.status === 409 && Number(args[0]) < 0 && this.#camera) {
          // The recorder cannot play backwards: playback goes on forward; reverse is off for this camera.
          this.#noReverse.add(this.#camera);
          this.#tl.setReverse(false);
          return this.#tl.showError("This recorder does not play backwards, so the reverse speeds are off for this camera. Playback goes on forward.");
        }
        this.#tl.showError(playbackErrorText(typeof err?.status === "number" ? err.status : 0, method));
      }
    });
  }

  /** @param {string} text */
  #fail(text) {
    this.#goLive();
    this.#tl.showError(text);
  }

  #goLive() {
    const had = Boolean(this.#session);
    this.#stopSession();
    this.#gen++;
    this.#set(Date.now(), false, 1);
    if (had) this.#host.goLive();
  }

  #stopSession() {
    const s = this.#session;
    this.#session = null;
    this.#opening = null;
    this.#streaming = false;
    if (!s) return;
    void s.close();
    this.#host.show(null);
    this.#host.status(null);
  }
}
