/**
 * Adapting a viewer to its network: a bandwidth estimator fed by what the browser reports
 * in RTCP receiver reports (RFC 3550 §6.4.1: extended highest sequence number received,
 * cumulative and fraction lost, and the round trip from LSR/DLSR) and, where the browser
 * negotiated it, in transport-wide congestion control feedback (every packet's arrival). The
 * ladder controller that moves the viewer between its streams from this estimate is
 * sfu/adapt-ladder.ts.
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
 * controller steps up only after a probe (copies of a packet sent anyway, paced, up to the
 * higher stream's rate for a short while) went through without a queue and, judged from
 * transport-wide feedback, was delivered at close to that rate, and a probe that
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
/** Loss is judged at most once in this long (about one delivery window), ms. */
const LOSS_JUDGE_MS = 900;
/** Loss counts only over this many packets at least (keyframes only: one of eight is noise). */
const MIN_LOSS_PACKETS = 32;
/** Nothing received for this long while packets are overdue is a stall (see `onReport`), ms. */
const STALL_MIN_MS = 250;
/** Nothing received for longer than this is the link's state again, not a stall, ms. */
const STALL_MAX_MS = 2000;
/** No decision from transport-wide feedback for this long after the first (the join's GOP burst), ms. */
const TW_WARMUP_MS = 1500;
/** Transport-wide feedback this recent judges the link (receiver reports are not used for it), ms. */
const TW_FRESH_MS = 2000;
/** A queue at least this long, with the stream sent faster than the link's capacity, is overuse at once, ms. */
const TW_QUEUE_MS = 40;
/** … where "faster" means by this factor. */
const TW_OVER_CAPACITY = 1.1;
/** The send rate compared with the capacity is measured over this long (a GOP or so: a keyframe's burst is not the stream's rate), ms. */
const TW_SENT_WINDOW_MS = 1000;
/** Loss over a second beyond this share is overuse (two seconds in a row) when judged from transport-wide feedback. */
const TW_LOSS_SHARE = 0.2;
/** A packet this far behind the newest reported (16-bit wrap, stale feedback) is not taken, packets. */
const TW_REORDER = 4096;
/** Packets that arrived with at least this much queue ahead of them were spaced by the bottleneck, ms. */
const TRAIN_QUEUE_MS = 20;
/** Capacity is measured over the arrivals of this long before the newest (what the link is now, not a second ago), ms. */
const CAPACITY_WINDOW_MS = 300;
/** Capacity is measured over at least this many pairs of packets spaced by the link, and this long in all, pairs / ms. */
const TRAIN_MIN_PACKETS = 3;
const TRAIN_MIN_MS = 20;
/** Arrivals remembered for rates, ms of the receiver's clock. */
const ARRIVALS_KEPT_MS = 1500;
/** A probe's delivered rate is measured between two packets sent at least this far apart, ms. */
const PROBE_SPAN_MIN_MS = 50;

export class BandwidthEstimator {
  private est: number | undefined;
  private lastAt: number | undefined;
  private readonly rtts: { at: number; ms: number }[] = [];
  /** How old the highest packet received was when each report arrived (a round trip plus any queue), ms. */
  private readonly ages: { at: number; ms: number }[] = [];
  /** Recent queueing delays (the last RISING_HISTORY_MS), oldest first. */
  private readonly qHist: { at: number; q: number }[] = [];
  private readonly o: Required<EstimatorOptions>;
  /** What transport-wide feedback needs: send times and sizes by transport-wide number, arrivals. */
  private readonly tw = new TransportHistory();
  /** Send time (ms) and cumulative bytes through each packet, by our extended sequence number. */
  private readonly sentAt = new Float64Array(HISTORY);
  private readonly sentCum = new Float64Array(HISTORY);
  private newestExt = -1;
  private newestSeq = 0;
  private totalBytes = 0;
  /** Since when the queueing delay has been above the overuse threshold (undefined: it is not). */
  private queuedSince: number | undefined;
  private lossyBefore = false;
  private lossJudgedAt = -Infinity;
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
  /** The link's rate when full, from transport-wide feedback (packets that queued), bits/s; 0: not measured in the last second. */
  capacityBps = 0;
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

