/**
 * SIP over TCP cannot be exhausted without authentication: a flood of idle connections from
 * one source is capped per source while a real door (sipp) still registers over TCP from
 * another address; an unfinished message and an idle connection no device registered over
 * are closed after their (short) timeouts, while a registered connection stays open.
 * Bounded: a few hundred connections on loopback, a few seconds.
 * And a forged source cannot lock a door out: blind UDP REGISTERs with the door's address
 * (wrong passwords, with a nonce issued elsewhere or a forged one) count for nothing.
 */
import dgram from "node:dgram";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { digestResponse } from "../../gateway/digest/client.ts";
import { parseCredentials } from "../../gateway/digest/server.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import { describeRun, runSipp } from "../peers/sipp.ts";

const FIX = join(dirname(fileURLToPath(import.meta.url)), "../fixtures/sip");
const PASSWORD = "front-door-secret";
let server: SipServer | undefined;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

async function start(connections: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<SipServer> {
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  server = await startSipServer({
    config: parseConfig({
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { port: 0 },
        keepAliveSeconds: 0,
        rtpPortRange: [base, base + 9],
        connections,
        devices: [{ id: "front", username: "front", password: PASSWORD }],
        ...extra,
      },
    }).sip,
    log: silentLogger,
  });
  return server;
}

/** A TCP connection from `localAddress`; resolves once connected, with a promise of its close time. */
async function connect(port: number, localAddress: string): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  sockets.push(socket);
  socket.on("error", () => {});
  const closed = new Promise<number>((r) => socket.once("close", () => r(Date.now())));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return { socket, closed };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

/** Read one SIP response (headers + empty body) from a stream. */
function response(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let buf = "";
    const on = (d: Buffer): void => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end >= 0) {
        socket.off("data", on);
        resolve(buf.slice(0, end));
      }
    };
    socket.on("data", on);
  });
}

function register(port: number, cseq: number, auth = ""): string {
  return (
    `REGISTER sip:gatehouse SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.4:${port};branch=z9hG4bKreg${cseq};rport\r\nMax-Forwards: 70\r\n` +
    `From: <sip:front@gatehouse>;tag=r1\r\nTo: <sip:front@gatehouse>\r\nCall-ID: reg-tcp@127.0.0.4\r\nCSeq: ${cseq} REGISTER\r\n` +
    `Contact: <sip:front@127.0.0.4:${port};transport=tcp>\r\nExpires: 300\r\n${auth}Content-Length: 0\r\n\r\n`
  );
}

