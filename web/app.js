/**
 * Gatehouse live view: a grid of live camera tiles.
 *
 * - The grid plays over ONE peer connection (web/grid-session.js: one ICE/DTLS handshake, one set
 *   of TURN allocations): each tile holds a slot of it, paging or a layout change re-binds slots to
 *   other cameras without a new connection, and the camera opened large uses a WHEP session of its
 *   own; grid tiles carry their camera's sound too, muted until picked. The gateway tells the page
 *   on its event stream when the session's media worker dies (it offers again) or a slot's camera
 *   moves to another cluster node (the tile says so). With `?grid=0`, and on a gateway that refuses
 *   the grid route (none: an older gateway or a proxy passing only `/whep/`; or a refusal retrying
 *   cannot mend), each tile plays over a WHEP session of its own (with its sound).
 *
 * - `GET api/cameras` lists the cameras ([{id, name, status, statusReason?, …}]); 401 sends the
 *   browser to sign in and come back here. `GET api/cameras/events` (one event stream for the
 *   page) tells each camera's state the moment it changes: a tile never shows LIVE while its
 *   recorder is down, and greys the last real picture with its time instead.
 * - Clicking a tile (or Enter on it) opens that camera large; the other tiles' sessions
 *   are closed to save bandwidth and restarted on the way back (back button, Esc,
 *   browser Back). The URL hash (`#camera=<id>`) names the open camera, so a link opens it.
 * - Tiles scrolled out of view, or all tiles of a page hidden for a while, pause too.
 * - `window.gatehouse` exposes sessions and statistics for tests and diagnostics.
 */


import { WhepSession } from "./whep.js";
import { csrfHeaders } from "./csrf.js";
import { GridSession } from "./grid-session.js";
import { GRID_ENDPOINT, GRID_SLOTS_KEY, base, earlyGrid, fetchCameras, fetchUser, firstList, firstUser, gridWanted, hashCamera, iceTransportPolicy, lastGridSlots, turnTransport } from "./live-start.js";
import { summarize, formatSummary, frameWallClock } from "./stats.js";
import { confirmNow, stalled } from "./stall.js";
import { GridLayout, LAYOUTS } from "./layout.js";
import { Finder, filterCameras, groupsOf } from "./finder.js";
import { PrefStore } from "./prefs.js";
import { Shortcuts } from "./shortcuts.js";
import { fullscreenElement, onFullscreenChange, toggleFullscreen } from "./fullscreen.js";
import { saveSnapshot } from "./snapshot.js";
import { Zoom } from "./zoom.js";
import { NodeWatch } from "./node-watch.js";
import { followSound, holdInStep } from "./lip-sync.js";
import { PlaybackController, Timeline } from "./timeline.js";

/** Camera list refresh period, ms (states arrive on the event stream; this catches list changes). */
const REFRESH_MS = 10_000;
/** The camera event stream is opened again this long after the browser gave up on it, ms. */
const STREAM_RETRY_MS = 2000;
/** What a tile says when the gateway node its video came through is gone (the page offers again at once). */
const NODE_LOST = "The gateway node this page was using stopped answering. Reconnecting…";
/** What the page says while the gateway restarts. */
const RESTARTING = "The gateway is restarting. This page reconnects by itself…";
/** Camera states in which the recorder is not delivering: no LIVE, last picture greyed. */
const DOWN = new Set(["reconnecting", "offline", "failed", "disabled"]);
/** Statistics and badge refresh period, ms. */
const TICK_MS = 1000;
/** How often live tiles are checked for a stalled picture (stall.js), ms. */
const STALL_CHECK_MS = 250;
/** At most this many tiles whose element presents nothing are sampled per check. */
const QUIET_SAMPLES_PER_CHECK = 2;
/**
 * The camera moves to another gateway node and the connection stays: offer anew (a grid slot: bind
 * it again) if no picture comes back within this, ms. `?movingGiveUpMs=` sets it (10–120000).
 */
const MOVING_GIVE_UP_MS = (() => {
  const v = Number(new URLSearchParams(location.search).get("movingGiveUpMs"));
  return Number.isInteger(v) && v >= 10 && v <= 120_000 ? v : 20_000;
})();
/** A tile out of view for this long is paused, ms. */
const OFFSCREEN_PAUSE_MS = 10_000;
/** A muted tile's sound joins its picture this long after the first frame (see Tile.shownStream), ms. */
const SOUND_AFTER_FIRST_FRAME_MS = 1000;
/** A hidden page (background tab) without sound pauses its tiles after this long, ms. */
const HIDDEN_PAUSE_MS = 60_000;

/** Why a tile is paused: shown on the tile, and compared to know when to resume. */
const PAUSED_OTHER_OPEN = "Paused while another camera is open";
const PAUSED_OFFSCREEN = "Paused while out of view";
const PAUSED_BACKGROUND = "Paused in the background";
const PAUSED_NOT_SHOWN = "Paused: not on this page or filtered out";

/**
 * The grid over one peer connection unless `?grid=0` (and until the gateway refuses its grid
 * route); else one WHEP session per tile.
 */
let gridMode = gridWanted;
/** @type {GridSession | null} the page's one multi-camera session: the one live-start.js began, else made when a tile first plays */
let gridSession = null;

/**
 * Slots for the current page of the layout; before the camera list is known, as many as last
 * time (a first visit: the session's default, at most the layout's page).
 * @returns {number}
 */
function gridSlotsWanted() {
  if (tiles.size > 0) {
    const want = Math.max(1, Math.min(tiles.size, layout.layout.slots));
    try {
      localStorage.setItem(GRID_SLOTS_KEY, String(want));
    } catch {
      // no storage: the next visit guesses again
    }
    return want;
  }
  return Math.max(1, Math.min(lastGridSlots() || 16, layout.layout.slots));
}

/**
 * The page's multi-camera session, asked for enough slots for the current page of the layout.
 * @returns {GridSession}
 */
function theGrid() {
  const want = gridSlotsWanted();
  if (!gridSession) return adoptGrid(new GridSession(GRID_ENDPOINT, { iceTransportPolicy, turnTransport, slots: want }));
  gridSession.wantSlots(want);
  return gridSession;
}

/**
 * Makes `session` the page's grid, and acts on its state from now on and as it is now (the
 * session live-start.js began may have been refused before this module ran).
 * @param {GridSession} session
 * @returns {GridSession}
 */
function adoptGrid(session) {
  gridSession = session;
  const onState = () => {
    if (session.state === "unauthorized") signIn();
    // No grid route, or a refusal of it that retrying cannot mend: per-tile WHEP still plays.
    if (session.state === "unsupported" || session.state === "failed") playTilesOnTheirOwn();
  };
  session.addEventListener("statechange", onState);
  onState();
  return session;
}

/** No grid endpoint at this gateway (or it refused the grid): every tile the grid was to play gets a WHEP session of its own. */
function playTilesOnTheirOwn() {
  gridMode = false;
  gridSession?.close("no grid endpoint");
  gridSession = null;
  for (const tile of tiles.values()) {
    if (!tile.session || tile.session instanceof WhepSession) continue;
    tile.disconnect("");
    tile.connect();
  }
}

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const grid = /** @type {HTMLUListElement} */ ($("grid"));
const backBtn = /** @type {HTMLButtonElement} */ ($("back"));
const statsBtn = /** @type {HTMLButtonElement} */ ($("stats-toggle"));
const summaryEl = $("summary");
const noticeEl = $("notice");
const emptyEl = $("empty");
const titleEl = $("view-title");
const template = /** @type {HTMLTemplateElement} */ ($("tile-template"));
const noMatchEl = $("no-match");
const prefs = new PrefStore();
const layout = new GridLayout(grid);
const finder = new Finder({
  search: /** @type {HTMLInputElement} */ ($("search")),
  group: /** @type {HTMLSelectElement} */ ($("group-filter")),
  favouritesOnly: /** @type {HTMLButtonElement} */ ($("fav-filter")),
  prefs,
});

/** @type {Map<string, Tile>} camera id → tile, in display order */
const tiles = new Map();
/** @type {Map<string, WhepSession>} camera id → running session */
const sessions = new Map();
/** @type {string | null} camera shown large, or null for the grid */
let openId = null;
let statsForAll = false;
let hiddenSince = 0;
let redirecting = false;
/** Why this browser's session was ended elsewhere, in plain words (the event stream's `bye`); no sign-in redirect after it. */
let endedWhy = "";
/** The gateway said it is restarting; cleared when the camera list answers again. */
let restarting = false;
/** The gateway process behind the event stream: when it goes, every tile's session offers again at once. */
const nodeWatch = new NodeWatch(() => {
  const why = restarting ? RESTARTING : NODE_LOST;
  // The grid's one connection offers again once for all its tiles; each tile says why.
  const gridRestarted = gridSession?.restart(why) ?? false;
  for (const tile of tiles.values()) tile.nodeLost(why, gridRestarted);
});
let userKnown = false;

