/**
 * The supervisor's health probes against the real servers: a STUN Binding request answered
 * by our TURN server, an OPTIONS answered by our SIP server, a discovery document over HTTP;
 * and each one's failure (a UDP port that never answers, an HTTP error) within its timeout.
 */
import dgram from "node:dgram";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import { discoveryProbe, localTarget, sipOptionsProbe, stunProbe } from "../../gateway/supervision/probes.ts";
import { startTurnServer, type TurnServer } from "../../turn/index.ts";

let turn: TurnServer;
let sip: SipServer;
let silent: dgram.Socket;
let silentPort: number;

beforeAll(async () => {
  turn = await startTurnServer({
    config: parseConfig({
      turn: { enabled: true, secret: "probe-test-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { address: "127.0.0.1", portRange: [0, 0] } },
    }).turn,
    log: silentLogger,
    allowedPeers: ["127.0.0.1"],
  });
  const base = 20000 + 2 * Math.floor(Math.random() * 9000);
  sip = await startSipServer({
    config: parseConfig({ sip: { enabled: true, udp: { port: 0 }, tcp: { port: 0 }, keepAliveSeconds: 0, rtpPortRange: [base, base + 9] } }).sip,
    log: silentLogger,
  });
  // Bound, never answers: what a hung server looks like.
  silent = dgram.createSocket("udp4");
  await new Promise<void>((r) => silent.bind(0, "127.0.0.1", r));
  silentPort = silent.address().port;
});

afterAll(async () => {
  await turn?.close();
  await sip?.close("test done");
  silent?.close();
});

describe("supervision health probes", () => {
  it("TURN answers a STUN Binding request; a silent port does not, within the timeout", async () => {
    expect(await stunProbe(localTarget(turn.udp[0]!.address), turn.udp[0]!.port, 2000)).toEqual({ ok: true, reason: "answers STUN" });
    const t0 = Date.now();
    expect(await stunProbe("127.0.0.1", silentPort, 300)).toEqual({ ok: false, reason: "no answer to a STUN Binding request within 300 ms" });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("SIP answers OPTIONS; a silent port does not", async () => {
    expect(await sipOptionsProbe("127.0.0.1", sip.ports.udp!, 2000)).toEqual({ ok: true, reason: "answers SIP (200)" });
    expect(await sipOptionsProbe("127.0.0.1", silentPort, 300)).toEqual({ ok: false, reason: "no answer to SIP OPTIONS within 300 ms" });
  });

  it("the identity provider's discovery document: 200 is up, an error or silence is down", async () => {
    let status = 200;
    const server = http.createServer((req, res) => {
      if (status === 0) return; // hangs
      res.writeHead(req.url === "/realm/.well-known/openid-configuration" ? status : 404, { "Content-Type": "application/json" }).end("{}");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/realm`;
    try {
      // Generous where an answer is expected: the worker's first fetch starts its HTTP client cold.
      expect(await discoveryProbe(issuer, fetch, 5000)).toEqual({ ok: true, reason: "discovery answers" });
      status = 503;
      expect(await discoveryProbe(`${issuer}/`, fetch, 5000)).toEqual({ ok: false, reason: "discovery answered HTTP 503" });
      status = 0;
      expect(await discoveryProbe(issuer, fetch, 300)).toEqual({ ok: false, reason: "no answer within 300 ms" });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
