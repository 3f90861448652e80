/**
 * The front door under hostile clients, on a whole gateway:
 * - 10,000 unfinished requests from many loopback addresses leave /healthz and a real viewer
 *   working (before: they filled the connection cap and every new connection was refused);
 * - an unfinished request is closed after the header timeout, over HTTP and over TLS (before:
 *   still open after 75 s);
 * - one address cannot hold more than its share of connections;
 * - plain HTTP on the TLS port is redirected to HTTPS (GET) or refused with 400 (anything else);
 * - behind a trusted reverse proxy each client has its own rate-limit bucket, and nobody else's
 *   X-Forwarded-For is believed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { WeriftViewer } from "../peers/werift-viewer.ts";

const HALF_OPEN = fileURLToPath(new URL("../fixtures/frontdoor/half-open.ts", import.meta.url));
let certDir: string;
let cert: { cert: string; key: string };

beforeAll(async () => {
  const pems = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
  certDir = mkdtempSync(path.join(tmpdir(), "frontdoor-hardening-"));
  cert = { cert: path.join(certDir, "cert.pem"), key: path.join(certDir, "key.pem") };
  writeFileSync(cert.cert, pems.cert);
  writeFileSync(cert.key, pems.private);
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

async function gateway(server: Record<string, unknown>, auth: Record<string, unknown> = { mode: "none" }): Promise<Gateway> {
  return startGateway({
    config: parseConfig({ server: { host: "127.0.0.1", port: 0, ...server }, auth, demo: { enabled: true }, media: { workers: 1 }, log: { level: "warn" } }, { GATEHOUSE_DATA_DIR: process.env.GATEHOUSE_DATA_DIR }),
    log: silentLogger,
  });
}

/** One raw request; resolves with the status line and headers, or "closed" if the door hangs up first. */
function rawRequest(port: number, text: string, opts: { tls?: boolean; localAddress?: string } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = opts.tls
      ? tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) })
      : net.connect({ port, host: "127.0.0.1", ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    let got = "";
    s.on(opts.tls ? "secureConnect" : "connect", () => s.write(text));
    s.on("data", (d: Buffer) => (got += d.toString("latin1")));
    s.on("error", () => {});
    s.on("close", () => resolve(got || "closed"));
    setTimeout(() => s.destroy(), 15_000);
  });
}

/** Opens an unfinished request; resolves with how it ended and after how long. */
function halfOpen(port: number, useTls: boolean): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = useTls ? tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false }) : net.connect(port, "127.0.0.1");
    let answer = "";
    s.on(useTls ? "secureConnect" : "connect", () => s.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
    s.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    s.on("error", () => {});
    s.on("close", () => resolve({ ms: Date.now() - t0, answer: answer.split("\r\n")[0] ?? "" }));
    // The test's own bound: still open after 20 s is the failure this test exists for.
    setTimeout(() => s.destroy(), 20_000);
  });
}

async function healthz(base: string): Promise<number> {
  const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return res.status;
}

describe("the front door's limits", () => {
  it("half-open requests do not block the front door: 10,000 of them from many addresses leave /healthz and a real viewer working", async () => {
    // Headers may take their time here (2 minutes), so that only the cap's handling is tested, not the timeout.
    await using gw = await gateway({ headersTimeoutMs: 120_000, requestTimeoutMs: 120_000 });
    const port = gw.httpPort;
    const attacker: ChildProcess = spawn(process.execPath, [HALF_OPEN, String(port), "10000", "50"], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      const report = await new Promise<{ opened: number; failed: number; ms: number }>((resolve, reject) => {
        let out = "";
        attacker.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(JSON.parse(out));
        });
        attacker.once("exit", (code) => reject(new Error(`attacker exited with ${code}`)));
        setTimeout(() => reject(new Error("the attacker could not open its connections within 120 s")), 120_000);
      });
      expect(report.opened).toBe(10_000);
      // The door is full of unfinished requests (every one of the 50 addresses is under its cap of 256).
      await expect.poll(() => gw.frontDoor.connections, { timeout: 30_000 }).toBeGreaterThanOrEqual(9_990);

      expect(await healthz(gw.url)).toBe(200);
      await using viewer = await WeriftViewer.connect({ whepUrl: `${gw.url}/whep/demo`, audio: false, timeoutMs: 20_000 });
      await viewer.connected;
      await viewer.video.waitForCount(20, 20_000);
      expect(await healthz(gw.url)).toBe(200);
      // Room was made by closing the oldest unfinished requests, never a finished one.
      expect(gw.frontDoor.stats.evicted).toBeGreaterThanOrEqual(1);
      expect(gw.frontDoor.stats.refusedFull).toBe(0);
    } finally {
      attacker.stdin!.end();
      attacker.kill();
    }
  }, 240_000);

  it("a half-open request is closed after the header timeout, over HTTP and over TLS", async () => {
    await using plain = await gateway({ headersTimeoutMs: 800, requestTimeoutMs: 2_000 });
    await using secure = await gateway({ headersTimeoutMs: 800, requestTimeoutMs: 2_000, tls: cert });
    const [a, b] = await Promise.all([halfOpen(plain.httpPort, false), halfOpen(secure.httpPort, true)]);
    for (const r of [a, b]) {
      expect(r.answer).toBe("HTTP/1.1 408 Request Timeout");
      expect(r.ms).toBeGreaterThanOrEqual(700);
      expect(r.ms).toBeLessThan(10_000);
    }
    // A TLS handshake that never completes is cut too.
    const t0 = Date.now();
    const raw = await rawRequest(secure.httpPort, "\x16\x03\x01\x00\x05\x01"); // a ClientHello that stops
    expect(raw).toBe("closed");
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 60_000);

  it("one address holds at most maxConnectionsPerSource connections; others are not affected", async () => {
    await using gw = await gateway({ maxConnectionsPerSource: 20 });
    const socks: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = net.connect({ port: gw.httpPort, host: "127.0.0.1", localAddress: "127.66.0.9" });
      s.on("error", () => {});
      socks.push(s);
      await new Promise((r) => s.once("connect", r));
    }
    await expect.poll(() => gw.frontDoor.connections).toBe(20);
    const refused = await rawRequest(gw.httpPort, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", { localAddress: "127.66.0.9" });
    expect(refused).toBe("closed");
    expect(gw.frontDoor.stats.refusedPerSource).toBe(1);
    const other = await rawRequest(gw.httpPort, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", { localAddress: "127.66.0.10" });
    expect(other).toMatch(/^HTTP\/1\.1 200 OK/);
    for (const s of socks) s.destroy();
  });
});