/**
 * @typedef {{ id: string, name?: string, groups?: string[], state?: string, reason?: string, status?: string, statusReason?: string,
 *   lastLiveAt?: number, transport?: string, unplayable?: { type: string, reason: string }[], actions?: string[] }} CameraInfo
 */

/** @type {Intl.DateTimeFormat | null} made on first use: the first costs about 10 ms (measured in Chromium), each later one less but not nothing */
let clockFormat = null;

/** @param {number} ms epoch ms */
function clockText(ms) {
  clockFormat ??= new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return clockFormat.format(ms);
}

/** One camera tile: its DOM, its WHEP session and its latest statistics. */
class Tile {
  /** @param {CameraInfo} cam */
  constructor(cam) {
    this.id = cam.id;
    this.name = cam.name || cam.id;
    this.serverState = cam.state || "";
    this.serverReason = cam.reason || "";
    /** @type {string[]} */
    this.groups = [];
    /** What the gateway says of the camera (live, reconnecting, offline, failed, idle, connecting) and why. */
    this.serverStatus = "";
    this.statusReason = "";
    /** performance.now() when the gateway said the camera is live again: LIVE needs a frame decoded after it. */
    this.liveMark = 0;
    /** Epoch ms of the picture on screen (the recorder's clock from RTCP sender reports, else arrival). */
    this.frameWall = 0;
    /** This computer's clock (epoch ms) when `frameWall` was read from the statistics (once a second). */
    this.frameSampledAt = 0;
    /** @type {WhepSession | import("./grid-session.js").SlotLease | null} */
    this.session = null;
    /** @type {import("./stats.js").StatsSummary | null} */
    this.summary = null;
    /** performance.now() of the last increase of framesDecoded, or of the last frame presented since (stall.js) */
    this.lastFrameAt = 0;
    /** performance.now() of the last statistics sample, 0 = none on this stream. */
    this.sampledAt = 0;
    /** Frames per second the camera decoded at while it played (0 = not known yet): how soon a stall is called. */
    this.typicalFps = 0;
    /** The last few samples' frame rates (their median is `typicalFps`: a sample that saw a stall begin reads low). @type {number[]} */
    this.fpsSeen = [];
    /** performance.now() of the last frame the element presented of this stream, 0 = none (or no requestVideoFrameCallback). */
    this.presentedAt = 0;
    /** A statistics sample is under way. */
    this.sampling = false;
    /**
     * Why the picture is being recovered, said until a frame decodes after it (the camera moves to
     * another node, or the node this page used is gone), else "".
     */
    this.movingMessage = "";
    /** The badge's word meanwhile. */
    this.movingLabel = "Moving";
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.movingTimer = undefined;
    /** Why the tile is paused ("" when it should be playing). */
    this.pausedFor = "";
    /** performance.now() since the tile is out of view, or 0. */
    this.offscreenSince = 0;
    this.needsGesture = false;
    /** What the user may do with the camera (`live`, `playback`…), as the gateway says. @type {string[]} */
    this.actions = [];
    /** Set while the tile shows a recording instead of live (the timeline's playback). @type {{ label: string, message: string, time: number } | null} */
    this.playback = null;
    /** The next statistics sample is the baseline of a newly bound grid slot (see `connect`). */
    this.frameBaseline = false;

    const el = /** @type {HTMLLIElement} */ (/** @type {DocumentFragment} */ (template.content.cloneNode(true)).firstElementChild);
    this.el = el;
    el.dataset.camera = cam.id;
    this.video = /** @type {HTMLVideoElement} */ (el.querySelector(".tile-video"));
    // The content attribute alone does not mute a cloned element in every browser.
    this.video.muted = true;
    this.video.playsInline = true;
    this.openBtn = /** @type {HTMLButtonElement} */ (el.querySelector(".tile-open"));
    this.audioBtn = /** @type {HTMLButtonElement} */ (el.querySelector(".tile-audio"));
    this.statsBtn = /** @type {HTMLButtonElement} */ (el.querySelector(".tile-stats-toggle"));
    this.favBtn = /** @type {HTMLButtonElement} */ (el.querySelector(".tile-fav"));
    this.zoomEl = /** @type {HTMLElement} */ (el.querySelector(".tile-zoom"));
    this.statsEl = /** @type {HTMLElement} */ (el.querySelector(".tile-stats"));
    this.badgeText = /** @type {HTMLElement} */ (el.querySelector(".badge-text"));
    this.messageEl = /** @type {HTMLElement} */ (el.querySelector(".tile-message"));
    this.nameEl = /** @type {HTMLElement} */ (el.querySelector(".tile-name"));
    this.metaEl = /** @type {HTMLElement} */ (el.querySelector(".tile-meta"));
    this.timeEl = /** @type {HTMLElement} */ (el.querySelector(".tile-time"));
    this.lastEl = /** @type {HTMLElement} */ (el.querySelector(".tile-last"));
    this.noteEl = /** @type {HTMLElement} */ (el.querySelector(".tile-note"));
    /** @type {Record<string, HTMLElement>} */
    this.statEls = {};
    for (const dd of el.querySelectorAll("[data-stat]")) this.statEls[/** @type {HTMLElement} */ (dd).dataset.stat ?? ""] = /** @type {HTMLElement} */ (dd);

    this.openBtn.addEventListener("click", () => {
      this.resumeIfBlocked();
      if (openId !== this.id) openCamera(this.id, true);
    });
    this.audioBtn.addEventListener("click", () => this.toggleAudio());
    this.statsBtn.addEventListener("click", () => this.showStats(this.statsEl.hidden));
    this.enableBtn = /** @type {HTMLButtonElement} */ (el.querySelector(".tile-enable"));
    this.enableBtn.addEventListener("click", () => void this.enableCamera());
    this.favBtn.addEventListener("click", () => prefs.toggleFavourite(this.id));
    el.querySelector(".tile-prev")?.addEventListener("click", () => stepCamera(-1));
    el.querySelector(".tile-next")?.addEventListener("click", () => stepCamera(1));
    el.querySelector(".tile-snapshot")?.addEventListener("click", () => void snapshot(this));
    /** @type {HTMLSelectElement} */
    this.qualitySel = /** @type {HTMLSelectElement} */ (el.querySelector(".tile-quality"));
    this.qualitySel.value = prefs.get().quality;
    this.qualitySel.addEventListener("change", () => {
      const q = this.qualitySel.value;
      if (q === "auto" || q === "high" || q === "low") prefs.set({ quality: q });
    });
    el.querySelector(".tile-fullscreen")?.addEventListener("click", () => void toggleFullscreen(this.el, this.video));
    el.querySelector(".zoom-reset")?.addEventListener("click", () => zoom.reset());
    // Double-click anywhere on the picture (the first click has opened it, so the tile may have
    // moved under the pointer): fullscreen of this camera. Not on its buttons.
    el.addEventListener("dblclick", (e) => {
      const t = /** @type {Element | null} */ (e.target);
      if (zoom.dragged || (t?.closest?.("button, a, input, select") && t.closest("button") !== this.openBtn)) return;
      if (openId !== this.id) openCamera(this.id, true);
      void toggleFullscreen(this.el, this.video);
    });
    this.video.addEventListener("playing", () => this.render());
    this.update(cam);
    this.showStats(statsForAll);
  }

  /** @param {CameraInfo} cam */
  update(cam) {
    this.name = cam.name || cam.id;
    this.serverState = cam.state || "";
    this.serverReason = cam.reason || "";
    this.groups = Array.isArray(cam.groups) ? cam.groups.filter((g) => typeof g === "string") : [];
    this.actions = Array.isArray(cam.actions) ? cam.actions.filter((a) => typeof a === "string") : [];
    const status = cam.status || "";
    if (status === "live" && this.serverStatus !== "live" && this.serverStatus !== "") this.liveMark = performance.now();
    this.serverStatus = status;
    this.statusReason = cam.statusReason || "";
    const notes = (cam.unplayable ?? []).map((u) => u.reason);
    const note = notes.length ? `Not shown: ${notes.join("; ")}` : "";
    if (this.noteEl.textContent !== note) this.noteEl.textContent = note;
    this.noteEl.hidden = !note;
    this.nameEl.textContent = this.name;
    this.renderFavourite();
    this.render();
  }

  /**
   * The camera stream this tile should play: the substream in the grid, the user's
   * Auto / High / Low choice when opened large.
   */
  wantedStream() {
    if (openId !== this.id) return "sub";
    const q = prefs.get().quality;
    return q === "high" ? "main" : q === "low" ? "sub" : "auto";
  }

  /** Tell a running session which stream to play now (switched at its next keyframe, same connection). */
  followStream() {
    void this.session?.setStream(this.wantedStream());
  }

