/**
 * RFC 4028 session timers: parsing Session-Expires / Min-SE and the refresh or expiry
 * schedule. Pure apart from the injected clock.
 */
import type { SipClock, TimerHandle } from "./clock.ts";
import { optionTags, type SipMessage } from "./message.ts";

export interface SessionExpires {
  /** Seconds. */
  readonly interval: number;
  readonly refresher: "uac" | "uas" | undefined;
}

/** Parse `Session-Expires: 1800;refresher=uac` (§4); undefined when absent or malformed. */
export function parseSessionExpires(m: SipMessage): SessionExpires | undefined {
  const v = m.headers.get("session-expires");
  if (!v) return undefined;
  const r = /^\s*(\d{1,10})\s*(?:;(.*))?$/.exec(v);
  if (!r) return undefined;
  const interval = Number(r[1]);
  const refMatch = /refresher\s*=\s*(uac|uas)/i.exec(r[2] ?? "");
  return { interval, refresher: refMatch ? (refMatch[1]!.toLowerCase() as "uac" | "uas") : undefined };
}

/** Min-SE in seconds, or the RFC default of 90 (§5). */
export function parseMinSe(m: SipMessage): number {
  const v = m.headers.get("min-se");
  const n = v ? Number(/^\s*(\d{1,10})/.exec(v)?.[1]) : NaN;
  return Number.isFinite(n) ? n : 90;
}

/** True when the message lists `timer` in Supported or Require. */
export function supportsTimer(m: SipMessage): boolean {
  return optionTags(m, "supported").includes("timer") || optionTags(m, "require").includes("timer");
}

/**
 * The UAS decision for an INVITE (§9): which interval and refresher to put in the 2xx, or a
 * 422 because the interval is below our minimum. undefined: no session timer.
 */
export function uasSessionTimer(
  req: SipMessage,
  minSe: number,
): { readonly status: 422; readonly minSe: number } | { readonly status: 200; readonly se: SessionExpires & { refresher: "uac" | "uas" }; readonly require: boolean } | undefined {
  const se = parseSessionExpires(req);
  if (!se) return undefined;
  if (se.interval < minSe) return { status: 422, minSe };
  const uacSupports = supportsTimer(req);
  // §9: if the UAC supports the timer we let it refresh unless it asked us to; otherwise we must.
  const refresher = se.refresher ?? (uacSupports ? "uac" : "uas");
  return { status: 200, se: { interval: se.interval, refresher: uacSupports ? refresher : "uas" }, require: uacSupports };
}

/** Schedules a refresh (when we are the refresher) or the expiry (when the peer is). */
export class SessionTimer {
  private handle: TimerHandle | undefined;
  private readonly clock: SipClock;
  private readonly onRefresh: () => void;
  private readonly onExpire: () => void;
  interval = 0;
  weRefresh = false;

  constructor(clock: SipClock, onRefresh: () => void, onExpire: () => void) {
    this.clock = clock;
    this.onRefresh = onRefresh;
    this.onExpire = onExpire;
  }

  get active(): boolean {
    return this.handle !== undefined;
  }

  /** (Re)start with `interval` seconds. */
  arm(interval: number, weRefresh: boolean): void {
    this.cancel();
    this.interval = interval;
    this.weRefresh = weRefresh;
    if (weRefresh) {
      // §7.4 / §10: the refresher sends a refresh at half the interval.
      this.handle = this.clock.setTimer((interval * 1000) / 2, () => {
        this.handle = undefined;
        this.onRefresh();
      });
    } else {
      // §10: without a refresh, BYE at interval − min(32, interval/3) seconds.
      const at = interval - Math.min(32, interval / 3);
      this.handle = this.clock.setTimer(at * 1000, () => {
        this.handle = undefined;
        this.onExpire();
      });
    }
  }

  cancel(): void {
    this.handle?.cancel();
    this.handle = undefined;
  }
}
