/**
 * A camera with a main stream and a substream, served by two real GStreamer recorders:
 * each stream is pulled once whatever the number of viewers and only while watched, and a
 * viewer moves between them on a live session (WHEP PATCH) without renegotiation: same
 * SSRC, sequence numbers without a gap, timestamps going on.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";
import { H264Depacketizer } from "../../sfu/h264/depacketizer.ts";
import { parseSps } from "../../sfu/h264/nal.ts";
import { startGstRtspServer } from "../peers/gst.ts";
import { WeriftViewer, bySequence, sequenceGaps, type ReceivedPacket } from "../peers/werift-viewer.ts";

/** The picture sizes the SPSs in these packets announce, in order ("640x360"). */
function spsSizes(pkts: readonly ReceivedPacket[]): string[] {
  const d = new H264Depacketizer();
  const out: string[] = [];
  for (const p of pkts)
    for (const au of d.push(p.payload, p.sequenceNumber, p.timestamp, p.marker))
      for (const nal of au.nals) {
        const sps = parseSps(nal);
        if (sps) out.push(`${sps.width}x${sps.height}`);
      }
  return out;
}

/** Resolves when `check` holds, polling on the event loop (no fixed sleep decides the outcome). */
async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("camera streams", () => {
  it("pulls each stream once on demand and switches a live viewer between them at a keyframe", async () => {
    await using main = await startGstRtspServer({ width: 640, height: 360, bitrate: 600, gop: 12, noAudio: true });
    await using sub = await startGstRtspServer({ width: 320, height: 180, bitrate: 150, gop: 12, noAudio: true });
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "none" },
      demo: { enabled: false },
      rtsp: { idleStopSeconds: 0 },
      media: { icePortRange: [46100, 46399] },
      cameras: [{ id: "gate", url: main.url, streams: [{ id: "low", url: sub.url, width: 320, height: 180 }] }],
    });
    await using gw = await startGateway({ config, log: silentLogger });

    // The camera lists its streams; an unknown one is refused before any media is set up.
    const cams = (await (await fetch(`${gw.url}/api/cameras`)).json()) as { cameras?: { id: string; streams: unknown }[] } | { id: string; streams: unknown }[];
    const list = Array.isArray(cams) ? cams : (cams.cameras ?? []);
    expect(list.find((c) => c.id === "gate")?.streams).toEqual([{ id: "main" }, { id: "low", width: 320, height: 180 }]);
    await expect(WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gate?stream=nope`, audio: false })).rejects.toMatchObject({ status: 400 });

    // Two tiles on the substream: one pull of it, none of the main stream.
    const a = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gate?stream=sub`, audio: false });
    const b = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gate?stream=sub`, audio: false });
    await Promise.all([a.connected, b.connected]);
    await a.video.waitForCount(30);
    await b.video.waitForCount(30);
    expect(sub.sessions()).toBe(1);
    expect(main.sessions()).toBe(0);

    // One of them opens the camera large: PATCH to the main stream.
    const res = await fetch(a.resource, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ stream: "main" }) });
    expect(res.status).toBe(202);
    const viewerA = gw.sfu.viewerList().find((v) => a.resource.endsWith(v.id))!;
    await until(() => viewerA.sourceId === "gate", "the switch to the main stream");
    expect(main.sessions()).toBe(1);
    expect(sub.sessions()).toBe(1); // b still watches it
    const switchedAt = a.video.packets.length;
    await until(() => a.video.count >= switchedAt + 60, "main-stream packets");
    expect(new Set(a.video.packets.map((p) => p.ssrc)).size).toBe(1);
    expect(sequenceGaps(a.video.packets)).toEqual([]);
    // In the sender's order (a packet NACKed on a starved loopback arrives late).
    const pkts = bySequence(a.video.packets).map((x) => x.packet);
    for (let i = 1; i < pkts.length; i++) expect((pkts[i]!.timestamp - pkts[i - 1]!.timestamp) | 0, `ts at ${i}`).toBeGreaterThanOrEqual(0);
    // The pictures were the substream's, then the main stream's and never the substream's again
    // (their SPSs say so; where the switch fell is read from them, not from when it was seen).
    const sizes = spsSizes(pkts);
    const firstMain = sizes.indexOf("640x360");
    expect(firstMain).toBeGreaterThan(0);
    expect(new Set(sizes.slice(0, firstMain))).toEqual(new Set(["320x180"]));
    expect(new Set(sizes.slice(firstMain))).toEqual(new Set(["640x360"]));

    // The last substream viewer leaves: its pull ends (idleStopSeconds 0), the main one stays.
    await b.close();
    await until(() => sub.sessions() === 0, "the substream's pull to end");
    expect(main.sessions()).toBe(1);
    // Bad stream changes are refused with 400 and change nothing.
    const bad = await fetch(a.resource, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ stream: "nope" }) });
    expect(bad.status).toBe(400);
    const junk = await fetch(a.resource, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: "{" });
    expect(junk.status).toBe(400);
    expect(viewerA.sourceId).toBe("gate");
    await a.close();
  });
  it("keeps the substream pulled while a viewer is on Auto, once whatever their number, released with the last; not when turned off", async () => {
    await using main = await startGstRtspServer({ width: 640, height: 360, bitrate: 600, gop: 12, noAudio: true });
    await using sub = await startGstRtspServer({ width: 320, height: 180, bitrate: 150, gop: 12, noAudio: true });
    const configOf = (warm: boolean) =>
      parseConfig({
        server: { port: 0 },
        auth: { mode: "none" },
        demo: { enabled: false },
        rtsp: { idleStopSeconds: 0 },
        media: { icePortRange: [46100, 46399], autoWarmSubstream: warm },
        cameras: [{ id: "gate", url: main.url, streams: [{ id: "low", url: sub.url, width: 320, height: 180 }] }],
      });
    {
      await using gw = await startGateway({ config: configOf(true), log: silentLogger });
      // Two viewers on Auto, both on the main stream: the substream is pulled once, for a step down.
      const a = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gate`, audio: false });
      const b = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gate?stream=auto`, audio: false });
      await Promise.all([a.connected, b.connected]);
      await a.video.waitForCount(30);
      await until(() => sub.sessions() === 1, "the substream's pull");
      expect(main.sessions()).toBe(1);
      expect(gw.sfu.viewerList().map((v) => v.sourceId)).toEqual(["gate", "gate"]);
      // One pins the main stream: the other still holds the substream.
      const res = await fetch(a.resource, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ stream: "main" }) });
      expect(res.status).toBe(202);
      await b.video.waitForCount(b.video.count + 30);
      expect(sub.sessions()).toBe(1);
      // The last Auto viewer leaves: the substream's pull ends (idleStopSeconds 0), main stays for the other.
      await b.close();
      await until(() => sub.sessions() === 0, "the substream's pull to end");
      expect(main.sessions()).toBe(1);
      await a.close();
    }
    {
      await using gw = await startGateway({ config: configOf(false), log: silentLogger });
      const a = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/gate`, audio: false });
      await a.connected;
      await a.video.waitForCount(60);
      expect(main.sessions()).toBe(1);
      expect(sub.sessions()).toBe(0);
      await a.close();
    }
  });
});
