import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../config/load.ts";

describe("sip config section", () => {
  it("has closed, documented defaults", () => {
    const s = parseConfig({}).sip;
    expect(s).toMatchObject({
      enabled: false,
      bindAddress: "127.0.0.1",
      udp: { enabled: true, port: 5060 },
      tcp: { enabled: true, port: 5060 },
      ringTimeoutSeconds: 30,
      registration: { minExpires: 60, maxExpires: 3600 },
      lockout: { maxFailures: 5 },
      devices: [],
    });
    expect(s.tls).toBeUndefined();
  });

  it("fills device defaults and takes the password from the environment", () => {
    const d = parseConfig({ sip: { devices: [{ id: "front", username: "front", password: "${DOOR_PW}", camera: "cam1" }] } }, { DOOR_PW: "door-secret" }).sip.devices[0]!;
    expect(d).toMatchObject({ password: "door-secret", answerers: { users: [], groups: [] }, dtmf: { openDoor: "#", method: "rfc4733", durationMs: 160 }, digestAlgorithms: ["MD5"], authenticateCalls: true, allow: [] });
  });

  it("rejects devices that could never authenticate, bad allow lists, duplicates and unknown keys, with paths", () => {
    try {
      parseConfig({
        sip: {
          devices: [
            { id: "a", username: "a" },
            { id: "a", username: "A", password: "12345678", allow: ["10.0.0.0/33"], dtmf: { openDoor: "9x" } },
          ],
          registration: { minExpires: 600, maxExpires: 60 },
          colour: "red",
        },
      });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const p = (e as ConfigError).problems.join("\n");
      expect(p).toMatch(/sip\.devices\[0\]: a device needs a password/);
      expect(p).toMatch(/sip\.devices\[1\]\.allow\[0\]: "10\.0\.0\.0\/33": prefix length must be 0\.\.32/);
      expect(p).toMatch(/sip\.devices\[1\]\.dtmf\.openDoor/);
      expect(p).toMatch(/sip\.registration: minExpires must not exceed maxExpires/);
      expect(p).toMatch(/sip\.colour: unknown key/);
      expect(p).toMatch(/sip\.devices\[1\]\.id: duplicate device id "a"/);
    }
  });
});
