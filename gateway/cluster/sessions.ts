/**
 * Sign-in sessions shared by every node: a session created on one node is valid on all, and a
 * session ended on purpose (sign-out, an administrator's revocation, the provider's back-channel
 * logout) ends on every node at once, with its streams and TURN allocations.
 *
 * In Redis (names under the cluster's prefix; a session is named by its non-secret ref, a hash of
 * its id, never by the id itself):
 *   session:<ref>   the session (JSON), lapsing at its absolute expiry
 *   user:<sub>      refs of a subject's sessions (back-channel logout ends those nobody holds)
 *   revoked:<ref>   a session ended on purpose, kept until it could have expired anyway: a node
 *                   back from an outage ends what it still holds of these, and no node writes the
 *                   session back
 *   secrets         the session-signing key and CSRF secret, made by the first node
 * and the channel `sessions`, on which each deliberate end is announced.
 *
 * While Redis is unreachable, what must reach the cluster (a sign-out, a new session) waits in a
 * bounded queue and is sent when Redis returns; the node then ends what was revoked meanwhile and
 * shares again every session it holds (a restarted Redis may have lost them). A write that fails
 * although Redis answers again (a command timed out on a loaded machine, Redis still loading) is
 * tried again shortly, with the rest of the catch-up, never left waiting for an outage that is over.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { SessionId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import { sessionRef, type Auth, type EndReason, type PersistedSession, type SessionMirror } from "../auth/index.ts";
import { coordinationCatchingUp, type RedisLink } from "./redis.ts";

/** Ends that someone asked for: they go cluster-wide. Lapses and evictions stay local. */
const DELIBERATE: ReadonlySet<EndReason> = new Set(["logout", "revoked", "revoked_at_provider", "logged_out_at_provider"]);
/** Operations kept while Redis is unreachable; beyond, the oldest are dropped (logged). */
const MAX_PENDING = 10_000;
/** Revoked refs remembered in this process (TURN credentials of sessions this node never held). */
const MAX_REVOKED_REFS = 100_000;
/** First and longest wait before a failed catch-up is tried again while Redis is reachable, ms. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

type Message =
  | { t: "end"; node: string; ref: string; reason: EndReason }
  | { t: "all"; node: string; sub: string | undefined; sid: string | undefined; reason: EndReason };

export type ClusterSessionEvents = {
  /** A session ended on another node: its TURN allocations here close too. */
  revoked: [{ ref: string; reason: EndReason }];
};

export interface SharedSessionsOptions {
  link: RedisLink;
  nodeId: string;
  clusterName: string;
  /** Absolute session lifetime, ms (how long a revocation is remembered). */
  maxAgeMs: number;
  log: Logger;
  /** A session ended on another node (after it was ended here, if held). */
  onRevoked: (ref: string, reason: EndReason) => void;
  /**
   * For this long after Redis returns, a session it does not have is "not known yet" (503, try
   * again) rather than ended: a Redis restarted without its data gets the sessions back only as
   * each node shares what it holds again. Default 0.
   */
  resyncGraceMs?: number;
}

export class SharedSessions implements SessionMirror {
  readonly secrets: { signingKeyPem: string; csrfSecret: Buffer };
  readonly tokenIssuer: string;
  private readonly o: SharedSessionsOptions;
  private auth: Auth | undefined;
  /** Set while a remote end is applied here, so it is not announced again. */
  private applyingRemote = false;
  private readonly pending: Array<() => Promise<unknown>> = [];
  private readonly revokedRefs = new Set<string>();
  private dropped = 0;
  /** The catch-up running now (one at a time: two would send the same queued write twice). */
  private flushing: Promise<void> | undefined;
  /**
   * Redis came back `resync` times (each time, the held sessions must be checked against
   * revocations and shared again); they were last shared after the `synced`-th. A generation,
   * not a flag: an `up` during a running catch-up (whose writes may have gone to the Redis that
   * went away) asks for another one.
   */
  private resync = 0;
  private synced = 0;
  /** When Redis last came back (Date.now), for `resyncGraceMs`. */
  private upAt = -Infinity;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = 0;
  private closed = false;

  private constructor(o: SharedSessionsOptions, secrets: { signingKeyPem: string; csrfSecret: Buffer }) {
    this.o = o;
    this.secrets = secrets;
    this.tokenIssuer = `urn:gatehouse:cluster:${o.clusterName}`;
  }

