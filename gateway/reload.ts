/**
 * Apply configuration changes without a restart where that is safe: today the
 * rights mapping and signing keys (auth). Watches the file, debounces editors'
 * multiple writes, validates the whole file, and keeps the running configuration
 * when the new one is invalid (logged with the problems).
 */
import { watch, type FSWatcher } from "node:fs";
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Logger } from "../config/log.ts";
import type { Gateway } from "./gateway.ts";
import type { AuditSink } from "./audit/index.ts";

/** The part of a gateway a reload touches (and the audit trail, which records each reload). */
export type Reloadable = Pick<Gateway, "auth"> & { readonly audit?: Pick<AuditSink, "record"> | undefined };

export interface ReloadWatcher {
  /** Reload now (SIGHUP). */
  reload(): void;
  close(): void;
}

/** Watch `file` and reload what can change live. `debounceMs` (default 300) groups bursts of writes. */
export function watchConfig(file: string, gateway: Reloadable, log: Logger, debounceMs = 300): ReloadWatcher {
  let timer: NodeJS.Timeout | undefined;
  const reload = () => {
    timer = undefined;
    try {
      const next = loadConfig({ file });
      const { applied, needsRestart } = gateway.auth.reload(next.auth);
      log.info("configuration reloaded", { file, applied, needsRestart });
      gateway.audit?.record({ action: "config_reload", outcome: "success", detail: JSON.stringify({ file, applied, needsRestart }) });
      if (needsRestart.length) log.warn("some changes take effect only after a restart", { keys: needsRestart });
    } catch (err) {
      if (err instanceof ConfigError) log.error("new configuration rejected; keeping the running one", { problems: err.problems });
      else log.error("configuration reload failed", { err });
      const problems = err instanceof ConfigError ? err.problems : ["reload failed"];
      gateway.audit?.record({ action: "config_reload", outcome: "failure", detail: JSON.stringify({ file, problems }) });
    }
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(file, { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(reload, debounceMs);
    });
    watcher.on("error", (err) => log.warn("config watch failed", { err }));
  } catch (err) {
    log.warn("cannot watch configuration file; changes need a restart", { file, err });
  }
  return {
    reload,
    close() {
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
