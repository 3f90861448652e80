/**
 * Public surface of the SIP intercom (registrar + UAS for door stations). Everything else in
 * gateway/sip is internal. See README.md in this folder for the wiring.
 */
export { startSipServer, statusFor, type SipServer, type SipServerOptions, type SipServerStats } from "./server.ts";
export {
  CallAlreadyAnsweredError,
  type Intercom,
  type IntercomEvents,
  type IntercomOptions,
  type IntercomUser,
  type RingEvent,
  type CallRecord,
  type DeviceStatus,
} from "./intercom.ts";
export type { SipCall, CallId, CallState, CallEnd, EndReason, CallEvents } from "./call.ts";
export type { DeviceId } from "./devices.ts";
export type { MediaStats } from "./media.ts";
export { realClock, ManualClock, type SipClock } from "./clock.ts";
