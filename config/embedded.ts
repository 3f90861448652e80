/**
 * The embedded defaults: what `npm start` runs with no configuration file. Everything the
 * product does, on loopback, with nothing to set up: the demo recorder and camera, the
 * development identity provider, TURN (UDP 14049 and TCP on the front-door port, under a
 * secret generated at each start) and SIP with the built-in demo door station.
 *
 * These apply only when no file is given; a configuration file starts from the schema's
 * own closed defaults (TURN and SIP off), so a production file never inherits the demo.
 */
import { randomBytes } from "node:crypto";
import type { ConfigInput } from "./schema.ts";

export function embeddedDefaults(random: (n: number) => Buffer = randomBytes): ConfigInput {
  return {
    // A fresh secret each start: credentials are only ever minted by this process.
    turn: { enabled: true, secret: random(24).toString("base64url") },
    sip: { enabled: true },
    demo: { door: { enabled: true } },
  };
}
