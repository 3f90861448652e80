/**
 * The live view preloads every module its scripts import (web/index.html `modulepreload`), so the
 * browser fetches them at once instead of level by level as it reads each import; a module added
 * to the page without its preload line would be fetched one round trip later, and its grid too.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const web = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../web");

/** Relative modules `file` imports (static imports only), recursively. */
function importsOf(file: string, seen = new Set<string>()): Set<string> {
  const src = readFileSync(path.join(web, file), "utf8");
  for (const m of src.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"\.\/([^"]+)"/gm)) {
    const dep = m[1]!;
    if (seen.has(dep)) continue;
    seen.add(dep);
    importsOf(dep, seen);
  }
  return seen;
}

describe("the live view's module preloads", () => {
  it("name every module its page scripts import, and nothing else", () => {
    const html = readFileSync(path.join(web, "index.html"), "utf8");
    const scripts = [...html.matchAll(/<script type="module"(?: async)? src="([^"]+)">/g)].map((m) => m[1]!);
    // live-start.js first and `async` (it starts the page's requests and the grid's offer; app.js imports it).
    expect(scripts).toEqual(["live-start.js", "app.js", "intercom.js"]);
    expect(html).toContain('<script type="module" async src="live-start.js">');
    const wanted = new Set<string>();
    for (const s of scripts) for (const d of importsOf(s)) if (!scripts.includes(d)) wanted.add(d);
    const preloaded = [...html.matchAll(/<link rel="modulepreload" href="([^"]+)">/g)].map((m) => m[1]!);
    expect(new Set(preloaded).size).toBe(preloaded.length);
    expect([...preloaded].sort()).toEqual([...wanted].sort());
  });
});