describe("SIP over TCP can be exhausted without authentication", () => {
  it("caps idle connections per source: 300 from one address hold 16, and a real door (sipp) still registers over TCP", async () => {
    const srv = await start({ max: 64, perSource: 16 });
    const port = srv.ports.tcp!;
    const flood = await Promise.all(Array.from({ length: 300 }, () => connect(port, "127.0.0.1")));
    // The server closes what is over the cap at once; the rest stay open.
    const t0 = Date.now();
    while (srv.stats().transport.connectionsRefusedPerSource < 300 - 16 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(srv.stats().transport.connectionsRefusedPerSource).toBe(300 - 16);
    expect(flood.filter((f) => !f.socket.destroyed && f.socket.readyState === "open").length).toBeLessThanOrEqual(16 + 5); // closes in flight
    const registered = new Promise<string>((resolve) => srv.registrar.events.once("registered", (_d, b) => resolve(`${b.target.transport} ${b.target.address}`)));
    const r = await runSipp({
      scenario: `${FIX}/register.xml`,
      target: `127.0.0.1:${port}`,
      transport: "tcp",
      keys: { user: "front", domain: "gatehouse", expires: 300 },
      auth: { user: "front", password: PASSWORD },
      extraArgs: ["-i", "127.0.0.2"],
    });
    expect(r.code, describeRun(r)).toBe(0);
    expect(await registered).toBe("tcp 127.0.0.2");
  }, 30_000);

  it("closes a connection whose message never finishes, and an idle one no device registered over; a registered one stays", async () => {
    const srv = await start({ messageTimeoutSeconds: 1, unregisteredIdleSeconds: 2 });
    const port = srv.ports.tcp!;
    // An unfinished message: a request line and some headers, never the blank line.
    const slow = await connect(port, "127.0.0.3");
    const slowStart = Date.now();
    slow.socket.write("REGISTER sip:gatehouse SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.3:5060;branch=z9hG4bKslow\r\n");
    // Silent connections, and one that keeps sending CRLF pings without ever registering.
    const silent = await connect(port, "127.0.0.3");
    const silentStart = Date.now();
    const pinger = await connect(port, "127.0.0.3");
    const ping = setInterval(() => pinger.socket.write("\r\n\r\n"), 300);
    // A registered connection.
    const door = await connect(port, "127.0.0.4");
    const localPort = door.socket.localPort!;
    let res = response(door.socket);
    door.socket.write(register(localPort, 1));
    const challenge = await within(res, 3000, "a 401");
    expect(challenge).toMatch(/^SIP\/2\.0 401/);
    const www = /WWW-Authenticate: (.*)/i.exec(challenge)![1]!;
    const nonce = parseCredentials(www)!.params.get("nonce")!;
    const digest = digestResponse({ algorithm: "MD5", username: "front", realm: "gatehouse", password: PASSWORD, method: "REGISTER", uri: "sip:gatehouse", nonce, cnonce: "c1", nc: "00000001", qop: "auth" });
    res = response(door.socket);
    door.socket.write(register(localPort, 2, `Authorization: Digest username="front", realm="gatehouse", nonce="${nonce}", uri="sip:gatehouse", response="${digest}", algorithm=MD5, cnonce="c1", qop=auth, nc=00000001\r\n`));
    expect(await within(res, 3000, "a 200")).toMatch(/^SIP\/2\.0 200/);

    try {
      const slowClosed = (await within(slow.closed, 5000, "the unfinished message's connection closes")) - slowStart;
      expect(slowClosed).toBeGreaterThanOrEqual(900);
      expect(slowClosed).toBeLessThan(4000);
      const silentClosed = (await within(silent.closed, 6000, "the silent connection closes")) - silentStart;
      expect(silentClosed).toBeGreaterThanOrEqual(1900);
      await within(pinger.closed, 6000, "the pinging, unregistered connection closes");
      expect(door.socket.destroyed).toBe(false); // registered: the long idle timeout applies
      expect(srv.stats().transport).toMatchObject({ messageTimeouts: 1, idleClosed: 2 });
      expect(srv.intercom.devices().find((d) => d.id === "front")!.online).toBe(true);
    } finally {
      clearInterval(ping);
    }
  }, 30_000);
});

describe("a forged source can lock a door out", () => {
  it("REGISTERs crafted with the door's address and no round trip (forged nonce, or one issued elsewhere) never lock it out; sipp at the door still registers", async () => {
    const srv = await start({}, { lockout: { maxFailures: 3 } });
    const port = srv.ports.udp!;
    const DOOR = "127.0.0.6";
    // The attacker's own round trip, from its own address, yields a genuine nonce for it.
    const attacker = dgram.createSocket("udp4");
    const door = dgram.createSocket("udp4"); // stands in for spoofed datagrams: the door's address, a port of ours
    try {
      await new Promise<void>((r) => attacker.bind(0, "127.0.0.5", () => r()));
      await new Promise<void>((r) => door.bind(0, DOOR, () => r()));
      const reply = (s: dgram.Socket): Promise<string> => within(new Promise<string>((r) => s.once("message", (m) => r(m.toString("latin1")))), 3000, "a SIP answer");
      const msg = (via: string, cseq: number, auth = ""): string =>
        `REGISTER sip:gatehouse SIP/2.0\r\nVia: SIP/2.0/UDP ${via};branch=z9hG4bKspoof${cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:front@gatehouse>;tag=s${cseq}\r\n` +
        `To: <sip:front@gatehouse>\r\nCall-ID: spoof-${cseq}@x\r\nCSeq: ${cseq} REGISTER\r\nContact: <sip:front@${via}>\r\nExpires: 300\r\n${auth}Content-Length: 0\r\n\r\n`;
      let answer = reply(attacker);
      attacker.send(msg(`127.0.0.5:${attacker.address().port}`, 1), port, "127.0.0.1");
      const challenge = await answer;
      const nonce = /nonce="([^"]+)"/.exec(challenge)![1]!;
      for (let i = 0; i < 6; i++) {
        const n = i % 2 === 0 ? nonce : Buffer.alloc(31, i).toString("base64url");
        const response = digestResponse({ algorithm: "MD5", username: "front", realm: "gatehouse", password: `guess-${i}`, method: "REGISTER", uri: "sip:gatehouse", nonce: n, cnonce: "c", nc: "00000001", qop: "auth" });
        answer = reply(door);
        door.send(msg(`${DOOR}:${door.address().port}`, 10 + i, `Authorization: Digest username="front", realm="gatehouse", nonce="${n}", uri="sip:gatehouse", response="${response}", algorithm=MD5, cnonce="c", qop=auth, nc=00000001\r\n`), port, "127.0.0.1");
        // Never a 403: the nonce was not sent to this address, so no password was even checked.
        expect((await answer).split("\r\n")[0]).toBe("SIP/2.0 401 Unauthorized");
      }
      expect(srv.stats()).toMatchObject({ lockouts: 0, auth: { failures: 0 } });
    } finally {
      attacker.close();
      door.close();
    }
    const registered = new Promise<string>((resolve) => srv.registrar.events.once("registered", (_d, b) => resolve(b.target.address)));
    const r = await runSipp({
      scenario: `${FIX}/register.xml`,
      target: `127.0.0.1:${port}`,
      keys: { user: "front", domain: "gatehouse", expires: 300 },
      auth: { user: "front", password: PASSWORD },
      extraArgs: ["-i", DOOR],
    });
    expect(r.code, describeRun(r)).toBe(0);
    expect(await registered).toBe(DOOR);
  }, 30_000);
});
