/**
 * The supervision webhook against local HTTP servers: events delivered in order as JSON,
 * one at a time; a receiver that never answers costs one timeout per event and is counted;
 * non-2xx answers are counted; beyond the queue bound events are dropped and counted;
 * close drops what waits. Redirects are not followed.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import type { SupervisionEvent } from "../../gateway/supervision/event-log.ts";
import { Webhook } from "../../gateway/supervision/webhook.ts";

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

async function serve(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/hook`;
}

const event = (seq: number): SupervisionEvent => ({ seq, time: 1000 + seq, component: "camera:lobby", kind: "camera", type: "failed", reason: `failure ${seq}` });

describe("supervision webhook", () => {
  it("delivers each event once, in order, as JSON, one request at a time", async () => {
    const got: unknown[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const url = await serve((req, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        got.push({ method: req.method, type: req.headers["content-type"], body: JSON.parse(body) });
        setTimeout(() => {
          inFlight--;
          res.writeHead(200).end("ok");
        }, 5);
      });
    });
    const w = new Webhook({ url, timeoutMs: 2000, queueMax: 100, log: silentLogger, source: "https://gw.example" });
    for (let i = 1; i <= 5; i++) w.send(event(i));
    await w.idle();
    expect(got).toEqual([1, 2, 3, 4, 5].map((i) => ({ method: "POST", type: "application/json", body: { source: "https://gw.example", event: event(i) } })));
    expect(maxInFlight).toBe(1);
    expect(w.stats()).toEqual({ sent: 5, failed: 0, dropped: 0, queued: 0 });
    await w.close();
  });

  it("counts timeouts, error answers and redirects as failures, and drops beyond the queue bound", async () => {
    let n = 0;
    const url = await serve((req, res) => {
      n++;
      if (n === 1) return; // never answers
      if (n === 2) return void res.writeHead(500).end();
      res.writeHead(302, { Location: "http://127.0.0.1:1/elsewhere" }).end();
    });
    const w = new Webhook({ url, timeoutMs: 300, queueMax: 3, log: silentLogger });
    const t0 = Date.now();
    for (let i = 1; i <= 6; i++) w.send(event(i)); // the first is taken at once; 3 wait; 2 dropped
    await w.idle();
    expect(w.stats()).toEqual({ sent: 0, failed: 4, dropped: 2, queued: 0 });
    expect(n).toBe(4);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    await w.close();
  });

  it("counts an unreachable receiver, and drops what waits on close", async () => {
    const url = await serve(() => {}); // holds every request
    const w = new Webhook({ url, timeoutMs: 5000, queueMax: 10, log: silentLogger });
    for (let i = 1; i <= 4; i++) w.send(event(i));
    await w.close();
    expect(w.stats()).toMatchObject({ sent: 0, dropped: 3, queued: 0 });
    w.send(event(5));
    expect(w.stats().dropped).toBe(4);

    const dead = new Webhook({ url: "http://127.0.0.1:1/hook", timeoutMs: 1000, queueMax: 10, log: silentLogger });
    dead.send(event(1));
    await dead.idle();
    expect(dead.stats()).toEqual({ sent: 0, failed: 1, dropped: 0, queued: 0 });
    await dead.close();
  });
});
