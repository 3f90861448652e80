/**
 * Signed-in sessions, for administrators (`GET api/admin/sessions`): who is signed in, from which
 * browser and address, when they were last active and when the session really ends; end one
 * session, or every session of a user, after a confirmation. The server decides who may (403 for
 * anyone but an administrator of every camera) and requires the CSRF token.
 *
 * Ending a session does not end the user's session at the identity provider: when that is still
 * open, the browser is signed straight back in on its next visit. The page watches for that after
 * an ending and says so.
 */
import { base, button, byId as $, cell as tableCell, getAdminJson, notifier, span } from "./admin-page.js";
import { csrfHeaders, resetCsrf } from "./csrf.js";

/** List refresh period, ms. */
const REFRESH_MS = 10_000;
/** After ending a session, refresh this often for a while to catch an immediate sign-back-in, ms. */
const WATCH_REFRESH_MS = 2000;
/** How long after an ending a new session of the same user counts as "signed straight back in", ms. */
const WATCH_MS = 120_000;

const table = /** @type {HTMLTableElement} */ ($("sessions"));
const body = /** @type {HTMLTableSectionElement} */ (table.tBodies[0]);
const notice = $("notice");
const summary = $("summary");
const dialog = /** @type {HTMLDialogElement} */ ($("confirm"));

/**
 * @typedef {{ ref: string, sub: string, name?: string, roles: string[], createdAt: string, expiresAt: string, endsAt?: string,
 *             renews?: boolean, live: boolean, device?: string, address?: string, lastSeenAt?: string, current?: boolean }} Session
 */

/** @type {string | undefined} the viewer's own subject, to mark their rows */
let me;
/** @type {Map<string, { name: string, at: number, refs: Set<string> }>} users whose sessions we ended, by subject */
const ended = new Map();
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;

const say = notifier(notice);

const time = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "just now", "3 minutes ago", "2 hours ago"; the date beyond a day. @param {string} iso */
function ago(iso) {
  const ms = Date.now() - Date.parse(iso);
  if (!Number.isFinite(ms)) return "—";
  if (ms < 60_000) return "just now";
  if (ms < 3_600_000) return relative.format(-Math.round(ms / 60_000), "minute");
  if (ms < 86_400_000) return relative.format(-Math.round(ms / 3_600_000), "hour");
  return time.format(new Date(iso));
}

async function load() {
  clearTimeout(timer);
  const watching = [...ended.values()].some((e) => Date.now() - e.at < WATCH_MS);
  timer = setTimeout(() => void load(), watching ? WATCH_REFRESH_MS : REFRESH_MS);
  const json = await getAdminJson("api/admin/sessions", {
    say,
    what: "the sessions",
    forbidden: "Only an administrator of every camera can see who is signed in.",
    onForbidden: () => (table.hidden = true),
  });
  if (!json) return;
  const { sessions } = /** @type {{ sessions: Session[] }} */ (json);
  say(signedBackIn(sessions));
  render(sessions);
}

/**
 * A sentence about users we signed out who came straight back (a new session after the ending).
 * @param {Session[]} sessions
 */
function signedBackIn(sessions) {
  const lines = [];
  for (const [sub, e] of ended) {
    const back = sessions.find((s) => s.sub === sub && !e.refs.has(s.ref) && Date.parse(s.createdAt) >= e.at - 1000);
    if (!back) continue;
    lines.push(
      `${e.name} was signed straight back in at ${clock.format(new Date(back.createdAt))} (${back.device ?? "a browser"}): ` +
        "their session at the identity provider is still open. To keep them out, disable them at the provider, then end this session again.",
    );
  }
  return lines.join(" ");
}

/** @param {Session[]} sessions */
function render(sessions) {
  const users = new Set(sessions.map((s) => s.sub));
  summary.textContent = `${sessions.length} session${sessions.length === 1 ? "" : "s"} · ${users.size} user${users.size === 1 ? "" : "s"}`;
  // This browser first, then by user and age.
  const rows = [...sessions].sort((a, b) => Number(Boolean(b.current)) - Number(Boolean(a.current)) || a.sub.localeCompare(b.sub) || a.createdAt.localeCompare(b.createdAt));
  body.replaceChildren(...rows.map(row));
  table.hidden = false;
}

