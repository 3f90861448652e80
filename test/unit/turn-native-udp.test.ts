/**
 * The TURN relay's native UDP sockets (turn/native-udp.ts over sfu/native/fastpath.c):
 * datagrams in with their sources (IPv4 and IPv6), oversized ones dropped and counted,
 * replies out in order, bind errors with their code, and no file descriptor left behind.
 * Real loopback sockets; the peers are Node's dgram.
 */
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { ipv4Text, NativeUdpSocket } from "../../turn/native-udp.ts";

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

async function peer(type: "udp4" | "udp6"): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  await new Promise<void>((r) => s.bind(0, type === "udp4" ? "127.0.0.1" : "::1", () => r()));
  open.push({ close: () => s.close() });
  return s;
}

describe("NativeUdpSocket", () => {
  it("delivers datagrams with their IPv4 source, drops oversized ones, and echoes in order", async () => {
    const sock = NativeUdpSocket.open(4, "127.0.0.1", 0, 1 << 20);
    open.push(sock);
    const p = await peer("udp4");
    const seen: Array<[number, string, number, number]> = [];
    sock.receive(
      (data, family, v4, port, address) => {
        seen.push([family, address(), port, data[0]!]);
        expect(v4).toBe(0x7f000001);
        sock.send(Buffer.from(data), sock.sockaddr(address(), port)); // the view dies with the callback: copy
      },
      () => {},
    );
    const back: number[] = [];
    const all = new Promise<void>((r) =>
      p.on("message", (m) => {
        back.push(m[0]!);
        if (back.length === 100) r();
      }),
    );
    for (let i = 0; i < 100; i++) p.send(Buffer.alloc(100 + i, i), sock.port, "127.0.0.1");
    p.send(Buffer.alloc(3000, 0xee), sock.port, "127.0.0.1"); // longer than a slot
    await all;
    expect(back).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(seen.slice(0, 2)).toEqual([
      [4, "127.0.0.1", p.address().port, 0],
      [4, "127.0.0.1", p.address().port, 1],
    ]);
    await new Promise((r) => setTimeout(r, 50)); // the oversized one was sent last
    expect(sock.dropped).toBe(1);
  });

  it("keeps many sockets' datagrams apart although they share one receive slab", async () => {
    const socks = Array.from({ length: 8 }, () => NativeUdpSocket.open(4, "127.0.0.1", 0, 1 << 20));
    open.push(...socks);
    const p = await peer("udp4");
    const got = socks.map((): string[] => []);
    let seen = 0;
    let all: () => void = () => {};
    const done = new Promise<void>((r) => (all = r));
    for (const [k, sock] of socks.entries()) {
      sock.receive(
        (data, _f, _v4, port, address) => {
          got[k]!.push(`${data.toString()}@${address()}:${port === p.address().port}`);
          if (++seen === 160) all();
        },
        () => {},
      );
    }
    for (let round = 0; round < 20; round++) for (const [k, sock] of socks.entries()) p.send(Buffer.from(`s${k}r${round}`), sock.port, "127.0.0.1");
    await done;
    for (const [k] of socks.entries()) expect(got[k]).toEqual(Array.from({ length: 20 }, (_, round) => `s${k}r${round}@127.0.0.1:true`));
  });

  it("drops and reports a datagram whose handler throws, and goes on with the next", async () => {
    const sock = NativeUdpSocket.open(4, "127.0.0.1", 0, 1 << 20);
    open.push(sock);
    const p = await peer("udp4");
    const errors: unknown[] = [];
    const ok = new Promise<string>((r) =>
      sock.receive(
        (data) => {
          if (data[0] === 0x62) throw new Error("bad datagram");
          r(data.toString());
        },
        (cause) => errors.push(cause),
      ),
    );
    p.send(Buffer.from("bad"), sock.port, "127.0.0.1");
    p.send(Buffer.from("good"), sock.port, "127.0.0.1");
    expect(await ok).toBe("good");
    expect(errors).toHaveLength(1);
    expect(sock.dropped).toBe(1);
  });

  it("reports IPv6 sources in RFC 5952 text", async () => {
    const sock = NativeUdpSocket.open(6, "::1", 0, 1 << 20);
    open.push(sock);
    const p = await peer("udp6");
    const got = new Promise<[number, string, number]>((r) => sock.receive((_d, family, _v4, port, address) => r([family, address(), port]), () => {}));
    p.send(Buffer.from("hi"), sock.port, "::1");
    expect(await got).toEqual([6, "::1", p.address().port]);
  });

  it("throws bind errors with their code, and a closed socket frees its port", async () => {
    const a = NativeUdpSocket.open(4, "127.0.0.1", 0, 0);
    let code: unknown;
    try {
      NativeUdpSocket.open(4, "127.0.0.1", a.port, 0);
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code;
    }
    expect(code).toBe("EADDRINUSE");
    a.close();
    a.close(); // idempotent
    const again = NativeUdpSocket.open(4, "127.0.0.1", a.port, 0); // the port is free again
    again.close();
    const b = NativeUdpSocket.open(4, "127.0.0.1", 0, 0);
    b.receive(() => {}, () => {});
    b.close();
    // A receiving socket's descriptor is closed in libuv's close phase, after this turn.
    await new Promise((r) => setImmediate(() => setImmediate(r)));
    NativeUdpSocket.open(4, "127.0.0.1", b.port, 0).close();
  });

  it("names IPv4 sources without parsing", () => {
    expect(ipv4Text(0xc0000207)).toBe("192.0.2.7");
    expect(ipv4Text(0xffffffff)).toBe("255.255.255.255");
  });
});
