/**
 * A viewer's Auto quality: moving one viewer along its camera's streams (main → sub →
 * keyframes only of the smallest) as its network allows, from the estimate and the
 * ladder of sfu/adapt.ts. The viewer (sfu/viewer.ts) feeds it the packets it sends and
 * the receiver reports it gets, ticks it, and carries out what it decides through
 * `AdaptationHost`: a switch of source (at the target's next keyframe, or at once from
 * its cached GOP for a step down, see `fastSwitchTo`) or the keyframes-only step.
 */
import type { CameraId } from "../config/ids.ts";
import type { Logger } from "../config/log.ts";
import { BandwidthEstimator, type LinkReport } from "./adapt.ts";
import { LadderController } from "./adapt-ladder.ts";
import type { TransportCcFeedback } from "./rtp/rtcp.ts";
import type { ViewerTransport } from "./transport.ts";

/** What the adaptation needs of a source: its id and upstream rate. */
export interface AdaptSource {
  readonly id: CameraId;
  /** Upstream bit rate now, bits/s (0 when not pulled). */
  rateBps(): number;
}

/** What the adaptation needs of its viewer. */
export interface AdaptationHost {
  /** The source media comes from now. */
  current(): AdaptSource;
  /** The source a pending switch goes to, if any. */
  target(): AdaptSource | undefined;
  findSource(id: CameraId): AdaptSource | undefined;
  /** Is the viewer at keyframes only now? */
  keyframesOnly(): boolean;
  /** Down to keyframes only (of the current source). */
  stepDown(reason: string, now: number): void;
  /** Back to every frame from the next keyframe. */
  requestStepUp(): void;
  /** Switch to another source (through whoever counts demand). */
  switchTo(id: CameraId, reason: string): void;
  /** The viewer's clock, ms (what its reports are timed with). */
  now(): number;
  log: Logger;
}

/** Weight of the previous value in each stream's smoothed rate, per tick (about 250 ms): a time constant of some 2.5 s. */
const RATE_SMOOTHING = 0.9;
/** A queueing delay at least this long caps the pacing rate (see `pacingCapBps`), ms. */
const QUEUED_MS = 200;
/** The same from transport-wide feedback (the queue exact, not a lower bound), ms. */
const TW_QUEUED_MS = 100;
/** Share of the measured capacity a viewer is paced at while a queue stands on its link (see `pacingCapBps`). */
const DRAIN_SHARE = 0.6;
/** Least pacing rate under such a cap, bits/s. */
const MIN_PACING_BPS = 100_000;
/** At most this many copies at once (a late pacer pass catches up in bursts no larger, 1 ms apart). */
const MAX_PROBE_COPIES = 24;
/** Packets smaller than this are not copied, bytes. */
const MIN_PROBE_PACKET = 500;
/** A probe's pacing is looked at again at least this often, ms. */
const PROBE_RETRY_MS = 10;
/** The size a copy is taken to have before the first is sent, bytes. */
const PROBE_RETRY_BYTES = 1000;

export class ViewerAdaptation {
  /** Sources from the largest stream to the smallest. */
  readonly ladder: readonly CameraId[];
  readonly est = new BandwidthEstimator();
  private readonly ctl: LadderController;
  /** Last known rate of each ladder level, bits/s. */
  private readonly rates: (number | undefined)[];
  /** Stepped down to keyframes only by adaptation (not overload). */
  keyframes = false;
  /** The source the last step down went to, until the switch is made (see `fastSwitchTo`). */
  private downTo: CameraId | undefined;
  private readonly host: AdaptationHost;
  private probeCredit = 0;
  private probeAt: number | undefined;
  /** The newest full video packet sent (what a probe copies), −1: none. */
  private probeSeq = -1;
  /** The source sent last tick, and the one sent before it (its rate is kept as it was). */
  private curId: CameraId | undefined;
  private leftId: CameraId | undefined;
  /** Bytes sent as probe copies. */
  probeBytes = 0;

  constructor(ladder: readonly CameraId[], host: AdaptationHost) {
    this.ladder = [...ladder];
    this.host = host;
    this.ctl = new LadderController({ levels: ladder.length });
    this.rates = ladder.map(() => undefined);
  }

  /** One video packet sent (see BandwidthEstimator.onSent). */
  onSent(seq: number, payloadBytes: number, now: number): void {
    this.est.onSent(seq, payloadBytes, now);
  }

