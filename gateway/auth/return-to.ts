/**
 * `return_to` after sign-in: only our own relative paths, so /auth/login can never be used as an
 * open redirect (`//evil.example`, `/\evil.example`, `https://evil.example`, `javascript:`, encoded
 * tricks). Pure.
 */

const BASE = "http://gatehouse.invalid";
const MAX_LENGTH = 2048;

/**
 * The safe path to return to, or `/` when `value` is missing or not one of our own paths.
 * Returns a normalised `path?query#hash` that starts with exactly one `/`.
 */
export function safeReturnTo(value: unknown): string {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_LENGTH) return "/";
  // Browsers treat `\` as `/` and strip tabs/newlines inside URLs: refuse them outright.
  // eslint-disable-next-line no-control-regex
  if (!value.startsWith("/") || value.startsWith("//") || /[\\\x00-\x20\x7f]/.test(value)) return "/";
  let url: URL;
  try {
    url = new URL(value, BASE);
  } catch {
    return "/";
  }
  if (url.origin !== BASE) return "/";
  const out = url.pathname + url.search + url.hash;
  // Normalisation may produce `//x` from `/./\/x`-style input; and never return into the sign-in flow.
  if (out.startsWith("//") || out.startsWith("/auth/login") || out.startsWith("/auth/callback")) return "/";
  return out;
}
