/**
 * The ladder controller: moves a viewer between its streams (main → sub → keyframes only of
 * the smallest) from the estimate of sfu/adapt.ts, stepping down at once on overuse and up
 * only after a probe showed the link carries the higher level, with hysteresis. Pure: time
 * is passed in.
 */
import type { BandwidthEstimator } from "./adapt.ts";

export interface LadderOptions {
  /** Levels: 0 = the largest stream … n−1 = the smallest stream, n = keyframes only of it. */
  levels: number;
  /** Least wait before trying a higher level after a step down that followed a step up (a failed try), ms. Default 15000. */
  holdMinMs?: number;
  /** Longest such wait, ms. Default 120000. */
  holdMaxMs?: number;
  /** A step down within this long of a step up counts as a failed try (the next hold doubles), ms. Default 20000. */
  failWindowMs?: number;
  /** Least time between two steps down (the last one needs time to show), ms. Default 2500. */
  downSpacingMs?: number;
  /** Headroom the link must show over a level's rate (the probe's rate) to step up to it. Default 1.15. */
  upMargin?: number;
  /**
   * After a step down, the next one waits until the queue has drained once (what still
   * queues was sent at the level above), or this long at most, ms. Default 8000.
   */
  drainMaxMs?: number;
  /** How long a probe sends at the higher level's rate, ms. Default 500. */
  probeMs?: number;
  /**
   * The same when transport-wide feedback judges the link, ms. Default 200: every packet's
   * arrival is reported, so a short train shows what the link carries, and a link that
   * cannot carry it gets a fifth of the queue.
   */
  probeMsTransportWide?: number;
  /** A queueing delay above this in a report during a probe fails it, ms. Default 150. */
  probeQueueMs?: number;
  /** First wait after a quiet link before a probe, and after a probe that went through, ms. Default 2000. */
  probeGapMinMs?: number;
  /** Longest wait between probes (it doubles after each failed one), ms. Default 8000. */
  probeGapMaxMs?: number;
}

/** A probe: extra traffic (copies of packets sent anyway) up to the higher level's rate, see `LadderController`. */
interface Probe {
  startAt: number;
  /** `sentExt` when it started, and whether transport-wide feedback judged it (see `decide`). */
  startExt: number;
  transportWide: boolean;
  /** How long its extra traffic runs, ms. */
  durMs: number;
  /** Extra rate while it runs, bits/s. */
  extraBps: number;
  /** Our extended number of the newest packet sent when the extra traffic stopped (−1 while it runs). */
  endExt: number;
}

/**
 * A probe judged from transport-wide feedback passes only if the link delivered at least this
 * share of the higher level's rate while it ran (it sends that rate × `upMargin`: on a link
 * that keeps up it delivers that, and a link slower than the level delivers its own rate).
 */
const PROBE_DELIVERED_SHARE = 0.85;
/**
 * A probe that fell short of that because it sent less (a sender held up under load) while
 * the link delivered at least this share of what it sent says nothing of the link: the next
 * comes as soon as after one that passed.
 */
const PROBE_KEPT_PACE = 0.9;
/** How long after its extra traffic stops a probe waits for a report of what followed it, ms. */
const PROBE_ACK_WAIT_MS = 2500;
/**
 * Reports of packets sent during a probe or after it that a probe needs before it passes:
 * its copies recover losses, so the receiver sends few (no NACKs), and a single one may
 * come after its queue drained.
 */
const PROBE_MIN_REPORTS = 2;

/**
 * Chooses a viewer's level from the estimate and the rates of the levels (bits/s; undefined
 * when unknown: a stream nobody pulls yet). Steps down at once on overuse when the current
 * level does not fit, to the highest that does; steps up one level at a time, and only
 * after a probe showed the link carries the higher level.
 *
 * Why probe: a link carrying the substream says nothing about how much more it could carry,
 * and an estimate that grows while little is sent is a guess. Stepping up on that guess is a
 * trial with the larger stream itself, and a failed one fills the slow link with seconds of
 * it (a freeze). A probe sends, for `probeMs`, copies of the newest full packet the viewer was
 * sent, paced evenly (a receiver drops duplicates; WebRTC's own padding does the same job), so
 * that the viewer gets the higher level's rate × `upMargin`. If no report during it or up to
 * the packet sent right after it shows a queue over `probeQueueMs` (and, judged from
 * transport-wide feedback, the link delivered at least PROBE_DELIVERED_SHARE of the higher
 * level's rate while it ran), the link carries it: step up. If one does,
 * the probe stops at once (its queue is half a second of copies at most, a delay and not a
 * freeze) and the next waits twice as long, up to `probeGapMaxMs`. A stall (no report at
 * all, see `BandwidthEstimator`) fails a probe the same way: tried again later, nothing lost.
 * Pure: time is passed in.
 */
export class LadderController {
  private readonly o: Required<LadderOptions>;
  private holdMs: number;
  private upAllowedAt = 0;
  private lastDownAt = -Infinity;
  private lastUpAt = -Infinity;
  private probe: Probe | undefined;
  private probeGapMs: number;
  private nextProbeAt = 0;
  /** Steps taken, probes made and failed (for stats). */
  downs = 0;
  ups = 0;
  probes = 0;
  probesFailed = 0;
  /**
   * The last probe judged from transport-wide feedback: what the link delivered while it ran,
   * what was sent over the same span, and the higher level's rate, bits/s (0: not measured).
   */
  lastProbe = { deliveredBps: 0, sentBps: 0, targetBps: 0 };

