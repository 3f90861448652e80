/**
 * The relaying node's side of RTP forwarding: a relay source per forwarded stream (an SFU source
 * of its own, `<stream source>@relay`, fed by the owner's datagrams instead of an ingest), which
 * this node's viewers of the stream watch. The relay keeps its link alive while anyone watches,
 * asks for a keyframe when it has none to give, and when the owner falls silent finds the
 * camera's owner again: another node (subscribe there), or this node (its viewers move to the
 * local pull at its first keyframe, without renegotiation). A relay that ends (no viewer left,
 * or this node pulls the camera now) releases its SFU source once its last viewer has moved on,
 * so relays of cameras watched once do not pile up in the SFU.
 */
import type { KeyObject } from "node:crypto";
import type dgram from "node:dgram";
import type { CameraId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import { ViewerCloseReasons, type SourceHandle, type SourceWatcher, type ViewerHandle } from "../../sfu/api.ts";
import type { RelayEndpoint } from "./forward-link.ts";
import type { LinkCount, LinkTotals } from "./forward-metrics.ts";
import { decodeRelay, decodeTracks, encodeRelay, ReplayWindow, RelayType } from "./forward-wire.ts";

/** A link the owner granted. */
export interface RelaySubscription {
  channel: number;
  key: KeyObject;
  /** Where the owner's datagrams come from and keep-alives go. */
  address: string;
  port: number;
}

export interface RelayReceiversOptions {
  endpoint: RelayEndpoint;
  sfu: { source(id: CameraId): SourceHandle; findSource(id: CameraId): SourceHandle | undefined; watchersOf(id: CameraId): SourceWatcher[]; releaseSource(id: CameraId): boolean };
  /** Packets and bytes received, by owner node and source (for /metrics). */
  totals?: LinkTotals;
  /** Told when a relay's owner fell silent or left (its viewers' pages hear that the camera moves). */
  onOwnerLost?: (relaySource: CameraId, camera: string) => void;
  /** Asks `node` (the owner) for a link of the camera's stream. */
  subscribe(camera: string, stream: string, node: string): Promise<RelaySubscription>;
  /** Who owns the camera now (taking it over when its owner is gone). */
  owner(camera: string): Promise<{ self: boolean; node: string }>;
  /** The source this node pulls for the camera's stream when it owns the camera. */
  localSource(camera: string, stream: string): CameraId;
  /** The owner silent this long: find it again; no viewer this long: the relay ends, ms. */
  silenceMs: number;
  clock?: () => number;
  log: Logger;
}

interface Relay {
  readonly camera: string;
  readonly stream: string;
  readonly id: CameraId;
  readonly source: SourceHandle;
  node: string | undefined;
  sub: RelaySubscription | undefined;
  window: ReplayWindow;
  counter: number;
  /** The owner's epoch whose tracks the source has, undefined before (or after a `down`). */
  epoch: number | undefined;
  lastPacketAt: number;
  subscribedAt: number;
  keyframeAskedAt: number;
  idleSince: number | undefined;
  /** After a failed attempt to find the owner: when to try again (ms), and the failures in a row. */
  retryAt: number | undefined;
  failures: number;
  resolving: Promise<void> | undefined;
  closed: boolean;
  /** Packets and bytes from the current owner. */
  count: LinkCount | undefined;
}

/** SwitchInfo.reason of a source switch whose target sent no keyframe in time (sfu/api.ts). */
const SWITCH_TIMED_OUT = "no keyframe in time";

/** The relay source of a camera stream's source. */
export function relaySourceId(source: CameraId): CameraId {
  return `${source}@relay` as CameraId;
}

/** Is this SFU source a relay of another node's pull (`relaySourceId`)? */
export function isRelaySource(source: string): boolean {
  return source.endsWith("@relay");
}

/** The source a relay carries (`relaySourceId`'s inverse); any other source is itself. */
export function pulledSource(source: string): string {
  return isRelaySource(source) ? source.slice(0, -"@relay".length) : source;
}

export class RelayReceivers {
  private readonly relays = new Map<CameraId, Relay>();
  private readonly pending = new Map<CameraId, Promise<void>>();
  private readonly o: RelayReceiversOptions;
  private readonly clock: () => number;
  private readonly timer: NodeJS.Timeout;
  /** How often relays are checked, ms: also the wait after a failed attempt to find an owner. */
  private readonly tickMs: number;
  /** Relay sources ended but still watched (viewers moving to the local pull): released once idle. */
  private readonly draining = new Set<CameraId>();
  readonly counters = { packets: 0, resubscribes: 0, adopted: 0, keyframeRequests: 0, released: 0, switchRetries: 0 };

  constructor(o: RelayReceiversOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
    this.tickMs = Math.max(100, Math.floor(o.silenceMs / 4));
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  /** Streams relayed here now. */
  get count(): number {
    return this.relays.size;
  }

  /** Whether this node relays the camera's stream now. */
  has(camera: string, stream: string): boolean {
    return this.relays.has(relaySourceId(this.o.localSource(camera, stream)));
  }

  /**
   * The relay source of the camera's stream, subscribing to `node` (its owner) when this node
   * does not relay it yet. Throws when the owner refuses or cannot be reached.
   */
  async ensure(camera: string, stream: string, node: string): Promise<CameraId> {
    const id = relaySourceId(this.o.localSource(camera, stream));
    const existing = this.relays.get(id);
    if (existing && !existing.closed) return id;
    // Viewers arriving together share one subscription.
    let pending = this.pending.get(id);
    if (!pending) {
      pending = this.open(camera, stream, id, node).finally(() => this.pending.delete(id));
      this.pending.set(id, pending);
    }
    await pending;
    return id;
  }

  private async open(camera: string, stream: string, id: CameraId, node: string): Promise<void> {
    const now = this.clock();
    this.draining.delete(id);
    const r: Relay = {
      camera,
      stream,
      id,
      source: this.o.sfu.source(id),
      node: undefined,
      sub: undefined,
      window: new ReplayWindow(),
      counter: 0,
      epoch: undefined,
      lastPacketAt: now,
      subscribedAt: now,
      keyframeAskedAt: now,
      idleSince: undefined,
      retryAt: undefined,
      failures: 0,
      resolving: undefined,
      closed: false,
      count: undefined,
    };
    try {
      await this.subscribe(r, node);
    } catch (err) {
      this.release(id);
      throw err;
    }
    this.relays.set(id, r);
  }

  private async subscribe(r: Relay, node: string): Promise<void> {
    const sub = await this.o.subscribe(r.camera, r.stream, node);
    if (r.sub) this.o.endpoint.relayed.delete(r.sub.channel);
    // Another owner (or the same node started again): its pull is another upstream session. The
    // source forgets the old one's pictures and takes the new link's first tracks whatever their
    // epoch (every link starts at 1, so the dead link's epoch may equal the new one's).
    if (r.epoch !== undefined) {
      r.epoch = undefined;
      r.source.upstreamDown(`the camera moved to ${node}`);
    }
    r.sub = sub;
    r.node = node;
    r.count = this.o.totals?.entry("received", node, r.id);
    r.window = new ReplayWindow();
    r.counter = 0;
    r.lastPacketAt = r.subscribedAt = r.keyframeAskedAt = this.clock();
    this.o.endpoint.relayed.set(sub.channel, { datagram: (buf, from) => this.fromOwner(r, buf, from) });
  }

  private fromOwner(r: Relay, buf: Buffer, from: dgram.RemoteInfo): void {
    const ep = this.o.endpoint;
    const sub = r.sub;
    if (!sub || r.closed) return ep.drop("unknownChannel");
    const d = decodeRelay(buf, sub.key);
    if (!d.ok) return ep.drop(d.reason);
    if (from.port !== sub.port) return ep.drop("unexpected");
    if (!r.window.accept(d.header.counter)) return ep.drop("replay");
    r.lastPacketAt = this.clock();
    r.retryAt = undefined; // the owner speaks again: no retry pending
    r.failures = 0;
    const { type, epoch, track } = d.header;
    switch (type) {
      case RelayType.rtp:
      case RelayType.rtcp:
        if (epoch !== r.epoch) return ep.drop("staleEpoch");
        this.counters.packets++;
        if (r.count) {
          r.count.packets++;
          r.count.bytes += d.payload.length;
        }
        if (type === RelayType.rtp) r.source.pushRtp(track, d.payload);
        else r.source.pushRtcp(track, d.payload);
        return;
      case RelayType.tracks: {
        if (epoch === r.epoch) return; // the once-a-second repeat
        const tracks = decodeTracks(d.payload);
        if (!tracks) return ep.drop("malformed");
        if (r.epoch !== undefined) r.source.upstreamDown("the forwarding node started a new upstream session");
        r.epoch = epoch;
        r.source.setTracks(tracks);
        return;
      }
      case RelayType.down:
        if (r.epoch === undefined) return;
        r.epoch = undefined;
        r.source.upstreamDown(`at the camera's node: ${d.payload.toString("utf8")}`);
        return;
      case RelayType.bye:
        // The owner let the camera go (lease lost, shutdown): find its owner now.
        r.lastPacketAt = -Infinity;
        this.resolve(r);
        return;
      default:
        return ep.drop("unexpected");
    }
  }

  private send(r: Relay, type: RelayType): void {
    const sub = r.sub;
    if (!sub) return;
    r.counter = (r.counter + 1) >>> 0;
    this.o.endpoint.send(encodeRelay(sub.key, { type, channel: sub.channel, counter: r.counter, track: 0, epoch: r.epoch ?? 0 }, Buffer.alloc(0)), sub.port, sub.address);
  }

  private tick(): void {
    const now = this.clock();
    const silence = this.o.silenceMs;
    for (const id of [...this.draining]) this.release(id);
    for (const r of [...this.relays.values()]) {
      if (r.source.viewerCount === 0) {
        r.idleSince ??= now;
        if (now - r.idleSince > silence) {
          this.end(r, "no viewer");
          continue;
        }
      } else r.idleSince = undefined;
      if (r.resolving) continue;
      this.send(r, RelayType.keep);
      if (r.retryAt !== undefined ? now >= r.retryAt : now - r.lastPacketAt > silence) {
        this.resolve(r);
        continue;
      }
      // Tracks but nothing decodable for a while (the replayed keyframe was lost): ask again.
      if (r.epoch !== undefined && now - r.keyframeAskedAt > silence && r.source.viewerCount > 0 && !r.source.stats().hasKeyframe) {
        r.keyframeAskedAt = now;
        this.counters.keyframeRequests++;
        this.send(r, RelayType.keyframe);
      }
    }
  }

  /** The owner fell silent or left: find the camera's owner and subscribe there, or pull here. */
  private resolve(r: Relay): void {
    if (r.resolving || r.closed) return;
    this.counters.resubscribes++;
    this.o.onOwnerLost?.(r.id, r.camera);
    r.resolving = (async () => {
      try {
        const owner = await this.o.owner(r.camera);
        if (r.closed) return;
        if (owner.self) {
          this.adopt(r);
          return;
        }
        this.o.log.info("cluster: forwarded camera: subscribing to its owner", { camera: r.camera, stream: r.stream, node: owner.node, was: r.node });
        await this.subscribe(r, owner.node);
        r.retryAt = undefined;
        r.failures = 0;
      } catch (err) {
        // Typically the dead owner, still announced (its announcement lapses after
        // `cluster.nodeTtlMs`) or still holding its lease: try again every tick (a Redis call and,
        // while it is announced, a refused request), so the camera is taken over within a tick of
        // the lapse rather than a silence. Logged at the first failure and once a silence after.
        r.failures++;
        r.retryAt = this.clock() + this.tickMs;
        const log = r.failures === 1 || r.failures % Math.max(1, Math.round(this.o.silenceMs / this.tickMs)) === 0 ? "warn" : "debug";
        this.o.log[log]("cluster: forwarded camera: its owner cannot be reached yet", { camera: r.camera, failures: r.failures, retryInMs: this.tickMs, err });
      } finally {
        r.resolving = undefined;
      }
    })();
  }

  /**
   * This node pulls the camera now: its viewers and the grid slots bound to the relay move to the
   * local source (at its first keyframe; a slot is re-bound there, its stream going on).
   */
  private adopt(r: Relay): void {
    const local = this.o.localSource(r.camera, r.stream);
    this.counters.adopted++;
    const watchers = this.o.sfu.watchersOf(r.id);
    for (const w of watchers) {
      if (w.kind === "viewer") this.moveToLocal(w.viewer, r.id, local);
      else
        void w.session.bind(w.mid, local).catch((err: unknown) => {
          // Left on a relay that sends nothing any more it would freeze: ended, its page binds again.
          this.o.log.warn("cluster: a grid slot cannot move to the local pull; ending it", { session: w.session.id, slot: w.mid, source: local, err });
          void w.session.unbind(w.mid, ViewerCloseReasons.takenOver).catch(() => {});
        });
    }
    this.o.log.info("cluster: forwarded camera now pulled here", { camera: r.camera, stream: r.stream, watchers: watchers.length });
    this.end(r, "pulled here now");
  }

  /**
   * Moves a viewer of an ended relay to this node's own pull. The switch is made at the pull's
   * first keyframe; when that takes longer than the switch allows (a slow recorder, a loaded
   * node), the viewer would stay on a relay that sends nothing any more and never play again:
   * it is asked again, for as long as it sits on the relay's source.
   */
  private moveToLocal(v: ViewerHandle, relay: CameraId, local: CameraId): void {
    const off = v.on("switched", (info) => {
      if (info.to !== local) return;
      // Only a switch that ran out of time is asked again (not one superseded by another move).
      if (info.ok || info.reason !== SWITCH_TIMED_OUT || v.state === "closed" || v.sourceId !== relay || this.relays.has(relay)) return off();
      this.counters.switchRetries++;
      this.o.log.info("cluster: a viewer's move to the local pull timed out; asking again", { viewer: v.id, source: local, why: info.reason });
      v.switchSource(local, "this node pulls the camera now");
    });
    v.once("closed", () => off());
    v.switchSource(local, "this node pulls the camera now");
  }

  private end(r: Relay, why: string): void {
    if (r.closed) return;
    this.send(r, RelayType.bye);
    r.closed = true;
    if (r.sub) this.o.endpoint.relayed.delete(r.sub.channel);
    if (r.epoch !== undefined) r.source.upstreamDown(`relay ended: ${why}`);
    this.relays.delete(r.id);
    this.o.log.debug("cluster: relay ended", { camera: r.camera, stream: r.stream, why });
    this.release(r.id);
  }

  /** Releases an ended relay's SFU source now if nobody watches it, else at a later tick (its viewers moving on). */
  private release(id: CameraId): void {
    if (this.relays.has(id)) {
      this.draining.delete(id); // in use again
      return;
    }
    if (this.o.sfu.releaseSource(id)) {
      this.counters.released++;
      this.draining.delete(id);
    } else if ((this.o.sfu.findSource(id)?.viewerCount ?? 0) > 0) this.draining.add(id);
    else this.draining.delete(id);
  }

  close(): void {
    clearInterval(this.timer);
    for (const r of [...this.relays.values()]) this.end(r, "node closing");
  }
}
