import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";

/** Debian's `promtool check metrics` (the prometheus package): exit status and what it said. */
function promtool(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn("promtool", ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    p.stdout.on("data", (c: Buffer) => (output += c.toString()));
    p.stderr.on("data", (c: Buffer) => (output += c.toString()));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, output }));
    p.stdin.end(text);
  });
}

/** Every sample line as `series → value`. */
function parseSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Names of the metrics of one type, from the `# TYPE` lines. */
const typed = (text: string, type: string) => [...text.matchAll(new RegExp(`^# TYPE (\\S+) ${type}$`, "gm"))].map((m) => m[1]!);

const TOKEN = "scrape-token-0123456789abcdef";

describe("gateway /metrics", () => {
  it("reports camera, SFU and process figures to an administrator", async () => {
    const config = parseConfig({ server: { port: 0 }, auth: { mode: "none" }, media: { icePortRange: [41000, 41999] } });
    await using gw = await startGateway({ config, log: silentLogger });
    const res = await fetch(`${gw.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^gatehouse_camera_state\{camera="demo",state="idle"\} 1$/m);
    expect(text).toMatch(/^gatehouse_viewers 0$/m);
    expect(text).toMatch(/^gatehouse_native_fast_path 1$/m); // CI builds the addon (npm run build:native)
    expect(text).toMatch(/^process_resident_memory_bytes \d+$/m);
    expect(text).toMatch(/^process_cpu_seconds_total [\d.e-]+$/m);
    expect(text).toMatch(/^# TYPE nodejs_gc_duration_seconds histogram$/m);
    expect(text).toMatch(/^# TYPE gatehouse_forward_latency_seconds histogram$/m);
    expect(text).toMatch(/^gatehouse_forward_latency_seconds_bucket\{le="0.002"\} \d+$/m);
    expect(text).toMatch(/^gatehouse_event_loop_delay_seconds_count \d+$/m);
    // media.workers 0 = one media worker per core.
    expect(text).toMatch(/^gatehouse_media_worker_viewers\{worker="0"\} 0$/m);
    expect(text).not.toMatch(/rtsp:\/\//);
    // Nothing is a gauge that a scrape resets.
    expect(text).not.toMatch(/_p(50|99)_seconds/);
    // Without SIP the intercom API says so instead of answering 404.
    expect(await (await fetch(`${gw.url}/api/intercom`)).json()).toEqual({ enabled: false });
  });

  it("passes promtool, and its counters and histograms never go down from one scrape to the next", async () => {
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "none" },
      media: { icePortRange: [41000, 41999] },
      turn: { enabled: true, secret: "metrics-test-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { portRange: [0, 0] } },
      sip: { enabled: true, udp: { port: 0 }, tcp: { port: 0 } },
    });
    await using gw = await startGateway({ config, log: silentLogger });
    const first = await (await fetch(`${gw.url}/metrics`)).text();
    const check = await promtool(first);
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
    expect(first).toMatch(/^gatehouse_turn_allocations 0$/m);
    expect(first).toMatch(/^gatehouse_turn_auth_failures_total 0$/m);
    expect(first).toMatch(/^# TYPE gatehouse_sip_calls gauge$/m);
    expect(first).toMatch(/^gatehouse_sip_bindings 0$/m);
    // The scrape itself came through the front door, as plain HTTP.
    expect(Number(/^gatehouse_frontdoor_http_total (\d+)$/m.exec(first)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/^gatehouse_frontdoor_connections (\d+)$/m.exec(first)?.[1])).toBeGreaterThanOrEqual(1);
    expect(first).toMatch(/^gatehouse_frontdoor_refused_per_source_total 0$/m);

    // A second scraper in between takes nothing away from the first.
    await fetch(`${gw.url}/metrics`);
    // Until the event loop has new samples (a 10 ms monitor) and CPU has been counted.
    const a = parseSamples(first);
    let second = first;
    let b = a;
    while (!(b.get("gatehouse_event_loop_delay_seconds_count")! > a.get("gatehouse_event_loop_delay_seconds_count")! && b.get("process_cpu_seconds_total")! > a.get("process_cpu_seconds_total")!)) {
      await new Promise((r) => setTimeout(r, 20));
      second = await (await fetch(`${gw.url}/metrics`)).text();
      b = parseSamples(second);
    }
    expect((await promtool(second)).code).toBe(0);
    const histograms = typed(first, "histogram");
    const counters = typed(first, "counter");
    expect(histograms).toEqual(expect.arrayContaining(["gatehouse_forward_latency_seconds", "gatehouse_event_loop_delay_seconds", "nodejs_gc_duration_seconds"]));
    let compared = 0;
    for (const [series, v] of a) {
      const name = series.replace(/\{.*$/, "");
      const monotonic = histograms.some((h) => name === `${h}_bucket` || name === `${h}_sum` || name === `${h}_count`) || counters.includes(name);
      if (!monotonic || !b.has(series)) continue;
      expect(b.get(series), series).toBeGreaterThanOrEqual(v);
      compared++;
    }
    expect(compared).toBeGreaterThan(40);
  });

  it("refuses a signed-out caller", async () => {
    const config = parseConfig({ server: { port: 0 }, auth: { mode: "dev" }, media: { icePortRange: [41000, 41999] } });
    await using gw = await startGateway({ config, log: silentLogger });
    const res = await fetch(`${gw.url}/metrics`, { headers: { accept: "application/json" } });
    expect(res.status).toBe(401);
  });

  it("lets a scraper in with the metrics token and no session, and no one without it", async () => {
    const config = parseConfig(
      { server: { port: 0 }, auth: { mode: "dev" }, media: { icePortRange: [41000, 41999] } },
      { ...process.env, GATEHOUSE_METRICS_TOKEN: TOKEN },
    );
    await using gw = await startGateway({ config, log: silentLogger });
    const ok = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/^process_cpu_seconds_total /m);
    expect((await fetch(`${gw.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}x` } })).status).toBe(401);
    // The token opens /metrics only.
    expect((await fetch(`${gw.url}/api/cameras`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(401);
    // Readiness is public, per component.
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, components: { http: { ready: true }, sfu: { ready: true }, auth: { ready: true }, cameras: { required: false } } });
  });

  it("serves /metrics, /healthz and /readyz alone on a metrics listener, behind the token", async () => {
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "dev" },
      media: { icePortRange: [41000, 41999] },
      metrics: { token: TOKEN, listen: { host: "127.0.0.1", port: 0 } },
    });
    await using gw = await startGateway({ config, log: silentLogger });
    expect(gw.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const denied = await fetch(`${gw.metricsUrl}/metrics`);
    expect(denied.status).toBe(401);
    expect(denied.headers.get("www-authenticate")).toMatch(/^Bearer /);
    const ok = await fetch(`${gw.metricsUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect((await promtool(await ok.text())).code).toBe(0);
    expect((await fetch(`${gw.metricsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${gw.metricsUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${gw.metricsUrl}/api/cameras`)).status).toBe(404);
    expect((await fetch(`${gw.metricsUrl}/`)).status).toBe(404);
  });
});

describe("discovery document", () => {
  it("lists the public endpoints at /.well-known/gatehouse without sign-in and without secrets", async () => {
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "dev" },
      media: { icePortRange: [41000, 41999] },
      turn: { enabled: true, secret: "metrics-test-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { portRange: [0, 0] } },
      sip: { enabled: true, udp: { port: 0 }, tcp: { port: 0 } },
    });
    await using gw = await startGateway({ config, log: silentLogger });
    const res = await fetch(`${gw.url}/.well-known/gatehouse`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(doc).toMatchObject({
      service: "gatehouse",
      url: gw.url,
      api: `${gw.url}/api`,
      whep: `${gw.url}/whep`,
      identityProvider: gw.auth.issuer,
      signIn: `${gw.url}/auth/login`,
      health: { live: `${gw.url}/healthz`, ready: `${gw.url}/readyz` },
      metrics: `${gw.url}/metrics`,
    });
    const port = new URL(gw.url).port;
    expect(doc.turn).toEqual([`turn:127.0.0.1:${gw.turn!.udp[0]!.port}?transport=udp`, `turn:127.0.0.1:${port}?transport=tcp`]);
    expect(doc.sip).toEqual([`sip:gatehouse@127.0.0.1:${gw.sip!.ports.udp};transport=udp`, `sip:gatehouse@127.0.0.1:${gw.sip!.ports.tcp};transport=tcp`]);
    expect(JSON.stringify(doc)).not.toMatch(/secret|credential|password/i);
  });
});
