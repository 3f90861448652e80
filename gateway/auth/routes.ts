/**
 * Sign-in over HTTP: the `/auth` routes (login, callback, logout, me, csrf, back-channel logout),
 * the `requireUser` and `csrf` middlewares, and authentication of raw requests (WebSocket, SSE).
 * Cookies, redirects and pages live here; every decision is the core's (core.ts), every error
 * status comes from the one mapping (`http/errors.ts`).
 *
 * Not signed in: 401 (JSON with `WWW-Authenticate`), or a redirect to /auth/login for a browser
 * navigation. The cookie holds the core's session token; a stale one is replaced on the next request.
 */
import type { IncomingMessage } from "node:http";
import express, { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { AuthError, RateLimitedError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { AuthConfig } from "../../config/sections/auth.ts";
import { describeError, sendError } from "../http/errors.ts";
import type { AuthCore, Resolution } from "./core.ts";
import { errorPage, esc, isNavigation, page, parseCookies, sameOrigin, sendPage } from "./http.ts";
import { clientAddress } from "../frontdoor/client-address.ts";
import { safeReturnTo } from "./return-to.ts";
import type { SessionRecord } from "./sessions.ts";
import type { User } from "./types.ts";

export interface AuthRoutesOptions {
  core: AuthCore;
  config: AuthConfig;
  /** The gateway's public origin (CSRF and WebSocket origin checks). */
  publicOrigin: string;
  /** Cookies are `Secure` (and `__Host-`/`__Secure-` prefixed). */
  secureCookies: boolean;
  log: Logger;
}

export interface AuthRoutes {
  /** Mount at `/auth`. */
  readonly router: Router;
  /** Sets `req.user` or answers 401 (JSON + WWW-Authenticate) / redirects a browser navigation to sign-in. */
  readonly requireUser: RequestHandler;
  /** For unsafe methods of cookie-authenticated requests: same origin and a valid `X-CSRF-Token`, else 403. */
  readonly csrf: RequestHandler;
  /** Authenticate a raw request (WebSocket upgrade, SSE) from its cookie or bearer token. Throws AuthError / RateLimitedError. */
  authenticate(req: IncomingMessage): Promise<User>;
  /** `authenticate` plus an Origin check for cookie callers (cross-site WebSocket hijacking). */
  authorizeUpgrade(req: IncomingMessage): Promise<User>;
}

export function authRoutes(o: AuthRoutesOptions): AuthRoutes {
  const { core, config: cfg, publicOrigin, log } = o;
  const sessionCookie = o.secureCookies ? `__Host-${cfg.cookie.name}` : cfg.cookie.name;
  const loginCookie = o.secureCookies ? "__Secure-gatehouse_login" : "gatehouse_login";
  const cookieBase = { httpOnly: true, secure: o.secureCookies, sameSite: cfg.cookie.sameSite, path: "/" } as const;
  const loginCookieOpts = { ...cookieBase, sameSite: "lax", path: "/auth" } as const;

  const sourceOf = (req: IncomingMessage) => clientAddress(req);
  const credentialsOf = (req: IncomingMessage) => ({
    authorization: req.headers.authorization,
    sessionToken: parseCookies(req.headers.cookie).get(sessionCookie),
    source: sourceOf(req),
  });
  const resolve = (req: IncomingMessage) => core.resolve(credentialsOf(req));

  const issueCookie = async (res: Response, rec: SessionRecord) => {
    const token = await core.sessionToken(rec);
    res.cookie(sessionCookie, token, { ...cookieBase, maxAge: core.remainingMs(rec) });
  };
  const clearSessionCookie = (res: Response) => res.clearCookie(sessionCookie, cookieBase);

  const fail = (req: Request, res: Response, r: Extract<Resolution, { ok: false }>) => {
    if (r.clearSessionToken) clearSessionCookie(res);
    if (r.error instanceof AuthError && r.error.code === "UNAUTHORIZED") {
      if (!r.bearer && isNavigation(req)) {
        res.redirect(303, `/auth/login?return_to=${encodeURIComponent(safeReturnTo(req.originalUrl))}`);
        return;
      }
      return sendError(res, r.error, r.bearer ? { bearerError: "invalid_token" } : {});
    }
    sendError(res, r.error);
  };

  const requireUser: RequestHandler = (req, res, next) => {
    resolve(req).then(async (r) => {
      if (!r.ok) return fail(req, res, r);
      if (r.reissue) await issueCookie(res, r.reissue);
      req.user = r.user;
      next();
    }).catch(next);
  };

  async function authenticate(req: IncomingMessage): Promise<User> {
    const r = await resolve(req);
    if (!r.ok) throw r.error;
    return r.user;
  }

  const csrfFailed = (res: Response) => sendError(res, new AuthError("FORBIDDEN", "missing or invalid CSRF token"));
  const presentedCsrf = (req: Request): unknown => req.get("x-csrf-token") ?? (req.body as { _csrf?: unknown } | undefined)?._csrf;

  const csrf: RequestHandler = (req, res, next) => {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return next();
    const user = req.user;
    // Bearer callers carry no ambient credential a third-party page could ride on.
    if (!user || user.via !== "session") return next();
    if (!sameOrigin(req, publicOrigin) || !core.verifyCsrf(user.sessionId!, presentedCsrf(req))) {
      log.info("CSRF check failed", { method: req.method, path: req.path, sub: user.sub, origin: req.get("origin") });
      return csrfFailed(res);
    }
    next();
  };

  // ---- routes ------------------------------------------------------------------------------------
  const router = Router();
  router.use((_req, res, next) => {
    res.set("Cache-Control", "no-store");
    next();
  });

  const tooMany = (res: Response, retryAfterSeconds: number, message: string) => {
    res.set("Retry-After", String(retryAfterSeconds));
    sendPage(res, 429, errorPage("Too many attempts", message));
  };

  router.get("/login", (req, res, next) => {
    const returnTo = safeReturnTo(req.query.return_to);
    if (core.mode === "none") return res.redirect(303, returnTo);
    core.beginSignIn(sourceOf(req), returnTo).then((r) => {
      if (r.ok) {
        res.cookie(loginCookie, r.attemptId, { ...loginCookieOpts, maxAge: cfg.session.loginTimeoutSeconds * 1000 });
        return res.redirect(303, r.url);
      }
      if (r.failure === "rate_limited")
        return tooMany(res, r.retryAfterSeconds, "Too many sign-in attempts from your address. Wait a few minutes, then try again.");
      sendPage(
        res,
        503,
        errorPage(
          "Sign-in is unavailable",
          "The identity provider cannot be reached right now. People already signed in can keep working; try again in a few minutes.",
          { href: `/auth/login?return_to=${encodeURIComponent(returnTo)}`, label: "Try again" },
        ),
      );
    }).catch(next);
  });

  router.get("/callback", (req, res, next) => {
    if (core.mode === "none") return res.redirect(303, "/");
    const cookies = parseCookies(req.headers.cookie);
    const attempt = cookies.get(loginCookie);
    const query = req.originalUrl.includes("?") ? req.originalUrl.slice(req.originalUrl.indexOf("?")) : "";
    core.completeSignIn(attempt, query, sourceOf(req), req.get("user-agent")).then(async (r) => {
      const again = { href: "/auth/login", label: "Sign in again" };
      if (!r.ok && r.failure === "rate_limited")
        return tooMany(res, r.retryAfterSeconds ?? 60, "Too many failed sign-in attempts from your address. Wait a few minutes, then try again.");
      res.clearCookie(loginCookie, loginCookieOpts);
      if (r.ok) {
        // A browser that still held another session gives it up (one session per cookie jar).
        const old = cookies.get(sessionCookie);
        if (old) await core.endByToken(old, "logout");
        await issueCookie(res, r.session);
        return res.redirect(303, r.returnTo);
      }
      switch (r.failure) {
        case "unknown_attempt":
          return sendPage(res, 400, errorPage("Sign-in expired", "This sign-in attempt is unknown, already used, or too old.", again));
        case "provider_unavailable":
          return sendPage(res, 502, errorPage("Identity provider unreachable", "The identity provider did not answer. Try again in a few minutes.", again));
        case "rejected":
          return sendPage(res, 400, errorPage("Sign-in failed", "The sign-in could not be completed.", again));
      }
    }).catch(next);
  });

  const formBody = express.urlencoded({ extended: false, limit: "4kb" });

  router.get("/logout", (req, res, next) => {
    // A confirmation page: sign-out is a POST (CSRF-protected), never a GET a third party could trigger.
    resolve(req).then((r) => {
      const back = safeReturnTo(req.query.return_to);
      if (!r.ok || r.user.via !== "session") return res.redirect(303, back);
      const who = r.user.name && r.user.name !== r.user.sub ? `<strong id="user">${esc(r.user.name)}</strong> (${esc(r.user.sub)})` : `<strong id="user">${esc(r.user.sub)}</strong>`;
      sendPage(
        res,
        200,
        page(
          "Sign out",
          `<h1 id="title">Sign out of Gatehouse?</h1><p>You are signed in as ${who}.</p>
<p>Live video and door calls in this browser stop.</p>
<div class="actions"><form method="post" action="/auth/logout"><input type="hidden" name="_csrf" value="${core.csrfToken(r.user.sessionId!)}">
<button type="submit" id="logout" class="primary">Sign out</button></form><a class="button" id="cancel" href="${esc(back)}">Cancel</a></div>`,
        ),
      );
    }).catch(next);
  });

  router.post("/logout", formBody, (req, res, next) => {
    resolve(req).then(async (r) => {
      const json = req.accepts(["html", "json"]) === "json";
      const done = (location: string) => (json ? res.json({ redirect: location }) : res.redirect(303, location));
      if (!r.ok || r.user.via !== "session") {
        clearSessionCookie(res);
        return done("/auth/signed-out");
      }
      if (!sameOrigin(req, publicOrigin) || !core.verifyCsrf(r.user.sessionId!, presentedCsrf(req))) {
        log.info("CSRF check failed on logout", { sub: r.user.sub });
        return csrfFailed(res);
      }
      clearSessionCookie(res);
      // RP-initiated logout: end the provider's session too, when it offers that (it comes back to /auth/signed-out).
      done((await core.signOut(r.user.sessionId!)) ?? "/auth/signed-out");
    }).catch(next);
  });

  router.get("/signed-out", (_req, res) => {
    sendPage(
      res,
      200,
      page(
        "Signed out",
        `<h1 id="title">You are signed out</h1><p>Your Gatehouse session has ended in this browser.</p>
<p>On a shared computer, also close the browser.</p><div class="actions"><a class="button primary" id="sign-in" href="/auth/login">Sign in again</a></div>`,
      ),
    );
  });

  // OpenID Connect Back-Channel Logout 1.0: the provider, server to server.
  // Register `<public URL>/auth/backchannel-logout` as the client's backchannel_logout_uri.
  const logoutBody = express.urlencoded({ extended: false, limit: "20kb" });
  router.post("/backchannel-logout", logoutBody, (req, res, next) => {
    const token = (req.body as { logout_token?: unknown } | undefined)?.logout_token;
    core.backchannelLogout(token, sourceOf(req)).then((r) => {
      if (r.ok) return res.status(200).end();
      // §2.8: an invalid request or token is 400, with an OAuth-style error body.
      switch (r.failure) {
        case "unsupported":
          return res.status(404).json({ error: "not_found", reason: "no identity provider configured" });
        case "rate_limited":
          return sendError(res, r.error);
        case "missing_token":
          return res.status(400).json({ error: "invalid_request", error_description: "logout_token missing" });
        case "invalid_token":
          return res.status(400).json({ error: "invalid_request", error_description: "invalid logout token" });
      }
    }).catch(next);
  });

  router.get("/me", requireUser, (req, res) => {
    const u = req.user!;
    res.json({
      sub: u.sub,
      name: u.name,
      roles: u.roles,
      via: u.via,
      expiresAt: Number.isFinite(u.expiresAt) ? new Date(u.expiresAt).toISOString() : null,
      csrfToken: u.via === "session" ? core.csrfToken(u.sessionId!) : null,
      cameras: core.visibleCameras(u).map((c) => ({ id: c.id, name: c.name ?? c.id, actions: core.actions(u, c.id) })),
    });
  });

  router.get("/csrf", requireUser, (req, res) => {
    const u = req.user!;
    res.json({ token: u.via === "session" ? core.csrfToken(u.sessionId!) : null });
  });

  // Unexpected failures inside the auth routes: never a stack trace, never a hint.
  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (describeError(err).status >= 500) log.error("auth route failed", { path: req.path, err });
    if (isNavigation(req) && !(err instanceof RateLimitedError))
      sendPage(res, describeError(err).status, errorPage("Sign-in error", "Something went wrong while signing in.", { href: "/auth/login", label: "Try again" }));
    else sendError(res, err);
  });

  return {
    router,
    requireUser,
    csrf,
    authenticate,
    async authorizeUpgrade(req) {
      const user = await authenticate(req);
      // Cross-site WebSocket hijacking: a cookie-authenticated upgrade must come from our pages.
      if (user.via === "session" && req.headers.origin !== publicOrigin) throw new AuthError("FORBIDDEN", "cross-origin upgrade");
      return user;
    },
  };
}
