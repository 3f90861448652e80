/**
 * The test-peer installer (test/peers/debian-peers.sh) against stub `dpkg-query`, `apt-get`,
 * `id` and `sudo` on PATH: what it installs, when it runs apt-get at all, and where it stops.
 * The stubs keep the "installed" set in a file, so apt-get install really changes what the
 * next dpkg-query sees, and every apt-get/sudo call is logged for the assertions.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const script = path.join(root, "test/peers/debian-peers.sh");
const listed = readFileSync(path.join(root, "test/peers/debian-packages.txt"), "utf8")
  .split("\n")
  .map((l) => l.replace(/#.*/, ""))
  .flatMap((l) => l.split(/\s+/))
  .filter(Boolean);

interface World {
  installed: string[];
  uid?: number;
  /** "ok": `sudo -n` works; "password": it would ask; undefined: no sudo at all. */
  sudo?: "ok" | "password";
  /** apt-get install fails (status 100) without installing. */
  aptFails?: boolean;
  /** apt-get install succeeds but installs nothing. */
  aptInstallsNothing?: boolean;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function stub(dir: string, name: string, body: string): void {
  writeFileSync(path.join(dir, name), `#!/bin/bash\n${body}\n`);
  chmodSync(path.join(dir, name), 0o755);
}

function run(world: World, args: string[] = []) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gatehouse-peers-"));
  dirs.push(dir);
  const bin = path.join(dir, "bin");
  spawnSync("mkdir", [bin]);
  const state = path.join(dir, "installed");
  const log = path.join(dir, "calls");
  writeFileSync(state, world.installed.map((p) => p + "\n").join(""));
  writeFileSync(log, "");
  // dpkg-query -W -f='${Package} ${Status}\n' p…: installed ones print, unknown ones go to stderr with status 1.
  stub(
    bin,
    "dpkg-query",
    `shift 2; rc=0
for p in "$@"; do if grep -qxF "$p" "${state}"; then echo "$p install ok installed"; else echo "dpkg-query: no packages found matching $p" >&2; rc=1; fi; done
exit $rc`,
  );
  stub(
    bin,
    "apt-get",
    `echo "apt-get $* [uid=$(id -u) DEBIAN_FRONTEND=$DEBIAN_FRONTEND]" >> "${log}"
[ "$1" = install ] || exit 0
${world.aptFails ? "echo 'E: Unable to locate package' >&2; exit 100" : ""}
${world.aptInstallsNothing ? "exit 0" : ""}
for a in "$@"; do case "$a" in -*|install) ;; *) echo "$a" >> "${state}";; esac; done`,
  );
  stub(bin, "id", `echo "\${STUB_UID:-${world.uid ?? 0}}"`);
  if (world.sudo)
    stub(
      bin,
      "sudo",
      `echo "sudo $*" >> "${log}"
[ "$1" = -n ] || exit 1; shift
${world.sudo === "password" ? 'echo "sudo: a password is required" >&2; exit 1' : 'STUB_UID=0 exec "$@"'}`,
    );
  // "No sudo": a sudo that cannot run anything, so a real one later on PATH is never reached.
  else stub(bin, "sudo", `echo "sudo $*" >> "${log}"; exit 127`);
  // The stub directory first: no real dpkg-query, apt-get, id or sudo is reached.
  const env = { PATH: `${bin}:/usr/bin:/bin`, HOME: dir };
  const r = spawnSync("bash", [script, ...args], { env, encoding: "utf8", timeout: 20_000 });
  return {
    status: r.status,
    stderr: r.stderr,
    calls: readFileSync(log, "utf8").split("\n").filter(Boolean),
    installed: readFileSync(state, "utf8").split("\n").filter(Boolean),
  };
}

