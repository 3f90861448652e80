/**
 * The supervisor's recent events: a ring of the last `capacity` (100 by default, as a
 * watchdog's local event buffer), newest last, each numbered so a reader can ask for
 * what came after the last one it saw.
 */

/** What happened to a component. */
export type SupervisionEventType =
  /** It failed (a camera's session was lost, a media worker died, a health check failed). */
  | "failed"
  /** It is restarted after a backoff. */
  | "restarting"
  /** It works again (a health check passes, a replacement started). */
  | "recovered"
  /** Too many failures in the window: put in its error-tolerant state. */
  | "disabled"
  /** Enabled again, by an administrator or because the window passed. */
  | "enabled";

export interface SupervisionEvent {
  /** 1, 2, 3… since the gateway started. */
  seq: number;
  /** Epoch ms. */
  time: number;
  /** The component, e.g. `camera:lobby`, `media-worker:1`, `turn`. */
  component: string;
  kind: ComponentKind;
  type: SupervisionEventType;
  /** In plain words. */
  reason: string;
  /** Who enabled it (an administrator's subject), for `enabled` events they caused. */
  by?: string;
}

export type ComponentKind = "camera" | "media-worker" | "turn" | "sip" | "audit" | "identity-provider";

export class EventLog {
  private readonly capacity: number;
  private readonly ring: SupervisionEvent[] = [];
  private seq = 0;

  constructor(capacity = 100) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  add(e: Omit<SupervisionEvent, "seq">): SupervisionEvent {
    const full: SupervisionEvent = Object.freeze({ ...e, seq: ++this.seq });
    this.ring.push(full);
    if (this.ring.length > this.capacity) this.ring.shift();
    return full;
  }

  /** The kept events, oldest first; with `after`, only those numbered above it. */
  list(after = 0): SupervisionEvent[] {
    return this.ring.filter((e) => e.seq > after);
  }

  /** Events recorded since start (also those no longer kept). */
  get total(): number {
    return this.seq;
  }
}
