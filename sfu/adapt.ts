/**
 * Adapting a viewer to its network: a bandwidth estimator fed by what the browser reports
 * in RTCP receiver reports (RFC 3550 §6.4.1: extended highest sequence number received,
 * cumulative and fraction lost, and the round trip from LSR/DLSR), and a ladder controller that moves the viewer between its streams (main → sub
 * → keyframes only) with hysteresis.
 *
 * The estimator is delay- and loss-based, in the spirit of Google Congestion Control
 * (draft-ietf-rmcat-gcc-02 §5–6), reduced to what receiver reports carry. It remembers when
 * it sent each packet, so a report's highest sequence number says how long the packets
 * after it have been on their way:
 * - queueing delay: the age of the third packet the receiver had not got when it reported,
 *   beyond the lowest round trip seen (a lower bound of how long it has queued; the third,
 *   so a lost packet or two at the end of a burst is not a queue);
 * - no decision from a report after an interval in which nothing arrived although packets
 *   were overdue (a stalled receiver or middlebox), nor from the one after it;
 * - the link is overused when that delay has stayed above `overuseDelayMs` for reports over
 *   at least `overuseForMs` (one large keyframe takes a while to cross a slow link, and a
 *   report in the middle of it sees a queue that is gone by the next), or when more than
 *   10 % is lost in two reports in a row; the estimate then drops to 85 % of what was delivered over the last second
 *   (GCC's A = 0.85·R: with a standing queue the link was busy all along, so that is its
 *   rate), by at most half a second (reports come in bursts with NACKs);
 * - with a quiet link (delay under `holdDelayMs`, or above it for less than `overuseForMs`;
 *   loss ≤ 10 %) it grows by 8 % a second (15 % once quiet for 5 s without a break) from at
 *   least what is delivered (also while little is sent: keyframes only); in between it holds.
 *
 * Chromium's REMB is not used (the viewer only records it): we send no abs-send-time header
 * extension, so Chromium estimates from RTP timestamps, which a gateway rewrites at every
 * stream switch and cached-GOP replay. Over a 1 Mbit/s link it read 50–250 kbit/s and, taken
 * as a ceiling, held viewers at the floor. `onRemb` stays for a receiver whose REMB is sound.
 *
 * Comparing what we sent and what arrived between two reports instead (as this did before)
 * misreads bursty traffic: a keyframe sent just before a report is still on its way (a
 * round trip) and looks like a growing queue, so a viewer on keyframes only saw "overuse"
 * every few seconds and its estimate never left the floor.
 *
 * A link carrying a small stream says nothing about how much more it could carry: the
 * controller steps up only after a probe (copies of the packets sent anyway, up to the
 * higher stream's rate for half a second) went through without a queue, and a probe that
 * queues stops at once and is tried less often. A step up followed soon by a step down
 * still doubles the wait before the next (to two minutes), so a link that cannot carry the
 * larger stream is tried less and less often. Pure: time is passed in.
 */

/** One receiver report block on the video track. */
export interface LinkReport {
  /** When it arrived, ms. */
  now: number;
  /** The receiver's extended highest sequence number received (its low 16 bits are used). */
  highestSeq: number;
  /** The receiver's cumulative number of packets lost. */
  cumulativeLost: number;
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
  /** Queueing delay beyond which the link counts as overused, ms. Default 300. */
  overuseDelayMs?: number;
  /** Queueing delay beyond which the estimate does not grow, ms. Default 120. */
  holdDelayMs?: number;
  /** How long the queueing delay must stay above `overuseDelayMs` (first and last report) to count, ms. Default 400. */
  overuseForMs?: number;
}

