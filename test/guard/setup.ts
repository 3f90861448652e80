/**
 * vitest setupFiles: each test file runs under the network guard (net-guard.ts) and fails
 * when anything in it, its worker threads or its child processes was refused.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { GUARD_FILE_ENV, installNetGuard } from "./net-guard.ts";
import { formatRefusals, readRefusals } from "./records.ts";

// Each test file keeps the gateway's own files (the audit trail) in a directory of its own, so
// that files running side by side never read each other's records; a file that restarts a
// gateway still finds what the first one wrote. A configuration naming dataDir wins.
const dataDir = mkdtempSync(path.join(tmpdir(), "gatehouse-data-"));
process.env.GATEHOUSE_DATA_DIR = dataDir;
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

// Normally preloaded already (global-setup.ts); this covers a fork started without it.
installNetGuard();

let file: string | undefined;
// vitest hands the suite as the second argument (the first must be a destructured fixture object).
// eslint-disable-next-line no-empty-pattern
beforeAll(({}, suite) => {
  file = (suite as { file?: { filepath?: string } }).file?.filepath;
  // Threads and child processes started from here on carry the file's name in their records.
  if (file) process.env[GUARD_FILE_ENV] = file;
});

afterAll(() => {
  const mine = readRefusals().filter((r) => r.pid === process.pid || (file !== undefined && r.file === file));
  if (mine.length > 0) {
    throw new Error(`network guard: this file looked up a name or contacted an address off this host ${mine.length} time(s):\n${formatRefusals(mine)}`);
  }
});
