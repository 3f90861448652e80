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
  ":root{color-scheme:dark}*{box-sizing:border-box}" +
  "body{margin:0;min-height:100vh;display:grid;place-items:center;padding:24px 16px;background:#0b0e13;color:#e7ecf3;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}" +
  "main{width:100%;max-width:26rem;padding:28px 26px;border:1px solid #263041;border-radius:14px;background:#131821;box-shadow:0 24px 64px rgba(0,0,0,.45)}" +
  ".brand{display:flex;align-items:center;gap:8px;margin-bottom:18px;font-weight:650}.brand i{width:24px;height:24px;border-radius:6px;background:#1e6fd9}" +
  "h1{margin:0 0 8px;font-size:1.35rem}p{margin:0 0 10px;color:#b8c2d3}strong{color:#e7ecf3}" +
  ".actions{display:flex;flex-wrap:wrap;gap:10px;margin-top:20px}form{margin:0}" +
  "a.button,button{display:inline-flex;align-items:center;justify-content:center;min-height:42px;padding:0 18px;border:1px solid #263041;border-radius:10px;" +
  "background:#1a212c;color:#e7ecf3;font:inherit;font-size:15px;text-decoration:none;cursor:pointer}a.button:hover,button:hover{border-color:#3a4760}" +
  "button.primary,a.primary{border-color:#2f7fe0;background:#1e6fd9;color:#fff}:focus-visible{outline:2px solid #4aa3ff;outline-offset:2px}";
const PAGE_STYLE_HASH = `'sha256-${createHash("sha256").update(PAGE_STYLE).digest("base64")}'`;

/** A self-contained HTML page (no scripts; its style allowed by hash). `body` is trusted HTML. */
export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="dark"><title>${esc(title)} — Gatehouse</title><style>${PAGE_STYLE}</style></head>
<body><main><div class="brand" aria-hidden="true"><i></i>Gatehouse</div>${body}</main></body></html>`;
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
