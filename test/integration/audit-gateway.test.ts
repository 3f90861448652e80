/**
 * The audit trail on the whole gateway (development sign-in with two users, the demo camera,
 * SIP with baresip as the door station), once with SQLite in a temp data directory and once with
 * a real PostgreSQL server from Debian's package (unix socket only): every audited action
 * leaves its record with who, from where, what and the outcome; administrators query it with
 * filters, export CSV and verify the chain; the intercom's call history survives a restart.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import type { AuditRecord } from "../../gateway/audit/index.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { watchConfig } from "../../gateway/reload.ts";
import { Baresip, tone, wav } from "../peers/baresip.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { startPostgres, type PostgresServer } from "../peers/postgres.ts";
import { WeriftViewer, WhepHttpError } from "../peers/werift-viewer.ts";
import { GatewayClient, WeriftBrowserPhone } from "./intercom-support.ts";

const PASSWORD = "door-secret-1";

type Backend = "sqlite" | "postgres";

function gatewayConfig(dataDir: string, backend: Backend, connectionString: string | undefined) {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  return parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "dev" },
      demo: { enabled: true },
      log: { level: "warn" },
      dataDir,
      media: { icePortRange: [43200, 43399] },
      ...(backend === "postgres" ? { audit: { backend: "postgres", postgres: { connectionString } } } : {}),
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { port: 0 },
        keepAliveSeconds: 0,
        ringTimeoutSeconds: 8,
        rtpPortRange: [base, base + 99],
        devices: [{ id: "door1", name: "Front door", username: "door1", password: PASSWORD, camera: "demo", dtmf: { openDoor: "1#", durationMs: 120 } }],
      },
    },
    {},
  );
}

let gw: Gateway;
let door: Baresip | undefined;
const browsers: HttpBrowser[] = [];
const cleanups: Array<() => unknown> = [];

async function signedIn(user: "admin" | "viewer"): Promise<{ client: GatewayClient; browser: HttpBrowser }> {
  const b = new HttpBrowser();
  browsers.push(b);
  const pw = gw.auth.devUsers!.find((u) => u.username === user)!.password;
  expect((await signIn(b, `${gw.url}/auth/login`, user, pw)).status).toBe(200);
  return { client: new GatewayClient(gw.url, b), browser: b };
}

async function records(c: GatewayClient, query: string): Promise<AuditRecord[]> {
  const r = await c.get(`/api/admin/audit?${query}`);
  expect(r.status, r.body).toBe(200);
  return (r.json() as { records: AuditRecord[] }).records;
}

/** Polls the trail (records are written in the background) until `pred` holds. */
async function until(c: GatewayClient, query: string, pred: (rs: AuditRecord[]) => boolean): Promise<AuditRecord[]> {
  for (;;) {
    const rs = await records(c, query);
    if (pred(rs)) return rs;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each<Backend>(["sqlite", "postgres"])("audit trail on the gateway (%s)", (backend) => {
  let dataDir = "";
  let config: ReturnType<typeof gatewayConfig>;
  let server: PostgresServer | undefined;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-audit-gw-"));
    if (backend === "postgres") server = await startPostgres();
    config = gatewayConfig(dataDir, backend, server?.url);
    gw = await startGateway({ config, log: silentLogger });
  }, 60_000);

  afterAll(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await door?.close();
    door = undefined;
    for (const b of browsers.splice(0)) b.close();
    await gw?.close("test done");
    await server?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  let admin: GatewayClient;
  let viewer: GatewayClient;
  let viewerBrowser: HttpBrowser;
  let callId = "";

  it("records sign-ins with user, session and source, and a refused sign-in", async () => {
    ({ client: admin } = await signedIn("admin"));
    ({ client: viewer, browser: viewerBrowser } = await signedIn("viewer"));
    // A callback for a sign-in this gateway never started.
    expect((await fetch(`${gw.url}/auth/callback?state=forged&code=x`, { redirect: "manual" })).status).toBeGreaterThanOrEqual(400);
    const rs = await until(admin, "action=sign_in", (rs) => rs.length >= 3);
    const ok = rs.filter((r) => r.outcome === "success");
    expect(ok.map((r) => r.subject).sort()).toEqual(["dev-admin", "dev-viewer"]);
    const v = ok.find((r) => r.subject === "dev-viewer")!;
    expect(v).toMatchObject({ name: "Demo Viewer", source: "127.0.0.1" });
    expect(v.session).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(rs.find((r) => r.outcome !== "success")).toMatchObject({ outcome: "denied", detail: "unknown_attempt", source: "127.0.0.1", subject: null });
    // Only administrators of every camera read it.
    expect((await viewer.get("/api/admin/audit")).status).toBe(403);
  });

  it("records a live view's start and end on its camera, and a refused one", async () => {
    const csrf = (JSON.parse((await viewerBrowser.request(`${gw.url}/auth/csrf`, { headers: { accept: "application/json" } })).body) as { token: string }).token;
    const cookie = viewerBrowser.cookie("127.0.0.1", "gatehouse_session")!;
    const v = await WeriftViewer.connect({
      whepUrl: `${gw.url}/whep/demo`,
      headers: { cookie: `gatehouse_session=${cookie}`, "x-csrf-token": csrf, origin: gw.url },
    });
    cleanups.push(() => v.close());
    const started = await until(admin, "camera=demo&action=live_view_start&user=dev-viewer", (rs) => rs.length >= 1);
    expect(started[0]).toMatchObject({ outcome: "success", name: "Demo Viewer", source: "127.0.0.1", camera: "demo" });
    await v.close();
    const ended = await until(admin, "camera=demo&action=live_view_end", (rs) => rs.length >= 1);
    expect(ended[0]).toMatchObject({ subject: "dev-viewer", camera: "demo", session: started[0]!.session });
    expect(JSON.parse(ended[0]!.detail!)).toMatchObject({ viewer: JSON.parse(started[0]!.detail!).viewer, reason: "client delete" });

    // Signed out: refused with 401, and recorded as denied.
    await expect(WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo` })).rejects.toBeInstanceOf(WhepHttpError);
    const refused = await until(admin, "camera=demo&action=live_view_start", (rs) => rs.some((r) => r.outcome === "denied"));
    expect(refused.find((r) => r.outcome === "denied")).toMatchObject({ subject: null, source: "127.0.0.1", detail: '{"status":401}' });
  });

  it("records the ring, the answer, the door opening and the call's end, with the door and its camera", { timeout: 60_000 }, async () => {
    door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sip!.ports.udp}`, microphone: wav(tone(440, 30)) });
    await door.waitFor(/registered successfully/);
    const s = await admin.events();
    cleanups.push(() => s.close());
    const ring = s.next("ring");
    door.command("dial sip:gate@gatehouse");
    callId = String((await ring).callId);
    const { phone, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => phone.close());
    const established = door.waitFor(/Call established/);
    const res = await admin.post(`/api/intercom/calls/${callId}/answer`, { sdp: offer });
    expect(res.status, res.body).toBe(201);
    await phone.accept(res.body);
    await established;
    const digits = door.waitFor(/received event: '#' \(end=1\)/);
    expect((await admin.post(`/api/intercom/calls/${callId}/open-door`)).status).toBe(204);
    await digits;
    // Someone not in the call cannot open the door: refused, and recorded.
    expect((await viewer.post(`/api/intercom/calls/${callId}/open-door`)).status).toBe(403);
    const ended = s.next("ended");
    expect((await admin.post(`/api/intercom/calls/${callId}/hangup`)).status).toBe(204);
    await ended;

    const rs = await until(admin, "door=door1", (rs) => rs.some((r) => r.action === "intercom_call_end"));
    const byAction = (a: string) => rs.filter((r) => r.action === a);
    expect(byAction("intercom_ring")[0]).toMatchObject({ outcome: "success", door: "door1", camera: "demo" });
    expect(byAction("intercom_answer")[0]).toMatchObject({ outcome: "success", subject: "dev-admin", name: "Demo Administrator", source: "127.0.0.1", camera: "demo" });
    const opens = byAction("door_open");
    expect(opens.find((r) => r.outcome === "success")).toMatchObject({ subject: "dev-admin", door: "door1" });
    expect(opens.find((r) => r.outcome === "denied")).toMatchObject({ subject: "dev-viewer", door: "door1" });
    expect(byAction("intercom_hangup")[0]).toMatchObject({ outcome: "success", subject: "dev-admin" });
    expect(JSON.parse(byAction("intercom_call_end")[0]!.detail!)).toMatchObject({ callId, deviceId: "door1", answeredBy: "dev-admin", reason: "local-bye" });
    // Chronological order: ring, answer, open, hang-up, end.
    const seq = (a: string) => byAction(a).at(-1)!.seq;
    expect(seq("intercom_ring")).toBeLessThan(seq("intercom_answer"));
    expect(seq("intercom_answer")).toBeLessThan(opens.find((r) => r.outcome === "success")!.seq);
  });

  it("records administrators ending sessions, and sessions that end", async () => {
    const r = await admin.browser!.request(`${gw.url}/api/admin/users/dev-viewer/sessions`, {
      method: "DELETE",
      headers: { accept: "application/json", "x-csrf-token": JSON.parse((await admin.get("/auth/csrf")).body).token, origin: gw.url },
    });
    expect(r.status).toBe(200);
    const rs = await until(admin, "action=admin_user_sessions_end,session_ended", (rs) => rs.length >= 2);
    expect(rs.find((x) => x.action === "admin_user_sessions_end")).toMatchObject({ outcome: "success", subject: "dev-admin", detail: '{"subject":"dev-viewer","status":200}' });
    expect(rs.find((x) => x.action === "session_ended")).toMatchObject({ subject: "dev-viewer", name: "Demo Viewer", detail: "revoked" });
  });

  it("records a sign-out and a configuration reload (accepted, then rejected)", async () => {
    const { client: bob, browser } = await signedIn("viewer");
    const csrf = (JSON.parse((await bob.get("/auth/csrf")).body) as { token: string }).token;
    const out = await browser.request(`${gw.url}/auth/logout`, { method: "POST", body: new URLSearchParams({ _csrf: csrf }), headers: { origin: gw.url } });
    expect(out.status).toBeLessThan(400);
    const signOut = await until(admin, "action=sign_out", (rs) => rs.length >= 1);
    expect(signOut[0]).toMatchObject({ subject: "dev-viewer", name: "Demo Viewer", source: "127.0.0.1", detail: "logout" });

    const file = path.join(dataDir, "gatehouse.yaml");
    fs.writeFileSync(file, "auth:\n  mode: dev\n");
    const watcher = watchConfig(file, gw, silentLogger, 10);
    watcher.reload();
    fs.writeFileSync(file, "auth:\n  mode: dev\n  nonsense: 1\n");
    watcher.reload();
    watcher.close();
    const reloads = await until(admin, "action=config_reload", (rs) => rs.length >= 2);
    expect(reloads[1]).toMatchObject({ outcome: "success" });
    expect(reloads[0]).toMatchObject({ outcome: "failure" });
    expect(JSON.parse(reloads[0]!.detail!).problems).toEqual(["auth.nonsense: unknown key"]);
  });

  it("filters by time, exports CSV and verifies the chain", async () => {
    const all = await records(admin, "limit=1000");
    const mid = all[Math.floor(all.length / 2)]!;
    const later = await records(admin, `from=${new Date(mid.time).toISOString()}&limit=1000`);
    expect(later.every((r) => r.time >= mid.time)).toBe(true);
    expect(later.length).toBeLessThan(all.length + 1);
    const none = await records(admin, `to=${all.at(-1)!.time}`);
    expect(none).toEqual([]);
    expect((await admin.get("/api/admin/audit?from=yesterday")).status).toBe(400);

    const csv = await admin.get("/api/admin/audit/export.csv?camera=demo");
    expect(csv.status).toBe(200);
    const lines = csv.body.trimEnd().split("\r\n");
    expect(lines[0]).toBe("seq,time,action,outcome,subject,name,session,source,camera,door,detail,prev_hash,hash");
    const demo = all.filter((r) => r.camera === "demo");
    expect(lines.length - 1).toBe(demo.length);
    expect(lines[1]!.startsWith(`${demo[0]!.seq},${new Date(demo[0]!.time).toISOString()},${demo[0]!.action},`)).toBe(true);

    const verdict = (await admin.get("/api/admin/audit/verify")).json() as { ok: boolean; checked: number };
    expect(verdict.ok).toBe(true);
    expect(verdict.checked).toBeGreaterThanOrEqual(all.length);
    expect(await (await fetch(`${gw.url}/readyz`)).json()).toMatchObject({ components: { audit: { ready: true, detail: backend } } });
  });

  it("keeps the intercom's call history, and the trail, across a restart", { timeout: 60_000 }, async () => {
    await door?.close();
    door = undefined;
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await gw.close("restart");
    gw = await startGateway({ config, log: silentLogger });
    ({ client: admin } = await signedIn("admin"));
    const calls = (await admin.get("/api/intercom/calls")).json() as { history: Array<{ callId: string; answeredBy: string; reason: string }> };
    expect(calls.history).toEqual([expect.objectContaining({ callId, answeredBy: "dev-admin", reason: "local-bye" })]);
    const verdict = (await admin.get("/api/admin/audit/verify")).json() as { ok: boolean };
    expect(verdict.ok).toBe(true);
    // The sign-in after the restart follows on the same chain.
    expect((await records(admin, "action=sign_in&user=dev-admin")).length).toBeGreaterThanOrEqual(2);
  });
});