/** Round-trip minimum remembered for this long, ms. */
const MIN_RTT_WINDOW_MS = 30_000;
/** Packets whose send time and size are remembered (power of two; about 40 s at 200 packets/s). */
const HISTORY = 8192;
const MASK = HISTORY - 1;
/** Which not-yet-received packet's age is the queueing delay (1 = the first after the highest received). */
const PENDING_NTH = 3;
/** Per-packet bytes on the wire beyond the RTP payload: RTP 12, SRTP tag 10–16, UDP 8, IPv4 20. */
const OVERHEAD = 50;
/** Delivery is measured over at least this long, ms. */
const DELIVERY_WINDOW_MS = 1000;
/** A link quiet this long without a break lets the estimate grow faster, ms. */
const QUIET_FAST_MS = 5000;
/** The short delivery window used when the link is found overused, ms. */
const RECENT_DELIVERY_MS = 500;
/** A queueing delay above this, grown by RISING_BY_MS over RISING_OVER_MS without draining, is overuse at once, ms. */
const RISING_MIN_MS = 200;
const RISING_BY_MS = 150;
const RISING_OVER_MS = 250;
/** How far back the growth is looked for: a report a second is what a receiver without loss sends, ms. */
const RISING_HISTORY_MS = 1200;
/** A step back this small between two reports still counts as not draining, ms (reports are noisy). */
const RISING_SLACK_MS = 40;
/** Loss counts only over this many packets at least (keyframes only: one of eight is noise). */
const MIN_LOSS_PACKETS = 32;
/** Nothing received for this long while packets are overdue is a stall (see `onReport`), ms. */
const STALL_MIN_MS = 250;
/** Nothing received for longer than this is the link's state again, not a stall, ms. */
const STALL_MAX_MS = 2000;

export class BandwidthEstimator {
  private est: number | undefined;
  private lastAt: number | undefined;
  private readonly rtts: { at: number; ms: number }[] = [];
  /** How old the highest packet received was when each report arrived (a round trip plus any queue), ms. */
  private readonly ages: { at: number; ms: number }[] = [];
  /** Recent queueing delays (the last RISING_HISTORY_MS), oldest first. */
  private readonly qHist: { at: number; q: number }[] = [];
  private readonly o: Required<EstimatorOptions>;
  /** Send time (ms) and cumulative bytes through each packet, by our extended sequence number. */
  private readonly sentAt = new Float64Array(HISTORY);
  private readonly sentCum = new Float64Array(HISTORY);
  private newestExt = -1;
  private newestSeq = 0;
  private totalBytes = 0;
  /** Since when the queueing delay has been above the overuse threshold (undefined: it is not). */
  private queuedSince: number | undefined;
  private lossyBefore = false;
  /** Since when the queueing delay has been above the hold threshold. */
  private heldSince: number | undefined;
  /** The estimate a second ago at most: no decrease goes below half of it. */
  private decreaseBase = 0;
  private decreaseBaseAt = -Infinity;
  /** Recent reports: when, the highest packet received (our extended number), cumulative lost, our total bytes sent then. */
  private readonly samples: { at: number; ext: number; lost: number; sent: number }[] = [];
  /** The last report's verdict and when. */
  verdict: LinkVerdict = "hold";
  verdictAt = 0;
  /** When the last overuse was seen, ms (−∞ before). */
  overuseAt = -Infinity;
  /** Delivered rate over the last second or so, bits/s. */
  deliveredBps = 0;
  /** Delivered rate over the last half second or so, bits/s (0 before there is one). */
  recentDeliveredBps = 0;
  /** Queueing delay of the last report, ms. */
  queueDelayMs = 0;
  /** When a report last showed the queue below the hold threshold, ms (−∞ before). */
  quietAt = -Infinity;
  /** Since when the link has been quiet without a break (undefined: it is not). */
  private quietSince: number | undefined;
  /** The highest packet (our extended number) the last report showed received (−1 before). */
  ackedExt = -1;
  /** The longest queueing delay a report showed since `resetPeak`, ms, and how many reports since showed a packet sent after it received. */
  peakQueueMs = 0;
  peakReports = 0;
  private peakFromExt = -1;
  /** When a report last showed a packet received that the one before had not, ms. */
  private progressAt = -Infinity;
  /** The last report came in a stall (see `onReport`): the next one with progress decides nothing either. */
  private afterStall = false;

  constructor(o: EstimatorOptions = {}) {
    this.o = {
      minBps: o.minBps ?? 50_000,
      maxBps: o.maxBps ?? 50_000_000,
      overuseDelayMs: o.overuseDelayMs ?? 300,
      holdDelayMs: o.holdDelayMs ?? 120,
      overuseForMs: o.overuseForMs ?? 400,
    };
  }

  /** The estimate, bits/s; undefined until the link first told us something about its capacity. */
  get estimateBps(): number | undefined {
    return this.est;
  }

  /** Our extended number of the newest packet sent (−1 before any). */
  get sentExt(): number {
    return this.newestExt;
  }

  /** Starts a new `peakQueueMs` window. */
  resetPeak(): void {
    this.peakQueueMs = 0;
    this.peakReports = 0;
    this.peakFromExt = this.newestExt;
  }

  /** The link was found to carry at least `bps` (a probe went through without a queue). */
  raiseTo(bps: number): void {
    if (this.est === undefined || this.est < bps) this.est = clamp(bps, this.o.minBps, this.o.maxBps);
  }

