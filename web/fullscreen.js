/**
 * Fullscreen for the grid or one camera, with the fallbacks browsers need: the standard API,
 * WebKit's prefixed one (older Safari), and on an iPhone (no element fullscreen at all) the
 * video element's own player.
 */

/** @returns {Element | null} */
export function fullscreenElement() {
  const d = /** @type {Document & { webkitFullscreenElement?: Element | null }} */ (document);
  return d.fullscreenElement ?? d.webkitFullscreenElement ?? null;
}

/**
 * Enter fullscreen with `el`, or leave it when `el` (or anything) is already fullscreen.
 * Must run inside a user gesture (click, double-click, key press).
 * @param {HTMLElement} el
 * @param {HTMLVideoElement} [video] used on browsers that only put a video fullscreen
 * @returns {Promise<boolean>} true when fullscreen afterwards
 */
export async function toggleFullscreen(el, video) {
  const d = /** @type {Document & { webkitExitFullscreen?: () => Promise<void> }} */ (document);
  if (fullscreenElement()) {
    await (d.exitFullscreen?.() ?? d.webkitExitFullscreen?.())?.catch?.(() => {});
    return false;
  }
  const e = /** @type {HTMLElement & { webkitRequestFullscreen?: () => Promise<void> }} */ (el);
  try {
    if (e.requestFullscreen) await e.requestFullscreen({ navigationUI: "hide" });
    else if (e.webkitRequestFullscreen) await e.webkitRequestFullscreen();
    else {
      const v = /** @type {HTMLVideoElement & { webkitEnterFullscreen?: () => void } | undefined} */ (video);
      v?.webkitEnterFullscreen?.();
      return false;
    }
  } catch {
    return false;
  }
  return fullscreenElement() !== null;
}

/** @param {() => void} fn called when fullscreen is entered or left (also by Esc) */
export function onFullscreenChange(fn) {
  document.addEventListener("fullscreenchange", fn);
  document.addEventListener("webkitfullscreenchange", fn);
}