  /** Reads (or, first node, makes) the shared secrets and subscribes to the cluster's session channel. */
  static async start(o: SharedSessionsOptions): Promise<SharedSessions> {
    const { link } = o;
    const key = link.key("secrets");
    const secrets = await link.run("read the cluster's secrets", async (c) => {
      const pem = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      // The first node's values win; every later node reads them.
      await c.hSetNX(key, "signingKeyPem", pem);
      await c.hSetNX(key, "csrfSecret", randomBytes(32).toString("base64url"));
      return c.hGetAll(key);
    });
    const s = new SharedSessions(o, { signingKeyPem: String(secrets.signingKeyPem), csrfSecret: Buffer.from(String(secrets.csrfSecret), "base64url") });
    await link.subscribe("sessions", (m) => s.onMessage(m));
    link.events.on("up", () => {
      s.upAt = Date.now();
      s.resync++;
      s.kick();
    });
    return s;
  }

  /** The gateway's sign-in, once created (remote ends are applied to it). */
  attach(auth: Auth): void {
    this.auth = auth;
  }

  /** Whether a session with this ref was ended on purpose somewhere in the cluster (TURN refuses its credentials). */
  isRevoked(ref: string): boolean {
    return this.revokedRefs.has(ref);
  }

  async load(id: SessionId): Promise<PersistedSession | undefined> {
    const ref = sessionRef(id);
    const { link } = this.o;
    const [value, revoked] = await link.run("read the session", (c) => Promise.all([c.get(link.key(`session:${ref}`)), c.exists(link.key(`revoked:${ref}`))]));
    if (revoked) return undefined;
    if (typeof value !== "string") {
      // Just after Redis returned, the node holding it may not have shared it again yet: never
      // end a session (and clear its cookie) for that, say "try again" instead.
      if (Date.now() - this.upAt < (this.o.resyncGraceMs ?? 0)) throw coordinationCatchingUp();
      return undefined;
    }
    try {
      return JSON.parse(value) as PersistedSession;
    } catch {
      return undefined;
    }
  }

  /** Stops retrying (the link is closing). Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  saved(session: PersistedSession): void {
    this.send(() => this.share(session));
  }

  private share(session: PersistedSession): Promise<unknown> {
    const ref = sessionRef(session.id as SessionId);
    const { link } = this.o;
    return link.run("share the session", (c) =>
        // Never write back a session the cluster has revoked (a refresh racing a sign-out elsewhere).
        c.eval(
          `if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
           redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
           redis.call('SADD', KEYS[2], ARGV[3])
           redis.call('PEXPIREAT', KEYS[2], ARGV[2])
           return 1`,
          {
            keys: [link.key(`session:${ref}`), link.key(`user:${session.sub}`), link.key(`revoked:${ref}`)],
            arguments: [JSON.stringify(session), String(session.absoluteExpiresAt), ref],
          },
        ),
    );
  }

  /** A session ended here (the auth observer's `sessionEnded`): deliberate ends go cluster-wide. */
  ended(e: { ref: string; sub: string; reason: EndReason }): void {
    if (this.applyingRemote || !DELIBERATE.has(e.reason)) return;
    this.remember(e.ref);
    const { link } = this.o;
    const msg: Message = { t: "end", node: this.o.nodeId, ref: e.ref, reason: e.reason };
    this.send(async () => {
      await link.run("revoke the session", async (c) => {
        await c.set(link.key(`revoked:${e.ref}`), e.reason, { expiration: { type: "PX", value: this.o.maxAgeMs } });
        await c.del(link.key(`session:${e.ref}`));
        await c.sRem(link.key(`user:${e.sub}`), e.ref);
      });
      await link.publish("sessions", JSON.stringify(msg));
    });
  }

  endedAll(sub: string | undefined, sid: string | undefined, reason: EndReason): void {
    const { link } = this.o;
    const msg: Message = { t: "all", node: this.o.nodeId, sub, sid, reason };
    this.send(async () => {
      // Sessions nobody holds now: revoked in Redis, so no node takes them in later.
      if (sub !== undefined) {
        const refs = await link.run("list the user's sessions", (c) => c.sMembers(link.key(`user:${sub}`)));
        for (const ref of refs) {
          const v = await link.run("read the session", (c) => c.get(link.key(`session:${ref}`)));
          let p: PersistedSession | undefined;
          try {
            p = typeof v === "string" ? (JSON.parse(v) as PersistedSession) : undefined;
          } catch {
            p = undefined;
          }
          if (p && sid !== undefined && p.providerSid !== sid) continue;
          this.remember(ref);
          await link.run("revoke the session", async (c) => {
            await c.set(link.key(`revoked:${ref}`), reason, { expiration: { type: "PX", value: this.o.maxAgeMs } });
            await c.del(link.key(`session:${ref}`));
            await c.sRem(link.key(`user:${sub}`), ref);
          });
        }
      }
      await link.publish("sessions", JSON.stringify(msg));
    });
  }

