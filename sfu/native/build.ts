/**
 * Builds the native fast path (fastpath.c → build/fastpath.node) with the system C
 * compiler against the headers of the Node that runs this script. Runs at `npm install`
 * (package.json "install"); nothing is downloaded.
 *
 *   node sfu/native/build.ts            # a failure is a warning: the SFU keeps its JS path
 *   node sfu/native/build.ts --strict   # a failure is an error (CI, where tests expect it)
 *   node sfu/native/build.ts --strict --if-stale
 *                                       # only when fastpath.c is newer than the binary (`npm test`:
 *                                       # a checkout that changed the C source must not test an old binary)
 *
 * Node-API only, so the result loads in any Node ≥ 18; OpenSSL symbols resolve from the
 * running node binary, which is why the headers must be Node's own (its bundled OpenSSL).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const strict = process.argv.includes("--strict");
const ifStale = process.argv.includes("--if-stale");

/** Node's include/node for the running binary: next to it, or in npm's node-<os>-<arch> package. */
function nodeIncludeDir(): string | undefined {
  const bin = realpathSync(process.execPath);
  const candidates = [path.resolve(path.dirname(bin), "../include/node")];
  const pkgDir = path.join(root, "node_modules/node/node_modules");
  if (existsSync(pkgDir)) {
    for (const d of readdirSync(pkgDir)) if (d.startsWith("node-")) candidates.push(path.join(pkgDir, d, "include/node"));
  }
  candidates.push(path.join(root, `node_modules/node-${process.platform}-${process.arch}/include/node`));
  // A distribution's headers (Debian libnode-dev): Node-API is stable across versions and
  // the EVP calls used are the same in every OpenSSL 3.
  candidates.push("/usr/include/node");
  return candidates.find((d) => existsSync(path.join(d, "node_api.h")) && existsSync(path.join(d, "openssl/evp.h")));
}

/** The binary exists and was built after the last change to its source. */
function isFresh(): boolean {
  try {
    return statSync(path.join(here, "build", "fastpath.node")).mtimeMs >= statSync(path.join(here, "fastpath.c")).mtimeMs;
  } catch {
    return false;
  }
}

function fail(msg: string): never {
  // A binary from an older source must not stay behind to be loaded with this one's callers.
  rmSync(path.join(here, "build", "fastpath.node"), { force: true });
  if (strict) {
    process.stderr.write(`native fast path: ${msg}\n`);
    process.exit(1);
  }
  process.stderr.write(`native fast path not built (the SFU uses its JavaScript path): ${msg}\n`);
  process.exit(0);
}

if (ifStale && isFresh()) process.exit(0);
if (process.platform !== "linux") fail(`sendmmsg is Linux-only (this is ${process.platform})`);
const include = nodeIncludeDir();
if (!include) fail(`no Node headers with OpenSSL found for ${process.execPath} (${process.version})`);
const cc = process.env.CC ?? "cc";
const outDir = path.join(here, "build");
mkdirSync(outDir, { recursive: true });
const tmp = path.join(outDir, `fastpath.${process.pid}.node`);
const args = ["-O2", "-std=gnu11", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-I", include, "-o", tmp, path.join(here, "fastpath.c")];
const r = spawnSync(cc, args, { stdio: ["ignore", "inherit", "inherit"] });
if (r.error) fail(`${cc}: ${r.error.message}`);
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  fail(`${cc} exited with ${r.status}`);
}
// Rename into place: a process that has the old file loaded keeps its mapping.
renameSync(tmp, path.join(outDir, "fastpath.node"));
process.stderr.write(`native fast path built: ${path.relative(root, path.join(outDir, "fastpath.node"))} (headers ${include})\n`);