  /**
   * The viewer's transport: when it stamps transport-wide sequence numbers, every packet it
   * stamps is counted for the estimator's transport-wide feedback (`onTransportFeedback`).
   */
  bindTransport(tr: ViewerTransport | undefined): void {
    const tcc = tr?.transportCc;
    if (tcc) tcc.onSent = (seq, bytes, copy) => this.est.onTransportSent(seq, bytes, this.host.now(), copy);
  }

  /**
   * One transport-wide feedback packet from the viewer. An overuse is acted on at once, not
   * at the next tick: every moment more on a stream the link cannot carry adds to its queue.
   */
  onTransportFeedback(fb: TransportCcFeedback, now: number): void {
    if (this.est.onTransportFeedback(fb, now) === "overuse") this.decide(now);
  }

  /**
   * One video packet sent (not a retransmission), with sequence number `seq` and
   * `payloadBytes` of payload: counted, and the newest full one is what a running probe
   * copies (see `sendProbe`).
   */
  onSentVideo(seq: number, payloadBytes: number, now: number): void {
    this.onSent(seq, payloadBytes, now);
    // Small packets (a frame's parameter sets, its first bytes) are not copied: a dozen copies
    // of 14 bytes is no probe.
    if (payloadBytes >= MIN_PROBE_PACKET) this.probeSeq = seq;
  }

  /** Is a probe sending now? Then the viewer's pacer should call `sendProbe` (it asks when next). */
  probing(now: number): boolean {
    return this.ctl.probeBps(now, this.est) > 0;
  }

  /**
   * A running probe's copies owed by `now` (see LadderController): its extra rate since it
   * started, in copies of the newest full video packet sent through `resend` (which returns
   * the bytes it sent, 0 when it could not). Called from the viewer's pacer, so the copies are
   * spread over the probe evenly: between the frames of a sparse stream as well (copies
   * sent only after its packets, at frame times, fell short of the rate, and a link that
   * carried the main stream failed its probes). A receiver drops the copies (same sequence
   * number). Returns in how many ms the next copy is owed, −1 when no probe runs.
   */
  sendProbe(tr: ViewerTransport, resend: (tr: ViewerTransport, seq: number) => number, now: number): number {
    const extra = this.ctl.probeBps(now, this.est);
    if (extra <= 0) {
      this.probeCredit = 0;
      this.probeAt = undefined;
      return -1;
    }
    // What a pass held up owes is sent in the next ones (MAX_PROBE_COPIES at a time): the probe's
    // rate over its span is what it measures.
    this.probeCredit += ((now - (this.probeAt ?? now)) * extra) / 8000;
    this.probeAt = now;
    if (this.probeSeq < 0) return PROBE_RETRY_MS;
    const tcc = tr.transportCc;
    if (tcc) tcc.copy = true;
    let bytes = PROBE_RETRY_BYTES;
    for (let n = 0; n < MAX_PROBE_COPIES && this.probeCredit >= bytes; n++) {
      const b = resend(tr, this.probeSeq);
      if (b === 0) {
        // Gone from the viewer's history or not sent: wait for the next full packet.
        this.probeSeq = -1;
        break;
      }
      bytes = b;
      this.probeCredit -= b;
      this.probeBytes += b;
    }
    if (tcc) tcc.copy = false;
    return Math.max(1, Math.min(PROBE_RETRY_MS, ((bytes - this.probeCredit) * 8000) / extra));
  }

  /** Probes made and failed so far. */
  get probes(): { made: number; failed: number; last: { deliveredBps: number; sentBps: number; targetBps: number } } {
    const l = this.ctl.lastProbe;
    return { made: this.ctl.probes, failed: this.ctl.probesFailed, last: { deliveredBps: Math.round(l.deliveredBps), sentBps: Math.round(l.sentBps), targetBps: Math.round(l.targetBps) } };
  }

  /** One receiver report block on the video track. */
  onReport(r: LinkReport): void {
    this.est.onReport(r);
  }

  /**
   * A switch to `id` is about to be made: true when it is this adaptation's step down, which
   * should then be made at once from the target's cached GOP rather than at its next
   * keyframe (every moment on the larger stream adds to a queue on a link that cannot carry
   * it). Asked once per switch.
   */
  fastSwitchTo(id: CameraId): boolean {
    const fast = this.downTo === id;
    this.downTo = undefined;
    return fast;
  }

  /**
   * Was the link found overused within the last 1.5 s? Then a keyframe request is answered
   * by the next live keyframe (or the step down's) rather than a replay of the cached GOP:
   * a GOP of the main stream is seconds of a slow link, queued behind what already waits
   * there.
   */
  congested(now: number): boolean {
    return now - this.est.overuseAt < 1500;
  }