  /**
   * Our extended number of the newest packet sent (−1 before any): of the video stream, or
   * the transport-wide number once transport-wide feedback judges the link (`ackedExt` and
   * the probe's window count the same way then).
   */
  get sentExt(): number {
    return Number.isFinite(this.transportFeedbackAt) ? this.tw.newestExt : this.newestExt;
  }

  /** Starts a new `peakQueueMs` window. */
  resetPeak(): void {
    this.peakQueueMs = 0;
    this.peakReports = 0;
    this.peakFromExt = this.sentExt;
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

  /**
   * One packet stamped with transport-wide sequence number `seq` (sfu/transport-cc.ts),
   * `payloadBytes` of RTP payload, sent at `now` (ms): every packet the feedback covers,
   * resends and copies included (`copy`: a copy of a packet sent before, see TransportHistory).
   */
  onTransportSent(seq: number, payloadBytes: number, now: number, copy = false): void {
    this.tw.onSent(seq, payloadBytes, now, copy);
  }

  /** See TransportHistory.deliveredBpsOver (transport-wide numbers, as `sentExt` counts them then). */
  deliveredBpsOver(afterExt: number, toExt: number, fromMs: number, toMs: number): { deliveredBps: number; sentBps: number } | undefined {
    return this.tw.deliveredBpsOver(afterExt, toExt, fromMs, toMs);
  }

  /** Is the link judged from transport-wide feedback now? */
  get transportWide(): boolean {
    return Number.isFinite(this.transportFeedbackAt) && this.verdictAt - this.transportFeedbackAt < TW_FRESH_MS;
  }

  /** Is the link judged from transport-wide feedback now (one came within TW_FRESH_MS)? Receiver reports then only give the round trip. */
  transportFeedbackAt = -Infinity;
  /** When the first transport-wide feedback came (see TW_WARMUP_MS). */
  private twFirstAt: number | undefined;
  private twMode(now: number): boolean {
    return now - this.transportFeedbackAt < TW_FRESH_MS;
  }

  /**
   * One transport-wide feedback packet (sfu/rtp/rtcp.ts `twcc`) at `now`: per packet, when it
   * arrived on the receiver's clock (NaN: not received). Each packet's one-way delay less the
   * lowest seen (30 s) is how long it queued: the queue as it stands, known one feedback
   * interval and a one-way trip after the packet went through it (a receiver report's lower
   * bound lags by up to a second more). Packets that arrived while a queue stood were spaced
   * by the bottleneck: their rate is the link's capacity (a packet train; every frame the
   * recorder sends in a burst is one). Overuse, besides the rules of `onReport`: a queue of
   * at least TW_QUEUE_MS while the last half second was sent faster than that capacity
   * × TW_OVER_CAPACITY (the link carries less than the stream: the queue can only grow) —
   * a keyframe crossing a slow link queues as much but was not sent faster on average.
   */
  onTransportFeedback(fb: { baseSeq: number; arrivalsMs: Float64Array }, now: number): LinkVerdict {
    const tw = this.tw;
    const prevAt = this.transportFeedbackAt;
    let newest = -1;
    let newestQ = 0;
    let q1 = Infinity;
    let q2 = Infinity;
    let q3: number;
    let lost = 0;
    let total = 0;
    for (let i = 0; i < fb.arrivalsMs.length; i++) {
      const ext = tw.extOf((fb.baseSeq + i) & 0xffff);
      if (ext === undefined || ext <= tw.reportedExt - TW_REORDER) continue;
      const at = fb.arrivalsMs[i]!;
      // A receiver may report a packet again (missing, then arrived late): each counts once.
      // A copy not received is no loss (see TransportHistory).
      const st = tw.status[ext & MASK]!;
      const was = st & 3;
      const copy = (st & COPY) !== 0;
      if (Number.isNaN(at)) {
        if (was === 0 && !copy) {
          tw.status[ext & MASK] = 1;
          lost++;
          total++;
        }
        continue;
      }
      if (was === 2) continue;
      tw.status[ext & MASK] = 2 | (st & COPY);
      if (was === 1) lost--;
      else if (!copy) total++;
      const owd = at - tw.sentAt[ext & MASK]!;
      tw.noteOwd(owd, now);
      const q = Math.max(0, owd - tw.minOwd);
      tw.received(ext, at, q);
      // The queue as it stands: the least of the last three packets' (one packet a receiver
      // took in late, not scheduled under load, is no queue; a standing one delays them all).
      q3 = q2;
      q2 = q1;
      q1 = q;
      const standing = Math.min(q1, q2, q3);
      if (ext > newest) {
        newest = ext;
        newestQ = standing;
      }
      if (ext > this.peakFromExt && Number.isFinite(standing)) this.peakQueueMs = Math.max(this.peakQueueMs, standing);
    }
    // Feedback on packets this estimator was not told of (another viewer's on a shared
    // connection, or none stamped for it) says nothing: receiver reports keep judging.
    if (newest < 0) return this.verdict;
    this.transportFeedbackAt = now;
    if (newest > this.peakFromExt) this.peakReports++;
    tw.reportedExt = Math.max(tw.reportedExt, newest);
    this.ackedExt = Math.max(this.ackedExt, newest);
    this.queueDelayMs = newestQ;
    tw.noteLoss(now, lost, total);
    const windowLoss = tw.lossShare();
    const delivered = tw.deliveredBps(DELIVERY_WINDOW_MS);
    const recent = tw.deliveredBps(RECENT_DELIVERY_MS);
    const capacity = tw.capacityBps();
    const sentBps = tw.sentBps(now, TW_SENT_WINDOW_MS);
    this.deliveredBps = delivered;
    this.capacityBps = capacity;
    this.recentDeliveredBps = capacity > 0 ? Math.min(recent || capacity, capacity) : recent;
    const rateLimited = newestQ >= TW_QUEUE_MS && capacity > 0 && sentBps > capacity * TW_OVER_CAPACITY;
    if (!Number.isFinite(prevAt) || now <= prevAt) return this.verdict;
    // The first moments of a viewer are the cached GOP's burst to a receiver that is only
    // starting to decode: what they show is neither the link's capacity nor a queue that stays.
    this.twFirstAt ??= now;
    if (now - this.twFirstAt < TW_WARMUP_MS) return this.verdict;
    return this.judge(now, now - prevAt, {
      windowLoss,
      windowPackets: tw.lossPackets(),
      recentBps: this.recentDeliveredBps,
      sentBps,
      fractionLost: windowLoss,
      rateLimited,
      // A queue shows here when the link is full; loss alone is the radio's or a policer's,
      // and only a policer's is heavy (GCC's 10 % reads a second of 5 % random loss as one).
      lossThreshold: TW_LOSS_SHARE,
      capacityBps: capacity,
      growthCap: true,
    });
  }

  /** Feeds one receiver report; returns its verdict. */
  onReport(r: LinkReport): LinkVerdict {
    if (r.rttMs !== undefined && r.rttMs >= 0) {
      this.rtts.push({ at: r.now, ms: r.rttMs });
      while (this.rtts.length > 0 && r.now - this.rtts[0]!.at > MIN_RTT_WINDOW_MS) this.rtts.shift();
    }
    // Transport-wide feedback says more, sooner: the report's round trip is all it adds.
    if (this.twMode(r.now)) return this.verdict;
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
    return this.judge(r.now, r.now - prevAt, { windowLoss, windowPackets, recentBps, sentBps, fractionLost: r.fractionLost, rateLimited: false });
  }

  /**
   * The verdict from the link's state as the last report showed it (`queueDelayMs`,
   * `deliveredBps`, and the figures in `w`), `dt` ms after the report before.
   */
  private judge(
    now: number,
    dt: number,
    w: {
      windowLoss: number;
      windowPackets: number;
      recentBps: number;
      sentBps: number;
      fractionLost: number;
      rateLimited: boolean;
      lossThreshold?: number;
      /** What the link carries when it is full, bits/s (0: unknown): the rate an overuse cuts to 85 % of. */
      capacityBps?: number;
      /** Grow no further than 1.5 × what was delivered. */
      growthCap?: boolean;
    },
  ): LinkVerdict {
    const { windowLoss, windowPackets, recentBps, sentBps } = w;
    const r = { now, fractionLost: w.fractionLost };
    // Loss over the delivery window (a report's own fraction may cover a handful of packets),
    // in two windows in a row: a second of 5 % random loss is above 10 % now and then. Judged
    // once a window: reports that come more often (with NACKs, or transport-wide feedback
    // every 100 ms) see the same second again, and would cut the estimate for it each time.
    let lossy = false;
    if (now - this.lossJudgedAt >= LOSS_JUDGE_MS) {
      const lossyNow = windowLoss > (w.lossThreshold ?? 0.1) && windowPackets >= MIN_LOSS_PACKETS;
      lossy = lossyNow && this.lossyBefore;
      this.lossyBefore = lossyNow;
      this.lossJudgedAt = now;
    }
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
    const queued = w.rateLimited || rising || (this.queuedSince !== undefined && r.now - this.queuedSince >= this.o.overuseForMs);
    let v: LinkVerdict;
    if (queued || lossy || this.heldSince !== undefined) this.quietSince = undefined;
    if (queued || lossy) {
      v = "overuse";
      // GCC §5.5: A = 0.85·R on overuse; loss beyond 10 %: A·(1 − 0.5·p) (§6).
      const rate = (w.capacityBps ?? 0) > 0 ? w.capacityBps! : recentBps > 0 ? Math.min(recentBps, this.deliveredBps) : this.deliveredBps;
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
        let grown = Math.max(this.est, this.deliveredBps) * Math.pow(rate, Math.min(dt, 2000) / 1000);
        // GCC §5.5: not beyond 1.5 × what was delivered (a link carrying a small stream does
        // not say it carries any more; only a probe raises it further, see `raiseTo`).
        if (w.growthCap) grown = Math.min(grown, Math.max(this.est, 1.5 * this.deliveredBps));
        this.est = clamp(grown, this.o.minBps, this.o.maxBps);
      }
    }
    this.verdict = v;
    this.verdictAt = r.now;
    return v;
  }
}

