/**
 * The SIP requests a door station sends that the gateway (a registrar and UAS) never builds:
 * REGISTER, an out-of-dialog INVITE, the CANCEL of that INVITE (RFC 3261 §9.1), and the
 * Authorization answering a digest challenge (§22.2, RFC 7616 qop=auth). Pure: the message
 * model and parser are gateway/sip's own, its digest answers gateway/digest's; this only assembles headers.
 */
import { createAuthorizer, parseChallenges, pickChallenge } from "../digest/client.ts";
import { SipHeaders, type SipRequest, type SipResponse } from "../sip/message.ts";
import { quote } from "../sip/uri.ts";

/** Who the door is and where it listens. */
export interface DoorIdentity {
  /** SIP user name (the AOR is `sip:<username>@<domain>`). */
  readonly username: string;
  readonly domain: string;
  readonly displayName: string;
  /** Address and UDP port of the door's SIP socket (Via, Contact). */
  readonly address: string;
  readonly port: number;
}

export const USER_AGENT = "Gatehouse demo door";
export const DOOR_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

export function doorAor(id: DoorIdentity): string {
  return `sip:${id.username}@${id.domain}`;
}

export function doorContact(id: DoorIdentity): string {
  return `<sip:${id.username}@${id.address}:${id.port}>`;
}

export function doorVia(id: DoorIdentity, branch: string): string {
  return `SIP/2.0/UDP ${id.address}:${id.port};branch=${branch};rport`;
}

interface Common {
  branch: string;
  callId: string;
  fromTag: string;
  cseq: number;
  /** Authorization header value answering the last challenge, if any. */
  authorization?: string | undefined;
}

/** REGISTER (§10.2): binds the door's contact to its AOR for `expires` seconds (0 = remove). */
export function registerRequest(id: DoorIdentity, p: Common & { expires: number }): SipRequest {
  const h = new SipHeaders();
  h.append("Via", doorVia(id, p.branch));
  h.append("Max-Forwards", "70");
  h.append("From", `<${doorAor(id)}>;tag=${p.fromTag}`);
  h.append("To", `<${doorAor(id)}>`);
  h.append("Call-ID", p.callId);
  h.append("CSeq", `${p.cseq} REGISTER`);
  h.append("Contact", doorContact(id));
  h.append("Expires", String(p.expires));
  if (p.authorization) h.append("Authorization", p.authorization);
  h.append("User-Agent", USER_AGENT);
  return { kind: "request", method: "REGISTER", uri: `sip:${id.domain}`, headers: h, body: Buffer.alloc(0) };
}

/** INVITE to the gateway (the door rings), with an SDP offer. */
export function inviteRequest(id: DoorIdentity, p: Common & { target: string; sdp: string }): SipRequest {
  const h = new SipHeaders();
  h.append("Via", doorVia(id, p.branch));
  h.append("Max-Forwards", "70");
  h.append("From", `${quote(id.displayName)} <${doorAor(id)}>;tag=${p.fromTag}`);
  h.append("To", `<${p.target}>`);
  h.append("Call-ID", p.callId);
  h.append("CSeq", `${p.cseq} INVITE`);
  h.append("Contact", doorContact(id));
  h.append("Allow", DOOR_ALLOW);
  if (p.authorization) h.append("Authorization", p.authorization);
  h.append("User-Agent", USER_AGENT);
  h.append("Content-Type", "application/sdp");
  return { kind: "request", method: "INVITE", uri: p.target, headers: h, body: Buffer.from(p.sdp, "latin1") };
}

/** §9.1: CANCEL of a pending INVITE: same Request-URI, top Via (branch), Call-ID, From, To and CSeq number. */
export function cancelRequest(invite: SipRequest): SipRequest {
  const h = new SipHeaders();
  h.append("Via", invite.headers.getList("via")[0] ?? "");
  h.append("Max-Forwards", "70");
  h.append("From", invite.headers.get("from") ?? "");
  h.append("To", invite.headers.get("to") ?? "");
  h.append("Call-ID", invite.headers.get("call-id") ?? "");
  h.append("CSeq", `${(invite.headers.get("cseq") ?? "1").split(/\s+/)[0]} CANCEL`);
  h.append("User-Agent", USER_AGENT);
  return { kind: "request", method: "CANCEL", uri: invite.uri, headers: h, body: Buffer.alloc(0) };
}

/**
 * The Authorization value answering the strongest digest challenge of a 401 (or the
 * Proxy-Authorization of a 407) that offers qop=auth; undefined when none can be answered. Never Basic: SIP has none
 * (RFC 3261 §22.1).
 */
export function answerChallenge(
  res: SipResponse,
  p: { username: string; password: string; method: string; uri: string; cnonce: string },
): { header: "Authorization" | "Proxy-Authorization"; value: string } | undefined {
  const proxy = res.status === 407;
  const digest = parseChallenges(res.headers.getAll(proxy ? "proxy-authenticate" : "www-authenticate")).filter(
    // qop=auth only: the gateway's registrar refuses the RFC 2069 answer (no nonce count against replays).
    (c) => c.scheme === "digest" && (c.params.get("qop") ?? "").split(",").some((q) => q.trim().toLowerCase() === "auth"),
  );
  const best = pickChallenge(digest);
  const authorizer = best && createAuthorizer(best, { username: p.username, password: p.password }, { cnonce: () => p.cnonce });
  if (!authorizer) return undefined;
  return { header: proxy ? "Proxy-Authorization" : "Authorization", value: authorizer.authorize(p.method, p.uri) };
}
