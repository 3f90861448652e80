/**
 * The media plane with real peers: werift viewers connect through WHEP over HTTP to an
 * Sfu fed by a fake recorder (captured GStreamer H.264 RTP + PCMU), on loopback.
 */
import { afterEach, describe, expect, it } from "vitest";
import { cameraId, viewerId } from "../../config/ids.ts";
import { h264PayloadIsKeyframeStart } from "../../sfu/h264/nal.ts";
import type { ViewerHandle as Viewer } from "../../sfu/sfu.ts";
import { WeriftViewer, sequenceGaps, type ReceivedPacket } from "../peers/werift-viewer.ts";
import { startTestApp, type TestApp } from "./sfu-app.ts";
import { FakeRecorder } from "./sfu-upstream.ts";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: Parameters<typeof startTestApp>[0] = {}): Promise<{ app: TestApp; rec: FakeRecorder }> {
  const app = await startTestApp(opts);
  cleanups.push(() => app.close());
  const rec = new FakeRecorder(app.sfu.source(cameraId("cam1")), { audio: true });
  cleanups.push(async () => rec.stop());
  rec.announce();
  return { app, rec };
}

/** A werift viewer joined over WHEP, connected on both ends (werift reports ICE+DTLS at slightly different moments on each side). */
async function join(app: TestApp): Promise<WeriftViewer> {
  const v = await WeriftViewer.connect({ whepUrl: app.whep("cam1") });
  cleanups.push(() => v.close());
  await v.connected;
  const sv = serverViewer(app, v);
  if (sv.state !== "connected") {
    await new Promise<void>((resolve, reject) => {
      const off = sv.on("state", (s) => {
        if (s === "connected") {
          off();
          resolve();
        } else if (s === "closed") reject(new Error("server viewer closed"));
      });
    });
  }
  return v;
}

/** The server-side viewer behind a WHEP session. */
function serverViewer(app: TestApp, v: WeriftViewer): Viewer {
  const id = viewerId(new URL(v.resource).pathname.split("/").pop()!);
  const sv = app.sfu.viewer(id);
  if (!sv) throw new Error("no server viewer");
  return sv;
}

/** Every sequence number from the first to the last arrived (retransmissions and late arrivals allowed). */
function expectNoGaps(packets: readonly ReceivedPacket[]): void {
  expect(sequenceGaps(packets)).toEqual([]);
}

/** Resolves when the recorder has pushed frames up to GOP position `pos` (0 = IDR). */
function pushTo(rec: FakeRecorder, pos: number): void {
  rec.stop();
  rec.pushFrames(1);
  while (rec.gopPosition !== pos) rec.pushFrames(1);
}

