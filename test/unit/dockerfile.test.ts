/**
 * The Dockerfile, read as a parser would (no image can be pulled or built on this machine):
 * two named stages, the native addon built strictly, runtime dependencies only, a non-root
 * user, nothing fetched and piped into a shell, every COPY'd path present in the repository,
 * a HEALTHCHECK on /healthz; and its health-check script against a real gateway.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";

interface Instruction {
  op: string;
  args: string;
  line: number;
}

/** Dockerfile instructions with continuation lines joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let l = lines[i]!.trim();
    if (l === "" || l.startsWith("#")) continue;
    while (l.endsWith("\\") && i + 1 < lines.length) l = l.slice(0, -1) + " " + lines[++i]!.trim();
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`line ${start + 1}: not an instruction: ${l}`);
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!, line: start + 1 });
  }
  return out;
}

const KNOWN = new Set(["FROM", "WORKDIR", "COPY", "RUN", "ENV", "USER", "EXPOSE", "HEALTHCHECK", "CMD", "ENTRYPOINT", "VOLUME", "STOPSIGNAL", "ARG", "LABEL"]);
const instructions = parseDockerfile(readFileSync("Dockerfile", "utf8"));
const stages: { name: string; image: string; body: Instruction[] }[] = [];
for (const ins of instructions) {
  if (ins.op === "FROM") {
    const m = /^(\S+)\s+AS\s+(\S+)$/i.exec(ins.args);
    stages.push({ image: m ? m[1]! : ins.args, name: m ? m[2]! : String(stages.length), body: [] });
  } else stages.at(-1)!.body.push(ins);
}
const runtime = stages.at(-1)!;

describe("Dockerfile", () => {
  it("uses only known instructions and two named stages on Node 24", () => {
    for (const i of instructions) expect(KNOWN.has(i.op), `line ${i.line}: ${i.op}`).toBe(true);
    expect(stages.map((s) => s.name)).toEqual(["build", "runtime"]);
    for (const s of stages) expect(s.image).toMatch(/^node:24[-.]/);
  });

  it("builds the native addon strictly and installs runtime dependencies only, from the lock file", () => {
    const build = stages[0]!.body.filter((i) => i.op === "RUN").map((i) => i.args);
    expect(build).toContain("npm ci --omit=dev --no-audit --no-fund");
    expect(build).toContain("node sfu/native/build.ts --strict");
    expect(instructions.some((i) => i.op === "RUN" && /npm (install|i)\b/.test(i.args))).toBe(false);
  });

  it("runs as a non-root user, with the stop signal, health check and command the gateway needs", () => {
    const users = runtime.body.filter((i) => i.op === "USER").map((i) => i.args.split(":")[0]);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)$/);
    const cmdAfterUser = runtime.body.findIndex((i) => i.op === "CMD") > runtime.body.findIndex((i) => i.op === "USER");
    expect(cmdAfterUser).toBe(true);
    const hc = runtime.body.find((i) => i.op === "HEALTHCHECK")!;
    expect(hc.args).toMatch(/CMD \["node", "deploy\/healthcheck\.mjs"\]/);
    expect(runtime.body.find((i) => i.op === "ENV")!.args).toMatch(/GATEHOUSE_HEALTH_URL=http:\/\/127\.0\.0\.1:8443\/healthz/);
    expect(runtime.body.find((i) => i.op === "CMD")!.args).toBe('["node", "gateway/main.ts"]');
    expect(runtime.body.find((i) => i.op === "STOPSIGNAL")?.args).toBe("SIGTERM");
    // A high port in the container (443 is mapped onto it), TURN UDP and the media range.
    expect(runtime.body.find((i) => i.op === "EXPOSE")!.args.split(/\s+/)).toEqual(expect.arrayContaining(["8443/tcp", "14049/udp", "40000-40999/udp"]));
  });

  it("fetches nothing into a shell and copies only what exists", () => {
    for (const i of instructions.filter((x) => x.op === "RUN")) {
      expect(i.args, `line ${i.line}`).not.toMatch(/\b(curl|wget)\b[^|]*\|\s*(ba|da|z)?sh\b/);
      expect(i.args, `line ${i.line}`).not.toMatch(/\b(curl|wget)\b/);
    }
    const names = new Set(stages.map((s) => s.name));
    for (const c of instructions.filter((x) => x.op === "COPY")) {
      const words = c.args.split(/\s+/);
      const from = words.find((w) => w.startsWith("--from="))?.slice(7);
      const paths = words.filter((w) => !w.startsWith("--"));
      const sources = paths.slice(0, -1);
      if (from) {
        expect(names.has(from), `line ${c.line}: stage ${from}`).toBe(true);
        continue;
      }
      for (const s of sources) expect(existsSync(s), `line ${c.line}: ${s}`).toBe(true);
    }
  });

  it("leaves node_modules, builds and data out of the build context", () => {
    const ignored = readFileSync(".dockerignore", "utf8").split("\n").map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", "sfu/native/build", "data", ".git"]));
  });
});

describe("deploy/healthcheck.mjs", () => {
  const run = (url: string) =>
    new Promise<number>((resolve) => {
      execFile(process.execPath, ["deploy/healthcheck.mjs"], { env: { ...process.env, GATEHOUSE_HEALTH_URL: url } }, (err) => resolve(err ? Number((err as { code?: number }).code ?? 1) : 0));
    });

  it("exits 0 against a running gateway's /healthz and 1 when nothing answers", { timeout: 60_000 }, async () => {
    const config = parseConfig({ server: { host: "127.0.0.1", port: 0 }, auth: { mode: "none" }, demo: { enabled: false }, log: { level: "silent" } });
    const gw = await startGateway({ config, log: silentLogger });
    const url = `${gw.url}/healthz`;
    try {
      expect(await run(url)).toBe(0);
      expect(await run(`${gw.url}/no-such-route`)).toBe(1);
    } finally {
      await gw.close("test done");
    }
    expect(await run(url)).toBe(1);
  });
});
