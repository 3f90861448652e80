/**
 * Vitest global set-up: before any test file runs, check that every Debian peer the tests
 * drive is installed (test/peers/debian-packages.txt). `npm test` installs them first
 * ("pretest"); a bare `npx vitest run` on a machine without them stops here, naming the
 * command that installs them, instead of failing test by test with `spawn … ENOENT`.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("./debian-peers.sh", import.meta.url));

export default function setup(): void {
  const r = spawnSync("bash", [script, "--check"], { encoding: "utf8", stdio: ["ignore", "inherit", "pipe"] });
  if (r.status === 0) return;
  throw new Error(`the tests' Debian peers are not all installed:\n${r.stderr || r.error?.message || `exit ${r.status}`}`);
}
