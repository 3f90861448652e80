import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../config/log.ts";
import type { AuthConfig } from "../../config/sections/auth.ts";
import { watchConfig, type Reloadable } from "../../gateway/reload.ts";

const rights = (camera: string) => `
auth:
  mode: dev
  rights:
    - { role: guards, cameras: [${camera}], actions: [live] }
`;

describe("configuration reload", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  function setup() {
    const dir = mkdtempSync(path.join(tmpdir(), "gh-reload-"));
    dirs.push(dir);
    const file = path.join(dir, "gatehouse.yaml");
    writeFileSync(file, rights("lobby"));
    const applied: AuthConfig[] = [];
    let notify: (() => void) | undefined;
    const gw: Reloadable = {
      auth: {
        reload(next: AuthConfig) {
          applied.push(next);
          notify?.();
          return { applied: ["rights"], needsRestart: [] };
        },
      } as unknown as Reloadable["auth"],
    };
    const lines: string[] = [];
    const log = createLogger({ write: (l) => { lines.push(l); notify?.(); } });
    const next = () => new Promise<void>((r) => (notify = r));
    return { file, gw, applied, lines, log, next };
  }

  it("applies a changed rights mapping from the watched file", async () => {
    const { file, gw, applied, log, next } = setup();
    const w = watchConfig(file, gw, log, 20);
    try {
      const changed = next();
      writeFileSync(file, rights("dock"));
      await changed;
      expect(applied.at(-1)!.rights[0]!.cameras).toEqual(["dock"]);
    } finally {
      w.close();
    }
  });

  it("keeps the running configuration when the new file is invalid, and says why", async () => {
    const { file, gw, applied, lines, log, next } = setup();
    const w = watchConfig(file, gw, log, 20);
    try {
      const rejected = next();
      writeFileSync(file, "auth:\n  mode: dev\n  rihgts: []\n");
      await rejected;
      expect(applied).toHaveLength(0);
      expect(lines.join("\n")).toMatch(/auth\.rihgts: unknown key/);
      // A reload on demand (SIGHUP) of a fixed file applies it.
      writeFileSync(file, rights("gate"));
      w.reload();
      expect(applied.at(-1)!.rights[0]!.cameras).toEqual(["gate"]);
    } finally {
      w.close();
    }
  });
});