  /** A receiver's REMB (its own estimate): a ceiling for ours. */
  onRemb(bps: number): void {
    if (!(bps > 0)) return;
    if (this.est !== undefined && bps < this.est) this.est = Math.max(this.o.minBps, bps);
  }

  /**
   * One video packet sent with sequence number `seq` (skipped numbers count as sent then,
   * empty), `payloadBytes` of RTP payload, at `now` (ms). Retransmissions are not reported.
   */
  onSent(seq: number, payloadBytes: number, now: number): void {
    let ext = 0;
    if (this.newestExt >= 0) {
      const d = (seq - this.newestSeq) & 0xffff;
      if (d === 0 || d >= 0x8000) return; // not newer than the newest: a resend
      ext = this.newestExt + d;
      for (let e = Math.max(this.newestExt + 1, ext - HISTORY + 1); e < ext; e++) {
        this.sentAt[e & MASK] = now;
        this.sentCum[e & MASK] = this.totalBytes;
      }
    }
    this.totalBytes += payloadBytes + OVERHEAD;
    this.sentAt[ext & MASK] = now;
    this.sentCum[ext & MASK] = this.totalBytes;
    this.newestExt = ext;
    this.newestSeq = seq & 0xffff;
  }

  /** Our extended number of the packet with sequence number `seq`, if it is still remembered. */
  private extOf(seq: number): number | undefined {
    if (this.newestExt < 0) return undefined;
    const d = (this.newestSeq - (seq & 0xffff)) & 0xffff;
    if (d >= HISTORY || d > this.newestExt) return undefined;
    return this.newestExt - d;
  }

