/**
 * Adapting a viewer to its network: a bandwidth estimator fed by what the browser reports
 * in RTCP receiver reports (RFC 3550 §6.4.1: extended highest sequence number received,
 * cumulative and fraction lost, and the round trip from LSR/DLSR) and REMB when a browser
 * sends it, and a ladder controller that moves the viewer between its streams (main → sub
 * → keyframes only) with hysteresis.
 *
 * The estimator is loss- and delay-based, in the spirit of Google Congestion Control
 * (draft-ietf-rmcat-gcc-02 §5–6), reduced to what receiver reports carry:
 * - the link is overused when fewer packets reached the receiver's front than we sent in
 *   the same interval (a queue is growing on the path), when more than 10 % are lost, or
 *   when the round trip has grown far above its recent minimum (a standing queue);
 * - on overuse the estimate drops to 85 % of what was delivered (GCC's A = 0.85·R), by at
 *   most half per report;
 * - with a quiet link (no growth, loss ≤ 10 %, queueing delay small) it grows by 8 % a
 *   second from at least what is delivered (also while little is sent: keyframes only);
 *   in between it holds.
 *
 * Without padding probes nothing tells how much more a link carries than what it is being
 * sent: the controller steps up when the estimate has grown past the next stream's rate and
 * a hold time has passed, and that hold doubles (to two minutes) each time a step up is
 * followed by a step down soon after, so a link that cannot carry the larger stream is
 * tried less and less often. Pure: time is passed in.
 */

/** One receiver report on a video track, as differences since the previous one. */
export interface LinkReport {
  /** When it arrived, ms. */
  now: number;
  /** Packets we sent since the previous report. */
  sent: number;
  /** Advance of the extended highest sequence number received (packets that reached the receiver's front, lost ones included). */
  arrived: number;
  /** Advance of the cumulative number lost (negative after duplicates or late recovery). */
  lost: number;
  /** Mean RTP packet size sent, bytes. */
  bytesPerPacket: number;
  /** Fraction lost in the report, 0–1. */
  fractionLost: number;
  /** Round trip from this report, ms (undefined when it echoed no sender report of ours). */
  rttMs: number | undefined;
}

export type LinkVerdict = "overuse" | "hold" | "increase";

export interface EstimatorOptions {
  /** Lowest estimate, bits/s. Default 50 kbit/s. */
  minBps?: number;
  /** Highest estimate, bits/s. Default 50 Mbit/s. */
  maxBps?: number;
  /** Queueing delay (round trip above its recent minimum) beyond which the link counts as overused, ms. Default 600. */
  overuseDelayMs?: number;
  /** Queueing delay beyond which the estimate does not grow, ms. Default 150. */
  holdDelayMs?: number;
}

/** Minimum packets sent in an interval for its delivery ratio to mean anything. */
const MIN_SENT = 8;
/** Round-trip minimum remembered for this long, ms. */
const MIN_RTT_WINDOW_MS = 30_000;

export class BandwidthEstimator {
  private est: number | undefined;
  private lastAt: number | undefined;
  private readonly rtts: { at: number; ms: number }[] = [];
  private readonly o: Required<EstimatorOptions>;
  /** The last report's verdict and when. */
  verdict: LinkVerdict = "hold";
  verdictAt = 0;
  /** When the last overuse was seen, ms (−∞ before). */
  overuseAt = -Infinity;
  /** Delivered rate over the last interval, bits/s. */
  deliveredBps = 0;
  /** Queueing delay of the last report, ms. */
  queueDelayMs = 0;

  constructor(o: EstimatorOptions = {}) {
    this.o = { minBps: o.minBps ?? 50_000, maxBps: o.maxBps ?? 50_000_000, overuseDelayMs: o.overuseDelayMs ?? 600, holdDelayMs: o.holdDelayMs ?? 150 };
  }

  /** The estimate, bits/s; undefined until the link first told us something about its capacity. */
  get estimateBps(): number | undefined {
    return this.est;
  }

  /** A receiver's REMB (its own estimate): a ceiling for ours. */
  onRemb(bps: number): void {
    if (!(bps > 0)) return;
    if (this.est !== undefined && bps < this.est) this.est = Math.max(this.o.minBps, bps);
  }

