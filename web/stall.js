/**
 * When a tile's picture has stalled: the rule behind "Live" going to "No video" while the
 * connection itself looks fine (packets that stopped on the way, a decoder that stopped).
 *
 * The witness is the receiver's decoded-frame count (`getStats`, sampled once a second and at once
 * when a stall is suspected). Frames the browser presents (`requestVideoFrameCallback`) keep the
 * last frame's time exact while the tile is drawn, so a stall is suspected right after it starts;
 * only a statistics sample that found no frame decoded since confirms it, so a picture that is
 * decoded but not drawn (a tile scrolled away, a hidden page) is never called stalled.
 */

/** No new decoded frame for this long is a stall whatever the camera's frame rate, ms. */
export const STALL_MS = 3000;
/** The quickest a stall is called, ms (a camera of 4 frames/s and more). */
export const QUICK_STALL_MS = 1000;
/** Frame intervals without a frame that make a stall. */
const INTERVALS = 4;

/**
 * How long without a decoded frame makes a stall for a camera decoding `fps` frames per second:
 * four frame intervals, within [QUICK_STALL_MS, STALL_MS]; STALL_MS when the rate is not known.
 * @param {number} fps
 * @returns {number} ms
 */
export function stallAfterMs(fps) {
  if (!(fps > 0)) return STALL_MS;
  return Math.min(STALL_MS, Math.max(QUICK_STALL_MS, (INTERVALS * 1000) / fps));
}

/**
 * @typedef {object} FrameClock
 * @property {number} now performance.now()
 * @property {number} lastFrameAt when a frame was last decoded (a sample that saw the count grow) or presented, 0 = none yet
 * @property {number} sampledAt when the statistics were last sampled, 0 = never
 * @property {number} fps the camera's frame rate while it played (0 = not known)
 */

/**
 * Whether the picture has stalled: no frame for STALL_MS, or a statistics sample taken
 * `stallAfterMs(fps)` or more after the last frame found none decoded since.
 * @param {FrameClock} c
 * @returns {boolean}
 */
export function stalled({ now, lastFrameAt, sampledAt, fps }) {
  if (lastFrameAt <= 0) return false;
  return now - lastFrameAt >= STALL_MS || sampledAt - lastFrameAt >= stallAfterMs(fps);
}

/**
 * Whether to sample the statistics now: a stall is suspected (no frame for `stallAfterMs`) and no
 * sample since has said whether frames are still decoded.
 * @param {FrameClock} c
 * @returns {boolean}
 */
export function confirmNow({ now, lastFrameAt, sampledAt, fps }) {
  if (lastFrameAt <= 0) return false;
  const after = stallAfterMs(fps);
  return now - lastFrameAt >= after && sampledAt - lastFrameAt < after;
}
