/**
 * The signed-in user's console preferences, kept on the gateway so they follow the user to
 * another workstation: `GET /api/me/preferences` → `{ preferences: {...} | null, updatedAt }`,
 * `PUT /api/me/preferences` with the whole document (JSON, at most `preferences.maxBytes`) →
 * the stored document. Known keys only, each type-checked (400 otherwise); too large is 413.
 * Without a sign-in layer (`auth.mode: none`) there is no user to keep them for: 404, and the
 * page keeps them in the browser.
 */
import express, { Router, type Request } from "express";
import { z } from "zod";
import { BadInputError, NotFoundError } from "../../config/errors.ts";
import type { PreferenceStore } from "../preferences/store.ts";
import { sendError } from "./errors.ts";

/** What the console keeps (web/prefs.js); every key optional, nothing else accepted. */
export const preferencesDocument = z.strictObject({
  layout: z.string().max(16).optional(),
  favourites: z.array(z.string().min(1).max(200)).max(1000).optional(),
  group: z.string().max(200).optional(),
  favouritesOnly: z.boolean().optional(),
  shortcuts: z.boolean().optional(),
  quality: z.enum(["auto", "high", "low"]).optional(),
});

export interface PreferencesRouteDeps {
  store: PreferenceStore;
  maxBytes: number;
  now?: () => number;
}

function subjectOf(req: Request): string {
  const u = req.user;
  if (!u || u.via === "none") throw new NotFoundError("preferences are kept per signed-in user; this gateway has no sign-in");
  return u.sub;
}

export function preferencesRouter(deps: PreferencesRouteDeps): Router {
  const now = deps.now ?? Date.now;
  const r = Router();
  r.get("/me/preferences", (req, res) => {
    try {
      const stored = deps.store.get(subjectOf(req));
      res
        .set("Cache-Control", "no-store")
        .type("application/json")
        .send(stored ? `{"preferences":${stored.json},"updatedAt":${stored.updatedAt}}` : `{"preferences":null,"updatedAt":null}`);
    } catch (err) {
      sendError(res, err);
    }
  });
  r.put("/me/preferences", express.json({ limit: deps.maxBytes, strict: true }), (req, res) => {
    try {
      const sub = subjectOf(req);
      if (!req.is("application/json")) throw new BadInputError("expected a JSON body (Content-Type: application/json)");
      const parsed = preferencesDocument.safeParse(req.body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new BadInputError(`invalid preferences${issue ? ` at ${issue.path.join(".") || "(document)"}: ${issue.message}` : ""}`);
      }
      const json = JSON.stringify(parsed.data);
      const t = now();
      deps.store.put(sub, json, t);
      res.set("Cache-Control", "no-store").type("application/json").send(`{"preferences":${json},"updatedAt":${t}}`);
    } catch (err) {
      sendError(res, err);
    }
  });
  return r;
}
