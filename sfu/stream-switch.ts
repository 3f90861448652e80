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
import { BandwidthEstimator, LadderController, type LinkReport } from "./adapt.ts";
import type { RtpHeaderFields } from "./rtp/packet.ts";
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
  log: Logger;
}

/** Weight of the previous value in each stream's smoothed rate, per tick (about 250 ms): a time constant of some 2.5 s. */
const RATE_SMOOTHING = 0.9;
/** A queueing delay at least this long caps the pacing rate (see `pacingCapBps`), ms. */
const QUEUED_MS = 200;
/** Least pacing rate under such a cap, bits/s. */
const MIN_PACING_BPS = 100_000;
/** At most this many copies of one packet. */
const MAX_PROBE_COPIES = 12;
/** Packets smaller than this are not copied, bytes. */
const MIN_PROBE_PACKET = 500;
/** A probe owes at most this many bytes of copies (what a sparse stream cannot carry is not sent later in a burst). */
const MAX_PROBE_CREDIT = 2 * MAX_PROBE_COPIES * 1200;

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
   * One video packet sent through `tr` with `header` (not a retransmission): counted, and
   * followed by a running probe's copies of it (see `probeCopies`).
   */
  onSentVideo(tr: ViewerTransport, header: RtpHeaderFields, payload: Buffer, now: number): void {
    this.onSent(header.sequenceNumber, payload.length, now);
    for (let n = this.probeCopies(payload.length + 12, now); n > 0 && tr.sendRtp(header, payload); n--);
  }

  /**
   * How many copies of the video packet of `bytes` just sent to send right after it, for a
   * running probe (see LadderController): the probe's extra rate, in bytes owed since the
   * last copy, spread over the packets sent meanwhile. A receiver drops the copies (same
   * sequence number).
   */
  probeCopies(bytes: number, now: number): number {
    const extra = this.ctl.probeBps(now, this.est);
    if (extra <= 0 || bytes <= 0) {
      this.probeCredit = 0;
      this.probeAt = undefined;
      return 0;
    }
    this.probeCredit = Math.min(this.probeCredit + ((now - (this.probeAt ?? now)) * extra) / 8000, MAX_PROBE_CREDIT);
    this.probeAt = now;
    // Small packets (a frame's parameter sets, its first bytes) are not copied: a dozen copies
    // of 14 bytes is no probe, and would use up what a full packet should carry.
    if (bytes < MIN_PROBE_PACKET) return 0;
    const n = Math.min(MAX_PROBE_COPIES, Math.floor(this.probeCredit / bytes));
    this.probeCredit -= n * bytes;
    this.probeBytes += n * bytes;
    return n;
  }

  /** Probes made and failed so far. */
  get probes(): { made: number; failed: number } {
    return { made: this.ctl.probes, failed: this.ctl.probesFailed };
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
    const next = this.ctl.decide(now, level, this.est, this.rates);
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