/**
 * The sending side's record for transport-wide feedback: when each numbered packet was sent,
 * the bytes sent through it, and what the receiver said of them (arrival times, queue, loss).
 *
 * Copies (a probe's, a switch keyframe's) are numbered like any packet but a receiver's SRTP
 * replay check drops a copy whose original arrived, before its transport-wide feedback sees
 * it: reported "not received", a copy is no loss. It did cross the link, so rates are
 * measured from the bytes sent between two packets received, copies included.
 */
class TransportHistory {
  readonly sentAt = new Float64Array(HISTORY);
  /** Bytes on the wire sent up to and including each packet. */
  private readonly cum = new Float64Array(HISTORY);
  /** What feedback said of each packet: 0 nothing yet, 1 not received, 2 received; +4: a copy. */
  readonly status = new Uint8Array(HISTORY);
  newestExt = -1;
  private newestSeq = 0;
  private total = 0;
  /** The highest number a feedback reported received (−1 before). */
  reportedExt = -1;
  /** Lowest one-way delay (receiver clock − ours) over the last MIN_RTT_WINDOW_MS, from per-second minima. */
  minOwd = Infinity;
  private readonly owdMins: { at: number; ms: number }[] = [];
  /** Received packets in the order reported: number, arrival (receiver clock), queue ahead of it. */
  private readonly arr: { ext: number; at: number; q: number }[] = [];
  private readonly loss: { at: number; lost: number; total: number }[] = [];
  /** Scratch for capacityBps. */
  private readonly pairRates: number[] = [];
  /** Sends over the last TW_SENT_WINDOW_MS: [time, bytes] pairs, oldest first. */
  private readonly sends: number[] = [];

