/**
 * The operator's console preferences (layout, favourites, filters, keyboard shortcuts on/off),
 * kept in this browser's localStorage under the signed-in user's subject, so two people sharing
 * a control-room browser each find their own. Unreadable or foreign values fall back to the
 * defaults; storage that refuses writes (private mode, quota) only loses persistence.
 */

const PREFIX = "gatehouse.console.";

/**
 * @typedef {{ layout: string, favourites: string[], group: string, favouritesOnly: boolean, shortcuts: boolean, quality: "auto" | "high" | "low" }} Prefs
 */

/** @returns {Prefs} */
export function defaultPrefs() {
  return { layout: "auto", favourites: [], group: "", favouritesOnly: false, shortcuts: true, quality: "auto" };
}

/**
 * Parse stored JSON into preferences, keeping only well-typed fields.
 * @param {string | null} text
 * @returns {Prefs}
 */
export function parsePrefs(text) {
  const p = defaultPrefs();
  if (!text) return p;
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return p;
  }
  if (!v || typeof v !== "object") return p;
  if (typeof v.layout === "string" && v.layout.length <= 16) p.layout = v.layout;
  if (Array.isArray(v.favourites)) p.favourites = v.favourites.filter((/** @type {unknown} */ x) => typeof x === "string").slice(0, 1000);
  if (typeof v.group === "string" && v.group.length <= 200) p.group = v.group;
  if (typeof v.favouritesOnly === "boolean") p.favouritesOnly = v.favouritesOnly;
  if (typeof v.shortcuts === "boolean") p.shortcuts = v.shortcuts;
  if (v.quality === "auto" || v.quality === "high" || v.quality === "low") p.quality = v.quality;
  return p;
}

/** Preferences of one user; `change` fires after every `set`. */
export class PrefStore extends EventTarget {
  #key = `${PREFIX}anonymous`;
  /** @type {Prefs} */
  #prefs = defaultPrefs();

  constructor() {
    super();
    this.#load();
  }

  /**
   * Switch to `user`'s preferences (the subject from `auth/me`; "" when nobody is signed in).
   * @param {string} user
   */
  useUser(user) {
    const key = `${PREFIX}${user ? `user:${user}` : "anonymous"}`;
    if (key === this.#key) return;
    this.#key = key;
    this.#load();
    this.dispatchEvent(new Event("change"));
  }

  /** @returns {Readonly<Prefs>} */
  get() {
    return this.#prefs;
  }

  /** @param {Partial<Prefs>} patch */
  set(patch) {
    this.#prefs = { ...this.#prefs, ...patch };
    try {
      localStorage.setItem(this.#key, JSON.stringify(this.#prefs));
    } catch {
      // no storage: the choice lasts until the page closes
    }
    this.dispatchEvent(new Event("change"));
  }

  /** @param {string} camera */
  isFavourite(camera) {
    return this.#prefs.favourites.includes(camera);
  }

  /** @param {string} camera */
  toggleFavourite(camera) {
    const fav = this.#prefs.favourites;
    this.set({ favourites: fav.includes(camera) ? fav.filter((c) => c !== camera) : [...fav, camera] });
  }

  #load() {
    let text = null;
    try {
      text = localStorage.getItem(this.#key);
    } catch {
      // storage blocked
    }
    this.#prefs = parsePrefs(text);
  }
}
