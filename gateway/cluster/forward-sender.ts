/**
 * The owner's side of RTP forwarding: a tap on each camera stream's source (between the ingest
 * and the SFU) that copies what the ingest pushes to every node relaying the stream, and holds
 * the stream's pull while any does (a relaying node's viewers are demand like local ones, so the
 * recorder is still pulled once for the cluster).
 *
 * A new link, or a relaying node that asks for a keyframe, gets a new epoch: the tracks, the last
 * sender report of each track and the cached group of pictures (from the last keyframe on), then
 * the live packets. Tracks are repeated about once a second (a lost one is recovered) and a link
 * not kept alive for `silenceMs` ends.
 */
import type { KeyObject } from "node:crypto";
import type dgram from "node:dgram";
import type { CameraId } from "../../config/ids.ts";
import type { Logger } from "../../config/log.ts";
import { h264PayloadIsKeyframeStart } from "../../sfu/h264/nal.ts";
import type { MediaSink, TrackSpec } from "../../sfu/types.ts";
import type { RelayEndpoint } from "./forward-link.ts";
import type { LinkCount, LinkTotals } from "./forward-metrics.ts";
import { decodeRelay, encodeRelay, encodeTracks, ReplayWindow, RelayType } from "./forward-wire.ts";

/** Packets of the cached group of pictures at most; a longer one is not replayed (the next keyframe is waited for). */
const MAX_GOP_PACKETS = 2000;
const RTCP_SR = 200;

interface OwnerLink {
  readonly channel: number;
  readonly source: CameraId;
  readonly node: string;
  readonly key: KeyObject;
  readonly address: string;
  readonly port: number;
  counter: number;
  epoch: number;
  lastHeard: number;
  readonly window: ReplayWindow;
  readonly count: LinkCount | undefined;
}

/** One stream's tap. */
class Tap implements MediaSink {
  tracks: readonly TrackSpec[] | undefined;
  video = -1;
  gop: { track: number; packet: Buffer }[] = [];
  gopUsable = false;
  readonly lastSr = new Map<number, Buffer>();
  readonly links = new Set<OwnerLink>();
  private readonly downstream: MediaSink;
  private readonly owner: RelayTaps;
  readonly setDemand: (relays: number) => void;

  constructor(downstream: MediaSink, owner: RelayTaps, setDemand: (relays: number) => void) {
    this.downstream = downstream;
    this.owner = owner;
    this.setDemand = setDemand;
  }

  setTracks(tracks: readonly TrackSpec[]): void {
    this.downstream.setTracks(tracks);
    this.tracks = tracks;
    this.video = tracks.findIndex((t) => t.kind === "video" && t.codec === "H264");
    this.gop = [];
    this.gopUsable = false;
    this.lastSr.clear();
    for (const l of this.links) this.owner.restart(this, l);
  }

  pushRtp(track: number, packet: Buffer): void {
    this.downstream.pushRtp(track, packet);
    if (track === this.video && packet.length > 12) {
      const cc = packet[0]! & 0x0f;
      const ext = (packet[0]! & 0x10) !== 0;
      let off = 12 + cc * 4;
      if (ext && packet.length >= off + 4) off += 4 + packet.readUInt16BE(off + 2) * 4;
      if (off < packet.length && h264PayloadIsKeyframeStart(packet.subarray(off))) {
        this.gop = [];
        this.gopUsable = true;
      }
      if (this.gopUsable) {
        if (this.gop.length >= MAX_GOP_PACKETS) {
          this.gop = [];
          this.gopUsable = false;
        } else this.gop.push({ track, packet: Buffer.from(packet) });
      }
    }
    if (this.links.size > 0) for (const l of this.links) this.owner.send(l, RelayType.rtp, track, packet);
  }

  pushRtcp(track: number, packet: Buffer): void {
    this.downstream.pushRtcp(track, packet);
    if (packet.length >= 28 && packet[1] === RTCP_SR) this.lastSr.set(track, Buffer.from(packet));
    if (this.links.size > 0) for (const l of this.links) this.owner.send(l, RelayType.rtcp, track, packet);
  }

  upstreamDown(reason: string): void {
    this.downstream.upstreamDown(reason);
    this.tracks = undefined;
    this.gop = [];
    this.gopUsable = false;
    this.lastSr.clear();
    const why = Buffer.from(reason.slice(0, 200));
    for (const l of this.links) this.owner.send(l, RelayType.down, 0, why);
  }
}

export interface RelayTapsOptions {
  /** A link not kept alive this long ends, ms. */
  silenceMs: number;
  /** Links this node sends at most (all streams together). */
  maxLinks: number;
  /** Packets and bytes sent, by relaying node and source (for /metrics). */
  totals?: LinkTotals;
  clock?: () => number;
  log: Logger;
}

/** Every stream's tap on this node and the links it sends. */
export class RelayTaps {
  private readonly taps = new Map<CameraId, Tap>();
  private readonly links = new Map<number, OwnerLink>();
  private endpoint: RelayEndpoint | undefined;
  private readonly o: RelayTapsOptions;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  /** Datagrams sent to relaying nodes, by type. */
  readonly counters = { packets: 0, keyframeRequests: 0, linksOpened: 0, linksEnded: 0 };

