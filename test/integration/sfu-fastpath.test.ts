/**
 * The owned forwarding path end to end: our SRTP context and direct socket writes on
 * one side, werift's own SRTP decryption in a real WHEP viewer on the other, for both
 * DTLS-SRTP profiles. The viewer's sequence numbers start just below 65536 so the
 * rollover counter changes mid-test; on the way to the viewer datagrams are dropped and
 * swapped (loss and reordering), lost ones are repaired by NACK, and in the end every
 * byte the viewer decrypted is compared with what the source stored.
 */
import { afterEach, describe, expect, it } from "vitest";
// werift as the DTLS client survives a repeated HelloVerifyRequest (a loaded machine).
import "../peers/werift-dtls-client.ts";
import { cameraId, viewerId } from "../../config/ids.ts";
import type { PacketRing } from "../../sfu/ring.ts";
import type { ViewerHandle as Viewer } from "../../sfu/sfu.ts";
import { SrtpProfile } from "../../sfu/srtp/kdf.ts";
import { chromiumVideoCodecs, type ReceivedPacket, WeriftViewer } from "../peers/werift-viewer.ts";
import { loopbackPeerConnection } from "../peers/loopback-peer.ts";
import { startTestApp, type TestApp } from "./sfu-app.ts";
import { FakeRecorder } from "./sfu-upstream.ts";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** What the source stored for one extended sequence number. */
interface Stored {
  payload: Buffer;
  marker: boolean;
}

/** Records every packet the source puts into its video history. */
function tapRing(ring: PacketRing): Map<number, Stored> {
  const stored = new Map<number, Stored>();
  const put = ring.put.bind(ring);
  ring.put = (ext, ts, flags, payload, arrival) => {
    const ok = put(ext, ts, flags, payload, arrival);
    if (ok) stored.set(ext, { payload: Buffer.from(payload), marker: (flags & 1) !== 0 });
    return ok;
  };
  return stored;
}

interface Impairment {
  dropped: Set<number>;
  swapped: number;
}

/**
 * Drops the first copy of every 13th RTP datagram and swaps every 7th with the one
 * after it, before werift sees them (the RTP header is in the clear, RFC 3711 §3.1).
 * Retransmissions (a sequence number seen before) always pass.
 */
function impair(v: WeriftViewer): Impairment {
  const out: Impairment = { dropped: new Set(), swapped: 0 };
  const conn = v.pc.dtlsTransports[0]!.iceTransport.connection as unknown as {
    protocols: Array<{ datagramReceived(data: Buffer, addr: unknown): void }>;
  };
  const seen = new Set<number>();
  let n = 0;
  for (const protocol of conn.protocols) {
    const deliver = protocol.datagramReceived.bind(protocol);
    let held: { data: Buffer; addr: unknown; timer: NodeJS.Timeout } | undefined;
    const release = () => {
      if (!held) return;
      clearTimeout(held.timer);
      const h = held;
      held = undefined;
      deliver(h.data, h.addr);
    };
    protocol.datagramReceived = (data: Buffer, addr: unknown) => {
      const b0 = data[0]!;
      const b1 = data[1]!;
      // RFC 7983: 128–191 is RTP/RTCP; RFC 5761: 192–223 in the second byte is RTCP.
      if (b0 < 128 || b0 > 191 || (b1 >= 192 && b1 <= 223)) return deliver(data, addr);
      const seq = data.readUInt16BE(2);
      if (seen.has(seq)) {
        deliver(data, addr);
        return;
      }
      seen.add(seq);
      n++;
      if (n % 13 === 0) {
        out.dropped.add(seq);
        return;
      }
      if (held) {
        deliver(data, addr); // the later packet first …
        release(); // … then the one held back
        return;
      }
      if (n % 7 === 0) {
        out.swapped++;
        held = { data, addr, timer: setTimeout(release, 30) };
        return;
      }
      deliver(data, addr);
    };
  }
  return out;
}

function serverViewer(app: TestApp, v: WeriftViewer): Viewer {
  const sv = app.sfu.viewer(viewerId(new URL(v.resource).pathname.split("/").pop()!));
  if (!sv) throw new Error("no server viewer");
  return sv;
}

async function connectedOnServer(sv: Viewer): Promise<void> {
  if (sv.state === "connected") return;
  await new Promise<void>((resolve, reject) => {
    const off = sv.on("state", (s) => {
      if (s === "connected") {
        off();
        resolve();
      } else if (s === "closed") reject(new Error("server viewer closed"));
    });
  });
}

/** Unwraps 16-bit sequence numbers in arrival order into a monotonic index space. */
function unwrapAll(packets: readonly ReceivedPacket[]): Map<number, ReceivedPacket> {
  const out = new Map<number, ReceivedPacket>();
  let ext = -1;
  for (const p of packets) {
    if (ext < 0) ext = p.sequenceNumber;
    else {
      const d = ((p.sequenceNumber - (ext & 0xffff) + 0x8000) & 0xffff) - 0x8000;
      const e = ext + d;
      if (e > ext) ext = e;
      const prev = out.get(e);
      if (prev) expect(prev.payload.equals(p.payload), `duplicate of seq ${p.sequenceNumber} differs`).toBe(true);
      if (!prev) out.set(e, p);
      continue;
    }
    out.set(ext, p);
  }
  return out;
}