  /** Start (or keep) this camera's stream: a slot of the grid's connection, or (opened large) a WHEP session of its own. */
  connect() {
    this.pausedFor = "";
    if (this.playback) return;
    const large = openId === this.id;
    if (this.session) {
      // Opened large from the grid, or back: the other kind of session.
      const own = this.session instanceof WhepSession;
      if (!gridMode || own === large) return;
      this.disconnect("");
      this.pausedFor = "";
    }
    const session =
      gridMode && !large
        ? theGrid().lease(this.id)
        : new WhepSession(new URL(`whep/${encodeURIComponent(this.id)}`, base), { iceTransportPolicy, turnTransport, stream: this.wantedStream() });
    this.session = session;
    sessions.set(this.id, session);
    this.summary = null;
    session.addEventListener("statechange", () => {
      if (session.state === "unauthorized") return signIn();
      this.render();
    });
    session.addEventListener("stream", () => {
      this.summary = null;
      this.lastFrameAt = 0;
      this.sampledAt = 0;
      this.typicalFps = 0;
      this.fpsSeen = [];
      this.presentedAt = 0;
      this.frameWall = 0;
      // A grid slot's receiver has decoded the slot's earlier cameras: only frames counted after
      // this camera was bound are this camera's (the first sample is the baseline).
      this.frameBaseline = !(session instanceof WhepSession);
      const shown = this.shownStream(session.stream);
      this.video.srcObject = shown;
      this.watchFrames(shown);
      holdInStep(session.pc, shown, !this.video.muted);
      this.play();
      this.render();
    });
    session.start();
    this.render();
  }

  /**
   * Close the session (DELETE on the server) and show the tile as paused.
   * @param {string} why shown on the tile ("" = not paused, e.g. removed)
   * @param {boolean} [keepalive]
   */
  disconnect(why, keepalive = false) {
    this.pausedFor = why;
    const session = this.session;
    if (!session) return this.render();
    this.session = null;
    sessions.delete(this.id);
    session.close(why, { keepalive });
    this.video.srcObject = null;
    this.summary = null;
    this.render();
  }

  play() {
    this.video.play().then(
      () => {
        this.needsGesture = false;
      },
      (err) => {
        // Autoplay refused (iOS low-power mode, strict policies): wait for a tap.
        if (err && err.name === "NotAllowedError") {
          this.needsGesture = true;
          this.render();
        }
      },
    );
  }

  resumeIfBlocked() {
    for (const t of tiles.values()) if (t.needsGesture && t.video.srcObject) t.play();
  }

  toggleAudio() {
    const unmute = this.video.muted;
    // One camera speaks at a time, as on a monitoring wall.
    if (unmute) for (const t of tiles.values()) if (t !== this && !t.video.muted) t.setMuted(true);
    this.setMuted(!unmute);
    if (unmute) this.play();
  }

  /**
   * What the element plays of a live session's stream at first: its picture, and its sound only
   * if the tile is heard. Each element given a sound track starts an audio renderer, and Chromium
   * does so by a call that blocks the page's main thread until its WebRTC worker thread answers:
   * with a whole grid's sound tracks attached while its cached pictures arrive, that held the
   * page for 0.5–1.1 s (measured with 16 tiles), the first pictures with it. A muted tile's sound
   * follows `SOUND_AFTER_FIRST_FRAME_MS` after its first picture (`addSound`): Chromium maps a
   * picture to the recorder's clock (the time a tile shows) only while its sound plays too.
   * @param {MediaStream | null} stream
   */
  shownStream(stream) {
    if (!stream) return null;
    const shown = new MediaStream(stream.getVideoTracks());
    if (!this.video.muted) for (const t of stream.getAudioTracks()) shown.addTrack(t);
    return shown;
  }

  /** Puts the live session's sound on the element (see `shownStream`); a recording's stream (the timeline's) is left as it is. */
  addSound() {
    const shown = this.video.srcObject;
    const live = this.session?.stream;
    if (!(shown instanceof MediaStream) || !live || !shown.getVideoTracks().some((t) => live.getVideoTracks().includes(t))) return;
    for (const t of live.getAudioTracks()) if (!shown.getTracks().includes(t)) shown.addTrack(t);
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    if (!muted) this.addSound();
    this.video.muted = muted;
    // A heard tile's sound and picture are kept level by the browser (lip-sync.js).
    holdInStep(this.session?.pc, /** @type {MediaStream | null} */ (this.video.srcObject), !muted);
    this.audioBtn.setAttribute("aria-pressed", String(!muted));
    this.audioBtn.setAttribute("aria-label", muted ? `Unmute ${this.name}` : `Mute ${this.name}`);
    this.audioBtn.title = muted ? "Unmute (M)" : "Mute (M)";
    this.el.classList.toggle("is-audible", !muted);
  }

  renderFavourite() {
    const fav = prefs.isFavourite(this.id);
    this.el.classList.toggle("is-favourite", fav);
    this.favBtn.setAttribute("aria-pressed", String(fav));
    this.favBtn.setAttribute("aria-label", `${fav ? "Remove" : "Add"} ${this.name} ${fav ? "from" : "to"} favourites`);
    this.favBtn.title = fav ? "Remove from favourites" : "Add to favourites";
  }

  /** @param {boolean} show */
  showStats(show) {
    this.statsEl.hidden = !show;
    if (show) void this.loadIngestDetails();
    this.statsBtn.setAttribute("aria-pressed", String(show));
    this.statsBtn.setAttribute("aria-label", `${show ? "Hide" : "Show"} statistics for ${this.name}`);
    this.statsBtn.title = show ? "Hide statistics" : "Show statistics";
    if (show && this.summary) this.renderStats(this.summary);
  }

