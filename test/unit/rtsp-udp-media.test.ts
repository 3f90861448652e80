import { afterEach, describe, expect, it } from "vitest";
import { createSocket, type Socket } from "node:dgram";
import { silentLogger } from "../../config/log.ts";
import { UdpPortPool } from "../../gateway/ingest/udp-ports.ts";
import { UdpMediaPair } from "../../gateway/rtsp/udp-media.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function udp(port = 0, address = "127.0.0.1"): Promise<Socket> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(port, address, r));
  cleanups.push(() => s.close());
  return s;
}

/** Resolves once `cond()` holds (datagrams arrive asynchronously); rejects after 3 s. */
function until(cond: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - t0 > 3000) reject(new Error(`timed out: ${what}`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}
const next = <T>(arr: T[], n: number) => until(() => arr.length >= n, `${n} items`);

// A range per test process keeps parallel test files apart.
const base = 49000 + (process.pid % 40) * 20;

async function open(pool: UdpPortPool, got: { rtp: Buffer[]; rtcp: Buffer[]; foreign: number }) {
  const pair = await UdpMediaPair.open({
    pool,
    family: 4,
    bindAddress: "127.0.0.1",
    recvBufferSize: 4 << 20,
    log: silentLogger,
    onRtp: (p) => void got.rtp.push(Buffer.from(p)),
    onRtcp: (p) => void got.rtcp.push(Buffer.from(p)),
    onForeign: () => void got.foreign++,
  });
  cleanups.push(() => pair.close());
  return pair;
}

describe("UdpMediaPair", () => {
  it("accepts media only from the recorder's address, and punches towards its ports", async () => {
    const pool = new UdpPortPool([base, base + 9]);
    const got = { rtp: [] as Buffer[], rtcp: [] as Buffer[], foreign: 0 };
    const pair = await open(pool, got);
    expect(pair.rtpPort % 2).toBe(0);
    expect(pair.rtcpPort).toBe(pair.rtpPort + 1);
    expect(pair.recvBufferSize).toBeGreaterThan(208 * 1024); // enlarged from the 208 KiB default

    const server = await udp(0, "127.0.0.1");
    const serverRtcp = await udp(0, "127.0.0.1");
    server.send(Buffer.from("before"), pair.rtpPort, "127.0.0.1");
    await until(() => got.foreign > 0, "foreign drop");
    expect(got.rtp).toHaveLength(0);

    const punched: string[] = [];
    server.on("message", (m) => void punched.push(`rtp:${m.length}:${m[1]}`));
    serverRtcp.on("message", (m) => void punched.push(`rtcp:${m.length}:${m[1]}`));
    const rtpPort = server.address().port;
    pair.setServer("127.0.0.1", [rtpPort, serverRtcp.address().port]);
    pair.punch(96);
    await next(punched, 4);
    expect(punched.sort()).toEqual(["rtcp:8:201", "rtcp:8:201", "rtp:12:96", "rtp:12:96"]);

    server.send(Buffer.from("rtp!"), pair.rtpPort, "127.0.0.1");
    serverRtcp.send(Buffer.from("rtcp"), pair.rtcpPort, "127.0.0.1");
    await next(got.rtp, 1);
    await next(got.rtcp, 1);
    expect(got.rtp[0]!.toString()).toBe("rtp!");

    pair.setServer("127.0.0.2", undefined); // a different recorder address: 127.0.0.1 is now foreign
    const foreignBefore = got.foreign;
    server.send(Buffer.from("x"), pair.rtpPort, "127.0.0.1");
    await until(() => got.foreign > foreignBefore, "foreign drop after address change");
    expect(got.rtp).toHaveLength(1);
  });

  it("skips a pair another process holds and returns its lease on close", async () => {
    const pool = new UdpPortPool([base + 10, base + 19]);
    await udp(base + 10); // someone else has the first RTP port
    const got = { rtp: [], rtcp: [], foreign: 0 };
    const pair = await open(pool, got);
    expect(pair.rtpPort).toBe(base + 12);
    expect(pool.leased).toBe(1);
    pair.close();
    pair.close();
    expect(pool.leased).toBe(0);
  });

  it("fails with a clear error when the pool is exhausted", async () => {
    const pool = new UdpPortPool([base + 10, base + 11]);
    const lease = pool.acquire()!;
    cleanups.push(() => lease.release());
    await expect(open(pool, { rtp: [], rtcp: [], foreign: 0 })).rejects.toThrow(/no free UDP client port pair \(1\/1 leased\)/);
  });
});
