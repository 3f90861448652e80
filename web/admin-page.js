/**
 * What the administrators' list pages (audit trail, signed-in sessions, supervision) share:
 * the notice line, loading an admin API (401 sends the browser to sign in, 403 says who may),
 * and the cells, labels and buttons of their tables.
 */

/** The web client's base URL (the pages live beside index.html). */
export const base = new URL(".", document.baseURI);

/** @param {string} id */
export const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * A function showing `text` in the page's notice line (`#notice`); empty hides it.
 * @param {HTMLElement} [notice]
 */
export function notifier(notice = byId("notice")) {
  return (/** @type {string} */ text) => {
    notice.hidden = !text;
    notice.textContent = text;
  };
}

/**
 * GETs an admin API as JSON. On 401 the browser goes to sign in (back to this page after);
 * on 403, a network failure or another error the notice says so and the result is undefined.
 * @param {string} path relative to the web client, e.g. "api/admin/sessions"
 * @param {{ say: (text: string) => void, forbidden: string, what: string, onForbidden?: () => void }} o
 *   `forbidden`: what to say on 403; `what`: what could not be loaded ("the sessions")
 * @returns {Promise<any>}
 */
export async function getAdminJson(path, o) {
  let res;
  try {
    res = await fetch(new URL(path, base), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    o.say("The gateway cannot be reached.");
    return undefined;
  }
  if (res.status === 401) {
    location.assign(new URL(`auth/login?return_to=${encodeURIComponent(location.pathname)}`, base));
    return undefined;
  }
  if (res.status === 403) {
    o.onForbidden?.();
    o.say(o.forbidden);
    return undefined;
  }
  const json = await res.json().catch(() => ({}));
  if (!res.ok) {
    o.say(`Could not load ${o.what}: ${json.reason ?? `HTTP ${res.status}`}.`);
    return undefined;
  }
  return json;
}

/**
 * A table cell; with `label`, the label is shown before the value on phones (cards).
 * @param {string | Node | (string | Node)[]} content
 * @param {string} [label]
 */
export function cell(content, label) {
  const td = document.createElement("td");
  const parts = Array.isArray(content) ? content : [content];
  if (label === undefined) {
    td.append(...parts);
    return td;
  }
  td.dataset.label = label;
  const v = document.createElement("div");
  v.className = "cell-value";
  v.append(...parts);
  td.append(v);
  return td;
}

/** @param {string} className @param {string} text */
export function span(className, text) {
  const e = document.createElement("span");
  e.className = className;
  e.textContent = text;
  return e;
}

/**
 * A button that runs `action` once at a time (disabled meanwhile).
 * @param {string} label
 * @param {string} title
 * @param {() => Promise<void>} action
 */
export function button(label, title, action) {
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
