/**
 * The RTSP client's RTCP receiver reports reach a real recorder (Gatehouse's demo
 * recorder, which reads them as liveness) over TCP interleaved and over UDP, each with a
 * report block about the recorder's source once media flows.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createLogger, silentLogger } from "../../config/log.ts";
import { startDemoRecorder } from "../../gateway/demo/recorder.ts";
import { UdpPortPool } from "../../gateway/ingest/udp-ports.ts";
import { RtspClient } from "../../gateway/rtsp/client.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ports = new UdpPortPool([47000 + (process.pid % 50) * 20, 47000 + (process.pid % 50) * 20 + 19]);

describe.each(["tcp", "udp"] as const)("receiver reports over %s", (transport) => {
  it("the demo recorder reads them while the client plays", async () => {
    // Receiver reports the recorder logged with a report block (the NAT-opening empty RRs of UDP have none).
    let seen = 0;
    let onReport = (): void => {};
    const log = createLogger({
      level: "debug",
      write: (line) => {
        if (line.includes('"receiver report"') && !line.includes('"blocks":0')) {
          seen++;
          onReport();
        }
      },
    });
    const rec = await startDemoRecorder({ host: "127.0.0.1", port: 0, log });
    cleanups.push(() => rec.close());
    let packets = 0;
    const client = new RtspClient({
      url: rec.url,
      transport,
      ports,
      requestTimeoutMs: 3000,
      mediaTimeoutMs: 5000,
      rtcpIntervalMs: 100,
      log: silentLogger,
      sink: { pushRtp: () => void packets++, pushRtcp: () => {} },
    });
    cleanups.push(() => client.close("test end"));
    const session = await client.start();
    expect(session.transport).toBe(transport);
    // Video and audio: one report per track per interval; wait for three rounds.
    await new Promise<void>((resolve) => {
      onReport = () => seen >= 6 && resolve();
      onReport();
    });
    expect(packets).toBeGreaterThan(0);
    expect(rec.stats().rtcpReceived).toBeGreaterThanOrEqual(6);
    expect(client.stats().rtcpOut).toBeGreaterThanOrEqual(6);
  });
});
