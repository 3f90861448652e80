/**
 * The audit trail, for administrators of every camera (`GET api/admin/audit`): who signed in,
 * watched which camera, answered or opened which door, and what administrators did, newest
 * first, with filters; a CSV export of the same filters; and a check of the hash chain. The
 * server decides who may (403 for anyone else).
 */

import { base, byId as $, cell, getAdminJson, notifier, span } from "./admin-page.js";

const form = /** @type {HTMLFormElement} */ ($("filters"));
const table = /** @type {HTMLTableElement} */ ($("records"));
const body = /** @type {HTMLTableSectionElement} */ (table.tBodies[0]);
const notice = $("notice");
const summary = $("summary");
const more = /** @type {HTMLButtonElement} */ ($("more"));
const exportLink = /** @type {HTMLAnchorElement} */ ($("export"));
const verdict = $("verdict");

/** @typedef {{ seq: number, time: number, action: string, outcome: string, subject: string|null, name: string|null, session: string|null, source: string|null, camera: string|null, door: string|null, detail: string|null }} AuditRecord */

const LABELS = /** @type {Record<string, string>} */ ({
  sign_in: "Sign-in",
  sign_out: "Sign-out",
  session_ended: "Session ended",
  live_view_start: "Live view started",
  live_view_end: "Live view ended",
  playback_start: "Playback started",
  playback_end: "Playback ended",
  intercom_ring: "Door rang",
  intercom_answer: "Call answered",
  intercom_reject: "Call declined",
  intercom_hangup: "Hung up",
  intercom_call: "Called a door",
  intercom_call_end: "Call ended",
  door_open: "Door opened",
  admin_session_end: "Admin ended a session",
  admin_user_sessions_end: "Admin ended a user's sessions",
  config_reload: "Configuration reloaded",
  admin_component_enable: "Admin enabled a component",
  audit_pruned: "Old records deleted (retention)",
});

const time = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
/** @type {number | null} */
let next = null;
let shown = 0;

const say = notifier(notice);

/** The filters as query parameters (datetime-local inputs are local time; sent as ISO). */
function params() {
  const q = new URLSearchParams();
  const data = new FormData(form);
  for (const k of ["user", "camera", "door", "action"]) {
    const v = String(data.get(k) ?? "").trim();
    if (v) q.set(k, v);
  }
  for (const k of ["from", "to"]) {
    const v = String(data.get(k) ?? "");
    if (v) q.set(k, new Date(v).toISOString());
  }
  return q;
}

/** @param {boolean} append load the next (older) page below the rows shown */
async function load(append) {
  const q = params();
  exportLink.href = new URL(`api/admin/audit/export.csv?${q}`, base).href;
  if (append && next !== null) q.set("before", String(next));
  q.set("limit", "100");
  const json = await getAdminJson(`api/admin/audit?${q}`, {
    say,
    what: "the audit trail",
    forbidden: "Only an administrator of every camera can read the audit trail.",
    onForbidden: () => {
      table.hidden = true;
      form.hidden = true;
    },
  });
  if (!json) return;
  say("");
  const { records, actions } = /** @type {{ records: AuditRecord[], next: number | null, actions: string[] }} */ (json);
  fillActions(actions);
  next = json.next;
  if (!append) {
    body.replaceChildren();
    shown = 0;
  }
  body.append(...records.map(row));
  shown += records.length;
  summary.textContent = `${shown} record${shown === 1 ? "" : "s"}${next !== null ? " (more below)" : ""}`;
  table.hidden = false;
  more.hidden = next === null;
}

/** @param {string[]} actions */
function fillActions(actions) {
  const select = /** @type {HTMLSelectElement} */ (form.elements.namedItem("action"));
  if (select.options.length > 1) return;
  for (const a of actions) select.append(new Option(LABELS[a] ?? a, a));
}

/** @param {AuditRecord} r */
function row(r) {
  const tr = document.createElement("tr");
  tr.dataset.seq = String(r.seq);
  tr.dataset.action = r.action;
  tr.className = `outcome-${r.outcome}`;
  const who = document.createElement("td");
  if (r.name || r.subject) {
    who.append(span("session-name", r.name ?? r.subject ?? ""));
    if (r.subject && r.name) who.append(span("session-sub", r.subject));
  } else who.textContent = "—";
  const at = cell(time.format(new Date(r.time)));
  at.title = new Date(r.time).toISOString();
  tr.append(
    at,
    cell(LABELS[r.action] ?? r.action),
    cell(r.outcome),
    who,
    cell(r.source ?? "—"),
    cell([r.camera, r.door].filter(Boolean).join(" / ") || "—"),
    cell(detailText(r.detail)),
  );
  return tr;
}

/** A JSON detail as `key: value` pairs; anything else as it is. @param {string | null} d */
function detailText(d) {
  if (!d) return "";
  try {
    const o = JSON.parse(d);
    if (o && typeof o === "object") return Object.entries(o).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
  } catch {
    /* plain text */
  }
  return d;
}



async function verify() {
  verdict.hidden = false;
  verdict.textContent = "Checking every record…";
  try {
    const res = await fetch(new URL("api/admin/audit/verify", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
    const v = await res.json();
    if (!res.ok) verdict.textContent = `Could not check the chain: ${v.reason ?? `HTTP ${res.status}`}.`;
    else if (v.ok) verdict.textContent = `The chain is intact: ${v.checked} records checked, the newest is #${v.lastSeq}.`;
    else verdict.textContent = `The chain is BROKEN at record #${v.brokenAt} (${String(v.problem).replace(/_/g, " ")}): records were changed or removed after they were written. ${v.checked} records before it are intact.`;
    verdict.classList.toggle("is-broken", res.ok && !v.ok);
  } catch {
    verdict.textContent = "The gateway cannot be reached.";
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  void load(false);
});
more.addEventListener("click", () => void load(true));
$("verify").addEventListener("click", () => void verify());
void load(false);
