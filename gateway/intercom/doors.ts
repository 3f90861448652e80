/**
 * The door side of the intercom at start-up: the SIP registrar and user agent (gateway/sip/),
 * and the built-in demo door station that registers with it like any door. The browser side
 * (rings, answers, talk) is `createIntercomWeb` in ./index.ts, started after sign-in.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "../../config/log.ts";
import type { Config } from "../../config/schema.ts";
import type { SipConfig, SipDeviceConfig } from "../../config/sections/sip.ts";
import type { SafeEmitter } from "../../config/events.ts";
import { DemoDoor } from "../demo/door.ts";
import { startWithFallback, type TakenPort, type TakenPortPolicy } from "../ports.ts";
import { startSipServer, type SipServer } from "../sip/index.ts";

export const DEMO_DOOR_ID = "demo-door";

export interface DoorsOptions {
  readonly config: Config;
  /** The demo camera's id when the demo recorder runs (the demo door is bound to it). */
  readonly demoCamera: string | undefined;
  readonly cameras: readonly string[];
  readonly policy: TakenPortPolicy;
  readonly takenPorts: TakenPort[];
  /** Registers a cleanup; cleanups run in reverse order of registration. */
  readonly onClose: (fn: () => Promise<void> | void) => void;
  readonly lifecycle: SafeEmitter<{ closing: [reason: string] }>;
  /** Whether a source address is one of our TURN relay's own (nothing reaches SIP through the relay). */
  readonly isRelaySource: (address: string, port: number) => boolean;
  readonly log: Logger;
}

export interface Doors {
  readonly sip: SipServer | undefined;
  readonly demoDoor: DemoDoor | undefined;
}

/**
 * The built-in demo door station: a SIP device of its own, at the demo camera, with a password
 * made for this run (it lives in this process, nobody else needs it).
 */
function demoDoorDevice(config: Config, demoCamera: string | undefined, log: Logger): SipDeviceConfig | undefined {
  if (!config.demo.door.enabled || demoCamera === undefined || !config.sip.enabled) return undefined;
  if (!config.sip.udp.enabled) {
    log.warn("demo door not started: it needs sip.udp");
    return undefined;
  }
  if (config.sip.devices.some((d) => d.id === DEMO_DOOR_ID || d.username.toLowerCase() === DEMO_DOOR_ID)) {
    log.warn(`demo door not started: a configured SIP device is already called "${DEMO_DOOR_ID}"`);
    return undefined;
  }
  return {
    id: DEMO_DOOR_ID,
    name: config.demo.door.name,
    username: DEMO_DOOR_ID,
    password: randomBytes(18).toString("base64url"),
    camera: demoCamera,
    answerers: { users: [], groups: [] },
    dtmf: { openDoor: "#", method: "rfc4733", durationMs: 160 },
    allow: [],
    digestAlgorithms: ["SHA-256", "MD5"],
    authenticateCalls: true,
  };
}

/** Door intercoms: SIP registrar + UAS, and the demo door when the demo runs. */
export async function startDoors(o: DoorsOptions): Promise<Doors> {
  const { config, log } = o;
  if (!config.sip.enabled) return { sip: undefined, demoDoor: undefined };
  const device = demoDoorDevice(config, o.demoCamera, log);
  const sipConfig: SipConfig = device ? { ...config.sip, devices: [...config.sip.devices, device] } : config.sip;
  const anyPort = (c: SipConfig): SipConfig => ({ ...c, udp: { ...c.udp, port: 0 }, tcp: { ...c.tcp, port: 0 }, ...(c.tls ? { tls: { ...c.tls, port: 0 } } : {}) });
  const sip = await startWithFallback("SIP", [sipConfig.udp.port, sipConfig.tcp.port, sipConfig.tls?.port ?? 0], o.policy, log, o.takenPorts, (free) =>
    startSipServer({
      config: free ? anyPort(sipConfig) : sipConfig,
      log: log.child({ component: "sip" }),
      cameras: [...o.cameras],
      ...(config.server.tls ? { tlsFallback: config.server.tls } : {}),
      refuseSource: o.isRelaySource,
    }),
  );
  o.onClose(() => sip.close("gateway closing"));
  // Calls end first (BYE to answered ones, 480 to ringing ones), while the audit hooks and
  // the browsers' streams still listen, so the end is recorded and shown.
  o.lifecycle.on("closing", () => sip.intercom.close());

  // The demo door registers like any door; if it cannot, the rest runs without it.
  let demoDoor: DemoDoor | undefined;
  if (device && sip.ports.udp) {
    const bind = config.sip.bindAddress;
    try {
      const d = await DemoDoor.start({
        sip: config.sip,
        registrar: { address: bind === "0.0.0.0" ? "127.0.0.1" : bind === "::" ? "::1" : bind, port: sip.ports.udp },
        username: device.username,
        password: device.password!,
        displayName: config.demo.door.name,
        answerAfterMs: config.demo.door.answerAfterMs,
        log: log.child({ component: "demo-door" }),
      });
      demoDoor = d;
      // Closed before the SIP server (cleanups run in reverse): it hangs up and unregisters.
      o.onClose(() => d.close("gateway closing"));
      log.info("demo door registered", { device: DEMO_DOOR_ID, aor: d.aor });
    } catch (err) {
      log.warn("demo door not started", { err });
    }
  }
  return { sip, demoDoor };
}
