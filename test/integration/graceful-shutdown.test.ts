/**
 * Graceful shutdown of the real process (`node gateway/main.ts --config …`), as systemd or
 * Docker stop it: with a door call in progress (baresip at the door, a werift "browser"
 * answering), a page's camera event stream open and a signed-in session, SIGTERM must
 *  - end the page's stream with a `gateway` "restarting" notice (the page says so and retries),
 *  - end the call with a BYE the door receives,
 *  - refuse new connections,
 *  - write the call's end to the audit trail and the session to the session file,
 *  - exit with status 0 within `server.shutdownTimeoutMs`.
 * A second signal exits at once (130 or 143, after SIGINT or SIGTERM).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, describe, expect, it } from "vitest";
import { Baresip, tone, wav } from "../peers/baresip.ts";
import { HttpBrowser, signIn } from "../peers/oidc.ts";
import { cookieHeader, GatewayClient, SseClient, WeriftBrowserPhone } from "./intercom-support.ts";

const PASSWORD = "door-secret-1";
const SHUTDOWN_MS = 4000;
const dirs: string[] = [];
const children: ChildProcess[] = [];
const cleanups: Array<() => unknown> = [];

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  url: string;
  sipUdp: number;
  passwords: Map<string, string>;
  exited: Promise<{ code: number | null; ms: number }>;
  stderr: () => string;
}

/** Start the gateway as `npm start` does, and read where it listens from what it prints. */
async function startProcess(dir: string): Promise<Running> {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  const config = [
    "server: { host: 127.0.0.1, port: 0, shutdownTimeoutMs: " + SHUTDOWN_MS + " }",
    "media: { icePortRange: [" + (base + 200) + ", " + (base + 299) + "] }",
    `dataDir: ${dir}/data`,
    "demo: { enabled: true }",
    "log: { level: info, format: json }",
    "auth:",
    "  mode: dev",
    `  session: { file: ${dir}/sessions.json }`,
    "  rights: [{ role: gatehouse-admin, cameras: ['*'], actions: [admin] }]",
    "sip:",
    "  enabled: true",
    "  bindAddress: 127.0.0.1",
    "  udp: { port: 0 }",
    "  tcp: { port: 0 }",
    "  keepAliveSeconds: 0",
    `  rtpPortRange: [${base}, ${base + 99}]`,
    `  devices: [{ id: door1, name: Front door, username: door1, password: ${PASSWORD}, camera: demo }]`,
    "",
  ].join("\n");
  fs.writeFileSync(path.join(dir, "gatehouse.yaml"), config);
  const child = spawn(process.execPath, ["gateway/main.ts", "--config", path.join(dir, "gatehouse.yaml")], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  let stopAt = 0;
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) => child.once("exit", (code) => resolve({ code, ms: Date.now() - stopAt })));
  child.on("exit", () => undefined);
  Object.defineProperty(child, "stopClock", { value: () => (stopAt = Date.now()) });
  const out = await new Promise<string>((resolve, reject) => {
    let text = "";
    const t = setTimeout(() => reject(new Error(`gateway did not start:\n${text}\n${stderr.slice(-3000)}`)), 60_000);
    child.stdout!.on("data", (c: Buffer) => {
      text += c.toString();
      if (/Configure auth\.mode/.test(text)) {
        clearTimeout(t);
        resolve(text);
      }
    });
    child.once("exit", (code) => reject(new Error(`gateway exited ${code}:\n${stderr.slice(-3000)}`)));
  });
  const url = /Gatehouse is running: open (\S+)\//.exec(out)![1]!;
  const sipUdp = Number(/SIP intercom: UDP (\d+)/.exec(out)![1]);
  const passwords = new Map([...out.matchAll(/^\s+(\w+)\s+password (\S+)/gm)].map((m) => [m[1]!, m[2]!]));
  // The process answers, so it is past start-up (its signal handlers are in place).
  expect((await fetch(`${url}/healthz`)).status).toBe(200);
  return { child, url, sipUdp, passwords, exited, stderr: () => stderr };
}