  /**
   * The rate to pace this viewer at, bits/s, while its link queues (a queueing delay past
   * `QUEUED_MS`, or overuse within the last 1.5 s): what the link delivered over the last
   * second, or the last half second when that was less (a link that just slowed down). Undefined on a quiet link (no cap). Whatever more the stream has waits
   * in the viewer's own queue, where a step down leaves it behind and a stale head is
   * dropped, instead of in a queue on the path that every later packet must wait behind.
   */
  pacingCapBps(now: number): number | undefined {
    const capacity = this.est.capacityBps;
    if (this.est.transportWide && capacity > 0) {
      // The link's capacity is measured and its queue known exactly: below the capacity while
      // a queue stands, so that it drains (a loss behind it costs a round trip plus the queue)
      // rather than stand as long as there is anything to send.
      const standing = this.est.queueDelayMs >= TW_QUEUED_MS || now - this.est.overuseAt < 1500;
      return standing ? Math.max(MIN_PACING_BPS, DRAIN_SHARE * capacity) : undefined;
    }
    const queued = this.est.queueDelayMs >= QUEUED_MS || now - this.est.overuseAt < 1500;
    const d = this.est.deliveredBps;
    const recent = this.est.recentDeliveredBps;
    if (!queued || !(d > 0)) return undefined;
    // Never below the estimate: after an overuse that was not the link's (a stall), pacing at
    // what was delivered meanwhile would feed on itself, less sent, less delivered.
    return Math.max(MIN_PACING_BPS, this.est.estimateBps ?? 0, recent > 0 ? Math.min(d, recent) : d);
  }

  /** Where the viewer is on its ladder: the source it is on or going to, or below the last for keyframes only. */
  private level(): number {
    if (this.keyframes && this.host.keyframesOnly()) return this.ladder.length;
    return this.ladder.indexOf((this.host.target() ?? this.host.current()).id);
  }

  /** Periodic decision (the viewer's tick). */
  tick(now: number): void {
    const level = this.level();
    if (level < 0) return; // on a source outside its ladder (moved by hand): nothing to adapt
    const cur = this.host.current();
    if (cur.id !== this.curId) {
      this.leftId = this.curId;
      this.curId = cur.id;
    }
    // Each stream's rate, smoothed (a recorder under load sends in bursts: one second's rate
    // may read half or twice its average, and a low reading invites a step up the link cannot
    // carry); a stream not pulled now keeps its last.
    for (let i = 0; i < this.ladder.length; i++) {
      const id = this.ladder[i]!;
      // Not the stream left behind: it is being released, and its rate falling to nothing
      // is not what it sends.
      if (id === this.leftId) continue;
      const ri = (id === cur.id ? cur : this.host.findSource(id))?.rateBps() ?? 0;
      if (ri > 0) this.rates[i] = this.rates[i] === undefined ? ri : RATE_SMOOTHING * this.rates[i]! + (1 - RATE_SMOOTHING) * ri;
    }
    this.decide(now);
  }

  /** Moves the viewer along its ladder if the controller says so (streams' rates as the last tick smoothed them). */
  private decide(now: number): void {
    const level = this.level();
    if (level < 0) return;
    const cur = this.host.current();
    const failedBefore = this.ctl.probesFailed;
    const next = this.ctl.decide(now, level, this.est, this.rates);
    if (this.ctl.probesFailed > failedBefore) {
      const e = this.est;
      this.host.log.debug("probe failed", { peakQueueMs: Math.round(e.peakQueueMs), verdict: e.verdict, sinceOveruseMs: Math.round(now - e.overuseAt), capacityBps: Math.round(e.capacityBps), queueDelayMs: Math.round(e.queueDelayMs) });
    }
    if (next === level) return;
    const why = next > level ? "network: less bandwidth" : "network: bandwidth back";
    this.host.log.info("viewer adapting to its network", { from: level, to: next, estimateBps: Math.round(this.est.estimateBps ?? 0) });
    if (next === this.ladder.length) {
      this.keyframes = true;
      this.host.stepDown(why, now);
      return;
    }
    if (this.keyframes) {
      this.keyframes = false;
      this.host.requestStepUp();
    }
    const to = this.ladder[next]!;
    this.downTo = next > level ? to : undefined;
    if (to !== (this.host.target() ?? cur).id) this.host.switchTo(to, why);
  }
}