  onSent(seq: number, payloadBytes: number, now: number, copy: boolean): void {
    let ext = 0;
    if (this.newestExt >= 0) {
      const d = (seq - this.newestSeq) & 0xffff;
      if (d === 0 || d >= 0x8000) return;
      ext = this.newestExt + d;
      for (let e = Math.max(this.newestExt + 1, ext - HISTORY + 1); e < ext; e++) {
        this.sentAt[e & MASK] = now;
        this.cum[e & MASK] = this.total;
        this.status[e & MASK] = COPY; // never sent: no loss either
      }
    }
    const bytes = payloadBytes + OVERHEAD + TW_EXTENSION_BYTES;
    this.total += bytes;
    this.sentAt[ext & MASK] = now;
    this.cum[ext & MASK] = this.total;
    this.status[ext & MASK] = copy ? COPY : 0;
    this.newestExt = ext;
    this.newestSeq = seq & 0xffff;
    this.sends.push(now, bytes);
    while (this.sends.length > 2 && now - this.sends[0]! > TW_SENT_WINDOW_MS) this.sends.splice(0, 2);
  }

  extOf(seq: number): number | undefined {
    if (this.newestExt < 0) return undefined;
    const d = (this.newestSeq - (seq & 0xffff)) & 0xffff;
    if (d >= HISTORY || d > this.newestExt) return undefined;
    return this.newestExt - d;
  }

