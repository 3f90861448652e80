/**
 * `npm ci --omit=dev && npm start` on a copy of the repository with no development
 * dependencies: Node 24 must come from the runtime dependencies (the machine's own node is
 * older and cannot run the TypeScript sources), and the gateway must start and answer.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-prod-"));
let child: ChildProcess | undefined;

afterAll(() => {
  // The process group npm started (npm, then node gateway/main.ts).
  if (child?.pid && child.exitCode === null) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

/** PATH without any node_modules/.bin, as on a fresh machine. */
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  env.PATH = (env.PATH ?? "").split(":").filter((p) => !p.includes("node_modules")).join(":");
  for (const k of Object.keys(env)) if (k.startsWith("npm_") || k.startsWith("VITEST") || k === "NODE_OPTIONS") delete env[k];
  return env;
};

function descendants(pid: number): number[] {
  let kids: number[];
  try {
    kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

describe("production install", () => {
  it("npm ci --omit=dev installs Node 24 and npm start serves /healthz", { timeout: 300_000 }, async () => {
    // The files of the repository (tracked and new, not ignored), without node_modules or builds.
    const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], { cwd: root, encoding: "utf8" })
      .split("\0")
      .filter((f) => f && fs.existsSync(path.join(root, f)));
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.copyFileSync(path.join(root, f), path.join(dir, f));
    }
    const env = cleanEnv();
    execFileSync("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, env, stdio: "pipe", timeout: 240_000 });
    expect(fs.existsSync(path.join(dir, "node_modules/vitest"))).toBe(false); // really without dev dependencies
    const nodeVersion = execFileSync(path.join(dir, "node_modules/.bin/node"), ["--version"], { encoding: "utf8" }).trim();
    expect(nodeVersion).toMatch(/^v24\./);

    fs.writeFileSync(path.join(dir, "gatehouse.yaml"), "server:\n  port: 0\nmedia:\n  icePortRange: [43100, 43199]\nauth:\n  mode: none\ndemo:\n  enabled: false\nlog:\n  format: json\n");
    child = spawn("npm", ["start", "--", "--config", "gatehouse.yaml"], { cwd: dir, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child!.stdout!.on("data", (c: Buffer) => {
        out += c.toString();
        const m = /Gatehouse is running: open (\S+)\//.exec(out);
        if (m) resolve(m[1]!);
      });
      child!.on("exit", (code) => reject(new Error(`npm start exited with ${code}: ${stderr}`)));
    });
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true });

    // SIGTERM to the gateway ends it cleanly (npm then exits with its status), and the log
    // lines written before reach stderr.
    // The node process itself (npm may run the script through a shell).
    const gatewayPid = descendants(child.pid!).findLast((pid) => /(^|\/)node gateway\/main\.ts/.test(cmdline(pid)));
    expect(gatewayPid).toBeDefined();
    const exited = new Promise<number | null>((r) => child!.on("exit", (code) => r(code)));
    process.kill(gatewayPid!, "SIGTERM");
    expect(await exited).toBe(0);
    expect(stderr).toContain('"msg":"gateway closing"');
  });
});