  private onMessage(raw: string): void {
    let m: Message;
    try {
      m = JSON.parse(raw) as Message;
    } catch {
      return void this.o.log.warn("cluster: unreadable session message ignored");
    }
    if (m.node === this.o.nodeId) return;
    if (m.t === "end" && typeof m.ref === "string") {
      this.remember(m.ref);
      this.applyRemote(() => this.auth?.endFromCluster(m.ref, m.reason));
      this.o.onRevoked(m.ref, m.reason);
    } else if (m.t === "all") {
      this.applyRemote(() => this.auth?.endFromProviderCluster(m.sub, m.sid, m.reason));
    }
  }

  private applyRemote<T>(fn: () => T): T {
    this.applyingRemote = true;
    try {
      return fn();
    } finally {
      this.applyingRemote = false;
    }
  }

  private remember(ref: string): void {
    this.revokedRefs.add(ref);
    if (this.revokedRefs.size > MAX_REVOKED_REFS) this.revokedRefs.delete(this.revokedRefs.values().next().value!);
  }

  /** Runs now, or (Redis unreachable, or the write failed) at the next catch-up. */
  private send(op: () => Promise<unknown>): void {
    if (this.pending.length > 0 || this.flushing || !this.o.link.available) {
      this.queue(op);
      return this.retryLater();
    }
    op().catch(() => {
      this.queue(op);
      this.retryLater();
    });
  }

  /** Runs the catch-up unless one runs already; when it fails, it is tried again (shortly, or at the next `up`). */
  private kick(): void {
    if (this.closed || this.flushing) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.flushing = this.catchUp().then(
      (done) => this.caughtUp(done),
      (err: unknown) => {
        this.o.log.warn("cluster: session catch-up failed", { err });
        this.caughtUp(false);
      },
    );
  }

  private caughtUp(done: boolean): void {
    this.flushing = undefined;
    if (!done) return this.retryLater();
    this.retryMs = 0;
    // Written to the queue while this catch-up ran (a write that failed meanwhile, a new session).
    if (this.pending.length > 0 || this.synced !== this.resync) this.kick();
  }

  /**
   * A failed catch-up is tried again after a short wait growing to 2 s, whether Redis answers now
   * or not (against an unreachable Redis it fails at once: there is no offline queue). Waiting
   * for the next `up` instead could wait for ever: an `up` that came while a catch-up ran, and
   * the link dropping again as it failed, leave none to come.
   */
  private retryLater(): void {
    if (this.closed || this.flushing || this.retryTimer) return;
    this.retryMs = Math.min(Math.max(this.retryMs * 2, RETRY_MIN_MS), RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, this.retryMs);
    this.retryTimer.unref();
  }

  private queue(op: () => Promise<unknown>): void {
    this.pending.push(op);
    if (this.pending.length > MAX_PENDING) {
      this.pending.shift();
      if (this.dropped++ % 1000 === 0) this.o.log.warn("cluster: session updates waiting for Redis dropped (queue full)", { dropped: this.dropped });
    }
  }

  /**
   * Sends what waited, then (Redis came back) ends what the cluster revoked meanwhile and shares
   * the held sessions again. False when a write failed: the caller tries again.
   */
  private async catchUp(): Promise<boolean> {
    while (this.pending.length > 0) {
      const op = this.pending[0]!;
      try {
        await op();
      } catch {
        return false;
      }
      this.pending.shift();
    }
    const auth = this.auth;
    const generation = this.resync;
    if (this.synced === generation) return true;
    if (!auth) {
      this.synced = generation; // nothing held yet
      return true;
    }
    const { link } = this.o;
    const refs = auth.heldSessions().map((p) => sessionRef(p.id as SessionId));
    try {
      // A Redis restarted without persistence lost everything: the secrets and sessions come back from the nodes.
      const key = link.key("secrets");
      await link.run("restore the cluster's secrets", async (c) => {
        await c.hSetNX(key, "signingKeyPem", this.secrets.signingKeyPem);
        await c.hSetNX(key, "csrfSecret", this.secrets.csrfSecret.toString("base64url"));
      });
      if (refs.length > 0) {
        const revoked = await link.run("check revocations", (c) => Promise.all(refs.map((r) => c.get(link.key(`revoked:${r}`)))));
        let n = 0;
        refs.forEach((ref, i) => {
          const reason = revoked[i];
          if (typeof reason !== "string") return;
          this.remember(ref);
          if (this.applyRemote(() => auth.endFromCluster(ref, DELIBERATE.has(reason as EndReason) ? (reason as EndReason) : "revoked"))) n++;
          this.o.onRevoked(ref, "revoked");
        });
        if (n > 0) this.o.log.info("cluster: sessions revoked while Redis was unreachable ended here", { sessions: n });
      }
      // The others are shared again (the Lua guard keeps revoked ones out), each awaited: a failure retries the whole catch-up.
      for (const p of auth.heldSessions()) await this.share(p);
    } catch {
      return false;
    }
    this.synced = generation;
    return true;
  }
}
