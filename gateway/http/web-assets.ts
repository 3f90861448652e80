/**
 * The web client's files, served so that a page opened again costs no request for them.
 *
 * The client is plain ES modules with no build step. Served as they are, each page opening
 * revalidates every one of them (express.static: `max-age=0` with an ETag, one 304 each): the
 * live view's 22 files over a browser's six connections, about 0.1–0.2 s of its start on a busy
 * machine, before its first camera could be asked for.
 *
 * So the files are also served under a version path, `/v/<version>/<file>`, where `<version>` is
 * a digest of every file of the client, taken at start: a response there never changes and is
 * cached for a year (`immutable`). The pages (`*.html`) name their scripts, styles and icon
 * under that path, and every module they import is resolved relative to it, so one page
 * request (`no-cache`, revalidated by its ETag) is all a warm browser sends for the client.
 * A new gateway version has another digest, and pages name the new files.
 *
 * A request for another version (a page loaded before the gateway was upgraded) gets today's
 * file, uncached. The unversioned paths stay as they were (other clients import `/whep.js`).
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import express, { Router, type Request, type Response } from "express";
import { NotFoundError } from "../../config/errors.ts";
import { sendError } from "./errors.ts";

/** Where the versioned files are served from: `/v/<version>/<file>`. */
export const VERSION_PREFIX = "/v/";

/** Attributes the pages' own files are named in: `href="style.css"`, `src="app.js"`. */
const LOCAL_REF = /\b(href|src)="([A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:js|css|svg))"/g;

const YEAR_S = 365 * 24 * 3600;

export interface WebAssets {
  /** The digest of the client's files, as the version path names it. */
  readonly version: string;
  /** The pages and the versioned files; mount before the plain static files. */
  readonly router: Router;
}

/** Reads `root` once: the version, and each page rewritten to name the versioned files. */
export function webAssets(root: string): WebAssets {
  const names = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort();
  const hash = createHash("sha256");
  for (const name of names) hash.update(name).update("\0").update(readFileSync(path.join(root, name))).update("\0");
  const version = hash.digest("base64url").slice(0, 12);
  const files = new Set(names);
  const pages = new Map<string, string>();
  for (const name of names) {
    if (!name.endsWith(".html")) continue;
    const html = readFileSync(path.join(root, name), "utf8");
    pages.set(name, html.replace(LOCAL_REF, (all, attr: string, file: string) => (files.has(file) ? `${attr}="v/${version}/${file}"` : all)));
  }

  const router = Router();
  const page = (name: string) => (_req: Request, res: Response) => {
    // Revalidated on each opening (Express answers a matching ETag with 304).
    res.set("Cache-Control", "no-cache").type("html").send(pages.get(name));
  };
  router.get("/", page("index.html"));
  for (const name of pages.keys()) router.get(`/${name}`, page(name));
  // serve-static's own Cache-Control (`max-age=0`) off: ours is set per request below.
  const versioned = express.static(root, { index: false, fallthrough: true, cacheControl: false, redirect: false });
  router.use(`${VERSION_PREFIX}:version`, (req, res, next) => {
    if (req.method !== "GET" && req.method !== "HEAD") return next();
    res.set("Cache-Control", req.params["version"] === version ? `public, max-age=${YEAR_S}, immutable` : "no-cache");
    versioned(req, res, () => sendError(res, new NotFoundError("no such file of the web client")));
  });
  return { version, router };
}
