import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../config/load.ts";

describe("config", () => {
  it("fills defaults from an empty object", () => {
    const cfg = parseConfig({});
    expect(cfg.rtsp.clientPortRange).toEqual([3556, 4556]);
    expect(cfg.rtsp.idleStopSeconds).toBe(30);
    expect(cfg.server.host).toBe("127.0.0.1");
    expect(Object.isFrozen(cfg.rtsp)).toBe(true);
  });

  it("rejects unknown keys with their path", () => {
    try {
      parseConfig({ rtsp: { clientPortRang: [1, 2] }, cameras: [{ id: "a", url: "rtsp://x/y", colour: 1 }] });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).problems).toContain("rtsp.clientPortRang: unknown key");
      expect((e as ConfigError).problems).toContain("cameras[0].colour: unknown key");
    }
  });

  it("rejects bad values with the reason", () => {
    expect(() => parseConfig({ cameras: [{ id: "a", url: "http://x/y" }] })).toThrow(/cameras\[0\]\.url: must be an rtsp/);
    expect(() => parseConfig({ rtsp: { clientPortRange: [5000, 4000] } })).toThrow(/clientPortRange/);
    expect(() => parseConfig({ cameras: [{ id: "a", url: "rtsp://h/1" }, { id: "a", url: "rtsp://h/2" }] })).toThrow(
      /duplicate camera id/,
    );
    expect(() => parseConfig({ cameras: [{ id: "a", url: "rtsp://h/1", redirectHosts: ["rtsp://other:554"] }] })).toThrow(
      /cameras\[0\]\.redirectHosts\[0\]: a host name or IP address, without scheme or port/,
    );
    const ok = parseConfig({ cameras: [{ id: "a", url: "rtsp://h/1", redirectHosts: ["nvr-2.example", "10.0.0.7", "fd00::7", "[fd00::8]"], basicOverPlainRtsp: true }] });
    expect(ok.cameras[0]).toMatchObject({ redirectHosts: ["nvr-2.example", "10.0.0.7", "fd00::7", "[fd00::8]"], basicOverPlainRtsp: true });
  });

  it("bounds live viewers and client candidates by default, sized for a wall of 64 tiles", () => {
    const cfg = parseConfig({});
    expect(cfg.media.viewers).toEqual({ perSession: 64, perUser: 128, connectTimeoutMs: 10000 });
    expect(cfg.media.ice).toEqual({ maxCandidatesPerRequest: 32, maxCandidatesPerViewer: 64, privateCandidates: true });
    expect(() => parseConfig({ media: { viewers: { perSession: 10, perUser: 5 } } })).toThrow(/media\.viewers\.perUser: perUser must be at least perSession/);
    expect(() => parseConfig({ media: { viewers: { connectTimeoutMs: 10 } } })).toThrow(/media\.viewers\.connectTimeoutMs/);
    expect(() => parseConfig({ media: { ice: { maxCandidates: 3 } } })).toThrow(/media\.ice\.maxCandidates: unknown key/);
  });

  it("takes the data directory from GATEHOUSE_DATA_DIR only when the configuration names none", () => {
    expect(parseConfig({}, {}).dataDir).toBe("data");
    expect(parseConfig({}, { GATEHOUSE_DATA_DIR: "/var/lib/gatehouse" }).dataDir).toBe("/var/lib/gatehouse");
    expect(parseConfig({ dataDir: "/srv/gh" }, { GATEHOUSE_DATA_DIR: "/var/lib/gatehouse" }).dataDir).toBe("/srv/gh");
    expect(() => parseConfig({}, { GATEHOUSE_DATA_DIR: "" })).toThrow(/GATEHOUSE_DATA_DIR: must not be empty/);
  });

  it("takes secrets from the environment and names a missing variable", () => {
    const cfg = parseConfig({ cameras: [{ id: "a", url: "rtsp://h/1", password: "${CAM_PW}" }] }, { CAM_PW: "s3cret" });
    expect(cfg.cameras[0]!.password).toBe("s3cret");
    expect(() => parseConfig({ cameras: [{ id: "a", url: "rtsp://h/1", password: "${NOPE_PW}" }] }, {})).toThrow(
      /cameras\[0\]\.password: environment variable NOPE_PW is not set/,
    );
  });
});

describe("config/example.yaml", () => {
  it("is a valid configuration", async () => {
    const { loadConfig } = await import("../../config/load.ts");
    const cfg = loadConfig({ file: "config/example.yaml", env: { LOBBY_RTSP_PASSWORD: "pw", OIDC_CLIENT_SECRET: "cs", TURN_SECRET: "0123456789abcdef0123", LOBBY_DOOR_SIP_PASSWORD: "door-secret-123" } });
    expect(cfg.cameras.map((c) => c.id)).toEqual(["lobby", "loading-dock"]);
    expect(cfg.cameras[0]!.password).toBe("pw");
    expect(cfg.auth.mode).toBe("oidc");
    expect(cfg.auth.clientSecret).toBe("cs");
    expect(cfg.turn.enabled).toBe(true);
    expect(cfg.sip.devices[0]!.password).toBe("door-secret-123");
  });
});
