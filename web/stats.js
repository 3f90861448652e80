/**
 * Receive statistics of one viewer connection, from `RTCPeerConnection.getStats()`.
 *
 * `summarize` is pure: a stats report (anything iterable as [id, stat] or with
 * `values()`), the previous summary and the time in, one summary out. Rates
 * (bitrate, loss) are computed over the interval since the previous summary.
 */

/**
 * @typedef {object} StatsSummary
 * @property {number} at time of the sample, ms (performance.now())
 * @property {number} framesDecoded video frames decoded since the connection started
 * @property {number} framesDropped video frames dropped by the receiver
 * @property {number} frameWidth decoded width, px (0 before the first frame)
 * @property {number} frameHeight decoded height, px
 * @property {number} fps decoded frames per second over the interval
 * @property {number} videoBytes video payload bytes received
 * @property {number} audioBytes audio payload bytes received
 * @property {number} videoPackets video packets received
 * @property {number} audioPackets audio packets received
 * @property {number} packetsLost video + audio packets reported lost (cumulative)
 * @property {number} bitrateKbps video + audio receive rate over the interval, kbit/s
 * @property {number} lossPct packets lost over the interval, % of expected
 * @property {number} jitterBufferMs average video jitter buffer delay, ms
 * @property {number} jitterMs video interarrival jitter, ms
 * @property {string} videoCodec e.g. "H264"
 * @property {string} audioCodec e.g. "PCMU"
 * @property {number} nacks NACKs sent
 * @property {number} plis PLIs sent
 * @property {string} candidateType local candidate type of the selected pair (host, srflx, relay)
 * @property {number} rttMs current round-trip time of the selected pair, ms
 * @property {number} playoutNtpMs when the current video frame plays out on the sender's clock (NTP ms; 0 when unknown)
 */

/**
 * @param {RTCStatsReport | Map<string, any>} report
 * @param {StatsSummary | null} prev
 * @param {number} now ms
 * @returns {StatsSummary}
 */
export function summarize(report, prev, now) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  for (const s of report.values()) byId.set(s.id, s);

  let video = null;
  let audio = null;
  let pair = null;
  let transport = null;
  for (const s of byId.values()) {
    if (s.type === "inbound-rtp") {
      // Several inbound streams of a kind happen only transiently (SSRC change); keep the busiest.
      if (s.kind === "video" && (!video || (s.packetsReceived ?? 0) > (video.packetsReceived ?? 0))) video = s;
      if (s.kind === "audio" && (!audio || (s.packetsReceived ?? 0) > (audio.packetsReceived ?? 0))) audio = s;
    } else if (s.type === "transport") {
      transport = s;
    } else if (s.type === "candidate-pair" && (s.nominated || s.selected) && s.state === "succeeded") {
      pair ??= s;
    }
  }
  if (transport?.selectedCandidatePairId) pair = byId.get(transport.selectedCandidatePairId) ?? pair;
  const local = pair ? byId.get(pair.localCandidateId) : null;

  const videoBytes = video?.bytesReceived ?? 0;
  const audioBytes = audio?.bytesReceived ?? 0;
  const videoPackets = video?.packetsReceived ?? 0;
  const audioPackets = audio?.packetsReceived ?? 0;
  const packetsLost = Math.max(0, video?.packetsLost ?? 0) + Math.max(0, audio?.packetsLost ?? 0);
  const framesDecoded = video?.framesDecoded ?? 0;

  let bitrateKbps = 0;
  let lossPct = 0;
  let fps = video?.framesPerSecond ?? 0;
  if (prev && now > prev.at) {
    const dt = (now - prev.at) / 1000;
    const dBytes = videoBytes + audioBytes - prev.videoBytes - prev.audioBytes;
    // Counters restart with a new connection: a negative delta means "no rate yet".
    if (dBytes >= 0) bitrateKbps = (dBytes * 8) / 1000 / dt;
    const dRecv = videoPackets + audioPackets - prev.videoPackets - prev.audioPackets;
    const dLost = packetsLost - prev.packetsLost;
    if (dRecv >= 0 && dLost > 0) lossPct = (100 * dLost) / (dRecv + dLost);
    const dFrames = framesDecoded - prev.framesDecoded;
    if (!video?.framesPerSecond && dFrames >= 0) fps = dFrames / dt;
  }

  const emitted = video?.jitterBufferEmittedCount ?? 0;
  return {
    at: now,
    framesDecoded,
    framesDropped: video?.framesDropped ?? 0,
    frameWidth: video?.frameWidth ?? 0,
    frameHeight: video?.frameHeight ?? 0,
    fps,
    videoBytes,
    audioBytes,
    videoPackets,
    audioPackets,
    packetsLost,
    bitrateKbps,
    lossPct,
    jitterBufferMs: emitted > 0 ? (1000 * (video?.jitterBufferDelay ?? 0)) / emitted : 0,
    jitterMs: 1000 * (video?.jitter ?? 0),
    videoCodec: codecName(byId, video),
    audioCodec: codecName(byId, audio),
    nacks: video?.nackCount ?? 0,
    plis: video?.pliCount ?? 0,
    candidateType: local?.candidateType ?? "",
    rttMs: pair?.currentRoundTripTime !== undefined ? 1000 * pair.currentRoundTripTime : 0,
    playoutNtpMs: video?.estimatedPlayoutTimestamp ?? 0,
  };
}

