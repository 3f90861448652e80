/**
 * Connection test for any signed-in user: from this browser and network, which path carries
 * video from the gateway, and what to ask the network administrator when one is blocked.
 *
 * Each path is a real WHEP live view of a camera the user may watch, held until ICE connects
 * (or `PATH_TIMEOUT_MS` passes) and then ended:
 *  - direct UDP: no ICE servers, so only a direct path to the gateway's media ports can work;
 *  - TURN over UDP, over TCP, over TLS: `iceTransportPolicy: "relay"` with one TURN URI at a
 *    time, so only that way to the relay can work.
 * `GET api/connectivity` gives this user's relay credentials and the ports to name.
 * `window.gatehouseConnectivity` exposes the results for tests and support.
 */
import { csrfHeaders } from "./csrf.js";

/** How long one path may take to connect before it counts as blocked, ms. */
const PATH_TIMEOUT_MS = 12_000;
/** Longest wait for ICE candidate gathering before the offer is sent anyway, ms. */
const GATHER_MS = 4000;

const base = new URL(".", document.baseURI);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const body = /** @type {HTMLTableSectionElement} */ (/** @type {HTMLTableElement} */ ($("paths")).tBodies[0]);
const notice = $("notice");
const advice = $("advice");
const runBtn = /** @type {HTMLButtonElement} */ ($("run"));

/**
 * @typedef {{ id: "direct" | "turn-udp" | "turn-tcp" | "turn-tls", label: string, state: "testing" | "works" | "blocked" | "absent", detail: string }} PathResult
 * @typedef {{ host: string, httpsPort: number, tls: boolean, media: { ports: [number, number] }, turn: { udpPort: number | null, sharesHttpsPort: boolean } | null,
 *             iceServers: { urls: string[], username: string, credential: string }[] }} Info
 */

/** @type {PathResult[]} */
const results = [];
let running = false;
Object.defineProperty(window, "gatehouseConnectivity", { value: { results, done: false }, configurable: true });

const STATE_TEXT = { testing: "Testing…", works: "Works", blocked: "Blocked", absent: "Not offered here" };

/** @param {string} text empty hides the notice */
function say(text) {
  notice.hidden = !text;
  notice.textContent = text;
}

function render() {
  body.replaceChildren(
    ...results.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.path = r.id;
      tr.dataset.state = r.state;
      for (const v of [r.label, STATE_TEXT[r.state], r.detail]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
}

/** @param {RTCPeerConnection} pc */
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, GATHER_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(t);
        resolve(undefined);
      }
    });
  });
}

/** @param {RTCPeerConnection} pc  @returns {Promise<boolean>} */
function connected(pc) {
  return new Promise((resolve) => {
    const check = () => {
      const s = pc.iceConnectionState;
      if (s === "connected" || s === "completed") done(true);
      else if (s === "failed" || s === "closed") done(false);
    };
    const t = setTimeout(() => done(false), PATH_TIMEOUT_MS);
    const done = (/** @type {boolean} */ ok) => {
      clearTimeout(t);
      pc.removeEventListener("iceconnectionstatechange", check);
      resolve(ok);
    };
    pc.addEventListener("iceconnectionstatechange", check);
    check();
  });
}

/** The local candidate type of the pair in use ("host", "srflx", "relay"), and its relay protocol. */
async function selectedPair(/** @type {RTCPeerConnection} */ pc) {
  const stats = await pc.getStats();
  /** @type {any} */ let pair;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) stats.forEach((s) => {
    if (s.type === "candidate-pair" && s.state === "succeeded" && (s.nominated || !pair)) pair = s;
  });
  const local = pair ? stats.get(pair.localCandidateId) : undefined;
  return { type: local?.candidateType ?? "", relayProtocol: local?.relayProtocol ?? "" };
}

/**
 * One WHEP live view over the given ICE configuration; true when ICE connects.
 * @param {string} camera  @param {RTCConfiguration} config
 */
