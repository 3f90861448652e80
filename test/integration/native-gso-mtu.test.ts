/**
 * The native batch writer on a route whose MTU is smaller than its datagrams: the kernel
 * refuses the GSO write (EINVAL), the writer falls back to single sends (which the kernel
 * fragments) and nothing is lost or reordered. Runs in a network namespace of its own
 * (`unshare -rn`, loopback MTU 1280).
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const child = fileURLToPath(new URL("../fixtures/native/small-mtu-child.ts", import.meta.url));

describe("native batch writes on a small-MTU route", () => {
  it("falls back to single sends when the kernel refuses GSO, losing nothing", () => {
    const out = execFileSync(
      "unshare",
      ["-rn", "sh", "-c", `ip link set lo up mtu 1280 && exec "${process.execPath}" "${child}"`],
      { encoding: "utf8", timeout: 20_000 },
    );
    const r = JSON.parse(out) as { native: boolean; got: number[]; stats: { sync: number; queued: number; failed: number }; refused: boolean; gso: boolean };
    expect(r.native).toBe(true);
    expect(r.got).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(r.refused).toBe(true); // this peer now gets single sends
    expect(r.gso).toBe(true); // the kernel has GSO; only this route refused it
    expect(r.stats.failed).toBe(0);
    expect(r.stats.sync + r.stats.queued).toBe(20);
  });
});
