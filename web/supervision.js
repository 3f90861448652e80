/**
 * Supervision, for administrators of every camera (`GET api/admin/supervision`): each
 * supervised component (cameras, media workers, TURN, SIP, the audit store, the identity
 * provider) with its state, and the last events (failed, restarting, recovered, disabled,
 * enabled), newest first. A disabled component can be enabled at once
 * (`POST api/admin/supervision/components/:id/enable`, with the CSRF token).
 */
import { base, button, byId as $, cell, getAdminJson, notifier, span } from "./admin-page.js";
import { csrfHeaders, resetCsrf } from "./csrf.js";

/** Refresh period, ms. */
const REFRESH_MS = 3000;

const components = /** @type {HTMLTableElement} */ ($("components"));
const events = /** @type {HTMLTableElement} */ ($("events"));
const summary = $("summary");
const say = notifier();

/**
 * @typedef {{ id: string, kind: string, name: string, state: "ok"|"restarting"|"down"|"disabled", reason?: string, since: number,
 *             failures: number, restarts: number, disabledUntil?: number, canEnable: boolean }} Component
 * @typedef {{ seq: number, time: number, component: string, kind: string, type: string, reason: string, by?: string }} SupervisionEvent
 */

const STATE_LABELS = /** @type {Record<string, string>} */ ({ ok: "OK", restarting: "Restarting", down: "Down", disabled: "Disabled" });
const EVENT_LABELS = /** @type {Record<string, string>} */ ({
  failed: "Failed",
  restarting: "Restarting",
  recovered: "Recovered",
  disabled: "Disabled",
  enabled: "Enabled",
});

const time = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;

async function load() {
  clearTimeout(timer);
  timer = setTimeout(() => void load(), REFRESH_MS);
  const json = await getAdminJson("api/admin/supervision", {
    say,
    what: "the supervision",
    forbidden: "Only an administrator of every camera can see the supervision.",
    onForbidden: () => {
      components.hidden = true;
      events.hidden = true;
      clearTimeout(timer);
    },
  });
  if (!json) return;
  say("");
  const list = /** @type {Component[]} */ (json.components);
  const recent = /** @type {SupervisionEvent[]} */ (json.events);
  const names = new Map(list.map((c) => [c.id, c.name]));
  const bad = list.filter((c) => c.state !== "ok").length;
  summary.textContent = `${list.length} component${list.length === 1 ? "" : "s"} · ${bad === 0 ? "all ok" : `${bad} not ok`}`;
  // Problems first, then by kind and name.
  const rows = [...list].sort((a, b) => Number(a.state === "ok") - Number(b.state === "ok") || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
  components.tBodies[0]?.replaceChildren(...rows.map(componentRow));
  components.hidden = false;
  events.tBodies[0]?.replaceChildren(...recent.map((e) => eventRow(e, names.get(e.component) ?? e.component)));
  events.hidden = false;
}

/** @param {Component} c */
function componentRow(c) {
  const tr = document.createElement("tr");
  tr.dataset.component = c.id;
  tr.dataset.state = c.state;
  const until = c.disabledUntil ? ` Back by itself at ${clock.format(new Date(c.disabledUntil))}.` : "";
  const actions = cell(
    c.canEnable
      ? [button("Enable", `Enable ${c.name} now`, () => enable(c))]
      : [],
    "Actions",
  );
  tr.append(
    cell([span("session-name", c.name), span("session-sub", c.id)], "Component"),
    cell(STATE_LABELS[c.state] ?? c.state, "State"),
    cell(`${c.reason ?? ""}${until}` || "—", "Why"),
    cell(String(c.failures), "Failures in window"),
    cell(String(c.restarts), "Restarts"),
    actions,
  );
  return tr;
}

/** @param {SupervisionEvent} e @param {string} name */
function eventRow(e, name) {
  const tr = document.createElement("tr");
  tr.dataset.seq = String(e.seq);
  tr.dataset.component = e.component;
  tr.dataset.type = e.type;
  const at = cell(time.format(new Date(e.time)));
  at.title = new Date(e.time).toISOString();
  tr.append(at, cell([span("session-name", name), span("session-sub", e.component)]), cell(EVENT_LABELS[e.type] ?? e.type), cell(e.by ? `${e.reason} (by ${e.by})` : e.reason));
  return tr;
}

/** @param {Component} c */
async function enable(c) {
  let res;
  try {
    res = await fetch(new URL(`api/admin/supervision/components/${encodeURIComponent(c.id)}/enable`, base), {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(await csrfHeaders(base)) },
    });
  } catch {
    say("The gateway cannot be reached.");
    return;
  }
  if (res.status === 403) resetCsrf();
  if (!res.ok && res.status !== 409) say(`Could not enable ${c.name} (HTTP ${res.status}).`);
  await load();
}

void load();
