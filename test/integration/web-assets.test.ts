/**
 * The web client's files under a version path (gateway/http/web-assets.ts): each page names its
 * scripts, styles and icon under `v/<version>/`, where they are cached for a year; the page itself
 * is revalidated on each opening; another version is served uncached; a missing file is a 404.
 */
import { createServer, type Server } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webAssets } from "../../gateway/http/web-assets.ts";

const WEB = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../web");

async function serve(root: string): Promise<{ url: string; version: string; server: Server }> {
  const app = express();
  const assets = webAssets(root);
  app.use(assets.router);
  const server = createServer(app);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}`, version: assets.version, server };
}

describe("the web client's versioned files", () => {
  let web: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    web = await serve(WEB);
  });
  afterAll(() => new Promise<void>((r) => web.server.close(() => r())));

  it("every page names its own files under the version path, and each is served there for a year", async () => {
    const pages = readdirSync(WEB).filter((n) => n.endsWith(".html"));
    expect(pages).toContain("index.html");
    for (const name of pages) {
      const res = await fetch(`${web.url}/${name}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-cache");
      const html = await res.text();
      const refs = [...html.matchAll(/\b(?:href|src)="([^"]+\.(?:js|css|svg))"/g)].map((m) => m[1]!);
      expect(refs.length).toBeGreaterThan(0);
      for (const ref of refs) {
        expect(ref, `${name}: ${ref}`).toMatch(new RegExp(`^v/${web.version}/[\\w.-]+$`));
        const file = await fetch(`${web.url}/${ref}`);
        expect(file.status, ref).toBe(200);
        expect(file.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
        expect(Buffer.from(await file.arrayBuffer()).equals(readFileSync(path.join(WEB, path.basename(ref))))).toBe(true);
      }
    }
    // `/` is the live view, rewritten the same way; a revalidation with its ETag is a 304.
    const root = await fetch(`${web.url}/`);
    const etag = root.headers.get("etag");
    expect(await root.text()).toContain(`src="v/${web.version}/app.js"`);
    expect(etag).toBeTruthy();
    // (Cache-Control as a browser revalidating sends it: fetch() would add `no-cache` itself.)
    expect((await fetch(`${web.url}/`, { headers: { "If-None-Match": etag!, "Cache-Control": "max-age=0" } })).status).toBe(304);
  });

  it("a module imported by a versioned module resolves under the same version", async () => {
    const app = await fetch(`${web.url}/v/${web.version}/app.js`);
    const imports = [...(await app.text()).matchAll(/from\s+"\.\/([^"]+)"/g)].map((m) => m[1]!);
    expect(imports).toContain("whep.js");
    const dep = await fetch(new URL(`./${imports[0]}`, `${web.url}/v/${web.version}/app.js`));
    expect(dep.status).toBe(200);
    expect(dep.headers.get("cache-control")).toContain("immutable");
  });

  it("another version gets today's file uncached; a missing file is a 404 with a reason", async () => {
    const old = await fetch(`${web.url}/v/AAAAAAAAAAAA/app.js`);
    expect(old.status).toBe(200);
    expect(old.headers.get("cache-control")).toBe("no-cache");
    const missing = await fetch(`${web.url}/v/${web.version}/nope.js`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("cache-control")).toBe("no-store");
    expect(await missing.json()).toEqual({ error: "not_found", reason: "no such file of the web client" });
    const up = await fetch(`${web.url}/v/${web.version}/..%2Fpackage.json`);
    expect(up.status).toBe(404);
  });

  it("the version follows the files' content", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "gatehouse-web-"));
    try {
      await writeFile(path.join(dir, "index.html"), '<link rel="stylesheet" href="a.css"><script type="module" src="b.js"></script><a href="other.html">x</a>');
      await writeFile(path.join(dir, "a.css"), "body{}");
      await writeFile(path.join(dir, "b.js"), "export {};");
      const one = await serve(dir);
      const html = await (await fetch(`${one.url}/`)).text();
      // Only files that exist are renamed; links to pages stay as they are.
      expect(html).toBe(`<link rel="stylesheet" href="v/${one.version}/a.css"><script type="module" src="v/${one.version}/b.js"></script><a href="other.html">x</a>`);
      await new Promise<void>((r) => one.server.close(() => r()));
      await writeFile(path.join(dir, "b.js"), "export const x = 1;");
      const two = await serve(dir);
      expect(two.version).not.toBe(one.version);
      await new Promise<void>((r) => two.server.close(() => r()));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
