/**
 * Signed-in sessions, for administrators (`GET api/admin/sessions`): who is signed in, since
 * when, until when; end one session, or every session of a user. The server decides who may
 * (403 for anyone but an administrator of every camera) and requires the CSRF token.
 */
import { csrfHeaders, resetCsrf } from "./csrf.js";

/** List refresh period, ms. */
const REFRESH_MS = 10_000;

const base = new URL(".", document.baseURI);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const table = /** @type {HTMLTableElement} */ ($("sessions"));
const body = /** @type {HTMLTableSectionElement} */ (table.tBodies[0]);
const notice = $("notice");
const summary = $("summary");

/** @typedef {{ ref: string, sub: string, name?: string, roles: string[], createdAt: string, expiresAt: string, live: boolean }} Session */

/** @type {string | undefined} the viewer's own subject, to mark their rows */
let me;

/** @param {string} text empty hides the notice */
function say(text) {
  notice.hidden = !text;
  notice.textContent = text;
}

const time = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

async function load() {
  let res;
  try {
    res = await fetch(new URL("api/admin/sessions", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    say("The gateway cannot be reached.");
    return;
  }
  if (res.status === 401) {
    location.assign(new URL(`auth/login?return_to=${encodeURIComponent(location.pathname)}`, base));
    return;
  }
  if (res.status === 403) {
    table.hidden = true;
    say("Only an administrator of every camera can see who is signed in.");
    return;
  }
  if (!res.ok) {
    say(`Could not load the sessions (HTTP ${res.status}).`);
    return;
  }
  const { sessions } = /** @type {{ sessions: Session[] }} */ (await res.json());
  say("");
  render(sessions);
}

/** @param {Session[]} sessions */
function render(sessions) {
  const users = new Set(sessions.map((s) => s.sub));
  summary.textContent = `${sessions.length} session${sessions.length === 1 ? "" : "s"} · ${users.size} user${users.size === 1 ? "" : "s"}`;
  const rows = [...sessions].sort((a, b) => a.sub.localeCompare(b.sub) || a.createdAt.localeCompare(b.createdAt));
  body.replaceChildren(...rows.map(row));
  table.hidden = false;
}

/** @param {Session} s */
function row(s) {
  const tr = document.createElement("tr");
  tr.dataset.ref = s.ref;
  tr.dataset.sub = s.sub;
  const who = document.createElement("td");
  const name = document.createElement("span");
  name.className = "session-name";
  name.textContent = s.name || s.sub;
  const sub = document.createElement("span");
  sub.className = "session-sub";
  sub.textContent = s.sub === me ? `${s.sub} (you)` : s.sub;
  who.append(name, sub);
  const roles = cell(s.roles.join(", ") || "—");
  const since = cell(time.format(new Date(s.createdAt)));
  const until = cell(s.live ? time.format(new Date(s.expiresAt)) : "lapsed, renewing");
  const actions = document.createElement("td");
  actions.className = "session-actions";
  actions.append(
    button("End session", `End this session of ${s.name || s.sub}`, () => end(`api/admin/sessions/${encodeURIComponent(s.ref)}`)),
    button("End all of user", `End every session of ${s.name || s.sub}`, () => end(`api/admin/users/${encodeURIComponent(s.sub)}/sessions`)),
  );
  tr.append(who, roles, since, until, actions);
  return tr;
}

/** @param {string} text */
function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

/**
 * @param {string} label
 * @param {string} title
 * @param {() => Promise<void>} action
 */
function button(label, title, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "btn";
  b.textContent = label;
  b.title = title;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await action();
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** @param {string} path */
async function end(path) {
  let res;
  try {
    res = await fetch(new URL(path, base), { method: "DELETE", credentials: "same-origin", headers: { Accept: "application/json", ...(await csrfHeaders(base)) } });
  } catch {
    say("The gateway cannot be reached.");
    return;
  }
  if (res.status === 403) resetCsrf();
  if (!res.ok && res.status !== 404) say(`Could not end the session (HTTP ${res.status}).`);
  // Ending our own session signs us out: the reload sends us to sign in.
  await load();
}

async function start() {
  try {
    const r = await fetch(new URL("auth/me", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
    if (r.ok) me = (await r.json()).sub;
  } catch {
    // the list says what is wrong
  }
  await load();
  setInterval(() => void load(), REFRESH_MS);
}

void start();
