/**
 * What the live view starts before the rest of the page is built: its first two requests (the
 * camera list and who is signed in) and the grid's one peer connection, whose offer takes tens of
 * ms of the main thread (32 transceivers, createOffer, setLocalDescription).
 *
 * index.html loads this module `async`: it runs as soon as it and its two imports are read, while
 * the page's other modules are still being read and evaluated, and before app.js, which imports it
 * (one module instance: app.js adopts what was started here). Measured on a 16-camera page, with
 * the other changes of the same work (README, Grid over one connection): the camera list answered
 * about 60 ms sooner and the grid's offer went 15–30 ms sooner than when app.js asked for both.
 *
 * Only what the URL and this browser's storage say is known here; app.js decides everything else
 * (the layout, the tiles), and asks for more slots (`GridSession.wantSlots`) when its layout needs
 * more than were guessed.
 */

import { GridSession } from "./grid-session.js";

/** The directory the gateway serves the page from. */
export const base = new URL(".", document.baseURI);

/** The camera list request (its answer, or null when the gateway cannot be reached). @returns {Promise<Response | null>} */
export function fetchCameras() {
  return fetch(new URL("api/cameras", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" }).catch(() => null);
}

/** The sign-in layer's `auth/me` request (its answer, or null when it failed). @returns {Promise<Response | null>} */
export function fetchUser() {
  return fetch(new URL("auth/me", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" }).catch(() => null);
}

/** The page's first camera list and `auth/me` requests, sent as the page starts. */
export const firstList = fetchCameras();
export const firstUser = fetchUser();

const query = new URLSearchParams(location.search);
/**
 * `?relay=1` forces TURN relay candidates; `?relay=udp|tcp|tls` also keeps only that TURN transport,
 * so an installer can check each firewall path (UDP 14049, TCP and TLS on the HTTPS port).
 */
const relayParam = query.get("relay");
export const iceTransportPolicy = relayParam === "1" || /^(udp|tcp|tls)$/.test(relayParam ?? "") ? "relay" : undefined;
export const turnTransport = /** @type {"udp" | "tcp" | "tls" | undefined} */ (/^(udp|tcp|tls)$/.test(relayParam ?? "") ? relayParam : undefined);

/** The grid over one peer connection unless `?grid=0` (app.js also gives it up when the gateway refuses its grid route). */
export const gridWanted = query.get("grid") !== "0";

/** Where the page keeps how many slots its grid wanted last (the first offer is made before the camera list says). */
export const GRID_SLOTS_KEY = "gatehouse.gridSlots";

/** Slots the page's grid wanted last time (0 on a first visit, or without storage). @returns {number} */
export function lastGridSlots() {
  try {
    const n = Number(localStorage.getItem(GRID_SLOTS_KEY));
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0; // no storage: guessed again
  }
}

/** The camera a link names (`#camera=<id>`), opened large in a session of its own; null for the grid. @returns {string | null} */
export function hashCamera() {
  const h = location.hash.replace(/^#/, "");
  if (!h) return null;
  return new URLSearchParams(h).get("camera");
}

/** The grid's endpoint. */
export const GRID_ENDPOINT = new URL("grid", base);

/**
 * The grid's connection, its offer being made (null with `?grid=0`, and on a link to one camera).
 * Nothing reaches the gateway before a tile asks for a slot (`GridSession.prepare`).
 */
export const earlyGrid = gridWanted && !hashCamera() ? new GridSession(GRID_ENDPOINT, { iceTransportPolicy, turnTransport, slots: lastGridSlots() || 16 }) : null;
earlyGrid?.prepare();
