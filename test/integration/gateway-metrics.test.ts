import { describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway } from "../../gateway/gateway.ts";

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
    expect(text).toMatch(/^gatehouse_process_resident_bytes \d+$/m);
    expect(text).toMatch(/^gatehouse_forward_latency_p99_seconds [\d.e-]+$/m);
    // media.workers 0 = one media worker per core.
    expect(text).toMatch(/^gatehouse_media_worker_viewers\{worker="0"\} 0$/m);
    expect(text).not.toMatch(/rtsp:\/\//);
    // Without SIP the intercom API says so instead of answering 404.
    expect(await (await fetch(`${gw.url}/api/intercom`)).json()).toEqual({ enabled: false });
  });

  it("adds TURN and SIP figures when they run", async () => {
    const config = parseConfig({
      server: { port: 0 },
      auth: { mode: "none" },
      media: { icePortRange: [41000, 41999] },
      turn: { enabled: true, secret: "metrics-test-secret-0123456789", udp: [{ host: "127.0.0.1", port: 0 }], relay: { portRange: [0, 0] } },
      sip: { enabled: true, udp: { port: 0 }, tcp: { port: 0 } },
    });
    await using gw = await startGateway({ config, log: silentLogger });
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    expect(text).toMatch(/^gatehouse_turn_allocations 0$/m);
    expect(text).toMatch(/^gatehouse_turn_auth_failures_total 0$/m);
    expect(text).toMatch(/^# TYPE gatehouse_sip_calls gauge$/m);
    expect(text).toMatch(/^gatehouse_sip_bindings 0$/m);
  });

  it("refuses a signed-out caller", async () => {
    const config = parseConfig({ server: { port: 0 }, auth: { mode: "dev" }, media: { icePortRange: [41000, 41999] } });
    await using gw = await startGateway({ config, log: silentLogger });
    const res = await fetch(`${gw.url}/metrics`, { headers: { accept: "application/json" } });
    expect(res.status).toBe(401);
  });
});