  noteOwd(owd: number, now: number): void {
    const last = this.owdMins.at(-1);
    if (last && now - last.at < 1000) last.ms = Math.min(last.ms, owd);
    else this.owdMins.push({ at: now, ms: owd });
    while (this.owdMins.length > 1 && now - this.owdMins[0]!.at > MIN_RTT_WINDOW_MS) this.owdMins.shift();
    let m = Infinity;
    for (const x of this.owdMins) if (x.ms < m) m = x.ms;
    this.minOwd = m;
  }

  received(ext: number, at: number, q: number): void {
    const a = this.arr;
    a.push({ ext, at, q });
    while (a.length > 0 && at - a[0]!.at > ARRIVALS_KEPT_MS) a.shift();
  }

  noteLoss(now: number, lost: number, total: number): void {
    this.loss.push({ at: now, lost, total });
    while (this.loss.length > 1 && now - this.loss[0]!.at > DELIVERY_WINDOW_MS) this.loss.shift();
  }

  lossShare(): number {
    let l = 0;
    let t = 0;
    for (const x of this.loss) {
      l += x.lost;
      t += x.total;
    }
    return t > 0 ? Math.max(0, l) / t : 0;
  }

  lossPackets(): number {
    let t = 0;
    for (const x of this.loss) t += x.total;
    return t;
  }

  /** Bytes sent between packets that arrived over the last `ms` of the receiver's clock, as bits/s (0 before two). */
  deliveredBps(ms: number): number {
    const a = this.arr;
    if (a.length < 2) return 0;
    const last = a.at(-1)!;
    let first = last;
    for (let i = a.length - 2; i >= 0 && last.at - a[i]!.at <= ms; i--) if (a[i]!.ext < first.ext && this.newestExt - a[i]!.ext < HISTORY) first = a[i]!;
    if (first === last) return 0;
    return ((this.cum[last.ext & MASK]! - this.cum[first.ext & MASK]!) * 8000) / Math.max(last.at - first.at, ms / 2);
  }

