/**
 * Which gateway process the page's event stream reaches (its `instance` event), and the moment
 * the page learns that the gateway its sessions were made through is gone: the stream dropped and
 * came back from another process (another node behind the same address, or a restarted one), or
 * did not come back within `lostAfterMs`. ICE alone notices seconds later (Chromium keeps a dead
 * peer "connected" for about 4 s, then the page waits its grace for "disconnected").
 */
export class NodeWatch {
  /** @type {string} */
  #id = "";
  /** @type {ReturnType<typeof setTimeout> | 0} */
  #timer = 0;
  #onLost;
  #lostAfterMs;

  /**
   * @param {() => void} onLost called once per loss, when it is known
   * @param {{ lostAfterMs?: number }} [opts] lostAfterMs: a stream not back within this is a lost gateway, ms (default 2500;
   *   the gateway tells the browser to reconnect after 1 s)
   */
  constructor(onLost, opts = {}) {
    this.#onLost = onLost;
    this.#lostAfterMs = opts.lostAfterMs ?? 2500;
  }

  /** The id of the gateway process the stream reached (each new stream says it first). */
  get id() {
    return this.#id;
  }

  /** @param {string} id the stream's `instance` */
  reached(id) {
    const was = this.#id;
    this.#id = id;
    if (!this.#timer) return;
    clearTimeout(this.#timer);
    this.#timer = 0;
    if (was !== id) this.#onLost();
  }

  /** The stream dropped (the browser reconnects it by itself). */
  dropped() {
    if (!this.#id || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = 0;
      // Once per loss: the browser's failing retries say nothing new until a stream is back.
      this.#id = "";
      this.#onLost();
    }, this.#lostAfterMs);
  }

  /** Stop watching (the page's session ended). */
  close() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = 0;
    this.#id = "";
  }
}