describe("sfu media over werift", () => {
  it("gives two viewers their own SSRCs and starts each at a cached keyframe when joining mid-GOP", async () => {
    const { app, rec } = await setup();
    pushTo(rec, 10);
    const v1 = await join(app);
    const first1 = await v1.video.waitForCount(1);
    expect(h264PayloadIsKeyframeStart(first1.payload)).toBe(true);
    rec.start(10);
    await v1.video.waitForCount(150);
    pushTo(rec, 17);
    const v2 = await join(app);
    const first2 = await v2.video.waitForCount(1);
    expect(h264PayloadIsKeyframeStart(first2.payload)).toBe(true);
    rec.start(10);
    const target = v1.video.count + 150;
    await v1.video.waitForCount(target);
    await v2.video.waitForCount(150);
    await v2.audio.waitForCount(20);

    const s1 = v1.video.ssrcs;
    const s2 = v2.video.ssrcs;
    expect(s1).toHaveLength(1);
    expect(s2).toHaveLength(1);
    expect(s1[0]).not.toBe(s2[0]);
    expect(s1[0]).not.toBe(rec.ssrc);
    expect(v1.audio.ssrcs).toHaveLength(1);
    expect(v1.audio.ssrcs[0]).not.toBe(v2.audio.ssrcs[0]);
    expect(v1.video.packets.every((p) => p.payloadType === 108)).toBe(true); // 42e01f mode 1
    expect(v2.audio.packets.every((p) => p.payloadType === 0 && p.payload.length === 160)).toBe(true);
    expectNoGaps(v1.video.packets);
    expectNoGaps(v2.video.packets);
    expectNoGaps(v2.audio.packets);
    // The same media for both: v2's first packet (its replay's keyframe start) appears in v1's stream.
    expect(v1.video.packets.some((p) => p.payload.equals(first2.payload))).toBe(true);
    const st = serverViewer(app, v2).stats();
    expect(st.keyframesFromCache).toBe(1);
    expect(st.connectMs).toBeGreaterThan(0);
  });

  it("continues viewers' sequence and timestamps across an upstream reconnect", async () => {
    const { app, rec } = await setup();
    rec.start(10);
    const v = await join(app);
    await v.video.waitForCount(100);
    rec.stop();
    const before = v.video.count;
    rec.reconnect();
    rec.start(10);
    await v.video.waitForCount(before + 100);
    rec.stop();
    rec.switchSsrc(); // and a new SSRC without upstreamDown
    rec.start(10);
    await v.video.waitForCount(before + 200);
    expect(v.video.ssrcs).toHaveLength(1);
    expectNoGaps(v.video.packets);
    const unique = [...new Map(v.video.packets.map((p) => [p.sequenceNumber, p])).values()];
    for (let i = 1; i < unique.length; i++) {
      expect((unique[i]!.timestamp - unique[i - 1]!.timestamp) | 0).toBeGreaterThanOrEqual(0);
    }
    expect(app.sfu.source(cameraId("cam1")).stats().sessions).toBe(2);
  });

  it("answers a NACK with the identical packet", async () => {
    const { app, rec } = await setup();
    rec.start(10);
    const v = await join(app);
    await v.video.waitForCount(60);
    const p = v.video.packets[40]!;
    v.sendNack(p.ssrc, [p.sequenceNumber]);
    const again = await v.video.waitFor((q) => q.sequenceNumber === p.sequenceNumber && q !== p, "retransmission");
    expect(again.payload.equals(p.payload)).toBe(true);
    expect([again.timestamp, again.marker, again.payloadType]).toEqual([p.timestamp, p.marker, p.payloadType]);
    const st = serverViewer(app, v).stats();
    expect(st.retransmits).toBeGreaterThanOrEqual(1);
    expect(st.nacks).toBeGreaterThanOrEqual(1);
  });

  it("answers a PLI from the cache, to that viewer only", async () => {
    const { app, rec } = await setup({ sfu: { keyframeResendMinMs: 0 } });
    pushTo(rec, 12);
    const a = await join(app);
    const b = await join(app);
    await a.video.waitForCount(1);
    await b.video.waitForCount(1);
    const sentAt = performance.now();
    a.sendPli(a.video.ssrcs[0]!);
    const kf = await a.video.waitFor((p) => p.at > sentAt && h264PayloadIsKeyframeStart(p.payload), "replayed keyframe");
    expect(kf.sequenceNumber).not.toBe(a.video.packets[0]!.sequenceNumber);
    expect(serverViewer(app, a).stats().keyframesFromCache).toBe(2);
    expect(serverViewer(app, a).stats().plis).toBe(1);
    expect(serverViewer(app, b).stats().keyframesFromCache).toBe(1);
    expectNoGaps(a.video.packets);
  });

  it("drops frames for a slow viewer only, and counts why", async () => {
    // Queue-age drops off (10 s): a starved test process must not age the fast viewer's queue.
    const { app, rec } = await setup({ sfu: { viewerQueuePackets: 64, pacingBurstBytes: 4000, maxQueueDelayMs: 10_000 } });
    pushTo(rec, 1); // the cached GOP (one IDR frame) fits the 64-packet queue
    const slow = await join(app);
    const fast = await join(app);
    serverViewer(app, slow).setPacingRate(40_000);
    rec.start(5);
    await fast.video.waitForCount(600);
    rec.stop();
    const s = serverViewer(app, slow).stats();
    const f = serverViewer(app, fast).stats();
    expect(s.drops.queueFull).toBeGreaterThan(0);
    expect(s.drops.awaitingKeyframe).toBeGreaterThan(0);
    expect(f.drops).toEqual({ queueFull: 0, awaitingKeyframe: 0, expired: 0, codecNotNegotiated: 0, notConnected: 0, steppedDown: 0, queueDelay: 0 });
    expect(f.packetsOut).toBeGreaterThan(s.packetsOut);
    expectNoGaps(fast.video.packets);
    expectNoGaps(slow.video.packets);
  });

  it("closes viewers on DELETE, on silence, and with the Sfu, saying why", async () => {
    const { app, rec } = await setup({ sfu: { rtcpTimeoutMs: 1500 } });
    rec.start(10);
    const source = app.sfu.source(cameraId("cam1"));
    const counts: number[] = [];
    source.on("viewers", (n) => counts.push(n));

    const a = await join(app);
    const sa = serverViewer(app, a);
    const closedA = new Promise<string>((r) => sa.on("closed", r));
    expect(await a.close()).toBe(200);
    expect(await closedA).toBe("client delete");

    const b = await join(app);
    const sb = serverViewer(app, b);
    const closedB = new Promise<string>((r) => sb.on("closed", r));
    await b.abandon(); // tab gone, no DELETE
    expect(await closedB).toBe("viewer silent (no RTCP)");

    const c = await join(app);
    const sc = serverViewer(app, c);
    const closedC = new Promise<string>((r) => sc.on("closed", r));
    await app.sfu.close("test over");
    expect(await closedC).toBe("sfu closing");
    expect(counts).toEqual([1, 0, 1, 0, 1, 0]);
  });
});
