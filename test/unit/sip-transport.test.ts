/**
 * The SIP server on real loopback sockets: UDP, TCP and TLS listeners, stream framing and
 * keep-alives, hostile input (garbage, absurd Content-Length) that must never take a
 * listener down, and requests sent back over the connection a device opened.
 */
import dgram from "node:dgram";
import net from "node:net";
import tls from "node:tls";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { digestResponse } from "../../gateway/digest/client.ts";
import { parseCredentials } from "../../gateway/digest/server.ts";
import { parseMessage, type SipResponse } from "../../gateway/sip/message.ts";
import { SipStreamFramer } from "../../gateway/sip/stream.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";

let server: SipServer;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "gh-sip-tls-"));
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  writeFileSync(join(dir, "cert.pem"), pems.cert);
  writeFileSync(join(dir, "key.pem"), pems.private);
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  server = await startSipServer({
    config: parseConfig({
      sip: {
        enabled: true,
        udp: { port: 0 },
        tcp: { port: 0 },
        tls: { port: 0, cert: join(dir, "cert.pem"), key: join(dir, "key.pem") },
        keepAliveSeconds: 1,
        rtpPortRange: [base, base + 19],
        devices: [{ id: "door", username: "door", password: "door-secret" }],
      },
    }).sip,
    log: silentLogger,
  });
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const options = (transport: string, port: number, branch: string): string =>
  `OPTIONS sip:gate@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/${transport} 127.0.0.1:${port};branch=z9hG4bK${branch};rport\r\nMax-Forwards: 70\r\n` +
  `From: <sip:probe@gatehouse>;tag=p1\r\nTo: <sip:gate@gatehouse>\r\nCall-ID: ${branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;

/** A stream client that frames what it receives. */
function streamClient(sock: net.Socket): { next(pred?: (s: string) => boolean): Promise<string>; raw: Buffer[]; closed: Promise<void> } {
  const framer = new SipStreamFramer();
  const got: string[] = [];
  const raw: Buffer[] = [];
  let wake: (() => void) | undefined;
  sock.on("data", (d: Buffer) => {
    raw.push(d);
    for (const e of framer.push(d)) if (e.type === "message") got.push(e.data.toString("latin1"));
    wake?.();
  });
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  return {
    raw,
    closed,
    next: (pred = () => true) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no message")), 4000);
        const check = (): void => {
          const i = got.findIndex(pred);
          if (i >= 0) {
            clearTimeout(t);
            wake = undefined;
            resolve(got.splice(i, 1)[0]!);
          }
        };
        wake = check;
        check();
      }),
  };
}

describe("sip sockets", () => {
  it("UDP: garbage and STUN-like datagrams are dropped and counted; the listener keeps answering", async () => {
    const s = dgram.createSocket("udp4");
    await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
    const answers: Buffer[] = [];
    s.on("message", (m) => answers.push(m));
    const port = server.ports.udp!;
    for (let i = 0; i < 200; i++) s.send(Buffer.from(Array.from({ length: 1 + (i * 37) % 1400 }, (_, j) => (i * 131 + j * 7) & 0xff)), port, "127.0.0.1");
    s.send(Buffer.from([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, ...Array(12).fill(0)]), port, "127.0.0.1");
    s.send(Buffer.from(options("UDP", s.address().port, "udp1")), port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no answer")), 3000);
      const iv = setInterval(() => {
        if (answers.some((a) => a.toString("latin1").startsWith("SIP/2.0 200"))) {
          clearTimeout(t);
          clearInterval(iv);
          resolve();
        }
      }, 5);
    });
    s.close();
    expect(server.stats().parse.invalid).toBeGreaterThan(0);
  });

  it("TCP: frames split writes, answers CRLF pings with a pong, and closes only a stream it cannot resync", async () => {
    const sock = net.connect(server.ports.tcp!, "127.0.0.1");
    await new Promise<void>((r) => sock.once("connect", () => r()));
    const c = streamClient(sock);
    const msg = options("TCP", sock.localPort!, "tcp1");
    for (let i = 0; i < msg.length; i += 9) sock.write(msg.slice(i, i + 9));
    expect(await c.next()).toMatch(/^SIP\/2\.0 200 OK/);
    sock.write("\r\n\r\n");
    await new Promise<void>((resolve) => {
      const iv = setInterval(() => {
        if (Buffer.concat(c.raw).toString("latin1").endsWith("\r\n\r\n\r\n")) {
          clearInterval(iv);
          resolve();
        }
      }, 5);
    });
    sock.write("OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n");
    await c.closed;
    expect(server.stats().transport.framingErrors).toBeGreaterThanOrEqual(1);
    // A new connection is served normally.
    const again = net.connect(server.ports.tcp!, "127.0.0.1");
    await new Promise<void>((r) => again.once("connect", () => r()));
    const c2 = streamClient(again);
    again.write(options("TCP", again.localPort!, "tcp2"));
    expect(await c2.next()).toMatch(/^SIP\/2\.0 200 OK/);
    again.destroy();
  });

  it("TLS: answers over TLS with the configured certificate", async () => {
    const sock = tls.connect({ port: server.ports.tls!, host: "127.0.0.1", rejectUnauthorized: false });
    await new Promise<void>((r) => sock.once("secureConnect", () => r()));
    const c = streamClient(sock);
    sock.write(options("TLS", sock.localPort!, "tls1"));
    expect(await c.next()).toMatch(/^SIP\/2\.0 200 OK/);
    sock.destroy();
  });

  it("TCP: a device registered over a connection gets our OPTIONS keep-alives back over that connection", async () => {
    const sock = net.connect(server.ports.tcp!, "127.0.0.1");
    await new Promise<void>((r) => sock.once("connect", () => r()));
    const c = streamClient(sock);
    const port = sock.localPort!;
    // The Contact names a port nobody listens on: the request must still come over this socket.
    const reg = (cseq: number, auth = ""): string =>
      `REGISTER sip:gatehouse SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:${port};branch=z9hG4bKreg${cseq}\r\nMax-Forwards: 70\r\n` +
      `From: <sip:door@gatehouse>;tag=r1\r\nTo: <sip:door@gatehouse>\r\nCall-ID: reg-tcp\r\nCSeq: ${cseq} REGISTER\r\n` +
      `Contact: <sip:door@127.0.0.1:9;transport=tcp>\r\nExpires: 300\r\n${auth}Content-Length: 0\r\n\r\n`;
    sock.write(reg(1));
    const challenge = parseMessage(Buffer.from(await c.next(), "latin1"));
    expect(challenge.kind).toBe("response");
    const ch = parseCredentials((challenge as { message: SipResponse }).message.headers.get("www-authenticate")!)!;
    const nonce = ch.params.get("nonce")!;
    const response = digestResponse({ algorithm: "MD5", username: "door", realm: "gatehouse", password: "door-secret", method: "REGISTER", uri: "sip:gatehouse", nonce, cnonce: "c0ffee", nc: "00000001", qop: "auth" });
    sock.write(reg(2, `Authorization: Digest username="door", realm="gatehouse", nonce="${nonce}", uri="sip:gatehouse", response="${response}", algorithm=MD5, cnonce="c0ffee", qop=auth, nc=00000001\r\n`));
    expect(await c.next()).toMatch(/^SIP\/2\.0 200 OK/);
    const ping = await c.next((m) => m.startsWith("OPTIONS "));
    expect(ping).toMatch(/^OPTIONS sip:door@127\.0\.0\.1:9;transport=tcp SIP\/2\.0/);
    expect(ping).toMatch(/Via: SIP\/2\.0\/TCP /);
    // The connection goes: so does the binding (it could only be reached over it).
    const gone = new Promise((r) => server.registrar.events.once("unregistered", (_d, _b, reason) => r(reason)));
    sock.destroy();
    expect(await gone).toBe("unreachable");
    expect(server.intercom.devices()[0]!.online).toBe(false);
  });
});
