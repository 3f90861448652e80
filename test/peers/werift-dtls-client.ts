/**
 * Test peers that play the browser with werift are DTLS clients (the gateway answers
 * `a=setup:passive`), and werift's DTLS client fails the whole handshake when a
 * HelloVerifyRequest arrives twice: its flight 3 throws on being started again. That happens
 * whenever the server answers the first ClientHello later than the client's 500 ms
 * retransmission (two ClientHellos, two HelloVerifyRequests), which a loaded two-core machine
 * does routinely: the talk connection of intercom-http.test.ts then ended "failed" with ICE
 * connected (`dtls failed … Flight3.exec`). RFC 6347 §4.2.1 makes a repeated
 * HelloVerifyRequest harmless; browsers treat it so. Importing this module makes werift's
 * DTLS clients in this process ignore a HelloVerifyRequest once their flight 3 is under way
 * (its own retransmission timer carries on). Only DtlsClient changes: the gateway's DTLS
 * servers are untouched.
 */
import { DtlsClient } from "werift";

interface HandshakeFragment {
  msg_type: number;
}
interface ClientInternals {
  dtls: { flight: number };
  handleFragmentHandshake(messages: HandshakeFragment[]): unknown;
}

const HELLO_VERIFY_REQUEST = 3;
const proto = DtlsClient.prototype as unknown as ClientInternals & { __ghRepeatedHvr?: boolean };
if (!proto.__ghRepeatedHvr) {
  const inherited = proto.handleFragmentHandshake;
  proto.handleFragmentHandshake = function (this: ClientInternals, messages: HandshakeFragment[]) {
    const kept = this.dtls.flight >= 3 ? messages.filter((m) => m.msg_type !== HELLO_VERIFY_REQUEST) : messages;
    return inherited.call(this, kept);
  };
  proto.__ghRepeatedHvr = true;
}