  constructor(o: LadderOptions) {
    this.o = {
      levels: o.levels,
      holdMinMs: o.holdMinMs ?? 15_000,
      holdMaxMs: o.holdMaxMs ?? 120_000,
      failWindowMs: o.failWindowMs ?? 20_000,
      downSpacingMs: o.downSpacingMs ?? 2500,
      upMargin: o.upMargin ?? 1.15,
      drainMaxMs: o.drainMaxMs ?? 8000,
      probeMs: o.probeMs ?? 500,
      probeMsTransportWide: o.probeMsTransportWide ?? 200,
      probeQueueMs: o.probeQueueMs ?? 150,
      probeGapMinMs: o.probeGapMinMs ?? 2000,
      probeGapMaxMs: o.probeGapMaxMs ?? 8000,
    };
    this.holdMs = this.o.holdMinMs;
    this.probeGapMs = this.o.probeGapMinMs;
  }

  /** Highest level index (keyframes only). */
  get lowest(): number {
    return this.o.levels;
  }

  /** Extra traffic a running probe wants now, bits/s (0: none, or it already made a queue: it stops at once). */
  probeBps(now: number, est: BandwidthEstimator): number {
    const p = this.probe;
    return p && p.endExt < 0 && now - p.startAt < p.durMs && est.peakQueueMs <= this.o.probeQueueMs ? p.extraBps : 0;
  }

  /** The level to be at now, given the current one. */
  decide(now: number, level: number, est: BandwidthEstimator, rates: readonly (number | undefined)[]): number {
    const e = est.estimateBps;
    const overusing = now - est.overuseAt < 1500;
    const drained = est.quietAt > this.lastDownAt || now - this.lastDownAt >= this.o.drainMaxMs;
    if (e !== undefined && overusing && level < this.lowest && now - this.lastDownAt >= this.o.downSpacingMs && drained) {
      const rate = rates[level];
      if (rate === undefined || rate > e) {
        let next = level + 1;
        while (next < this.lowest && (rates[next] ?? 0) > e) next++;
        // A failed try at the level above: wait longer before the next one.
        const failed = now - this.lastUpAt < this.o.failWindowMs;
        this.holdMs = failed ? Math.min(this.o.holdMaxMs, this.holdMs * 2) : this.o.holdMinMs;
        this.upAllowedAt = failed ? now + this.holdMs : now;
        this.endProbe(now, false);
        this.nextProbeAt = Math.max(this.nextProbeAt, now + this.o.probeGapMinMs);
        this.lastDownAt = now;
        this.downs++;
        return next;
      }
    }
    if (level === 0) {
      this.probe = undefined;
      return level;
    }
    const target = rates[level - 1];
    const quiet = now - est.overuseAt >= 3000 && est.verdict !== "overuse";
    if (target === undefined || !quiet || now < this.upAllowedAt) {
      this.endProbe(now, this.probe !== undefined);
      return level;
    }
    const p = this.probe;
    if (!p) {
      if (now < this.nextProbeAt) return level;
      // The extra on top of what this level sends (keyframes only: on top of next to nothing).
      const extraBps = Math.max(0, target * this.o.upMargin - (level < this.lowest ? (rates[level] ?? 0) : 0));
      const tw = est.transportWide;
      this.probe = { startAt: now, startExt: est.sentExt, transportWide: tw, durMs: tw ? this.o.probeMsTransportWide : this.o.probeMs, extraBps, endExt: -1 };
      this.probes++;
      est.resetPeak();
      return level;
    }
    if (est.peakQueueMs > this.o.probeQueueMs) {
      this.endProbe(now, true);
      return level;
    }
    if (p.endExt < 0) {
      if (now - p.startAt >= p.durMs) p.endExt = est.sentExt;
      return level;
    }
    if (est.ackedExt > p.endExt && est.peakReports >= PROBE_MIN_REPORTS) {
      // Everything the probe sent arrived ahead of a packet sent after it, without a queue.
      // With every packet's arrival known, also: what arrived while it ran, at close to the
      // higher level's rate (a link slower than the probe spreads it out before any queue
      // shows; what was only sent says nothing of the link).
      if (p.transportWide) {
        const r = est.deliveredBpsOver(p.startExt, p.endExt, p.startAt, p.startAt + p.durMs);
        this.lastProbe = { deliveredBps: r?.deliveredBps ?? 0, sentBps: r?.sentBps ?? 0, targetBps: target };
        if (!(r && r.deliveredBps >= PROBE_DELIVERED_SHARE * target)) {
          const unsent = r !== undefined && r.sentBps < PROBE_DELIVERED_SHARE * target && r.deliveredBps >= PROBE_KEPT_PACE * r.sentBps;
          this.endProbe(now, true, unsent);
          return level;
        }
      }
      this.probe = undefined;
      this.probeGapMs = this.o.probeGapMinMs;
      this.nextProbeAt = now + this.o.probeGapMinMs;
      est.raiseTo(target * this.o.upMargin);
      this.lastUpAt = now;
      // The next step up needs the result of this one first.
      this.upAllowedAt = now + this.o.downSpacingMs * 2;
      this.ups++;
      return level - 1;
    }
    if (now - p.startAt > p.durMs + PROBE_ACK_WAIT_MS) this.endProbe(now, true);
    return level;
  }

  /** Stops a running probe; a failed one doubles the wait before the next, unless it said nothing of the link (`unsent`: see PROBE_KEPT_PACE). */
  private endProbe(now: number, failed: boolean, unsent = false): void {
    if (!this.probe) return;
    this.probe = undefined;
    if (failed) this.probesFailed++;
    if (failed && !unsent) this.probeGapMs = Math.min(this.o.probeGapMaxMs, this.probeGapMs * 2);
    this.nextProbeAt = now + (unsent ? this.o.probeGapMinMs : this.probeGapMs);
  }
}
