/**
 * Sessions that survive a restart (`auth.session.file`): a video wall left signed in keeps
 * playing after the gateway is upgraded or restarted, instead of every screen going back to
 * the sign-in page.
 *
 * One JSON file holds what a restart would otherwise lose: the sessions (with the provider's
 * refresh and ID tokens), the secret behind CSRF tokens, and the session-signing key when it
 * was generated rather than configured. It is a credential store: written with mode 0600,
 * atomically (temporary file, then rename), at most once a second after a change, at once
 * when a session is ended on purpose (a revoked session must not come back after a crash),
 * and at shutdown. A file that cannot be read or parsed is reported and ignored (everyone signs in
 * again); it never stops the gateway from starting.
 */
import { chmodSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import type { Logger } from "../../config/log.ts";
import type { PersistedSession } from "./sessions.ts";

const VERSION = 1;

export interface SessionFileState {
  /** Base64url secret of the CSRF tokens. */
  csrfSecret: string | undefined;
  /** PKCS#8 PEM of the generated signing key (absent when keys are configured). */
  generatedKey: string | undefined;
  sessions: PersistedSession[];
}

/** Reads the file; undefined when it does not exist or cannot be used (logged). */
export function readSessionFile(path: string, log: Logger): SessionFileState | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn("cannot read the session file; everyone signs in again", { path, err });
    return undefined;
  }
  try {
    if ((statSync(path).mode & 0o077) !== 0) log.warn("the session file is readable by others; it holds credentials (mode set to 0600 on the next write)", { path });
    const j = JSON.parse(text) as Partial<SessionFileState> & { version?: unknown };
    if (j.version !== VERSION || !Array.isArray(j.sessions)) throw new Error(`unknown format (version ${String(j.version)})`);
    return {
      csrfSecret: typeof j.csrfSecret === "string" ? j.csrfSecret : undefined,
      generatedKey: typeof j.generatedKey === "string" ? j.generatedKey : undefined,
      sessions: j.sessions.filter(isPersistedSession),
    };
  } catch (err) {
    log.warn("the session file is not usable; everyone signs in again", { path, err });
    return undefined;
  }
}

function isPersistedSession(v: unknown): v is PersistedSession {
  const s = v as Record<string, unknown>;
  return (
    typeof s === "object" &&
    s !== null &&
    typeof s.id === "string" &&
    typeof s.sub === "string" &&
    Array.isArray(s.roles) &&
    s.roles.every((r) => typeof r === "string") &&
    typeof s.createdAt === "number" &&
    typeof s.expiresAt === "number" &&
    typeof s.absoluteExpiresAt === "number"
  );
}

/** Writes the state when asked, at most once per `minIntervalMs`, and at once on `flush`. */
export class SessionFileWriter {
  private readonly path: string;
  private readonly state: () => SessionFileState;
  private readonly log: Logger;
  private readonly minIntervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(o: { path: string; state: () => SessionFileState; log: Logger; minIntervalMs?: number }) {
    this.path = o.path;
    this.state = o.state;
    this.log = o.log;
    this.minIntervalMs = o.minIntervalMs ?? 1000;
  }

  /** Something changed: write soon. */
  changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.minIntervalMs);
    this.timer.unref();
  }

  /** Writes now (shutdown). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify({ version: VERSION, ...this.state() }), { mode: 0o600 });
      chmodSync(tmp, 0o600); // an existing temporary file keeps its mode otherwise
      renameSync(tmp, this.path);
      if (this.failing) this.log.info("session file written again", { path: this.path });
      this.failing = false;
    } catch (err) {
      // Sessions keep working in memory; only a restart would lose them. Said once per failure streak.
      if (!this.failing) this.log.warn("cannot write the session file; sessions will not survive a restart", { path: this.path, err });
      this.failing = true;
    }
  }
}