  /** Feeds one receiver report; returns its verdict. */
  onReport(r: LinkReport): LinkVerdict {
    const prev = this.lastAt;
    this.lastAt = r.now;
    if (r.rttMs !== undefined && r.rttMs >= 0) {
      this.rtts.push({ at: r.now, ms: r.rttMs });
      while (this.rtts.length > 0 && r.now - this.rtts[0]!.at > MIN_RTT_WINDOW_MS) this.rtts.shift();
    }
    if (prev === undefined || r.now <= prev) return this.verdict;
    const dt = r.now - prev;
    const received = Math.max(0, r.arrived - Math.max(0, r.lost));
    this.deliveredBps = (received * r.bytesPerPacket * 8 * 1000) / dt;
    let minRtt = Infinity;
    for (const s of this.rtts) if (s.ms < minRtt) minRtt = s.ms;
    this.queueDelayMs = r.rttMs !== undefined && Number.isFinite(minRtt) ? Math.max(0, r.rttMs - minRtt) : 0;
    // Few packets (keyframes only) make both ratios noisy: one late or lost packet of eight is not congestion.
    const growing = r.sent >= MIN_SENT && r.arrived < 0.85 * r.sent - 2;
    const lossy = r.fractionLost > 0.1 && r.sent >= 4 * MIN_SENT;
    let v: LinkVerdict;
    if (growing || lossy || this.queueDelayMs > this.o.overuseDelayMs) {
      v = "overuse";
      // GCC §5.5: A = 0.85·R on overuse; loss beyond 10 %: A·(1 − 0.5·p) (§6).
      let next = growing || this.queueDelayMs > this.o.overuseDelayMs ? 0.85 * this.deliveredBps : Infinity;
      if (lossy) next = Math.min(next, (this.est ?? this.deliveredBps) * (1 - 0.5 * r.fractionLost));
      // One report never takes more than half away (a stalled receiver or a burst of loss
      // over one interval is not the link's capacity); the first one not below 40 % of what was sent.
      const sentBps = (r.sent * r.bytesPerPacket * 8 * 1000) / dt;
      const floor = this.est !== undefined ? 0.5 * this.est : 0.4 * sentBps;
      this.est = clamp(Math.max(floor, Math.min(this.est ?? Infinity, next)), this.o.minBps, this.o.maxBps);
      this.overuseAt = r.now;
    } else if (this.queueDelayMs > this.o.holdDelayMs) {
      v = "hold";
    } else {
      v = "increase";
      if (this.est !== undefined) {
        const grown = Math.max(this.est, this.deliveredBps) * Math.pow(1.08, Math.min(dt, 2000) / 1000);
        this.est = clamp(grown, this.o.minBps, this.o.maxBps);
      }
    }
    this.verdict = v;
    this.verdictAt = r.now;
    return v;
  }
}

export interface LadderOptions {
  /** Levels: 0 = the largest stream … n−1 = the smallest stream, n = keyframes only of it. */
  levels: number;
  /** Least wait before trying a higher level after a step down, ms. Default 6000. */
  holdMinMs?: number;
  /** Longest such wait, ms. Default 120000. */
  holdMaxMs?: number;
  /** A step down within this long of a step up counts as a failed try (the next hold doubles), ms. Default 20000. */
  failWindowMs?: number;
  /** Least time between two steps down (the last one needs time to show), ms. Default 2500. */
  downSpacingMs?: number;
  /** Headroom the estimate needs over a level's rate to step up to it. Default 1.15. */
  upMargin?: number;
}

/**
 * Chooses a viewer's level from the estimate and the rates of the levels (bits/s; undefined
 * when unknown: a stream nobody pulls yet). Steps down at once on overuse when the current
 * level does not fit, to the highest that does; steps up one level at a time.
 */
export class LadderController {
  private readonly o: Required<LadderOptions>;
  private holdMs: number;
  private upAllowedAt = 0;
  private lastDownAt = -Infinity;
  private lastUpAt = -Infinity;
  /** Steps taken (for stats). */
  downs = 0;
  ups = 0;

  constructor(o: LadderOptions) {
    this.o = {
      levels: o.levels,
      holdMinMs: o.holdMinMs ?? 6000,
      holdMaxMs: o.holdMaxMs ?? 120_000,
      failWindowMs: o.failWindowMs ?? 20_000,
      downSpacingMs: o.downSpacingMs ?? 2500,
      upMargin: o.upMargin ?? 1.15,
    };
    this.holdMs = this.o.holdMinMs;
  }

  /** Highest level index (keyframes only). */
  get lowest(): number {
    return this.o.levels;
  }

  /** The level to be at now, given the current one. */
  decide(now: number, level: number, est: BandwidthEstimator, rates: readonly (number | undefined)[]): number {
    const e = est.estimateBps;
    if (e === undefined) return level;
    const overusing = now - est.overuseAt < 1500;
    if (overusing && level < this.lowest && now - this.lastDownAt >= this.o.downSpacingMs) {
      const rate = rates[level];
      if (rate === undefined || rate > e) {
        let next = level + 1;
        while (next < this.lowest && (rates[next] ?? 0) > e) next++;
        // A failed try at the level above: wait longer before the next one.
        this.holdMs = now - this.lastUpAt < this.o.failWindowMs ? Math.min(this.o.holdMaxMs, this.holdMs * 2) : this.o.holdMinMs;
        this.upAllowedAt = now + this.holdMs;
        this.lastDownAt = now;
        this.downs++;
        return next;
      }
    }
    if (level > 0 && now >= this.upAllowedAt && now - est.overuseAt >= 3000 && est.verdict !== "overuse") {
      const target = rates[level - 1];
      if (target !== undefined && e >= target * this.o.upMargin) {
        this.lastUpAt = now;
        // The next step up needs the result of this one first.
        this.upAllowedAt = now + this.o.downSpacingMs * 2;
        this.ups++;
        return level - 1;
      }
    }
    return level;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
