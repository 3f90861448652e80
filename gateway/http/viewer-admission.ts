/**
 * Who may open another live viewer, and whose each viewer is.
 *
 * Every viewer holds a UDP port of the ICE range from its POST until it closes (a viewer
 * that never connects is closed by the SFU after `media.viewers.connectTimeoutMs`). Without
 * a bound per account, one signed-in user posting offers that never connect holds every
 * port and the next user's viewer gets an answer it can never use. So each user, and each
 * of their sign-in sessions, may hold a bounded number of viewers at once (connecting ones
 * included, counted from the moment the POST is admitted); beyond it the POST is refused
 * with 429 and Retry-After, and the rest of the range stays for everybody else.
 *
 * The owner of a viewer is the session that created it: only that session may PATCH or
 * DELETE its resource; anyone else gets the same 404 as for a resource that does not exist.
 */
import { RateLimitedError } from "../../config/errors.ts";
import type { ViewerHandle } from "../../sfu/sfu.ts";

/** Who asks: the user, and the sign-in session (or token) they ask with. */
export interface ViewerOwner {
  readonly user: string;
  readonly session: string;
}

export interface ViewerLimits {
  /** Live viewers one sign-in session may hold at once (a wall of 64 tiles is one session). */
  perSession: number;
  /** Live viewers one user may hold at once over all their sessions. */
  perUser: number;
  /** Retry-After of a refusal, seconds (by then the user's unconnected viewers are gone). */
  retryAfterSeconds: number;
}

/** Refusals since start, by the bound that refused. */
export interface AdmissionStats {
  refusedPerUser: number;
  refusedPerSession: number;
  /** Viewers held now, and by how many users. */
  viewers: number;
  users: number;
}

/** What holds a place: a viewer, or a multi-camera session (one media port either way). */
export interface AdmittedHolder {
  readonly id: string;
  readonly state: ViewerHandle["state"];
  once(event: "closed", fn: () => void): unknown;
}

/** A place taken by an admitted POST: bound to the viewer it created, or released if none came of it. */
export interface AdmissionTicket {
  /** The viewer now holds the place until it closes; it belongs to the ticket's owner. */
  bind(viewer: AdmittedHolder): void;
  /** Gives the place back (idempotent; after `bind`, the viewer's close does it). */
  release(): void;
}

export class ViewerAdmission {
  private readonly limits: ViewerLimits;
  private readonly perUser = new Map<string, number>();
  private readonly perSession = new Map<string, number>();
  private readonly owners = new Map<string, ViewerOwner>();
  private held = 0;
  private refusedPerUser = 0;
  private refusedPerSession = 0;

  constructor(limits: ViewerLimits) {
    this.limits = limits;
  }

  /** No limits (tests and embedding): ownership is still recorded. */
  static unlimited(): ViewerAdmission {
    return new ViewerAdmission({ perSession: Infinity, perUser: Infinity, retryAfterSeconds: 1 });
  }

  /**
   * Takes a place for `owner`, or throws RateLimitedError (HTTP 429, with Retry-After)
   * when the session or the user holds as many viewers as they may.
   */
  admit(owner: ViewerOwner): AdmissionTicket {
    const session = sessionKey(owner);
    if ((this.perSession.get(session) ?? 0) >= this.limits.perSession) {
      this.refusedPerSession++;
      throw new RateLimitedError(`at most ${this.limits.perSession} live viewers per session`, { retryAfterSeconds: this.limits.retryAfterSeconds });
    }
    if ((this.perUser.get(owner.user) ?? 0) >= this.limits.perUser) {
      this.refusedPerUser++;
      throw new RateLimitedError(`at most ${this.limits.perUser} live viewers per user`, { retryAfterSeconds: this.limits.retryAfterSeconds });
    }
    bump(this.perSession, session, 1);
    bump(this.perUser, owner.user, 1);
    this.held++;
    let released = false;
    let bound: string | undefined;
    const release = () => {
      if (released) return;
      released = true;
      bump(this.perSession, session, -1);
      bump(this.perUser, owner.user, -1);
      this.held--;
      if (bound !== undefined) this.owners.delete(bound);
    };
    return {
      bind: (viewer) => {
        if (released || bound !== undefined) return;
        if (viewer.state === "closed") return release();
        bound = viewer.id;
        this.owners.set(viewer.id, owner);
        viewer.once("closed", release);
      },
      release,
    };
  }

  /** True when `owner` (the same session of the same user) created the viewer. */
  owns(viewerId: string, owner: ViewerOwner): boolean {
    const o = this.owners.get(viewerId);
    return o !== undefined && o.user === owner.user && o.session === owner.session;
  }

  stats(): AdmissionStats {
    return { refusedPerUser: this.refusedPerUser, refusedPerSession: this.refusedPerSession, viewers: this.held, users: this.perUser.size };
  }
}

function sessionKey(o: ViewerOwner): string {
  return `${o.user.length}:${o.user}:${o.session}`;
}

function bump(m: Map<string, number>, key: string, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n <= 0) m.delete(key);
  else m.set(key, n);
}
