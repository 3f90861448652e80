/**
 * CSRF token for state-changing requests (WHEP POST/DELETE).
 *
 * The sign-in layer may expose `GET auth/csrf`, answering JSON `{ token, header? }`
 * (or the bare token as text). Without sign-in the route does not exist (404) and
 * requests carry no token. The token is fetched once per page and shared.
 */

/** Header used when the server does not name one. */
export const DEFAULT_CSRF_HEADER = "X-CSRF-Token";

/** @type {Promise<Record<string, string>> | null} */
let pending = null;

/**
 * Headers to add to a state-changing same-origin request: `{ [header]: token }` or `{}`.
 * @param {URL | string} [base] directory the gateway is served from (default: the page's)
 * @returns {Promise<Record<string, string>>}
 */
export function csrfHeaders(base = new URL(".", document.baseURI)) {
  if (!pending) {
    pending = fetchCsrf(new URL("auth/csrf", base)).catch(() => {
      // A transient failure must not stick: try again on the next request.
      pending = null;
      return {};
    });
  }
  return pending;
}

/** Forget the cached token (after the server rejected it with 403). */
export function resetCsrf() {
  pending = null;
}

/**
 * @param {URL} url
 * @returns {Promise<Record<string, string>>}
 */
async function fetchCsrf(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
  // 404/405: no sign-in layer, so no token is needed.
  if (res.status === 404 || res.status === 405) return {};
  if (!res.ok) throw new Error(`csrf: HTTP ${res.status}`);
  const type = res.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    const body = await res.json();
    if (body && typeof body.token === "string" && body.token) {
      const header = typeof body.header === "string" && body.header ? body.header : DEFAULT_CSRF_HEADER;
      return { [header]: body.token };
    }
    return {};
  }
  const text = (await res.text()).trim();
  return text ? { [DEFAULT_CSRF_HEADER]: text } : {};
}
