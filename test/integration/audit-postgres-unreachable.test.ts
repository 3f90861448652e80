/**
 * PostgreSQL audit store that cannot be reached when the gateway starts (a real server from
 * Debian's package, stopped, then started):
 *  - the gateway starts anyway: live view and sign-in do not depend on the audit database; the
 *    log names the server and the config key; /readyz says audit is not ready;
 *  - what happens meanwhile is recorded in memory and written, chained, once the server answers;
 *    /readyz becomes ready by itself;
 *  - a server that answers and refuses us (an unknown database) stops start-up with a message
 *    naming the server and audit.postgres.connectionString: waiting would not cure that.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { createLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { startPostgres, type PostgresServer } from "../peers/postgres.ts";

let server: PostgresServer;
let gw: Gateway | undefined;
const browsers: HttpBrowser[] = [];

beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
  await server?.close();
});

function config(connectionString: string) {
  return parseConfig({
    server: { host: "127.0.0.1", port: 0 },
    auth: { mode: "dev" },
    demo: { enabled: false },
    audit: { backend: "postgres", postgres: { connectionString, connectTimeoutMs: 2000 } },
    log: { level: "info" },
  });
}

function memoryLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: "info", format: "json", write: (l) => void lines.push(l) }) };
}

async function readyz(url: string): Promise<{ status: number; audit: { ready: boolean; detail: string } }> {
  const r = await fetch(`${url}/readyz`);
  const j = (await r.json()) as { components: { audit: { ready: boolean; detail: string } } };
  return { status: r.status, audit: j.components.audit };
}

describe("PostgreSQL audit store unreachable at start", () => {
  it("starts degraded (not ready, said plainly), keeps the records and writes them when the server comes", async () => {
    await server.stop();
    const { lines, log } = memoryLog();
    gw = await startGateway({ config: config(server.url), log });
    const said = lines.find((l) => l.includes("is unreachable"));
    expect(said, lines.join("\n")).toBeDefined();
    expect(said).toContain(server.socketDir);
    expect(said).toContain("audit.postgres.connectionString");
    const before = await readyz(gw.url);
    expect(before.status).toBe(503);
    expect(before.audit.ready).toBe(false);

    // Sign-in works without the audit database; its record waits.
    const b = new HttpBrowser();
    browsers.push(b);
    const pw = gw.auth.devUsers!.find((u) => u.username === "admin")!.password;
    expect((await signIn(b, `${gw.url}/auth/login`, "admin", pw)).status).toBe(200);
    expect(gw.audit!.stats.queued).toBeGreaterThan(0);
    expect(gw.audit!.stats.written).toBe(0);

    // The server comes: the waiting records are written, and the gateway becomes ready.
    const written = new Promise<void>((resolve) => gw!.audit!.events.on("written", (recs) => recs.some((r) => r.action === "sign_in") && resolve()));
    await server.start();
    await written;
    expect(lines.some((l) => l.includes("audit store reachable again"))).toBe(true);
    const after = await readyz(gw.url);
    expect(after.status).toBe(200);
    expect(after.audit.ready).toBe(true);

    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      const rows = (await client.query<{ action: string; subject: string | null }>("SELECT action, subject FROM gatehouse_audit ORDER BY seq")).rows;
      expect(rows).toContainEqual({ action: "sign_in", subject: "dev-admin" });
    } finally {
      await client.end();
    }
    expect((await gw.audit!.verify()).ok).toBe(true);
    await gw.close("test done");
    gw = undefined;
  }, 90_000);

  it("a server that refuses us (unknown database) stops start-up, naming the server and the key", async () => {
    const url = server.url.replace("/postgres?", "/no_such_database?");
    const { log } = memoryLog();
    const err = await startGateway({ config: config(url), log }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(server.socketDir);
    expect(err!.message).toContain("audit.postgres.connectionString");
    expect(err!.message).toMatch(/no_such_database/);
  }, 60_000);
});
