/**
 * RTP forwarding's figures for `/metrics`: media packets and bytes per link (by the other node
 * and the stream's source, sent as the owner or received as a relaying node), datagrams dropped by
 * reason, links and relays now, and what the relays did (re-subscriptions, adoptions, sources
 * released). Counters only grow: a link that ends keeps its totals under the same labels, so a
 * camera forwarded again to the same node continues its series.
 */
import type { Collector, Sample } from "../http/metrics.ts";
import type { ForwardingStats } from "./forward-relay.ts";

/** The media of one direction, peer node and source, since this node started. */
export interface LinkCount {
  readonly direction: "sent" | "received";
  readonly node: string;
  readonly source: string;
  packets: number;
  bytes: number;
}

/** Totals per (direction, node, source); the oldest are forgotten beyond `max` (label sets stay bounded). */
export class LinkTotals {
  private readonly entries = new Map<string, LinkCount>();
  private readonly max: number;

  constructor(max = 4096) {
    this.max = max;
  }

  /** The totals a link adds to (one lookup when the link opens, none per packet). */
  entry(direction: LinkCount["direction"], node: string, source: string): LinkCount {
    const key = `${direction}\n${node}\n${source}`;
    let e = this.entries.get(key);
    if (!e) {
      e = { direction, node, source, packets: 0, bytes: 0 };
      this.entries.set(key, e);
      if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    }
    return e;
  }

  list(): LinkCount[] {
    return [...this.entries.values()];
  }
}

/** The forwarding collector (metric names `gatehouse_cluster_forward_*`). */
export function forwardingCollector(f: { stats(): ForwardingStats; linkTotals(): readonly LinkCount[] }): Collector {
  return () => {
    const s = f.stats();
    const out: Sample[] = [];
    for (const l of f.linkTotals()) {
      const labels = { direction: l.direction, node: l.node, source: l.source };
      out.push(
        { name: "gatehouse_cluster_forward_packets_total", help: "RTP and RTCP packets forwarded to (sent) or from (received) another node, by link.", type: "counter", value: l.packets, labels },
        { name: "gatehouse_cluster_forward_bytes_total", help: "Payload bytes forwarded to (sent) or from (received) another node, by link.", type: "counter", value: l.bytes, labels },
      );
    }
    for (const [reason, n] of Object.entries(s.drops))
      out.push({ name: "gatehouse_cluster_forward_drops_total", help: "Forwarding datagrams dropped, by reason.", type: "counter", value: n, labels: { reason } });
    out.push(
      { name: "gatehouse_cluster_forward_datagrams_total", help: "Datagrams on the forwarding socket, every kind, accepted or not.", type: "counter", value: s.sent, labels: { direction: "sent" } },
      { name: "gatehouse_cluster_forward_datagrams_total", help: "Datagrams on the forwarding socket, every kind, accepted or not.", type: "counter", value: s.received, labels: { direction: "received" } },
      { name: "gatehouse_cluster_forward_links", help: "Links this node sends now (one per relaying node and camera stream).", type: "gauge", value: s.links },
      { name: "gatehouse_cluster_forward_relays", help: "Camera streams this node relays now from their owner.", type: "gauge", value: s.relays },
      { name: "gatehouse_cluster_forward_resubscribes_total", help: "Relays that found their camera's owner again (it fell silent or left).", type: "counter", value: s.resubscribes },
      { name: "gatehouse_cluster_forward_adopted_total", help: "Relays whose viewers moved to this node's own pull (it took the camera over).", type: "counter", value: s.adopted },
      { name: "gatehouse_cluster_forward_relay_sources_released_total", help: "Relay sources released from the SFU after their relay ended.", type: "counter", value: s.released },
      { name: "gatehouse_cluster_forward_keyframe_requests_total", help: "Keyframe requests a relay sent to its owner.", type: "counter", value: s.keyframeRequests },
    );
    return out;
  };
}
