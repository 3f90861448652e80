/**
 * The firewall table of this deployment (`GET api/admin/ports`), for administrators of every
 * camera (the server answers 403 to anyone else): one row per rule, and the same as CSV.
 */

const base = new URL(".", document.baseURI);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const table = /** @type {HTMLTableElement} */ ($("ports"));
const body = /** @type {HTMLTableSectionElement} */ (table.tBodies[0]);
const notice = $("notice");
const summary = $("summary");
const csv = /** @type {HTMLAnchorElement} */ ($("csv"));

/** @typedef {{ source: string, destination: string, ports: string, transport: string, purpose: string, direction: string, key: string }} PortRow */

const DIRECTION = /** @type {Record<string, string>} */ ({ inbound: "inbound", outbound: "outbound", both: "both ways", local: "local (no opening)" });

/** @param {string} text empty hides the notice */
function say(text) {
  notice.hidden = !text;
  notice.textContent = text;
}

/** @param {PortRow[]} rows */
function toCsv(rows) {
  const cols = /** @type {(keyof PortRow)[]} */ (["source", "destination", "ports", "transport", "direction", "purpose", "key"]);
  const cell = (/** @type {string} */ c) => (/[",\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c);
  return [cols.join(","), ...rows.map((r) => cols.map((k) => cell(r[k])).join(","))].join("\r\n") + "\r\n";
}

async function load() {
  let res;
  try {
    res = await fetch(new URL("api/admin/ports", base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    return say("The gateway cannot be reached.");
  }
  if (res.status === 401) return location.assign(new URL(`auth/login?return_to=${encodeURIComponent(location.pathname)}`, base));
  if (res.status === 403) return say("Only administrators of every camera may see the firewall table.");
  if (!res.ok) return say(`The port table is unavailable (HTTP ${res.status}).`);
  /** @type {{ rows: PortRow[] }} */
  const data = await res.json();
  body.replaceChildren(
    ...data.rows.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.direction = r.direction;
      for (const v of [r.source, r.destination, r.ports, r.transport, DIRECTION[r.direction] ?? r.direction, r.purpose, r.key]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  table.hidden = false;
  summary.textContent = `${data.rows.length} rules`;
  csv.href = URL.createObjectURL(new Blob([toCsv(data.rows)], { type: "text/csv" }));
  csv.hidden = false;
}

void load();
