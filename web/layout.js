/**
 * Grid layouts of the live view: how many tiles a page holds and how they are arranged, so the
 * grid always fills the space it is given without scrolling, whatever the number of cameras.
 *
 * - `auto` picks the column count that shows every camera (up to `AUTO_MAX` per page) as large
 *   as the space allows; `1`, `2x2`, `3x3`, `4x4` hold a fixed number of tiles per page and
 *   `1+5` one large tile and five small ones (a 3×3 grid whose first tile spans 2×2).
 * - With more cameras than a page holds, the rest are on further pages (`page`, `pageCount`).
 *
 * The arithmetic is pure (`fitGrid`, `paginate`) and exported for tests; `GridLayout` applies
 * a result to the grid element through CSS custom properties and a `data-layout` attribute
 * (CSSOM only: the page's CSP forbids inline styles, not script-set properties).
 */

/** Cameras per page in the automatic layout before it pages. */
export const AUTO_MAX = 36;

/**
 * @typedef {{ id: string, label: string, cols: number, rows: number, slots: number, big: boolean }} LayoutDef
 */

/** @type {readonly LayoutDef[]} */
export const LAYOUTS = Object.freeze([
  { id: "auto", label: "Fit all", cols: 0, rows: 0, slots: AUTO_MAX, big: false },
  { id: "1", label: "1", cols: 1, rows: 1, slots: 1, big: false },
  { id: "2x2", label: "2×2", cols: 2, rows: 2, slots: 4, big: false },
  { id: "3x3", label: "3×3", cols: 3, rows: 3, slots: 9, big: false },
  { id: "4x4", label: "4×4", cols: 4, rows: 4, slots: 16, big: false },
  { id: "1+5", label: "1+5", cols: 3, rows: 3, slots: 6, big: true },
]);

/** @param {string | null | undefined} id */
export function layoutById(id) {
  return LAYOUTS.find((l) => l.id === id) ?? /** @type {LayoutDef} */ (LAYOUTS[0]);
}

/**
 * The column and row count that shows `n` tiles of `aspect` (width ÷ height) largest in a
 * `width` × `height` box with `gap` between cells (all CSS px). Ties go to fewer columns.
 * @param {number} n
 * @param {number} width
 * @param {number} height
 * @param {number} gap
 * @param {number} [aspect]
 * @returns {{ cols: number, rows: number, tileWidth: number, tileHeight: number }}
 */
export function fitGrid(n, width, height, gap, aspect = 16 / 9) {
  const count = Math.max(1, Math.floor(n));
  let best = { cols: 1, rows: count, tileWidth: 0, tileHeight: 0 };
  let bestArea = -1;
  for (let cols = 1; cols <= count; cols++) {
    const rows = Math.ceil(count / cols);
    // A column count that leaves a whole row empty is never better than one fewer.
    if (cols > 1 && Math.ceil(count / (cols - 1)) === rows) continue;
    const cellW = Math.max(0, (width - gap * (cols - 1)) / cols);
    const cellH = Math.max(0, (height - gap * (rows - 1)) / rows);
    const tileW = Math.min(cellW, cellH * aspect);
    const tileH = tileW / aspect;
    const area = tileW * tileH;
    if (area > bestArea + 0.5) {
      bestArea = area;
      best = { cols, rows, tileWidth: tileW, tileHeight: tileH };
    }
  }
  return best;
}

/**
 * Which of `count` items page `page` of `layout` shows.
 * @param {number} count
 * @param {LayoutDef} layout
 * @param {number} page 0-based; clamped into range
 * @returns {{ page: number, pageCount: number, start: number, end: number }} `end` exclusive
 */
export function paginate(count, layout, page) {
  const per = Math.max(1, layout.slots);
  const pageCount = Math.max(1, Math.ceil(count / per));
  const p = Math.min(pageCount - 1, Math.max(0, Math.floor(page) || 0));
  return { page: p, pageCount, start: p * per, end: Math.min(count, (p + 1) * per) };
}