async function tryPath(camera, config) {
  const pc = new RTCPeerConnection(config);
  /** @type {string | null} */ let location = null;
  try {
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const res = await fetch(new URL(`whep/${encodeURIComponent(camera)}`, base), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/sdp", ...(await csrfHeaders(base)) },
      body: pc.localDescription?.sdp ?? "",
    });
    if (res.status !== 201) return { ok: false, detail: `the gateway answered HTTP ${res.status}` };
    location = res.headers.get("location");
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    const ok = await connected(pc);
    const pair = ok ? await selectedPair(pc) : undefined;
    return { ok, detail: ok ? `connected (${pair?.type === "relay" ? `through the relay${pair.relayProtocol ? ` over ${pair.relayProtocol.toUpperCase()}` : ""}` : "direct"})` : "no connection within 12 s" };
  } catch (err) {
    return { ok: false, detail: `could not test: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    pc.close();
    if (location) void fetch(new URL(location, base), { method: "DELETE", credentials: "same-origin", headers: await csrfHeaders(base).catch(() => ({})) }).catch(() => {});
  }
}

/** A camera this user may watch (the first one the list offers). */
async function someCamera() {
  const res = await fetch(new URL("api/cameras", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  if (res.status === 401) {
    location.assign(new URL(`auth/login?return_to=${encodeURIComponent(location.pathname)}`, base));
    return null;
  }
  const list = await res.json();
  return Array.isArray(list) && list.length > 0 ? String(list[0].id) : null;
}

/** @param {Info} info */
function explain(info) {
  const by = Object.fromEntries(results.map((r) => [r.id, r.state]));
  const media = `UDP ports ${info.media.ports[0]}–${info.media.ports[1]}`;
  const turnUdp = info.turn?.udpPort ? `UDP port ${info.turn.udpPort}` : null;
  const front = `TCP port ${info.httpsPort}`;
  if (by.direct === "works") return "Video reaches you directly: the best path, with the least delay. Nothing to ask your network administrator.";
  const allow = [`${media}${turnUdp ? ` and ${turnUdp}` : ""}`];
  if (by["turn-udp"] === "works")
    return `Direct video is blocked on this network, but it works through the gateway's relay over UDP. For the least delay, ask your network administrator to allow ${allow[0]} from this computer to ${info.host}.`;
  if (by["turn-tcp"] === "works" || by["turn-tls"] === "works")
    return `UDP is blocked on this network: video works through the relay over ${by["turn-tls"] === "works" ? "TLS" : "TCP"} on ${front}, with more delay and less smoothness. Ask your network administrator to allow ${allow[0]} from this computer to ${info.host}.`;
  return `Video cannot reach you from this network. Ask your network administrator to allow, from this computer to ${info.host}: ${front} (HTTPS) and ${allow[0]}.`;
}

async function run() {
  if (running) return;
  running = true;
  runBtn.disabled = true;
  say("");
  /** @type {any} */ (window).gatehouseConnectivity.done = false;
  results.splice(0);
  advice.textContent = "Testing…";
  try {
    const res = await fetch(new URL("api/connectivity", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
    if (res.status === 401) return location.assign(new URL(`auth/login?return_to=${encodeURIComponent(location.pathname)}`, base));
    if (!res.ok) return say(`The test cannot start (HTTP ${res.status}).`);
    /** @type {Info} */
    const info = await res.json();
    const camera = await someCamera();
    if (!camera) return say("There is no camera you may watch, so there is nothing to test the video path with.");
    const urls = info.iceServers.flatMap((s) => s.urls.map((u) => ({ url: u, username: s.username, credential: s.credential })));
    const pick = (/** @type {(u: string) => boolean} */ f) => urls.find((u) => f(u.url));
    const plan = /** @type {{ id: PathResult["id"], label: string, server: { url: string, username: string, credential: string } | undefined | null }[]} */ ([
      { id: "direct", label: "Direct (UDP)", server: null },
      { id: "turn-udp", label: "Relay over UDP", server: pick((u) => u.startsWith("turn:") && /transport=udp/.test(u)) },
      { id: "turn-tcp", label: "Relay over TCP", server: pick((u) => u.startsWith("turn:") && /transport=tcp/.test(u)) },
      { id: "turn-tls", label: "Relay over TLS", server: pick((u) => u.startsWith("turns:")) },
    ]);
    for (const p of plan) results.push({ id: p.id, label: p.label, state: p.server === undefined ? "absent" : "testing", detail: p.server === undefined ? "this gateway does not offer it" : "" });
    render();
    for (const [i, p] of plan.entries()) {
      if (p.server === undefined) continue;
      /** @type {RTCConfiguration} */
      const config = p.server === null ? { iceServers: [] } : { iceServers: [{ urls: p.server.url, username: p.server.username, credential: p.server.credential }], iceTransportPolicy: "relay" };
      const r = await tryPath(camera, config);
      results[i] = { ...results[i], state: r.ok ? "works" : "blocked", detail: p.server ? `${p.server.url.replace(/\?.*$/, "")}: ${r.detail}` : r.detail };
      render();
    }
    advice.textContent = explain(info);
  } catch (err) {
    say(`The test stopped: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    running = false;
    runBtn.disabled = false;
    /** @type {any} */ (window).gatehouseConnectivity.done = true;
  }
}

runBtn.addEventListener("click", () => void run());
void run();
