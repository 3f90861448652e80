/**
 * The operator's console preferences (layout, favourites, filters, keyboard shortcuts on/off,
 * quality), kept on the gateway per signed-in user (`api/me/preferences`) so they follow the user
 * to another workstation, and in this browser's localStorage under the user's subject, so two
 * people sharing a control-room browser each find their own and a gateway without sign-in (404),
 * unreachable or holding nothing yet still has them. Changes are written to both (to the gateway
 * after a short pause). Unreadable or foreign values fall back to the defaults; storage that
 * refuses writes (private mode, quota) only loses persistence.
 */
import { csrfHeaders, resetCsrf } from "./csrf.js";

/** Changes within this pause go to the gateway as one write, ms. */
const PUSH_DELAY_MS = 400;

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
  /** @type {URL | undefined} */
  #base;
  /** Which `useUser` call the gateway's answer belongs to. */
  #generation = 0;
  /** The gateway keeps this user's preferences (it answered the read). */
  #server = false;
  /** The user changed something since `useUser`: the gateway's older copy must not overwrite it. */
  #dirty = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #pushTimer;

  /** @param {{ base?: URL }} [opts] where the gateway's API lives (default: this page's directory) */
  constructor(opts = {}) {
    super();
    this.#base = opts.base ?? (typeof document !== "undefined" ? new URL(".", document.baseURI) : undefined);
    this.#load();
    // A change made just before the page closes still reaches the gateway.
    if (typeof window !== "undefined") window.addEventListener("pagehide", () => this.#flush());
  }

  /**
   * Switch to `user`'s preferences (the subject from `auth/me`; "" when nobody is signed in).
   * @param {string} user
   */
  useUser(user) {
    const key = `${PREFIX}${user ? `user:${user}` : "anonymous"}`;
    if (key === this.#key) return;
    this.#flush();
    this.#key = key;
    const hadLocal = this.#load();
    this.#server = false;
    this.#dirty = false;
    const generation = ++this.#generation;
    this.dispatchEvent(new Event("change"));
    if (user) void this.#pull(generation, hadLocal);
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
    this.#dirty = true;
    if (this.#server) this.#schedulePush();
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

  /** @returns {boolean} whether this browser held preferences for the user */
  #load() {
    let text = null;
    try {
      text = localStorage.getItem(this.#key);
    } catch {
      // storage blocked
    }
    this.#prefs = parsePrefs(text);
    return text !== null;
  }

  #saveLocal() {
    try {
      localStorage.setItem(this.#key, JSON.stringify(this.#prefs));
    } catch {
      // no storage
    }
  }

  /**
   * Read the user's preferences from the gateway. None there yet: this browser's copy (if any)
   * becomes theirs. No sign-in layer (404), signed out (401) or unreachable: this browser's copy
   * stays the only one.
   * @param {number} generation
   * @param {boolean} hadLocal
   */
  async #pull(generation, hadLocal) {
    if (!this.#base) return;
    let body;
    try {
      const res = await fetch(new URL("api/me/preferences", this.#base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
      if (!res.ok) return;
      body = await res.json();
    } catch {
      return;
    }
    if (generation !== this.#generation || !body || typeof body !== "object") return;
    this.#server = true;
    const stored = body.preferences;
    if (stored && typeof stored === "object" && !this.#dirty) {
      this.#prefs = parsePrefs(JSON.stringify(stored));
      this.#saveLocal();
      this.dispatchEvent(new Event("change"));
    } else if (this.#dirty || hadLocal) {
      this.#schedulePush();
    }
  }

  #schedulePush() {
    clearTimeout(this.#pushTimer);
    this.#pushTimer = setTimeout(() => {
      this.#pushTimer = undefined;
      void this.#push(JSON.stringify(this.#prefs), true);
    }, PUSH_DELAY_MS);
  }

  /** Send a pending change now (page closing, user switching). */
  #flush() {
    if (this.#pushTimer === undefined) return;
    clearTimeout(this.#pushTimer);
    this.#pushTimer = undefined;
    void this.#push(JSON.stringify(this.#prefs), false);
  }

  /**
   * @param {string} body the whole document
   * @param {boolean} retry once more with a fresh CSRF token after a 403
   */
  async #push(body, retry) {
    if (!this.#base) return;
    try {
      const res = await fetch(new URL("api/me/preferences", this.#base), {
        method: "PUT",
        credentials: "same-origin",
        keepalive: true,
        headers: { "Content-Type": "application/json", Accept: "application/json", ...(await csrfHeaders(this.#base)) },
        body,
      });
      if (res.status === 403 && retry) {
        resetCsrf();
        await this.#push(body, false);
      }
    } catch {
      // unreachable: this browser's copy holds the change; the next change sends the whole document
    }
  }
}
