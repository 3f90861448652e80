/**
 * vitest globalSetup: puts the network guard (net-guard.ts) in every process of the run and
 * fails the run if anything was refused.
 *
 * It makes a directory for the refusal records, notes the network namespace the run starts
 * in, and adds `--require <preload>` to NODE_OPTIONS before vitest starts its forks: the forks,
 * the worker threads they start (the guard also forces the preload into a Worker's execArgv)
 * and every Node child process they spawn install the guard before their own code runs.
 * Non-Node children (Chromium, coturn, sipp, baresip, GStreamer) are outside its reach: they
 * are started with loopback-only flags by test/peers/.
 */
import { mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { GUARD_DIR_ENV, GUARD_NETNS_ENV, PRELOAD_PATH } from "./net-guard.ts";
import { formatRefusals, readRefusals } from "./records.ts";

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), "gatehouse-net-guard-"));
  process.env[GUARD_DIR_ENV] = dir;
  process.env[GUARD_NETNS_ENV] = readlinkSync("/proc/self/ns/net");
  const preload = `--require=${PRELOAD_PATH}`;
  const opts = process.env.NODE_OPTIONS ?? "";
  if (!opts.includes(preload)) process.env.NODE_OPTIONS = `${opts} ${preload}`.trim();
  return () => {
    const refused = readRefusals(dir);
    rmSync(dir, { recursive: true, force: true });
    if (refused.length > 0) {
      throw new Error(`network guard: ${refused.length} lookup(s) or send(s) off this host were refused during the run:\n${formatRefusals(refused)}`);
    }
  };
}