  /**
   * The bottleneck's rate over the last CAPACITY_WINDOW_MS of arrivals: for each two packets received one after the
   * other where the second found a queue ahead of it and arrived further apart than it was
   * sent (the link, not the sender, spaced them), the bytes sent between them over the time
   * between their arrivals; the median of those (0: fewer than TRAIN_MIN_PACKETS such pairs
   * over TRAIN_MIN_MS).
   */
  capacityBps(): number {
    const a = this.arr;
    if (a.length < 2) return 0;
    const end = a.at(-1)!.at;
    const rates = this.pairRates;
    rates.length = 0;
    let ms = 0;
    for (let i = 1; i < a.length; i++) {
      const x = a[i]!;
      const p = a[i - 1]!;
      if (end - p.at > CAPACITY_WINDOW_MS || x.q < TRAIN_QUEUE_MS || x.ext <= p.ext || this.newestExt - p.ext >= HISTORY) continue;
      const arrGap = x.at - p.at;
      const sendGap = this.sentAt[x.ext & MASK]! - this.sentAt[p.ext & MASK]!;
      if (!(arrGap > 0) || sendGap >= arrGap) continue;
      rates.push(((this.cum[x.ext & MASK]! - this.cum[p.ext & MASK]!) * 8000) / arrGap);
      ms += arrGap;
    }
    if (rates.length < TRAIN_MIN_PACKETS || ms < TRAIN_MIN_MS) return 0;
    // The median pair: a receiver that takes packets in late now and then (not scheduled
    // under load) stretches a few gaps, and one long gap would weigh in a sum.
    rates.sort((x, y) => x - y);
    return rates[rates.length >> 1]!;
  }

  /**
   * What the link delivered of the packets numbered after `afterExt` up to `toExt` and sent
   * over [`fromMs`, `toMs`] (a probe's): the bytes sent after the first of them reported
   * received up to the last (copies between them included: they crossed the link too), over
   * the time between those two arrivals, bits/s. A link slower than that traffic spaces the
   * two by its own rate (everything sent between them queued ahead of the last), one that
   * keeps up by the sender's. `sentBps`: the same bytes over the time between their sending.
   * Undefined until two of them sent at least PROBE_SPAN_MIN_MS apart were reported received
   * (a shorter span says little on a receiver's coarse clock).
   */
  deliveredBpsOver(afterExt: number, toExt: number, fromMs: number, toMs: number): { deliveredBps: number; sentBps: number } | undefined {
    if (toExt <= afterExt || this.newestExt - afterExt >= HISTORY || toExt > this.newestExt) return undefined;
    let first: { ext: number; at: number } | undefined;
    let last: { ext: number; at: number } | undefined;
    for (const x of this.arr) {
      if (x.ext <= afterExt || x.ext > toExt) continue;
      const sent = this.sentAt[x.ext & MASK]!;
      if (sent < fromMs || sent > toMs) continue;
      if (!first || x.ext < first.ext) first = x;
      if (!last || x.ext > last.ext) last = x;
    }
    const sentMs = first && last ? this.sentAt[last.ext & MASK]! - this.sentAt[first.ext & MASK]! : 0;
    if (!first || !last || sentMs < PROBE_SPAN_MIN_MS) return undefined;
    const bits = (this.cum[last.ext & MASK]! - this.cum[first.ext & MASK]!) * 8000;
    return { deliveredBps: bits / Math.max(1, last.at - first.at), sentBps: bits / sentMs };
  }

  /** What was sent over the last `ms` before `now`, bits/s. */
  sentBps(now: number, ms: number): number {
    let bytes = 0;
    const s = this.sends;
    for (let i = s.length - 2; i >= 0 && now - s[i]! <= ms; i -= 2) bytes += s[i + 1]!;
    return (bytes * 8000) / ms;
  }
}

/** TransportHistory.status flag: the packet is a copy (see there). */
const COPY = 4;
/** The transport-wide sequence number's header extension on the wire (RFC 8285 one-byte form), bytes. */
const TW_EXTENSION_BYTES = 8;

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