function signal(r: Running, sig: NodeJS.Signals): void {
  (r.child as unknown as { stopClock: () => void }).stopClock();
  r.child.kill(sig);
}

/** Does anything accept a TCP connection on this URL's port now? */
function accepts(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname);
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

describe("graceful shutdown of the gateway process", () => {
  it("SIGTERM: the page hears 'restarting', the door gets BYE, the audit and sessions are written, status 0", { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-stop-"));
    dirs.push(dir);
    const gw = await startProcess(dir);

    const browser = new HttpBrowser();
    cleanups.push(() => browser.close());
    expect((await signIn(browser, `${gw.url}/auth/login`, "admin", gw.passwords.get("admin")!)).status).toBe(200);
    const admin = new GatewayClient(gw.url, browser);

    // The page's camera stream and the ring stream, as an open web client has them.
    const cams = await SseClient.open(`${gw.url}/api/cameras/events`, cookieHeader(browser, gw.url), "cameras");
    cleanups.push(() => cams.close());
    const rings = await admin.events();
    cleanups.push(() => rings.close());

    // A call in progress: the door dials, the "browser" answers.
    const door = Baresip.start({ user: "door1", password: PASSWORD, domain: "gatehouse", registrar: `127.0.0.1:${gw.sipUdp}`, microphone: wav(tone(440, 30)) });
    cleanups.push(() => door.close());
    await door.waitFor(/registered successfully/, 20_000);
    const ring = rings.next("ring", () => true, 20_000);
    door.command("dial sip:gate@gatehouse");
    const callId = String((await ring).callId);
    const established = door.waitFor(/Call established/, 20_000);
    const { phone, offer } = await WeriftBrowserPhone.create();
    cleanups.push(() => phone.close());
    const res = await admin.post(`/api/intercom/calls/${callId}/answer`, { sdp: offer });
    expect(res.status, res.body).toBe(201);
    await phone.accept(res.body);
    await established;

    // Stop.
    const notice = cams.next("gateway", () => true, 10_000);
    const bye = door.waitFor(/terminated|session closed|Connection reset/, 10_000);
    signal(gw, "SIGTERM");
    expect(await notice).toMatchObject({ state: "restarting", message: expect.stringMatching(/restarting/) });
    await bye;
    const { code, ms } = await gw.exited;
    expect(code, gw.stderr().slice(-3000)).toBe(0);
    expect(ms).toBeLessThan(SHUTDOWN_MS);
    expect(await accepts(gw.url)).toBe(false);

    // The log says it finished cleanly, with no step abandoned.
    const log = gw.stderr();
    expect(log).toMatch(/gateway closed/);
    expect(log).not.toMatch(/did not finish in time/);

    // The call's end is in the audit trail, ended by the shutdown.
    const db = new DatabaseSync(path.join(dir, "data", "audit.sqlite"), { readOnly: true });
    const ends = db.prepare("SELECT detail FROM audit WHERE action = 'intercom_call_end'").all() as { detail: string }[];
    db.close();
    expect(ends.map((e) => JSON.parse(e.detail) as { callId: string; reason: string })).toContainEqual(expect.objectContaining({ callId, reason: "shutdown" }));
    // The signed-in session is in the session file.
    const saved = JSON.parse(fs.readFileSync(path.join(dir, "sessions.json"), "utf8")) as { sessions: { sub: string }[] };
    expect(saved.sessions.map((s) => s.sub)).toContain("dev-admin");
  });

  it("a second signal exits at once", { timeout: 90_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-stop2-"));
    dirs.push(dir);
    const gw = await startProcess(dir);
    // Two different signals are both delivered (two of the same may merge into one).
    signal(gw, "SIGINT");
    gw.child.kill("SIGTERM");
    const { code } = await gw.exited;
    expect([130, 143], `${gw.child.signalCode} ${gw.stderr().slice(-2000)}`).toContain(code);
    expect(gw.stderr()).toMatch(/second signal: exiting at once/);
  });
});
