/**
 * The embedded defaults when their fixed ports are taken by another program: with the
 * `fallback` policy (`npm start` without a configuration file) the gateway says which port
 * is taken, listens on a free one instead, and everything else runs (front door, TURN, SIP
 * and the demo door registered through it). With `fail` (a configuration file) start-up stops.
 * The "taken" ports are free ones this test holds itself, so nothing else is disturbed.
 */
import dgram from "node:dgram";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { embeddedDefaults } from "../../config/embedded.ts";
import { parseConfig } from "../../config/load.ts";
import { createLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";

let udp: dgram.Socket;
let tcp: net.Server;
let udpPort: number;
let tcpPort: number;

beforeAll(async () => {
  udp = dgram.createSocket("udp4");
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
  udpPort = udp.address().port;
  tcp = net.createServer();
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", () => r()));
  tcpPort = (tcp.address() as net.AddressInfo).port;
});

afterAll(async () => {
  udp?.close();
  await new Promise((r) => tcp?.close(r));
});

/** The embedded defaults, with the given ports in place of 8080, 14049 and 5060. */
function configWith(ports: { http: number; turnUdp: number; sipUdp: number; sipTcp: number }) {
  const embedded = embeddedDefaults();
  return parseConfig(
    {
      ...embedded,
      server: { port: ports.http },
      turn: { ...embedded.turn, udp: [{ host: "127.0.0.1", port: ports.turnUdp }] },
      sip: { ...embedded.sip, udp: { port: ports.sipUdp }, tcp: { port: ports.sipTcp } },
    },
    {},
  );
}

// A whole gateway starts twice here (sign-in provider, SFU workers, SIP, TURN): tens of seconds on a loaded machine.
describe("default ports taken", { timeout: 120_000 }, () => {
  it("fallback: names each taken port, uses a free one, and the whole demo runs", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: "warn", format: "json", write: (l) => lines.push(l) });
    await using gw: Gateway = await startGateway({
      config: configWith({ http: tcpPort, turnUdp: udpPort, sipUdp: udpPort, sipTcp: tcpPort }),
      log,
      takenPorts: "fallback",
    });
    const warnings = lines.map((l) => JSON.parse(l) as { level: string; msg: string });
    expect(warnings.filter((w) => w.level === "warn").map((w) => w.msg)).toEqual(
      expect.arrayContaining([
        `SIP: port ${udpPort} is taken by another program; using a free port instead`,
        `TURN: port ${udpPort} is taken by another program; using a free port instead`,
        `front door: port ${tcpPort} is taken by another program; using a free port instead`,
      ]),
    );
    expect(gw.takenPorts.map((t) => t.what).sort()).toEqual(["SIP", "TURN", "front door"]);

    // The rest runs, on other ports.
    expect(gw.httpPort).not.toBe(tcpPort);
    expect(await (await fetch(`${gw.url}/healthz`)).json()).toEqual({ ok: true });
    expect(gw.turn!.udp[0]!.port).not.toBe(udpPort);
    expect(gw.sip!.ports.udp).not.toBe(udpPort);
    expect(gw.demoDoor?.state).toBe("idle");
    expect(gw.sip!.intercom.devices().find((d) => d.id === "demo-door")?.online).toBe(true);
    // TURN answers a STUN Binding request on its new UDP port.
    const reply = await stunBinding(gw.turn!.udp[0]!.port);
    expect(reply.readUInt16BE(0)).toBe(0x0101);
  });

  it("fail (the default, for configuration files): start-up stops with the bind error", async () => {
    await expect(
      startGateway({ config: configWith({ http: 0, turnUdp: udpPort, sipUdp: 0, sipTcp: 0 }), log: createLogger({ level: "silent" }) }),
    ).rejects.toMatchObject({ code: "EADDRINUSE" });
  });
});

/** One STUN Binding request (RFC 8489 §6) over UDP; resolves with the response. */
function stunBinding(port: number): Promise<Buffer> {
  const s = dgram.createSocket("udp4");
  const req = Buffer.alloc(20);
  req.writeUInt16BE(0x0001, 0);
  req.writeUInt32BE(0x2112a442, 4);
  for (let i = 8; i < 20; i++) req[i] = i;
  return new Promise<Buffer>((resolve, reject) => {
    const t = setTimeout(() => {
      s.close();
      reject(new Error("no STUN answer"));
    }, 5000);
    s.on("message", (m) => {
      clearTimeout(t);
      s.close();
      resolve(m);
    });
    s.send(req, port, "127.0.0.1");
  });
}
