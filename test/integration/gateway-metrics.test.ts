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
    expect(text).toMatch(/^gatehouse_process_resident_bytes \d+$/m);
    expect(text).not.toMatch(/rtsp:\/\//);
  });

  it("refuses a signed-out caller", async () => {
    const config = parseConfig({ server: { port: 0 }, auth: { mode: "dev" }, media: { icePortRange: [41000, 41999] } });
    await using gw = await startGateway({ config, log: silentLogger });
    const res = await fetch(`${gw.url}/metrics`, { headers: { accept: "application/json" } });
    expect(res.status).toBe(401);
  });
});