  constructor(o: RelayTapsOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  /** The per-link totals this node's taps add to (shared with its relays). */
  get totals(): LinkTotals | undefined {
    return this.o.totals;
  }

  /**
   * The sink the camera registry gives the ingest of `source` instead of the source itself;
   * `setDemand` adds the relaying nodes to the stream's demand.
   */
  wrap(source: CameraId, downstream: MediaSink, setDemand: (relays: number) => void): MediaSink {
    const tap = new Tap(downstream, this, setDemand);
    this.taps.set(source, tap);
    return tap;
  }

  /** Starts sending once the socket is bound (the cluster started). */
  attach(endpoint: RelayEndpoint): void {
    this.endpoint = endpoint;
    this.timer = setInterval(() => this.tick(), Math.max(100, Math.floor(this.o.silenceMs / 4)));
    this.timer.unref();
  }

  /** Links now sent. */
  get linkCount(): number {
    return this.links.size;
  }

  /**
   * A relaying node subscribes to `source`: a new link (and, if the stream was idle, its pull
   * starts). Throws when the stream is unknown here or the link limit is reached.
   */
  open(o: { source: CameraId; node: string; channel: number; key: KeyObject; address: string; port: number }): void {
    const tap = this.taps.get(o.source);
    if (!tap || !this.endpoint) throw new Error("no such stream on this node");
    if (this.links.size >= this.o.maxLinks) throw new Error(`this node forwards ${this.links.size} links already (cluster.forward.maxLinks)`);
    const link: OwnerLink = { ...o, counter: 0, epoch: 0, lastHeard: this.clock(), window: new ReplayWindow(), count: this.o.totals?.entry("sent", o.node, o.source) };
    this.links.set(o.channel, link);
    tap.links.add(link);
    this.counters.linksOpened++;
    this.endpoint.owned.set(o.channel, { datagram: (buf, from) => this.fromRelay(link, buf, from) });
    tap.setDemand(tap.links.size);
    this.restart(tap, link);
    this.o.log.info("cluster: forwarding a camera stream to a node", { source: o.source, node: o.node, address: `${o.address}:${o.port}` });
  }

  /** Ends every link of these sources (the camera went to another node), telling the relaying nodes. */
  endSources(sources: readonly CameraId[], why: string): void {
    for (const s of sources) for (const l of [...(this.taps.get(s)?.links ?? [])]) this.end(l, why, true);
  }

  /** A new epoch on a link: tracks, last sender reports, cached pictures. */
  restart(tap: Tap, l: OwnerLink): void {
    l.epoch = (l.epoch + 1) & 0xff;
    if (!tap.tracks) return;
    this.send(l, RelayType.tracks, 0, encodeTracks(tap.tracks));
    for (const [track, sr] of tap.lastSr) this.send(l, RelayType.rtcp, track, sr);
    if (tap.gopUsable) for (const p of tap.gop) this.send(l, RelayType.rtp, p.track, p.packet);
  }

  send(l: OwnerLink, type: RelayType, track: number, payload: Uint8Array): void {
    if (!this.endpoint) return;
    l.counter = (l.counter + 1) >>> 0;
    this.counters.packets++;
    if (l.count && (type === RelayType.rtp || type === RelayType.rtcp)) {
      l.count.packets++;
      l.count.bytes += payload.length;
    }
    this.endpoint.send(encodeRelay(l.key, { type, channel: l.channel, counter: l.counter, track, epoch: l.epoch }, payload), l.port, l.address);
  }

  private fromRelay(l: OwnerLink, buf: Buffer, _from: dgram.RemoteInfo): void {
    const ep = this.endpoint!;
    const d = decodeRelay(buf, l.key);
    if (!d.ok) return ep.drop(d.reason);
    if (!l.window.accept(d.header.counter)) return ep.drop("replay");
    l.lastHeard = this.clock();
    if (d.header.type === RelayType.keyframe) {
      this.counters.keyframeRequests++;
      const tap = this.taps.get(l.source);
      if (tap) this.restart(tap, l);
    } else if (d.header.type === RelayType.bye) this.end(l, "the relaying node left", false);
  }

  private end(l: OwnerLink, why: string, tell: boolean): void {
    if (this.links.get(l.channel) !== l) return;
    if (tell) this.send(l, RelayType.bye, 0, Buffer.alloc(0));
    this.links.delete(l.channel);
    this.endpoint?.owned.delete(l.channel);
    this.counters.linksEnded++;
    const tap = this.taps.get(l.source);
    if (tap) {
      tap.links.delete(l);
      tap.setDemand(tap.links.size);
    }
    this.o.log.info("cluster: forwarding to a node ended", { source: l.source, node: l.node, why });
  }

  private tick(): void {
    const now = this.clock();
    for (const l of [...this.links.values()]) {
      if (now - l.lastHeard > this.o.silenceMs) {
        this.end(l, "no keep-alive", false);
        continue;
      }
      // Tracks again (a lost one is recovered), or while the stream is down a word that the link lives.
      const tap = this.taps.get(l.source);
      if (tap?.tracks) this.send(l, RelayType.tracks, 0, encodeTracks(tap.tracks));
      else this.send(l, RelayType.down, 0, Buffer.from("waiting for the recorder"));
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const l of [...this.links.values()]) this.end(l, "node closing", true);
  }
}