  /** Feeds one receiver report; returns its verdict. */
  onReport(r: LinkReport): LinkVerdict {
    if (r.rttMs !== undefined && r.rttMs >= 0) {
      this.rtts.push({ at: r.now, ms: r.rttMs });
      while (this.rtts.length > 0 && r.now - this.rtts[0]!.at > MIN_RTT_WINDOW_MS) this.rtts.shift();
    }
    const h = this.extOf(r.highestSeq);
    if (h === undefined) return this.verdict;
    // An empty interval: nothing new received for STALL_MIN_MS although packets sent well
    // before were still on their way. A link at its capacity still delivers; one that
    // delivers nothing at all has stalled (a receiver or a middlebox not scheduled for a
    // moment under load; the reports it held back then arrive together), and what such a
    // report shows is neither the link's rate nor a queue that stays: no decision from it,
    // nor from the first report after it, unless the stall lasts STALL_MAX_MS.
    const progressed = h > this.ackedExt;
    const overdue = h < this.newestExt && this.sentAt[(h + 1) & MASK]! <= r.now - STALL_MIN_MS;
    const stalled = !progressed && this.ackedExt >= 0 && overdue && r.now - this.progressAt >= STALL_MIN_MS && r.now - this.progressAt < STALL_MAX_MS;
    if (progressed) {
      this.ackedExt = h;
      this.progressAt = r.now;
    }
    if (stalled || (progressed && this.afterStall)) {
      this.afterStall = stalled;
      this.lastAt = r.now;
      return this.verdict === "overuse" ? "hold" : this.verdict;
    }
    const prevAt = this.lastAt;
    this.lastAt = r.now;
    let minRtt = Infinity;
    for (const s of this.rtts) if (s.ms < minRtt) minRtt = s.ms;
    // The path's round trip without a queue: the lowest round trip from sender reports, or
    // the lowest age of the highest packet received at a report (a round trip plus the
    // moment the receiver held it), whichever is lower. The ages come with every report from
    // the first one on, so a queue is seen even before any sender report was echoed (the
    // recorder's clock may take seconds) and a first echo in a congested moment does not set
    // the floor at a round trip that already holds a queue.
    this.ages.push({ at: r.now, ms: r.now - this.sentAt[h & MASK]! });
    while (this.ages.length > 0 && r.now - this.ages[0]!.at > MIN_RTT_WINDOW_MS) this.ages.shift();
    for (const s of this.ages) if (s.ms < minRtt) minRtt = s.ms;
    // Queueing delay, a lower bound: the PENDING_NTH packet after the highest received had
    // not arrived when the receiver reported (one way back before `now`, within minRtt).
    // Not the round trip of a sender report: that is up to a second old, and one that the
    // receiver got after a stall holds the stall in every report echoing it for a second.
    let q = 0;
    if (Number.isFinite(minRtt)) {
      const k = h + PENDING_NTH;
      if (k <= this.newestExt && this.newestExt - k < HISTORY) q = r.now - this.sentAt[k & MASK]! - minRtt;
    }
    this.queueDelayMs = Math.max(0, q);
    // For a probe also how long the highest packet received queued: its age beyond minRtt,
    // less the time the receiver may have held it before reporting (at most until the next
    // packet would have come on a link without a queue: the send gap after it). Sharper than
    // the lower bound above, which misses most of a short probe's queue between sparse reports.
    let ackQ = 0;
    if (h < this.newestExt && Number.isFinite(minRtt)) ackQ = r.now - this.sentAt[h & MASK]! - minRtt - (this.sentAt[(h + 1) & MASK]! - this.sentAt[h & MASK]!);
    this.peakQueueMs = Math.max(this.peakQueueMs, this.queueDelayMs, ackQ);
    if (h > this.peakFromExt) this.peakReports++;
    // Delivered: what reached the receiver's front since a report at least a second old, less what it lost.
    this.samples.push({ at: r.now, ext: h, lost: r.cumulativeLost, sent: this.totalBytes });
    while (this.samples.length > 2 && r.now - this.samples[1]!.at >= DELIVERY_WINDOW_MS) this.samples.shift();
    const base = this.samples[0]!;
    let sentBps = 0;
    let windowLoss = 0;
    let windowPackets = 0;
    if (base !== this.samples.at(-1) && r.now - base.at >= DELIVERY_WINDOW_MS / 2 && h >= base.ext && this.newestExt - base.ext < HISTORY) {
      const dt = r.now - base.at;
      const packets = h - base.ext;
      const lostShare = packets > 0 ? Math.min(1, Math.max(0, r.cumulativeLost - base.lost) / packets) : 0;
      windowLoss = lostShare;
      windowPackets = packets;
      this.deliveredBps = ((this.sentCum[h & MASK]! - this.sentCum[base.ext & MASK]!) * (1 - lostShare) * 8000) / dt;
      sentBps = ((this.totalBytes - base.sent) * 8000) / dt;
    }
    // Delivered over the last half second or so: right after a link slows down, the second
    // behind the reports is still partly the faster link's.
    let recentBps = 0;
    for (let i = this.samples.length - 2; i >= 0; i--) {
      const s = this.samples[i]!;
      if (r.now - s.at < RECENT_DELIVERY_MS) continue;
      if (h > s.ext && this.newestExt - s.ext < HISTORY) {
        const lostShare = Math.min(1, Math.max(0, r.cumulativeLost - s.lost) / (h - s.ext));
        recentBps = ((this.sentCum[h & MASK]! - this.sentCum[s.ext & MASK]!) * (1 - lostShare) * 8000) / (r.now - s.at);
      }
      break;
    }
    this.recentDeliveredBps = recentBps;
    if (prevAt === undefined || r.now <= prevAt) return this.verdict;
    const dt = r.now - prevAt;
    // Loss over the delivery window (a report's own fraction may cover a handful of packets),
    // in two reports in a row: a second of 5 % random loss is above 10 % now and then.
    const lossyNow = windowLoss > 0.1 && windowPackets >= MIN_LOSS_PACKETS;
    const lossy = lossyNow && this.lossyBefore;
    this.lossyBefore = lossyNow;
    if (this.queueDelayMs <= this.o.holdDelayMs) {
      this.heldSince = undefined;
      this.quietAt = r.now;
    } else this.heldSince ??= r.now;
    if (this.queueDelayMs <= this.o.overuseDelayMs) this.queuedSince = undefined;
    else this.queuedSince ??= r.now;
    // A queue that has grown steadily (never draining) by RISING_BY_MS over at least
    // RISING_OVER_MS: the link carries less than it is sent. Seen from the head of the queue,
    // the delay lags what is queued behind it (it grows at most half as fast as the backlog
    // while the link is overfilled), so waiting for it to exceed the threshold for
    // `overuseForMs` lets seconds pile up; a keyframe crossing a slow link drains again
    // within its own transmission time and a link that carries the stream does not grow.
    this.qHist.push({ at: r.now, q: this.queueDelayMs });
    while (this.qHist.length > 0 && r.now - this.qHist[0]!.at > RISING_HISTORY_MS) this.qHist.shift();
    let rising = false;
    const prevQ = this.qHist.length >= 2 ? this.qHist[this.qHist.length - 2]!.q : 0;
    if (this.queueDelayMs >= RISING_MIN_MS && prevQ >= RISING_MIN_MS / 2) {
      let floor = Infinity;
      for (let i = this.qHist.length - 1; i >= 0; i--) {
        const s = this.qHist[i]!;
        if (s.q > floor + RISING_SLACK_MS) break; // it drained since
        floor = Math.min(floor, s.q);
        if (r.now - s.at >= RISING_OVER_MS && this.queueDelayMs - s.q >= RISING_BY_MS) {
          rising = true;
          break;
        }
      }
    }
    const queued = rising || (this.queuedSince !== undefined && r.now - this.queuedSince >= this.o.overuseForMs);
    let v: LinkVerdict;
    if (queued || lossy || this.heldSince !== undefined) this.quietSince = undefined;
    if (queued || lossy) {
      v = "overuse";
      // GCC §5.5: A = 0.85·R on overuse; loss beyond 10 %: A·(1 − 0.5·p) (§6).
      const rate = recentBps > 0 ? Math.min(recentBps, this.deliveredBps) : this.deliveredBps;
      let next = queued && rate > 0 ? 0.85 * rate : Infinity;
      if (lossy) next = Math.min(next, (this.est ?? this.deliveredBps) * (1 - 0.5 * r.fractionLost));
      if (Number.isFinite(next) || this.est === undefined) {
        // Never more than half away within a second (a stalled receiver or a burst of loss
        // is not the link's capacity); the first estimate not below a quarter of what is sent.
        if (this.est !== undefined && r.now - this.decreaseBaseAt >= 1000) {
          this.decreaseBase = this.est;
          this.decreaseBaseAt = r.now;
        }
        const floor = this.est !== undefined ? 0.5 * this.decreaseBase : 0.25 * sentBps;
        this.est = clamp(Math.max(floor, Math.min(this.est ?? Infinity, Number.isFinite(next) ? next : 0)), this.o.minBps, this.o.maxBps);
      }
      this.overuseAt = r.now;
    } else if (this.heldSince !== undefined && r.now - this.heldSince >= this.o.overuseForMs) {
      v = "hold";
    } else {
      v = "increase";
      this.quietSince ??= r.now;
      if (this.est !== undefined) {
        // GCC's 8 % a second; after QUIET_FAST_MS of a quiet link without a break, 15 %
        // (nothing pushes back: the link is far from full), so a viewer whose link came
        // back finds the larger stream within seconds rather than half a minute.
        const rate = r.now - this.quietSince >= QUIET_FAST_MS ? 1.15 : 1.08;
        const grown = Math.max(this.est, this.deliveredBps) * Math.pow(rate, Math.min(dt, 2000) / 1000);
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
  /** Extra rate while it runs, bits/s. */
  extraBps: number;
  /** Our extended number of the newest packet sent when the extra traffic stopped (−1 while it runs). */
  endExt: number;
}

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
 * it (a freeze). A probe sends, for `probeMs`, copies of the packets the viewer is sent anyway
 * (a receiver drops duplicates; WebRTC's own padding does the same job) so that the viewer
 * gets the higher level's rate × `upMargin`. If no report during it or up to the packet sent
 * right after it shows a queue over `probeQueueMs`, the link carries it: step up. If one does,
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
    return p && p.endExt < 0 && now - p.startAt < this.o.probeMs && est.peakQueueMs <= this.o.probeQueueMs ? p.extraBps : 0;
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
      this.probe = { startAt: now, extraBps, endExt: -1 };
      this.probes++;
      est.resetPeak();
      return level;
    }
    if (est.peakQueueMs > this.o.probeQueueMs) {
      this.endProbe(now, true);
      return level;
    }
    if (p.endExt < 0) {
      if (now - p.startAt >= this.o.probeMs) p.endExt = est.sentExt;
      return level;
    }
    if (est.ackedExt > p.endExt && est.peakReports >= PROBE_MIN_REPORTS) {
      // Everything the probe sent arrived ahead of a packet sent after it, without a queue.
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
    if (now - p.startAt > this.o.probeMs + PROBE_ACK_WAIT_MS) this.endProbe(now, true);
    return level;
  }

  /** Stops a running probe; a failed one doubles the wait before the next. */
  private endProbe(now: number, failed: boolean): void {
    if (!this.probe) return;
    this.probe = undefined;
    if (failed) {
      this.probesFailed++;
      this.probeGapMs = Math.min(this.o.probeGapMaxMs, this.probeGapMs * 2);
    }
    this.nextProbeAt = now + this.probeGapMs;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
