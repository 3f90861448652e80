/**
 * Sound and picture of an audible tile, kept in step by the browser.
 *
 * A browser keeps the sound and the picture of one stream in step itself (lip sync), but
 * slowly: Chromium moves one track's delay by about an eighth of the difference each second.
 * Its audio buffer starts one to two hundred milliseconds deeper than its video buffer, and
 * grows at once when the network or the machine hiccups (to the length of the gap it had to
 * fill), so without help the sound ran up to 250 ms behind the picture for ten seconds and
 * more (measured in Chromium 156 with an AAC camera converted to Opus). So while a tile is
 * heard:
 * - both receivers are asked for a buffer of the same depth (`holdInStep`): they start level,
 *   and small hiccups stay inside it (the sound stayed within 20 ms of the picture from half a
 *   second after unmuting);
 * - when the sound's buffer grows past that after a larger hiccup, the picture's request
 *   follows it within a second or two (`followSound`), instead of the ten seconds and more the
 *   browser's lip sync takes.
 * A muted tile asks for nothing, so its picture keeps the browser's lowest delay.
 */

/** The jitter buffer both tracks of a heard tile are asked to keep at least, ms. */
export const AUDIBLE_BUFFER_MS = 200;
/** The picture's request is moved only by at least this much, ms (the buffer wobbles by a few). */
const FOLLOW_STEP_MS = 10;
/** The picture asks for this much less than the sound's buffer holds, ms. */
const FOLLOW_UNDER_MS = 20;

/** The sound's jitter buffer counters at the last look, per stream. */
const lastSeen = new WeakMap();

/**
 * Asks the receivers of `stream` on `pc` for `AUDIBLE_BUFFER_MS` of buffer when `audible`,
 * for the browser's own choice when not. Receivers of other streams on the same connection
 * (the grid's other tiles) are left alone; browsers without `jitterBufferTarget` are too.
 * @param {RTCPeerConnection | null | undefined} pc
 * @param {MediaStream | null | undefined} stream
 * @param {boolean} audible
 */
export function holdInStep(pc, stream, audible) {
  if (!pc || !stream) return;
  const target = audible && stream.getAudioTracks().length > 0 ? AUDIBLE_BUFFER_MS : null;
  for (const r of receiversOf(pc, stream)) set(r, target);
  lastSeen.delete(stream);
}

/**
 * Once a second with the tile's stats report: while it is heard, its picture's request follows
 * the sound's buffer when the browser grew it past `AUDIBLE_BUFFER_MS`: the larger of the sound
 * buffer's target and its mean delay less `FOLLOW_UNDER_MS` over the last interval. (A little
 * under the sound: the browser's lip sync counts the sound's output delay too, and a picture it
 * saw later than the sound would make it delay the sound, and the two would ratchet each other up.)
 * @param {RTCPeerConnection | null | undefined} pc
 * @param {MediaStream | null | undefined} stream
 * @param {RTCStatsReport} report
 * @param {boolean} audible
 */
export function followSound(pc, stream, report, audible) {
  if (!pc || !stream || !audible) return;
  const audioIds = new Set(stream.getAudioTracks().map((t) => t.id));
  let sound;
  for (const s of report.values()) if (s.type === "inbound-rtp" && s.kind === "audio" && audioIds.has(s.trackIdentifier)) sound = s;
  if (!sound || typeof sound.jitterBufferDelay !== "number" || typeof sound.jitterBufferTargetDelay !== "number") return;
  const prev = lastSeen.get(stream);
  const now = { delay: sound.jitterBufferDelay, target: sound.jitterBufferTargetDelay, emitted: sound.jitterBufferEmittedCount };
  lastSeen.set(stream, now);
  const emitted = prev ? now.emitted - prev.emitted : 0;
  if (!prev || !(emitted > 0)) return;
  const delayMs = (1000 * (now.delay - prev.delay)) / emitted;
  const targetMs = (1000 * (now.target - prev.target)) / emitted;
  const want = Math.round(Math.max(AUDIBLE_BUFFER_MS, targetMs, delayMs - FOLLOW_UNDER_MS));
  for (const r of receiversOf(pc, stream)) {
    // Only a picture asked for a buffer by holdInStep (heard), and only for a real change.
    if (r.track.kind !== "video" || typeof r.jitterBufferTarget !== "number") continue;
    if (Math.abs(r.jitterBufferTarget - want) >= FOLLOW_STEP_MS) set(r, want);
  }
}

/**
 * The receivers of `stream` on `pc` that take a buffer request.
 * @param {RTCPeerConnection} pc
 * @param {MediaStream} stream
 */
function receiversOf(pc, stream) {
  const ids = new Set(stream.getTracks().map((t) => t.id));
  return pc.getReceivers().filter((r) => r.track && ids.has(r.track.id) && "jitterBufferTarget" in r);
}

/** @param {RTCRtpReceiver} r @param {number | null} ms */
function set(r, ms) {
  // Setting is a call the page waits on (the browser's media thread answers it): not for nothing.
  if (r.jitterBufferTarget === ms) return;
  try {
    r.jitterBufferTarget = ms;
  } catch {
    // A closed receiver, or a browser that refuses the value: it keeps its own buffer.
  }
}
