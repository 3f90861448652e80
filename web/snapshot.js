/**
 * Snapshots of the single view: the video's current frame at the camera's own resolution (not
 * the size on screen, not the zoomed part), saved as a PNG named after the camera and the time
 * the frame was on screen, e.g. `Front-door_2026-12-06_16-45-03.png`.
 */

/**
 * A file name for a snapshot of `camera` taken at `at` (local time, to the second).
 * @param {string} camera the camera's display name
 * @param {Date} at
 */
export function snapshotName(camera, at) {
  const safe =
    camera
      .normalize("NFC")
      .replace(/[\\/:*?"<>|\p{Cc}]+/gu, "")
      .trim()
      .replace(/\s+/g, "-")
      .slice(0, 80) || "camera";
  const p = (/** @type {number} */ n) => String(n).padStart(2, "0");
  const date = `${at.getFullYear()}-${p(at.getMonth() + 1)}-${p(at.getDate())}`;
  const time = `${p(at.getHours())}-${p(at.getMinutes())}-${p(at.getSeconds())}`;
  return `${safe}_${date}_${time}.png`;
}

/** Why a snapshot could not be taken. */
export class SnapshotError extends Error {
  /** @param {"NO_FRAME" | "ENCODE_FAILED"} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "SnapshotError";
    this.code = code;
  }
}

/**
 * Encode the frame `video` shows now as PNG.
 * @param {HTMLVideoElement} video
 * @returns {Promise<{ blob: Blob, width: number, height: number, at: Date }>}
 */
export async function captureFrame(video) {
  const width = video.videoWidth;
  const height = video.videoHeight;
  if (!width || !height || video.readyState < 2) throw new SnapshotError("NO_FRAME", "No picture to save yet");
  const at = new Date();
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new SnapshotError("ENCODE_FAILED", "This browser cannot draw the picture");
  ctx.drawImage(video, 0, 0, width, height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!blob) throw new SnapshotError("ENCODE_FAILED", "This browser cannot encode the picture");
  return { blob: /** @type {Blob} */ (blob), width, height, at };
}

/**
 * Save the current frame of `video` as a download named after `camera`.
 * @param {HTMLVideoElement} video
 * @param {string} camera
 * @returns {Promise<string>} the file name
 */
export async function saveSnapshot(video, camera) {
  const { blob, at } = await captureFrame(video);
  const name = snapshotName(camera, at);
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own copy once started; keep the URL a moment for slow browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}