describe.each([
  ["AEAD_AES_128_GCM", undefined],
  ["AES_CM_128_HMAC_SHA1_80", [SrtpProfile.AES128_CM_HMAC_SHA1_80]],
] as const)("owned SRTP path, %s", (profileName, viewerProfiles) => {
  it("delivers every byte the source stored, across a sequence wrap, under loss and reordering, repaired by NACK", async () => {
    // Initial sequence ⌊0.9993 · 65536⌋ = 65490: the wrap comes a few dozen packets in.
    const app = await startTestApp({ sfu: { random: () => 0.9993 } });
    cleanups.push(() => app.close());
    const source = app.sfu.source(cameraId("cam1"));
    const rec = new FakeRecorder(source, { audio: false });
    cleanups.push(async () => rec.stop());
    rec.announce();
    rec.pushFrames(1); // the first IDR: something cached for the join
    const stored = tapRing(source.ring(0)!);
    // (the IDR went in before the tap: replay it again so the tap sees what the viewer gets)
    rec.reconnect();
    rec.pushFrames(3);

    const v = await WeriftViewer.connect({ whepUrl: app.whep("cam1"), audio: false, timeoutMs: 15_000 });
    cleanups.push(() => v.close());
    if (viewerProfiles) (v.pc.dtlsTransports[0] as unknown as { srtpProfiles: number[] }).srtpProfiles = [...viewerProfiles];
    const imp = impair(v);
    await v.connected;
    const sv = serverViewer(app, v);
    await connectedOnServer(sv);

    rec.start(10);
    await v.video.waitForCount(400, 15_000);
    rec.stop();
    expect(imp.dropped.size).toBeGreaterThan(10);
    expect(imp.swapped).toBeGreaterThan(10);

    // NACK whatever is still missing until nothing is (RFC 4585 §6.2.1).
    const ssrc = v.video.ssrcs[0]!;
    for (let round = 0; ; round++) {
      const got = unwrapAll(v.video.packets);
      const keys = [...got.keys()];
      const lo = Math.min(...keys);
      const hi = Math.max(...keys);
      const missing: number[] = [];
      for (let e = lo; e <= hi; e++) if (!got.has(e)) missing.push(e & 0xffff);
      if (missing.length === 0) break;
      expect(round, `still missing ${missing.length} after ${round} NACK rounds`).toBeLessThan(5);
      const last = missing[missing.length - 1]!;
      const repaired = v.video.waitFor((p) => p.sequenceNumber === last, `retransmission of ${last}`, 5_000);
      for (let i = 0; i < missing.length; i += 16) v.sendNack(ssrc, missing.slice(i, i + 16));
      await repaired;
    }

    const st = sv.stats();
    expect(st.transport).toMatchObject({ path: "owned", srtpProfile: profileName, directWrites: true, sendsFailed: 0 });
    expect(st.retransmits).toBeGreaterThanOrEqual(imp.dropped.size);

    // Every packet, in sequence order, is the source's packet byte for byte; the run
    // crossed the wrap (so the ROC went from 0 to 1 on both sides) and has no hole.
    const got = unwrapAll(v.video.packets);
    const order = [...got.keys()].sort((a, b) => a - b);
    expect(order[0]! & 0xffff).toBeGreaterThan(65000);
    expect(order[order.length - 1]!).toBeGreaterThan(0x10000);
    const exts = [...stored.keys()].sort((a, b) => a - b);
    const firstExt = exts.find((e) => stored.get(e)!.payload.equals(got.get(order[0]!)!.payload))!;
    expect(firstExt).toBeDefined();
    for (let i = 0; i < order.length; i++) {
      const p = got.get(order[i]!)!;
      const s = stored.get(firstExt + i);
      expect(s, `source packet ${firstExt + i}`).toBeDefined();
      expect(p.payload.equals(s!.payload), `payload of seq ${p.sequenceNumber}`).toBe(true);
      expect(p.marker).toBe(s!.marker);
      if (i > 0) expect(((p.timestamp - got.get(order[i - 1]!)!.timestamp) | 0) >= 0).toBe(true);
    }
  });
});

describe("DTLS role", () => {
  it("answers an offer that insists on setup:passive with setup:active, and media flows", async () => {
    const app = await startTestApp();
    cleanups.push(() => app.close());
    const rec = new FakeRecorder(app.sfu.source(cameraId("cam1")), { audio: false });
    cleanups.push(async () => rec.stop());
    rec.announce();
    rec.pushFrames(1);
    const pc = loopbackPeerConnection({ codecs: { video: chromiumVideoCodecs(), audio: [] } });
    cleanups.push(() => pc.close());
    const gotRtp = new Promise<void>((resolve) => pc.onTrack.subscribe((t) => t.onReceiveRtp.once(() => resolve())));
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    // RFC 8842 lets an offerer pick its DTLS role: this one wants to be the server.
    const offer = pc.localDescription!.sdp.replace(/^a=setup:actpass/gm, "a=setup:passive");
    const res = await fetch(app.whep("cam1"), { method: "POST", headers: { "Content-Type": "application/sdp" }, body: offer });
    const answer = await res.text();
    expect(res.status, answer).toBe(201);
    expect(answer).toMatch(/^a=setup:active/m);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    rec.start(10);
    await gotRtp;
  });
});