/**
 * Arranges the tiles of one page of the grid. Emits `change` when the page count or page moves.
 */
export class GridLayout extends EventTarget {
  /** @type {HTMLElement} */
  #grid;
  /** @type {LayoutDef} */
  #layout = /** @type {LayoutDef} */ (LAYOUTS[0]);
  #page = 0;
  #pageCount = 1;
  /** Tiles shown on the current page at the last `arrange`. */
  #shown = 0;
  /** @type {ResizeObserver | null} */
  #resize = null;
  /** The animation frame an automatic layout is fitted in (0: none pending). */
  #fitFrame = 0;

  /** @param {HTMLElement} grid the element whose children are the tiles */
  constructor(grid) {
    super();
    this.#grid = grid;
    if (typeof ResizeObserver === "function") {
      this.#resize = new ResizeObserver(() => this.#fit());
      this.#resize.observe(grid);
    }
  }

  get layout() {
    return this.#layout;
  }

  get page() {
    return this.#page;
  }

  get pageCount() {
    return this.#pageCount;
  }

  /** @param {string} id one of LAYOUTS; unknown ids fall back to `auto` */
  setLayout(id) {
    const next = layoutById(id);
    if (next === this.#layout) return;
    this.#layout = next;
    this.#page = 0;
    this.dispatchEvent(new Event("change"));
  }

  /** @param {number} page 0-based; clamped at the next `arrange` */
  setPage(page) {
    if (page === this.#page) return;
    this.#page = page;
    this.dispatchEvent(new Event("change"));
  }

  /**
   * Lay out `tiles` (the visible list, in display order): the ones on the current page get a
   * CSS `order` and the grid's size; returns them. The caller hides and pauses the others.
   * @template {{ el: HTMLElement }} T
   * @param {T[]} tiles
   * @returns {T[]}
   */
  arrange(tiles) {
    const { page, pageCount, start, end } = paginate(tiles.length, this.#layout, this.#page);
    const changed = page !== this.#page || pageCount !== this.#pageCount;
    this.#page = page;
    this.#pageCount = pageCount;
    const shown = tiles.slice(start, end);
    shown.forEach((t, i) => {
      t.el.style.order = String(i);
      t.el.classList.toggle("is-big", this.#layout.big && i === 0);
    });
    for (const t of tiles) if (!shown.includes(t)) t.el.classList.remove("is-big");
    this.#shown = shown.length;
    this.#grid.dataset.layout = this.#layout.id;
    this.#fitSoon();
    if (changed) this.dispatchEvent(new Event("change"));
    return shown;
  }

  /**
   * An automatic layout is fitted to the grid's size at the next animation frame, before that frame
   * is drawn: measuring it now would lay the whole page out at once, in the middle of the work that
   * starts its tiles (about 30 ms on a page given its 16 tiles, measured in Chromium, before the
   * grid's offer could go). A fixed layout needs no measure and is set now.
   */
  #fitSoon() {
    if (this.#layout.cols || typeof requestAnimationFrame !== "function") return this.#fit();
    if (this.#fitFrame) return;
    this.#fitFrame = requestAnimationFrame(() => {
      this.#fitFrame = 0;
      this.#fit();
    });
  }

  /** Columns and rows for the grid's current size. */
  #fit() {
    const g = this.#grid;
    let cols = this.#layout.cols;
    let rows = this.#layout.rows;
    if (!cols) {
      const box = g.getBoundingClientRect();
      const gap = parseFloat(getComputedStyle(g).rowGap) || 0;
      ({ cols, rows } = fitGrid(this.#shown || 1, box.width, box.height, gap));
    }
    const c = String(cols);
    const r = String(rows);
    if (g.style.getPropertyValue("--cols") !== c) g.style.setProperty("--cols", c);
    if (g.style.getPropertyValue("--rows") !== r) g.style.setProperty("--rows", r);
  }

  close() {
    if (this.#fitFrame) cancelAnimationFrame(this.#fitFrame);
    this.#fitFrame = 0;
    this.#resize?.disconnect();
    this.#resize = null;
  }
}