/** Milliseconds from the NTP epoch (1900) to the Unix epoch (1970). */
export const NTP_UNIX_MS = 2_208_988_800_000;
/** 2000-01-01 in Unix ms: a sender's clock before it was never set (running time, 1900 or 1970 based). */
const CLOCK_SET_AFTER_MS = 946_684_800_000;

/**
 * The wall-clock time of the frame on screen. Chromium maps the frame's RTP time through the
 * sender reports it received (the gateway forwards the recorder's own clock when the recorder
 * sends reports, else the arrival time), so `playoutNtpMs` is the recorder's time even when
 * its clock is hours off: that is what is shown. A clock that was never set, or no mapping
 * yet, gives the arrival time (`nowMs`).
 * @param {number} playoutNtpMs estimatedPlayoutTimestamp (NTP ms; 0 when unknown)
 * @param {number} nowMs this computer's clock, Unix ms
 * @returns {{ wallMs: number, from: "sender" | "arrival" }}
 */
export function frameWallClock(playoutNtpMs, nowMs) {
  const unix = playoutNtpMs ? playoutNtpMs - NTP_UNIX_MS : 0;
  return unix > CLOCK_SET_AFTER_MS ? { wallMs: unix, from: "sender" } : { wallMs: nowMs, from: "arrival" };
}

/**
 * @param {Map<string, any>} byId
 * @param {any} rtp
 */
function codecName(byId, rtp) {
  const codec = rtp?.codecId ? byId.get(rtp.codecId) : null;
  const mime = codec?.mimeType ?? "";
  const slash = mime.indexOf("/");
  return slash >= 0 ? mime.slice(slash + 1) : mime;
}

/**
 * Short display strings for the overlay.
 * @param {StatsSummary} s
 * @returns {Record<string, string>}
 */
export function formatSummary(s) {
  const codecs = [s.videoCodec, s.audioCodec].filter(Boolean).join(" / ");
  return {
    bitrate: `${Math.round(s.bitrateKbps).toLocaleString("en-US")} kbit/s`,
    loss: `${s.lossPct.toFixed(s.lossPct > 0 && s.lossPct < 10 ? 1 : 0)} %`,
    resolution: s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "—",
    fps: s.fps ? `${Math.round(s.fps)} fps` : "—",
    buffer: s.jitterBufferMs ? `${Math.round(s.jitterBufferMs)} ms` : "—",
    codec: codecs || "—",
    path: s.candidateType ? `${s.candidateType}${s.rttMs ? `, ${Math.round(s.rttMs)} ms RTT` : ""}` : "—",
  };
}
