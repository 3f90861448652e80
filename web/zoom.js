/**
 * Digital zoom of the single view: wheel (around the pointer), pinch (around the fingers'
 * midpoint) and drag to pan while zoomed. The picture never leaves its frame: the scale stays in
 * [1, MAX_SCALE] and the pan keeps the frame covered. Applied as a CSS transform on the video
 * (CSSOM, allowed by the page's CSP); the decoded stream is untouched, so a snapshot still
 * holds the whole frame.
 *
 * `clampView` is pure and exported for tests.
 */

/** Largest zoom factor. */
export const MAX_SCALE = 8;
/** Wheel sensitivity: scale factor per pixel of wheel delta. */
const WHEEL_RATE = 0.0025;

/**
 * @typedef {{ scale: number, x: number, y: number }} View
 * `x`, `y`: translation of the scaled picture in CSS px (≤ 0), origin at the frame's top-left.
 */

/**
 * Keep `v` inside the frame of `width` × `height`.
 * @param {View} v
 * @param {number} width
 * @param {number} height
 * @returns {View}
 */
export function clampView(v, width, height) {
  const scale = Math.min(MAX_SCALE, Math.max(1, v.scale));
  const x = Math.min(0, Math.max(width - width * scale, v.x));
  const y = Math.min(0, Math.max(height - height * scale, v.y));
  return { scale, x, y };
}

/**
 * Zoom `v` by `factor` keeping the point (`px`, `py`) of the frame where it is.
 * @param {View} v
 * @param {number} factor
 * @param {number} px
 * @param {number} py
 * @param {number} width
 * @param {number} height
 */
export function zoomAt(v, factor, px, py, width, height) {
  const scale = Math.min(MAX_SCALE, Math.max(1, v.scale * factor));
  const k = scale / v.scale;
  return clampView({ scale, x: px - (px - v.x) * k, y: py - (py - v.y) * k }, width, height);
}

export class Zoom extends EventTarget {
  /** @type {View} */
  #view = { scale: 1, x: 0, y: 0 };
  /** @type {HTMLElement | null} */
  #frame = null;
  /** @type {HTMLVideoElement | null} */
  #video = null;
  /** @type {Map<number, { x: number, y: number }>} active pointers, frame coordinates */
  #pointers = new Map();
  /** Pointer movement since pointerdown, to tell a tap from a drag (px). */
  #moved = 0;
  #ac = new AbortController();

  /** @returns {Readonly<View>} */
  get view() {
    return this.#view;
  }

  /** True right after a drag or pinch, so the click that ends it can be ignored. */
  get dragged() {
    return this.#moved > 6;
  }

  /**
   * Zoom this frame (the tile) and video; detaches from the previous one, at scale 1.
   * @param {HTMLElement | null} frame
   * @param {HTMLVideoElement | null} video
   */
  attach(frame, video) {
    if (frame === this.#frame && video === this.#video) return;
    this.reset();
    this.#ac.abort();
    this.#ac = new AbortController();
    this.#frame?.classList.remove("is-zoomable", "is-zoomed");
    this.#frame = frame;
    this.#video = video;
    this.#pointers.clear();
    if (!frame) return;
    frame.classList.add("is-zoomable");
    const opts = { signal: this.#ac.signal };
    frame.addEventListener("wheel", (e) => this.#onWheel(e), { ...opts, passive: false });
    frame.addEventListener("pointerdown", (e) => this.#onDown(e), opts);
    frame.addEventListener("pointermove", (e) => this.#onMove(e), opts);
    for (const t of ["pointerup", "pointercancel", "pointerleave"]) frame.addEventListener(t, (e) => this.#onUp(/** @type {PointerEvent} */ (e)), opts);
  }

  reset() {
    this.#set({ scale: 1, x: 0, y: 0 });
  }

  /** @param {number} factor zoom around the frame's centre (keys, buttons) */
  zoomBy(factor) {
    const box = this.#box();
    if (!box) return;
    this.#set(zoomAt(this.#view, factor, box.width / 2, box.height / 2, box.width, box.height));
  }

  #box() {
    return this.#frame?.getBoundingClientRect() ?? null;
  }

  /** @param {PointerEvent | WheelEvent} e */
  #local(e) {
    const b = /** @type {DOMRect} */ (this.#box());
    return { x: e.clientX - b.left, y: e.clientY - b.top };
  }

  /** Controls above the picture keep their own pointer handling. @param {Event} e */
  #onControl(e) {
    const t = /** @type {Element | null} */ (e.target);
    return Boolean(t?.closest?.(".tile-top, .tile-nav, .tile-zoom"));
  }

  /** @param {WheelEvent} e */
  #onWheel(e) {
    if (this.#onControl(e)) return;
    const box = this.#box();
    if (!box) return;
    e.preventDefault();
    const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * box.height : e.deltaY;
    const p = this.#local(e);
    this.#set(zoomAt(this.#view, Math.exp(-dy * WHEEL_RATE), p.x, p.y, box.width, box.height));
  }

  /** @param {PointerEvent} e */
  #onDown(e) {
    if (this.#onControl(e) || (e.pointerType === "mouse" && e.button !== 0)) return;
    this.#pointers.set(e.pointerId, this.#local(e));
    if (this.#pointers.size === 1) this.#moved = 0;
    try {
      this.#frame?.setPointerCapture(e.pointerId);
    } catch {
      // pointer already gone
    }
  }

  /** @param {PointerEvent} e */
  #onMove(e) {
    const prev = this.#pointers.get(e.pointerId);
    const box = this.#box();
    if (!prev || !box) return;
    const now = this.#local(e);
    if (this.#pointers.size >= 2) {
      // Pinch: scale by the change of distance, pan by the move of the midpoint.
      const [a, b] = [...this.#pointers.entries()];
      const other = /** @type {{ x: number, y: number }} */ ((a?.[0] === e.pointerId ? b : a)?.[1]);
      const before = Math.hypot(prev.x - other.x, prev.y - other.y);
      const after = Math.hypot(now.x - other.x, now.y - other.y);
      const mid0 = { x: (prev.x + other.x) / 2, y: (prev.y + other.y) / 2 };
      const mid1 = { x: (now.x + other.x) / 2, y: (now.y + other.y) / 2 };
      let v = before > 0 ? zoomAt(this.#view, after / before, mid0.x, mid0.y, box.width, box.height) : this.#view;
      v = clampView({ ...v, x: v.x + mid1.x - mid0.x, y: v.y + mid1.y - mid0.y }, box.width, box.height);
      this.#moved += Math.abs(after - before) + 1;
      this.#set(v);
    } else if (this.#view.scale > 1) {
      this.#moved += Math.abs(now.x - prev.x) + Math.abs(now.y - prev.y);
      this.#set(clampView({ ...this.#view, x: this.#view.x + now.x - prev.x, y: this.#view.y + now.y - prev.y }, box.width, box.height));
    }
    this.#pointers.set(e.pointerId, now);
  }

  /** @param {PointerEvent} e */
  #onUp(e) {
    this.#pointers.delete(e.pointerId);
  }

  /** @param {View} v */
  #set(v) {
    const same = v.scale === this.#view.scale && v.x === this.#view.x && v.y === this.#view.y;
    this.#view = v;
    const video = this.#video;
    if (video) {
      const t = v.scale === 1 ? "" : `translate(${v.x}px, ${v.y}px) scale(${v.scale})`;
      if (video.style.transform !== t) video.style.transform = t;
    }
    this.#frame?.classList.toggle("is-zoomed", v.scale > 1);
    if (!same) this.dispatchEvent(new Event("change"));
  }
}