  /**
   * Each frame the element presents of `stream` keeps the last frame's time exact once statistics
   * have seen this binding's picture decoded (so it never starts LIVE, or ends a "moving" notice,
   * by itself): a stall is then suspected as soon as it starts (stall.js).
   * @param {MediaStream | null} stream
   */
  watchFrames(stream) {
    const video = this.video;
    if (!stream || typeof video.requestVideoFrameCallback !== "function") return;
    /** @param {number} at */
    const onFrame = (at) => {
      if (video.srcObject !== stream) return;
      if (this.presentedAt === 0) setTimeout(() => video.srcObject === stream && this.addSound(), SOUND_AFTER_FIRST_FRAME_MS);
      this.presentedAt = at;
      if (this.lastFrameAt > 0 && this.lastFrameAt >= this.liveMark && !this.frameBaseline) this.lastFrameAt = Math.max(this.lastFrameAt, at);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  /** Whether the picture has stalled (stall.js) as of `now`. @param {number} now */
  stalledAt(now) {
    return stalled({ now, lastFrameAt: this.lastFrameAt, sampledAt: this.sampledAt, fps: this.typicalFps });
  }

  /**
   * The stall check's timer: sample now when a stall is suspected and no sample since has said, or
   * while a drawn tile's element presents nothing (every check, so the last decoded frame is known
   * within a check's period rather than the tick's).
   * @param {boolean} quietAllowed whether a tile that presents nothing may be sampled in this check
   * @returns {"quiet" | "confirm" | ""} why it was sampled
   */
  checkStall(quietAllowed) {
    if (this.sampling || !this.session || this.el.dataset.status !== "live") return "";
    const now = performance.now();
    const drawn = this.presentedAt > 0 && !this.offscreenSince && document.visibilityState === "visible";
    const quiet = drawn && now - this.presentedAt >= STALL_CHECK_MS && now - this.sampledAt >= STALL_CHECK_MS;
    const why = confirmNow({ now, lastFrameAt: this.lastFrameAt, sampledAt: this.sampledAt, fps: this.typicalFps }) ? "confirm" : quiet && quietAllowed ? "quiet" : "";
    if (why) void this.sample().then(() => this.render());
    return why;
  }

  /** Sample getStats (once per tick, and when a stall is suspected) and refresh the overlay and stall detection. */
  async sample() {
    const session = this.session;
    const pc = session?.pc;
    if (!pc || !session || this.sampling) return;
    let report;
    this.sampling = true;
    try {
      report = await statsOf(session);
    } catch {
      return; // closed meanwhile
    } finally {
      this.sampling = false;
    }
    if (this.session?.pc !== pc) return;
    followSound(pc, /** @type {MediaStream | null} */ (this.video.srcObject), report, !this.video.muted);
    const now = performance.now();
    const s = summarize(report, this.summary, now);
    this.sampledAt = now;
    if (this.frameBaseline) {
      this.frameBaseline = false;
      this.summary = s;
      // The element already shows this binding's picture (it loaded nothing before the new stream's
      // first frame): a frame now, so a tile Live on its first frames stays Live until the next sample.
      if (this.video.readyState >= 2 && s.framesDecoded > 0) this.lastFrameAt = now;
      return;
    }
    if (!this.summary || s.framesDecoded > this.summary.framesDecoded) {
      if (s.framesDecoded > 0) {
        this.lastFrameAt = now;
        if (s.fps > 0) {
          this.fpsSeen = [...this.fpsSeen.slice(-4), s.fps];
          this.typicalFps = [...this.fpsSeen].sort((a, b) => a - b)[this.fpsSeen.length >> 1] ?? 0;
        }
        if (this.movingMessage && now > this.liveMark) {
          this.movingMessage = "";
          clearTimeout(this.movingTimer);
        }
        // The recorder's clock when it sends sender reports (even when it is off), else arrival.
        this.frameSampledAt = Date.now();
        this.frameWall = frameWallClock(s.playoutNtpMs, this.frameSampledAt).wallMs;
      }
    }
    this.summary = s;
    if (!this.statsEl.hidden) this.renderStats(s);
  }

  /**
   * Administrators of this camera also see the gateway's side in the statistics: the recorder's
   * transport and tracks, what it has sent, reconnects and the last failure (`api/cameras/:id/status`).
   */
  async loadIngestDetails() {
    const admin = this.actions.includes("admin");
    for (const row of this.statsEl.querySelectorAll(".admin-only")) /** @type {HTMLElement} */ (row).hidden = !admin;
    if (!admin) return;
    /** @param {string} key @param {string} text */
    const put = (key, text) => {
      const el = this.statsEl.querySelector(`[data-ingest="${key}"]`);
      if (el) el.textContent = text;
    };
    try {
      const res = await fetch(new URL(`api/cameras/${encodeURIComponent(this.id)}/status`, base), { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) throw new Error(`the gateway answered ${res.status}`);
      const { ingest } = await res.json();
      const tracks = Array.isArray(ingest?.tracks) ? ingest.tracks.map((/** @type {{ codec?: string, kind?: string }} */ t) => t.codec ?? t.kind).filter(Boolean).join(", ") : "";
      put("recorder", `${ingest?.state ?? "?"}${ingest?.transport ? ` over ${ingest.transport.toUpperCase()}` : ""}${tracks ? ` · ${tracks}` : ""}`);
      put("upstream", `${Number(ingest?.packetsIn ?? 0).toLocaleString()} packets, ${Math.round(Number(ingest?.bytesIn ?? 0) / 1024).toLocaleString()} KiB, ${ingest?.reconnects ?? 0} reconnects, ${ingest?.malformed ?? 0} dropped`);
      put("lastError", ingest?.lastError || "none");
    } catch (err) {
      put("recorder", `not available: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /**
   * Enables the camera the supervisor disabled (an administrator's action, audited): its
   * ingest starts again and the event stream brings the new state.
   */
  async enableCamera() {
    const btn = this.enableBtn;
    btn.disabled = true;
    btn.textContent = "Enabling…";
    let text = "Enable";
    try {
      const res = await fetch(new URL(`api/cameras/${encodeURIComponent(this.id)}/enable`, base), {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: await csrfHeaders(base),
      });
      // 409: no longer disabled (the window passed, or another administrator was first).
      if (!res.ok && res.status !== 409) text = `Enable failed (HTTP ${res.status}): retry`;
    } catch {
      text = "Enable failed (no answer): retry";
    }
    btn.disabled = false;
    btn.textContent = text;
  }

  /** @param {import("./stats.js").StatsSummary} s */
  renderStats(s) {
    const f = formatSummary(s);
    for (const [key, el] of Object.entries(this.statEls)) {
      const text = f[key] ?? "—";
      if (el.textContent !== text) el.textContent = text;
    }
  }

  /**
   * The gateway says the node pulling this camera is gone and the camera moves to another one,
   * while this connection stays (served from a relay that finds the new node): say so until a
   * frame decoded after it, and offer anew (a grid slot: bind it again) if none comes within MOVING_GIVE_UP_MS.
   * @param {string} viewerId the session's viewer (a grid slot: the grid session)
   * @param {string} message in plain words
   */
  moving(viewerId, message) {
    const session = this.session;
    if (!session || !session.isViewer(viewerId)) return;
    this.movingMessage = message || "Camera moving to another gateway…";
    this.movingLabel = "Moving";
    this.liveMark = performance.now();
    clearTimeout(this.movingTimer);
    this.movingTimer = setTimeout(() => {
      if (this.session === session && this.lastFrameAt < this.liveMark) session.lost(viewerId, this.movingMessage);
    }, MOVING_GIVE_UP_MS);
    this.render();
  }

  /**
   * The gateway node this tile's session was made through is gone: offer again now (through
   * whichever node answers the page's address), and say why until a frame decodes again.
   * @param {string} message in plain words
   * @param {boolean} [gridRestarted] the grid's one connection has started over (a grid tile follows it)
   */
  nodeLost(message, gridRestarted = false) {
    const session = this.session;
    if (!session) return;
    // A grid slot: its session has just started over (the caller's `gridSession.restart`).
    if (session instanceof WhepSession ? !session.restart(message) : !gridRestarted) return;
    this.movingMessage = message;
    this.movingLabel = "Reconnecting";
    this.liveMark = performance.now();
    clearTimeout(this.movingTimer);
    this.render();
  }

  /** What the tile shows: one of live, connecting, waiting, retrying, error, paused. */
  status() {
    // Playing a recording: never LIVE; the timeline's controller says what it is.
    if (this.playback) return { status: this.playback.message ? "playback-opening" : "playback", label: this.playback.label, message: this.playback.message };
    const s = this.session;
    if (!s) return { status: "paused", label: endedWhy ? "Signed out" : "Paused", message: this.pausedFor || "Paused" };
    const cameraDown = DOWN.has(this.serverStatus) || (!this.serverStatus && (this.serverState === "failed" || this.serverState === "backoff"));
    const why = this.statusReason || this.serverReason;
    const cameraWhy = why ? `Camera unavailable: ${why}` : "Camera unavailable";
    // The gateway knows the recorder is down: say so, whatever the (healthy) connection to the gateway does.
    if (DOWN.has(this.serverStatus) && s.state !== "unauthorized" && s.state !== "failed") {
      if (this.serverStatus === "failed") return { status: "error", label: "Camera error", message: capitalize(why || "the camera cannot be played") };
      // Stopped by the supervisor after repeated failures (its reason starts with "disabled:").
      if (this.serverStatus === "disabled") return { status: "error", label: "Disabled", message: capitalize(why || "disabled") };
      if (this.serverStatus === "offline")
        return { status: "offline", label: "Offline", message: `Camera offline: ${why || "the recorder does not answer"}. Retrying…` };
      return { status: "reconnecting", label: "Reconnecting", message: `${capitalize(why || "the recorder stopped")}. Reconnecting…` };
    }
    switch (s.state) {
      case "new":
      case "connecting":
        // Connecting again after a failure: still why (a media worker that died, a lost connection,
        // the gateway node this page used).
        return {
          status: "connecting",
          label: s.attempts > 1 ? "Reconnecting" : "Connecting",
          message: this.movingMessage || (s.attempts > 1 && s.lastError ? capitalize(s.lastError.message) : "Connecting…"),
        };
      case "connected":
      case "disconnected": {
        // After an outage, only a frame decoded since the camera came back counts as live.
        const flowing = this.lastFrameAt > 0 && this.lastFrameAt >= this.liveMark && !this.stalledAt(performance.now());
        if (s.state === "disconnected") return { status: "waiting", label: "Unstable", message: "Connection unstable…" };
        if (flowing || (this.video.readyState >= 2 && !this.summary && !this.liveMark)) return { status: "live", label: "Live", message: "" };
        if (this.movingMessage) return { status: "reconnecting", label: this.movingLabel, message: this.movingMessage };
        if (this.lastFrameAt === 0) return { status: "connecting", label: "Starting", message: cameraDown ? cameraWhy : "Waiting for video…" };
        return { status: "waiting", label: "No video", message: cameraDown ? cameraWhy : "Waiting for the camera…" };
      }
      case "retrying": {
        const secs = Math.max(0, Math.ceil((s.retryAt - performance.now()) / 1000));
        const why = s.lastError ? s.lastError.message : "connection lost";
        return { status: "retrying", label: secs > 0 ? `Retry in ${secs} s` : "Reconnecting", message: cameraDown ? cameraWhy : capitalize(why) };
      }
      case "unauthorized":
        return { status: "error", label: "Signed out", message: "Signing in again…" };
      case "failed":
        return {
          status: "error",
          label: s.lastError?.status === 403 ? "No access" : "Error",
          message: s.lastError?.status === 403 ? "You are not allowed to view this camera" : capitalize(s.lastError?.message ?? "failed"),
        };
      default:
        return { status: "paused", label: "Closed", message: "Closed" };
    }
  }

  render() {
    const { status, label, message } = this.status();
    const msg = this.needsGesture ? "Tap to play" : message;
    if (this.el.dataset.status !== status) {
      this.el.dataset.status = status;
      renderSummary();
    }
    if (this.badgeText.textContent !== label) this.badgeText.textContent = label;
    if (this.messageEl.textContent !== msg) this.messageEl.textContent = msg;
    // A down camera keeps its last real picture, greyed, with the time it was taken.
    const stale = (status === "offline" || status === "reconnecting" || status === "error" || status === "waiting") && this.frameWall > 0 && Boolean(this.video.srcObject);
    this.el.toggleAttribute("data-stale", stale);
    const last = stale ? `Last picture ${clockText(this.frameWall)}` : "";
    if (this.lastEl.textContent !== last) this.lastEl.textContent = last;
    const time = status === "live" && this.frameWall ? clockText(this.frameWall) : this.playback && this.playback.time ? clockText(this.playback.time) : "";
    if (this.timeEl.textContent !== time) this.timeEl.textContent = time;
    const s = this.summary;
    const meta = s && s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "";
    if (this.metaEl.textContent !== meta) this.metaEl.textContent = meta;
    const open = openId === this.id;
    this.openBtn.setAttribute("aria-label", open ? `${this.name}, ${label}` : `Open ${this.name}, ${label}`);
    this.openBtn.tabIndex = open ? -1 : 0;
    // An administrator of this camera may bring a disabled camera back from its tile.
    const canEnable = this.serverStatus === "disabled" && this.actions.includes("admin") && !this.playback;
    if (this.enableBtn.hidden === canEnable) {
      this.enableBtn.hidden = !canEnable;
      this.enableBtn.disabled = false;
      this.enableBtn.textContent = "Enable";
    }
    const audible = Boolean(this.session?.hasAudio && this.video.srcObject);
    if (this.audioBtn.hidden === audible) {
      this.audioBtn.hidden = !audible;
      if (audible) this.setMuted(this.video.muted);
    }
  }
}

// ---------------------------------------------------------------- camera list

/** @param {Promise<Response | null>} [pending] the list already asked for */
async function refreshCameras(pending = fetchCameras()) {
  const res = await pending;
  if (!res) return showNotice(restarting ? RESTARTING : "The gateway cannot be reached. Retrying…");
  if (res.status === 503 && restarting) return showNotice(RESTARTING);
  if (res.status === 401) return signIn();
  if (!res.ok) return showNotice(`The camera list is unavailable (HTTP ${res.status}). Retrying…`);
  /** @type {unknown} */
  let list;
  try {
    list = await res.json();
  } catch {
    return showNotice("The gateway sent an unreadable camera list. Retrying…");
  }
  showNotice("");
  restarting = false;
  if (!Array.isArray(list)) return;
  reconcile(list.filter((c) => c && typeof c.id === "string"));
}

/**
 * The page's one event stream of camera states (`cameras` = the whole list, then `camera`
 * per change). The browser reconnects it by itself; a 401 is found by the list refresh.
 */
function listenCameras() {
  if (typeof EventSource !== "function") return;
  const es = new EventSource(new URL("api/cameras/events", base), { withCredentials: true });
  // The gateway shuts down (an upgrade, a restart): say so, and come back when it does.
  es.addEventListener("gateway", (e) => {
    try {
      const n = JSON.parse(/** @type {MessageEvent} */ (e).data);
      if (n?.state !== "restarting") return;
      restarting = true;
      showNotice(RESTARTING);
      // Come back sooner than the list's usual refresh: the notice goes once the list answers.
      setTimeout(() => void refreshCameras(), Math.max(500, Number(n.retryMs) || 1000));
    } catch {
      // as below
    }
  });
  // A stream refused for good (a 503 while the gateway restarts): the browser gives up on it, we do not.
  es.addEventListener("error", () => {
    if (endedWhy) {
      nodeWatch.close();
      return es.close();
    }
    nodeWatch.dropped();
    if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    setTimeout(listenCameras, STREAM_RETRY_MS);
  });
  // This browser's session ended (signed out in another tab or on another node, ended by an
  // administrator): say so instead of sending the user back to sign-in without a word.
  es.addEventListener("bye", (e) => {
    try {
      const n = JSON.parse(/** @type {MessageEvent} */ (e).data);
      if (endedElsewhere(String(n?.reason ?? ""))) es.close();
    } catch {
      // as below
    }
  });
  // Which gateway process this stream reached: another one than before means the old one is gone.
  es.addEventListener("instance", (e) => {
    try {
      const n = JSON.parse(/** @type {MessageEvent} */ (e).data);
      if (typeof n?.id === "string") nodeWatch.reached(n.id);
    } catch {
      // as below
    }
  });
  es.addEventListener("cameras", (e) => {
    if (restarting) void refreshCameras();
    // Not before the user's saved layout is read (the first list is shown then): a grid started in
    // the default layout's shape would offer for the wrong number of tiles.
    if (!userKnown) return;
    try {
      const list = JSON.parse(/** @type {MessageEvent} */ (e).data);
      if (Array.isArray(list)) reconcile(list.filter((c) => c && typeof c.id === "string"));
    } catch {
      // a damaged event: the next one, or the list refresh, fixes the view
    }
  });
  // One of this page's views lost its media worker, or the gateway node it came through: offer again
  // now (ICE would take seconds to notice). Or its camera moves to another node while the
  // connection stays: the tile says so until the picture is back.
  es.addEventListener("viewer", (e) => {
    try {
      const n = JSON.parse(/** @type {MessageEvent} */ (e).data);
      if (!n || typeof n.viewer !== "string") return;
      const message = String(n.message ?? "");
      // About the grid's one connection: the whole session (offer again), or one slot's camera moving.
      if (typeof n.grid === "string") {
        if (!gridSession?.isSession(n.grid)) return;
        if (n.reoffer !== false) return void gridSession.lost(n.grid, message);
        for (const [id, s] of sessions)
          if (!(s instanceof WhepSession) && s.mid === n.mid && s.camera === n.camera && s.isViewer(n.grid)) tiles.get(id)?.moving(n.grid, message);
        return;
      }
      for (const [id, s] of sessions) {
        if (!(s instanceof WhepSession)) continue;
        if (n.reoffer === false) {
          if (s.isViewer(n.viewer)) tiles.get(id)?.moving(n.viewer, message);
        } else s.lost(n.viewer, message);
      }
    } catch {
      // as below
    }
  });
  es.addEventListener("camera", (e) => {
    try {
      const cam = JSON.parse(/** @type {MessageEvent} */ (e).data);
      if (cam && typeof cam.id === "string") tiles.get(cam.id)?.update(cam);
    } catch {
      // as above
    }
  });
}

/** @param {CameraInfo[]} list */
function reconcile(list) {
  // On a direct link to one camera, only that camera's session starts.
  const linked = hashCamera();
  const focus = openId ?? (linked && list.some((c) => c.id === linked) ? linked : null);
  const seen = new Set();
  let prev = null;
  for (const cam of list) {
    seen.add(cam.id);
    let tile = tiles.get(cam.id);
    if (tile) tile.update(cam);
    else {
      tile = new Tile(cam);
      tiles.set(cam.id, tile);
      observer?.observe(tile.el);
      // Which tiles play is decided by applyView (filters, layout page) or the open camera. A
      // linked camera not open yet is opened large by applyHash below, never first as a grid tile.
      if (focus === cam.id) {
        if (openId === cam.id) tile.connect();
      } else tile.disconnect(focus === null ? PAUSED_NOT_SHOWN : PAUSED_OTHER_OPEN);
    }
    // Keep DOM order = server order without re-inserting (which would restart videos).
    const want = prev ? prev.el.nextElementSibling : grid.firstElementChild;
    if (want !== tile.el) grid.insertBefore(tile.el, want);
    prev = tile;
  }
  for (const [id, tile] of tiles) {
    if (seen.has(id)) continue;
    tile.disconnect("");
    observer?.unobserve(tile.el);
    tile.el.remove();
    tiles.delete(id);
  }
  emptyEl.hidden = tiles.size > 0;
  finder.setGroups(groupsOf([...tiles.values()]));
  applyHash();
  applyView();
  renderSummary();
}

/**
 * Who is signed in (`GET auth/me`: {name, sub, via}); absent without a sign-in layer.
 * A cookie session gets a Sign out link (a confirmation page that posts with CSRF proof).
 * @param {Promise<Response | null>} [pending] the request already sent
 */
async function showUser(pending = fetchUser()) {
  let me;
  try {
    const res = await pending;
    if (!res?.ok) return;
    me = await res.json();
  } catch {
    return;
  }
  if (!me || typeof me !== "object") return;
  const name = typeof me.name === "string" && me.name ? me.name : typeof me.sub === "string" ? me.sub : "";
  if (!name) return;
  const box = $("user");
  /** @type {HTMLElement} */ (box.querySelector(".user-name")).textContent = name;
  /** @type {HTMLElement} */ (document.querySelector(".menu-btn-name")).textContent = name;
  $("menu-btn").setAttribute("aria-label", `Account and settings (${name})`);
  prefs.useUser(typeof me.sub === "string" ? me.sub : name);
  $("sign-out").hidden = me.via !== "session";
  // Administrators of every camera manage sessions (the server checks the same).
  const cams = Array.isArray(me.cameras) ? me.cameras : [];
  $("sessions-link").hidden = me.via === "none" || cams.length === 0 || !cams.every((/** @type {{ actions?: string[] }} */ c) => c.actions?.includes("admin"));
  const globalAdmin = cams.length > 0 && cams.every((/** @type {{ actions?: string[] }} */ c) => c.actions?.includes("admin"));
  $("audit-link").hidden = !globalAdmin;
  $("ports-link").hidden = !globalAdmin;
  $("supervision-link").hidden = !globalAdmin;
  box.hidden = false;
}

function signIn() {
  if (redirecting || endedWhy) return;
  redirecting = true;
  for (const t of tiles.values()) t.disconnect("Signing in…", true);
  const returnTo = location.pathname + location.search + location.hash;
  location.assign(new URL(`auth/login?return_to=${encodeURIComponent(returnTo)}`, base));
}

/** What the page says when the session ended by someone's deliberate act, by the gateway's reason. */
const ENDED_WORDS = /** @type {Record<string, string>} */ ({
  logout: "You signed out of Gatehouse in another window or on another device.",
  logged_out_at_provider: "You signed out at your organisation's sign-in service.",
  revoked: "An administrator ended your session.",
  revoked_at_provider: "Your organisation's sign-in service no longer accepts your sign-in.",
});

/**
 * Stops every view and says why, with a link to sign in again. Lapsed sessions (expired, past
 * their age) are not for here: they go back to sign-in as before.
 * @param {string} reason
 * @returns {boolean} whether the reason was one of these
 */
function endedElsewhere(reason) {
  const words = ENDED_WORDS[reason];
  if (!words) return false;
  if (endedWhy) return true;
  endedWhy = words;
  for (const t of tiles.values()) t.disconnect("Signed out");
  showNotice(`${words} Live video has stopped.`);
  const again = document.createElement("a");
  again.id = "sign-in-again";
  again.href = new URL(`auth/login?return_to=${encodeURIComponent(location.pathname + location.search + location.hash)}`, base).href;
  again.textContent = "Sign in again";
  noticeEl.append(" ", again);
  return true;
}

/** @param {string} text empty hides the notice */
function showNotice(text) {
  noticeEl.hidden = !text;
  if (noticeEl.textContent !== text) noticeEl.textContent = text;
}

function renderSummary() {
  let live = 0;
  for (const t of tiles.values()) if (t.el.dataset.status === "live") live++;
  const n = tiles.size;
  const text = n === 0 ? "" : openId ? `${live ? "Live" : "Not live"}` : `${n} camera${n === 1 ? "" : "s"} · ${live} live`;
  if (summaryEl.textContent !== text) summaryEl.textContent = text;
}

// ---------------------------------------------------------------- single view

/**
 * Show one camera large and pause the others.
 * @param {string} id
 * @param {boolean} push add a history entry (user action) rather than follow the URL
 */
function openCamera(id, push) {
  const tile = tiles.get(id);
  if (!tile) return;
  if (push) history.pushState({ gatehouse: "open", camera: id }, "", `#camera=${encodeURIComponent(id)}`);
  openId = id;
  grid.dataset.mode = "single";
  document.body.classList.add("is-single");
  backBtn.hidden = false;
  titleEl.textContent = tile.name;
  document.title = `${tile.name} — Gatehouse`;
  for (const t of tiles.values()) {
    const isOpen = t === tile;
    t.el.classList.toggle("is-open", isOpen);
    t.el.hidden = !isOpen;
    if (isOpen) {
      t.connect();
      t.followStream();
    } else t.disconnect(PAUSED_OTHER_OPEN);
  }
  zoom.attach(tile.el, tile.video);
  showTimeline(tile);
  renderStep();
  tile.render();
  renderSummary();
  // Keep focus in the view when stepping between cameras; otherwise land on Back.
  if (!grid.contains(document.activeElement)) backBtn.focus();
}

/** Back to the grid: restart the paused tiles. */
function closeCamera() {
  const was = openId;
  openId = null;
  grid.dataset.mode = "grid";
  document.body.classList.remove("is-single");
  backBtn.hidden = true;
  titleEl.textContent = "All cameras";
  document.title = "Gatehouse — Live";
  zoom.attach(null, null);
  showTimeline(null);
  for (const t of tiles.values()) t.el.classList.remove("is-open");
  // The camera that was large goes back to a slot of the grid's connection.
  if (gridMode && was) tiles.get(was)?.disconnect(PAUSED_NOT_SHOWN);
  applyView(true);
  // The camera that was open goes back to its substream on the same connection.
  if (was) tiles.get(was)?.followStream();
  renderSummary();
  if (was) tiles.get(was)?.openBtn.focus();
}

/** User asked to go back (button, Esc). */
function goBack() {
  if (!openId) return;
  // If we pushed the entry, pop it so browser Back/Forward stay meaningful.
  if (history.state && history.state.gatehouse === "open") history.back();
  else {
    history.replaceState(null, "", location.pathname + location.search);
    closeCamera();
  }
}

/** Make the view follow the URL (initial load, Back/Forward, edited hash). */
function applyHash() {
  const id = hashCamera();
  if (id && tiles.has(id)) {
    if (openId !== id) openCamera(id, false);
    return;
  }
  if (id && tiles.size > 0 && !tiles.has(id)) showNotice(`Camera “${id}” does not exist or is not visible to you.`);
  if (openId) closeCamera();
}

// ---------------------------------------------------------------- timeline and playback (single view)

const timelineEl = $("timeline");
const timeline = new Timeline(timelineEl);
/** The tile whose timeline is shown (the open camera, with the playback right). @type {Tile | null} */
let playbackTile = null;
const playback = new PlaybackController({
  timeline,
  base,
  host: {
    video: () => playbackTile?.video ?? null,
    show(stream) {
      const t = playbackTile;
      if (!t) return;
      t.video.srcObject = stream;
      if (stream) t.play();
    },
    goLive() {
      const t = playbackTile;
      if (!t) return;
      t.playback = null;
      t.connect();
    },
    status(label, message = "") {
      const t = playbackTile;
      if (!t) return;
      if (label === null) {
        t.playback = null;
      } else {
        // Entering playback: the live session ends (a recording is personal, one stream at a time).
        if (!t.playback && t.session) t.disconnect("");
        t.playback = { label, message, time: playback.frameTime ?? 0 };
      }
      t.render();
      renderSummary();
    },
    unauthorized: signIn,
  },
});
timeline.addEventListener("availability", () => renderStep());

/** @param {Tile | null} tile the open camera, or null when the single view closes */
function showTimeline(tile) {
  const want = tile && tile.actions.includes("playback") ? tile : null;
  if (want === playbackTile) return;
  // The previous camera goes back to live (if it was playing a recording) before another opens.
  playback.setCamera(null);
  playbackTile = want;
  timelineEl.hidden = true; // shown once the gateway lists its recordings
  document.body.classList.toggle("has-timeline", Boolean(want));
  if (want) playback.setCamera(want.id);
}

const timelineShown = () => Boolean(openId && playbackTile && playbackTile.id === openId && !timelineEl.hidden);

// ---------------------------------------------------------------- keyboard

/**
 * Navigation keys, always on: arrows move between the tiles on screen (in the single view,
 * left and right step to the previous and next camera); Home/End jump; PageUp/PageDown turn
 * the grid's pages; Esc leaves the single view. Single-key shortcuts live in `shortcuts`.
 * @param {KeyboardEvent} e
 */
function onKey(e) {
  if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
  const target = /** @type {HTMLElement | null} */ (e.target);
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  if (document.querySelector("dialog[open]")) return;
  if (e.key === "Escape" && !accountMenu.hidden) return showMenu(false, true);
  if (e.key === "Escape" && openId && !fullscreenElement()) {
    e.preventDefault();
    return goBack();
  }
  if (openId) {
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      stepCamera(e.key === "ArrowLeft" ? -1 : 1);
    }
    return;
  }
  if (e.key === "PageUp" || e.key === "PageDown") {
    e.preventDefault();
    return turnPage(e.key === "PageUp" ? -1 : 1);
  }
  const current = focusedTile();
  if (!current) return;
  const list = shownTiles;
  const i = list.indexOf(current);
  const cols = Math.max(1, getComputedStyle(grid).gridTemplateColumns.split(" ").filter(Boolean).length);
  /** @type {Record<string, number>} */
  const moves = { ArrowLeft: i - 1, ArrowRight: i + 1, ArrowUp: i - cols, ArrowDown: i + cols, Home: 0, End: list.length - 1 };
  if (!(e.key in moves)) return;
  const next = list[Math.min(list.length - 1, Math.max(0, moves[e.key] ?? i))];
  if (next) {
    e.preventDefault();
    next.openBtn.focus();
  }
}

/** The open camera, else the focused tile. */
function currentTile() {
  return openId ? tiles.get(openId) : focusedTile();
}

const shortcuts = new Shortcuts({
  dialog: /** @type {HTMLDialogElement} */ ($("help")),
  enabled: prefs.get().shortcuts,
  onToggle: (on) => prefs.set({ shortcuts: on }),
});
shortcuts.add(
  { keys: ["?"], label: "Show this list", run: () => shortcuts.showHelp() },
  { keys: ["/"], label: "Search cameras", when: "grid", run: () => (openId ? false : finder.focusSearch()) },
  { keys: ["f"], label: "Fullscreen on or off", run: () => void toggleViewFullscreen() },
  { keys: ["s"], label: "Statistics on every tile", run: () => toggleAllStats() },
  {
    keys: ["m"],
    label: "Sound of the open or focused camera",
    run: () => {
      const tile = currentTile();
      if (!tile || tile.audioBtn.hidden) return false;
      tile.toggleAudio();
    },
  },
  {
    keys: ["*"],
    label: "Favourite of the open or focused camera",
    run: () => {
      const tile = currentTile();
      if (!tile) return false;
      prefs.toggleFavourite(tile.id);
    },
  },
  {
    keys: ["p"],
    label: "Save a snapshot",
    when: "single view",
    run: () => {
      const tile = openId ? tiles.get(openId) : undefined;
      if (!tile) return false;
      void snapshot(tile);
    },
  },
  { keys: ["+", "-"], label: "Zoom in or out (also the mouse wheel, or pinch)", when: "single view", run: (e) => (openId ? zoom.zoomBy(e.key === "-" ? 1 / 1.25 : 1.25) : false) },
  { keys: ["0"], label: "Whole picture (no zoom)", when: "single view", run: () => (openId ? zoom.reset() : false) },
  {
    keys: [" ", "k"],
    label: "Play or pause the recording (pausing live holds the picture)",
    when: "timeline",
    // Space on a focused button presses that button.
    run: (e) => (timelineShown() && !(e.key === " " && /** @type {Element | null} */ (e.target)?.closest?.("button, select, a")) ? timeline.togglePause() : false),
  },
  { keys: ["j"], label: "Back 10 seconds", when: "timeline", run: () => (timelineShown() ? timeline.jump(-10) : false) },
  { keys: ["h"], label: "Back 30 seconds", when: "timeline", run: () => (timelineShown() ? timeline.jump(-30) : false) },
  { keys: ["l"], label: "Forward 10 seconds", when: "timeline", run: () => (timelineShown() ? timeline.jump(10) : false) },
  { keys: ["."], label: "Next frame (while paused)", when: "timeline", run: () => (timelineShown() ? timeline.step() : false) },
  { keys: ["<", ">"], label: "Slower or faster (1/8× … 32×)", when: "timeline", run: (e) => (timelineShown() ? timeline.nudgeSpeed(e.key === "<" ? -1 : 1) : false) },
  { keys: ["[", "]"], label: "Timeline: show a longer or shorter time (a week … an hour; also the wheel or a pinch on it)", when: "timeline", run: (e) => (timelineShown() ? timeline.zoom(e.key === "[" ? 1 : -1) : false) },
  { keys: ["t"], label: "Go to a date and time", when: "timeline", run: () => (timelineShown() ? timeline.focusPicker() : false) },
  { keys: ["End"], label: "Back to live", when: "timeline", run: () => (timelineShown() && playback.mode === "playback" ? timeline.live() : false) },
  ...LAYOUTS.map((l, i) => ({
    keys: [String(i)],
    label: `Layout ${l.label}`,
    when: "grid",
    run: () => (openId ? false : prefs.set({ layout: l.id })),
  })),
  { keys: ["ArrowLeft", "ArrowRight"], label: "Previous or next camera", when: "single view; move between tiles in the grid", always: true },
  { keys: ["PageUp", "PageDown"], label: "Previous or next page", when: "grid", always: true },
  { keys: ["Enter"], label: "Open the focused camera", always: true },
  { keys: ["Escape"], label: "Back to all cameras, or leave fullscreen", always: true },
);

function focusedTile() {
  const li = document.activeElement?.closest?.(".tile");
  return li ? tiles.get(/** @type {HTMLElement} */ (li).dataset.camera ?? "") : undefined;
}

function toggleAllStats() {
  statsForAll = !statsForAll;
  statsBtn.setAttribute("aria-pressed", String(statsForAll));
  for (const t of tiles.values()) t.showStats(statsForAll);
}

// ---------------------------------------------------------------- view: filters, layout, pages

/** @type {Tile[]} tiles on the grid's current page, in display order */
let shownTiles = [];

/**
 * Show the tiles the filters keep on the current page of the layout; pause the others. In the
 * single view only the open camera plays and this only records what the grid would show.
 * @param {boolean} [resume] also restart shown tiles paused for other reasons (back from the single view)
 */
function applyView(resume = false) {
  const kept = filterCameras([...tiles.values()], finder.filter);
  if (openId) return;
  shownTiles = layout.arrange(kept);
  const shown = new Set(shownTiles);
  for (const t of tiles.values()) {
    const on = shown.has(t);
    t.el.hidden = !on;
    if (on && !t.session && (resume || t.pausedFor === PAUSED_NOT_SHOWN || t.pausedFor === PAUSED_OTHER_OPEN)) t.connect();
    else if (!on && t.session) t.disconnect(PAUSED_NOT_SHOWN);
  }
  noMatchEl.hidden = tiles.size === 0 || kept.length > 0;
  renderPager();
}

/** The cameras the single view steps through: the filtered list, favourites first. */
function stepList() {
  const kept = filterCameras([...tiles.values()], finder.filter);
  return kept.length ? kept : [...tiles.values()];
}

/** Previous/next buttons only when there is somewhere to go. */
function renderStep() {
  const tile = openId ? tiles.get(openId) : undefined;
  if (!tile) return;
  const many = stepList().length > 1;
  tile.el.classList.toggle("can-step", many);
}

/** @param {number} delta -1 previous, +1 next (wraps) */
function stepCamera(delta) {
  if (!openId) return;
  const list = stepList();
  const i = list.findIndex((t) => t.id === openId);
  const next = list[(i + delta + list.length) % list.length];
  if (!next || next.id === openId) return;
  // Replace the entry (Back still leaves the single view); keep whether we pushed it.
  const pushed = history.state && history.state.gatehouse === "open";
  history.replaceState(pushed ? { gatehouse: "open", camera: next.id } : null, "", `#camera=${encodeURIComponent(next.id)}`);
  openCamera(next.id, false);
}

/** @param {number} delta */
function turnPage(delta) {
  const n = layout.pageCount;
  if (n <= 1) return;
  layout.setPage((layout.page + delta + n) % n);
}

const layoutBox = $("layouts");
const layoutSelect = /** @type {HTMLSelectElement} */ ($("layout-select"));
const pagerEl = $("pager");
const pageLabel = $("page-label");
const fullscreenBtn = /** @type {HTMLButtonElement} */ ($("fullscreen"));

for (const [i, l] of LAYOUTS.entries()) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "seg";
  b.dataset.layout = l.id;
  b.textContent = l.id === "auto" ? "Fit" : l.label;
  b.title = `${l.id === "auto" ? "Fit every camera" : `Layout ${l.label}`} (${i})`;
  b.setAttribute("aria-label", l.id === "auto" ? "Layout: fit every camera" : `Layout ${l.label}`);
  b.addEventListener("click", () => prefs.set({ layout: l.id }));
  layoutBox.append(b);
  const o = document.createElement("option");
  o.value = l.id;
  o.textContent = l.id === "auto" ? "Fit all" : l.label;
  layoutSelect.append(o);
}
layoutSelect.addEventListener("change", () => prefs.set({ layout: layoutSelect.value }));

function renderLayoutChoice() {
  const id = layout.layout.id;
  for (const b of layoutBox.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.layout === id));
  if (layoutSelect.value !== id) layoutSelect.value = id;
}

function renderPager() {
  const n = layout.pageCount;
  pagerEl.hidden = n <= 1;
  const text = `${layout.page + 1} / ${n}`;
  if (pageLabel.textContent !== text) pageLabel.textContent = text;
}

$("page-prev").addEventListener("click", () => turnPage(-1));
$("page-next").addEventListener("click", () => turnPage(1));
$("clear-filter").addEventListener("click", () => finder.clear());
layout.addEventListener("change", () => applyView());
finder.addEventListener("change", () => applyView());
prefs.addEventListener("change", () => {
  const q = prefs.get().quality;
  for (const t of tiles.values()) if (t.qualitySel.value !== q) t.qualitySel.value = q;
  if (openId) tiles.get(openId)?.followStream();
  layout.setLayout(prefs.get().layout);
  shortcuts.setEnabled(prefs.get().shortcuts);
  renderLayoutChoice();
  for (const t of tiles.values()) t.renderFavourite();
  applyView();
});
layout.setLayout(prefs.get().layout);
renderLayoutChoice();

/** Fullscreen of what is on screen: the open camera, or the grid with its toolbar. */
function toggleViewFullscreen() {
  const tile = openId ? tiles.get(openId) : undefined;
  return toggleFullscreen(tile ? tile.el : $("main"), tile?.video);
}
fullscreenBtn.addEventListener("click", () => void toggleViewFullscreen());
onFullscreenChange(() => {
  const on = fullscreenElement() !== null;
  document.body.classList.toggle("is-fullscreen", on);
  fullscreenBtn.setAttribute("aria-pressed", String(on));
  fullscreenBtn.setAttribute("aria-label", on ? "Leave fullscreen" : "Fullscreen");
});

// ---------------------------------------------------------------- snapshot and zoom (single view)

const zoom = new Zoom();
zoom.addEventListener("change", () => {
  const tile = openId ? tiles.get(openId) : undefined;
  if (!tile) return;
  const s = zoom.view.scale;
  tile.zoomEl.hidden = s === 1;
  /** @type {HTMLElement} */ (tile.zoomEl.querySelector(".zoom-level")).textContent = `${s < 10 ? s.toFixed(1) : Math.round(s)}×`;
});

const toastEl = $("toast");
/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer;
/** @param {string} text shown for a few seconds */
function toast(text) {
  toastEl.textContent = text;
  toastEl.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toastEl.hidden = true), 4000);
}

/** @param {Tile} tile */
async function snapshot(tile) {
  try {
    const name = await saveSnapshot(tile.video, tile.name);
    toast(`Snapshot saved: ${name}`);
  } catch (err) {
    toast(err instanceof Error ? err.message : "The snapshot failed");
  }
}

// ---------------------------------------------------------------- account menu

const menuBtn = $("menu-btn");
const accountMenu = $("account-menu");

/**
 * @param {boolean} show
 * @param {boolean} [refocus] return focus to the menu button
 */
function showMenu(show, refocus = false) {
  accountMenu.hidden = !show;
  menuBtn.setAttribute("aria-expanded", String(show));
  if (show) /** @type {HTMLElement | null} */ (accountMenu.querySelector("a:not([hidden]), button:not([hidden])"))?.focus();
  else if (refocus) menuBtn.focus();
}
menuBtn.addEventListener("click", () => showMenu(accountMenu.hidden));
document.addEventListener("click", (e) => {
  if (!accountMenu.hidden && !(/** @type {Element} */ (e.target)).closest?.(".menu-wrap")) showMenu(false);
});
$("shortcuts-btn").addEventListener("click", () => {
  showMenu(false);
  shortcuts.showHelp();
});

// ---------------------------------------------------------------- pausing

/** Tiles out of view (long grids) pause after a grace period. */
const observer =
  typeof IntersectionObserver === "function"
    ? new IntersectionObserver((entries) => {
        for (const e of entries) {
          const tile = tiles.get(/** @type {HTMLElement} */ (e.target).dataset.camera ?? "");
          if (!tile) continue;
          if (e.isIntersecting) {
            tile.offscreenSince = 0;
            if (tile.pausedFor === PAUSED_OFFSCREEN && !openId) tile.connect();
          } else if (!tile.offscreenSince) tile.offscreenSince = performance.now();
        }
      })
    : null;

const clockEl = document.getElementById("clock");

function tick() {
  const now = performance.now();
  if (clockEl) {
    const text = clockText(Date.now());
    if (clockEl.textContent !== text) clockEl.textContent = text;
    clockEl.setAttribute("datetime", new Date().toISOString());
  }
  const hiddenLong = hiddenSince > 0 && Date.now() - hiddenSince > HIDDEN_PAUSE_MS;
  const anyAudible = [...tiles.values()].some((t) => t.session && !t.video.muted);
  for (const t of tiles.values()) {
    if (t.session && openId !== t.id && t.offscreenSince && now - t.offscreenSince > OFFSCREEN_PAUSE_MS) {
      t.disconnect(PAUSED_OFFSCREEN);
    } else if (t.session && hiddenLong && !anyAudible) {
      t.disconnect(PAUSED_BACKGROUND);
    }
    void t.sample().then(() => t.render());
  }
  renderSummary();
}

function onVisibility() {
  if (document.visibilityState === "hidden") {
    hiddenSince = Date.now();
    return;
  }
  hiddenSince = 0;
  for (const t of tiles.values()) {
    if (t.pausedFor === PAUSED_BACKGROUND && (!openId || openId === t.id)) t.connect();
  }
}

// ---------------------------------------------------------------- test hook

/**
 * Per-tile state and fresh statistics, for tests and the browser console.
 * @returns {Promise<Array<Record<string, unknown>>>}
 */
async function stats() {
  const out = [];
  for (const t of tiles.values()) {
    const s = t.session;
    let summary = t.summary;
    if (s?.pc) {
      try {
        summary = summarize(await statsOf(s), t.summary, performance.now());
      } catch {
        // closed while sampling
      }
    }
    out.push({
      camera: t.id,
      status: t.el.dataset.status,
      label: t.badgeText.textContent,
      message: t.messageEl.textContent,
      serverStatus: t.serverStatus,
      stale: t.el.hasAttribute("data-stale"),
      lastPicture: t.lastEl.textContent,
      frameTime: t.timeEl.textContent,
      frameWall: t.frameWall,
      frameSampledAt: t.frameSampledAt,
      state: s ? s.state : "paused",
      attempts: s ? s.attempts : 0,
      hasAudio: s ? s.hasAudio : false,
      resource: s ? s.resource : null,
      error: s?.lastError ? { status: s.lastError.status, message: s.lastError.message } : null,
      videoWidth: t.video.videoWidth,
      videoHeight: t.video.videoHeight,
      muted: t.video.muted,
      // How the stall rule sees the picture (stall.js), performance.now() times.
      stall: { lastFrameAt: t.lastFrameAt, sampledAt: t.sampledAt, fps: t.typicalFps },
      ...(summary ?? {}),
    });
  }
  return out;
}

// ---------------------------------------------------------------- start

statsBtn.addEventListener("click", toggleAllStats);
backBtn.addEventListener("click", goBack);
document.addEventListener("keydown", onKey);
document.addEventListener("visibilitychange", onVisibility);
window.addEventListener("popstate", applyHash);
window.addEventListener("hashchange", applyHash);
// End sessions on the server when the page goes away; restart if it comes back from the back/forward cache.
window.addEventListener("pagehide", () => {
  for (const t of tiles.values()) t.disconnect("Page closed", true);
  gridSession?.close("page closed", { keepalive: true });
  gridSession = null;
});
window.addEventListener("pageshow", (e) => {
  if (!e.persisted) return;
  for (const t of tiles.values()) if (!openId || openId === t.id) t.connect();
});

Object.defineProperty(window, "gatehouse", {
  value: Object.freeze({
    sessions,
    tiles,
    /** The grid's one multi-camera session (null before the first tile plays, with `?grid=0`, and without a grid endpoint). */
    grid: () => gridSession,
    stats,
    open: (/** @type {string} */ id) => openCamera(id, true),
    back: goBack,
    /** What the grid shows: layout, page, page count and the camera ids on screen. */
    view: () => ({ layout: layout.layout.id, page: layout.page, pageCount: layout.pageCount, shown: shownTiles.map((t) => t.id) }),
    /** Digital zoom of the single view: scale and pan in CSS px. */
    zoom: () => ({ ...zoom.view }),
    /** The timeline: shown, view span and start, playback state, recorded ranges (ms). */
    timeline: () => ({
      shown: timelineShown(),
      span: timeline.span,
      viewStart: timeline.viewStart,
      ...timeline.state,
      position: timeline.position,
      frameTime: playback.frameTime,
      ranges: timeline.ranges.map((r) => ({ ...r })),
      error: /** @type {HTMLElement} */ (timelineEl.querySelector(".tl-error")).hidden ? "" : timelineEl.querySelector(".tl-error")?.textContent ?? "",
    }),
  }),
  configurable: true,
});

setInterval(tick, TICK_MS);
setInterval(() => {
  // The tiles longest without a presented frame first, and a few per check: a busy browser draws
  // late, and sampling every tile of a large grid then would only make it busier.
  let quiet = 0;
  for (const t of [...tiles.values()].sort((a, b) => a.presentedAt - b.presentedAt)) if (t.checkStall(quiet < QUIET_SAMPLES_PER_CHECK) === "quiet") quiet++;
}, STALL_CHECK_MS);
// The grid's connection, its offer made while the camera list loads (live-start.js; its first
// tiles' binds go with the offer once they ask); a link to one camera opens it large in a session
// of its own instead.
if (earlyGrid) adoptGrid(earlyGrid);
listenCameras();
(async function poll(list = fetchCameras()) {
  // The camera list is shown after the user's saved layout and favourites are known, so the grid
  // does not start in the wrong shape. The first round uses the requests sent as the page started.
  if (!userKnown) {
    await showUser(firstUser);
    userKnown = true;
  }
  await refreshCameras(list);
  setTimeout(poll, REFRESH_MS);
})(firstList).finally(() => {
  // The clock and the tiles' figures are drawn once the first list is shown, in a task of their
  // own: the grid's offer, sent as the first tiles ask, does not wait for them.
  setTimeout(tick);
});

/**
 * A tile's own statistics: its receiver's when it shares the grid's connection, else its connection's.
 * @param {WhepSession | import("./grid-session.js").SlotLease} s
 * @returns {Promise<RTCStatsReport>}
 */
function statsOf(s) {
  if ("getStats" in s && typeof s.getStats === "function") return s.getStats();
  return /** @type {RTCPeerConnection} */ (s.pc).getStats();
}

/** @param {string} s */
function capitalize(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}