describe("plain HTTP on the TLS port", () => {
  it("plain HTTP on the TLS port is redirected to HTTPS, not served; other methods get 400", async () => {
    await using gw = await gateway({ tls: cert });
    const port = gw.httpPort;
    const get = await rawRequest(port, "GET /api/cameras?x=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n\r\n");
    expect(get).toMatch(/^HTTP\/1\.1 308 /);
    expect(get).toContain(`\r\nlocation: https://127.0.0.1:${port}/api/cameras?x=1\r\n`);
    expect(get).not.toContain("application/json");
    // The client's Host is only a host name: no path, scheme or user part of its own.
    const evil = await rawRequest(port, "GET //evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    expect(evil).toContain(`\r\nlocation: https://evil.example:${port}/\r\n`);
    const post = await rawRequest(port, "POST /whep/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0");
    expect(post).toMatch(/^HTTP\/1\.1 400 /);
    expect(post).toContain("This port speaks HTTPS");
    // HTTPS on the same port is served as before.
    const tlsGet = await rawRequest(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", { tls: true });
    expect(tlsGet).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(gw.frontDoor.stats.plainRedirected).toBe(3);
  });
});

describe("behind a reverse proxy", () => {
  const rateLimit = { windowSeconds: 300, maxFailuresPerSource: 3 };
  /** A failed authentication (bearer tokens are not accepted) as the proxy would forward it. */
  async function failAs(base: string, forwardedFor: string): Promise<number> {
    const res = await fetch(`${base}/api/cameras`, { headers: { authorization: "Bearer nope", "x-forwarded-for": forwardedFor } });
    await res.arrayBuffer();
    return res.status;
  }

  it("behind a reverse proxy each client has its own rate-limit bucket (server.trustProxy)", async () => {
    await using gw = await gateway({ trustProxy: ["127.0.0.0/8"] }, { mode: "dev", rateLimit });
    // 203.0.113.50 is what the client wrote itself; 198.51.100.1 is where the first proxy saw it
    // come from, 127.0.0.2 a second (trusted) proxy: the client is 198.51.100.1.
    for (let i = 0; i < 3; i++) expect(await failAs(gw.url, "203.0.113.50, 198.51.100.1, 127.0.0.2")).toBe(401);
    expect(await failAs(gw.url, "198.51.100.1")).toBe(429);
    expect(await failAs(gw.url, "garbage, 198.51.100.1")).toBe(429);
    // Another client behind the same proxy is not locked out with the first.
    expect(await failAs(gw.url, "198.51.100.2")).toBe(401);
  });

  it("X-Forwarded-For from anyone but a trusted proxy is ignored", async () => {
    await using gw = await gateway({}, { mode: "dev", rateLimit });
    for (let i = 0; i < 3; i++) expect(await failAs(gw.url, `198.51.100.${10 + i}`)).toBe(401);
    // Same TCP peer, whatever the header says: one bucket.
    expect(await failAs(gw.url, "198.51.100.99")).toBe(429);
  });
});