/** @param {Session} s */
function row(s) {
  const who = s.name || s.sub;
  const tr = document.createElement("tr");
  tr.dataset.ref = s.ref;
  tr.dataset.sub = s.sub;
  if (s.current) tr.classList.add("is-current");
  const e = ended.get(s.sub);
  const isBack = e && !e.refs.has(s.ref) && Date.parse(s.createdAt) >= e.at - 1000;

  const name = span("session-name", who);
  if (s.current) name.append(" ", span("session-tag is-this", "This browser"));
  if (isBack) name.append(" ", span("session-tag is-back", "Signed back in"));
  const user = cell("User", name, span("session-sub", s.sub === me ? `${s.sub} (you)` : s.sub), span("session-roles", s.roles.join(", ") || "no roles"));
  const device = cell("Browser", span("session-device", s.device ?? "—"), span("session-sub session-address", s.address ?? ""));
  const since = cell("Signed in", time.format(new Date(s.createdAt)));
  const seen = cell("Last activity", s.lastSeenAt ? ago(s.lastSeenAt) : "—");
  seen.classList.add("session-seen");
  if (s.lastSeenAt) seen.title = time.format(new Date(s.lastSeenAt));
  const endsAt = s.endsAt ?? s.expiresAt;
  // The real end (the maximum age when the provider renews it), readable by machines too.
  const ends = document.createElement("time");
  ends.className = "session-ends";
  ends.dateTime = new Date(endsAt).toISOString();
  ends.textContent = time.format(new Date(endsAt));
  const until = cell(
    "Ends",
    ends,
    span(
      "session-sub session-renew",
      !s.live ? "lapsed; renewing at the next request" : s.renews ? "renewed with the provider until then" : "not renewed: sign-in needed after this",
    ),
  );

  const actions = document.createElement("td");
  actions.className = "session-actions";
  actions.append(
    button(s.current ? "Sign out this browser" : "End session", `End this session of ${who}${s.current ? " (this browser)" : ""}`, () => confirmEnd(s, "one")),
    button("End all of user", `End every session of ${who}`, () => confirmEnd(s, "all")),
  );
  tr.append(user, device, since, seen, until, actions);
  return tr;
}

/**
 * A cell: its label is shown before the value on phones (cards).
 * @param {string} label
 * @param {...(string | Node)} content
 */
const cell = (label, ...content) => tableCell(content, label);

/**
 * Ask first; say what ending does and what it does not.
 * @param {Session} s
 * @param {"one" | "all"} scope
 */
async function confirmEnd(s, scope) {
  const who = s.name || s.sub;
  const own = scope === "one" ? Boolean(s.current) : s.sub === me;
  $("confirm-title").textContent = scope === "one" ? `End ${who}’s session?` : `End every session of ${who}?`;
  $("confirm-text").textContent =
    (scope === "one"
      ? `The browser (${s.device ?? "unknown"}${s.address ? `, ${s.address}` : ""}) is signed out at once`
      : "Every browser they use is signed out at once") +
    ": its live video, door calls and relayed connections stop." +
    (own ? " This includes this browser: you will be signed out." : "");
  $("confirm-provider").textContent =
    "Their session at the identity provider stays open: if it is, they are signed straight back in on their next visit. To keep them out, disable them at the provider too.";
  const ok = $("confirm-ok");
  ok.textContent = scope === "one" ? "End session" : "End all sessions";
  const answer = await new Promise((resolve) => {
    const done = (/** @type {boolean} */ v) => {
      ok.removeEventListener("click", yes);
      $("confirm-cancel").removeEventListener("click", no);
      dialog.removeEventListener("close", no);
      if (dialog.open) dialog.close();
      resolve(v);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    $("confirm-cancel").addEventListener("click", no);
    dialog.addEventListener("close", no);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
  if (!answer) return;
  const refs = new Set((await currentRefs()).filter((x) => x.sub === s.sub).map((x) => x.ref));
  ended.set(s.sub, { name: who, at: Date.now(), refs });
  await end(scope === "one" ? `api/admin/sessions/${encodeURIComponent(s.ref)}` : `api/admin/users/${encodeURIComponent(s.sub)}/sessions`);
}

/** The refs listed now (so a later new session of the user can be told apart). */
async function currentRefs() {
  return [...body.rows].map((r) => ({ ref: r.dataset.ref ?? "", sub: r.dataset.sub ?? "" }));
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
}

void start();
