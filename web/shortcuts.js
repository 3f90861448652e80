/**
 * Keyboard shortcuts of the live view and their help overlay (`?`).
 *
 * Single-character shortcuts can be switched off (a speech-input user, or someone typing into a
 * kiosk, must not trigger them by accident: WCAG 2.1 "Character Key Shortcuts"); navigation keys
 * (arrows, Home/End, Escape, Enter) always work. The choice is kept in the user's preferences.
 * Keys typed into a text field, or with Ctrl/Alt/Meta, are never taken.
 */

/**
 * @typedef {{ keys: string[], label: string, when?: string, run?: (e: KeyboardEvent) => boolean | void, always?: boolean }} Shortcut
 * `keys`: KeyboardEvent.key values (letters match either case); `run` returns false when it did
 * nothing (the key then goes on to the page); `always`: not a character shortcut, listed only.
 */

/** @param {EventTarget | null} target */
function isTyping(target) {
  const t = /** @type {HTMLElement | null} */ (target);
  if (!t || !t.tagName) return false;
  if (t.isContentEditable) return true;
  if (t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  if (t.tagName !== "INPUT") return false;
  return !/^(button|checkbox|radio|range|submit|reset|color|file|image)$/i.test(/** @type {HTMLInputElement} */ (t).type);
}

export class Shortcuts {
  /** @type {Shortcut[]} */
  #list = [];
  #enabled = true;
  /** @type {HTMLDialogElement} */
  #dialog;
  /** @type {(on: boolean) => void} */
  #onToggle;

  /**
   * @param {{ dialog: HTMLDialogElement, enabled: boolean, onToggle: (on: boolean) => void }} opts
   *   `dialog`: the help overlay (its list is filled here); `onToggle`: store the choice
   */
  constructor(opts) {
    this.#dialog = opts.dialog;
    this.#enabled = opts.enabled;
    this.#onToggle = opts.onToggle;
    document.addEventListener("keydown", (e) => this.#onKey(e));
    this.#dialog.addEventListener("click", (e) => {
      // A click on the backdrop (outside the panel) closes the overlay.
      if (e.target === this.#dialog) this.#dialog.close();
    });
    this.#dialog.querySelector("[data-close]")?.addEventListener("click", () => this.#dialog.close());
    const toggle = /** @type {HTMLInputElement | null} */ (this.#dialog.querySelector("[data-shortcuts-toggle]"));
    toggle?.addEventListener("change", () => this.setEnabled(toggle.checked, true));
  }

  get enabled() {
    return this.#enabled;
  }

  /**
   * @param {boolean} on
   * @param {boolean} [store] tell the owner (user action) rather than follow stored preferences
   */
  setEnabled(on, store = false) {
    this.#enabled = on;
    if (this.#dialog.open) this.#render();
    if (store) this.#onToggle(on);
  }

  /** @param {Shortcut[]} list in the order the help lists them */
  add(...list) {
    this.#list.push(...list);
  }

  /** Open the help overlay. */
  showHelp() {
    this.#render();
    if (!this.#dialog.open) this.#dialog.showModal();
  }

  /** @param {KeyboardEvent} e */
  #onKey(e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || isTyping(e.target)) return;
    if (this.#dialog.open) return; // the dialog handles Escape itself
    if (!this.#enabled) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    for (const s of this.#list) {
      if (s.always || !s.run) continue;
      if (!s.keys.some((k) => (k.length === 1 ? k.toLowerCase() : k) === key)) continue;
      if (s.run(e) === false) continue;
      e.preventDefault();
      return;
    }
  }

  #render() {
    const list = /** @type {HTMLElement} */ (this.#dialog.querySelector("[data-shortcut-list]"));
    list.replaceChildren();
    for (const s of this.#list) {
      const row = document.createElement("div");
      row.className = "shortcut";
      if (!s.always && !this.#enabled) row.classList.add("is-off");
      const dt = document.createElement("dt");
      s.keys.forEach((k, i) => {
        if (i) dt.append(" ");
        const kbd = document.createElement("kbd");
        kbd.textContent = k === " " ? "Space" : k.length === 1 ? k.toUpperCase() : k.replace(/^Arrow/, "");
        dt.append(kbd);
      });
      const dd = document.createElement("dd");
      dd.textContent = s.label;
      if (s.when) {
        const when = document.createElement("span");
        when.className = "shortcut-when";
        when.textContent = s.when;
        dd.append(" ", when);
      }
      row.append(dt, dd);
      list.append(row);
    }
    const toggle = /** @type {HTMLInputElement | null} */ (this.#dialog.querySelector("[data-shortcuts-toggle]"));
    if (toggle) toggle.checked = this.#enabled;
  }
}
