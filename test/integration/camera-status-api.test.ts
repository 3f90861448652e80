/**
 * `GET /api/cameras/:id/status`: anyone who sees a camera gets its state and the reason in plain
 * words (what the tile shows); the recorder side's technical details (`ingest`: transport, tracks,
 * counters, last failure) only go to the camera's administrators. A real gateway with the
 * development sign-in (its `viewer` and `admin` accounts) and the built-in demo camera.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { signedInDevUser, type HttpBrowser } from "../peers/oidc.ts";

let gw: Gateway;
const browsers: HttpBrowser[] = [];

beforeAll(async () => {
  gw = await startGateway({
    config: parseConfig(
      {
        server: { host: "127.0.0.1", port: 0 },
        auth: { mode: "dev" },
        demo: { enabled: true },
        // Only administrators see it (the demo viewer's rights name the demo camera alone).
        cameras: [{ id: "lobby", name: "Lobby", url: "rtsp://127.0.0.1:9/never" }],
        log: { level: "silent" },
      },
      {},
    ),
    log: silentLogger,
  });
}, 60_000);

afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
});

async function status(b: HttpBrowser, id: string): Promise<{ code: number; body: Record<string, unknown> }> {
  const r = await b.request(`${gw.url}/api/cameras/${id}/status`, { headers: { accept: "application/json" } });
  return { code: r.status, body: JSON.parse(r.body) as Record<string, unknown> };
}

describe("a camera's status", () => {
  it("gives a viewer the state and reason the tile needs, without the recorder's technical details", async () => {
    const viewer = await signedInDevUser(gw, "viewer", browsers);
    const r = await status(viewer, "demo");
    expect(r.code).toBe(200);
    expect(r.body).toMatchObject({ id: "demo", status: expect.any(String), actions: ["live"] });
    expect(r.body).not.toHaveProperty("ingest");
    // The same state as the camera list says.
    const list = JSON.parse((await viewer.request(`${gw.url}/api/cameras`, { headers: { accept: "application/json" } })).body) as Array<{ id: string; status: string }>;
    expect(list.find((c) => c.id === "demo")!.status).toBe(r.body.status);
    // A camera it cannot see is unknown to it.
    expect((await status(viewer, "lobby")).code).toBe(404);
  });

  it("gives an administrator of the camera the recorder side's details as well", async () => {
    const admin = await signedInDevUser(gw, "admin", browsers);
    const r = await status(admin, "demo");
    expect(r.code).toBe(200);
    expect(r.body.actions).toContain("admin");
    expect(r.body.ingest).toMatchObject({ state: expect.any(String), reconnects: expect.any(Number), packetsIn: expect.any(Number), tracks: expect.any(Array) });
    const lobby = await status(admin, "lobby");
    expect(lobby.code).toBe(200);
    expect(lobby.body.ingest).toMatchObject({ state: expect.any(String) });
  });
});