// Each case spawns bash and a dozen small tools: seconds apiece on a loaded two-core machine.
describe("test peer installer", { timeout: 60_000 }, () => {
  it("reads one list that names every peer the tests start", () => {
    for (const p of ["chromium", "firefox-esr", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-libav", "gstreamer1.0-x", "coturn", "sip-tester", "baresip", "janus", "redis-server", "postgresql", "prometheus", "iproute2", "gcc"])
      expect(listed).toContain(p);
    expect(new Set(listed).size).toBe(listed.length);
  });

  it("does nothing, not even apt-get update, when everything is installed", () => {
    const r = run({ installed: listed, uid: 1000 });
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    expect(r.stderr).toBe("");
  });

  it("as root installs exactly what is missing, after one apt-get update, non-interactively", () => {
    const r = run({ installed: listed.filter((p) => p !== "baresip" && p !== "chromium"), uid: 0 });
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([
      "apt-get update -qq [uid=0 DEBIAN_FRONTEND=noninteractive]",
      "apt-get install -y -qq --no-install-recommends chromium baresip [uid=0 DEBIAN_FRONTEND=noninteractive]",
    ]);
    expect(new Set(r.installed)).toEqual(new Set(listed));
    expect(r.stderr).toContain("installed chromium baresip");
  });

  it("as a user installs through sudo when sudo needs no password", () => {
    const r = run({ installed: listed.filter((p) => p !== "coturn"), uid: 1000, sudo: "ok" });
    expect(r.status).toBe(0);
    expect(r.calls.filter((c) => c.startsWith("apt-get"))).toEqual([
      "apt-get update -qq [uid=0 DEBIAN_FRONTEND=noninteractive]",
      "apt-get install -y -qq --no-install-recommends coturn [uid=0 DEBIAN_FRONTEND=noninteractive]",
    ]);
    expect(r.calls.filter((c) => c.startsWith("sudo")).every((c) => c.startsWith("sudo -n "))).toBe(true);
  });

  it("as a user whose sudo asks for a password, stops before apt-get and names the one command", () => {
    const r = run({ installed: listed.filter((p) => p !== "janus" && p !== "postgresql"), uid: 1000, sudo: "password" });
    expect(r.status).toBe(1);
    expect(r.calls.filter((c) => c.startsWith("apt-get"))).toEqual([]);
    expect(r.stderr).toContain("missing Debian packages: janus postgresql");
    expect(r.stderr).toContain("  sudo test/peers/debian-peers.sh\n");
  });

  it("as a user without sudo, stops the same way", () => {
    const r = run({ installed: [], uid: 1000 });
    expect(r.status).toBe(1);
    expect(r.calls.filter((c) => c.startsWith("apt-get"))).toEqual([]);
    expect(r.stderr).toContain(`missing Debian packages: ${listed.join(" ")}`);
    expect(r.stderr).toContain("sudo test/peers/debian-peers.sh");
  });

  it("fails when apt-get cannot install, and when a package is still missing afterwards", () => {
    const r = run({ installed: listed.filter((p) => p !== "prometheus"), uid: 0, aptFails: true });
    expect(r.status).not.toBe(0);
    expect(r.installed).not.toContain("prometheus");
    const nothing = run({ installed: listed.filter((p) => p !== "prometheus"), uid: 0, aptInstallsNothing: true });
    expect(nothing.status).toBe(1);
    expect(nothing.stderr).toContain("still missing after apt-get install: prometheus");
  });

  it("--dry-run and --check change nothing", () => {
    const dry = run({ installed: listed.filter((p) => p !== "ffmpeg"), uid: 0 }, ["--dry-run"]);
    expect(dry.status).toBe(0);
    expect(dry.calls).toEqual([]);
    expect(dry.stderr).toContain("would run: apt-get install -y -qq --no-install-recommends ffmpeg");
    const check = run({ installed: listed.filter((p) => p !== "ffmpeg"), uid: 0 }, ["--check"]);
    expect(check.status).toBe(1);
    expect(check.calls).toEqual([]);
    expect(check.stderr).toContain("missing Debian packages: ffmpeg");
    expect(run({ installed: listed, uid: 0 }, ["--check"]).status).toBe(0);
  });

  it("is what `npm test` and CI run first, and CI keeps no list of its own", () => {
    const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts["pretest"]).toMatch(/^bash test\/peers\/debian-peers\.sh && /);
    const ci = readFileSync(path.join(root, ".ci/run"), "utf8");
    expect(ci).toContain("bash test/peers/debian-peers.sh");
    expect(ci).not.toMatch(/apt-get install/);
    expect(ci.indexOf("debian-peers.sh")).toBeLessThan(ci.indexOf("npm ci"));
  });
});
