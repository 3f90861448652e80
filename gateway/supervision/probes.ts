/**
 * Health probes of the components that have no restart of their own to report: each asks
 * the component the way a client would, on the gateway's own addresses (never one a client
 * gave), and resolves with `{ ok, reason }` within its timeout.
 *   TURN: a STUN Binding request to its first UDP listener (RFC 8489 §6).
 *   SIP:  an OPTIONS request to its UDP listener (RFC 3261 §11), any final answer counts.
 *   Identity provider: its discovery document (OpenID Connect Discovery §4).
 */
import dgram from "node:dgram";
import { randomBytes } from "node:crypto";
import { Method, MessageClass } from "../../turn/stun/constants.ts";
import { parseStun } from "../../turn/stun/message.ts";
import { StunWriter } from "../../turn/stun/writer.ts";

export interface ProbeResult {
  ok: boolean;
  /** In plain words. */
  reason: string;
}

/** The address to reach a listener bound to `bind` from this host (a wildcard means loopback). */
export function localTarget(bind: string): string {
  if (bind === "0.0.0.0") return "127.0.0.1";
  if (bind === "::") return "::1";
  return bind;
}

/** Sends one datagram and resolves with the first answer `accept` takes, or undefined after `timeoutMs`. */
function udpExchange(address: string, port: number, payload: Buffer, accept: (b: Buffer) => boolean, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(address.includes(":") ? "udp6" : "udp4");
    let done = false;
    const finish = (b: Buffer | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(b);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    sock.on("error", () => finish(undefined));
    sock.on("message", (b) => {
      if (accept(b)) finish(b);
    });
    sock.send(payload, port, address, (err) => {
      if (err) finish(undefined);
    });
  });
}

export async function stunProbe(address: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const tid = randomBytes(12);
  const req = new StunWriter(Method.Binding, MessageClass.Request, tid).fingerprint().finish();
  const answer = await udpExchange(
    address,
    port,
    req,
    (b) => {
      const r = parseStun(b);
      return r.ok && r.msg.transactionId.equals(tid);
    },
    timeoutMs,
  );
  return answer ? { ok: true, reason: "answers STUN" } : { ok: false, reason: `no answer to a STUN Binding request within ${timeoutMs} ms` };
}

export async function sipOptionsProbe(address: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const branch = `z9hG4bK-probe-${randomBytes(8).toString("hex")}`;
  const callId = `${randomBytes(12).toString("hex")}@gatehouse-supervisor`;
  const host = address.includes(":") ? `[${address}]` : address;
  const req = Buffer.from(
    [
      `OPTIONS sip:${host}:${port} SIP/2.0`,
      `Via: SIP/2.0/UDP ${host}:9;branch=${branch};rport`,
      "Max-Forwards: 70",
      `From: <sip:supervisor@${host}>;tag=${randomBytes(6).toString("hex")}`,
      `To: <sip:${host}:${port}>`,
      `Call-ID: ${callId}`,
      "CSeq: 1 OPTIONS",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
    "latin1",
  );
  const answer = await udpExchange(address, port, req, (b) => {
    const text = b.toString("latin1");
    return /^SIP\/2\.0 [2-6]\d\d /.test(text) && text.includes(callId);
  }, timeoutMs);
  if (!answer) return { ok: false, reason: `no answer to SIP OPTIONS within ${timeoutMs} ms` };
  const status = answer.toString("latin1").slice(8, 11);
  return { ok: true, reason: `answers SIP (${status})` };
}

export async function discoveryProbe(issuer: string, fetchFn: (url: string, init?: RequestInit) => Promise<Response>, timeoutMs: number): Promise<ProbeResult> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  try {
    const res = await fetchFn(url, { signal: AbortSignal.timeout(timeoutMs), headers: { Accept: "application/json" } });
    await res.body?.cancel().catch(() => {});
    if (res.ok) return { ok: true, reason: "discovery answers" };
    return { ok: false, reason: `discovery answered HTTP ${res.status}` };
  } catch (err) {
    const name = (err as { name?: string }).name;
    if (name === "TimeoutError" || name === "AbortError") return { ok: false, reason: `no answer within ${timeoutMs} ms` };
    return { ok: false, reason: `unreachable (${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message})` };
  }
}
