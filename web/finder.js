/**
 * Finding cameras in the live view: search by name, filter by camera group, favourites only.
 * Favourites come first in the grid, then the gateway's order.
 *
 * `filterCameras` is pure (exported for tests); `Finder` binds it to the toolbar's search box,
 * group menu and favourites button and emits `change` when the selection changes.
 */

/**
 * @typedef {{ query: string, group: string, favouritesOnly: boolean, favourites: readonly string[] }} Filter
 * @typedef {{ id: string, name: string, groups: readonly string[] }} Findable
 */

/**
 * Lower-case, accents removed, runs of space collapsed: "Entrée  Nord" matches "entree nord".
 * @param {string} s
 */
export function fold(s) {
  return s.normalize("NFD").replace(/\p{M}+/gu, "").toLowerCase().replace(/\s+/g, " ").trim();
}

/**
 * The cameras `filter` keeps, favourites first, otherwise in the given order. Every word of the
 * query must appear in the camera's name or id.
 * @template {Findable} T
 * @param {readonly T[]} cams
 * @param {Filter} filter
 * @returns {T[]}
 */
export function filterCameras(cams, filter) {
  const words = fold(filter.query).split(" ").filter(Boolean);
  const fav = new Set(filter.favourites);
  const keep = cams.filter((c) => {
    if (filter.group && !c.groups.includes(filter.group)) return false;
    if (filter.favouritesOnly && !fav.has(c.id)) return false;
    if (words.length === 0) return true;
    const hay = `${fold(c.name)} ${fold(c.id)}`;
    return words.every((w) => hay.includes(w));
  });
  return [...keep.filter((c) => fav.has(c.id)), ...keep.filter((c) => !fav.has(c.id))];
}

/** The distinct groups of `cams`, sorted for the menu. @param {readonly Findable[]} cams */
export function groupsOf(cams) {
  return [...new Set(cams.flatMap((c) => c.groups))].sort((a, b) => a.localeCompare(b));
}

/** The toolbar's search box, group menu and favourites button. */
export class Finder extends EventTarget {
  /** @type {HTMLInputElement} */
  #search;
  /** @type {HTMLSelectElement} */
  #group;
  /** @type {HTMLButtonElement} */
  #favOnly;
  /** @type {import("./prefs.js").PrefStore} */
  #prefs;

  /**
   * @param {{ search: HTMLInputElement, group: HTMLSelectElement, favouritesOnly: HTMLButtonElement,
   *           prefs: import("./prefs.js").PrefStore }} parts
   */
  constructor(parts) {
    super();
    this.#search = parts.search;
    this.#group = parts.group;
    this.#favOnly = parts.favouritesOnly;
    this.#prefs = parts.prefs;
    this.#search.addEventListener("input", () => this.dispatchEvent(new Event("change")));
    this.#search.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.#search.value) {
        e.stopPropagation();
        this.#search.value = "";
        this.dispatchEvent(new Event("change"));
      } else if (e.key === "Escape") this.#search.blur();
    });
    this.#group.addEventListener("change", () => this.#prefs.set({ group: this.#group.value }));
    this.#favOnly.addEventListener("click", () => this.#prefs.set({ favouritesOnly: !this.#prefs.get().favouritesOnly }));
    this.#prefs.addEventListener("change", () => this.#render());
    this.#render();
  }

  /** @returns {Filter} */
  get filter() {
    const p = this.#prefs.get();
    return { query: this.#search.value, group: p.group, favouritesOnly: p.favouritesOnly, favourites: p.favourites };
  }

  /** True when something hides cameras (for the "no match" message). */
  get active() {
    const f = this.filter;
    return Boolean(f.query.trim() || f.group || f.favouritesOnly);
  }

  focusSearch() {
    this.#search.focus();
    this.#search.select();
  }

  clear() {
    this.#search.value = "";
    this.#prefs.set({ group: "", favouritesOnly: false });
  }

  /**
   * Offer the groups present in the camera list (a stored group that no longer exists is kept
   * as the selection so the list is visibly empty rather than silently unfiltered).
   * @param {readonly string[]} groups
   */
  setGroups(groups) {
    const selected = this.#prefs.get().group;
    const want = ["", ...groups];
    if (selected && !groups.includes(selected)) want.push(selected);
    const have = [...this.#group.options].map((o) => o.value);
    if (want.join("\n") !== have.join("\n")) {
      this.#group.replaceChildren(
        ...want.map((g) => {
          const o = document.createElement("option");
          o.value = g;
          o.textContent = g || "All groups";
          return o;
        }),
      );
    }
    this.#group.hidden = groups.length === 0 && !selected;
    this.#render();
  }

  #render() {
    const p = this.#prefs.get();
    if (this.#group.value !== p.group) this.#group.value = p.group;
    this.#favOnly.setAttribute("aria-pressed", String(p.favouritesOnly));
    this.dispatchEvent(new Event("change"));
  }
}
