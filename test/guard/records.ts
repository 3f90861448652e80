/** Reading the network guard's refusal records (one JSON line each, one file per thread). */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { GUARD_DIR_ENV, type Refusal } from "./net-guard.ts";

/** Every refusal recorded so far in this run (all processes and threads). */
export function readRefusals(dir = process.env[GUARD_DIR_ENV]): Refusal[] {
  if (!dir) return [];
  const out: Refusal[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    if (!name.endsWith(".jsonl")) continue;
    for (const line of readFileSync(path.join(dir, name), "utf8").split("\n")) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as Refusal);
      } catch {
        // a line cut by a crash: the rest still counts
      }
    }
  }
  return out;
}

/** A readable list for a failure message. */
export function formatRefusals(list: readonly Refusal[], max = 20): string {
  const lines = list.slice(0, max).map((r) => {
    const where = r.stack.split("\n").slice(0, 3).map((l) => "      " + l.trim()).join("\n");
    return `  - ${r.kind} ${r.target} via ${r.via} (pid ${r.pid}, thread ${r.thread}${r.file ? `, ${path.relative(process.cwd(), r.file)}` : ""})\n${where}`;
  });
  if (list.length > max) lines.push(`  … and ${list.length - max} more`);
  return lines.join("\n");
}
