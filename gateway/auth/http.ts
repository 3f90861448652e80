/**
 * HTTP details of sign-in: cookie parsing, the error page, CSRF checks and security headers.
 * (Error statuses come from the gateway's one mapping, `http/errors.ts`.)
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Request, RequestHandler, Response } from "express";

/** Values of a Cookie header; the first occurrence of a name wins (RFC 6265 §5.4 ordering). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    const name = part.slice(0, i).trim();
    let value = part.slice(i + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!out.has(name) && value.length <= 8192) out.set(name, value);
  }
  return out;
}

/** Is this a top-level browser navigation (answer with a redirect/page, not JSON)? */
export function isNavigation(req: IncomingMessage): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  const mode = req.headers["sec-fetch-mode"];
  if (mode) return mode === "navigate";
  const accept = req.headers.accept ?? "";
  return accept.includes("text/html");
}

/** The one inline style of our own pages; allowed by its hash in the CSP (no 'unsafe-inline'). */
const PAGE_STYLE =
  "body{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}" +
  "a.button,button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;border:1px solid #888;border-radius:4px;text-decoration:none;color:inherit;background:#f4f4f4;font:inherit}";
const PAGE_STYLE_HASH = `'sha256-${createHash("sha256").update(PAGE_STYLE).digest("base64")}'`;

/** A self-contained HTML page (no scripts; its style allowed by hash). `body` is trusted HTML. */
export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)} — Gatehouse</title><style>${PAGE_STYLE}</style></head><body>${body}</body></html>`;
}

/** The sign-in error page. */
export function errorPage(title: string, message: string, retry?: { href: string; label: string }): string {
  return page(
    title,
    `<h1 id="title">${esc(title)}</h1><p id="message">${esc(message)}</p>${retry ? `<a class="button" id="retry" href="${esc(retry.href)}">${esc(retry.label)}</a>` : ""}`,
  );
}

export function sendPage(res: Response, status: number, html: string): void {
  if (res.headersSent) return;
  res.status(status).set("Cache-Control", "no-store").type("html").send(html);
}

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** "outer ← inner ← root" messages of an error's cause chain, for logs (never sent to clients). */
export function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, i = 0; e && i < 8; e = (e as { cause?: unknown }).cause, i++) {
    const msg = e instanceof Error ? e.message : typeof e === "string" ? e : "";
    const code = (e as { code?: unknown; error?: unknown }).error ?? (e as { code?: unknown }).code;
    const tag = typeof code === "string" ? `[${code}]` : "";
    if (msg || tag) parts.push(msg && tag ? `${msg} ${tag}` : msg || tag);
  }
  return parts.join(" ← ");
}

// ---- CSRF ----------------------------------------------------------------------------------------

/**
 * Synchronizer token bound to the session (HMAC of the session id under a per-process key), sent
 * back in `X-CSRF-Token` (or a `_csrf` form field), plus an Origin / Sec-Fetch-Site check. Either
 * alone stops a cross-site form or fetch riding on the session cookie.
 */
export class CsrfTokens {
  private readonly key: Buffer;
  constructor(key: Buffer) {
    this.key = key;
  }
  token(sessionId: string): string {
    return createHmac("sha256", this.key).update(sessionId).digest("base64url");
  }
  verify(sessionId: string, presented: unknown): boolean {
    if (typeof presented !== "string" || presented.length > 128) return false;
    const a = Buffer.from(this.token(sessionId));
    const b = Buffer.from(presented);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

/** Does the request come from our own origin, as far as the browser tells? (Fetch Metadata, RFC 6454.) */
export function sameOrigin(req: IncomingMessage, publicOrigin: string): boolean {
  const origin = req.headers.origin;
  if (origin !== undefined) return origin === publicOrigin;
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined) return site === "same-origin" || site === "none";
  return true; // a non-browser client: it carries no ambient cookie worth forging for
}

// ---- security headers ----------------------------------------------------------------------------

export function securityHeaders(opts: { tls: boolean; formActions: readonly string[] }): RequestHandler {
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    `style-src 'self' ${PAGE_STYLE_HASH}`,
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    // Sign-out posts to us and we redirect to the provider: form-action applies to that redirect.
    `form-action 'self'${opts.formActions.map((o) => ` ${o}`).join("")}`,
  ].join("; ");
  return (_req: Request, res: Response, next) => {
    res.set("Content-Security-Policy", csp);
    res.set("X-Frame-Options", "DENY");
    res.set("X-Content-Type-Options", "nosniff");
    // No referrer to other origins (callback URLs carry authorization codes). Not "no-referrer":
    // with it Chromium sends `Origin: null` on our own form posts, which the CSRF check must refuse.
    res.set("Referrer-Policy", "same-origin");
    res.set("Cross-Origin-Opener-Policy", "same-origin");
    res.set("Cross-Origin-Resource-Policy", "same-origin");
    if (opts.tls) res.set("Strict-Transport-Security", "max-age=31536000");
    next();
  };
}
